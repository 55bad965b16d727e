/* common.c: token pairs, sessions and audit events for the handlers. */
#include "hx.h"

#include <string.h>

#include <sodium.h>

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "password.h"
#include "sec.h"
#include "uuid.h"
#include "validate.h"

enum as_err hx_token_pair(struct req_ctx *rc, const struct user *u,
                          const char *sid, const char *refresh)
{
    const struct cfg *cfg = rc->app->cfg;
    struct sec_claims c = { .email = u->email,
                            .role = v_role_name(u->role) };
    int64_t now = clock_ms() / 1000;
    char *jwt = NULL;
    enum as_err err;

    snprintf(c.sub, sizeof c.sub, "%s", u->id);
    snprintf(c.sid, sizeof c.sid, "%s", sid);
    uuid_v7_new(c.jti);
    c.iat = c.nbf = now;
    c.exp = now + (int64_t)cfg->access_ttl;
    err = sec_jwt_sign(app_keys(rc->app), cfg, &c, &jwt);
    if (err != AS_OK)
        return err;
    res_json(&rc->res, 200,
             json_pack("{s:s, s:s, s:i, s:s, s:i}", "access_token", jwt,
                       "token_type", "Bearer", "expires_in",
                       (int)cfg->access_ttl, "refresh_token", refresh,
                       "refresh_expires_in", (int)cfg->refresh_ttl));
    sodium_memzero(jwt, strlen(jwt));
    free(jwt);
    return rc->res.body ? AS_OK : AS_ERR_NOMEM;
}

enum as_err hx_start_session(struct req_ctx *rc, const struct user *u)
{
    const struct cfg *cfg = rc->app->cfg;
    int64_t now = clock_ms();
    struct session s = { .created_at = now, .last_used_at = now };
    char refresh[SEC_TOKEN_LEN + 1];
    uint8_t hash[REPO_HASH_LEN];
    enum as_err err;

    uuid_v7_new(s.id);
    snprintf(s.user_id, sizeof s.user_id, "%s", u->id);
    s.expires_at = now + (int64_t)cfg->refresh_ttl * 1000;
    s.ip = rc->ip;
    s.user_agent = v_printable(rc->arena, req_header(rc, "User-Agent"),
                               256);
    sec_token_new(refresh);
    sec_token_hash(refresh, hash);
    err = repo_session_create(rc->app->repo, &s, hash);
    if (err == AS_OK)
        err = hx_token_pair(rc, u, s.id, refresh);
    if (err == AS_OK)
        log_event(LOG_INFO, "auth.login", rc->request_id,
                  json_pack("{s:s, s:s, s:s}", "user_id", u->id,
                            "session_id", s.id, "ip", rc->ip));
    sodium_memzero(refresh, sizeof refresh);
    return err;
}

enum as_err hx_caller(struct req_ctx *rc, struct user *out)
{
    enum as_err err = repo_user_by_id(rc->app->repo, rc->claims.sub, out,
                                      rc->arena);

    if (err == AS_ERR_NOT_FOUND)
        return res_fail(&rc->res, AS_ERR_INVALID_TOKEN,
                        "The account no longer exists.");
    return err;
}

enum as_err hx_check_password(struct req_ctx *rc, const struct user *u,
                              const char *pw)
{
    if (pw_verify(u->password_hash, pw) != AS_OK)
        return res_fail(&rc->res, AS_ERR_BAD_CREDENTIALS,
                        "The password is incorrect.");
    return AS_OK;
}

void hx_audit(struct req_ctx *rc, const char *action, const char *target,
              json_t *fields)
{
    json_t *f = json_pack("{s:s, s:s, s:s?, s:s}", "action", action,
                          "actor", rc->authed ? rc->claims.sub : "anonymous",
                          "user_id", target, "ip", rc->ip);

    if (f && json_is_object(fields))
        json_object_update(f, fields);
    json_decref(fields);
    log_event(LOG_INFO, "audit", rc->request_id, f);
}
