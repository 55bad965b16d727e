/* docs.c: Swagger UI at /docs, from files embedded in the binary
 * (src/docs_data.S): nothing is loaded from another host. */
#include "handlers.h"

#include <string.h>

extern const char auth_docs_html[], auth_docs_html_end[];
extern const char auth_docs_js[], auth_docs_js_end[];
extern const char auth_swagger_js[], auth_swagger_js_end[];
extern const char auth_swagger_css[], auth_swagger_css_end[];

/* Scripts, styles, the document and images (Swagger UI's icons are
 * data: URIs) from this origin only; no framing, no plugins. */
#define DOCS_CSP                                                            \
    "default-src 'none'; script-src 'self'; style-src 'self'; "           \
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; "         \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

struct asset {
    const char *name;
    const char *type;
    const char *start, *end;
};

/* Answers one embedded file, sent from the binary without a copy: a
 * client that never reads a 1.7 MB bundle held a copy of it per
 * connection. */
static enum as_err send_asset(struct req_ctx *rc, struct response *res,
                              const struct asset *a, const char *cache)
{
    res->status = 200;
    res->fixed = a->start;
    res->fixed_len = (size_t)(a->end - a->start);
    res->raw_type = a->type;
    res_header(rc, "Content-Security-Policy", DOCS_CSP);
    res_header(rc, "X-Frame-Options", "DENY");
    res_header(rc, "Referrer-Policy", "no-referrer");
    res_header(rc, "Cache-Control", cache);
    return AS_OK;
}

enum as_err h_docs(struct req_ctx *rc, struct response *res)
{
    const struct asset page = { "", "text/html; charset=utf-8",
                                auth_docs_html, auth_docs_html_end };

    return send_asset(rc, res, &page, "no-cache");
}

enum as_err h_docs_file(struct req_ctx *rc, struct response *res)
{
    const struct asset files[] = {
        { "docs.js", "text/javascript; charset=utf-8", auth_docs_js,
          auth_docs_js_end },
        { "swagger-ui-bundle.js", "text/javascript; charset=utf-8",
          auth_swagger_js, auth_swagger_js_end },
        { "swagger-ui.css", "text/css; charset=utf-8", auth_swagger_css,
          auth_swagger_css_end },
    };
    size_t i;

    for (i = 0; i < sizeof files / sizeof files[0]; i++)
        if (strcmp(rc->param_id, files[i].name) == 0)
            return send_asset(rc, res, &files[i], "public, max-age=3600");
    return res_fail(res, AS_ERR_NOT_FOUND, "No such resource.");
}
