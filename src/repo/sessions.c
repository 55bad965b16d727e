/* sessions.c: the sessions and refresh tokens area of the repository,
 * written once for both backends over the driver (driver.h). Whether a
 * presented refresh token rotates is src/core/rotation.c's rule; this
 * file reads its facts and applies the answer in one transaction. */
#include "flows.h"

#include <stdio.h>
#include <string.h>

#include "repo_int.h"
#include "rotation.h"

#define SESSION_COLS                                                       \
    "s.id, s.user_id, s.created_at, s.last_used_at, s.expires_at, "        \
    "s.revoked_at, s.ip, s.user_agent, s.amr"
#define SESSION_NCOLS 9
/* Refresh tokens of ended sessions one pruning deletes, of each kind. */
#define PRUNE_TOKENS "512"
/* The first 16 sessions whose `col` (expires_at, revoked_at) is before
 * $1; at most PRUNE_TOKENS of their refresh tokens; those of them left
 * without one. `lock`: "" or SKIP_LOCKED (PostgreSQL). */
#define ENDED_16(col)                                                      \
    "SELECT id FROM sessions WHERE " col " < $1 ORDER BY " col " LIMIT 16"
#define PRUNE_TOKENS_OF(col, lock)                                         \
    "DELETE FROM refresh_tokens WHERE hash IN (SELECT hash FROM "          \
    "refresh_tokens WHERE session_id IN (" ENDED_16(col) ") "              \
    "LIMIT " PRUNE_TOKENS lock ")"
#define PRUNE_SESSIONS_OF(col, lock)                                       \
    "DELETE FROM sessions WHERE id IN (" ENDED_16(col) lock ") "           \
    "AND NOT EXISTS (SELECT 1 FROM refresh_tokens "                        \
    "WHERE session_id = sessions.id)"
#define SKIP_LOCKED " FOR UPDATE SKIP LOCKED"
/* Whether user $1 is active, and still has password_gen $2 (-1: any);
 * on PostgreSQL its row held with `lock`. */
#define LOGIN_STILL(lock)                                                  \
    DB_SPLIT("SELECT is_active, $2 < 0 OR password_gen = $2 "             \
             "FROM users WHERE id = $1",                                   \
             "SELECT is_active, $2::bigint < 0 OR password_gen = $2 "     \
             "FROM users WHERE id = $1 " lock)
/* Session s (of user u) is live at $2. */
#define LIVE_AT_2 "s.revoked_at IS NULL AND s.expires_at > $2 AND u.is_active"
/* The live session of refresh token $1 (now: $2). */
#define TOKEN_SESSION                                                      \
    "SELECT " SESSION_COLS " FROM refresh_tokens t "                       \
    "JOIN sessions s ON s.id = t.session_id "                              \
    "JOIN users u ON u.id = s.user_id WHERE t.hash = $1 AND " LIVE_AT_2 " "
#define REVOKE_ALL                                                         \
    "UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 "              \
    "AND revoked_at IS NULL AND ($2 IS NULL OR id <> $2)"

enum {
    S_INSERT, S_TOKEN_INSERT, S_GET, S_STATE, S_LIST, S_REVOKE, S_REVOKE_ALL,
    S_LOCK_USER, S_LOCK_BY_TOKEN, S_FACTS, S_TOKEN_USE, S_CHILD, S_TOUCH,
    S_KILL, S_TOKEN_SESSION, S_ANY_TOKEN_SESSION, S_PW_STILL,
    S_PRUNE_ENDED_TOKENS, S_PRUNE_REVOKED_TOKENS, S_PRUNE_ENDED,
    S_PRUNE_REVOKED, S_PRUNE_USED, S_CAP, S_PW_HELD, S_NSTMT
};

static struct db_stmt sql[S_NSTMT] = {
    /* The account a login checked still allows it: active, and the
     * password it read is still the account's (password_gen, migration
     * 0015: a new hash of the same password is no change);
     * the row is held until the session is stored, so a deactivation or
     * a password change waits for the login (and then revokes its
     * session) or went first (and the login is refused). SQLite's write
     * lock serialises the two already. */
    [S_PW_STILL] = LOGIN_STILL("FOR SHARE"),
    /* The same for a new session that ends others (S_CAP): the row
     * held as S_CAP holds it from the start, so that two logins of one
     * account never both hold it shared and then both wait to hold it
     * alone (a deadlock); they take turns instead, as their caps did. */
    [S_PW_HELD] = LOGIN_STILL("FOR NO KEY UPDATE"),
    /* The pruning of sessions that ended before $1, in bounded steps:
     * first at most PRUNE_TOKENS refresh tokens of the first 16 of them
     * (in the order of the indexes of migration 0012), then those of the
     * 16 left without a token. A session refreshed for weeks holds its
     * tokens by the ten thousand; deleted with it at once (ON DELETE
     * CASCADE), they held SQLite's write lock, or ran into PostgreSQL's
     * statement timeout and were tried again every second for ever. On
     * PostgreSQL rows another pruner holds are skipped, so two never
     * wait on each other. */
    [S_PRUNE_ENDED_TOKENS] = DB_SPLIT(PRUNE_TOKENS_OF("expires_at", ""),
                                      PRUNE_TOKENS_OF("expires_at",
                                                      SKIP_LOCKED)),
    [S_PRUNE_REVOKED_TOKENS] = DB_SPLIT(PRUNE_TOKENS_OF("revoked_at", ""),
                                        PRUNE_TOKENS_OF("revoked_at",
                                                        SKIP_LOCKED)),
    [S_PRUNE_ENDED] = DB_SPLIT(PRUNE_SESSIONS_OF("expires_at", ""),
                               PRUNE_SESSIONS_OF("expires_at",
                                                 SKIP_LOCKED)),
    [S_PRUNE_REVOKED] = DB_SPLIT(PRUNE_SESSIONS_OF("revoked_at", ""),
                                 PRUNE_SESSIONS_OF("revoked_at",
                                                   SKIP_LOCKED)),
    /* A few tokens of session $1 rotated out and issued before $2 (past
     * a refresh token's lifetime: presented again they could only be
     * refused), by the index of migration 0013. */
    [S_PRUNE_USED] = DB_SQL("DELETE FROM refresh_tokens WHERE hash IN "
                            "(SELECT hash FROM refresh_tokens "
                            "WHERE session_id = $1 AND created_at < $2 "
                            "AND used_at < $3 LIMIT 2)"),
    [S_INSERT] = DB_SQL("INSERT INTO sessions (id, user_id, created_at, "
                        "last_used_at, expires_at, revoked_at, ip, "
                        "user_agent, amr, passkey_id) VALUES ($1, $2, $3, "
                        "$4, $5, $6, $7, $8, coalesce($9, 'pwd'), $10)"),
    [S_TOKEN_INSERT] = DB_SQL("INSERT INTO refresh_tokens (hash, "
                              "session_id, created_at) VALUES ($1, $2, $3)"),
    [S_GET] = DB_SQL("SELECT " SESSION_COLS " FROM sessions s "
                     "WHERE s.id = $1"),
    [S_STATE] = DB_SQL("SELECT " LIVE_AT_2 ", u.role, u.email, u.id, "
                       "s.amr "
                       "FROM sessions s JOIN users u ON u.id = s.user_id "
                       "WHERE s.id = $1"),
    [S_LIST] = DB_SQL("SELECT " SESSION_COLS " FROM sessions s "
                      "WHERE s.user_id = $1 AND s.revoked_at IS NULL "
                      "AND s.expires_at > $2 "
                      "ORDER BY s.created_at DESC, s.id DESC "
                      "LIMIT " REPO_SESSION_LIST_MAX_STR),
    [S_REVOKE] = DB_SQL("UPDATE sessions SET revoked_at = $3 "
                        "WHERE id = $1 AND revoked_at IS NULL "
                        "AND expires_at > $3 "
                        "AND ($2 IS NULL OR user_id = $2)"),
    /* Inside a flow that holds the user's row already. */
    [S_REVOKE_ALL] = DB_SQL(REVOKE_ALL),
    /* Alone: the user's row first (lock order, see users.c), as a
     * password change does, in a statement of its own: PostgreSQL's READ
     * COMMITTED reads the sessions of the next statement as of its
     * start, after the wait, so a session a login stored while holding
     * the row is seen and revoked (in one statement, it was not). */
    [S_LOCK_USER] = DB_PG_ONLY("SELECT 1 FROM users WHERE id = $1 "
                               "FOR NO KEY UPDATE"),
    /* The session's row before its tokens (lock order): a concurrent
     * rotation or delete of the same session waits here, then reads the
     * token as that one left it. */
    [S_LOCK_BY_TOKEN] = DB_PG_ONLY("SELECT id FROM sessions WHERE id = "
                                   "(SELECT session_id FROM refresh_tokens "
                                   "WHERE hash = $1) FOR NO KEY UPDATE"),
    [S_FACTS] = DB_SQL("SELECT " SESSION_COLS ", t.used_at, u.is_active, "
                       "t.created_at "
                       "FROM refresh_tokens t "
                       "JOIN sessions s ON s.id = t.session_id "
                       "JOIN users u ON u.id = s.user_id WHERE t.hash = $1"),
    /* Compare-and-set: consumes the parent only while unused. */
    [S_TOKEN_USE] = DB_SQL("UPDATE refresh_tokens SET used_at = $2 "
                           "WHERE hash = $1 AND used_at IS NULL"),
    [S_CHILD] = DB_SQL("INSERT INTO refresh_tokens (hash, session_id, "
                       "created_at) VALUES ($1, $2, $3) "
                       "ON CONFLICT (hash) DO NOTHING"),
    [S_TOUCH] = DB_SQL("UPDATE sessions SET last_used_at = $2, "
                       "expires_at = $3 WHERE id = $1"),
    [S_KILL] = DB_SQL("UPDATE sessions SET revoked_at = $2 "
                      "WHERE id = $1 AND revoked_at IS NULL"),
    [S_TOKEN_SESSION] = DB_SQL(TOKEN_SESSION "AND t.used_at IS NULL"),
    /* Any token the session still keeps, rotated or not: what a logout
     * or an RFC 7009 revocation names (a tab that lost a refresh race
     * still ends the session with the token it holds); $3, $4: struct
     * repo_kept. One kept no longer names nothing, as a refresh with it
     * ends nothing (before, it ended the session until pruned). */
    [S_ANY_TOKEN_SESSION] = DB_SQL(TOKEN_SESSION "AND (t.used_at IS NULL "
                                   "OR t.created_at >= $3 "
                                   "OR t.used_at >= $4)"),
    /* The live sessions of $1 beyond the $2 most recently used end; on
     * PostgreSQL the user's row first (lock order, see users.c), so two
     * logins at once cap one after the other. */
    [S_CAP] = DB_SPLIT("UPDATE sessions SET revoked_at = $3 WHERE id IN "
                       "(SELECT id FROM sessions WHERE user_id = $1 "
                       "AND revoked_at IS NULL AND expires_at > $3 "
                       "ORDER BY last_used_at DESC, id DESC "
                       "LIMIT -1 OFFSET $2)",
                       "UPDATE sessions SET revoked_at = $3 WHERE id IN "
                       "(SELECT id FROM sessions WHERE user_id = "
                       "(SELECT id FROM users WHERE id = $1 "
                       "FOR NO KEY UPDATE) "
                       "AND revoked_at IS NULL AND expires_at > $3 "
                       "ORDER BY last_used_at DESC, id DESC OFFSET $2)"),
};

/* Reads SESSION_COLS of row `i`. */
static void read_session(struct db_tx *t, const struct db_rows *r, size_t i,
                         struct session *s)
{
    memset(s, 0, sizeof *s);
    db_id(t, db_at(r, i, 0), s->id);
    db_id(t, db_at(r, i, 1), s->user_id);
    s->created_at = db_i64(db_at(r, i, 2));
    s->last_used_at = db_i64(db_at(r, i, 3));
    s->expires_at = db_i64(db_at(r, i, 4));
    s->revoked_at = db_i64(db_at(r, i, 5));    /* NULL reads as 0 */
    s->ip = db_str(db_at(r, i, 6));
    s->user_agent = db_str(db_at(r, i, 7));
    s->amr = db_str(db_at(r, i, 8));
}

/* Text PostgreSQL refuses to store (not UTF-8) was never stored. */
static enum as_err none_if_invalid(enum as_err err, enum as_err none)
{
    return err == AS_ERR_VALIDATION ? none : err;
}

void db_revoke_sessions(struct db_tx *t, const char *user_id,
                        const char *keep_sid, int64_t now)
{
    DB_SEND(t, &sql[S_REVOKE_ALL], db_text(user_id), db_text(keep_sid),
            db_int(now));
    db_mfa_tokens_end(t, user_id);
}

static void login_still(struct db_tx *t, const struct db_rows *r,
                        void *ctx)
{
    (void)ctx;
    if (r->n != 1)
        db_refuse(t, AS_ERR_NOT_FOUND);           /* deleted meanwhile */
    else if (!db_flag(db_at(r, 0, 1)))
        db_refuse(t, AS_ERR_BAD_CREDENTIALS);     /* password changed */
    else if (!db_flag(db_at(r, 0, 0)))
        db_refuse(t, AS_ERR_DISABLED);
}

void db_login_still(struct db_tx *t, const char *user_id, int64_t pw_gen)
{
    DB_CHECK(t, &sql[S_PW_STILL], login_still, NULL, db_text(user_id),
             db_int(pw_gen));
}

/* A pruning that found nothing to delete (or failed) lets the sessions
 * of the next second skip theirs: what ends in a second is a second's
 * worth, which the pruning after it takes 32 at a time. */
#define PRUNE_REST_MS 1000

/* Deletes a few sessions that ended before `before`, in a transaction of
 * its own whose failure is ignored (the next session prunes): at most
 * PRUNE_TOKENS refresh tokens of each kind of ended session, then the 16
 * of each kind picked that have none left, so a pruning is a few
 * milliseconds however many tokens a session gathered, and a slow or
 * failed one never costs a login its session. It skips rows others hold,
 * so it never waits for them. */
static void prune(void *impl, int64_t before)
{
    struct db *db = impl;
    int64_t n[4] = { 0 };
    struct db_tx t;

    if (db_prune_rests(&db->prune_rest, before, PRUNE_REST_MS))
        return;                   /* (a clock set back does not stop it) */
    db_open(&t, impl, "sessions_prune", true, NULL);
    DB_NOTE(&t, &sql[S_PRUNE_ENDED_TOKENS], db_note_changed, &n[0],
            db_int(before));
    DB_NOTE(&t, &sql[S_PRUNE_REVOKED_TOKENS], db_note_changed, &n[1],
            db_int(before));
    DB_NOTE(&t, &sql[S_PRUNE_ENDED], db_note_changed, &n[2],
            db_int(before));
    DB_NOTE(&t, &sql[S_PRUNE_REVOKED], db_note_changed, &n[3],
            db_int(before));
    if (db_close(&t) != AS_OK || n[0] + n[1] + n[2] + n[3] == 0)
        atomic_store(&db->prune_rest, before + PRUNE_REST_MS);
}

enum as_err db_session_create(void *impl, const struct session *s,
                              const uint8_t hash[REPO_HASH_LEN],
                              struct session_upkeep *up)
{
    bool cap = up && up->keep > 0;
    int64_t ended = 0;
    struct db_tx t;
    enum as_err err;

    db_open(&t, impl, "session_create", true, NULL);
    DB_CHECK(&t, &sql[cap ? S_PW_HELD : S_PW_STILL], login_still, NULL,
             db_text(s->user_id), db_int(s->pw_gen));
    if (s->one_factor)
        db_one_factor_still(&t, s->user_id);
    if (s->mfa_token)
        db_mfa_token_still(&t, s->mfa_token);
    if (s->passkey_id)
        db_passkey_still(&t, s->passkey_id);
    /* Sent with the checks above, and the cap and the clear with them:
     * one round trip for them all, one for the COMMIT (undone if a check
     * refuses). The cap sees the new session (a later statement of the
     * transaction). */
    DB_SEND(&t, &sql[S_INSERT], db_text(s->id), db_text(s->user_id),
            db_int(s->created_at), db_int(s->last_used_at),
            db_int(s->expires_at),
            db_time(s->revoked_at),
            db_text(s->ip), db_text(s->user_agent), db_text(s->amr),
            db_text(s->passkey_id));
    DB_SEND(&t, &sql[S_TOKEN_INSERT], db_blob(hash, REPO_HASH_LEN),
            db_text(s->id), db_int(s->created_at));
    if (cap)
        DB_NOTE(&t, &sql[S_CAP], db_note_changed, &ended,
                db_text(s->user_id), db_int(up->keep),
                db_int(s->created_at));
    /* Last: the email's lock is held the shortest (a login of the same
     * email from elsewhere counts its attempt under it). */
    if (up && up->passed_email)
        db_login_failures_end(&t, up->passed_email, up->passed_ip);
    err = db_close(&t);
    if (err == AS_OK && cap)
        up->ended = (unsigned)ended;
    if (err == AS_OK && up && up->prune_before > 0)
        prune(impl, up->prune_before);
    return err;
}

/* The one session statement `st` finds (bound to `key`, `now`, and with
 * `kept` its two bounds). */
static enum as_err session_one(void *impl, int st, const char *op,
                               struct db_val key, int64_t now,
                               const struct repo_kept *kept,
                               struct session *out, struct arena *a)
{
    struct db_rows r;
    bool ran;
    struct db_tx t;

    db_open(&t, impl, op, false, a);
    ran = kept ? DB_RUN(&t, &sql[st], &r, key, db_int(now),
                        db_int(kept->created_from), db_int(kept->used_from))
               : DB_RUN(&t, &sql[st], &r, key, db_int(now));
    if (ran && r.n == 0)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    if (r.n > 0)
        read_session(&t, &r, 0, out);
    return none_if_invalid(db_close(&t), AS_ERR_NOT_FOUND);
}

enum as_err db_session_get(void *impl, const char *sid, struct session *out,
                           struct arena *a)
{
    if (!sid)
        return AS_ERR_NOT_FOUND;
    return session_one(impl, S_GET, "session_get", db_text(sid), 0, NULL, out,
                       a);
}

enum as_err db_session_state(void *impl, const char *sid, int64_t now,
                             struct session_state *out)
{
    struct db_rows r;
    struct db_tx t;
    const char *email, *amr;

    out->live = false;
    out->role = ROLE_USER;
    out->email[0] = '\0';
    out->user_id[0] = '\0';
    out->amr[0] = '\0';
    if (!sid)
        return AS_OK;
    db_open(&t, impl, "session_state", false, NULL);
    if (DB_RUN(&t, &sql[S_STATE], &r, db_text(sid), db_int(now)) &&
        r.n == 1) {
        out->live = db_flag(db_at(&r, 0, 0));
        out->role = repo_role_parse(db_str(db_at(&r, 0, 1)));
        email = db_str(db_at(&r, 0, 2));
        snprintf(out->email, sizeof out->email, "%s", email ? email : "");
        db_id(&t, db_at(&r, 0, 3), out->user_id);
        amr = db_str(db_at(&r, 0, 4));
        if (amr && strlen(amr) <= REPO_AMR_MAX)   /* else "pwd" alone */
            memcpy(out->amr, amr, strlen(amr) + 1);
    }
    return none_if_invalid(db_close(&t), AS_OK);
}

enum as_err db_session_list(void *impl, const char *user_id, int64_t now,
                            struct session **out, size_t *n,
                            struct arena *a)
{
    struct session *arr = NULL;
    struct db_rows r;
    struct db_tx t;
    enum as_err err;
    size_t i;

    *out = NULL;
    *n = 0;
    if (!user_id)
        return AS_OK;
    db_open(&t, impl, "session_list", false, a);
    if (DB_RUN(&t, &sql[S_LIST], &r, db_text(user_id), db_int(now)) &&
        r.n > 0) {
        arr = arena_alloc(a, r.n * sizeof *arr);
        if (!arr)
            db_refuse(&t, AS_ERR_NOMEM);
        for (i = 0; arr && i < r.n; i++)
            read_session(&t, &r, i, &arr[i]);
    }
    err = db_close(&t);
    if (err == AS_OK) {
        *out = arr;
        *n = r.n;
    }
    return none_if_invalid(err, AS_OK);
}

enum as_err db_session_revoke(void *impl, const char *sid,
                              const char *user_id, int64_t now)
{
    struct db_rows r;
    struct db_tx t;

    if (!sid)
        return AS_ERR_NOT_FOUND;
    db_open(&t, impl, "session_revoke", true, NULL);
    if (DB_RUN(&t, &sql[S_REVOKE], &r, db_text(sid), db_text(user_id),
               db_int(now)) && r.changed == 0)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    return none_if_invalid(db_close(&t), AS_ERR_NOT_FOUND);
}

enum as_err db_session_revoke_all(void *impl, const char *user_id,
                                  const char *keep_sid, int64_t now)
{
    struct db_rows r;
    struct db_tx t;

    if (!user_id)
        return AS_OK;
    db_open(&t, impl, "session_revoke_all", true, NULL);
    DB_RUN(&t, &sql[S_LOCK_USER], &r, db_text(user_id));
    DB_RUN(&t, &sql[S_REVOKE_ALL], &r, db_text(user_id), db_text(keep_sid),
           db_int(now));
    db_mfa_tokens_end(&t, user_id);
    return none_if_invalid(db_close(&t), AS_OK);
}

static void one_changed(struct db_tx *t, const struct db_rows *r,
                        void *ctx)
{
    (void)ctx;
    if (r->changed != 1)
        db_refuse(t, AS_ERR_LOCK_CONFLICT);
}

enum as_err db_refresh_rotate(void *impl,
                              const uint8_t parent[REPO_HASH_LEN],
                              const uint8_t child[REPO_HASH_LEN],
                              int64_t now, int64_t grace_ms,
                              int64_t new_expires, int64_t max_life_ms,
                              enum rotate_result *res, struct session *out,
                              struct arena *a)
{
    struct rotation_facts f = { 0 };
    struct db_val hash = db_blob(parent, REPO_HASH_LEN);
    int64_t kept_from;
    struct db_rows r;
    struct db_tx t;
    enum as_err err;

    *res = ROTATE_INVALID;
    db_open(&t, impl, "refresh_rotate", true, a);
    DB_SEND(&t, &sql[S_LOCK_BY_TOKEN], hash);
    if (DB_RUN(&t, &sql[S_FACTS], &r, hash) && r.n == 1) {
        f.found = true;
        f.used = !db_at(&r, 0, SESSION_NCOLS)->null;
        f.used_at = db_i64(db_at(&r, 0, SESSION_NCOLS));
        f.revoked = !db_at(&r, 0, 5)->null;
        f.expires_at = db_i64(db_at(&r, 0, 4));
        f.user_active = db_flag(db_at(&r, 0, SESSION_NCOLS + 1));
        f.created_at = db_i64(db_at(&r, 0, SESSION_NCOLS + 2));
        read_session(&t, &r, 0, out);
    }
    if (t.err == AS_OK)
        *res = rotation_judge(&f, now, grace_ms, new_expires - now);
    kept_from = rotation_kept_from(now, new_expires - now, grace_ms);
    if (*res == ROTATE_OK) {
        /* Under the locks nobody consumed it since the read: a miss is
         * a conflict, and the whole call runs again. The writes go
         * together, the check read before the COMMIT. */
        DB_CHECK(&t, &sql[S_TOKEN_USE], one_changed, NULL, hash,
                 db_int(now));
        DB_SEND(&t, &sql[S_CHILD], db_blob(child, REPO_HASH_LEN),
                db_text(out->id), db_int(now));
        out->last_used_at = now;
        out->expires_at = rotation_expiry(out->created_at, new_expires,
                                          max_life_ms);
        DB_SEND(&t, &sql[S_TOUCH], db_text(out->id), db_int(now),
                db_int(out->expires_at));
        /* Two at a time, one new each: a session's rows stay bounded by
         * the tokens of one lifetime (new_expires - now) and the grace,
         * however long it refreshes (rotation_kept_from(): a token
         * pruned is judged as one kept no longer), but never one
         * rotated out within the grace (a retry of it gets the child
         * whatever its age: rotation_judge()). A session younger than
         * that has none to delete: the statement is left out. */
        if (out->created_at < kept_from)
            DB_SEND(&t, &sql[S_PRUNE_USED], db_text(out->id),
                    db_int(kept_from),
                    db_int(grace_ms > 0 ? now - grace_ms : now));
    } else if (*res == ROTATE_REUSED) {
        DB_SEND(&t, &sql[S_KILL], db_text(out->id), db_int(now));
        out->revoked_at = now;
    }
    err = db_close(&t);
    if (err != AS_OK)
        *res = ROTATE_INVALID;
    return err;
}

enum as_err db_refresh_session(void *impl, const uint8_t hash[REPO_HASH_LEN],
                               int64_t now, const struct repo_kept *rotated,
                               struct session *out, struct arena *a)
{
    return session_one(impl, rotated ? S_ANY_TOKEN_SESSION : S_TOKEN_SESSION,
                       "refresh_session", db_blob(hash, REPO_HASH_LEN), now,
                       rotated, out, a);
}
