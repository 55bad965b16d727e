/* auth.c: /api/v1/auth — register and log in (with the lockout). */
#include "hx.h"

#include <stdio.h>
#include <string.h>

#include "crypt.h"

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "password.h"
#include "repo.h"
#include "sec.h"
#include "uuid.h"
#include "validate.h"

enum as_err h_register(struct req_ctx *rc, struct response *res)
{
    (void)res;
    return hx_create_user(rc, false, "user.registered");
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
    v_string(res, in, "password", true, HX_MAX_PASSWORD_BYTES, pw);
    return res->errors ? AS_ERR_VALIDATION : AS_OK;
}

/* Checks the credentials under the lockout (src/lockout.c): the attempt
 * is counted as a failure first, atomically with the lock check, and a
 * locked (email, address) is refused without hashing (known and unknown
 * emails alike, so the answer reveals nothing). An unknown email costs
 * one dummy verification, like a wrong password, and is counted the
 * same. On AS_OK, *u is the user; the count stands until the login is
 * complete (hx_lockout_passed). */
static enum as_err login_check(struct req_ctx *rc, const char *email,
                               const char *pw, struct user *u)
{
    struct repo *repo = rc->app->repo;
    enum as_err err = email ? hx_lockout_begin(rc, email) : AS_OK;

    if (err == AS_ERR_RATE_LIMITED)
        log_event(LOG_INFO, "auth.login_failed", rc->request_id,
                  json_pack("{s:s, s:b}", "ip", rc->ip, "refused_locked",
                            1));
    if (err != AS_OK)
        return err;
    err = email ? repo_user_by_email(repo, email, u, rc->arena)
                : AS_ERR_NOT_FOUND;
    if (err == AS_ERR_NOT_FOUND) {
        pw_verify_dummy(pw);              /* same cost as a wrong password */
        err = AS_ERR_BAD_CREDENTIALS;
    } else if (err == AS_OK) {
        err = pw_verify(u->password_hash, pw);
    }
    if (err != AS_ERR_BAD_CREDENTIALS)
        return err;
    log_event(LOG_INFO, "auth.login_failed", rc->request_id,
              json_pack("{s:s, s:b}", "ip", rc->ip, "refused_locked", 0));
    return res_fail(&rc->res, AS_ERR_BAD_CREDENTIALS,
                    "The email or password is incorrect.");
}

enum as_err h_login(struct req_ctx *rc, struct response *res)
{
    struct app *app = rc->app;
    json_t *in = NULL;
    const char *raw_email = NULL, *pw = NULL, *email = NULL;
    struct user u = { .is_active = false };
    char fresh[PW_HASH_MAX];
    enum as_err err = req_json(rc, &in);

    fresh[0] = '\0';
    if (err == AS_OK)
        err = login_input(rc, in, &raw_email, &pw);
    if (err == AS_OK) {
        email = v_email(rc->arena, raw_email);
        err = login_check(rc, email, pw, &u);
    }
    if (err != AS_OK)
        goto out;
    if (!u.is_active) {
        err = res_fail(res, AS_ERR_DISABLED, "This account is disabled.");
        goto out;
    }
    /* A complete login ends the run of failures (a failure to forget
     * them is logged by the repository and does not cost the login); with
     * the second factor on, only the code completes it. */
    if (!u.mfa_enabled)
        hx_lockout_passed(rc, email);
    else
        hx_lockout_refund(rc, email);    /* right, but not complete yet */
    if (pw_needs_rehash(u.password_hash, &app->pw) &&
        pw_hash(pw, &app->pw, fresh) == AS_OK)
        repo_user_rehash(app->repo, u.id, u.password_hash, fresh);
    err = u.mfa_enabled ? hx_mfa_challenge(rc, &u)
                        : hx_start_session(rc, &u);
out:
    crypt_wipe(fresh, sizeof fresh);
    json_decref(in);
    return err;
}
