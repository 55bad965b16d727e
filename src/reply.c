/* reply.c: how a handler answers (a JSON body, headers, a problem with
 * its detail and field errors) and the rendering of that answer into a
 * status, a Content-Type and a body text. Independent of libmicrohttpd:
 * server.c puts the rendered answer on the wire. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

enum as_err res_json(struct response *res, unsigned status, json_t *body)
{
    json_decref(res->body);
    res->status = status;
    res->body = body;
    return AS_OK;
}

void res_header_ref(struct req_ctx *rc, const char *name, const char *value)
{
    struct response *res = &rc->res;

    if (res->nhdr >= RES_MAX_HEADERS || !value)
        return;
    res->hdr[res->nhdr].name = name;
    res->hdr[res->nhdr].value = value;
    res->nhdr++;
}

void res_header(struct req_ctx *rc, const char *name, const char *value)
{
    res_header_ref(rc, name, arena_strdup(rc->arena, value));
}

enum as_err res_fail(struct response *res, enum as_err err,
                     const char *detail)
{
    res->detail = detail;
    return err;
}

enum as_err res_field(struct response *res, const char *field,
                      const char *message)
{
    if (!res->errors)
        res->errors = json_array();
    json_array_append_new(res->errors, json_pack("{s:s, s:s}", "field",
                                                 field, "message", message));
    return AS_ERR_VALIDATION;
}

/* A sentence naming what the field errors are about, for a 422 whose
 * handler gave no detail of its own: the one error, or the fields. */
static const char *fields_detail(json_t *errors, char *buf, size_t len)
{
    size_t i, n = json_array_size(errors), used;
    json_t *e;

    if (n == 1) {
        e = json_array_get(errors, 0);
        snprintf(buf, len, "The field %s %s.",
                 json_string_value(json_object_get(e, "field")),
                 json_string_value(json_object_get(e, "message")));
        return buf;
    }
    used = (size_t)snprintf(buf, len, "%zu fields are invalid:", n);
    json_array_foreach(errors, i, e) {
        if (used >= len)
            break;
        used += (size_t)snprintf(buf + used, len - used, "%s %s",
                                 i ? "," : "",
                                 json_string_value(json_object_get(e,
                                                                   "field")));
    }
    if (used < len - 1)
        strcat(buf, ".");
    return buf;
}

json_t *res_problem(enum as_err err, const char *detail,
                    const char *request_id, json_t *errors)
{
    int status = as_err_http_status(err);
    char sentence[256];
    json_t *doc;

    if (!detail && json_array_size(errors))
        detail = fields_detail(errors, sentence, sizeof sentence);
    doc = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}",
                            "type", "about:blank",
                            "title", as_err_title(err),
                            "status", status,
                            "detail", detail ? detail : as_err_title(err),
                            "code", as_err_code(err),
                            "request_id", request_id);

    if (doc && errors && json_array_size(errors))
        json_object_set(doc, "errors", errors);
    return doc;
}

unsigned res_render(struct req_ctx *rc, char **text, const char **ctype)
{
    unsigned status;
    json_t *doc;

    *text = NULL;
    *ctype = "application/json";
    if (rc->err != AS_OK) {
        status = (unsigned)as_err_http_status(rc->err);
        doc = res_problem(rc->err, rc->res.detail, rc->request_id,
                          rc->res.errors);
        if (doc && rc->res.extra)
            json_object_update_missing(doc, rc->res.extra);
        *ctype = "application/problem+json";
    } else {
        status = rc->res.status ? rc->res.status : 200;
        doc = json_incref(rc->res.body);
    }
    if (doc) {
        *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    } else if (rc->res.raw && rc->err == AS_OK) {
        *text = rc->res.raw;
        rc->res.raw = NULL;
        *ctype = rc->res.raw_type;
    } else if (rc->res.fixed && rc->err == AS_OK) {
        /* a copy here; the daemon's respond() sends it without one */
        *text = strndup(rc->res.fixed, rc->res.fixed_len);
        *ctype = rc->res.raw_type;
    }
    json_decref(doc);
    return status;
}
