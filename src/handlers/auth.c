/* auth.c: /api/v1/auth — register and log in. */
#include "handlers.h"

#include <string.h>

#include <sodium.h>

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "password.h"
#include "repo.h"
#include "sec.h"
#include "uuid.h"
#include "validate.h"

#define MAX_PASSWORD_BYTES 512   /* 128 code points of up to 4 bytes */

/* Issues an access token for `u` in session `sid` and answers the token
 * pair of API.md with `refresh` (a secret, not kept). */
static enum as_err token_pair(struct req_ctx *rc, const struct user *u,
                              const char *sid, const char *refresh)
{
    const struct cfg *cfg = rc->app->cfg;
    struct sec_claims c = { .email = u->email,
                            .role = u->role == ROLE_ADMIN ? "admin"
                                                          : "user" };
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

/* Starts a session for `u` and answers its first token pair. */
static enum as_err start_session(struct req_ctx *rc, const struct user *u)
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
        err = token_pair(rc, u, s.id, refresh);
    if (err == AS_OK)
        log_event(LOG_INFO, "auth.login", rc->request_id,
                  json_pack("{s:s, s:s, s:s}", "user_id", u->id,
                            "session_id", s.id, "ip", rc->ip));
    sodium_memzero(refresh, sizeof refresh);
    return err;
}

enum as_err h_register(struct req_ctx *rc, struct response *res)
{
    const struct cfg *cfg = rc->app->cfg;
    json_t *in = NULL;
    const char *raw_email, *pw, *name, *email = NULL, *why;
    char hash[PW_HASH_MAX];
    struct user u = { .role = ROLE_USER, .is_active = true };
    bool name_null;
    enum as_err err = req_json(rc, &in);

    if (err != AS_OK)
        goto out;
    v_string(res, in, "email", true, 1024, &raw_email);
    v_string(res, in, "password", true, MAX_PASSWORD_BYTES, &pw);
    v_string_or_null(res, in, "full_name", 1024, &name, &name_null);
    if (raw_email && !(email = v_email(rc->arena, raw_email)))
        res_field(res, "email", "is not a valid email address");
    if (name && !v_full_name(name))
        res_field(res, "full_name", "must be 1-200 printable characters");
    if (pw && email &&
        (why = pw_policy_check(pw, email, cfg->password_min_length)))
        res_field(res, "password", why);
    if (res->errors) {
        err = AS_ERR_VALIDATION;
        goto out;
    }
    err = pw_hash(pw, &rc->app->pw, hash);
    if (err != AS_OK)
        goto out;
    uuid_v7_new(u.id);
    u.email = email;
    u.full_name = name;
    u.password_hash = hash;
    u.created_at = u.updated_at = clock_ms();
    err = repo_user_insert(rc->app->repo, &u);
    if (err == AS_ERR_EMAIL_TAKEN) {
        res_fail(res, err, "An account with this email already exists.");
        goto out;
    }
    if (err != AS_OK)
        goto out;
    log_event(LOG_INFO, "audit.user_registered", rc->request_id,
              json_pack("{s:s, s:s}", "user_id", u.id, "ip", rc->ip));
    res_header(rc, "Location", arena_printf(rc->arena, "/api/v1/users/%s",
                                            u.id));
    res_json(res, 201, v_user_json(&u));
out:
    sodium_memzero(hash, sizeof hash);
    json_decref(in);
    return err;
}

/* Reads the credentials of a JSON body or an RFC 6749 s4.3 form. */
static enum as_err login_input(struct req_ctx *rc, json_t *in,
                               const char **email, const char **pw)
{
    struct response *res = &rc->res;
    const char *grant;

    if (rc->body_form) {
        if (!v_string(res, in, "grant_type", true, 64, &grant))
            return AS_ERR_VALIDATION;
        if (strcmp(grant, "password") != 0)
            return res_fail(res, AS_ERR_INVALID_REQUEST,
                            "Only grant_type=password is supported here.");
        v_string(res, in, "username", true, 1024, email);
    } else {
        v_string(res, in, "email", true, 1024, email);
    }
    v_string(res, in, "password", true, MAX_PASSWORD_BYTES, pw);
    return res->errors ? AS_ERR_VALIDATION : AS_OK;
}

enum as_err h_login(struct req_ctx *rc, struct response *res)
{
    struct app *app = rc->app;
    json_t *in = NULL;
    const char *raw_email = NULL, *pw = NULL, *email;
    struct user u;
    char fresh[PW_HASH_MAX];
    enum as_err err = req_json(rc, &in);

    fresh[0] = '\0';
    if (err == AS_OK)
        err = login_input(rc, in, &raw_email, &pw);
    if (err != AS_OK)
        goto out;
    email = v_email(rc->arena, raw_email);
    err = email ? repo_user_by_email(app->repo, email, &u, rc->arena)
                : AS_ERR_NOT_FOUND;
    if (err == AS_ERR_NOT_FOUND) {
        pw_verify_dummy(pw);              /* same cost as a wrong password */
        err = AS_ERR_BAD_CREDENTIALS;
    } else if (err == AS_OK) {
        err = pw_verify(u.password_hash, pw);
    }
    if (err == AS_ERR_BAD_CREDENTIALS) {
        log_event(LOG_INFO, "auth.login_failed", rc->request_id,
                  json_pack("{s:s}", "ip", rc->ip));
        res_fail(res, err, "The email or password is incorrect.");
        goto out;
    }
    if (err != AS_OK)
        goto out;
    if (!u.is_active) {
        err = res_fail(res, AS_ERR_DISABLED, "This account is disabled.");
        goto out;
    }
    if (pw_needs_rehash(u.password_hash, &app->pw) &&
        pw_hash(pw, &app->pw, fresh) == AS_OK)
        repo_user_rehash(app->repo, u.id, u.password_hash, fresh);
    err = start_session(rc, &u);
out:
    sodium_memzero(fresh, sizeof fresh);
    json_decref(in);
    return err;
}
