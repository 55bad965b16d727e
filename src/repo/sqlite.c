/* sqlite.c: the embedded backend. A small pool of connections (WAL mode,
 * one thread per connection at a time), cached prepared statements, and
 * every write in one BEGIN IMMEDIATE transaction. */
#include "repo.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "flows.h"
#include "migrations.h"
#include "repo_int.h"

#define DEFAULT_POOL (cfg_defaults()->db_pool_size)
#define DEFAULT_TIMEOUT_MS (cfg_defaults()->db_timeout_ms)

/* Every statement this backend runs: values are always bound. */
#define STMT_TABLE(X)                                                      \
    X(S_BEGIN, "BEGIN IMMEDIATE")                                          \
    X(S_COMMIT, "COMMIT")                                                  \
    X(S_PING, "SELECT count(*) FROM sqlite_master")                        \
    X(S_MIG_HAS, "SELECT 1 FROM schema_migrations WHERE version = ?1")     \
    X(S_MIG_ALL, "SELECT version FROM schema_migrations")                  \
    X(S_MIG_ADD, "INSERT INTO schema_migrations (version, name, "          \
      "applied_at) VALUES (?1, ?2, ?3)")                                   \

enum stmt_id {
#define X(id, sql) id,
    STMT_TABLE(X)
#undef X
    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
#define X(id, sql) [id] = sql,
    STMT_TABLE(X)
#undef X
};

/* One connection, used by one thread at a time. `err` is sticky: once a
 * step of an operation failed, the helpers below do nothing more, so an
 * operation reads as a straight line and checks once at the end. */
struct conn {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];   /* prepared on first use */
    sqlite3_stmt *dst[DB_STMT_MAX];  /* the areas' (driver.h), likewise */
    struct conn *next;           /* in the idle list */
    enum as_err err;             /* first failure of the operation */
    const char *op;              /* its name, for the log */
    struct sq *sq;               /* its pool */
    bool busy;                   /* the failure was SQLITE_BUSY/LOCKED */
    bool moved;                  /* its file gone: said once (same_file()) */
};

struct sq {
    struct db base;              /* first: the flows reach the driver */
    char *path;
    int timeout_ms;
    unsigned max;                /* pool size */
    unsigned open;               /* connections in existence */
    struct conn *idle;
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* a connection came back */
    /* The readiness ping's own connection (sq_ping), so that a pool whose
     * connections all wait on something else does not read as a database
     * that does not answer (ready.h, ready_stalled). NULL until the first
     * ping; never for ":memory:", where another connection is another
     * database. */
    struct conn *ping;
    pthread_mutex_t ping_mu;
    bool pinged;                 /* under ping_mu: a ping began */
    bool memory;
    /* The file the first connection opened, and its WAL once there is
     * one: where the path names another file, or none, writes, pings
     * and new connections are refused (still_the_file(), same_file()). */
    char *wal;                   /* the WAL's path */
    bool file_known;
    dev_t dev;
    ino_t ino;
    _Atomic bool wal_known;      /* wal_dev, wal_ino set (under mu) */
    dev_t wal_dev;
    ino_t wal_ino;
    _Atomic bool gone_said;      /* conn_open()'s repo.db_error line */
    /* Since when another process holds the write lock (0: nobody known
     * to): see begin(). */
    _Atomic uint64_t lock_held_at;
};

/* ---- errors ------------------------------------------------------------ */

/* Records sqlite result `rc` of the current operation (first one wins),
 * mapped to the error table. Logs the sqlite message, which names tables
 * and columns but never values. */
static void fail(struct conn *c, int rc)
{
    int primary = rc & 0xff;
    enum as_err e = AS_ERR_INTERNAL;
    enum log_level lvl = LOG_ERROR;

    if (c->err != AS_OK)
        return;
    if ((rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        && strstr(sqlite3_errmsg(c->db), "users.email")) {
        c->err = AS_ERR_EMAIL_TAKEN;
        return;                          /* expected: not worth a line */
    }
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        e = AS_ERR_NOT_FOUND;            /* the user or session is gone */
        lvl = LOG_INFO;
    } else if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
        e = AS_ERR_UNAVAILABLE;
        lvl = LOG_WARN;
        c->busy = true;
    } else if (primary == SQLITE_FULL || primary == SQLITE_IOERR ||
               primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN) {
        /* the disk, not the request: 503 and the breaker, as for a
         * database server that is down; the operator has to act */
        e = AS_ERR_UNAVAILABLE;
    } else if (primary == SQLITE_NOMEM) {
        e = AS_ERR_NOMEM;
    }
    c->err = e;
    log_event(lvl, "repo.db_error", NULL,
              json_pack("{s:s, s:s, s:i, s:s}", "backend", "sqlite", "op",
                        c->op, "code", rc, "message",
                        sqlite3_errmsg(c->db)));
}

/* Records a failure that is not sqlite's (first one wins). */
static void refuse(struct conn *c, enum as_err e)
{
    if (c->err == AS_OK)
        c->err = e;
}

/* ---- statements -------------------------------------------------------- */

/* The cached statement `id`, prepared on first use; NULL after a failure
 * (then the bind and step helpers are no-ops). */
static sqlite3_stmt *q(struct conn *c, enum stmt_id id)
{
    int rc;

    if (c->err != AS_OK)
        return NULL;
    if (!c->st[id]) {
        rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1,
                                SQLITE_PREPARE_PERSISTENT, &c->st[id], NULL);
        if (rc != SQLITE_OK) {
            fail(c, rc);
            c->st[id] = NULL;
        }
    }
    return c->st[id];
}

static void bind_rc(struct conn *c, int rc)
{
    if (rc != SQLITE_OK)
        fail(c, rc);
}

/* Binds text `s` (NULL binds SQL NULL) to parameter `i`. */
static void b_text(struct conn *c, sqlite3_stmt *st, int i, const char *s)
{
    if (st && c->err == AS_OK)
        bind_rc(c, s ? sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT)
                     : sqlite3_bind_null(st, i));
}

static void b_int(struct conn *c, sqlite3_stmt *st, int i, int64_t v)
{
    if (st && c->err == AS_OK)
        bind_rc(c, sqlite3_bind_int64(st, i, v));
}

/* Steps `st`: true when it produced a row (read it, then done()). Otherwise
 * the statement is finished and reset. */
static bool row(struct conn *c, sqlite3_stmt *st)
{
    int rc;

    if (!st || c->err != AS_OK)
        return false;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return true;
    if (rc != SQLITE_DONE)
        fail(c, rc);
    sqlite3_reset(st);
    return false;
}

/* Ends the use of `st` early, after the rows it was needed for. */
static void done(sqlite3_stmt *st)
{
    if (st)
        sqlite3_reset(st);
}

/* Runs a statement that returns no rows. */
static void run(struct conn *c, sqlite3_stmt *st)
{
    if (row(c, st))
        done(st);
}

/* Runs fixed SQL text that has no values in it (schema, migrations). */
static void run_sql(struct conn *c, const char *sql)
{
    int rc;

    if (c->err != AS_OK)
        return;
    rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        fail(c, rc);
}

/* Resets every statement still stepping and forgets bound values. */
static void reset_all(struct conn *c)
{
    size_t i;

    for (i = 0; i < S_COUNT; i++)
        if (c->st[i]) {
            sqlite3_reset(c->st[i]);
            sqlite3_clear_bindings(c->st[i]);
        }
    for (i = 0; i < DB_STMT_MAX; i++)
        if (c->dst[i])
            sqlite3_reset(c->dst[i]);
}

/* True while the path names the file the first connection opened (or
 * none was yet), and its WAL the WAL first seen (SQLite deletes a WAL
 * only when the last connection to its file closes, and this pool's stay
 * open until the end). Else the file or its WAL was deleted or replaced
 * under the daemon: what is written goes where the next start will not
 * look (same_file()), and a connection opened now would make a new file,
 * or open the other one. */
static bool still_the_file(struct sq *s)
{
    struct stat st;
    bool ok;

    if (!s->file_known)
        return true;
    if (stat(s->path, &st) != 0 || st.st_dev != s->dev ||
        st.st_ino != s->ino)
        return false;
    if (stat(s->wal, &st) != 0)          /* none yet, or gone */
        return !atomic_load_explicit(&s->wal_known, memory_order_acquire);
    if (atomic_load_explicit(&s->wal_known, memory_order_acquire))
        return st.st_dev == s->wal_dev && st.st_ino == s->wal_ino;
    pthread_mutex_lock(&s->mu);
    if (!atomic_load_explicit(&s->wal_known, memory_order_relaxed)) {
        s->wal_dev = st.st_dev;
        s->wal_ino = st.st_ino;
        atomic_store_explicit(&s->wal_known, true, memory_order_release);
    }
    ok = st.st_dev == s->wal_dev && st.st_ino == s->wal_ino;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* A database file (or its WAL) deleted or replaced under the running
 * daemon (an operator's mistake, a restore done live, a symbolic link
 * pointed elsewhere) keeps working on the inodes the connection has
 * open, and every write lands where the next start will never look. It
 * is a disk that failed under the file: 503 and the breaker (README.md,
 * "Operations"), until the operator restarts. A few stat(2) calls, on
 * writes and readiness probes only. */
static void same_file(struct conn *c)
{
    int moved = 0;

    if (c->err != AS_OK ||
        ((sqlite3_file_control(c->db, "main", SQLITE_FCNTL_HAS_MOVED,
                               &moved) != SQLITE_OK || !moved) &&
         still_the_file(c->sq)))
        return;
    c->err = AS_ERR_UNAVAILABLE;
    if (c->moved)
        return;                 /* one line per connection, not per probe */
    c->moved = true;
    log_event(LOG_ERROR, "repo.db_error", NULL,
              json_pack("{s:s, s:s, s:s}", "backend", "sqlite", "op", c->op,
                        "message", "the database file or its WAL was "
                        "deleted or replaced while open; restart the "
                        "daemon"));
}

/* A BEGIN IMMEDIATE that waits at most LOCK_TRY_MS: true when it got the
 * write lock, false (nothing recorded) when another connection kept it.
 * A few milliseconds, so that this process's own writers, each holding
 * the lock for a fraction of one, do not make it lose. */
#define LOCK_TRY_MS 10
static bool begin_now(struct conn *c, sqlite3_stmt *st)
{
    int rc;

    sqlite3_busy_timeout(c->db, LOCK_TRY_MS);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_busy_timeout(c->db, c->sq->timeout_ms);
    if ((rc & 0xff) == SQLITE_BUSY)
        return false;
    if (rc != SQLITE_DONE)
        fail(c, rc);
    return true;
}

/* Opens a write transaction. A write that waited the whole busy timeout
 * for the lock means another process holds it (an open transaction in
 * the sqlite3 shell, a stuck tool): each write after it would wait as
 * long. That write and the ones after it end as a lock conflict, which
 * the breaker does not count, so reads go on; from then on writes try
 * the lock for LOCK_TRY_MS only, so they end at once while it is still
 * held: 503 after repo.c's few quick retries (README.md "Circuit
 * breaker"). The first write or readiness ping that gets the lock ends
 * that. */
static void begin(struct conn *c)
{
    struct sq *s = c->sq;
    sqlite3_stmt *st;
    uint64_t held, t0;

    same_file(c);
    st = q(c, S_BEGIN);
    if (!st || c->err != AS_OK)
        return;
    held = atomic_load_explicit(&s->lock_held_at, memory_order_relaxed);
    if (held) {
        if (!begin_now(c, st)) {
            refuse(c, AS_ERR_LOCK_CONFLICT);
            return;
        }
        if (atomic_exchange(&s->lock_held_at, 0) == held)
            log_event(LOG_INFO, "repo.write_lock_free", NULL,
                      json_pack("{s:s, s:I}", "backend", "sqlite",
                                "held_ms", (json_int_t)(clock_mono_ms()
                                                        - held)));
        return;
    }
    t0 = clock_mono_ms();
    c->busy = false;
    run(c, st);
    if (c->err == AS_OK || !c->busy ||
        clock_mono_ms() - t0 < (uint64_t)s->timeout_ms)
        return;
    /* Not a failure of the database, which still reads: several writes
     * waiting at once must not open the circuit for the reads too. */
    c->err = AS_ERR_LOCK_CONFLICT;
    if (atomic_exchange(&s->lock_held_at, t0) == 0)
        log_event(LOG_WARN, "repo.write_lock_held", NULL,
                  json_pack("{s:s, s:I, s:s}", "backend", "sqlite",
                            "waited_ms", (json_int_t)s->timeout_ms,
                            "hint", "the write lock was not free within "
                            "AUTH_DB_TIMEOUT_MS: another process holds "
                            "it (or writes here queue longer than that); "
                            "writes are refused at once until it is "
                            "free"));
}

/* COMMIT when the operation went well, else (or when COMMIT fails)
 * ROLLBACK, so a failed operation changes nothing. */
static void end(struct conn *c)
{
    run(c, q(c, S_COMMIT));
    if (c->err != AS_OK && !sqlite3_get_autocommit(c->db)) {
        reset_all(c);
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

/* ---- columns ----------------------------------------------------------- */

/* A copy of text column `i` in `a`; NULL for SQL NULL. */
static const char *col_str(struct conn *c, sqlite3_stmt *st, int i,
                           struct arena *a)
{
    const unsigned char *t;
    char *copy = NULL;

    if (c->err != AS_OK || sqlite3_column_type(st, i) == SQLITE_NULL)
        return NULL;
    t = sqlite3_column_text(st, i);
    if (t)
        copy = arena_strndup(a, (const char *)t,
                             (size_t)sqlite3_column_bytes(st, i));
    if (!copy)
        refuse(c, AS_ERR_NOMEM);
    return copy;
}

/* ---- the pool ---------------------------------------------------------- */

static void conn_close(struct conn *c)
{
    size_t i;

    if (!c)
        return;
    for (i = 0; i < S_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    for (i = 0; i < DB_STMT_MAX; i++)
        sqlite3_finalize(c->dst[i]);
    sqlite3_close_v2(c->db);
    free(c);
}

/* Turns on write-ahead logging. On a new file that needs the file to
 * itself: a second process opening it at the same moment gets
 * SQLITE_BUSY at once, which the busy handler does not wait out for this
 * statement, so it is tried again here for up to `timeout_ms`. */
static int wal_on(sqlite3 *db, unsigned timeout_ms)
{
    unsigned waited = 0;
    int rc;

    for (;;) {
        rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL,
                          NULL);
        if (((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) ||
            waited >= timeout_ms)
            return rc;
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
        waited += 10;
    }
}

/* still_the_file() for a connection about to open, with one line the
 * first time it is not. */
static bool open_allowed(struct sq *s)
{
    if (still_the_file(s))
        return true;
    if (!atomic_exchange(&s->gone_said, true))
        log_event(LOG_ERROR, "repo.db_error", NULL,
                  json_pack("{s:s, s:s, s:s}", "backend", "sqlite", "op",
                            "open", "message", "the database file or its "
                            "WAL was deleted or replaced while open; "
                            "restart the daemon"));
    return false;
}

/* Opens a connection: making the file only for the first (later ones
 * open the first one's file or fail, open_allowed()). */
static enum as_err conn_open(struct sq *s, struct conn **out)
{
    static const char setup[] =
        "PRAGMA synchronous = NORMAL;"
        "PRAGMA foreign_keys = ON;"
        "PRAGMA trusted_schema = OFF;";
    struct conn *c = calloc(1, sizeof *c);
    int rc;

    *out = NULL;
    if (!c)
        return AS_ERR_NOMEM;
    if (!open_allowed(s)) {
        free(c);
        return AS_ERR_UNAVAILABLE;
    }
    c->op = "open";
    c->sq = s;
    rc = sqlite3_open_v2(s->path, &c->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                             (s->file_known ? 0 : SQLITE_OPEN_CREATE),
                         NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(c->db, 1);
        sqlite3_busy_timeout(c->db, s->timeout_ms);
        sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
        rc = wal_on(c->db, (unsigned)s->timeout_ms);
        if (rc != SQLITE_OK)
            fail(c, rc);
        else
            run_sql(c, setup);
    } else if (c->db) {
        fail(c, rc);
    } else {
        c->err = AS_ERR_NOMEM;
    }
    /* (replaced between the check above and the open) */
    if (c->err == AS_OK && !open_allowed(s))
        c->err = AS_ERR_UNAVAILABLE;
    if (c->err != AS_OK) {
        enum as_err err = c->err;

        conn_close(c);
        return err;
    }
    *out = c;
    return AS_OK;
}

/* Takes an idle connection, opens one while under the pool size, or
 * waits up to the timeout for one to come back (AS_ERR_UNAVAILABLE). */
static enum as_err acquire(struct sq *s, const char *op, struct conn **out)
{
    struct conn *c = NULL;
    struct timespec until;
    enum as_err err = AS_OK;
    int wait = 0;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += s->timeout_ms / 1000;
    until.tv_nsec += (long)(s->timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->idle && s->open >= s->max && wait == 0)
        wait = pthread_cond_timedwait(&s->cv, &s->mu, &until);
    if (s->idle) {
        c = s->idle;
        s->idle = c->next;
    } else if (s->open < s->max) {
        s->open++;                       /* a slot for the one we open */
    } else {
        err = AS_ERR_UNAVAILABLE;
    }
    pthread_mutex_unlock(&s->mu);
    if (err != AS_OK) {
        log_event(LOG_WARN, "repo.pool_timeout", NULL,
                  json_pack("{s:s, s:s}", "backend", "sqlite", "op", op));
    } else if (!c) {
        err = conn_open(s, &c);
        if (err != AS_OK) {
            pthread_mutex_lock(&s->mu);
            s->open--;
            pthread_cond_signal(&s->cv);
            pthread_mutex_unlock(&s->mu);
        }
    }
    if (c) {
        c->err = AS_OK;
        c->op = op;
    }
    *out = c;
    return err;
}

/* Gives `c` back to the pool; returns the result of its operation. */
static enum as_err release(struct sq *s, struct conn *c)
{
    enum as_err err = c->err;

    reset_all(c);
    if (!sqlite3_get_autocommit(c->db))  /* never hand out an open tx */
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_lock(&s->mu);
    c->next = s->idle;
    s->idle = c;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return err;
}

/* ---- the driver (driver.h) --------------------------------------------- */

static struct conn *conn_of(struct db_conn *d)
{
    return (struct conn *)(void *)d;
}

static enum as_err drv_acquire(void *impl, const char *op,
                               struct db_conn **out)
{
    struct conn *c = NULL;
    enum as_err err = acquire(impl, op, &c);

    *out = (struct db_conn *)(void *)c;
    return err;
}

static enum as_err drv_begin(struct db_conn *d)
{
    struct conn *c = conn_of(d);

    c->err = AS_OK;
    begin(c);
    return c->err;
}

static enum as_err drv_commit(struct db_conn *d)
{
    struct conn *c = conn_of(d);

    c->err = AS_OK;
    end(c);
    return c->err;
}

static void drv_rollback(struct db_conn *d)
{
    struct conn *c = conn_of(d);

    reset_all(c);
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

static void drv_release(void *impl, struct db_conn *d)
{
    release(impl, conn_of(d));
}

/* Binds argument `v` to parameter $`i` (when the statement has it). */
static void bind_val(struct conn *c, sqlite3_stmt *st, size_t i,
                     const struct db_val *v)
{
    char name[24];                    /* "$" and any size_t */
    int at;

    snprintf(name, sizeof name, "$%zu", i);
    at = sqlite3_bind_parameter_index(st, name);
    if (at == 0 || c->err != AS_OK)
        return;
    if (v->null)
        bind_rc(c, sqlite3_bind_null(st, at));
    else if (v->type == DB_TEXT)
        bind_rc(c, sqlite3_bind_text(st, at, v->s, -1, SQLITE_STATIC));
    else if (v->type == DB_BLOB)
        bind_rc(c, sqlite3_bind_blob(st, at, v->b, (int)v->len,
                                     SQLITE_STATIC));
    else
        bind_rc(c, sqlite3_bind_int64(st, at, v->i));
}

/* Column `i` of the current row as a typed value, copied into `a`. */
static void read_val(struct conn *c, sqlite3_stmt *st, int i,
                     struct db_val *v, struct arena *a)
{
    const void *p;
    uint8_t *b;

    memset(v, 0, sizeof *v);
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_NULL:
        v->null = true;
        return;
    case SQLITE_TEXT:
        v->type = DB_TEXT;
        v->s = col_str(c, st, i, a);
        v->len = v->s ? (size_t)sqlite3_column_bytes(st, i) : 0;
        return;
    case SQLITE_BLOB:
        v->type = DB_BLOB;
        p = sqlite3_column_blob(st, i);
        v->len = (size_t)sqlite3_column_bytes(st, i);
        b = arena_alloc(a, v->len + 1);
        if (!b)
            refuse(c, AS_ERR_NOMEM);
        else if (v->len)
            memcpy(b, p, v->len);
        v->b = b;
        return;
    default:
        v->type = DB_INT;
        v->i = sqlite3_column_int64(st, i);
        return;
    }
}

/* Runs area statement `ds`: prepared once per connection, arguments
 * bound by name ($1..$n), every row read into `a`. */
static enum as_err drv_run(struct db_conn *d, struct db_stmt *ds,
                           const struct db_val *args, size_t n,
                           struct db_rows *out, struct arena *a)
{
    struct conn *c = conn_of(d);
    unsigned slot = db_stmt_slot(ds);
    struct db_val *v = NULL, *bigger;
    size_t i, cap = 0, cols;
    sqlite3_stmt *st;
    int rc;

    memset(out, 0, sizeof *out);
    c->err = AS_OK;
    if (!ds->sqlite)                     /* PostgreSQL's row locks */
        return AS_OK;
    if (slot >= DB_STMT_MAX || n > DB_ARGS_MAX)
        return AS_ERR_INTERNAL;
    if (!c->dst[slot]) {
        rc = sqlite3_prepare_v3(c->db, ds->sqlite, -1,
                                SQLITE_PREPARE_PERSISTENT, &c->dst[slot],
                                NULL);
        if (rc != SQLITE_OK) {
            fail(c, rc);
            c->dst[slot] = NULL;
            return c->err;
        }
    }
    st = c->dst[slot];
    for (i = 0; i < n; i++)
        bind_val(c, st, i + 1, &args[i]);
    cols = (size_t)sqlite3_column_count(st);
    while (row(c, st)) {
        if (out->n == cap) {             /* grow: the old copy stays */
            cap = cap ? cap * 2 : 4;     /* in the arena until it ends */
            bigger = arena_alloc(a, cap * (cols ? cols : 1) * sizeof *v);
            if (!bigger) {
                refuse(c, AS_ERR_NOMEM);
                break;
            }
            if (out->n)
                memcpy(bigger, v, out->n * cols * sizeof *v);
            v = bigger;
        }
        for (i = 0; i < cols; i++)
            read_val(c, st, (int)i, &v[out->n * cols + i], a);
        out->n++;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (c->err != AS_OK) {
        memset(out, 0, sizeof *out);
        return c->err;
    }
    out->cols = cols;
    out->v = v;
    out->changed = sqlite3_changes64(c->db);
    return AS_OK;
}

static const struct db_driver sqlite_driver = {
    .acquire = drv_acquire, .begin = drv_begin, .commit = drv_commit,
    .rollback = drv_rollback, .run = drv_run, .release = drv_release,
};

/* ---- operations -------------------------------------------------------- */

/* Applies migration `m` unless schema_migrations has it. */
static void apply(struct conn *c, const struct migration *m)
{
    sqlite3_stmt *st;
    bool have;

    begin(c);
    st = q(c, S_MIG_HAS);
    b_int(c, st, 1, m->version);
    have = row(c, st);
    done(st);
    if (!have) {
        run_sql(c, m->sql);
        st = q(c, S_MIG_ADD);
        b_int(c, st, 1, m->version);
        b_text(c, st, 2, m->name);
        b_int(c, st, 3, clock_ms());
        run(c, st);
    }
    end(c);
    if (c->err != AS_OK)
        log_event(LOG_ERROR, "repo.migration_failed", NULL,
                  json_pack("{s:s, s:s}", "backend", "sqlite", "migration",
                            m->name));
    else if (!have)
        log_event(LOG_INFO, "repo.migrated", NULL,
                  json_pack("{s:s, s:s}", "backend", "sqlite", "migration",
                            m->name));
}

/* Marks in `have` the migrations of `m` (n of them) that schema_migrations
 * lists, in one read: at each start, only a missing one costs a write
 * transaction (README.md, "Performance"). apply() checks again inside its
 * transaction, so a concurrent migrator changes nothing. */
static void applied(struct conn *c, const struct migration *m, size_t n,
                    bool *have)
{
    sqlite3_stmt *st = q(c, S_MIG_ALL);
    size_t i;

    while (row(c, st)) {
        sqlite3_int64 v = sqlite3_column_int64(st, 0);
        bool known = false;

        for (i = 0; i < n; i++)
            if ((sqlite3_int64)m[i].version == v)
                have[i] = known = true;
        if (!known)
            db_unknown_migration("sqlite", (long long)v);
    }
}

static enum as_err sq_migrate(void *impl)
{
    const struct migration *m;
    struct conn *c;
    size_t n, i;
    bool *have;
    enum as_err err = acquire(impl, "migrate", &c);

    if (err != AS_OK)
        return err;
    run_sql(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
               "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
               "applied_at INTEGER NOT NULL)");
    m = migrations_for("sqlite", &n);
    have = calloc(n ? n : 1, sizeof *have);
    if (!have)
        refuse(c, AS_ERR_NOMEM);
    else
        applied(c, m, n, have);
    for (i = 0; have && i < n && c->err == AS_OK; i++)
        if (!have[i])
            apply(c, &m[i]);
    free(have);
    same_file(c);           /* (and its WAL, there now, is noted) */
    return release(impl, c);
}

/* Reads the schema on `c` (and checks that the file is still the one
 * opened, see same_file). */
static void ping_on(struct conn *c)
{
    sqlite3_stmt *st;

    same_file(c);
    st = q(c, S_PING);
    if (row(c, st))
        done(st);
}

/* While another process is known to hold the write lock (see begin()),
 * one try at it: not ready while it is still held (a lock conflict, which
 * the breaker does not count), and the try that gets it ends that. */
static void write_check(struct conn *c)
{
    if (c->err != AS_OK ||
        !atomic_load_explicit(&c->sq->lock_held_at, memory_order_relaxed))
        return;
    begin(c);
    if (c->err == AS_OK)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/* An idle connection of the pool, or NULL: never waits, never opens. */
static struct conn *take_idle(struct sq *s, const char *op)
{
    struct conn *c;

    pthread_mutex_lock(&s->mu);
    c = s->idle;
    if (c)
        s->idle = c->next;
    pthread_mutex_unlock(&s->mu);
    if (c) {
        c->err = AS_OK;
        c->op = op;
    }
    return c;
}

/* On the ping's own connection when it is free (the prober's, most of the
 * time), else on one of the pool's (a probe of a half-open circuit made
 * while the prober pings). The first ping, at start, borrows the
 * connection the migrations left idle if it still is: the ping's own
 * opens at the next ping, off the way to the first answer of /readyz
 * (README "Performance", "Start-up"). */
static enum as_err sq_ping(void *impl)
{
    struct sq *s = impl;
    struct conn *c;
    enum as_err err;

    if (!s->memory && pthread_mutex_trylock(&s->ping_mu) == 0) {
        bool first = !s->pinged;

        s->pinged = true;
        if (first && (c = take_idle(s, "ping"))) {
            pthread_mutex_unlock(&s->ping_mu);
            ping_on(c);
            write_check(c);
            return release(s, c);
        }
        err = s->ping ? AS_OK : conn_open(s, &s->ping);
        if (err == AS_OK) {
            c = s->ping;
            c->err = AS_OK;
            c->op = "ping";
            ping_on(c);
            write_check(c);
            err = c->err;
            reset_all(c);
        }
        pthread_mutex_unlock(&s->ping_mu);
        return err;
    }
    err = acquire(impl, "ping", &c);
    if (err != AS_OK)
        return err;
    ping_on(c);
    write_check(c);
    return release(impl, c);
}

static void sq_close(void *impl)
{
    struct sq *s = impl;
    struct conn *c, *next;

    if (!s)
        return;
    for (c = s->idle; c; c = next) {
        next = c->next;
        conn_close(c);
    }
    conn_close(s->ping);
    pthread_mutex_destroy(&s->ping_mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s->wal);
    free(s);
}

static const struct repo_ops sqlite_ops = {
    .name = "sqlite",
    .migrate = sq_migrate,
    .ping = sq_ping,
    .close = sq_close,
    DB_USER_OPS,
    DB_LOGIN_OPS,
    DB_SESSION_OPS,
    DB_MAIL_OPS,
    DB_MFA_OPS,
    DB_PASSKEY_OPS,
};

/* Creates the database file readable by its owner only, unless it exists
 * (sqlite gives its -wal and -shm files the same mode). */
static enum as_err create_private(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0600);
    struct stat st;

    /* A symbolic link: its target is made here, private, if it is
     * missing (SQLite would make it with the umask's mode). An existing
     * file keeps its mode. */
    if (fd < 0 && errno == EEXIST) {
        if (lstat(path, &st) != 0 || !S_ISLNK(st.st_mode))
            return AS_OK;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    }
    if (fd >= 0) {
        close(fd);
        return AS_OK;
    }
    log_event(LOG_ERROR, "repo.open_failed", NULL,
              json_pack("{s:s, s:s, s:s}", "backend", "sqlite", "path", path,
                        "reason", strerror(errno)));
    return AS_ERR_INTERNAL;
}

static enum as_err sq_new(const struct cfg *cfg, const char *path,
                          struct sq **out)
{
    bool memory = strcmp(path, ":memory:") == 0;
    pthread_condattr_t ca;
    struct sq *s = calloc(1, sizeof *s);

    *out = NULL;
    if (!s)
        return AS_ERR_NOMEM;
    s->base.drv = &sqlite_driver;
    s->path = strdup(path);
    s->wal = malloc(strlen(path) + sizeof "-wal");
    if (s->wal)
        snprintf(s->wal, strlen(path) + sizeof "-wal", "%s-wal", path);
    /* Each connection to ":memory:" is a database of its own. */
    s->max = memory ? 1 : cfg->db_pool_size ? cfg->db_pool_size
                                            : DEFAULT_POOL;
    s->timeout_ms = (int)(cfg->db_timeout_ms && cfg->db_timeout_ms < INT32_MAX
                              ? cfg->db_timeout_ms
                              : DEFAULT_TIMEOUT_MS);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->ping_mu, NULL);
    s->memory = memory;
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!s->path || !s->wal) {
        sq_close(s);
        return AS_ERR_NOMEM;
    }
    *out = s;
    return AS_OK;
}

/* After a failed first open: the file, its WAL and shared-memory files
 * and its folder that this process may not use as SQLite needs (a
 * database made by root where the service's user runs it, a read-only
 * mount), one line each naming the owner and the mode, so that the
 * operator need not read "unable to open database file" as a riddle. */
static void explain_open_failure(const char *path)
{
    static const char *const suffix[] = { "", "-wal", "-shm", NULL };
    char f[4096], octal[8], *slash;
    struct stat st;
    size_t i;
    int len, why;

    for (i = 0; i <= 3; i++) {
        int mode = R_OK | W_OK;

        if (suffix[i])
            len = snprintf(f, sizeof f, "%s%s", path, suffix[i]);
        else {                                  /* the folder */
            len = snprintf(f, sizeof f, "%s", path);
            slash = strrchr(f, '/');
            if (!slash)
                snprintf(f, sizeof f, ".");
            else
                slash[slash == f] = '\0';      /* "/x.db": "/" */
            mode = W_OK | X_OK;
        }
        if (len < 0 || (size_t)len >= sizeof f || stat(f, &st) != 0 ||
            faccessat(AT_FDCWD, f, mode, AT_EACCESS) == 0)
            continue;
        why = errno;
        snprintf(octal, sizeof octal, "%04o", (unsigned)(st.st_mode & 07777));
        log_event(LOG_ERROR, "repo.open_failed", NULL,
                  json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "backend",
                            "sqlite", "path", f, "reason", strerror(why),
                            "owner_uid", (json_int_t)st.st_uid, "daemon_uid",
                            (json_int_t)geteuid(), "mode", octal, "hint",
                            why == EROFS
                                ? "the file system is mounted read-only"
                            : suffix[i]
                                ? "SQLite must read and write it: give it "
                                  "to the daemon's user (chown) or run the "
                                  "daemon as its owner"
                                : "SQLite makes its -wal and -shm files in "
                                  "this folder: the daemon's user must be "
                                  "able to write to it"));
    }
}

/* Opens the SQLite backend on the file `path` (created mode 0600 when
 * missing; ":memory:" gives a private in-memory database), with one
 * connection opened at once so a bad path or file fails here
 * (AS_ERR_INTERNAL). *impl belongs to the caller, who frees it with
 * (*ops)->close after every call on it has returned. */
enum as_err repo_sqlite_open(const struct cfg *cfg, const char *path,
                             const struct repo_ops **ops, void **impl)
{
    struct sq *s = NULL;
    struct conn *c = NULL;
    enum as_err err = AS_OK;

    *ops = NULL;
    *impl = NULL;
    if (!sqlite3_threadsafe()) {
        log_event(LOG_ERROR, "repo.open_failed", NULL,
                  json_pack("{s:s, s:s}", "backend", "sqlite", "reason",
                            "libsqlite3 built without thread support"));
        return AS_ERR_INTERNAL;
    }
    if (strcmp(path, ":memory:") != 0)
        err = create_private(path);
    if (err == AS_OK)
        err = sq_new(cfg, path, &s);
    /* Open one connection now, so a bad path or file shows at start. */
    if (err == AS_OK)
        err = acquire(s, "open", &c);
    if (c)
        err = release(s, c);
    if (err != AS_OK && s && !s->memory)
        explain_open_failure(path);
    if (err == AS_OK && !s->memory) {
        struct stat st;

        if (stat(path, &st) == 0) {
            s->dev = st.st_dev;
            s->ino = st.st_ino;
            s->file_known = true;
            (void)still_the_file(s);     /* notes the WAL if there is one */
        }
    }
    if (err != AS_OK) {
        sq_close(s);
        return err;
    }
    *ops = &sqlite_ops;
    *impl = s;
    return AS_OK;
}
