/* users.c: /api/v1/users — the caller's own account and admin
 * management. Who may call what is in the route table, not here. */
#include "hx.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

#include "accounts.h"
#include "cfg.h"
#include "clock.h"
#include "mail.h"
#include "password.h"
#include "scache.h"
#include "uuid.h"
#include "validate.h"

#define LIST_DEFAULT 50
#define LIST_MAX 100
#define MAX_Q 254

/* The caller's row from the user-row cache beside the session cache
 * (forgotten with it on every change made here: README.md, "Account
 * changes"); on an HTTP thread only from the cache. */
enum as_err h_me_get(struct req_ctx *rc, struct response *res)
{
    struct user u;
    enum as_err err = AS_OK;

    if (rc->nowait) {
        if (!scache_user_peek(rc->app->scache, rc->claims.sub, &u,
                              rc->arena)) {
            rc->need_db = true;           /* run again on the pool */
            return AS_OK;
        }
    } else {
        err = scache_user(rc->app->scache, rc->app->repo, rc->claims.sub,
                          &u, rc->arena);
        if (err == AS_ERR_NOT_FOUND)
            return res_fail(res, AS_ERR_INVALID_TOKEN,
                            "The account no longer exists.");
    }
    if (err != AS_OK)
        return err;
    free(res->raw);
    res->raw = v_user_text(&u);              /* no tree: the hot path */
    res->raw_type = "application/json";
    if (!res->raw)
        return res_json(res, 200, v_user_json(&u));
    res->status = 200;
    return AS_OK;
}

/* The enum user_field bits of the fields a PATCH body names. */
static unsigned named_fields(json_t *in)
{
    return (json_object_get(in, "email") ? UF_EMAIL : 0u) |
           (json_object_get(in, "full_name") ? UF_FULL_NAME : 0u) |
           (json_object_get(in, "role") ? UF_ROLE : 0u) |
           (json_object_get(in, "is_active") ? UF_ACTIVE : 0u);
}

/* Reads the fields `in` names into `p` (only those, so that a write
 * never touches the others). Adds field errors. *old_shape: the email
 * is one v_email() reads but no new address may be (v_new_email()),
 * which is refused only when it is not the account's own already: a
 * client that sends the user it read back must not get 422 for an
 * address stored before the rule. */
static void read_patch(struct req_ctx *rc, json_t *in, struct user_patch *p,
                       bool *old_shape)
{
    struct response *res = &rc->res;
    const char *name, *raw, *role = NULL;
    bool name_null, unused, active, present;

    if (v_string_or_null(res, in, "full_name", 1024, &name, &name_null) &&
        (name || name_null)) {
        if (name && !v_full_name(name))
            res_field(res, "full_name", "must be 1-200 printable "
                                        "characters");
        p->set |= UF_FULL_NAME;
        p->full_name = name;
    }
    if (json_object_get(in, "email") &&
        v_string_or_null(res, in, "email", 1024, &raw, &unused)) {
        p->email = raw ? v_email(rc->arena, raw) : NULL;
        if (!p->email)
            res_field(res, "email", "is not a valid email address");
        *old_shape = p->email && !v_new_email(rc->arena, raw);
        p->set |= UF_EMAIL;
    }
    if (v_string(res, in, "role", false, 16, &role) && role) {
        if (!role_parse(role, &p->role))
            res_field(res, "role", "must be \"user\" or \"admin\"");
        p->set |= UF_ROLE;
    }
    if (v_bool(res, in, "is_active", &active, &present) && present) {
        p->is_active = active;
        p->set |= UF_ACTIVE;
    }
}

/* Writes the fields `p` names of user `id` (account_patch) and answers
 * the user as written; maps refusals to their problems. */
static enum as_err save_patch(struct req_ctx *rc, enum account_actor who,
                              const char *id, const struct user_patch *p)
{
    struct response *res = &rc->res;
    struct user u;
    enum as_err err = account_patch(rc->app->repo, rc->app->scache, who, id,
                                    p, rc->ip, clock_ms(), &u, rc->arena);

    if (err == AS_ERR_EMAIL_TAKEN)
        return res_fail(res, err, "An account with this email already "
                                  "exists.");
    if (err == AS_ERR_LAST_ADMIN)
        return res_fail(res, err, "The last active admin cannot be demoted "
                                  "or deactivated.");
    if (err == AS_ERR_NOT_FOUND)
        return res_fail(res, err, "No such user.");
    if (err == AS_ERR_FORBIDDEN)
        return res_fail(res, err, "You cannot change your own role or "
                                  "is_active.");
    if (err != AS_OK)
        return err;
    if (p->set & UF_EMAIL)
        mail_wake(atomic_load(&rc->app->mailer));   /* the notice */
    hx_audit(rc, "user.updated", u.id,
             json_pack("{s:s, s:b, s:[s*s*s*s*]}", "role",
                       role_name(u.role), "is_active", u.is_active,
                       "fields", (p->set & UF_EMAIL) ? "email" : NULL,
                       (p->set & UF_FULL_NAME) ? "full_name" : NULL,
                       (p->set & UF_ROLE) ? "role" : NULL,
                       (p->set & UF_ACTIVE) ? "is_active" : NULL));
    return res_json(res, 200, v_user_json(&u));
}

/* Checks the password a change needs (account_needs_password): 401 when
 * it is missing or wrong. Runs on the hash pool (the route's flag). */
static enum as_err prove_password(struct req_ctx *rc, const struct user *u,
                                  const struct user_patch *p, const char *pw)
{
    if (!account_needs_password(ACCOUNT_SELF, u->email, p))
        return AS_OK;
    if (!pw)
        return res_fail(&rc->res, AS_ERR_BAD_CREDENTIALS,
                        "Changing the email needs current_password.");
    return hx_check_password(rc, u, pw);
}

/* 422 for a change to an address of the old shape (read_patch). */
static enum as_err refuse_old_shape(struct req_ctx *rc,
                                    const struct user_patch *p,
                                    bool old_shape)
{
    if (!old_shape || !(p->set & UF_EMAIL))
        return AS_OK;
    res_field(&rc->res, "email", "is not a valid email address");
    return AS_ERR_VALIDATION;
}

enum as_err h_me_patch(struct req_ctx *rc, struct response *res)
{
    json_t *in = NULL;
    const char *pw = NULL;
    struct user_patch p = { 0 };
    struct user u;
    bool old_shape = false;
    enum as_err err = req_json(rc, &in);

    if (err != AS_OK)
        goto out;
    if (account_may_change(ACCOUNT_SELF, named_fields(in)) != AS_OK) {
        err = res_fail(res, AS_ERR_FORBIDDEN,
                       "You cannot change your own role or is_active.");
        goto out;
    }
    if (json_object_get(in, "mfa_enabled")) {
        err = res_fail(res, AS_ERR_FORBIDDEN,
                       "The second factor is turned on and off through "
                       "/api/v1/auth/mfa/totp.");
        goto out;
    }
    if (json_object_get(in, "is_verified")) {
        err = res_fail(res, AS_ERR_FORBIDDEN,
                       "The email is verified through the link mailed by "
                       "/api/v1/auth/email/verify-request.");
        goto out;
    }
    read_patch(rc, in, &p, &old_shape);
    v_string(res, in, "current_password", false, HX_MAX_PASSWORD_BYTES,
             &pw);
    if (res->errors) {
        err = AS_ERR_VALIDATION;
        goto out;
    }
    err = hx_caller(rc, &u);
    if (err == AS_OK) {
        account_skip_same_email(u.email, &p);   /* nothing to write */
        err = refuse_old_shape(rc, &p, old_shape);
    }
    if (err == AS_OK)
        err = prove_password(rc, &u, &p, pw);
    if (err != AS_OK)
        goto out;
    err = save_patch(rc, ACCOUNT_SELF, u.id, &p);
out:
    json_decref(in);
    return err;
}

/* Deletes user `id` (sessions go with it). */
static enum as_err delete_user(struct req_ctx *rc, const char *id)
{
    enum as_err err = account_delete(rc->app->repo, rc->app->scache, id,
                                     clock_ms());

    if (err == AS_ERR_LAST_ADMIN)
        return res_fail(&rc->res, err,
                        "The last active admin cannot be deleted.");
    if (err == AS_ERR_NOT_FOUND)
        return res_fail(&rc->res, err, "No such user.");
    if (err == AS_ERR_CONFLICT) {
        /* it was ended (deactivated, sessions revoked) before it was
         * kept: a change to the user, logged as one */
        hx_audit(rc, "user.updated", id,
                 json_pack("{s:b, s:s}", "is_active", 0, "reason",
                           "deletion, kept: reactivated meanwhile"));
        return res_fail(&rc->res, err,
                        "The account was reactivated while it was being "
                        "deleted; it was kept.");
    }
    if (err != AS_OK)
        return err;
    hx_audit(rc, "user.deleted", id, NULL);
    return res_json(&rc->res, 204, NULL);
}

enum as_err h_me_delete(struct req_ctx *rc, struct response *res)
{
    json_t *in = NULL;
    const char *pw;
    struct user u;
    enum as_err err = req_json(rc, &in);

    if (err != AS_OK)
        goto out;
    if (!v_string(res, in, "password", true, HX_MAX_PASSWORD_BYTES, &pw)) {
        err = AS_ERR_VALIDATION;
        goto out;
    }
    err = hx_caller(rc, &u);
    if (err == AS_OK)
        err = hx_check_password(rc, &u, pw);
    if (err == AS_OK)
        err = delete_user(rc, u.id);
out:
    json_decref(in);
    return err;
}

/* Cursors are opaque to clients: base64url of the last id of a page. */
static const char *cursor_decode(struct arena *a, const char *c)
{
    unsigned char id[UUID_STR_LEN];
    size_t n = 0;

    if (strlen(c) > 64 ||
        !crypt_b64url_decode(c, strlen(c), id, sizeof id - 1, &n) ||
        n != UUID_STR_LEN - 1)
        return NULL;
    id[n] = '\0';
    return uuid_valid((const char *)id) ? arena_strdup(a, (char *)id) : NULL;
}

static json_t *cursor_encode(const char *id)
{
    char out[CRYPT_B64URL_LEN(UUID_STR_LEN)];

    crypt_b64url_encode(id, strlen(id), out, sizeof out);
    return json_string(out);
}

enum as_err h_users_list(struct req_ctx *rc, struct response *res)
{
    const char *lim = req_query(rc, "limit"), *cur = req_query(rc, "cursor");
    const char *q = req_query(rc, "q"), *after = NULL;
    struct core c = hx_core(rc);
    struct user *page;
    unsigned long limit = LIST_DEFAULT;
    size_t n = 0, i;
    json_t *items;
    char *end;
    enum as_err err;

    static const char *const args[] = { "limit", "cursor", "q" };
    size_t k;

    for (k = 0; k < sizeof args / sizeof args[0]; k++)
        if (req_query_count(rc, args[k]) > 1)
            res_field(res, args[k], "is given more than once");
    if (res->errors)
        return AS_ERR_VALIDATION;
    if (lim) {
        /* digits only: strtoul() would take "+5", " 5" and "-0" */
        limit = strtoul(lim, &end, 10);
        if (!*lim || lim[strspn(lim, "0123456789")] || *end || limit < 1 ||
            limit > LIST_MAX)
            res_field(res, "limit", "must be an integer from 1 to 100");
    }
    if (cur && !(after = cursor_decode(rc->arena, cur)))
        res_field(res, "cursor", "is not a cursor this server issued");
    if (q && strlen(q) > MAX_Q)
        res_field(res, "q", "is too long");
    if (res->errors)
        return AS_ERR_VALIDATION;
    page = arena_alloc(rc->arena, (limit + 1) * sizeof *page);
    if (!page)
        return AS_ERR_NOMEM;
    err = core_user_list(&c, q && *q ? q : NULL, after, (unsigned)limit + 1,
                         page, &n, rc->arena);
    if (err != AS_OK)
        return err;
    items = json_array();
    for (i = 0; i < n && i < limit; i++)
        json_array_append_new(items, v_user_json(&page[i]));
    return res_json(res, 200, json_pack("{s:o, s:o}", "items", items,
                                        "next_cursor",
                                        n > limit
                                            ? cursor_encode(page[limit - 1].id)
                                            : json_null()));
}

enum as_err h_users_create(struct req_ctx *rc, struct response *res)
{
    (void)res;
    return hx_create_user(rc, true, "user.created");
}

/* Loads the user named by {id}; 404 for unknown or malformed ids. */
static enum as_err target(struct req_ctx *rc, struct user *u)
{
    struct core c = hx_core(rc);
    enum as_err err = core_user_get(&c, rc->param_id, u, rc->arena);

    if (err == AS_ERR_NOT_FOUND)
        return res_fail(&rc->res, err, "No such user.");
    return err;
}

enum as_err h_user_get(struct req_ctx *rc, struct response *res)
{
    struct user u;
    enum as_err err = target(rc, &u);

    return err != AS_OK ? err : res_json(res, 200, v_user_json(&u));
}

/* An admin's PATCH naming an address of the old shape: dropped when it
 * is the target's own (nothing to write), else 422. */
static enum as_err skip_own_old_shape(struct req_ctx *rc,
                                      struct user_patch *p)
{
    struct user u;
    enum as_err err = target(rc, &u);

    if (err == AS_OK)
        account_skip_same_email(u.email, p);
    return err == AS_OK ? refuse_old_shape(rc, p, true) : err;
}

enum as_err h_user_patch(struct req_ctx *rc, struct response *res)
{
    json_t *in = NULL;
    struct user_patch p = { 0 };
    bool mfa_on = false, mfa_present = false, was_on = false;
    bool old_shape = false;
    enum as_err err = req_json(rc, &in);

    if (err != AS_OK)
        goto out;
    read_patch(rc, in, &p, &old_shape);
    /* mfa_enabled: false resets the second factor; true is refused */
    if (v_bool(res, in, "mfa_enabled", &mfa_on, &mfa_present) &&
        mfa_present && mfa_on)
        res_field(res, "mfa_enabled", "can only be turned off here; the "
                                      "user turns it on");
    /* It was ignored: a 200 for a change not made. */
    if (json_object_get(in, "is_verified"))
        res_field(res, "is_verified", "cannot be changed: the user "
                                      "verifies the address through the "
                                      "mailed link");
    if (res->errors)
        err = AS_ERR_VALIDATION;
    else if (!uuid_valid(rc->param_id))
        err = res_fail(res, AS_ERR_NOT_FOUND, "No such user.");
    else if (old_shape)             /* the target's own address, or 422 */
        err = skip_own_old_shape(rc, &p);
    if (err == AS_OK) {
        /* The reset in the patch's transaction: a failure leaves
         * neither half done. */
        if (mfa_present) {
            p.set |= UF_MFA_OFF;
            p.mfa_was_on = &was_on;
        }
        err = save_patch(rc, ACCOUNT_ADMIN, rc->param_id, &p);
    }
    if (err == AS_OK && mfa_present)
        hx_audit(rc, "mfa.reset", rc->param_id,
                 json_pack("{s:b}", "was_on", was_on));
out:
    json_decref(in);
    return err;
}

enum as_err h_user_delete(struct req_ctx *rc, struct response *res)
{
    struct user u;
    enum as_err err = target(rc, &u);

    (void)res;
    return err != AS_OK ? err : delete_user(rc, u.id);
}
