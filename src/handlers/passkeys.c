/* passkeys.c: /api/v1/auth/passkeys/...: passkeys over HTTP. The rules
 * are in src/core/passkeys.c, the WebAuthn checks in src/sec/webauthn.c;
 * this file reads requests, answers, audits, and starts the session of a
 * passkey login. */
#include "hx.h"

#include <stdatomic.h>
#include <string.h>

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "mail.h"
#include "passkeys.h"
#include "validate.h"

#define MAX_NAME_BYTES 256
/* Both registration routes answer the cap alike (409 conflict). */
#define MOST_PASSKEYS "This account has the most passkeys allowed; " \
                      "delete one first."

static struct passkey_env env_of(struct req_ctx *rc)
{
    const struct cfg *cfg = rc->app->cfg;
    struct passkey_env e = { .repo = rc->app->repo,
                             .cache = rc->app->scache,
                             .rp = { .rp_id = cfg->webauthn_rp_id,
                                     .origins = cfg->webauthn_origins },
                             .rp_name = cfg->webauthn_rp_name,
                             .now_ms = clock_ms() };

    return e;
}

/* Logs why a ceremony was refused (never the credential itself). */
static void log_refusal(struct req_ctx *rc, const char *event,
                        const struct passkey_refusal *why)
{
    log_event(LOG_INFO, event, rc->request_id,
              json_pack("{s:s, s:s, s:s?, s:s}", "ip", rc->ip, "reason",
                        why->reason ? why->reason : "?", "passkey_id",
                        why->found.id[0] ? why->found.id : NULL, "check",
                        wa_result_name(why->why)));
}

enum as_err h_passkey_register_options(struct req_ctx *rc,
                                       struct response *res)
{
    struct passkey_env e = env_of(rc);
    json_t *in = NULL, *opts = NULL;
    struct user u;
    enum as_err err = req_json(rc, &in);

    if (err == AS_OK)
        err = hx_caller(rc, &u);
    if (err == AS_OK)
        err = passkey_register_options(&e, &u, &opts, rc->arena);
    if (err == AS_ERR_CONFLICT)
        res_fail(res, err, MOST_PASSKEYS);
    if (err == AS_OK)
        err = res_json(res, 200, json_pack("{s:o}", "publicKey", opts));
    if (err == AS_OK && !res->body)
        err = AS_ERR_NOMEM;
    json_decref(in);
    return err;
}

enum as_err h_passkey_register(struct req_ctx *rc, struct response *res)
{
    struct passkey_env e = env_of(rc);
    struct passkey_refusal why;
    struct passkey pk;
    json_t *in = NULL;
    const char *name = NULL;
    struct user u;
    enum as_err err = req_json(rc, &in);

    if (err != AS_OK)
        goto out;
    if (!json_is_object(json_object_get(in, "credential")))
        res_field(res, "credential", "must be a RegistrationResponseJSON "
                                     "object");
    v_string(res, in, "name", false, MAX_NAME_BYTES, &name);
    if (name && !v_full_name(name))
        res_field(res, "name", "must be 1-200 printable characters");
    if (res->errors) {
        err = AS_ERR_VALIDATION;
        goto out;
    }
    err = hx_caller(rc, &u);
    if (err == AS_OK)
        err = passkey_register_finish(&e, &u, json_object_get(in,
                                                              "credential"),
                                      name, &pk, &why, rc->arena);
    if (err == AS_ERR_BAD_PASSKEY) {
        log_refusal(rc, "auth.passkey_register_refused", &why);
        res_fail(res, err, "The credential did not pass the WebAuthn "
                           "checks, or its challenge is unknown, used or "
                           "expired; start again.");
    }
    if (err == AS_ERR_CONFLICT)
        res_fail(res, err, MOST_PASSKEYS);
    if (err != AS_OK)
        goto out;
    mail_wake(atomic_load(&rc->app->mailer));      /* its notice */
    hx_audit(rc, "passkey.registered", u.id,
             json_pack("{s:s}", "passkey_id", pk.id));
    res_header(rc, "Location", "/api/v1/auth/passkeys");
    res_json(res, 201, passkey_json(&pk));
    err = res->body ? AS_OK : AS_ERR_NOMEM;
out:
    json_decref(in);
    return err;
}

enum as_err h_passkeys_list(struct req_ctx *rc, struct response *res)
{
    struct passkey_env e = env_of(rc);
    struct passkey *items = NULL;
    json_t *arr = json_array();
    size_t n = 0, i;
    enum as_err err = arr ? passkey_list_own(&e, rc->claims.sub, &items, &n,
                                             rc->arena)
                          : AS_ERR_NOMEM;

    for (i = 0; err == AS_OK && i < n; i++)
        if (json_array_append_new(arr, passkey_json(&items[i])) != 0)
            err = AS_ERR_NOMEM;
    if (err == AS_OK) {
        res_json(res, 200, json_pack("{s:O}", "items", arr));
        err = res->body ? AS_OK : AS_ERR_NOMEM;
    }
    json_decref(arr);
    return err;
}

enum as_err h_passkey_delete(struct req_ctx *rc, struct response *res)
{
    struct passkey_env e = env_of(rc);
    enum as_err err = passkey_delete_own(&e, rc->param_id, rc->claims.sub);

    if (err == AS_ERR_NOT_FOUND)
        return res_fail(res, err, "You have no passkey with this id.");
    if (err != AS_OK)
        return err;
    hx_audit(rc, "passkey.deleted", rc->claims.sub,
             json_pack("{s:s}", "passkey_id", rc->param_id));
    return res_json(res, 204, NULL);
}

enum as_err h_passkey_login_options(struct req_ctx *rc,
                                    struct response *res)
{
    struct passkey_env e = env_of(rc);
    json_t *in = NULL, *opts = NULL;
    const char *email = NULL;
    enum as_err err = req_json(rc, &in);

    /* An email may be sent; the answer never depends on it (passkeys are
     * discoverable), so it tells nothing about which accounts exist. */
    if (err == AS_OK)
        v_string(res, in, "email", false, 1024, &email);
    if (err == AS_OK && res->errors)
        err = AS_ERR_VALIDATION;
    if (err == AS_OK)
        err = passkey_login_options(&e, &opts);
    if (err == AS_OK) {
        res_json(res, 200, json_pack("{s:o}", "publicKey", opts));
        err = res->body ? AS_OK : AS_ERR_NOMEM;
    }
    json_decref(in);
    return err;
}

enum as_err h_passkey_login(struct req_ctx *rc, struct response *res)
{
    struct passkey_env e = env_of(rc);
    struct passkey_refusal why;
    struct passkey pk;
    json_t *in = NULL;
    struct user u;
    enum as_err err = hx_keys_current(rc);

    if (err == AS_OK)
        err = req_json(rc, &in);
    if (err != AS_OK)
        goto out;
    if (!json_is_object(json_object_get(in, "credential"))) {
        err = res_field(res, "credential",
                        "must be an AuthenticationResponseJSON object");
        goto out;
    }
    err = passkey_login_finish(&e, json_object_get(in, "credential"), &pk,
                               &u, &why, rc->arena);
    if (err == AS_ERR_PASSKEY_REFUSED) {
        log_refusal(rc, "auth.passkey_login_refused", &why);
        if (why.why == WA_CLONED)
            hx_audit(rc, "passkey.clone_suspected", why.found.user_id,
                     json_pack("{s:s}", "passkey_id", why.found.id));
        res_fail(res, err, "The passkey was not accepted.");
        goto out;
    }
    if (err == AS_OK && !u.is_active)
        err = hx_disabled(rc);
    if (err != AS_OK)
        goto out;
    hx_audit(rc, "passkey.used", u.id,
             json_pack("{s:s}", "passkey_id", pk.id));
    /* A passkey login is a complete login: its session, when stored,
     * ends the run of failures. */
    err = hx_start_session_amr(rc, &u, PASSKEY_AMR, NULL, pk.id);
    /* The account's password changed (a reset, which on an unverified
     * account also deletes this passkey) after it was read, or the
     * passkey was deleted: refused as a login that started after the
     * change would be. */
    if (err == AS_ERR_BAD_CREDENTIALS)
        err = res_fail(res, AS_ERR_PASSKEY_REFUSED,
                       "The passkey was not accepted.");
out:
    json_decref(in);
    return err;
}
