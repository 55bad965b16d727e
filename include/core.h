#ifndef AUTH_CORE_H              /* core.h: the rules of accounts, sessions */
#define AUTH_CORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "arena.h"
#include "err.h"
#include "password.h"
#include "repo.h"
#include "sec.h"
#include "uuid.h"

struct cfg;
struct lockout_ticket;
struct scache;

/* The rules of src/core/ decide; the handlers and the CLI only translate
 * to and from these calls, and the repository only stores. Every change
 * that revokes a session or alters a user makes this instance's session
 * cache forget it here, once (README.md, "Layout").
 *
 * What the rules work with: everything borrowed, made by the caller (a
 * request's handler or the CLI). Time and randomness are injected so that
 * unit tests run the rules on a fake clock. */
struct core {
    struct repo *repo;
    struct scache *scache;       /* this instance's cache; NULL: none */
    const struct cfg *cfg;       /* the lifetimes and the lockout policy */
    const struct pw_params *pw;  /* Argon2id cost of new hashes */
    const struct sec_keys *keys; /* refresh derivation, access tokens;
                                    NULL where no token is handled */
    int64_t (*now_ms)(void);                      /* Unix ms: clock_ms */
    void (*new_id)(char out[UUID_STR_LEN]);        /* uuid_v7_new */
    void (*new_token)(char out[SEC_TOKEN_LEN + 1]); /* sec_token_new */
};

/* Fills `c` with the borrowed parts given and the real clock and random
 * sources (clock_ms, uuid_v7_new, sec_token_new). */
void core_init(struct core *c, struct repo *r, struct scache *sc,
               const struct cfg *cfg, const struct pw_params *pw,
               const struct sec_keys *keys);

/* ---- users (src/core/users.c) ---------------------------------------- */

/* User `id`; AS_ERR_NOT_FOUND when absent or when `id` is no UUID.
 * Strings of `out` live in `a`. */
enum as_err core_user_get(const struct core *c, const char *id,
                          struct user *out, struct arena *a);
/* The user of normalised `email`; AS_ERR_NOT_FOUND when absent. */
enum as_err core_user_by_email(const struct core *c, const char *email,
                               struct user *out, struct arena *a);
/* Creates user `u` (email normalised, full_name, role, is_active as the
 * caller decided) with password `pw` (the policy checked by the caller):
 * hashes it, gives `u` a new id and its times, stores it. `u` keeps no
 * hash (password_hash NULL on return). AS_ERR_EMAIL_TAKEN, or the
 * repository's or the hash's error. */
enum as_err core_user_create(const struct core *c, struct user *u,
                             const char *pw);
/* Up to `limit` users after id `after` matching `q` (see
 * repo_user_list); `out` has room for `limit`. */
enum as_err core_user_list(const struct core *c, const char *q,
                           const char *after, unsigned limit,
                           struct user *out, size_t *n, struct arena *a);
/* Sets the password of user `id` to `pw` (policy checked by the caller):
 * every session but `keep_sid` (NULL: all) ends, the user's reset links
 * die, and this instance forgets the user's cached sessions and row.
 * AS_ERR_NOT_FOUND when the user is gone. */
enum as_err core_user_set_password(const struct core *c, const char *id,
                                   const char *pw, const char *keep_sid);
/* Lifts every lockout of user `id` (an admin's or the CLI's unlock);
 * `out` gets the user. AS_ERR_NOT_FOUND. */
enum as_err core_user_unlock(const struct core *c, const char *id,
                             struct user *out, struct arena *a);

/* ---- passwords and logins (src/core/login.c) ------------------------- */

/* Counts an attempt at a password, one-time code or secret of `email`
 * (normalised) from client address `ip` as a failure before the secret
 * is checked, atomically with the lock check (src/core/lockout.c), and
 * fills ticket `t` (may be NULL) for core_attempt_settle().
 * AS_OK: go on and check. AS_ERR_RATE_LIMITED: locked, do not check;
 * *retry_s gets the seconds until the lock ends. Otherwise a repository
 * error (nothing may be checked). */
enum as_err core_attempt_begin(const struct core *c, const char *email,
                               const char *ip, int64_t *retry_s,
                               struct lockout_ticket *t);
/* Settles an attempt of core_attempt_begin() whose secret proved right:
 * when `complete` (a whole login or operation) the run of failures of
 * `email` from `ip` ends; otherwise (a right password with a second
 * factor to follow) only this attempt is taken back, with the delay it
 * armed when its ticket `t` shows nothing counted since (NULL: the count
 * only). A failure to store it is left to the repository's log. */
void core_attempt_settle(const struct core *c, const char *email,
                         const char *ip, bool complete,
                         const struct lockout_ticket *t);
/* Checks password `pw` of user `u` from client address `ip` under the
 * lockout (src/core/lockout.c): the attempt is counted as a failure
 * before the hash is checked; a locked caller gets AS_ERR_RATE_LIMITED
 * (*retry_s: seconds until the lock ends) without a check; a wrong one
 * AS_ERR_BAD_CREDENTIALS. A right one ends the run of failures, or, with
 * the second factor on, only takes its attempt back (README "Second
 * factor"). */
enum as_err core_password_check(const struct core *c, const struct user *u,
                                const char *pw, const char *ip,
                                int64_t *retry_s);
/* Checks second-factor `code` (TOTP or recovery code) of user `u` from
 * client address `ip` under the lockout, like core_password_check(): the
 * attempt is counted first; a locked caller gets AS_ERR_RATE_LIMITED
 * (*retry_s set) without a check; a wrong, expired or replayed code
 * AS_ERR_INVALID_CODE; AS_ERR_NOT_FOUND when the factor is not on (the
 * attempt stays counted). A right code is used up now and, when
 * `complete` (it completes what the caller does), ends the run of
 * failures; a login settles that itself once its session exists. With
 * `mfa_token` (a login's; NULL: none) one of the token's tries is taken
 * first (mfa_token_attempt(): AS_ERR_INVALID_TOKEN, nothing counted, when
 * none is left), given back when the lockout refuses the caller, and the
 * token is used with the code (mfa_check_login_code()):
 * AS_ERR_INVALID_TOKEN when it is not live any more, the code then
 * unused and its attempt taken back. */
struct mfa_env;
enum as_err core_code_check(const struct core *c, const struct mfa_env *e,
                            const struct user *u, const char *code,
                            const char *mfa_token, bool complete,
                            const char *ip, int64_t *retry_s);
/* Confirms the pending factor of `u` with its first `code` from `ip`
 * under the lockout (mfa_confirm(): `out`, `keep_sid`): AS_ERR_NOT_FOUND
 * when nothing is pending, found before anything is counted (a locked
 * caller too: such a confirm checks no code and cannot lengthen a lock);
 * else counted first like core_code_check(): AS_ERR_RATE_LIMITED
 * (*retry_s set), AS_ERR_INVALID_CODE for a wrong code; a right one
 * turns the factor on and ends the run of failures. Caller wipes `out`. */
struct mfa_codes;
enum as_err core_mfa_confirm(const struct core *c, const struct mfa_env *e,
                             const struct user *u, const char *code,
                             const char *keep_sid, const char *ip,
                             struct mfa_codes *out, int64_t *retry_s);
/* The password step of a login by `email` (normalised; NULL: `raw`, as
 * the client sent it, is not an email) from `ip`: counted first like
 * core_password_check(), a string that is not an email under a key of
 * its own (it is locked like any other, and no account has it, so
 * nothing is hashed: AS_ERR_BAD_CREDENTIALS at once); an unknown email
 * costs a dummy verification and is AS_ERR_BAD_CREDENTIALS like a wrong
 * password; an inactive account AS_ERR_DISABLED (its attempt stays
 * counted). On AS_OK `out` is the user and an old-cost hash upgraded;
 * the attempt stays counted until the session is stored (which ends the
 * run of failures, core_session_start's `passed`), or is taken back at
 * once when a second factor must follow. */
enum as_err core_login(const struct core *c, const char *email,
                       const char *raw, const char *pw, const char *ip,
                       struct user *out, struct arena *a, int64_t *retry_s);

/* ---- sessions (src/core/sessions.c) ---------------------------------- */

/* Starts a session of user `user_id` logged in with the RFC 8176 methods
 * `amr` (NULL: "pwd") from `ip` and `user_agent` (both may be NULL):
 * `out` gets it (strings borrowed from the arguments), `refresh` its first
 * refresh token (a secret: the caller wipes it). Its life is the refresh
 * token's, never past AUTH_SESSION_MAX_SECONDS. The session is stored
 * only while the account is as the login read it, since the revocation
 * of a change that went first would miss it: AS_ERR_NOT_FOUND when the
 * user was deleted meanwhile, AS_ERR_DISABLED when deactivated,
 * AS_ERR_BAD_CREDENTIALS when `pw_gen` (the password_gen the login
 * read; -1: none) is no longer the account's (a password change or
 * reset; not a new hash of the same password that another login
 * stored), and for a password-only login (`amr` NULL)
 * AS_ERR_MFA_REQUIRED when the second factor was turned on. A login
 * finished with a second factor names its login token `mfa_token` (used
 * up by then; NULL: none): AS_ERR_INVALID_TOKEN when that token was
 * ended meanwhile (logout everywhere, a password change, the factor
 * turned off), since what ended it would have ended the session. A
 * complete login names the email its attempts were counted under,
 * `passed` (NULL: none): the session ends their run of failures from
 * `ip` in its own transaction, or, refused as AS_ERR_MFA_REQUIRED (or
 * AS_ERR_INVALID_TOKEN with `mfa_token`), takes back the attempt of the
 * password or code it proved right; refused otherwise, the attempt stays
 * counted. A passkey login names its passkey, `passkey_id` (NULL: none):
 * AS_ERR_BAD_CREDENTIALS when it was deleted meanwhile; deleting it
 * later ends the session. */
enum as_err core_session_start(const struct core *c, const char *user_id,
                               int64_t pw_gen,
                               const char *amr, const char *mfa_token,
                               const char *passkey_id,
                               const char *passed, const char *ip,
                               const char *user_agent, struct session *out,
                               char refresh[SEC_TOKEN_LEN + 1]);
/* Rotates refresh token `token` (README.md, "Tokens"): AS_OK with the
 * new token in `child` (a secret), the session in `s` and its active user
 * in `u`. AS_ERR_INVALID_TOKEN otherwise; *reused is true when it was a
 * replay past the grace, whose session is now revoked and forgotten. */
enum as_err core_refresh(const struct core *c, const char *token,
                         char child[SEC_TOKEN_LEN + 1], struct session *s,
                         struct user *u, bool *reused, struct arena *a);
/* Ends the session of refresh token `token`, rotated or not; `s` gets
 * it (for the audit). AS_ERR_NOT_FOUND for an unknown token or a dead
 * session. */
enum as_err core_logout(const struct core *c, const char *token,
                        struct session *s, struct arena *a);
/* Ends every session of user `user_id`. */
enum as_err core_logout_all(const struct core *c, const char *user_id);
/* Ends session `sid`, only if it is `user_id`'s when that is not NULL.
 * AS_ERR_NOT_FOUND when no such live session. */
enum as_err core_session_revoke(const struct core *c, const char *sid,
                                const char *user_id);
/* The live sessions of `user_id`, newest first (an arena array). */
enum as_err core_sessions_list(const struct core *c, const char *user_id,
                               struct session **out, size_t *n,
                               struct arena *a);
/* The live session a token belongs to, for introspection and RFC 7009
 * revocation: a refresh token's (`s` filled from the database, *is_access
 * false; a rotated one only when `rotated_too`, as a revocation wants),
 * or an access token's that verifies with c->keys (`claims` with the
 * account's email now and *role its role now, `s` holding only id and
 * user_id, *is_access true). AS_ERR_NOT_FOUND for anything else. */
enum as_err core_token_session(const struct core *c, const char *token,
                               bool rotated_too, struct session *s,
                               struct sec_claims *claims, enum role *role,
                               bool *is_access, struct arena *a);

/* ---- mailed links (src/core/links.c) --------------------------------- */

/* Queues a reset link for `email` (normalised), known or not: the same
 * work either way (README.md, "Mail"). */
enum as_err core_link_request_reset(const struct core *c, const char *email);
/* Queues a verification link for user `u` unless it is verified already
 * (then AS_ERR_NOT_FOUND, nothing queued). */
enum as_err core_link_request_verify(const struct core *c,
                                     const struct user *u);
/* The user whose live reset link hashes to `hash`; AS_ERR_NOT_FOUND. */
enum as_err core_link_reset_user(const struct core *c,
                                 const uint8_t hash[REPO_HASH_LEN],
                                 struct user *out, struct arena *a);
/* Redeems reset link `hash` of user `u` with new password `pw` (policy
 * checked by the caller): the password is set, every session of the user
 * ends and this instance forgets them; on an account whose email was
 * never verified, its passkeys and second factor go too (whoever set
 * them up had not shown the address was theirs; the reset has); and the
 * failed-login counts of its email are cleared (the owner proved the
 * address and chose a new password). AS_ERR_NOT_FOUND when the link was
 * used meanwhile or the email moved. */
enum as_err core_link_reset(const struct core *c,
                            const uint8_t hash[REPO_HASH_LEN],
                            const struct user *u, const char *pw);
/* Redeems verification link `hash`: the user (its id into `user_id`) is
 * verified and its cached row forgotten. AS_ERR_NOT_FOUND. */
enum as_err core_link_verify(const struct core *c,
                             const uint8_t hash[REPO_HASH_LEN],
                             char user_id[UUID_STR_LEN]);

/* ---- the store (src/core/store.c) ------------------------------------ */

/* Opens the database of `cfg` and applies pending migrations (the CLI).
 * Caller closes with core_store_close(). */
enum as_err core_store_open(const struct cfg *cfg, struct repo **out);
/* Closes a store of core_store_open(); NULL is a no-op. */
void core_store_close(struct repo *r);
/* Whether the database calls of `r` are let through at monotonic
 * `mono_ms` (its breaker closed); *backend gets its name. */
bool core_store_ready(struct repo *r, uint64_t mono_ms,
                      const char **backend);

#endif
