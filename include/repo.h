#ifndef AUTH_REPO_H              /* repo.h: the only door to the database */
#define AUTH_REPO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "arena.h"
#include "err.h"
#include "uuid.h"

struct cfg;
struct breaker;

#include "role.h"              /* enum role */

struct key_row;

/* Times are Unix milliseconds. Strings are borrowed from the arena passed
 * to the call that filled the struct (or from the caller, for inputs). */
struct user {
    char id[UUID_STR_LEN];
    const char *email;           /* trimmed, lower-cased */
    const char *full_name;       /* NULL when unset */
    const char *password_hash;   /* Argon2id PHC string; never leaves here */
    enum role role;
    bool is_active, is_verified;
    int64_t created_at, updated_at;
    int64_t password_gen;        /* which password: counted up by each
                                    change or reset, not by a new hash of
                                    the same one (read only) */
    int64_t verified_at;         /* when an email of the account was first
                                    verified; 0: never (read only) */
    bool mfa_enabled;            /* a confirmed second factor (read only) */
};

struct session {
    char id[UUID_STR_LEN];
    char user_id[UUID_STR_LEN];
    int64_t created_at, last_used_at, expires_at;
    int64_t revoked_at;          /* 0 while live */
    const char *ip;              /* NULL when unknown */
    const char *user_agent;      /* NULL when unknown */
    const char *amr;             /* RFC 8176 methods, space-separated
                                    ("pwd", "pwd otp"); NULL: "pwd" */
    int64_t pw_gen;              /* on creation: the password_gen the
                                    login read; stored only while it is
                                    still the account's (-1: any) and
                                    the account is active */
    bool one_factor;             /* on creation: a password-only login,
                                    stored only while the account has
                                    no second factor on */
    const uint8_t *mfa_token;    /* on creation: the hash of the used
                                    login token of a login finished with
                                    a second factor, stored only while
                                    that token was not ended since (by
                                    what ends sessions); NULL: none */
    const char *passkey_id;      /* on creation: the passkey a passkey
                                    login used, stored only while it is
                                    not deleted; deleting it ends the
                                    session. NULL: none */
};

#define REPO_HASH_LEN 32         /* SHA-256 of an opaque token */

/* What storing a new session does besides (repo_session_create): the
 * cap and the clear in the session's transaction, so that a login
 * commits once after its count; the pruning after it. */
struct session_upkeep {
    unsigned keep;               /* > 0: the user's live sessions beyond
                                    the `keep` most recently used (created
                                    or refreshed; the new one among them)
                                    end */
    int64_t prune_before;        /* > 0: a few sessions (and with them
                                    their refresh tokens) that expired or
                                    were revoked before it are deleted,
                                    once the session is stored, in a
                                    transaction of their own whose
                                    failure is ignored, and not for a
                                    second of this cut-off's clock after
                                    one found nothing: while pruning,
                                    each new session prunes more than it
                                    adds, so the table holds what is
                                    live plus what ended recently */
    const char *passed_email;    /* non-NULL: the login is complete; the
                                    run of login failures of this email
                                    from `passed_ip` (a client key, see
                                    repo_login_failures_update) ends, as
                                    repo_login_failures_clear ends it */
    const char *passed_ip;
    unsigned ended;              /* out: how many sessions `keep` ended */
};

enum rotate_result {
    ROTATE_OK,         /* parent consumed now; child stored; session moved */
    ROTATE_GRACE,      /* parent consumed within grace: caller re-derives
                          the same child (already stored) */
    ROTATE_REUSED,     /* parent consumed before the grace: session revoked */
    ROTATE_INVALID,    /* unknown token, expired or revoked session, or
                          inactive user */
};

#define REPO_EMAIL_MAX 254       /* bytes of a stored email */
#define REPO_AMR_MAX 31          /* bytes of a session's amr read back */

/* What repo_session_state() reports for the revocation check. */
struct session_state {
    bool live;         /* session exists, not revoked, not expired, and its
                          user exists and is active */
    enum role role;
    char email[REPO_EMAIL_MAX + 1];  /* the user's email now ("" if none) */
    char user_id[UUID_STR_LEN];      /* whose session it is ("" if none) */
    /* The session's own RFC 8176 methods, as stored (struct session's
     * amr; "" for "pwd", or for a value longer than this holds): what
     * /verify says of the session, whatever its token claims. */
    char amr[REPO_AMR_MAX + 1];
};

/* The fields a struct user_patch names (bits of its `set`). */
enum user_field {
    UF_EMAIL = 1u,
    UF_FULL_NAME = 2u,
    UF_ROLE = 4u,
    UF_ACTIVE = 8u,
    UF_VERIFIED = 16u,
    /* Not a column: turns the second factor off (an admin's reset), its
     * secret, recovery codes and waiting logins gone in the patch's own
     * transaction, so a change and a reset asked together happen or fail
     * together. */
    UF_MFA_OFF = 32u,
};

/* ---- mail: single-use link tokens and the outbox ---------------------- */

enum ott_purpose { OTT_RESET = 0, OTT_VERIFY = 1 };

/* A single-use token of a mailed link, as stored: only its SHA-256, the
 * email it was made for is the user's at issue time. */
struct ott {
    uint8_t hash[REPO_HASH_LEN];
    enum ott_purpose purpose;
    int64_t created_at, expires_at;
};

#define REPO_SEED_LEN 32         /* seed a mailed link's token comes from */

/* One mail of the outbox. Strings and the seed are borrowed (from the
 * caller for inputs, from the arena for outputs). No row holds a link:
 * its token is derived from `seed` at delivery with a key the database
 * does not have (sec_link_token()). */
struct outbox_row {
    char id[UUID_STR_LEN];
    const char *kind;            /* MAIL_KIND_* of mail.h */
    const char *user_id;         /* NULL until resolved when queued by
                                    email (a reset request) */
    const char *recipient;       /* the address it goes to */
    const uint8_t *seed;         /* REPO_SEED_LEN bytes; NULL: no link */
    bool resolved;               /* user found, mail counted, token stored */
    int64_t expires_at;          /* its link's, once resolved; 0: none */
    int64_t created_at;
    int64_t attempts;            /* failed tries so far */
    /* A notice's recipient was verified when it was queued (the cap
     * it counts against: src/repo/mail.c, within_cap()); link mails
     * and rows queued before migration 0019 read true. */
    bool to_verified;
};

/* A change of some fields of one user: only those named in `set` are
 * written (see repo_user_patch). Strings are borrowed from the caller. */
struct user_patch {
    unsigned set;                /* enum user_field bits */
    const char *email;           /* normalised */
    const char *full_name;       /* NULL clears it */
    enum role role;
    bool is_active, is_verified;
    /* With UF_EMAIL: the mail (id, kind, created_at; no link) to queue to
     * the previous address when the email really changes; NULL: none. */
    const struct outbox_row *email_notice;
    /* With UF_EMAIL, when the email really changes, the login-failure
     * counts of the previous address that go with the account to the new
     * one (the higher of the two counts kept): the count from all
     * addresses ("*") always, and that of this client address key
     * (netaddr_client_key(); NULL: none). */
    const char *carry_ip;
    /* With UF_MFA_OFF, when not NULL: set to whether the factor was on
     * (confirmed, not only set up). */
    bool *mfa_was_on;
};

/* ---- second factor: TOTP and recovery codes -------------------------- */

/* A user's TOTP factor as stored. */
struct mfa_state {
    bool enabled;                /* false while pending confirmation */
    const char *secret;          /* sealed secret (text), in the arena */
    int64_t last_step;           /* last TOTP step accepted; -1: none */
};

/* What repo_outbox_resolve() made of a queued mail. */
enum outbox_fate {
    OUTBOX_READY,      /* resolved: deliver it */
    OUTBOX_NO_USER,    /* no such user (any more): the row is deleted */
    OUTBOX_CAPPED,     /* past the cap of its recipient: the row is deleted */
    OUTBOX_HELD,       /* a notice past the cap of its kind: due again when
                          the cap lets one more through */
};

/* One stored login-failure count (see repo_login_failures_update). A
 * count with no row reads as all zeros; writing count 0 deletes it. */
struct login_count {
    int64_t count;               /* failures counted in the current run */
    int64_t last_at;             /* Unix ms of the last change */
    int64_t locked_until;        /* Unix ms; 0 or past: not locked */
};

/* Computes new counts from the stored ones, in place: the rule lives in
 * the caller (src/lockout.c), never in a backend. May be called again if
 * the backend retries its transaction. Returns a time: a few (at most
 * 16) counts of any email last changed before it are deleted in the
 * same transaction (0: none). */
typedef int64_t (*repo_login_update_fn)(void *ctx,
                                        struct login_count *addr,
                                        struct login_count *all);

/* The user of the counted email, read by repo_login_failures_read() in
 * the counts' transaction after they are written, sent with them (no
 * round trip of its own), as repo_user_by_email() would read it; only
 * while fn() leaves `wanted` true (its rule may decide no one is read). */
struct repo_user_read {
    bool wanted;                 /* in, and fn() may clear it */
    bool found;                  /* out: the user was read into `out` */
    struct user *out;            /* strings in `a` */
    struct arena *a;
};

/* ---- passkeys (WebAuthn) --------------------------------------------- */

/* A registered passkey as stored. Strings are borrowed (from the caller
 * for inputs, from the arena for outputs). */
struct passkey {
    char id[UUID_STR_LEN];
    char user_id[UUID_STR_LEN];
    const char *cred_id;         /* credential id, base64url */
    const char *public_key;      /* COSE_Key, base64url */
    int64_t sign_count;
    const char *transports;      /* JSON array text */
    const char *name;
    int64_t created_at;
    int64_t last_used_at;        /* 0: never used */
    /* Insert only: when set, a `passkey_added` notice with this outbox id
     * is queued to the owner's email in the same transaction. */
    const char *notice_id;
};

/* The ceremony a stored challenge was issued for. */
enum passkey_ceremony { PK_REGISTER = 0, PK_LOGIN = 1 };

#define REPO_PASSKEY_LIST_MAX 100

/* Backend vtable: sqlite.c and pg.c each export one. `impl` is the
 * backend's own state. Most entries are the flows written once for both
 * backends over their drivers (src/repo/flows.h). Every function returns AS_OK or an error; backends
 * map their own codes once (unique email -> AS_ERR_EMAIL_TAKEN, lost
 * connection -> AS_ERR_UNAVAILABLE, anything else -> AS_ERR_INTERNAL).
 * AS_ERR_LOCK_CONFLICT (deadlock, serialization failure) means the call
 * changed nothing, so the dispatcher may run it again from the start. */
struct repo_mfa_login;

/* The rotated-out refresh tokens that still name their session (for a
 * logout or a revocation): one made at or after `created_from`, or
 * rotated out at or after `used_from` (what rotation_judge() keeps:
 * rotation_kept_from() and the grace). */
struct repo_kept {
    int64_t created_from, used_from;
};

struct repo_ops {
    const char *name;                               /* "sqlite", "postgres" */
    enum as_err (*migrate)(void *impl);
    enum as_err (*ping)(void *impl);
    void (*close)(void *impl);

    enum as_err (*user_insert)(void *impl, const struct user *u);
    enum as_err (*user_by_id)(void *impl, const char *id, struct user *out,
                              struct arena *a);
    enum as_err (*user_by_email)(void *impl, const char *email,
                                 struct user *out, struct arena *a);
    enum as_err (*user_patch)(void *impl, const char *id,
                              const struct user_patch *p, int64_t now,
                              struct user *out, struct arena *a);
    enum as_err (*user_set_password)(void *impl, const char *id,
                                     const char *hash, const char *keep_sid,
                                     int64_t now);
    enum as_err (*user_rehash)(void *impl, const char *id, const char *old,
                               const char *hash);
    enum as_err (*user_delete)(void *impl, const char *id, int64_t now);
    enum as_err (*user_list)(void *impl, const char *q, const char *after,
                             unsigned limit, struct user *out, size_t *n,
                             struct arena *a);
    enum as_err (*user_count)(void *impl, bool admins_only, int64_t *out);
    enum as_err (*login_failures_update)(void *impl, const char *email,
                                         const char *ip,
                                         repo_login_update_fn fn,
                                         void *ctx,
                                         struct repo_user_read *read);
    enum as_err (*login_failures_clear)(void *impl, const char *email,
                                        const char *ip);

    enum as_err (*session_create)(void *impl, const struct session *s,
                                  const uint8_t refresh_hash[REPO_HASH_LEN],
                                  struct session_upkeep *up);
    enum as_err (*session_get)(void *impl, const char *sid,
                               struct session *out, struct arena *a);
    enum as_err (*session_state)(void *impl, const char *sid, int64_t now,
                                 struct session_state *out);
    enum as_err (*session_list)(void *impl, const char *user_id, int64_t now,
                                struct session **out, size_t *n,
                                struct arena *a);
    enum as_err (*session_revoke)(void *impl, const char *sid,
                                  const char *user_id, int64_t now);
    enum as_err (*session_revoke_all)(void *impl, const char *user_id,
                                      const char *keep_sid, int64_t now);
    enum as_err (*refresh_rotate)(void *impl,
                                  const uint8_t parent[REPO_HASH_LEN],
                                  const uint8_t child[REPO_HASH_LEN],
                                  int64_t now, int64_t grace_ms,
                                  int64_t new_expires, int64_t max_life_ms,
                                  enum rotate_result *res,
                                  struct session *out, struct arena *a);
    enum as_err (*refresh_session)(void *impl,
                                   const uint8_t hash[REPO_HASH_LEN],
                                   int64_t now,
                                   const struct repo_kept *rotated,
                                   struct session *out, struct arena *a);

    /* mail (see the repo_ott_* and repo_outbox_* wrappers) */
    enum as_err (*outbox_add)(void *impl, const struct outbox_row *m,
                              int64_t stale_before);
    enum as_err (*outbox_resolve)(void *impl, const struct outbox_row *m,
                                  const struct ott *t, unsigned cap,
                                  int64_t now, enum outbox_fate *fate,
                                  char user_id[UUID_STR_LEN]);
    enum as_err (*outbox_drop)(void *impl, const char *id);
    enum as_err (*ott_reset_user)(void *impl,
                                  const uint8_t hash[REPO_HASH_LEN],
                                  int64_t now, struct user *out,
                                  struct arena *a);
    enum as_err (*ott_reset)(void *impl, const uint8_t hash[REPO_HASH_LEN],
                             const char *user_id, const char *pw_hash,
                             bool drop_factors, int64_t now);
    enum as_err (*ott_verify)(void *impl, const uint8_t hash[REPO_HASH_LEN],
                              int64_t now, char user_id[UUID_STR_LEN]);
    enum as_err (*outbox_claim)(void *impl, int64_t now, int64_t lease_until,
                                struct outbox_row *out, struct arena *a);
    enum as_err (*outbox_sent)(void *impl, const char *id, int64_t now);
    enum as_err (*outbox_failed)(void *impl, const char *id,
                                 int64_t next_at, const char *error);
    enum as_err (*mail_prune)(void *impl, int64_t tokens_before,
                              int64_t sent_before, int64_t stale_before);

    /* second factor (see the repo_mfa_* wrappers) */
    enum as_err (*mfa_get)(void *impl, const char *user_id,
                           struct mfa_state *out, struct arena *a);
    enum as_err (*mfa_pending)(void *impl, const char *user_id,
                               const char *sealed, int64_t now);
    enum as_err (*mfa_enable)(void *impl, const char *user_id, int64_t step,
                              const char *sealed,
                              const uint8_t (*codes)[REPO_HASH_LEN],
                              size_t n, const char *keep_sid,
                              int64_t now_us);
    enum as_err (*mfa_use_step)(void *impl, const char *user_id,
                                int64_t step,
                                const struct repo_mfa_login *login);
    enum as_err (*mfa_use_recovery)(void *impl, const char *user_id,
                                    const uint8_t hash[REPO_HASH_LEN],
                                    int64_t now,
                                    const struct repo_mfa_login *login);
    enum as_err (*mfa_recovery_set)(void *impl, const char *user_id,
                                    const uint8_t *proof, int64_t since_us,
                                    const uint8_t (*codes)[REPO_HASH_LEN],
                                    size_t n, int64_t now_us);
    enum as_err (*mfa_disable)(void *impl, const char *user_id,
                               const uint8_t *proof, bool *was_on);
    enum as_err (*mfa_token_create)(void *impl,
                                    const uint8_t hash[REPO_HASH_LEN],
                                    const char *user_id,
                                    int64_t pw_gen, int64_t now,
                                    int64_t expires_at);
    enum as_err (*mfa_token_user)(void *impl,
                                  const uint8_t hash[REPO_HASH_LEN],
                                  int64_t now, unsigned max_failures,
                                  char user_id[UUID_STR_LEN]);
    enum as_err (*mfa_token_attempt)(void *impl,
                                     const uint8_t hash[REPO_HASH_LEN],
                                     int64_t now, unsigned max_failures);
    enum as_err (*mfa_token_refund)(void *impl,
                                    const uint8_t hash[REPO_HASH_LEN]);
    enum as_err (*mfa_token_use)(void *impl,
                                 const uint8_t hash[REPO_HASH_LEN],
                                 int64_t now, unsigned max_failures);

    /* signing keys (PostgreSQL only; NULL elsewhere) */
    enum as_err (*keys_list)(void *impl, struct key_row *out, size_t cap,
                             size_t *n, struct arena *a);
    enum as_err (*keys_add)(void *impl, const struct key_row *rows,
                            size_t n, bool only_if_empty, bool *added);
    enum as_err (*keys_prune)(void *impl, int64_t now, int64_t before);

    /* passkeys (see the repo_passkey_* wrappers) */
    enum as_err (*passkey_challenge_put)(void *impl,
                                         const uint8_t hash[REPO_HASH_LEN],
                                         enum passkey_ceremony ceremony,
                                         const char *user_id, unsigned keep,
                                         int64_t now, int64_t expires_at);
    enum as_err (*passkey_challenge_take)(void *impl,
                                          const uint8_t hash[REPO_HASH_LEN],
                                          enum passkey_ceremony ceremony,
                                          const char *owner, int64_t now,
                                          char user_id[UUID_STR_LEN]);
    enum as_err (*passkey_insert)(void *impl, const struct passkey *p,
                                  unsigned max);
    enum as_err (*passkey_by_cred)(void *impl, const char *cred_id,
                                   struct passkey *out, struct arena *a);
    enum as_err (*passkey_list)(void *impl, const char *user_id,
                                struct passkey **out, size_t *n,
                                struct arena *a);
    enum as_err (*passkey_delete)(void *impl, const char *id,
                                  const char *user_id, int64_t now);
    enum as_err (*passkey_use)(void *impl, const char *id, int64_t new_count,
                               int64_t now);
};

struct repo;                     /* opaque: ops, impl, breaker */

/* Opens the backend named by cfg->database_url ("sqlite:PATH" or
 * "postgresql://..."/"postgres://..."), creating the SQLite file's folder
 * when needed. Does not migrate. Caller frees with repo_close(). */
enum as_err repo_open(const struct cfg *cfg, struct repo **out);
/* For a daemon on SQLite, once repo_open() has opened the file: takes
 * the database's serve lock (flock(2) on the file, held until the
 * process ends). AS_ERR_CONFLICT with *holder the other daemon's pid (0:
 * unknown) when another process holds it; AS_ERR_INTERNAL (logged) when
 * it cannot be taken. PostgreSQL: AS_OK, nothing taken. */
enum as_err repo_claim(const struct cfg *cfg, long *holder);
/* Closes the backend; NULL is a no-op. */
void repo_close(struct repo *r);
/* Name of the backend in use ("sqlite" or "postgres"). */
const char *repo_backend(const struct repo *r);
/* The breaker every call goes through (borrowed). */
struct breaker *repo_breaker(struct repo *r);
/* True when the database is known to hang at monotonic time `now_ms`
 * (ready.h's ready_stalled: a readiness ping got no answer in time). */
typedef bool repo_gate_fn(void *arg, uint64_t now_ms);
/* Told (on the calling thread) of a call that failed without reaching
 * the database (src/repo/driver.h db_unreached(); ready.h's
 * ready_failed: /readyz stops saying ready until a ping that starts
 * after it succeeds). Must not wait. */
typedef void repo_failed_fn(void *arg);
/* Installs `gate`: while it says so, every call is refused at once with
 * AS_ERR_UNAVAILABLE, as by an open breaker, instead of waiting out its
 * timeout on a database that does not answer (README.md "Circuit
 * breaker"); and `failed` (may be NULL), told of each such call.
 * Setting them is safe while calls run (`arg` is published before
 * them); clear them (NULL) only once no call can run. `arg` is
 * borrowed. */
void repo_set_gate(struct repo *r, repo_gate_fn *gate,
                   repo_failed_fn *failed, void *arg);
/* True when the gate refuses calls at `now_ms`. */
bool repo_gated(struct repo *r, uint64_t now_ms);
/* Calls that failed with an infrastructure error (or were refused by the
 * open breaker or the gate) since start, for metrics. */
uint64_t repo_error_count(struct repo *r);

/* Applies every pending migration in order, each in its own transaction,
 * recording it in schema_migrations. A failed migration changes nothing. */
enum as_err repo_migrate(struct repo *r);
/* A cheap round trip to the database. */
enum as_err repo_ping(struct repo *r);

/* Inserts `u` (id, email, full_name, password_hash, role, flags, times).
 * AS_ERR_EMAIL_TAKEN when the email exists. */
enum as_err repo_user_insert(struct repo *r, const struct user *u);
/* AS_ERR_NOT_FOUND when absent. Strings of `out` live in `a`. */
enum as_err repo_user_by_id(struct repo *r, const char *id,
                            struct user *out, struct arena *a);
/* `email` already normalised. AS_ERR_NOT_FOUND when absent. */
enum as_err repo_user_by_email(struct repo *r, const char *email,
                               struct user *out, struct arena *a);
/* In one transaction, writes only the fields `p` names of user `id`
 * (the others keep the values they have when the write runs, whatever
 * was read before) and updated_at = now. A changed email leaves
 * is_verified false unless `p` names UF_VERIFIED, and queues
 * p->email_notice (when set) to the previous address. A deactivation
 * revokes every session of the user. AS_ERR_NOT_FOUND, EMAIL_TAKEN, or
 * AS_ERR_LAST_ADMIN when no active admin would remain (and nothing
 * changed). On AS_OK, `out` (may be NULL) gets the user as written, its
 * strings in `a`. */
enum as_err repo_user_patch(struct repo *r, const char *id,
                            const struct user_patch *p, int64_t now,
                            struct user *out, struct arena *a);
/* repo_user_patch() of every field of `u` (email, full_name, role,
 * is_active, is_verified). */
enum as_err repo_user_update(struct repo *r, const struct user *u,
                             int64_t now);
/* Sets a new password hash, revokes every session of the user except
 * `keep_sid` (NULL: all) and retires every unused reset token of the user,
 * in one transaction. AS_ERR_NOT_FOUND. */
enum as_err repo_user_set_password(struct repo *r, const char *id,
                                   const char *hash, const char *keep_sid,
                                   int64_t now);
/* Replaces the hash only while it still equals `old` (login upgrading
 * an old cost); AS_ERR_CONFLICT, and nothing changed, when the stored
 * hash is another or the user is gone. */
enum as_err repo_user_rehash(struct repo *r, const char *id, const char *old,
                             const char *hash);
/* Deletes the user and its sessions and refresh tokens, checked as any
 * write of the caller (repo_act_as): AS_ERR_NOT_FOUND, or
 * AS_ERR_LAST_ADMIN for the last active admin, with nothing that any
 * answer tells changed. What its ended sessions hold goes first in
 * bounded batches; the rest with the row in one transaction, or, for an
 * account whose live sessions hold more than one transaction should
 * delete, after a transaction that ends the account at `now`
 * (deactivated, sessions revoked, links ended): a failure after that
 * (AS_ERR_UNAVAILABLE) leaves it ended and not deleted, and a retry
 * finishes it. */
enum as_err repo_user_delete(struct repo *r, const char *id, int64_t now);
/* Up to `limit` users ordered by id, ids greater than `after` (NULL: from
 * the start), whose email or full_name contains `q` literally and
 * case-insensitively (NULL: all). `out` has room for `limit`; *n gets the
 * count. */
enum as_err repo_user_list(struct repo *r, const char *q, const char *after,
                           unsigned limit, struct user *out, size_t *n,
                           struct arena *a);
/* Number of users (or of active admins only). */
enum as_err repo_user_count(struct repo *r, bool admins_only, int64_t *out);

/* Login lockout storage. Failed logins are counted per (email, client
 * address key) and per email over every address (stored with ip "*",
 * which no client address key can be). `email` is normalised.
 * AS_ERR_BAD_REQUEST for a NULL argument or ip "*". The rules are the
 * caller's (src/lockout.c); these are the atomic steps it builds on. */

/* In one transaction that concurrent callers on the same email (on any
 * instance) wait for: reads the counts of (email, ip) and (email, "*"),
 * lets fn() change them, and writes them back (count 0: the row is
 * deleted). So a read-check-count by fn() is one atomic step. */
enum as_err repo_login_failures_update(struct repo *r, const char *email,
                                       const char *ip,
                                       repo_login_update_fn fn, void *ctx);
/* repo_login_failures_update(), then `read` (see struct repo_user_read)
 * in the same transaction: a login's count and lookup in one step. */
enum as_err repo_login_failures_read(struct repo *r, const char *email,
                                     const char *ip, repo_login_update_fn fn,
                                     void *ctx, struct repo_user_read *read);
/* Forgets the counts of (email, ip) and (email, "*"); with `ip` NULL,
 * every count of `email` (an admin lifting a lockout, a reset link), 512
 * a transaction. */
enum as_err repo_login_failures_clear(struct repo *r, const char *email,
                                      const char *ip);

/* Inserts a session and its first refresh token hash in one transaction,
 * only while the user still exists with s->pw_gen (when set) and is
 * active: AS_ERR_NOT_FOUND when deleted, AS_ERR_BAD_CREDENTIALS when the
 * password changed, AS_ERR_DISABLED when deactivated meanwhile; with
 * s->one_factor, AS_ERR_MFA_REQUIRED when the second factor was turned
 * on meanwhile. `up` (NULL: none) is done as struct session_upkeep
 * says. */
enum as_err repo_session_create(struct repo *r, const struct session *s,
                                const uint8_t refresh_hash[REPO_HASH_LEN],
                                struct session_upkeep *up);
/* The signed-in caller a request runs for: its session, its account,
 * whether it acts as an admin (an admin-only route, or another user's
 * account), and whether its account is an admin's (as the request's
 * authentication read it: its rows are then taken with the admins'). */
struct repo_actor {
    const char *sid, *user_id;
    bool admin, admin_account;
};
/* Every write the calling thread makes from now on, until
 * repo_act_as(NULL), is made for `who` (borrowed until then): it commits
 * only while `who` may still make it, so a write that was in flight when
 * its session was revoked, its account deactivated or (as an admin)
 * demoted cannot land after that (AS_ERR_INVALID_TOKEN,
 * AS_ERR_FORBIDDEN). NULL: writes for nobody in particular (the CLI,
 * public routes, background work). */
void repo_act_as(const struct repo_actor *who);

/* AS_ERR_NOT_FOUND when absent. */
enum as_err repo_session_get(struct repo *r, const char *sid,
                             struct session *out, struct arena *a);
/* Whether a session is live (see struct session_state); an unknown id is
 * AS_OK with live = false. */
enum as_err repo_session_state(struct repo *r, const char *sid, int64_t now,
                               struct session_state *out);
#define REPO_SESSION_LIST_MAX 100
#define REPO_SESSION_LIST_MAX_STR "100"
/* The live sessions of a user, newest first, at most
 * REPO_SESSION_LIST_MAX of them; `*out` is an arena array. */
enum as_err repo_session_list(struct repo *r, const char *user_id,
                              int64_t now, struct session **out, size_t *n,
                              struct arena *a);
/* Revokes one live session; with `user_id` non-NULL only if it is that
 * user's. AS_ERR_NOT_FOUND when no such live session. */
enum as_err repo_session_revoke(struct repo *r, const char *sid,
                                const char *user_id, int64_t now);
/* Revokes every live session of a user except `keep_sid` (NULL: all). */
enum as_err repo_session_revoke_all(struct repo *r, const char *user_id,
                                    const char *keep_sid, int64_t now);
/* The atomic check-and-rotate of a refresh token (see enum rotate_result).
 * On ROTATE_OK the parent is marked used at `now`, the child stored, the
 * session's last_used_at = now and expires_at = new_expires, but never
 * past its created_at + max_life_ms (the session ends then). On
 * ROTATE_REUSED the session is revoked. `out` gets the session for OK,
 * GRACE and REUSED (so the replay can be audited). Safe against
 * concurrent callers on one database. */
enum as_err repo_refresh_rotate(struct repo *r,
                                const uint8_t parent[REPO_HASH_LEN],
                                const uint8_t child[REPO_HASH_LEN],
                                int64_t now, int64_t grace_ms,
                                int64_t new_expires, int64_t max_life_ms,
                                enum rotate_result *res,
                                struct session *out, struct arena *a);
/* The live session that refresh token `hash` belongs to: while the
 * token is unused, or (`rotated` not NULL) once rotated out while it is
 * still kept (struct repo_kept); AS_ERR_NOT_FOUND otherwise. */
enum as_err repo_refresh_session(struct repo *r,
                                 const uint8_t hash[REPO_HASH_LEN],
                                 int64_t now, const struct repo_kept *rotated,
                                 struct session *out, struct arena *a);

/* Backend constructors (repo.c picks one). `url` is what follows
 * "sqlite:" or the whole libpq URI. */
enum as_err repo_sqlite_open(const struct cfg *cfg, const char *path,
                             const struct repo_ops **ops, void **impl);
enum as_err repo_pg_open(const struct cfg *cfg, const char *url,
                         const struct repo_ops **ops, void **impl);
/* AS_ERR_BAD_REQUEST (logged as db.bad_url) when libpq cannot read libpq
 * URI `url` or a port in it is not from 1 to 65535, which repo_pg_open()
 * refuses the same; AS_ERR_INTERNAL when libpq cannot be opened. */
enum as_err repo_pg_url_check(const char *url);

/* ---- mail ---- */
/* Queues mail `m` (id, kind, recipient, created_at; user_id and seed
 * when known), unresolved and due at once. The same single insert
 * whatever the recipient, so a request's time does not tell whether an
 * account exists. In the same transaction it deletes a few (two) unsent
 * mails queued before `stale_before` and not leased at m->created_at,
 * so that the outbox stays bounded while no mailer runs.
 * AS_ERR_BAD_REQUEST when a field is missing. */
enum as_err repo_outbox_add(struct repo *r, const struct outbox_row *m,
                            int64_t stale_before);
/* In one transaction, readies mail `m` (as claimed) for
 * delivery. With token `t` (a mail with a link) it looks up the active
 * user the mail is for (OTT_RESET: the one whose email is m->recipient;
 * OTT_VERIFY: user m->user_id, still unverified, whose email is still
 * m->recipient). Then, user or not, it runs the count of mails to
 * m->recipient in the hour of `now` (an atomic counter row; the same
 * statements whether the account exists, but a mail to none adds
 * nothing). Without the user the row is deleted (*fate OUTBOX_NO_USER);
 * past `cap` too (OUTBOX_CAPPED).
 * Otherwise it stores `t` bound to that user and email and marks the row
 * resolved with t->expires_at (OUTBOX_READY); `user_id` gets the user's
 * id. Without `t` (a notice without a link, for user m->user_id; it may
 * be resolved already) the mail is counted in a count of notices to
 * m->recipient in that hour, apart from link mails so that a flood of
 * links cannot silence a notice, and past `cap` the row is due again
 * when the oldest notice of that count leaves the hour (OUTBOX_HELD),
 * or deleted when another notice of its kind about the same account to
 * m->recipient is held already (OUTBOX_CAPPED); otherwise it is marked
 * resolved (OUTBOX_READY). An error changes nothing. */
enum as_err repo_outbox_resolve(struct repo *r, const struct outbox_row *m,
                                const struct ott *t, unsigned cap,
                                int64_t now, enum outbox_fate *fate,
                                char user_id[UUID_STR_LEN]);
/* Deletes unsent mail `id` (its link expired before delivery). */
enum as_err repo_outbox_drop(struct repo *r, const char *id);
/* The active user an unused, unexpired reset token (`hash`) belongs to,
 * while the user's email is still the one the token was made for.
 * AS_ERR_NOT_FOUND otherwise. Strings of `out` live in `a`. */
enum as_err repo_ott_reset_user(struct repo *r,
                                const uint8_t hash[REPO_HASH_LEN],
                                int64_t now, struct user *out,
                                struct arena *a);
/* In one transaction: consumes reset token `hash` of `user_id` (unused,
 * unexpired, the user active with the token's email), sets the password
 * hash, revokes every session of the user, consumes the user's other
 * reset tokens and, with `drop_factors`, deletes its passkeys, TOTP and
 * recovery codes. AS_ERR_NOT_FOUND, and nothing changed, otherwise; of
 * concurrent callers with one token exactly one succeeds. */
enum as_err repo_ott_reset(struct repo *r, const uint8_t hash[REPO_HASH_LEN],
                           const char *user_id, const char *pw_hash,
                           bool drop_factors, int64_t now);
/* In one transaction: consumes verification token `hash` (unused,
 * unexpired, the user active and its email still the token's) and marks
 * the user verified, with the user's other verification tokens consumed.
 * AS_ERR_NOT_FOUND, and nothing changed, otherwise. `user_id` gets the
 * user's id. */
enum as_err repo_ott_verify(struct repo *r, const uint8_t hash[REPO_HASH_LEN],
                            int64_t now, char user_id[UUID_STR_LEN]);
/* Claims an unsent mail due at `now` whose lease has run out (one never
 * tried before ahead of retries, then the longest due), by setting its
 * lease to `lease_until`; other instances skip it until then
 * (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: in BEGIN IMMEDIATE).
 * AS_ERR_NOT_FOUND when none is due. Strings and seed of `out` live in
 * `a`. */
enum as_err repo_outbox_claim(struct repo *r, int64_t now,
                              int64_t lease_until, struct outbox_row *out,
                              struct arena *a);
/* Marks mail `id` sent at `now`, forgets its seed and releases the
 * lease. A mail already marked sent is left alone (AS_OK). */
enum as_err repo_outbox_sent(struct repo *r, const char *id, int64_t now);
/* Records a failed try of unsent mail `id`: attempts + 1, `error` (never
 * a secret) kept, next try at `next_at`, lease released. */
enum as_err repo_outbox_failed(struct repo *r, const char *id,
                               int64_t next_at, const char *error);
/* Deletes tokens that expired before `tokens_before`, mails sent before
 * `sent_before`, mails still unresolved that were queued before
 * `stale_before`, and mail counts of hours that began before it. */
enum as_err repo_mail_prune(struct repo *r, int64_t tokens_before,
                            int64_t sent_before, int64_t stale_before);

/* ---- second factor ---- */
/* The TOTP factor of `user_id`, pending or on; AS_ERR_NOT_FOUND when it
 * has none. The sealed secret lives in `a`. */
enum as_err repo_mfa_get(struct repo *r, const char *user_id,
                         struct mfa_state *out, struct arena *a);
/* Stores a new pending secret (sealed) for `user_id`, replacing a pending
 * one. AS_ERR_CONFLICT, and nothing changed, when the factor is on. */
enum as_err repo_mfa_pending(struct repo *r, const char *user_id,
                             const char *sealed, int64_t now);
/* In one transaction: turns the pending factor on with `step` as the last
 * step used (only while no later step was used, and only while the
 * pending secret is still `sealed`, the one the code was checked
 * against: compare-and-set), stores the `n` recovery code hashes `codes`
 * and revokes every session of the user but `keep_sid`.
 * AS_ERR_NOT_FOUND, and nothing changed, when there is no pending factor,
 * a new setup replaced it, or the step was used already. `now_us`: the
 * Unix microsecond of the change (the codes' time: see
 * repo_mfa_recovery_set()). */
enum as_err repo_mfa_enable(struct repo *r, const char *user_id,
                            int64_t step, const char *sealed,
                            const uint8_t (*codes)[REPO_HASH_LEN], size_t n,
                            const char *keep_sid, int64_t now_us);
/* A login token a code is used for, used in the code's transaction as
 * repo_mfa_token_use() uses it: a code and the login it completes are
 * used together or not at all. */
struct repo_mfa_login {
    const uint8_t *token;        /* REPO_HASH_LEN bytes */
    int64_t now;
    unsigned max_failures;
};
/* Records TOTP step `step` as used by `user_id` (factor on) only while it
 * is later than the last one used, in one compare-and-set statement: of
 * concurrent uses of one code exactly one succeeds. AS_ERR_NOT_FOUND
 * otherwise. With `login` (may be NULL), its token is used too:
 * AS_ERR_INVALID_TOKEN, and nothing used, when it is not live. */
enum as_err repo_mfa_use_step(struct repo *r, const char *user_id,
                              int64_t step,
                              const struct repo_mfa_login *login);
/* Marks the unused recovery code `hash` of `user_id` (factor on) used at
 * `now`; AS_ERR_NOT_FOUND when there is none (once each, atomically).
 * `login` as for repo_mfa_use_step(). */
enum as_err repo_mfa_use_recovery(struct repo *r, const char *user_id,
                                  const uint8_t hash[REPO_HASH_LEN],
                                  int64_t now,
                                  const struct repo_mfa_login *login);
/* Replaces every recovery code of `user_id` (factor on) by the `n` hashes
 * `codes`, in one transaction. AS_ERR_NOT_FOUND when the factor is off.
 * `proof`, when not NULL, is the hash of the recovery code the caller
 * proved the factor with (used up by it): AS_ERR_INVALID_CODE, and
 * nothing changed, when that code was replaced meanwhile (by a concurrent
 * renewal: the old codes stop working at once, the one just used too).
 * `since_us` (> 0), the Unix microsecond the caller began proving the
 * factor: likewise refused when codes were set after it (a concurrent
 * renewal proved with a TOTP code or another recovery code went first),
 * so of concurrent renewals only the first happens. `now_us` is the new
 * codes' time (microseconds; created_at its millisecond). */
enum as_err repo_mfa_recovery_set(struct repo *r, const char *user_id,
                                  const uint8_t *proof, int64_t since_us,
                                  const uint8_t (*codes)[REPO_HASH_LEN],
                                  size_t n, int64_t now_us);
/* Removes the factor of `user_id` (on or pending), its recovery codes and
 * its pending login tokens. *was_on tells whether it was on. `proof` as
 * for repo_mfa_recovery_set(). */
enum as_err repo_mfa_disable(struct repo *r, const char *user_id,
                             const uint8_t *proof, bool *was_on);
/* Stores the hash of a token that lets `user_id` finish a login with a
 * code until `expires_at`; forgets expired and used tokens. With
 * `pw_gen` >= 0 (the password_gen the login read) only while it is still
 * the account's and the account is active: AS_ERR_BAD_CREDENTIALS when a
 * change or reset went first, AS_ERR_DISABLED when a deactivation did,
 * AS_ERR_NOT_FOUND when a deletion did. */
enum as_err repo_mfa_token_create(struct repo *r,
                                  const uint8_t hash[REPO_HASH_LEN],
                                  const char *user_id, int64_t pw_gen,
                                  int64_t now, int64_t expires_at);
/* The user of login token `hash` while it is unused, unexpired at `now`
 * and has had fewer than `max_failures` wrong codes; AS_ERR_NOT_FOUND
 * otherwise. */
enum as_err repo_mfa_token_user(struct repo *r,
                                const uint8_t hash[REPO_HASH_LEN],
                                int64_t now, unsigned max_failures,
                                char user_id[UUID_STR_LEN]);
/* Claims one code attempt on login token `hash` in one compare-and-set
 * statement: counts it while the token is live as for
 * repo_mfa_token_user (fewer than `max_failures` counted so far);
 * AS_ERR_NOT_FOUND otherwise, so of concurrent attempts at most
 * `max_failures` are ever claimed. */
enum as_err repo_mfa_token_attempt(struct repo *r,
                                   const uint8_t hash[REPO_HASH_LEN],
                                   int64_t now, unsigned max_failures);
/* Gives back one attempt claimed on unused login token `hash` whose code
 * was never looked at (its caller was refused first); AS_ERR_NOT_FOUND
 * when none is counted or the token is used. */
enum as_err repo_mfa_token_refund(struct repo *r,
                                  const uint8_t hash[REPO_HASH_LEN]);
/* Uses login token `hash` (live as for repo_mfa_token_user) in one
 * compare-and-set statement; AS_ERR_NOT_FOUND when it is not live, so of
 * concurrent uses exactly one succeeds. */
enum as_err repo_mfa_token_use(struct repo *r,
                               const uint8_t hash[REPO_HASH_LEN],
                               int64_t now, unsigned max_failures);

/* ---- signing keys in PostgreSQL (see src/sec/dbstore.c) -------------- */

#define REPO_KEYS_MAX 64         /* keys listed at most */
#define REPO_KEY_REFRESH "refresh" /* kid of the refresh-derivation key */

/* One stored key: a signing key named by its thumbprint, or the
 * refresh-derivation key (kid REPO_KEY_REFRESH). `sealed` is the nonce
 * and AEAD ciphertext of the private part, never the key in clear. Times
 * are Unix ms; a signing key signs from `signs_from` until a later key's
 * `signs_from` has come. */
struct key_row {
    char kid[64];
    const uint8_t *sealed;       /* borrowed (caller's, or the arena's) */
    size_t sealed_len;
    int64_t created_at, signs_from;
};

/* Up to `cap` stored keys ordered by signs_from then kid; sealed bytes
 * live in `a`. AS_ERR_INTERNAL on a backend without a keys table. */
enum as_err repo_keys_list(struct repo *r, struct key_row *out, size_t cap,
                           size_t *n, struct arena *a);
/* Inserts `rows` in one transaction under an advisory lock (an existing
 * kid is left alone). With `only_if_empty`, nothing is inserted when a
 * key exists already (*added false), so instances starting at once on an
 * empty database settle on one first key; without it, AS_ERR_CONFLICT
 * when the table would hold more than REPO_KEYS_MAX rows. */
enum as_err repo_keys_add(struct repo *r, const struct key_row *rows,
                          size_t n, bool only_if_empty, bool *added);
/* Deletes signing keys whose successor started signing (at or before
 * `now`) before `before`; never the refresh-derivation key. */
enum as_err repo_keys_prune(struct repo *r, int64_t now, int64_t before);

/* ---- passkeys ---- */
/* Stores the hash of a challenge issued for `ceremony` (bound to
 * `user_id` for a registration; NULL for a login), valid until
 * `expires_at`; forgets a few expired ones. With `user_id` and `keep` >
 * 0, that user's challenges of `ceremony` beyond the newest `keep`
 * (this one among them) are forgotten too. */
enum as_err repo_passkey_challenge_put(struct repo *r,
                                       const uint8_t hash[REPO_HASH_LEN],
                                       enum passkey_ceremony ceremony,
                                       const char *user_id, unsigned keep,
                                       int64_t now, int64_t expires_at);
/* Uses up the challenge `hash` of `ceremony` while unexpired at `now`, in
 * one statement (of concurrent callers exactly one gets it); `user_id`
 * gets the user it is bound to ("" for none). With `owner` only a
 * challenge bound to that user is used up. AS_ERR_NOT_FOUND when it is
 * unknown, used, expired, of the other ceremony or (with `owner`) of
 * another user, who can still use it. */
enum as_err repo_passkey_challenge_take(struct repo *r,
                                        const uint8_t hash[REPO_HASH_LEN],
                                        enum passkey_ceremony ceremony,
                                        const char *owner, int64_t now,
                                        char user_id[UUID_STR_LEN]);
/* Inserts passkey `p` unless its user holds `max` already
 * (AS_ERR_TOO_LARGE; counted in the same transaction, with the user's
 * row locked, so concurrent inserts never pass it together);
 * AS_ERR_CONFLICT when its credential id is registered already (to
 * anyone); AS_ERR_NOT_FOUND when its user is gone. */
enum as_err repo_passkey_insert(struct repo *r, const struct passkey *p,
                                unsigned max);
/* The passkey whose credential id is `cred_id`; AS_ERR_NOT_FOUND. */
enum as_err repo_passkey_by_cred(struct repo *r, const char *cred_id,
                                 struct passkey *out, struct arena *a);
/* The passkeys of `user_id`, oldest first, at most REPO_PASSKEY_LIST_MAX;
 * `*out` is an arena array. */
enum as_err repo_passkey_list(struct repo *r, const char *user_id,
                              struct passkey **out, size_t *n,
                              struct arena *a);
/* Deletes passkey `id` of `user_id` and, in the same transaction, ends
 * (at `now`) the sessions its logins started; AS_ERR_NOT_FOUND when that
 * user has no such passkey. */
enum as_err repo_passkey_delete(struct repo *r, const char *id,
                                const char *user_id, int64_t now);
/* Records a use of passkey `id` at `now` with counter `new_count`, only
 * when that is above the stored counter or both are zero, compared and
 * set in one statement: of concurrent uses each one ahead of every use
 * stored before it succeeds. AS_ERR_NOT_FOUND otherwise (the passkey is
 * gone, or its counter is at or above `new_count`). */
enum as_err repo_passkey_use(struct repo *r, const char *id,
                             int64_t new_count, int64_t now);

#endif
