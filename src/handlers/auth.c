/* auth.c: /api/v1/auth — register and log in (with the lockout). */
#include "hx.h"

#include <stdio.h>
#include <string.h>

#include "crypto.h"

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

/* Checks the credentials (core_login: counted under the lockout first,
 * an unknown email costing a dummy verification) and answers a refusal;
 * logs a failed or locked attempt. On AS_OK, *u is the active user. */
static enum as_err login_check(struct req_ctx *rc, const char *email,
                               const char *raw, const char *pw,
                               struct user *u)
{
    struct core c = hx_core(rc);
    int64_t retry = 0;
    enum as_err err = core_login(&c, email, raw, pw, rc->ip, u, rc->arena,
                                 &retry);

    if (err == AS_ERR_RATE_LIMITED || err == AS_ERR_BAD_CREDENTIALS)
        log_event(LOG_INFO, "auth.login_failed", rc->request_id,
                  json_pack("{s:s, s:b}", "ip", rc->ip, "refused_locked",
                            err == AS_ERR_RATE_LIMITED));
    if (err == AS_ERR_RATE_LIMITED)
        return hx_locked(rc, retry);
    if (err == AS_ERR_BAD_CREDENTIALS)
        return hx_bad_credentials(rc);
    if (err == AS_ERR_DISABLED)
        return hx_disabled(rc);
    return err;
}

enum as_err h_login(struct req_ctx *rc, struct response *res)
{
    json_t *in = NULL;
    const char *raw_email = NULL, *pw = NULL, *email = NULL;
    struct user u = { .is_active = false };
    enum as_err err = hx_keys_current(rc);

    (void)res;
    if (err == AS_OK)
        err = req_json(rc, &in);
    if (err == AS_OK)
        err = login_input(rc, in, &raw_email, &pw);
    if (err == AS_OK) {
        email = v_email(rc->arena, raw_email);
        err = login_check(rc, email, raw_email, pw, &u);
    }
    /* With the second factor on, only a code completes the login. */
    if (err == AS_OK)
        err = u.mfa_enabled ? hx_mfa_challenge(rc, &u)
                            : hx_start_session(rc, &u);
    json_decref(in);
    return err;
}
