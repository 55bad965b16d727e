/* auth.c: /api/v1/auth — register and log in (with the lockout). */
#include "hx.h"

#include <stdio.h>
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

/* Failures of one email from every address together lock it only past
 * this many times AUTH_LOCKOUT_THRESHOLD (API.md). */
#define LOCKOUT_ALL_FACTOR 10u

/* Counts a failed login of `email` (NULL: not an address, not counted)
 * from the client, then answers `refusal`: AS_ERR_BAD_CREDENTIALS, or
 * AS_ERR_RATE_LIMITED for an attempt made while locked, with a
 * Retry-After of the lock that now runs. A repository error instead
 * when the failure could not be counted. */
static enum as_err login_failed(struct req_ctx *rc, const char *email,
                                enum as_err refusal)
{
    const struct cfg *cfg = rc->app->cfg;
    int64_t now = clock_ms(), until = 0, wait_s;
    enum as_err err = AS_OK;
    char retry[24];

    if (email)
        err = repo_login_failure_add(
            rc->app->repo, email, rc->ip, now, cfg->lockout_threshold,
            cfg->lockout_threshold * LOCKOUT_ALL_FACTOR,
            (int64_t)cfg->lockout_max_seconds * 1000, &until);
    if (err != AS_OK)
        return err;
    wait_s = until > now ? (until - now + 999) / 1000 : 0;
    log_event(LOG_INFO, "auth.login_failed", rc->request_id,
              json_pack("{s:s, s:b, s:I}", "ip", rc->ip, "refused_locked",
                        refusal == AS_ERR_RATE_LIMITED, "locked_s",
                        (json_int_t)wait_s));
    if (refusal != AS_ERR_RATE_LIMITED)
        return res_fail(&rc->res, AS_ERR_BAD_CREDENTIALS,
                        "The email or password is incorrect.");
    snprintf(retry, sizeof retry, "%lld", (long long)(wait_s ? wait_s : 1));
    res_header(rc, "Retry-After", retry);
    return res_fail(&rc->res, AS_ERR_RATE_LIMITED,
                    "Too many failed logins for this account from this "
                    "address; retry later.");
}

/* Checks the credentials, the lockout first: a locked (email, address)
 * is refused, and counted, without hashing (known and unknown emails
 * alike, so the answer reveals nothing). An unknown email costs one
 * dummy verification, like a wrong password, and is counted the same.
 * On AS_OK, *u is the user and *counted tells whether counts exist. */
static enum as_err login_check(struct req_ctx *rc, const char *email,
                               const char *pw, struct user *u,
                               bool *counted)
{
    struct repo *repo = rc->app->repo;
    int64_t mine = 0, all = 0, until = 0;
    enum as_err err = AS_OK;

    *counted = false;
    if (email)
        err = repo_login_failures_get(repo, email, rc->ip, &mine, &all,
                                      &until);
    if (err != AS_OK)
        return err;
    if (until > clock_ms())
        return login_failed(rc, email, AS_ERR_RATE_LIMITED);
    *counted = mine > 0 || all > 0;
    err = email ? repo_user_by_email(repo, email, u, rc->arena)
                : AS_ERR_NOT_FOUND;
    if (err == AS_ERR_NOT_FOUND) {
        pw_verify_dummy(pw);              /* same cost as a wrong password */
        err = AS_ERR_BAD_CREDENTIALS;
    } else if (err == AS_OK) {
        err = pw_verify(u->password_hash, pw);
    }
    if (err == AS_ERR_BAD_CREDENTIALS)
        return login_failed(rc, email, AS_ERR_BAD_CREDENTIALS);
    return err;
}

enum as_err h_login(struct req_ctx *rc, struct response *res)
{
    struct app *app = rc->app;
    json_t *in = NULL;
    const char *raw_email = NULL, *pw = NULL, *email = NULL;
    struct user u = { .is_active = false };
    char fresh[PW_HASH_MAX];
    bool counted = false;
    enum as_err err = req_json(rc, &in);

    fresh[0] = '\0';
    if (err == AS_OK)
        err = login_input(rc, in, &raw_email, &pw);
    if (err == AS_OK) {
        email = v_email(rc->arena, raw_email);
        err = login_check(rc, email, pw, &u, &counted);
    }
    if (err != AS_OK)
        goto out;
    if (!u.is_active) {
        err = res_fail(res, AS_ERR_DISABLED, "This account is disabled.");
        goto out;
    }
    /* A success ends the run of failures (a failure to forget them is
     * logged by the repository and does not cost the user the login). */
    if (counted && !u.mfa_enabled)     /* else only a complete login */
        repo_login_failures_clear(app->repo, email, rc->ip);
    if (pw_needs_rehash(u.password_hash, &app->pw) &&
        pw_hash(pw, &app->pw, fresh) == AS_OK)
        repo_user_rehash(app->repo, u.id, u.password_hash, fresh);
    err = u.mfa_enabled ? hx_mfa_challenge(rc, &u)
                        : hx_start_session(rc, &u);
out:
    sodium_memzero(fresh, sizeof fresh);
    json_decref(in);
    return err;
}
