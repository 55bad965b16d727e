/* authn.c: bearer tokens and the route table's access rules. */
#include "authn.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "repo.h"
#include "role.h"
#include "scache.h"
#include "uuid.h"
#include "vcache.h"
#include "workpool.h"

const char *authn_bearer_token(const char *h, struct arena *a)
{
    size_t n;

    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    /* A field value ends without whitespace (RFC 9110 s5.5): trailing
     * blanks the server kept are not the token's. */
    n = strlen(h);
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    if (n == 0)
        return NULL;
    return h[n] ? arena_strndup(a, h, n) : h;
}

/* A session state to read again in the background (scache_peek()). */
struct refresh {
    struct scache *cache;
    struct repo *repo;
    char sid[UUID_STR_LEN];
    char user_id[UUID_STR_LEN];
};

static void refresh_job(void *arg)
{
    struct refresh *f = arg;

    scache_refresh(f->cache, f->repo, f->sid, f->user_id);
    free(f);
}

/* Queues the refresh of `rc`'s session on a database worker; when the
 * queue is full it is left (the claim lapses and another request makes
 * it, or the entry expires). */
static void refresh_later(struct req_ctx *rc)
{
    struct app *app = rc->app;
    struct refresh *f;

    if (!app->db_pool || strlen(rc->claims.sid) >= UUID_STR_LEN ||
        strlen(rc->claims.sub) >= UUID_STR_LEN ||
        !(f = malloc(sizeof *f)))
        return;
    f->cache = app->scache;
    f->repo = app->repo;
    strcpy(f->sid, rc->claims.sid);
    strcpy(f->user_id, rc->claims.sub);
    if (!workpool_submit(app->db_pool, refresh_job, f))
        free(f);
}

/* authn_bearer's work; without `wait` (on an HTTP thread) the session
 * is taken from the cache only, and a miss sets *pending instead of
 * asking the database. */
static enum as_err bearer(struct req_ctx *rc, bool wait, bool *pending)
{
    struct app *app = rc->app;
    const char *tok = authn_bearer_token(req_header(rc, "Authorization"),
                                         rc->arena);
    struct session_state st;
    const char *email;
    bool refresh = false;
    enum as_err err;

    if (!tok)
        return res_fail(&rc->res, AS_ERR_UNAUTHORIZED,
                        "A bearer access token is required.");
    err = vcache_verify(app->vcache, app_keys(app), app->cfg, tok,
                        app_now_ms(app) / 1000, &rc->claims, rc->arena);
    if (err != AS_OK)
        return res_fail(&rc->res, AS_ERR_INVALID_TOKEN,
                        "The access token is invalid or expired.");
    if (wait)
        err = scache_check(app->scache, app->repo, rc->claims.sid,
                           rc->claims.sub, &st);
    else if (scache_peek_refresh(app->scache, rc->claims.sid, &st,
                                   &refresh)) {
        err = AS_OK;
        if (refresh)
            refresh_later(rc);
    } else {
        *pending = true;        /* the database must answer: a worker's */
        return AS_OK;
    }
    if (err != AS_OK)
        return res_fail(&rc->res, err,
                        "The session store is unavailable; retry shortly.");
    if (!st.live)
        return res_fail(&rc->res, AS_ERR_INVALID_TOKEN,
                        "The session has ended.");
    /* The session is the subject's: only a token made with the signing
     * key could name another's, and it must not be its way in to the
     * subject's account (one deactivated, say) (README.md, "Tokens"). */
    if (strcmp(st.user_id, rc->claims.sub) != 0)
        return res_fail(&rc->res, AS_ERR_INVALID_TOKEN,
                        "The access token is invalid or expired.");
    rc->claims.role = role_name(st.role);              /* current */
    /* The session's methods, not the token's: only a token made with
     * the signing key (HS256: any service that verifies) could claim a
     * factor its session never passed (X-Auth-MFA). */
    rc->claims.amr = sec_amr_parse(st.amr);
    email = st.email[0] ? arena_strdup(rc->arena, st.email) : NULL;
    if (email)                            /* the account's email now */
        rc->claims.email = email;
    rc->authed = true;
    rc->bearer = tok;
    return AS_OK;
}

enum as_err authn_bearer(struct req_ctx *rc)
{
    return bearer(rc, true, NULL);
}

/* authn_route's work; `wait` and `pending` as for bearer(). */
static enum as_err route(struct req_ctx *rc, bool wait, bool *pending)
{
    enum access acc = rc->route->access;
    enum role role;
    bool admin;
    enum as_err err;

    if (acc == ACCESS_PUBLIC)
        return AS_OK;
    err = bearer(rc, wait, pending);
    if (err != AS_OK || (!wait && *pending))
        return err;
    admin = role_parse(rc->claims.role, &role) && role == ROLE_ADMIN;
    switch (acc) {
    case ACCESS_PUBLIC:
    case ACCESS_USER:
        return AS_OK;
    case ACCESS_ADMIN:
        break;
    case ACCESS_SELF_OR_ADMIN:
        if (rc->param_id && strcasecmp(rc->param_id, rc->claims.sub) == 0)
            return AS_OK;
        break;
    case ACCESS_ADMIN_NOT_SELF:
        if (admin && rc->param_id &&
            strcasecmp(rc->param_id, rc->claims.sub) == 0)
            return res_fail(&rc->res, AS_ERR_FORBIDDEN,
                            "Change your own account through "
                            "/api/v1/users/me.");
        break;
    }
    if (!admin)
        return res_fail(&rc->res, AS_ERR_FORBIDDEN,
                        "This resource needs the admin role.");
    rc->as_admin = true;
    return AS_OK;
}

enum as_err authn_route(struct req_ctx *rc)
{
    return route(rc, true, NULL);
}

enum as_err authn_route_nowait(struct req_ctx *rc, bool *pending)
{
    *pending = false;
    return route(rc, false, pending);
}
