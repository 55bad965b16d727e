/* users.c: /api/v1/users — the caller's own account and admin
 * management. Who may call what is in the route table, not here. */
#include "hx.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cfg.h"
#include "clock.h"
#include "password.h"
#include "scache.h"
#include "uuid.h"
#include "validate.h"

#define LIST_DEFAULT 50
#define LIST_MAX 100
#define MAX_Q 254

enum as_err h_me_get(struct req_ctx *rc, struct response *res)
{
    struct user u;
    enum as_err err = hx_caller(rc, &u);

    return err != AS_OK ? err : res_json(res, 200, v_user_json(&u));
}

/* Applies full_name and email of `in` to `u`; a changed email resets
 * is_verified. Adds field errors. */
static void patch_profile(struct req_ctx *rc, json_t *in, struct user *u)
{
    struct response *res = &rc->res;
    const char *name, *raw;
    bool name_null, unused;

    if (v_string_or_null(res, in, "full_name", 1024, &name, &name_null)) {
        if (name && !v_full_name(name))
            res_field(res, "full_name", "must be 1-200 printable "
                                        "characters");
        else if (name || name_null)
            u->full_name = name;
    }
    if (v_string_or_null(res, in, "email", 1024, &raw, &unused) &&
        json_object_get(in, "email")) {
        const char *email = raw ? v_email(rc->arena, raw) : NULL;

        if (!email)
            res_field(res, "email", "is not a valid email address");
        else if (strcmp(email, u->email) != 0) {
            u->email = email;
            u->is_verified = false;
        }
    }
}

/* Writes `u` and answers it; maps conflicts to their problems. */
static enum as_err save_user(struct req_ctx *rc, struct user *u,
                             bool was_active, const char *action)
{
    struct response *res = &rc->res;
    int64_t now = clock_ms();
    enum as_err err = repo_user_update(rc->app->repo, u, now);

    if (err == AS_ERR_EMAIL_TAKEN)
        return res_fail(res, err, "An account with this email already "
                                  "exists.");
    if (err == AS_ERR_LAST_ADMIN)
        return res_fail(res, err, "The last active admin cannot be demoted "
                                  "or deactivated.");
    if (err == AS_ERR_NOT_FOUND)
        return res_fail(res, err, "No such user.");
    if (err != AS_OK)
        return err;
    if (was_active && !u->is_active)
        scache_forget_user(rc->app->scache, u->id);
    u->updated_at = now;
    hx_audit(rc, action, u->id, json_pack("{s:s, s:b}", "role",
                                          v_role_name(u->role), "is_active",
                                          u->is_active));
    return res_json(res, 200, v_user_json(u));
}

enum as_err h_me_patch(struct req_ctx *rc, struct response *res)
{
    json_t *in = NULL;
    struct user u;
    enum as_err err = req_json(rc, &in);

    if (err != AS_OK)
        goto out;
    if (json_object_get(in, "role") || json_object_get(in, "is_active")) {
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
    err = hx_caller(rc, &u);
    if (err != AS_OK)
        goto out;
    patch_profile(rc, in, &u);
    err = res->errors ? AS_ERR_VALIDATION
                      : save_user(rc, &u, u.is_active, "user.updated");
out:
    json_decref(in);
    return err;
}

/* Deletes user `id` (sessions go with it). */
static enum as_err delete_user(struct req_ctx *rc, const char *id)
{
    enum as_err err = repo_user_delete(rc->app->repo, id);

    if (err == AS_ERR_LAST_ADMIN)
        return res_fail(&rc->res, err,
                        "The last active admin cannot be deleted.");
    if (err == AS_ERR_NOT_FOUND)
        return res_fail(&rc->res, err, "No such user.");
    if (err != AS_OK)
        return err;
    scache_forget_user(rc->app->scache, id);
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
        sodium_base642bin(id, sizeof id - 1, c, strlen(c), NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        n != UUID_STR_LEN - 1)
        return NULL;
    id[n] = '\0';
    return uuid_valid((const char *)id) ? arena_strdup(a, (char *)id) : NULL;
}

static json_t *cursor_encode(const char *id)
{
    char out[sodium_base64_ENCODED_LEN(UUID_STR_LEN,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING)];

    sodium_bin2base64(out, sizeof out, (const unsigned char *)id, strlen(id),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return json_string(out);
}

enum as_err h_users_list(struct req_ctx *rc, struct response *res)
{
    const char *lim = req_query(rc, "limit"), *cur = req_query(rc, "cursor");
    const char *q = req_query(rc, "q"), *after = NULL;
    struct user *page;
    unsigned long limit = LIST_DEFAULT;
    size_t n = 0, i;
    json_t *items;
    char *end;
    enum as_err err;

    if (lim) {
        limit = strtoul(lim, &end, 10);
        if (!*lim || *end || lim[0] == '-' || limit < 1 || limit > LIST_MAX)
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
    err = repo_user_list(rc->app->repo, q && *q ? q : NULL, after,
                         (unsigned)limit + 1, page, &n, rc->arena);
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
    enum as_err err = AS_ERR_NOT_FOUND;

    if (uuid_valid(rc->param_id))
        err = repo_user_by_id(rc->app->repo, rc->param_id, u, rc->arena);
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

enum as_err h_user_patch(struct req_ctx *rc, struct response *res)
{
    json_t *in = NULL;
    const char *role;
    struct user u;
    bool active, present, was_active, mfa_on = false, mfa_present = false;
    enum as_err err = req_json(rc, &in);

    if (err == AS_OK)
        err = target(rc, &u);
    if (err != AS_OK)
        goto out;
    was_active = u.is_active;
    patch_profile(rc, in, &u);
    if (v_string(res, in, "role", false, 16, &role) && role &&
        !v_role(role, &u.role))
        res_field(res, "role", "must be \"user\" or \"admin\"");
    if (v_bool(res, in, "is_active", &active, &present) && present)
        u.is_active = active;
    /* mfa_enabled: false resets the second factor; true is refused */
    if (v_bool(res, in, "mfa_enabled", &mfa_on, &mfa_present) &&
        mfa_present && mfa_on)
        res_field(res, "mfa_enabled", "can only be turned off here; the "
                                      "user turns it on");
    err = res->errors ? AS_ERR_VALIDATION
                      : save_user(rc, &u, was_active, "user.updated");
    if (err == AS_OK && mfa_present)
        err = hx_mfa_reset(rc, &u);
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
