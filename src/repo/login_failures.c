/* login_failures.c: the login-failure counts of the repository, written
 * once for both backends over the driver (driver.h). The lockout rule is
 * src/lockout.c's (the callback); this file makes its read-count-write
 * one atomic step. */
#include "flows.h"

/* Counts of one email an unlock deletes a transaction. */
#define CLEAR_BATCH 512
#define CLEAR_ROWS "512"

enum {
    L_LOCK, L_LOCK_TWO, L_READ, L_PUT, L_PUT_BOTH, L_DEL, L_PRUNE, L_CLEAR,
    L_CLEAR_SOME, L_CARRY, L_NSTMT
};

static struct db_stmt sql[L_NSTMT] = {
    /* A transaction-scoped advisory lock on the email (key space 0x4c4f,
     * "LO", apart from the single-key locks of the migrations)
     * serialises every change of its counts, on every instance. It
     * cannot deadlock: one such lock per transaction (two, in key order,
     * for an email change: L_LOCK_TWO), and its holders then wait only
     * on the email's count rows, which are changed only under it (a new
     * session's transaction and an email change take it last, after the
     * user's row). SQLite's writers wait for each other already (BEGIN
     * IMMEDIATE). */
    [L_LOCK] = DB_PG_ONLY("SELECT pg_advisory_xact_lock(19535, "
                          "hashtext($1))"),
    /* The locks of two emails, in the order of their keys: the only
     * transaction holding two (an email change, L_CARRY) takes them in
     * one order whatever the emails, after the user's row. */
    [L_LOCK_TWO] = DB_PG_ONLY("SELECT pg_advisory_xact_lock(19535, k) "
                              "FROM (SELECT DISTINCT hashtext(e) AS k "
                              "FROM unnest(ARRAY[$1, $2]::text[]) AS e "
                              "ORDER BY k) AS keys"),
    [L_READ] = DB_SQL("SELECT ip = '*', count, last_at, "
                      "coalesce(locked_until, 0) FROM login_failures "
                      "WHERE email = $1 AND ip IN ($2, '*')"),
    [L_PUT] = DB_SQL("INSERT INTO login_failures (email, ip, count, "
                     "last_at, locked_until) VALUES ($1, $2, $3, $4, $5) "
                     "ON CONFLICT (email, ip) DO UPDATE SET "
                     "count = excluded.count, last_at = excluded.last_at, "
                     "locked_until = excluded.locked_until"),
    /* L_PUT of the address's count and of the total in one statement,
     * in the same order, when neither is 0 (a login's attempt): one
     * statement of a login fewer. */
    [L_PUT_BOTH] = DB_SQL("INSERT INTO login_failures (email, ip, count, "
                          "last_at, locked_until) VALUES "
                          "($1, $2, $3, $4, $5), ($1, '*', $6, $7, $8) "
                          "ON CONFLICT (email, ip) DO UPDATE SET "
                          "count = excluded.count, "
                          "last_at = excluded.last_at, "
                          "locked_until = excluded.locked_until"),
    [L_DEL] = DB_SQL("DELETE FROM login_failures "
                     "WHERE email = $1 AND ip = $2"),
    /* PostgreSQL skips rows others hold: it never waits nor deadlocks.
     * On PostgreSQL the batch's rows are named by ctid in an array,
     * which the server computes once (ARRAY(...) is an InitPlan): with
     * "... IN (SELECT ... LIMIT n)" and statistics taken before the
     * rows came (an attacker's addresses come faster than autovacuum
     * analyses), the planner ran the subquery again for every row, and
     * one batch took seconds (tests/unit/test_repo.c,
     * batches_stay_bounded_on_stale_statistics). A row's ctid is fixed
     * while it is held (FOR UPDATE here, the email's lock below). */
    [L_PRUNE] = DB_SPLIT("DELETE FROM login_failures WHERE rowid IN "
                         "(SELECT rowid FROM login_failures "
                         "WHERE last_at < $1 LIMIT 16)",
                         "DELETE FROM login_failures WHERE ctid = ANY "
                         "(ARRAY(SELECT ctid FROM login_failures "
                         "WHERE last_at < $1 LIMIT 16 "
                         "FOR UPDATE SKIP LOCKED))"),
    [L_CLEAR] = DB_SQL("DELETE FROM login_failures "
                       "WHERE email = $1 AND ip IN ($2, '*')"),
    /* An email's counts from any address, CLEAR_ROWS of them (under
     * the email's lock: on PostgreSQL by ctid, as L_PRUNE). */
    [L_CLEAR_SOME] = DB_SPLIT("DELETE FROM login_failures WHERE email = $1 "
                              "AND ip IN (SELECT ip FROM login_failures "
                              "WHERE email = $1 LIMIT " CLEAR_ROWS ")",
                              "DELETE FROM login_failures WHERE ctid = ANY "
                              "(ARRAY(SELECT ctid FROM login_failures "
                              "WHERE email = $1 LIMIT " CLEAR_ROWS "))"),
    /* Counts of $1 (from all addresses, and from address $3) copied to
     * $2, each field the higher of the two: an email change never
     * lowers a run of failures, nor ends a delay. */
    [L_CARRY] = DB_SPLIT("INSERT INTO login_failures (email, ip, count, "
                         "last_at, locked_until) SELECT $2, ip, count, "
                         "last_at, coalesce(locked_until, 0) "
                         "FROM login_failures WHERE email = $1 "
                         "AND ip IN ($3, '*') "
                         "ON CONFLICT (email, ip) DO UPDATE SET "
                         "count = max(login_failures.count, "
                         "excluded.count), "
                         "last_at = max(login_failures.last_at, "
                         "excluded.last_at), "
                         "locked_until = max(coalesce("
                         "login_failures.locked_until, 0), "
                         "excluded.locked_until)",
                         "INSERT INTO login_failures (email, ip, count, "
                         "last_at, locked_until) SELECT $2, ip, count, "
                         "last_at, coalesce(locked_until, 0) "
                         "FROM login_failures WHERE email = $1 "
                         "AND ip IN ($3, '*') "
                         "ON CONFLICT (email, ip) DO UPDATE SET "
                         "count = greatest(login_failures.count, "
                         "excluded.count), "
                         "last_at = greatest(login_failures.last_at, "
                         "excluded.last_at), "
                         "locked_until = greatest(coalesce("
                         "login_failures.locked_until, 0), "
                         "excluded.locked_until)"),
};

/* Writes one count of (email, ip) back: count 0 deletes its row. Sent
 * ahead: it goes with the COMMIT. */
static void put(struct db_tx *t, const char *email, const char *ip,
                const struct login_count *n)
{
    if (n->count > 0)
        DB_SEND(t, &sql[L_PUT], db_text(email), db_text(ip),
                db_int(n->count), db_int(n->last_at),
                db_int(n->locked_until));
    else
        DB_SEND(t, &sql[L_DEL], db_text(email), db_text(ip));
}

/* A pruning of idle counts that found none lets those of the next
 * second skip theirs, as a pruning of sessions does (sessions.c): counts
 * turn idle a day after their last failure, so a second's worth of them
 * waits a second, and the new counts after it take 16 each. On a busy
 * daemon whose table holds nothing idle, that is a statement fewer per
 * login. */
#define IDLE_REST_MS 1000

enum as_err db_login_failures_update(void *impl, const char *email,
                                     const char *ip, repo_login_update_fn fn,
                                     void *ctx, struct repo_user_read *read)
{
    struct db *db = impl;
    struct login_count mine = { 0 }, all = { 0 };
    struct db_rows r;
    struct db_tx t;
    int64_t before = 0, pruned = -1;
    enum as_err err;
    size_t i;

    if (read)
        read->found = false;
    db_open(&t, impl, "login_failures_update", true, read ? read->a : NULL);
    DB_SEND(&t, &sql[L_LOCK], db_text(email));
    DB_RUN(&t, &sql[L_READ], &r, db_text(email), db_text(ip));
    for (i = 0; t.err == AS_OK && i < r.n; i++) {
        struct login_count *n = db_flag(db_at(&r, i, 0)) ? &all : &mine;

        n->count = db_i64(db_at(&r, i, 1));
        n->last_at = db_i64(db_at(&r, i, 2));
        n->locked_until = db_i64(db_at(&r, i, 3));
    }
    if (t.err == AS_OK) {
        before = fn(ctx, &mine, &all);
        if (mine.count > 0 && all.count > 0) {
            DB_SEND(&t, &sql[L_PUT_BOTH], db_text(email), db_text(ip),
                    db_int(mine.count), db_int(mine.last_at),
                    db_int(mine.locked_until), db_int(all.count),
                    db_int(all.last_at), db_int(all.locked_until));
        } else {
            put(&t, email, ip, &mine);
            put(&t, email, "*", &all);
        }
        /* Other emails' idle rows: skipped while another pruner or
         * counter holds them, so this never waits under the lock. (A
         * clock set back does not stop it.) */
        if (before > 0 &&
            !db_prune_rests(&db->idle_rest, before, IDLE_REST_MS))
            DB_NOTE(&t, &sql[L_PRUNE], db_note_changed, &pruned,
                    db_int(before));
        /* A login's lookup, with the writes: a round trip fewer. */
        if (read && read->wanted)
            db_user_note_by_email(&t, email, read);
    }
    err = db_close(&t);
    if (err == AS_OK && pruned == 0)
        atomic_store(&db->idle_rest, before + IDLE_REST_MS);
    return err;
}

/* Under the email's lock, like an update: the two rows of a clear and of
 * an update are then never locked in opposite orders. Sent ahead: it
 * goes with the COMMIT. */
void db_login_failures_end(struct db_tx *t, const char *email,
                           const char *ip)
{
    DB_SEND(t, &sql[L_LOCK], db_text(email));
    DB_SEND(t, &sql[L_CLEAR], db_text(email), db_text(ip));
}

/* An account's email changes from `from` to `to` in transaction `t`
 * (which holds the user's row): the run of failures goes with it, or a
 * change of email (a password and a token, no code) would start every
 * count afresh and give free guesses at the second factor. Under both
 * emails' locks, so no count of either is changed meanwhile. Counts
 * made on `from` by requests that read the user before the change and
 * count after it stay there (at most those under way at that instant). */
void db_login_failures_carry(struct db_tx *t, const char *from,
                             const char *to, const char *ip)
{
    DB_SEND(t, &sql[L_LOCK_TWO], db_text(from), db_text(to));
    DB_SEND(t, &sql[L_CARRY], db_text(from), db_text(to), db_text(ip));
}

enum as_err db_login_failures_clear(void *impl, const char *email,
                                    const char *ip)
{
    struct db_tx t;
    enum as_err err;

    if (ip) {
        db_open(&t, impl, "login_failures_clear", true, NULL);
        db_login_failures_end(&t, email, ip);
        err = db_close(&t);
        return err == AS_ERR_VALIDATION ? AS_OK : err; /* never counted */
    }
    /* Every address's count (an unlock, a reset link): an email tried
     * from a million addresses (IPv6 /64s are cheap) has a million rows,
     * deleted in one statement they held SQLite's write lock for
     * seconds; CLEAR_ROWS a transaction, each under the email's lock.
     * Counts made meanwhile may stay: they are attempts made after the
     * clear began. */
    err = db_run_batches(impl, "login_failures_clear", &sql[L_LOCK],
                         &sql[L_CLEAR_SOME], db_text(email), CLEAR_BATCH);
    return err == AS_ERR_VALIDATION ? AS_OK : err;
}
