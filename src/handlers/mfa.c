/* mfa.c: /api/v1/auth/mfa/... and /login/mfa: the second factor over
 * HTTP. The rules are in src/core/mfa.c; this file reads requests, counts
 * wrong codes toward the login lockout, answers and audits. */
#include "hx.h"

#include <stdio.h>
#include <string.h>

#include "crypto.h"

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "mfa.h"
#include "scache.h"
#include "sec.h"
#include "validate.h"

#define MAX_CODE_BYTES 64            /* a TOTP or recovery code */

static struct mfa_env env_of(struct req_ctx *rc)
{
    struct mfa_env e = { .repo = rc->app->repo, .cache = rc->app->scache,
                         .keys = app_keys(rc->app),
                         .issuer = rc->app->cfg->jwt_issuer,
                         .now_ms = clock_ms(), .clock_us = clock_us };

    return e;
}

/* Answers a code check that failed: 400 invalid_code for a wrong code,
 * or the 429 (Retry-After set) of an attempt made while locked. The
 * attempt was counted like a failed login by the core. */
static enum as_err code_failed(struct req_ctx *rc, enum as_err refusal)
{
    log_event(LOG_INFO, "auth.mfa_failed", rc->request_id,
              json_pack("{s:s?, s:s, s:b}", "route", rc->route_pattern,
                        "ip", rc->ip, "refused_locked",
                        refusal == AS_ERR_RATE_LIMITED));
    if (refusal == AS_ERR_RATE_LIMITED)
        return refusal;                  /* answered by hx_locked() */
    return res_fail(&rc->res, AS_ERR_INVALID_CODE,
                    "The code is wrong, expired or already used.");
}

/* Logs why a second-factor step answers 500 when its stored secret does
 * not decrypt: the key it was sealed under was replaced (README "Second
 * factor"). The client sees only internal_error. */
static enum as_err unreadable(struct req_ctx *rc, const char *user_id,
                              enum as_err err)
{
    if (err == AS_ERR_SECRET_UNREADABLE)
        log_event(LOG_ERROR, "mfa.secret_unreadable", rc->request_id,
                  json_pack("{s:s, s:s}", "user_id", user_id, "reason",
                            "the stored TOTP secret does not decrypt with "
                            "the refresh-derivation key; was refresh.key "
                            "(or the key it derives from) replaced? The "
                            "user must set the factor up again "
                            "(auth-serve user mfa-reset)"));
    return err;
}

/* Checks `code` for user `u` (factor on) under the lockout: the attempt
 * is counted first, atomically with the lock check (a locked account is
 * refused without looking at the code). A right code settles the count
 * when `complete` (it completes what the caller is doing; a login with a
 * code settles it itself once the session exists). AS_OK only for a
 * right code (used up now). */
static enum as_err check_code(struct req_ctx *rc, const struct user *u,
                              const char *code, const char *mfa_token,
                              bool complete)
{
    struct core c = hx_core(rc);
    struct mfa_env e = env_of(rc);
    int64_t retry = 0;
    enum as_err err = core_code_check(&c, &e, u, code, mfa_token, complete,
                                      rc->ip, &retry);

    if (err == AS_ERR_RATE_LIMITED)
        hx_locked(rc, retry);
    if (err == AS_ERR_RATE_LIMITED || err == AS_ERR_INVALID_CODE)
        return code_failed(rc, err);
    if (err == AS_ERR_NOT_FOUND)
        return res_fail(&rc->res, AS_ERR_CONFLICT,
                        "The second factor is not on for this account.");
    return unreadable(rc, u->id, err);
}

/* The JSON answer holding fresh recovery codes. */
static json_t *codes_json(const struct mfa_codes *c)
{
    json_t *arr = json_array();
    size_t i;

    for (i = 0; arr && i < TOTP_RECOVERY_COUNT; i++)
        json_array_append_new(arr, json_string(c->code[i]));
    return json_pack("{s:o}", "recovery_codes", arr);
}

/* Reads the body's string fields `a` and `b` (NULL: not wanted). */
static enum as_err read_fields(struct req_ctx *rc, json_t **in,
                               const char *a, const char **va,
                               const char *b, const char **vb)
{
    enum as_err err = req_json(rc, in);

    if (err != AS_OK)
        return err;
    if (a)
        v_string(&rc->res, *in, a, true,
                 strcmp(a, "code") == 0 ? MAX_CODE_BYTES
                                        : HX_MAX_PASSWORD_BYTES, va);
    if (b)
        v_string(&rc->res, *in, b, true, MAX_CODE_BYTES, vb);
    return rc->res.errors ? AS_ERR_VALIDATION : AS_OK;
}

enum as_err hx_mfa_challenge(struct req_ctx *rc, const struct user *u)
{
    struct mfa_env e = env_of(rc);
    char tok[SEC_TOKEN_LEN + 1];
    enum as_err err = mfa_token_issue(&e, u->id, u->password_gen, tok);

    if (err == AS_ERR_BAD_CREDENTIALS ||  /* the password changed */
        err == AS_ERR_NOT_FOUND)          /* or the user was deleted */
        return hx_bad_credentials(rc);
    if (err == AS_ERR_DISABLED)         /* or the account was deactivated */
        return hx_disabled(rc);
    if (err != AS_OK)
        return err;
    rc->res.extra = json_pack("{s:s}", "mfa_token", tok);
    crypt_wipe(tok, sizeof tok);
    if (!rc->res.extra)
        return AS_ERR_NOMEM;
    log_event(LOG_INFO, "auth.mfa_required", rc->request_id,
              json_pack("{s:s, s:s}", "user_id", u->id, "ip", rc->ip));
    return res_fail(&rc->res, AS_ERR_MFA_REQUIRED,
                    "The password is right; send a code of the second "
                    "factor with mfa_token to /api/v1/auth/login/mfa.");
}

enum as_err h_mfa_setup(struct req_ctx *rc, struct response *res)
{
    struct mfa_env e = env_of(rc);
    struct mfa_setup s;
    json_t *in = NULL;
    const char *pw = NULL;
    struct user u;
    enum as_err err = read_fields(rc, &in, "current_password", &pw, NULL,
                                  NULL);

    memset(&s, 0, sizeof s);
    if (err == AS_OK)
        err = hx_caller(rc, &u);
    if (err == AS_OK)
        err = hx_check_password(rc, &u, pw);
    if (err == AS_OK)
        err = mfa_setup_begin(&e, &u, &s, rc->arena);
    if (err == AS_ERR_CONFLICT)
        res_fail(res, err, "The second factor is already on; turn it off "
                           "first.");
    if (err != AS_OK)
        goto out;
    hx_audit(rc, "mfa.setup_started", u.id, NULL);
    res_json(res, 200, json_pack("{s:s, s:s, s:s}", "secret", s.secret,
                                 "otpauth_uri", s.uri, "qr_svg", s.qr_svg));
    err = res->body ? AS_OK : AS_ERR_NOMEM;
out:
    crypt_wipe(s.secret, sizeof s.secret);
    json_decref(in);
    return err;
}

enum as_err h_mfa_confirm(struct req_ctx *rc, struct response *res)
{
    struct mfa_env e = env_of(rc);
    struct core c = hx_core(rc);
    struct mfa_codes codes;
    json_t *in = NULL;
    const char *code = NULL;
    struct user u;
    int64_t retry = 0;
    enum as_err err = read_fields(rc, &in, "code", &code, NULL, NULL);

    memset(&codes, 0, sizeof codes);
    if (err == AS_OK)
        err = hx_caller(rc, &u);
    if (err == AS_OK)
        err = unreadable(rc, u.id,
                         core_mfa_confirm(&c, &e, &u, code, rc->claims.sid,
                                          rc->ip, &codes, &retry));
    if (err == AS_ERR_RATE_LIMITED)
        hx_locked(rc, retry);
    if (err == AS_ERR_RATE_LIMITED || err == AS_ERR_INVALID_CODE)
        err = code_failed(rc, err);
    if (err == AS_ERR_NOT_FOUND)
        err = res_fail(res, AS_ERR_CONFLICT, "No setup is pending: start "
                       "with /api/v1/auth/mfa/totp/setup.");
    if (err != AS_OK)
        goto out;
    hx_audit(rc, "mfa.enabled", u.id, NULL);
    res_json(res, 200, codes_json(&codes));
    err = res->body ? AS_OK : AS_ERR_NOMEM;
out:
    crypt_wipe(&codes, sizeof codes);
    json_decref(in);
    return err;
}

/* The caller, its password and a code of its factor, checked in that
 * order (the password first, so a code is never tried without it);
 * *code is the code (in *in), which the change it proves names again. */
static enum as_err caller_with_code(struct req_ctx *rc, json_t **in,
                                    struct user *u, const char **code)
{
    const char *pw = NULL;
    enum as_err err;

    *code = NULL;
    err = read_fields(rc, in, "current_password", &pw, "code", code);

    if (err == AS_OK)
        err = hx_caller(rc, u);
    if (err == AS_OK)
        err = hx_check_password(rc, u, pw);
    if (err == AS_OK && !u->mfa_enabled)
        err = res_fail(&rc->res, AS_ERR_CONFLICT,
                       "The second factor is not on for this account.");
    if (err == AS_OK)
        err = check_code(rc, u, *code, NULL, true);
    return err;
}

enum as_err h_mfa_disable(struct req_ctx *rc, struct response *res)
{
    struct mfa_env e = env_of(rc);
    json_t *in = NULL;
    struct user u;
    const char *code = NULL;
    bool was_on = false;
    enum as_err err = caller_with_code(rc, &in, &u, &code);

    if (err == AS_OK)
        err = mfa_disable(&e, u.id, code, &was_on);
    if (err == AS_ERR_INVALID_CODE)      /* replaced by a renewal since */
        err = code_failed(rc, err);
    if (err == AS_OK) {
        hx_audit(rc, "mfa.disabled", u.id, NULL);
        res_json(res, 204, NULL);
    }
    json_decref(in);
    return err;
}

enum as_err h_mfa_recovery_codes(struct req_ctx *rc, struct response *res)
{
    /* The microsecond the request arrived (before it waited for a
     * hashing thread): a renewal that arrived before another one's codes
     * were set is a concurrent one, and comes second. By the millisecond,
     * one that came in the millisecond of the codes before it could not
     * be told from one racing them (a review: refused after their answer,
     * or let through before they were set, on a fast client). */
    int64_t since = clock_us_at(rc->t0_us), now_us;
    struct mfa_env e;
    struct mfa_codes codes;
    json_t *in = NULL;
    struct user u;
    const char *code = NULL;
    enum as_err err = caller_with_code(rc, &in, &u, &code);

    memset(&codes, 0, sizeof codes);
    e = env_of(rc);
    now_us = clock_us();                 /* the new codes' time: later */
    if (now_us <= since)
        now_us = since + 1;
    if (err == AS_OK)
        err = mfa_recovery_renew(&e, u.id, code, since, now_us, &codes);
    if (err == AS_ERR_INVALID_CODE)      /* replaced by a renewal since */
        err = code_failed(rc, err);
    if (err == AS_ERR_NOT_FOUND)
        err = res_fail(res, AS_ERR_CONFLICT,
                       "The second factor is not on for this account.");
    if (err == AS_OK) {
        hx_audit(rc, "mfa.recovery_codes_renewed", u.id, NULL);
        res_json(res, 200, codes_json(&codes));
        err = res->body ? AS_OK : AS_ERR_NOMEM;
    }
    crypt_wipe(&codes, sizeof codes);
    json_decref(in);
    return err;
}

/* The user a live login token belongs to, while active with the factor
 * on; 401 invalid_token or 403 account_disabled otherwise. */
static enum as_err token_user(struct req_ctx *rc, const char *tok,
                              struct user *u)
{
    struct mfa_env e = env_of(rc);
    struct core c = hx_core(rc);
    char uid[UUID_STR_LEN];
    enum as_err err = mfa_token_user(&e, tok, uid);

    if (err == AS_OK)
        err = core_user_get(&c, uid, u, rc->arena);
    if (err == AS_OK && !u->mfa_enabled)
        err = AS_ERR_INVALID_TOKEN;       /* turned off since the login */
    if (err == AS_ERR_INVALID_TOKEN || err == AS_ERR_NOT_FOUND)
        return res_fail(&rc->res, AS_ERR_INVALID_TOKEN,
                        "The mfa_token is invalid, expired, used, or "
                        "refused after too many wrong codes; log in "
                        "again.");
    if (err == AS_OK && !u->is_active)
        return hx_disabled(rc);
    return err;
}

enum as_err h_login_mfa(struct req_ctx *rc, struct response *res)
{
    json_t *in = NULL;
    const char *tok = NULL, *code = NULL;
    struct user u;
    enum as_err err = hx_keys_current(rc);

    if (err == AS_OK)
        err = read_fields(rc, &in, "code", &code, "mfa_token", &tok);
    if (err == AS_OK)
        err = token_user(rc, tok, &u);
    /* One of the token's tries is taken under the lockout, before the
     * code is looked at (core_code_check()); the code and the token are
     * used together: of two right codes sent with one token at once, the
     * one that loses keeps its code. */
    if (err == AS_OK) {
        err = check_code(rc, &u, code, tok, false);
        if (err == AS_ERR_INVALID_TOKEN)  /* the token's own detail kept */
            err = res_fail(res, err, "The mfa_token is used, refused after "
                                     "too many wrong codes, or its login "
                                     "ended meanwhile; log in again.");
    }
    if (err != AS_OK)
        goto out;
    /* Only a complete login ends the run of failures: its session, when
     * stored, ends it. */
    if (err == AS_OK)
        err = hx_start_session_amr(rc, &u, MFA_AMR_OTP, tok, NULL);
out:
    json_decref(in);
    return err;
}
