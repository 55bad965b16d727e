#ifndef AUTH_FLOWS_H           /* flows.h: storage flows above the drivers */
#define AUTH_FLOWS_H
/* The repo_ops entries written once for both backends, one area file
 * each (src/repo/users.c, ...). `impl` is a backend's state, which begins
 * with struct db (driver.h). A backend lists an area in its repo_ops with
 * the area's macro: static const struct repo_ops ops = { DB_USER_OPS, ...
 * }. Contracts: the repo_* function of the same name in include/repo.h. */
#include "driver.h"
#include "repo.h"

/* ---- users (users.c) ---- */
enum as_err db_user_insert(void *impl, const struct user *u);
enum as_err db_user_by_id(void *impl, const char *id, struct user *out,
                          struct arena *a);
enum as_err db_user_by_email(void *impl, const char *email,
                             struct user *out, struct arena *a);
enum as_err db_user_patch(void *impl, const char *id,
                          const struct user_patch *p, int64_t now,
                          struct user *out, struct arena *a);
enum as_err db_user_set_password(void *impl, const char *id,
                                 const char *hash, const char *keep_sid,
                                 int64_t now);
enum as_err db_user_rehash(void *impl, const char *id, const char *old,
                           const char *hash);
enum as_err db_user_delete(void *impl, const char *id);
enum as_err db_user_list(void *impl, const char *q, const char *after,
                         unsigned limit, struct user *out, size_t *n,
                         struct arena *a);
enum as_err db_user_count(void *impl, bool admins_only, int64_t *out);

#define DB_USER_OPS                                                        \
    .user_insert = db_user_insert, .user_by_id = db_user_by_id,            \
    .user_by_email = db_user_by_email, .user_patch = db_user_patch,        \
    .user_set_password = db_user_set_password,                             \
    .user_rehash = db_user_rehash, .user_delete = db_user_delete,          \
    .user_list = db_user_list, .user_count = db_user_count

#endif
