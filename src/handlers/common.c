/* common.c: token pairs, sessions and audit events for the handlers. */
#include "hx.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "crypto.h"

#include "cfg.h"
#include "clock.h"
#include "fleet.h"
#include "lockout.h"
#include "log.h"
#include "password.h"
#include "sec.h"
#include "uuid.h"
#include "validate.h"

struct core hx_core(struct req_ctx *rc)
{
    struct core c;

    core_init(&c, rc->app->repo, rc->app->scache, rc->app->cfg,
              &rc->app->pw, app_keys(rc->app));
    return c;
}

int64_t hx_seconds_left(int64_t ends_ms, int64_t now_ms)
{
    return ends_ms > now_ms ? (ends_ms - now_ms + 999) / 1000 : 0;
}

enum as_err hx_token_pair(struct req_ctx *rc, const struct user *u,
                          const char *sid, const char *refresh,
                          int64_t ends_ms, const char *amr)
{
    const struct cfg *cfg = rc->app->cfg;
    struct sec_claims c = { .email = u->email,
                            .role = role_name(u->role),
                            .amr = sec_amr_parse(amr) };
    /* One reading of the clock for every figure of the answer: a second
     * boundary between two readings would report a lifetime one short. */
    int64_t now_ms = clock_ms(), now = now_ms / 1000, ends = ends_ms / 1000;
    char *jwt = NULL;
    enum as_err err;

    if (ends <= now)                      /* ended in this very second */
        return res_fail(&rc->res, AS_ERR_INVALID_TOKEN,
                        "The session has ended; log in again.");
    snprintf(c.sub, sizeof c.sub, "%s", u->id);
    snprintf(c.sid, sizeof c.sid, "%s", sid);
    uuid_v7_new(c.jti);
    c.iat = c.nbf = now;
    c.exp = now + (int64_t)cfg->access_ttl;
    if (c.exp > ends)                     /* no token outlives its session */
        c.exp = ends;
    err = sec_jwt_sign(app_keys(rc->app), cfg, &c, &jwt);
    if (err != AS_OK)
        return err;
    res_json(&rc->res, 200,
             json_pack("{s:s, s:s, s:I, s:s, s:I}", "access_token", jwt,
                       "token_type", "Bearer", "expires_in",
                       (json_int_t)(c.exp - now), "refresh_token", refresh,
                       "refresh_expires_in",
                       (json_int_t)hx_seconds_left(ends_ms, now_ms)));
    crypt_wipe(jwt, strlen(jwt));
    free(jwt);
    return rc->res.body ? AS_OK : AS_ERR_NOMEM;
}

/* How long a request that will sign waits for a poll of the keys table
 * before it is answered 503: a poll takes milliseconds on a database
 * that answers (the one a process makes on waking from a stop, say); the
 * worker it holds serves nothing else meanwhile. */
#define KEYS_WAIT_MS 250u

enum as_err hx_keys_current(struct req_ctx *rc)
{
    struct fleet *f = atomic_load(&rc->app->fleet);

    if (!f || fleet_keys_current(f, KEYS_WAIT_MS))
        return AS_OK;
    res_header(rc, "Retry-After", "1");
    return res_fail(&rc->res, AS_ERR_UNAVAILABLE,
                    "The signing keys are being brought up to date; retry "
                    "in a second.");
}

enum as_err hx_start_session(struct req_ctx *rc, const struct user *u)
{
    return hx_start_session_amr(rc, u, NULL, NULL, NULL);
}

enum as_err hx_start_session_amr(struct req_ctx *rc, const struct user *u,
                                 const char *amr, const char *mfa_token,
                                 const char *passkey_id)
{
    struct core c = hx_core(rc);
    struct session s;
    char refresh[SEC_TOKEN_LEN + 1] = "";
    /* Stored only while the account is as the login read it (its
     * password, active, and for a password login the second factor
     * off): a login that lost the race with such a change is answered
     * as one that started after it. Every login that gets here is
     * complete: storing its session ends its run of failures. */
    enum as_err err = core_session_start(
        &c, u->id, u->password_gen, amr, mfa_token, passkey_id, u->email,
        rc->ip,
        v_printable(rc->arena, req_header(rc, "User-Agent"), 256), &s,
        refresh);

    if (err == AS_ERR_NOT_FOUND ||      /* the user was deleted meanwhile */
        err == AS_ERR_BAD_CREDENTIALS)  /* or the password changed */
        err = hx_bad_credentials(rc);
    if (err == AS_ERR_DISABLED)         /* or the account deactivated */
        err = hx_disabled(rc);
    if (err == AS_ERR_INVALID_TOKEN)    /* or its login token was ended */
        err = res_fail(&rc->res, err,
                       "The mfa_token was ended (every session of the "
                       "account was logged out); log in again.");
    if (err == AS_ERR_MFA_REQUIRED) {   /* or the second factor turned on */
        crypt_wipe(refresh, sizeof refresh);
        return hx_mfa_challenge(rc, u);
    }
    if (err == AS_OK)
        err = hx_token_pair(rc, u, s.id, refresh, s.expires_at, amr);
    if (err == AS_OK)
        log_event(LOG_INFO, "auth.login", rc->request_id,
                  json_pack("{s:s, s:s, s:s, s:s}", "user_id", u->id,
                            "session_id", s.id, "ip", rc->ip, "amr",
                            amr ? amr : "pwd"));
    crypt_wipe(refresh, sizeof refresh);
    return err;
}

enum as_err hx_caller(struct req_ctx *rc, struct user *out)
{
    struct core c = hx_core(rc);
    enum as_err err = core_user_get(&c, rc->claims.sub, out, rc->arena);

    if (err == AS_ERR_NOT_FOUND)
        return res_fail(&rc->res, AS_ERR_INVALID_TOKEN,
                        "The account no longer exists.");
    return err;
}

enum as_err hx_bad_credentials(struct req_ctx *rc)
{
    return res_fail(&rc->res, AS_ERR_BAD_CREDENTIALS,
                    "The email or password is incorrect.");
}

enum as_err hx_disabled(struct req_ctx *rc)
{
    return res_fail(&rc->res, AS_ERR_DISABLED, "This account is disabled.");
}

/* Answers the 429 of a locked caller, with Retry-After `retry` s. */
enum as_err hx_locked(struct req_ctx *rc, int64_t retry)
{
    char value[24];

    snprintf(value, sizeof value, "%lld", (long long)retry);
    res_header(rc, "Retry-After", value);
    /* not "from this address": past 10 x the threshold the email is
     * locked for every address (README "Lockout") */
    return res_fail(&rc->res, AS_ERR_RATE_LIMITED,
                    "Too many failed attempts for this account; retry "
                    "later.");
}

enum as_err hx_check_password(struct req_ctx *rc, const struct user *u,
                              const char *pw)
{
    struct core c = hx_core(rc);
    int64_t retry = 0;
    enum as_err err = core_password_check(&c, u, pw, rc->ip, &retry);

    if (err == AS_ERR_RATE_LIMITED)
        hx_locked(rc, retry);
    if (err == AS_ERR_BAD_CREDENTIALS)
        res_fail(&rc->res, AS_ERR_BAD_CREDENTIALS,
                 "The password is incorrect.");
    if (err == AS_ERR_BAD_CREDENTIALS || err == AS_ERR_RATE_LIMITED)
        log_event(LOG_INFO, "auth.password_failed", rc->request_id,
                  json_pack("{s:s, s:s, s:b}", "user_id", u->id, "ip",
                            rc->ip, "refused_locked",
                            err == AS_ERR_RATE_LIMITED));
    return err;
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

/* Reads and checks the fields of a new user into `u`; adds field errors. */
static void new_user_fields(struct req_ctx *rc, json_t *in, bool with_role,
                            struct user *u, const char **pw)
{
    struct response *res = &rc->res;
    const char *raw = NULL, *name, *role = NULL, *why;
    bool name_null;

    v_string(res, in, "email", true, 1024, &raw);
    v_string(res, in, "password", true, HX_MAX_PASSWORD_BYTES, pw);
    v_string_or_null(res, in, "full_name", 1024, &name, &name_null);
    if (with_role)
        v_string(res, in, "role", false, 16, &role);
    if (raw && !(u->email = v_new_email(rc->arena, raw)))
        res_field(res, "email", "is not a valid email address");
    if (name && !v_full_name(name))
        res_field(res, "full_name", "must be 1-200 printable characters");
    u->full_name = name;
    if (role && !role_parse(role, &u->role))
        res_field(res, "role", "must be \"user\" or \"admin\"");
    if (*pw && u->email &&
        (why = pw_policy_check(*pw, u->email,
                               rc->app->cfg->password_min_length)))
        res_field(res, "password", why);
}

/* An admin's new user is active, unverified and without a second
 * factor. A field asking otherwise was ignored (a 201 for a user that is
 * not what was asked); it is a field error, and the default value, sent
 * back as read, passes. */
static void made_as_is(struct response *res, json_t *in)
{
    static const struct { const char *name; bool made; const char *why; }
    f[] = {
        { "is_active", true, "must be true: a user is made active "
                             "(deactivate it with PATCH)" },
        { "is_verified", false, "must be false: the user verifies the "
                                "address through the mailed link" },
        { "mfa_enabled", false, "must be false: the user turns the "
                                "second factor on" },
    };
    size_t i;

    for (i = 0; i < sizeof f / sizeof f[0]; i++) {
        bool v = f[i].made, present = false;

        if (v_bool(res, in, f[i].name, &v, &present) && present &&
            v != f[i].made)
            res_field(res, f[i].name, f[i].why);
    }
}

enum as_err hx_create_user(struct req_ctx *rc, bool with_role,
                           const char *action)
{
    struct response *res = &rc->res;
    json_t *in = NULL;
    const char *pw = NULL;
    struct user u = { .role = ROLE_USER, .is_active = true };
    struct core c = hx_core(rc);
    enum as_err err = req_json(rc, &in);

    if (err != AS_OK)
        goto out;
    /* What /users/me refuses its caller, /register refuses too. */
    if (!with_role &&
        (json_object_get(in, "role") || json_object_get(in, "is_active") ||
         json_object_get(in, "is_verified") ||
         json_object_get(in, "mfa_enabled"))) {
        err = res_fail(res, AS_ERR_FORBIDDEN, "You cannot choose your own "
                                              "role, is_active, is_verified "
                                              "or mfa_enabled.");
        goto out;
    }
    new_user_fields(rc, in, with_role, &u, &pw);
    if (with_role)
        made_as_is(res, in);
    if (res->errors) {
        err = AS_ERR_VALIDATION;
        goto out;
    }
    err = core_user_create(&c, &u, pw);
    if (err == AS_ERR_EMAIL_TAKEN)
        res_fail(res, err, "An account with this email already exists.");
    if (err != AS_OK)
        goto out;
    hx_audit(rc, action, u.id, json_pack("{s:s}", "role",
                                         role_name(u.role)));
    res_header(rc, "Location", arena_printf(rc->arena, "/api/v1/users/%s",
                                            u.id));
    res_json(res, 201, v_user_json(&u));
out:
    json_decref(in);
    return err;
}
