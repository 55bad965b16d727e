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

/* ---- mail: link tokens and the outbox (mail.c) ---- */
enum as_err db_outbox_add(void *impl, const struct outbox_row *m);
enum as_err db_outbox_resolve(void *impl, const struct outbox_row *m,
                              const struct ott *k, unsigned cap,
                              int64_t now, enum outbox_fate *fate,
                              char user_id[UUID_STR_LEN]);
enum as_err db_outbox_drop(void *impl, const char *id);
enum as_err db_ott_reset_user(void *impl, const uint8_t hash[REPO_HASH_LEN],
                              int64_t now, struct user *out,
                              struct arena *a);
enum as_err db_ott_reset(void *impl, const uint8_t hash[REPO_HASH_LEN],
                         const char *user_id, const char *pw_hash,
                         int64_t now);
enum as_err db_ott_verify(void *impl, const uint8_t hash[REPO_HASH_LEN],
                          int64_t now, char user_id[UUID_STR_LEN]);
enum as_err db_outbox_claim(void *impl, int64_t now, int64_t lease_until,
                            struct outbox_row *out, struct arena *a);
enum as_err db_outbox_sent(void *impl, const char *id, int64_t now);
enum as_err db_outbox_failed(void *impl, const char *id, int64_t next_at,
                             const char *error);
enum as_err db_mail_prune(void *impl, int64_t tokens_before,
                          int64_t sent_before, int64_t stale_before);

#define DB_MAIL_OPS                                                        \
    .outbox_add = db_outbox_add, .outbox_resolve = db_outbox_resolve,      \
    .outbox_drop = db_outbox_drop, .ott_reset_user = db_ott_reset_user,    \
    .ott_reset = db_ott_reset, .ott_verify = db_ott_verify,                \
    .outbox_claim = db_outbox_claim, .outbox_sent = db_outbox_sent,        \
    .outbox_failed = db_outbox_failed, .mail_prune = db_mail_prune

#endif
