/* driver.c: the steps every storage flow is made of (see driver.h). */
#include "driver.h"

#include <string.h>
#include <strings.h>

#include "log.h"
#include "repo.h"

static atomic_uint next_slot;    /* slots given so far */
static _Thread_local uint64_t round_trips;
static _Thread_local bool unreached;

void db_round_trip(void)
{
    round_trips++;
}

void db_unreached(void)
{
    unreached = true;
}

bool db_take_unreached(void)
{
    bool was = unreached;

    unreached = false;
    return was;
}

uint64_t db_pg_round_trips(void)
{
    return round_trips;
}

unsigned db_stmt_slot(struct db_stmt *st)
{
    unsigned have = atomic_load_explicit(&st->slot, memory_order_acquire);
    unsigned mine;

    if (have)
        return have - 1;
    mine = atomic_fetch_add(&next_slot, 1) + 1;
    if (mine > DB_STMT_MAX)
        return DB_STMT_MAX;
    /* Two first uses at once: the one stored first wins, the other slot
     * stays unused. */
    if (!atomic_compare_exchange_strong(&st->slot, &have, mine))
        mine = have;
    return mine - 1;
}

/* ---- the caller a thread writes for ---- */

static _Thread_local const struct repo_actor *acting;

void repo_act_as(const struct repo_actor *who)
{
    acting = who;
}

const struct repo_actor *db_actor(void)
{
    return acting;
}

/* Whether the caller may still write: its session is unrevoked, its
 * account active (and an admin, for `admin`). On PostgreSQL the rows
 * are held until the commit, taken in the lock order of
 * src/repo/users.c: the active admins in id order (for an admin's
 * account, whatever the route: its own deletion takes them too), the
 * caller's account, then its session. A revocation, a deactivation or a
 * demotion either waits for the write, or went first and the write is
 * refused; two writes of one account queue on its row. SQLite's write
 * lock serialises them all already. */
enum { ACT_ADMINS, ACT_ACCOUNT, ACT_SESSION, ACT_N };
#define ACTOR_SQL                                                          \
    "SELECT u.is_active, u.role = 'admin' FROM sessions s "                \
    "JOIN users u ON u.id = s.user_id WHERE s.id = $1 "                    \
    "AND s.user_id = $2 AND s.revoked_at IS NULL"
static struct db_stmt actor_sql[ACT_N] = {
    [ACT_ADMINS] = DB_LOCK_ADMINS,
    [ACT_ACCOUNT] = DB_PG_ONLY("SELECT id FROM users WHERE id = $1 "
                               "FOR NO KEY UPDATE"),
    [ACT_SESSION] = DB_SPLIT(ACTOR_SQL, ACTOR_SQL " FOR NO KEY UPDATE OF s"),
};

static void actor_checked(struct db_tx *t, const struct db_rows *r,
                          void *ctx)
{
    const struct repo_actor *who = ctx;

    if (r->n != 1 || !db_flag(db_at(r, 0, 0)))
        db_refuse(t, AS_ERR_INVALID_TOKEN);   /* ended, or account off */
    else if (who->admin && !db_flag(db_at(r, 0, 1)))
        db_refuse(t, AS_ERR_FORBIDDEN);       /* demoted */
}

/* Sent ahead with the flow's first statements; read before its first
 * rows are (db_send). */
static void actor_still(struct db_tx *t, const struct repo_actor *who)
{
    if (who->admin || who->admin_account)
        db_send(t, &actor_sql[ACT_ADMINS], NULL, 0, NULL, false, NULL);
    /* The caller's row always, before its session: held already when it
     * is still an active admin, but a demotion committed meanwhile takes
     * it out of that set, and a request of the same session that saw the
     * demotion takes the row first. Without this step one held the row
     * waiting for the session and the other the reverse: a deadlock
     * PostgreSQL broke after a second (tests/e2e/test_account_races.py). */
    DB_SEND(t, &actor_sql[ACT_ACCOUNT], db_text(who->user_id));
    DB_CHECK(t, &actor_sql[ACT_SESSION], actor_checked, (void *)who,
             db_text(who->sid), db_text(who->user_id));
}

void db_open(struct db_tx *t, void *impl, const char *op, bool write,
             struct arena *a)
{
    memset(t, 0, sizeof *t);
    t->db = impl;
    t->a = a;
    if (!a) {
        t->own = t->a = arena_new();
        if (!t->own) {
            t->err = AS_ERR_NOMEM;
            return;
        }
    }
    t->err = t->db->drv->acquire(impl, op, &t->conn);
    if (t->err != AS_OK) {
        t->conn = NULL;
        return;
    }
    if (write) {
        t->err = t->db->drv->begin(t->conn);
        t->tx = t->err == AS_OK;
        if (t->tx && acting)
            actor_still(t, acting);
    }
}

/* True when `st` changes rows (its first word, or a data-modifying WITH). */
static bool changes_rows(const struct db_stmt *st)
{
    const char *q = st->pg ? st->pg : st->sqlite;

    if (!q)
        return false;
    if (strncasecmp(q, "WITH", 4) == 0)
        return strstr(q, "UPDATE ") || strstr(q, "INSERT ") ||
               strstr(q, "DELETE ");
    return strncasecmp(q, "INSERT", 6) == 0 ||
           strncasecmp(q, "UPDATE", 6) == 0 ||
           strncasecmp(q, "DELETE", 6) == 0;
}

/* A change for a signed-in caller outside a checked transaction would
 * skip repo_act_as()'s check: a flow that forgot to open one fails
 * loudly instead of writing for a caller who may not. */
static bool unchecked_write(struct db_tx *t, const struct db_stmt *st)
{
    if (!acting || t->tx || !changes_rows(st))
        return false;
    log_event(LOG_ERROR, "repo.unchecked_write", NULL,
              json_pack("{s:s, s:s%}", "message",
                        "a change for a caller outside a write "
                        "transaction", "statement",
                        st->pg ? st->pg : st->sqlite, (size_t)48));
    t->err = AS_ERR_INTERNAL;
    return true;
}

/* A table's entry with no text on either backend is an index its table
 * forgot (an edit that lost a line): it would run nothing and answer no
 * rows, as if it had found none, so the flow is refused and says so.
 * One backend's NULL text alone is meant (DB_PG_ONLY). */
static bool missing(struct db_tx *t, const struct db_stmt *st)
{
    if (st->sqlite || st->pg)
        return false;
    log_event(LOG_ERROR, "repo.statement_missing", NULL,
              json_pack("{s:s}", "message", "a statement of no text on "
                        "either backend: its table lost an entry"));
    t->err = AS_ERR_INTERNAL;
    return true;
}

bool db_run(struct db_tx *t, struct db_stmt *st, const struct db_val *args,
            size_t n, struct db_rows *out)
{
    enum as_err err;

    memset(out, 0, sizeof *out);
    if (t->err != AS_OK || missing(t, st) || unchecked_write(t, st))
        return false;
    /* Statements sent ahead are answered first: a check among them may
     * have refused already. */
    err = t->db->drv->run(t->conn, st, args, n, out, t->a);
    db_refuse(t, err);
    if (t->err != AS_OK)
        memset(out, 0, sizeof *out);
    return t->err == AS_OK;
}

/* A statement sent ahead and the flow's reader of its rows. */
struct sent {
    struct db_tx *t;
    db_check_fn *check;
    void *ctx;
};

static enum as_err answered(void *arg, const struct db_rows *r)
{
    struct sent *s = arg;

    if (s->t->err == AS_OK)
        s->check(s->t, r, s->ctx);
    return s->t->err;
}

void db_send(struct db_tx *t, struct db_stmt *st, const struct db_val *args,
             size_t n, db_check_fn *check, bool gate, void *ctx)
{
    struct sent *s = NULL;
    struct db_rows r;

    if (t->err != AS_OK || missing(t, st) || unchecked_write(t, st))
        return;
    if (!t->tx || !t->db->drv->send) {
        if (db_run(t, st, args, n, &r) && check)
            check(t, &r, ctx);
        return;
    }
    if (check && !(s = arena_alloc(t->a, sizeof *s))) {
        t->err = AS_ERR_NOMEM;
        return;
    }
    if (s)
        *s = (struct sent){ .t = t, .check = check, .ctx = ctx };
    db_refuse(t, t->db->drv->send(t->conn, st, args, n,
                                  s ? answered : NULL, s, gate && s,
                                  t->a));
}

void db_refuse(struct db_tx *t, enum as_err e)
{
    if (t->err == AS_OK)
        t->err = e;
}

void db_note_changed(struct db_tx *t, const struct db_rows *r, void *ctx)
{
    (void)t;
    *(int64_t *)ctx = r->changed;
}

enum as_err db_close(struct db_tx *t)
{
    if (t->conn) {
        if (t->tx && t->err == AS_OK)
            db_refuse(t, t->db->drv->commit(t->conn));
        else if (t->tx)
            t->db->drv->rollback(t->conn);
        t->db->drv->release(t->db, t->conn);
        t->conn = NULL;
    }
    arena_free(t->own);
    t->own = NULL;
    return t->err;
}

enum as_err db_run_batches(void *impl, const char *op, struct db_stmt *first,
                           struct db_stmt *st, struct db_val arg,
                           int64_t batch)
{
    struct db_rows r;
    struct db_tx t;
    enum as_err err;
    int64_t n;

    do {
        db_open(&t, impl, op, true, NULL);
        if (first)
            db_send(&t, first, &arg, 1, NULL, false, NULL);
        db_run(&t, st, &arg, 1, &r);
        n = t.err == AS_OK ? r.changed : 0;
        err = db_close(&t);
    } while (err == AS_OK && n >= batch);
    return err;
}

void db_id(struct db_tx *t, const struct db_val *v, char out[UUID_STR_LEN])
{
    out[0] = '\0';
    if (t->err != AS_OK)
        return;
    if (v->null || v->type != DB_TEXT || v->len == 0 ||
        v->len >= UUID_STR_LEN) {
        log_event(LOG_ERROR, "repo.db_error", NULL,
                  json_pack("{s:s}", "message", "malformed id in a row"));
        db_refuse(t, AS_ERR_INTERNAL);
        return;
    }
    memcpy(out, v->s, v->len);
    out[v->len] = '\0';
}

void db_unknown_migration(const char *backend, long long version)
{
    log_event(LOG_WARN, "repo.schema_newer", NULL,
              json_pack("{s:s, s:I, s:s}", "backend", backend, "version",
                        (json_int_t)version, "hint",
                        "a newer build migrated this database; this build "
                        "serves with what it knows"));
}
