/* users.c: the users of the core: the context every rule takes, reading,
 * creating and listing users, setting a password (and what that revokes)
 * and lifting a lockout. No HTTP, no SQL. */
#include "core.h"

#include <string.h>

#include "clock.h"
#include "crypto.h"
#include "lockout.h"
#include "scache.h"

void core_init(struct core *c, struct repo *r, struct scache *sc,
               const struct cfg *cfg, const struct pw_params *pw,
               const struct sec_keys *keys)
{
    *c = (struct core){ .repo = r, .scache = sc, .cfg = cfg, .pw = pw,
                        .keys = keys, .now_ms = clock_ms,
                        .new_id = uuid_v7_new, .new_token = sec_token_new };
}

enum as_err core_user_get(const struct core *c, const char *id,
                          struct user *out, struct arena *a)
{
    if (!id || !uuid_valid(id))
        return AS_ERR_NOT_FOUND;
    return repo_user_by_id(c->repo, id, out, a);
}

enum as_err core_user_by_email(const struct core *c, const char *email,
                               struct user *out, struct arena *a)
{
    return email ? repo_user_by_email(c->repo, email, out, a)
                 : AS_ERR_NOT_FOUND;
}

enum as_err core_user_create(const struct core *c, struct user *u,
                             const char *pw)
{
    char hash[PW_HASH_MAX] = "";
    enum as_err err = pw_hash(pw, c->pw, hash);

    if (err == AS_OK) {
        c->new_id(u->id);
        u->password_hash = hash;
        u->created_at = u->updated_at = c->now_ms();
        err = repo_user_insert(c->repo, u);
    }
    u->password_hash = NULL;
    crypt_wipe(hash, sizeof hash);
    return err;
}

enum as_err core_user_list(const struct core *c, const char *q,
                           const char *after, unsigned limit,
                           struct user *out, size_t *n, struct arena *a)
{
    return repo_user_list(c->repo, q, after, limit, out, n, a);
}

enum as_err core_user_set_password(const struct core *c, const char *id,
                                   const char *pw, const char *keep_sid)
{
    char hash[PW_HASH_MAX] = "";
    enum as_err err = pw_hash(pw, c->pw, hash);

    if (err == AS_OK)
        err = repo_user_set_password(c->repo, id, hash, keep_sid,
                                     c->now_ms());
    /* Every other session ended, and the row changed: forgotten after
     * the commit, so no bearer check here serves the old state. */
    if (err == AS_OK && c->scache)
        scache_forget_user(c->scache, id);
    crypt_wipe(hash, sizeof hash);
    return err;
}

enum as_err core_user_unlock(const struct core *c, const char *id,
                             struct user *out, struct arena *a)
{
    enum as_err err = core_user_get(c, id, out, a);

    if (err == AS_OK)
        err = lockout_unlock(c->repo, out->email);
    return err;
}
