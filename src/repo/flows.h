#ifndef AUTH_FLOWS_H           /* flows.h: storage flows above the drivers */
#define AUTH_FLOWS_H
/* The repo_ops entries written once for both backends, one area file
 * each (src/repo/users.c, ...). `impl` is a backend's state, which begins
 * with struct db (driver.h). A backend lists an area in its repo_ops with
 * the area's macro: static const struct repo_ops ops = { DB_USER_OPS, ...
 * }. Contracts: the repo_* function of the same name in include/repo.h. */
#include "driver.h"
#include "repo.h"

/* ---- second factor (mfa.c) ---- */
enum as_err db_mfa_get(void *impl, const char *user_id,
                       struct mfa_state *out, struct arena *a);
enum as_err db_mfa_pending(void *impl, const char *user_id,
                           const char *sealed, int64_t now);
enum as_err db_mfa_enable(void *impl, const char *user_id, int64_t step,
                          const char *sealed,
                          const uint8_t (*codes)[REPO_HASH_LEN], size_t n,
                          const char *keep_sid, int64_t now_us);
enum as_err db_mfa_use_step(void *impl, const char *user_id, int64_t step,
                            const struct repo_mfa_login *login);
enum as_err db_mfa_use_recovery(void *impl, const char *user_id,
                                const uint8_t hash[REPO_HASH_LEN],
                                int64_t now,
                                const struct repo_mfa_login *login);
enum as_err db_mfa_recovery_set(void *impl, const char *user_id,
                                const uint8_t *proof, int64_t since_us,
                                const uint8_t (*codes)[REPO_HASH_LEN],
                                size_t n, int64_t now_us);
enum as_err db_mfa_disable(void *impl, const char *user_id,
                           const uint8_t *proof, bool *was_on);
enum as_err db_mfa_token_create(void *impl,
                                const uint8_t hash[REPO_HASH_LEN],
                                const char *user_id, int64_t pw_gen,
                                int64_t now, int64_t expires_at);
enum as_err db_mfa_token_user(void *impl, const uint8_t hash[REPO_HASH_LEN],
                              int64_t now, unsigned max_failures,
                              char user_id[UUID_STR_LEN]);
enum as_err db_mfa_token_attempt(void *impl,
                                 const uint8_t hash[REPO_HASH_LEN],
                                 int64_t now, unsigned max_failures);
enum as_err db_mfa_token_use(void *impl, const uint8_t hash[REPO_HASH_LEN],
                             int64_t now, unsigned max_failures);
enum as_err db_mfa_token_refund(void *impl,
                                const uint8_t hash[REPO_HASH_LEN]);

#define DB_MFA_OPS                                                         \
    .mfa_get = db_mfa_get, .mfa_pending = db_mfa_pending,                  \
    .mfa_enable = db_mfa_enable, .mfa_use_step = db_mfa_use_step,          \
    .mfa_use_recovery = db_mfa_use_recovery,                               \
    .mfa_recovery_set = db_mfa_recovery_set,                               \
    .mfa_disable = db_mfa_disable,                                         \
    .mfa_token_create = db_mfa_token_create,                               \
    .mfa_token_user = db_mfa_token_user,                                   \
    .mfa_token_attempt = db_mfa_token_attempt,                             \
    .mfa_token_refund = db_mfa_token_refund,                               \
    .mfa_token_use = db_mfa_token_use

/* ---- passkeys (passkeys.c) ---- */
enum as_err db_passkey_challenge_put(void *impl,
                                     const uint8_t hash[REPO_HASH_LEN],
                                     enum passkey_ceremony ceremony,
                                     const char *user_id, unsigned keep,
                                     int64_t now, int64_t expires_at);
enum as_err db_passkey_challenge_take(void *impl,
                                      const uint8_t hash[REPO_HASH_LEN],
                                      enum passkey_ceremony ceremony,
                                      const char *owner, int64_t now,
                                      char user_id[UUID_STR_LEN]);
enum as_err db_passkey_insert(void *impl, const struct passkey *p,
                              unsigned max);
enum as_err db_passkey_by_cred(void *impl, const char *cred_id,
                               struct passkey *out, struct arena *a);
enum as_err db_passkey_list(void *impl, const char *user_id,
                            struct passkey **out, size_t *n,
                            struct arena *a);
enum as_err db_passkey_delete(void *impl, const char *id,
                              const char *user_id, int64_t now);
/* In a session's transaction: refuses (AS_ERR_BAD_CREDENTIALS) when
 * passkey `id` was deleted, and on PostgreSQL holds its row until the
 * commit, so a deletion ends the session being stored. */
void db_passkey_still(struct db_tx *t, const char *id);
enum as_err db_passkey_use(void *impl, const char *id, int64_t new_count,
                           int64_t now);

#define DB_PASSKEY_OPS                                                     \
    .passkey_challenge_put = db_passkey_challenge_put,                     \
    .passkey_challenge_take = db_passkey_challenge_take,                   \
    .passkey_insert = db_passkey_insert,                                   \
    .passkey_by_cred = db_passkey_by_cred,                                 \
    .passkey_list = db_passkey_list, .passkey_delete = db_passkey_delete,  \
    .passkey_use = db_passkey_use

/* ---- signing keys (keys.c; PostgreSQL only) ---- */
enum as_err db_keys_list(void *impl, struct key_row *out, size_t cap,
                         size_t *n, struct arena *a);
enum as_err db_keys_add(void *impl, const struct key_row *rows, size_t n,
                        bool only_if_empty, bool *added);
enum as_err db_keys_prune(void *impl, int64_t now, int64_t before);

#define DB_KEYS_OPS                                                        \
    .keys_list = db_keys_list, .keys_add = db_keys_add,                    \
    .keys_prune = db_keys_prune

/* ---- users (users.c) ---- */
/* The columns of a user row, in the order db_read_user() reads them. */
#define USER_COLS                                                          \
    "id, email, full_name, password_hash, role, is_active, is_verified, "  \
    "created_at, updated_at, password_gen, verified_at"
#define USER_NCOLS 11
/* The twelfth column after USER_COLS: whether the second factor is on
 * (of table users). */
#define USER_MFA_COL                                                       \
    ", EXISTS (SELECT 1 FROM user_mfa m WHERE m.user_id = users.id "       \
    "AND m.enabled)"
/* Reads USER_COLS of row `i` of `r` into `u` (and, when the statement
 * added a twelfth column, whether the second factor is on); strings are
 * borrowed from the flow's arena. */
/* Inside write flow `t`: sends the read of the user of `email` ahead
 * into `read` (read->found once its answer came, strings in t->a). */
void db_user_note_by_email(struct db_tx *t, const char *email,
                           struct repo_user_read *read);
void db_read_user(struct db_tx *t, const struct db_rows *r, size_t i,
                  struct user *u);
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
enum as_err db_user_delete(void *impl, const char *id, int64_t now);
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

/* ---- sessions and refresh tokens (sessions.c) ---- */
/* Inside flow `t` (which holds the user's row, or on SQLite the write
 * lock): revokes every unrevoked session of `user_id` but `keep_sid`
 * (NULL: all). */
void db_revoke_sessions(struct db_tx *t, const char *user_id,
                        const char *keep_sid, int64_t now);
/* Inside flow `t`, the login that stores a session or a second-factor
 * token: refuses it unless `user_id` still exists (AS_ERR_NOT_FOUND) with
 * `pw_gen` as its password_gen (-1: any; AS_ERR_BAD_CREDENTIALS) and
 * is active (AS_ERR_DISABLED), and holds the user's row (on PostgreSQL;
 * SQLite's write lock serialises already) until it ends, so that a password
 * change or a deactivation either waits for the flow (and then revokes
 * what it stored) or went first. */
void db_login_still(struct db_tx *t, const char *user_id, int64_t pw_gen);
/* Inside flow `t`, after db_login_still() (which holds the user's row):
 * refuses it (AS_ERR_MFA_REQUIRED) when `user_id` has the second factor
 * on, so that a password-only login that read it off stores no session
 * after it was turned on (mfa.c: turning it on takes the user's row
 * first, then revokes the other sessions). */
void db_one_factor_still(struct db_tx *t, const char *user_id);
/* Inside flow `t`: ends every login of `user_id` that waits for its
 * second factor (mfa.c): what ends the sessions ends those too. */
void db_mfa_tokens_end(struct db_tx *t, const char *user_id);
/* Inside flow `t`: turns the second factor of `user_id` off (its row,
 * recovery codes and waiting logins); *was_on (when not NULL) says
 * whether it was on. */
void db_mfa_end(struct db_tx *t, const char *user_id, bool *was_on);
/* Inside flow `t`, after db_login_still(): refuses it
 * (AS_ERR_INVALID_TOKEN) when the used login token `hash` was ended since
 * (db_mfa_tokens_end), so a login finished with a code stores no session
 * after a logout everywhere that ended its token. */
void db_mfa_token_still(struct db_tx *t, const uint8_t hash[REPO_HASH_LEN]);
enum as_err db_session_create(void *impl, const struct session *s,
                              const uint8_t hash[REPO_HASH_LEN],
                              struct session_upkeep *up);
enum as_err db_session_get(void *impl, const char *sid, struct session *out,
                           struct arena *a);
enum as_err db_session_state(void *impl, const char *sid, int64_t now,
                             struct session_state *out);
enum as_err db_session_list(void *impl, const char *user_id, int64_t now,
                            struct session **out, size_t *n,
                            struct arena *a);
enum as_err db_session_revoke(void *impl, const char *sid,
                              const char *user_id, int64_t now);
enum as_err db_session_revoke_all(void *impl, const char *user_id,
                                  const char *keep_sid, int64_t now);
enum as_err db_refresh_rotate(void *impl,
                              const uint8_t parent[REPO_HASH_LEN],
                              const uint8_t child[REPO_HASH_LEN],
                              int64_t now, int64_t grace_ms,
                              int64_t new_expires, int64_t max_life_ms,
                              enum rotate_result *res, struct session *out,
                              struct arena *a);
enum as_err db_refresh_session(void *impl, const uint8_t hash[REPO_HASH_LEN],
                               int64_t now, const struct repo_kept *rotated,
                               struct session *out, struct arena *a);

#define DB_SESSION_OPS                                                     \
    .session_create = db_session_create, .session_get = db_session_get,    \
    .session_state = db_session_state, .session_list = db_session_list,    \
    .session_revoke = db_session_revoke,                                   \
    .session_revoke_all = db_session_revoke_all,                           \
    .refresh_rotate = db_refresh_rotate,                                   \
    .refresh_session = db_refresh_session

/* ---- login-failure counts (login_failures.c) ---- */
enum as_err db_login_failures_update(void *impl, const char *email,
                                     const char *ip, repo_login_update_fn fn,
                                     void *ctx,
                                     struct repo_user_read *read);
/* Inside flow `t` (an email change, holding the user's row): copies the
 * run of failures of `from` to `to` (login_failures.c). */
void db_login_failures_carry(struct db_tx *t, const char *from,
                             const char *to, const char *ip);
/* Inside flow `t`: ends the run of failures of `email` from `ip`. */
void db_login_failures_end(struct db_tx *t, const char *email,
                           const char *ip);
enum as_err db_login_failures_clear(void *impl, const char *email,
                                    const char *ip);

#define DB_LOGIN_OPS                                                       \
    .login_failures_update = db_login_failures_update,                     \
    .login_failures_clear = db_login_failures_clear
/* ---- mail: link tokens and the outbox (mail.c) ---- */
/* Inside flow `t`, which holds the user's row: ends every link of
 * `user_id` not used yet (the `purpose` ones; NULL: all) and, with
 * `requests`, deletes the reset requests to `address` (NULL: the
 * account's email now) that the mailer has not resolved yet (it would
 * make a link after this flow), and with `purpose` NULL the user's
 * verification requests too: a password change or reset retires every
 * reset link asked for before it, and an email change (`address` the old
 * one) or a deactivation every link, also mailed or queued ones that the
 * account's address coming back or a reactivation could revive. */
void db_links_end(struct db_tx *t, const char *user_id, const char *purpose,
                  bool requests, const char *address, int64_t now);
enum as_err db_outbox_add(void *impl, const struct outbox_row *m,
                          int64_t stale_before);
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
                         bool drop_factors, int64_t now);
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
