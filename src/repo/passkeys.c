/* passkeys.c: the passkey area of the repository (WebAuthn challenges and
 * registered credentials), written once for both backends over the
 * driver (driver.h). A challenge is used up and a counter moved each by
 * one statement, a passkey stored with the count of its user's in one
 * transaction; what a ceremony accepts is decided in
 * src/core/passkeys.c. */
#include "flows.h"

#include <string.h>

#include "mail.h"

#define PASSKEY_COLS                                                       \
    "id, user_id, cred_id, public_key, sign_count, transports, name, "     \
    "created_at, last_used_at"

enum {
    P_CHALLENGES_PRUNE, P_CHALLENGES_TRIM, P_CHALLENGE_ADD, P_CHALLENGE_TAKE,
    P_CHALLENGE_TAKE_OWN, P_OWNER_LOCK, P_OWNER_COUNT, P_INSERT, P_NOTICE,
    P_BY_CRED, P_LIST, P_DELETE, P_END_SESSIONS, P_STILL, P_USE, P_NSTMT
};

static struct db_stmt sql[P_NSTMT] = {
    /* A few expired challenges at a time, so no call grows long. */
    [P_CHALLENGES_PRUNE] = DB_SQL("DELETE FROM passkey_challenges "
                                  "WHERE hash IN (SELECT hash FROM "
                                  "passkey_challenges "
                                  "WHERE expires_at <= $1 LIMIT 16)"),
    /* A user's challenges of a ceremony but the newest $3 (index
     * passkey_challenges_user, migration 0010). */
    [P_CHALLENGES_TRIM] = DB_SQL("DELETE FROM passkey_challenges "
                                 "WHERE user_id = $1 AND ceremony = $2 "
                                 "AND hash NOT IN (SELECT hash FROM "
                                 "passkey_challenges WHERE user_id = $1 "
                                 "AND ceremony = $2 ORDER BY created_at "
                                 "DESC, hash DESC LIMIT $3)"),
    /* Nothing is stored for a user that does not exist (any more). A
     * user's challenge is stored as newer than the ones before it, even
     * in the same millisecond or with the clock set back, so that the
     * trim above forgets the oldest asked for, not the lowest hashes. */
    [P_CHALLENGE_ADD] = DB_SQL("INSERT INTO passkey_challenges (hash, "
                               "ceremony, user_id, created_at, "
                               "expires_at) SELECT $1, $2, $3, "
                               "CASE WHEN m.at >= $4 THEN m.at + 1 "
                               "ELSE $4 END, $5 FROM (SELECT "
                               "max(created_at) AS at FROM "
                               "passkey_challenges WHERE user_id = $3 "
                               "AND ceremony = $2) m "
                               "WHERE $3 IS NULL OR EXISTS (SELECT 1 "
                               "FROM users WHERE id = $3)"),
    [P_CHALLENGE_TAKE] = DB_SQL("DELETE FROM passkey_challenges "
                                "WHERE hash = $1 AND ceremony = $2 "
                                "AND expires_at > $3 "
                                "RETURNING coalesce(user_id, '')"),
    [P_CHALLENGE_TAKE_OWN] = DB_SQL("DELETE FROM passkey_challenges "
                                    "WHERE hash = $1 AND ceremony = $2 "
                                    "AND expires_at > $3 AND user_id = $4 "
                                    "RETURNING user_id"),
    /* Concurrent registrations of one user wait here for each other, so
     * that no two of them count the same passkeys (SQLite's write lock
     * serialises already). NO KEY: other rows referring to the user
     * (sessions) are not held up. */
    [P_OWNER_LOCK] = DB_PG_ONLY("SELECT 1 FROM users WHERE id = $1 "
                                "FOR NO KEY UPDATE"),
    [P_OWNER_COUNT] = DB_SQL("SELECT count(*) FROM passkeys "
                             "WHERE user_id = $1"),
    /* A credential id registered already changes no row; a user deleted
     * meanwhile fails the foreign key (AS_ERR_NOT_FOUND). */
    [P_INSERT] = DB_SQL("INSERT INTO passkeys (" PASSKEY_COLS ") "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                        "ON CONFLICT (cred_id) DO NOTHING"),
    /* The notice of a new passkey, to the owner's email as it is now
     * and whether it is verified (migration 0019), queued resolved
     * (README.md, "Mail"). */
    [P_NOTICE] = DB_SQL("INSERT INTO outbox (id, user_id, kind, recipient, "
                        "resolved, created_at, next_attempt_at, "
                        "to_verified) "
                        "SELECT $1, id, '" MAIL_KIND_PASSKEY_ADDED "', "
                        "email, true, $3, $3, is_verified FROM users "
                        "WHERE id = $2"),
    [P_BY_CRED] = DB_SQL("SELECT " PASSKEY_COLS " FROM passkeys "
                         "WHERE cred_id = $1"),
    [P_LIST] = DB_SQL("SELECT " PASSKEY_COLS " FROM passkeys "
                      "WHERE user_id = $1 ORDER BY id LIMIT $2"),
    [P_DELETE] = DB_SQL("DELETE FROM passkeys WHERE id = $1 "
                        "AND user_id = $2"),
    /* After P_DELETE, in its transaction: on PostgreSQL a login storing
     * its session holds the passkey's row (P_STILL) until it commits, so
     * the delete waits for it and this statement, read afresh, sees
     * that session too. */
    [P_END_SESSIONS] = DB_SQL("UPDATE sessions SET revoked_at = $3 "
                              "WHERE passkey_id = $1 AND user_id = $2 "
                              "AND revoked_at IS NULL"),
    /* The passkey a login used is not deleted, and stays so until the
     * login's session is stored (see P_END_SESSIONS). */
    [P_STILL] = DB_SPLIT("SELECT 1 FROM passkeys WHERE id = $1",
                         "SELECT 1 FROM passkeys WHERE id = $1 "
                         "FOR KEY SHARE"),
    /* Forward only, decided against the stored counter in the statement
     * itself: of concurrent uses each one that is ahead of all that went
     * before it moves the counter (zero stays allowed while both are
     * zero, for authenticators without a counter). */
    [P_USE] = DB_SQL("UPDATE passkeys SET sign_count = $2, "
                     "last_used_at = $3 WHERE id = $1 "
                     "AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))"),
};

/* Text PostgreSQL refuses to store (not UTF-8) was never stored: a
 * lookup of it finds nothing. */
static enum as_err none_if_invalid(enum as_err err, enum as_err none)
{
    return err == AS_ERR_VALIDATION ? none : err;
}

/* Time `ms` as an argument; 0 (never) is SQL NULL. */
static struct db_val time_or_null(int64_t ms)
{
    struct db_val v = db_int(ms);

    v.null = ms == 0;
    return v;
}

/* Reads PASSKEY_COLS of row `i`. */
static void read_passkey(struct db_tx *t, const struct db_rows *r, size_t i,
                         struct passkey *p)
{
    memset(p, 0, sizeof *p);
    db_id(t, db_at(r, i, 0), p->id);
    db_id(t, db_at(r, i, 1), p->user_id);
    p->cred_id = db_str(db_at(r, i, 2));
    p->public_key = db_str(db_at(r, i, 3));
    p->sign_count = db_i64(db_at(r, i, 4));
    p->transports = db_str(db_at(r, i, 5));
    p->name = db_str(db_at(r, i, 6));
    p->created_at = db_i64(db_at(r, i, 7));
    p->last_used_at = db_i64(db_at(r, i, 8));
}

enum as_err db_passkey_challenge_put(void *impl,
                                     const uint8_t hash[REPO_HASH_LEN],
                                     enum passkey_ceremony ceremony,
                                     const char *user_id, unsigned keep,
                                     int64_t now, int64_t expires_at)
{
    struct db_rows r;
    struct db_tx t;

    db_open(&t, impl, "passkey_challenge_put", true, NULL);
    DB_RUN(&t, &sql[P_CHALLENGES_PRUNE], &r, db_int(now));
    if (user_id && keep > 0)          /* room for this one among `keep` */
        DB_RUN(&t, &sql[P_CHALLENGES_TRIM], &r, db_text(user_id),
               db_int(ceremony), db_int((int64_t)keep - 1));
    if (DB_RUN(&t, &sql[P_CHALLENGE_ADD], &r, db_blob(hash, REPO_HASH_LEN),
               db_int(ceremony), db_text(user_id), db_int(now),
               db_int(expires_at)) && r.changed != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    return db_close(&t);
}

enum as_err db_passkey_challenge_take(void *impl,
                                      const uint8_t hash[REPO_HASH_LEN],
                                      enum passkey_ceremony ceremony,
                                      const char *owner, int64_t now,
                                      char user_id[UUID_STR_LEN])
{
    struct db_rows r;
    struct db_tx t;
    const char *bound;
    bool ran;

    user_id[0] = '\0';
    db_open(&t, impl, "passkey_challenge_take", true, NULL);
    ran = owner ? DB_RUN(&t, &sql[P_CHALLENGE_TAKE_OWN], &r,
                         db_blob(hash, REPO_HASH_LEN), db_int(ceremony),
                         db_int(now), db_text(owner))
                : DB_RUN(&t, &sql[P_CHALLENGE_TAKE], &r,
                         db_blob(hash, REPO_HASH_LEN), db_int(ceremony),
                         db_int(now));
    if (ran && r.n != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    bound = t.err == AS_OK ? db_str(db_at(&r, 0, 0)) : NULL;
    if (bound && bound[0])
        db_id(&t, db_at(&r, 0, 0), user_id);
    return db_close(&t);
}

enum as_err db_passkey_insert(void *impl, const struct passkey *p,
                              unsigned max)
{
    struct db_rows r;
    struct db_tx t;

    db_open(&t, impl, "passkey_insert", true, NULL);
    DB_RUN(&t, &sql[P_OWNER_LOCK], &r, db_text(p->user_id));
    if (DB_RUN(&t, &sql[P_OWNER_COUNT], &r, db_text(p->user_id)) &&
        db_i64(db_at(&r, 0, 0)) >= (int64_t)max)
        db_refuse(&t, AS_ERR_TOO_LARGE);
    if (DB_RUN(&t, &sql[P_INSERT], &r, db_text(p->id), db_text(p->user_id),
               db_text(p->cred_id), db_text(p->public_key),
               db_int(p->sign_count), db_text(p->transports),
               db_text(p->name), db_int(p->created_at),
               time_or_null(p->last_used_at)) && r.changed != 1)
        db_refuse(&t, AS_ERR_CONFLICT);
    if (p->notice_id)
        DB_RUN(&t, &sql[P_NOTICE], &r, db_text(p->notice_id),
               db_text(p->user_id), db_int(p->created_at));
    return db_close(&t);
}

enum as_err db_passkey_by_cred(void *impl, const char *cred_id,
                               struct passkey *out, struct arena *a)
{
    struct db_rows r;
    struct db_tx t;

    memset(out, 0, sizeof *out);
    db_open(&t, impl, "passkey_by_cred", false, a);
    if (DB_RUN(&t, &sql[P_BY_CRED], &r, db_text(cred_id)) && r.n != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    if (t.err == AS_OK)
        read_passkey(&t, &r, 0, out);
    return none_if_invalid(db_close(&t), AS_ERR_NOT_FOUND);
}

enum as_err db_passkey_list(void *impl, const char *user_id,
                            struct passkey **out, size_t *n,
                            struct arena *a)
{
    struct passkey *arr = NULL;
    struct db_rows r;
    struct db_tx t;
    size_t i;
    enum as_err err;

    db_open(&t, impl, "passkey_list", false, a);
    if (DB_RUN(&t, &sql[P_LIST], &r, db_text(user_id),
               db_int(REPO_PASSKEY_LIST_MAX)) && r.n > REPO_PASSKEY_LIST_MAX)
        db_refuse(&t, AS_ERR_INTERNAL);
    if (t.err == AS_OK && r.n > 0)
        arr = arena_alloc(a, r.n * sizeof *arr);
    if (t.err == AS_OK && r.n > 0 && !arr)
        db_refuse(&t, AS_ERR_NOMEM);
    for (i = 0; t.err == AS_OK && i < r.n; i++)
        read_passkey(&t, &r, i, &arr[i]);
    err = db_close(&t);
    if (err == AS_OK) {
        *out = arr;
        *n = r.n;
    }
    return none_if_invalid(err, AS_OK);
}

enum as_err db_passkey_delete(void *impl, const char *id,
                              const char *user_id, int64_t now)
{
    struct db_rows r;
    struct db_tx t;

    db_open(&t, impl, "passkey_delete", true, NULL);
    if (DB_RUN(&t, &sql[P_DELETE], &r, db_text(id), db_text(user_id)) &&
        r.changed != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    DB_RUN(&t, &sql[P_END_SESSIONS], &r, db_text(id), db_text(user_id),
           db_int(now));
    return none_if_invalid(db_close(&t), AS_ERR_NOT_FOUND);
}

static void passkey_there(struct db_tx *t, const struct db_rows *r,
                          void *ctx)
{
    (void)ctx;
    if (r->n != 1)
        db_refuse(t, AS_ERR_BAD_CREDENTIALS);    /* deleted meanwhile */
}

void db_passkey_still(struct db_tx *t, const char *id)
{
    DB_CHECK(t, &sql[P_STILL], passkey_there, NULL, db_text(id));
}

enum as_err db_passkey_use(void *impl, const char *id, int64_t new_count,
                           int64_t now)
{
    struct db_rows r;
    struct db_tx t;

    db_open(&t, impl, "passkey_use", true, NULL);
    if (DB_RUN(&t, &sql[P_USE], &r, db_text(id), db_int(new_count),
               db_int(now)) && r.changed != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    return db_close(&t);
}
