/* mfa.c: the second-factor area of the repository (TOTP factor, recovery
 * codes, login tokens that wait for a code), written once for both
 * backends over the driver (driver.h). Every single use is one
 * compare-and-set statement; the rules that decide when to use one live
 * in src/core/mfa.c. */
#include "flows.h"

#include <string.h>

/* How long a used login token is kept for the session of its login. */
#define MFA_TOKEN_KEEP_USED_MS INT64_C(60000)

enum {
    M_GET, M_PENDING, M_ENABLE, M_USE_STEP, M_USE_RECOVERY, M_LOCK_ON,
    M_CODES_DEL, M_CODE_ADD, M_REVOKE_ALL, M_DELETE, M_TOKENS_DEL,
    M_TOKENS_PRUNE, M_TOKEN_ADD, M_TOKEN_USER, M_TOKEN_ATTEMPT, M_TOKEN_USE,
    M_TOKEN_REFUND,
    M_LOCK_USER, M_FACTOR_ON, M_TOKEN_STILL, M_CODE_STILL, M_SET_SINCE,
    M_NSTMT
};

/* A login token is live: unused, unexpired at $2, fewer than $3 wrong. */
#define TOKEN_LIVE "used_at IS NULL AND expires_at > $2 AND failures < $3"
#define FACTOR_ON "SELECT 1 FROM user_mfa WHERE user_id = $1 AND enabled"

static struct db_stmt sql[M_NSTMT] = {
    /* The user's row first (lock order: see src/repo/users.c): a login
     * storing a password-only session holds it (sessions.c), so
     * turning the factor on waits for it, then revokes its session. */
    [M_LOCK_USER] = DB_PG_ONLY("SELECT 1 FROM users WHERE id = $1 "
                               "FOR NO KEY UPDATE"),
    [M_FACTOR_ON] = DB_SQL(FACTOR_ON),
    [M_GET] = DB_SQL("SELECT enabled, secret, last_step FROM user_mfa "
                     "WHERE user_id = $1"),
    /* A pending secret replaces a pending one, never a factor that is on
     * (then no row changes). */
    [M_PENDING] = DB_SQL("INSERT INTO user_mfa AS m (user_id, secret, "
                         "created_at) VALUES ($1, $2, $3) "
                         "ON CONFLICT (user_id) DO UPDATE SET "
                         "secret = excluded.secret, last_step = -1, "
                         "created_at = excluded.created_at "
                         "WHERE NOT m.enabled"),
    /* Only the secret the code was checked against: a setup that
     * replaced it meanwhile wins, and the code is refused. */
    [M_ENABLE] = DB_SQL("UPDATE user_mfa SET enabled = true, "
                        "last_step = $2, enabled_at = $3 "
                        "WHERE user_id = $1 AND NOT enabled "
                        "AND last_step < $2 AND secret = $4"),
    [M_USE_STEP] = DB_SQL("UPDATE user_mfa SET last_step = $2 "
                          "WHERE user_id = $1 AND enabled "
                          "AND last_step < $2"),
    [M_USE_RECOVERY] = DB_SQL("UPDATE mfa_recovery_codes SET used_at = $3 "
                              "WHERE user_id = $1 AND hash = $2 "
                              "AND used_at IS NULL AND user_id IN "
                              "(SELECT user_id FROM user_mfa "
                              "WHERE enabled)"),
    /* The row lock orders a change of codes against a concurrent
     * disable (SQLite's writers hold the database lock already). */
    [M_LOCK_ON] = DB_SPLIT(FACTOR_ON, FACTOR_ON " FOR UPDATE"),
    /* The recovery code a caller proved the factor with (and used up) is
     * still one of the account's: a renewal since replaced it. */
    [M_CODE_STILL] = DB_SQL("SELECT 1 FROM mfa_recovery_codes "
                            "WHERE user_id = $1 AND hash = $2 "
                            "AND used_at IS NOT NULL"),
    /* Codes set after the microsecond $2 (a renewal's, or the factor's
     * own); sets older than migration 0020 at their millisecond's
     * start. */
    [M_SET_SINCE] = DB_SQL("SELECT 1 FROM mfa_recovery_codes "
                           "WHERE user_id = $1 "
                           "AND coalesce(set_us, created_at * 1000) > $2 "
                           "LIMIT 1"),
    [M_CODES_DEL] = DB_SQL("DELETE FROM mfa_recovery_codes "
                           "WHERE user_id = $1"),
    [M_CODE_ADD] = DB_SQL("INSERT INTO mfa_recovery_codes (user_id, hash, "
                          "created_at, set_us) VALUES ($1, $2, $3, $4)"),
    [M_REVOKE_ALL] = DB_SQL("UPDATE sessions SET revoked_at = $3 "
                            "WHERE user_id = $1 AND revoked_at IS NULL "
                            "AND ($2 IS NULL OR id <> $2)"),
    [M_DELETE] = DB_SQL("DELETE FROM user_mfa WHERE user_id = $1 "
                        "RETURNING enabled"),
    [M_TOKENS_DEL] = DB_SQL("DELETE FROM mfa_tokens WHERE user_id = $1"),
    /* A few expired tokens, or tokens used more than a minute ago, at a
     * time, so no call grows long: a token just used is kept for the
     * session its login is storing (M_TOKEN_STILL). */
    [M_TOKENS_PRUNE] = DB_SQL("DELETE FROM mfa_tokens WHERE hash IN "
                              "(SELECT hash FROM mfa_tokens "
                              "WHERE expires_at < $1 "
                              "OR used_at < $2 LIMIT 16)"),
    /* The login token a session comes from was not ended since its use
     * (M_TOKENS_DEL by what ends sessions, which holds the user's row
     * while the session's flow holds it). */
    [M_TOKEN_STILL] = DB_SQL("SELECT 1 FROM mfa_tokens WHERE hash = $1 "
                             "AND used_at IS NOT NULL"),
    [M_TOKEN_ADD] = DB_SQL("INSERT INTO mfa_tokens (hash, user_id, "
                           "created_at, expires_at) "
                           "VALUES ($1, $2, $3, $4)"),
    [M_TOKEN_USER] = DB_SQL("SELECT user_id FROM mfa_tokens "
                            "WHERE hash = $1 AND " TOKEN_LIVE),
    [M_TOKEN_ATTEMPT] = DB_SQL("UPDATE mfa_tokens "
                               "SET failures = failures + 1 "
                               "WHERE hash = $1 AND " TOKEN_LIVE),
    [M_TOKEN_USE] = DB_SQL("UPDATE mfa_tokens SET used_at = $2 "
                           "WHERE hash = $1 AND " TOKEN_LIVE),
    [M_TOKEN_REFUND] = DB_SQL("UPDATE mfa_tokens "
                              "SET failures = failures - 1 "
                              "WHERE hash = $1 AND used_at IS NULL "
                              "AND failures > 0"),
};

/* Text PostgreSQL refuses to store (not UTF-8) was never stored: a
 * change of what it names finds nothing. */
static enum as_err none_if_invalid(enum as_err err)
{
    return err == AS_ERR_VALIDATION ? AS_ERR_NOT_FOUND : err;
}

/* Runs statement `st`, a single compare-and-set of one row, with `n`
 * arguments: `none` unless it changed exactly one row. */
static enum as_err one_row(void *impl, const char *op, int st,
                           enum as_err none, const struct db_val *args,
                           size_t n)
{
    struct db_rows r;
    struct db_tx t;

    db_open(&t, impl, op, true, NULL);
    if (db_run(&t, &sql[st], args, n, &r) && r.changed != 1)
        db_refuse(&t, none);
    return db_close(&t);
}

/* one_row() with its arguments listed, as DB_RUN() lists them. */
#define ONE_ROW(impl, op, st, none, ...)                                   \
    one_row((impl), (op), (st), (none),                                    \
            (const struct db_val[]){ __VA_ARGS__ },                        \
            sizeof((const struct db_val[]){ __VA_ARGS__ })                 \
                / sizeof(struct db_val))

/* Replaces the recovery codes of `user_id` by the `n` hashes `codes`. */
/* Replaces the codes of `user_id`, made at the microsecond `now_us`. */
static void codes_put(struct db_tx *t, const char *user_id,
                      const uint8_t (*codes)[REPO_HASH_LEN], size_t n,
                      int64_t now_us)
{
    struct db_rows r;
    size_t i;

    DB_RUN(t, &sql[M_CODES_DEL], &r, db_text(user_id));
    for (i = 0; i < n && t->err == AS_OK; i++)
        DB_RUN(t, &sql[M_CODE_ADD], &r, db_text(user_id),
               db_blob(codes[i], REPO_HASH_LEN), db_int(now_us / 1000),
               db_int(now_us));
}

enum as_err db_mfa_get(void *impl, const char *user_id,
                       struct mfa_state *out, struct arena *a)
{
    struct db_rows r;
    struct db_tx t;

    memset(out, 0, sizeof *out);
    db_open(&t, impl, "mfa_get", false, a);
    if (DB_RUN(&t, &sql[M_GET], &r, db_text(user_id)) && r.n != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    if (t.err == AS_OK) {
        out->enabled = db_flag(db_at(&r, 0, 0));
        out->secret = db_str(db_at(&r, 0, 1));
        out->last_step = db_i64(db_at(&r, 0, 2));
    }
    return db_close(&t);
}

enum as_err db_mfa_pending(void *impl, const char *user_id,
                           const char *sealed, int64_t now)
{
    return ONE_ROW(impl, "mfa_pending", M_PENDING, AS_ERR_CONFLICT,
                   db_text(user_id), db_text(sealed), db_int(now));
}

enum as_err db_mfa_enable(void *impl, const char *user_id, int64_t step,
                          const char *sealed,
                          const uint8_t (*codes)[REPO_HASH_LEN], size_t n,
                          const char *keep_sid, int64_t now_us)
{
    struct db_rows r;
    struct db_tx t;
    int64_t now = now_us / 1000;

    db_open(&t, impl, "mfa_enable", true, NULL);
    DB_RUN(&t, &sql[M_LOCK_USER], &r, db_text(user_id));
    if (DB_RUN(&t, &sql[M_ENABLE], &r, db_text(user_id), db_int(step),
               db_int(now), db_text(sealed)) && r.changed != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    codes_put(&t, user_id, codes, n, now_us);
    DB_RUN(&t, &sql[M_REVOKE_ALL], &r, db_text(user_id), db_text(keep_sid),
           db_int(now));
    return none_if_invalid(db_close(&t));
}

/* Runs the code's compare-and-set `st` and, with `login`, uses its token
 * in the same transaction (the one that loses a race for the token
 * leaves its code unused). */
static enum as_err code_use(void *impl, const char *op, int st,
                            const struct db_val *args, size_t n,
                            const struct repo_mfa_login *login)
{
    struct db_rows r;
    struct db_tx t;

    db_open(&t, impl, op, true, NULL);
    if (db_run(&t, &sql[st], args, n, &r) && r.changed != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    if (login && t.err == AS_OK &&
        DB_RUN(&t, &sql[M_TOKEN_USE], &r,
               db_blob(login->token, REPO_HASH_LEN), db_int(login->now),
               db_int(login->max_failures)) &&
        r.changed != 1)
        db_refuse(&t, AS_ERR_INVALID_TOKEN);
    return db_close(&t);
}

enum as_err db_mfa_use_step(void *impl, const char *user_id, int64_t step,
                            const struct repo_mfa_login *login)
{
    return code_use(impl, "mfa_use_step", M_USE_STEP,
                    DB_ARGS_(db_text(user_id), db_int(step)), login);
}

enum as_err db_mfa_use_recovery(void *impl, const char *user_id,
                                const uint8_t hash[REPO_HASH_LEN],
                                int64_t now,
                                const struct repo_mfa_login *login)
{
    return code_use(impl, "mfa_use_recovery", M_USE_RECOVERY,
                    DB_ARGS_(db_text(user_id),
                             db_blob(hash, REPO_HASH_LEN), db_int(now)),
                    login);
}

/* Inside flow `t`, after M_LOCK_ON: refuses it (AS_ERR_INVALID_CODE)
 * when the recovery code `proof` (NULL: none) was replaced since its use,
 * so of concurrent changes proved with old codes only the first one
 * happens. */
static void proof_still(struct db_tx *t, const char *user_id,
                        const uint8_t *proof)
{
    struct db_rows r;

    if (proof && DB_RUN(t, &sql[M_CODE_STILL], &r, db_text(user_id),
                        db_blob(proof, REPO_HASH_LEN)) && r.n != 1)
        db_refuse(t, AS_ERR_INVALID_CODE);
}

enum as_err db_mfa_recovery_set(void *impl, const char *user_id,
                                const uint8_t *proof, int64_t since_us,
                                const uint8_t (*codes)[REPO_HASH_LEN],
                                size_t n, int64_t now_us)
{
    struct db_rows r;
    struct db_tx t;

    db_open(&t, impl, "mfa_recovery_set", true, NULL);
    if (DB_RUN(&t, &sql[M_LOCK_ON], &r, db_text(user_id)) && r.n != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    proof_still(&t, user_id, proof);
    /* Under the row lock: a renewal that began before another one's
     * codes were set comes second, whatever it proved with. */
    if (since_us > 0 && DB_RUN(&t, &sql[M_SET_SINCE], &r,
                               db_text(user_id), db_int(since_us)) &&
        r.n > 0)
        db_refuse(&t, AS_ERR_INVALID_CODE);
    codes_put(&t, user_id, codes, n, now_us);
    return none_if_invalid(db_close(&t));
}

static void factor_off(struct db_tx *t, const struct db_rows *r, void *ctx)
{
    (void)ctx;
    if (r->n > 0)
        db_refuse(t, AS_ERR_MFA_REQUIRED);
}

void db_one_factor_still(struct db_tx *t, const char *user_id)
{
    DB_CHECK(t, &sql[M_FACTOR_ON], factor_off, NULL, db_text(user_id));
}

static void token_there(struct db_tx *t, const struct db_rows *r,
                        void *ctx)
{
    (void)ctx;
    if (r->n != 1)
        db_refuse(t, AS_ERR_INVALID_TOKEN);
}

void db_mfa_token_still(struct db_tx *t, const uint8_t hash[REPO_HASH_LEN])
{
    DB_CHECK(t, &sql[M_TOKEN_STILL], token_there, NULL,
             db_blob(hash, REPO_HASH_LEN));
}

void db_mfa_tokens_end(struct db_tx *t, const char *user_id)
{
    DB_SEND(t, &sql[M_TOKENS_DEL], db_text(user_id));
}

void db_mfa_end(struct db_tx *t, const char *user_id, bool *was_on)
{
    struct db_rows r;

    if (DB_RUN(t, &sql[M_DELETE], &r, db_text(user_id)) && r.n == 1 &&
        was_on)
        *was_on = db_flag(db_at(&r, 0, 0));
    DB_RUN(t, &sql[M_CODES_DEL], &r, db_text(user_id));
    DB_RUN(t, &sql[M_TOKENS_DEL], &r, db_text(user_id));
}

enum as_err db_mfa_disable(void *impl, const char *user_id,
                           const uint8_t *proof, bool *was_on)
{
    struct db_rows r;
    struct db_tx t;

    db_open(&t, impl, "mfa_disable", true, NULL);
    /* the factor's row first, as a renewal takes it (none: pending) */
    DB_RUN(&t, &sql[M_LOCK_ON], &r, db_text(user_id));
    proof_still(&t, user_id, proof);
    db_mfa_end(&t, user_id, was_on);
    return none_if_invalid(db_close(&t));
}

enum as_err db_mfa_token_create(void *impl,
                                const uint8_t hash[REPO_HASH_LEN],
                                const char *user_id, int64_t pw_gen,
                                int64_t now, int64_t expires_at)
{
    struct db_tx t;

    db_open(&t, impl, "mfa_token_create", true, NULL);
    db_login_still(&t, user_id, pw_gen);
    DB_SEND(&t, &sql[M_TOKENS_PRUNE], db_int(now),
            db_int(now - MFA_TOKEN_KEEP_USED_MS));
    DB_SEND(&t, &sql[M_TOKEN_ADD], db_blob(hash, REPO_HASH_LEN),
            db_text(user_id), db_int(now), db_int(expires_at));
    return db_close(&t);
}

enum as_err db_mfa_token_user(void *impl, const uint8_t hash[REPO_HASH_LEN],
                              int64_t now, unsigned max_failures,
                              char user_id[UUID_STR_LEN])
{
    struct db_rows r;
    struct db_tx t;

    db_open(&t, impl, "mfa_token_user", false, NULL);
    if (DB_RUN(&t, &sql[M_TOKEN_USER], &r, db_blob(hash, REPO_HASH_LEN),
               db_int(now), db_int(max_failures)) && r.n != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    if (t.err == AS_OK)
        db_id(&t, db_at(&r, 0, 0), user_id);
    return db_close(&t);
}

/* Runs the compare-and-set `st` on the live token `hash`. */
static enum as_err token_cas(void *impl, const char *op, int st,
                             const uint8_t hash[REPO_HASH_LEN], int64_t now,
                             unsigned max_failures)
{
    return ONE_ROW(impl, op, st, AS_ERR_NOT_FOUND,
                   db_blob(hash, REPO_HASH_LEN), db_int(now),
                   db_int(max_failures));
}

enum as_err db_mfa_token_attempt(void *impl,
                                 const uint8_t hash[REPO_HASH_LEN],
                                 int64_t now, unsigned max_failures)
{
    return token_cas(impl, "mfa_token_attempt", M_TOKEN_ATTEMPT, hash, now,
                     max_failures);
}

enum as_err db_mfa_token_refund(void *impl,
                                const uint8_t hash[REPO_HASH_LEN])
{
    return ONE_ROW(impl, "mfa_token_refund", M_TOKEN_REFUND,
                   AS_ERR_NOT_FOUND, db_blob(hash, REPO_HASH_LEN));
}

enum as_err db_mfa_token_use(void *impl, const uint8_t hash[REPO_HASH_LEN],
                             int64_t now, unsigned max_failures)
{
    return token_cas(impl, "mfa_token_use", M_TOKEN_USE, hash, now,
                     max_failures);
}
