/* ops.c: health, readiness, metrics, JWKS and the OpenAPI document. */
#include "handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"
#include "cfg.h"
#include "clock.h"
#include "core.h"
#include "metrics.h"
#include "openapi.h"
#include "ready.h"
#include "repo.h"

enum as_err h_healthz(struct req_ctx *rc, struct response *res)
{
    (void)rc;
    return res_json(res, 200, json_pack("{s:s}", "status", "ok"));
}

enum as_err h_readyz(struct req_ctx *rc, struct response *res)
{
    uint64_t now = clock_mono_ms();
    const char *backend = NULL;
    /* No database call on this thread: the prober's last ping answers
     * (README.md, Operations), and this call asks it for a new one. In
     * half-open that ping is the probe that may close the circuit, so a
     * load balancer polling here brings an idle instance back. */
    bool up = rc->app->ready && ready_check(rc->app->ready, now);

    if (!up || !core_store_ready(rc->app->repo, now, &backend))
        return res_fail(res, AS_ERR_UNAVAILABLE,
                        "The database is not answering.");
    return res_json(res, 200, json_pack("{s:s, s:s}", "status", "ready",
                                        "database", backend));
}

enum as_err h_metrics(struct req_ctx *rc, struct response *res)
{
    char *text;

    /* Only AUTH_METRICS_ALLOW's clients get here: the route is
     * RF_RESTRICTED, 404 for any other before any method or body check
     * (server.c). */
    text = metrics_render(rc->app->metrics, rc->app);
    if (!text)
        return AS_ERR_NOMEM;
    res->status = 200;
    res->raw = text;
    res->raw_type = "text/plain; version=0.0.4; charset=utf-8";
    return AS_OK;
}

enum as_err h_jwks(struct req_ctx *rc, struct response *res)
{
    char cc[40];

    snprintf(cc, sizeof cc, "public, max-age=%u",
             sec_jwks_max_age(rc->app->cfg->key_publish_seconds));
    res_header(rc, "Cache-Control", cc);
    return res_json(res, 200, sec_jwks(app_keys(rc->app), clock_ms() / 1000));
}

/* Written once, sent without a copy: per request it was serialised on an
 * HTTP thread (100 KB of JSON), and held while the client did not read. */
enum as_err h_openapi(struct req_ctx *rc, struct response *res)
{
    size_t n;
    const char *text = openapi_text(&n);

    (void)rc;
    if (!text)
        return AS_ERR_NOMEM;
    res->status = 200;
    res->fixed = text;
    res->fixed_len = n;
    res->raw_type = "application/json";
    return AS_OK;
}
