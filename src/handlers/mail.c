/* mail.c: /api/v1/auth — password reset and email verification by
 * mailed single-use links. The mail itself goes through the outbox
 * (src/mail.c); these handlers only issue and redeem tokens. */
#include "hx.h"

#include <stdatomic.h>
#include <string.h>

#include "crypto.h"

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "mail.h"
#include "password.h"
#include "repo.h"
#include "scache.h"
#include "sec.h"
#include "uuid.h"
#include "validate.h"

#define MAX_TOKEN_FIELD 512

static const char bad_token[] =
    "The link is invalid, expired or already used.";

enum as_err h_password_forgot(struct req_ctx *rc, struct response *res)
{
    json_t *in = NULL;
    const char *raw = NULL, *email = NULL;
    struct core c;
    enum as_err err = req_json(rc, &in);

    if (err != AS_OK)
        goto out;
    if (v_string(res, in, "email", true, 1024, &raw) &&
        !(email = v_email(rc->arena, raw)))
        res_field(res, "email", "is not a valid email address");
    if (res->errors) {
        err = AS_ERR_VALIDATION;
        goto out;
    }
    /* Known or not, the same work and the same time (README.md, "Mail"):
     * the request only queues the mail (core_link_request_reset) and
     * answers 202 before anything depends on whether the account
     * exists. */
    c = hx_core(rc);
    err = core_link_request_reset(&c, email);
    if (err == AS_OK) {
        mail_wake(atomic_load(&rc->app->mailer));
        log_event(LOG_INFO, "auth.password_reset_requested", rc->request_id,
                  json_pack("{s:s}", "ip", rc->ip));
        err = res_json(res, 202, NULL);
    }
out:
    json_decref(in);
    return err;
}

/* Reads the "token" field, and "new_password" into *pw when `pw` is not
 * NULL: 422 when one is absent or not a string, then 400 invalid_token
 * when the token cannot be one of ours. Hashes the token into `hash`. */
static enum as_err token_fields(struct req_ctx *rc, json_t *in,
                                uint8_t hash[REPO_HASH_LEN], const char **pw)
{
    const char *tok = NULL;

    v_string(&rc->res, in, "token", true, MAX_TOKEN_FIELD, &tok);
    if (pw)
        v_string(&rc->res, in, "new_password", true, HX_MAX_PASSWORD_BYTES,
                 pw);
    if (rc->res.errors)
        return AS_ERR_VALIDATION;
    if (!sec_token_valid(tok))
        return res_fail(&rc->res, AS_ERR_BAD_TOKEN_PARAM, bad_token);
    sec_token_hash(tok, hash);
    return AS_OK;
}

enum as_err h_password_reset(struct req_ctx *rc, struct response *res)
{
    struct app *app = rc->app;
    struct core c = hx_core(rc);
    json_t *in = NULL;
    const char *pw = NULL, *why;
    uint8_t hash[REPO_HASH_LEN];
    struct user u;
    enum as_err err = req_json(rc, &in);

    if (err != AS_OK)
        goto out;
    err = token_fields(rc, in, hash, &pw);
    if (err != AS_OK)
        goto out;
    err = core_link_reset_user(&c, hash, &u, rc->arena);
    if (err == AS_ERR_NOT_FOUND) {
        err = res_fail(res, AS_ERR_BAD_TOKEN_PARAM, bad_token);
        goto out;
    }
    if (err != AS_OK)
        goto out;
    why = pw_policy_check(pw, u.email, app->cfg->password_min_length);
    if (why) {
        err = res_field(res, "new_password", why);
        goto out;
    }
    err = core_link_reset(&c, hash, &u, pw);
    if (err == AS_ERR_NOT_FOUND) {      /* used meanwhile, or email moved */
        err = res_fail(res, AS_ERR_BAD_TOKEN_PARAM, bad_token);
        goto out;
    }
    if (err != AS_OK)
        goto out;
    hx_audit(rc, "password_reset", u.id, NULL);
    res_json(res, 204, NULL);
out:
    json_decref(in);
    return err;
}

enum as_err h_email_verify_request(struct req_ctx *rc, struct response *res)
{
    struct core c = hx_core(rc);
    struct user u;
    enum as_err err = hx_caller(rc, &u);

    if (err != AS_OK)
        return err;
    /* Already verified: nothing to send, the same answer. */
    err = core_link_request_verify(&c, &u);
    if (err == AS_OK) {
        mail_wake(atomic_load(&rc->app->mailer));
        hx_audit(rc, "email_verification_requested", u.id, NULL);
    }
    if (err == AS_OK || err == AS_ERR_NOT_FOUND)
        err = res_json(res, 202, NULL);
    return err;
}

enum as_err h_email_verify(struct req_ctx *rc, struct response *res)
{
    json_t *in = NULL;
    uint8_t hash[REPO_HASH_LEN];
    char uid[UUID_STR_LEN] = "";
    struct core c = hx_core(rc);
    enum as_err err = req_json(rc, &in);

    if (err == AS_OK)
        err = token_fields(rc, in, hash, NULL);
    if (err == AS_OK)
        err = core_link_verify(&c, hash, uid);
    if (err == AS_ERR_NOT_FOUND) {
        err = res_fail(res, AS_ERR_BAD_TOKEN_PARAM, bad_token);
        goto out;
    }
    if (err != AS_OK)
        goto out;
    hx_audit(rc, "email_verified", uid, NULL);
    res_json(res, 204, NULL);
out:
    json_decref(in);
    return err;
}
