/* sqlite.c: the embedded backend. A small pool of connections (WAL mode,
 * one thread per connection at a time), cached prepared statements, and
 * every write in one BEGIN IMMEDIATE transaction. */
#include "repo.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "flows.h"
#include "migrations.h"
#include "repo_int.h"

#define DEFAULT_POOL 8u
#define DEFAULT_TIMEOUT_MS 5000u

#define SESSION_COLS                                                       \
    "s.id, s.user_id, s.created_at, s.last_used_at, s.expires_at, "        \
    "s.revoked_at, s.ip, s.user_agent, s.amr"
/* Session s (of user u) is live at ?2. */
#define LIVE_AT_2                                                          \
    "s.revoked_at IS NULL AND s.expires_at > ?2 AND u.is_active = 1"

/* Every statement this backend runs: values are always bound. */
#define STMT_TABLE(X)                                                      \
    X(S_BEGIN, "BEGIN IMMEDIATE")                                          \
    X(S_COMMIT, "COMMIT")                                                  \
    X(S_PING, "SELECT count(*) FROM sqlite_master")                        \
    X(S_MIG_HAS, "SELECT 1 FROM schema_migrations WHERE version = ?1")     \
    X(S_MIG_ADD, "INSERT INTO schema_migrations (version, name, "          \
      "applied_at) VALUES (?1, ?2, ?3)")                                   \
    X(S_LOGIN_READ, "SELECT ip = '*', count, last_at, "                   \
      "coalesce(locked_until, 0) FROM login_failures "                     \
      "WHERE email = ?1 AND ip IN (?2, '*')")                              \
    X(S_LOGIN_PUT, "INSERT INTO login_failures (email, ip, count, "        \
      "last_at, locked_until) VALUES (?1, ?2, ?3, ?4, ?5) "                \
      "ON CONFLICT (email, ip) DO UPDATE SET count = excluded.count, "     \
      "last_at = excluded.last_at, locked_until = excluded.locked_until")  \
    X(S_LOGIN_DEL, "DELETE FROM login_failures "                           \
      "WHERE email = ?1 AND ip = ?2")                                      \
    X(S_LOGIN_CLEAR_ALL, "DELETE FROM login_failures WHERE email = ?1")    \
    X(S_LOGIN_PRUNE, "DELETE FROM login_failures WHERE rowid IN "          \
      "(SELECT rowid FROM login_failures WHERE last_at < ?1 LIMIT 16)")    \
    X(S_LOGIN_CLEAR, "DELETE FROM login_failures "                         \
      "WHERE email = ?1 AND ip IN (?2, '*')")                              \
    X(S_SESSION_INSERT, "INSERT INTO sessions (id, user_id, created_at, "  \
      "last_used_at, expires_at, revoked_at, ip, user_agent, amr) "        \
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, coalesce(?9, 'pwd'))")      \
    X(S_SESSION_GET, "SELECT " SESSION_COLS " FROM sessions s "            \
      "WHERE s.id = ?1")                                                   \
    X(S_SESSION_STATE, "SELECT " LIVE_AT_2 ", u.role, u.email "            \
      "FROM sessions s "                                                   \
      "JOIN users u ON u.id = s.user_id WHERE s.id = ?1")                  \
    X(S_SESSION_LIST, "SELECT " SESSION_COLS " FROM sessions s "           \
      "WHERE s.user_id = ?1 AND s.revoked_at IS NULL "                     \
      "AND s.expires_at > ?2 ORDER BY s.created_at DESC, s.id DESC "       \
      "LIMIT " REPO_SESSION_LIST_MAX_STR)                                  \
    X(S_SESSION_REVOKE, "UPDATE sessions SET revoked_at = ?3 "             \
      "WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?3 "          \
      "AND (?2 IS NULL OR user_id = ?2)")                                  \
    X(S_SESSION_REVOKE_ALL, "UPDATE sessions SET revoked_at = ?3 "         \
      "WHERE user_id = ?1 AND revoked_at IS NULL "                         \
      "AND (?2 IS NULL OR id <> ?2)")                                      \
    X(S_SESSION_KILL, "UPDATE sessions SET revoked_at = ?2 "               \
      "WHERE id = ?1 AND revoked_at IS NULL")                              \
    X(S_SESSION_TOUCH, "UPDATE sessions SET last_used_at = ?2, "           \
      "expires_at = min(?3, created_at + ?4) WHERE id = ?1")               \
    X(S_TOKEN_INSERT, "INSERT INTO refresh_tokens (hash, session_id, "     \
      "created_at) VALUES (?1, ?2, ?3)")                                   \
    X(S_TOKEN_USE, "UPDATE refresh_tokens SET used_at = ?2 "               \
      "WHERE hash = ?1 AND used_at IS NULL AND session_id IN "             \
      "(SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id "     \
      "WHERE " LIVE_AT_2 ") RETURNING session_id")                         \
    X(S_TOKEN_LOOK, "SELECT r.used_at, r.session_id, " LIVE_AT_2 " "       \
      "FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id "      \
      "JOIN users u ON u.id = s.user_id WHERE r.hash = ?1")                \
    X(S_TOKEN_SESSION, "SELECT " SESSION_COLS " FROM refresh_tokens r "    \
      "JOIN sessions s ON s.id = r.session_id "                            \
      "JOIN users u ON u.id = s.user_id "                                  \
      "WHERE r.hash = ?1 AND r.used_at IS NULL AND " LIVE_AT_2)          \

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

/* Binds `v`, or SQL NULL when it is 0. */
static void b_time(struct conn *c, sqlite3_stmt *st, int i, int64_t v)
{
    if (st && c->err == AS_OK)
        bind_rc(c, v ? sqlite3_bind_int64(st, i, v)
                     : sqlite3_bind_null(st, i));
}

static void b_hash(struct conn *c, sqlite3_stmt *st, int i,
                   const uint8_t h[REPO_HASH_LEN])
{
    if (st && c->err == AS_OK)
        bind_rc(c, sqlite3_bind_blob(st, i, h, REPO_HASH_LEN,
                                     SQLITE_TRANSIENT));
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

/* Rows changed by the last statement run, or 0 after a failure. */
static int64_t changed(struct conn *c)
{
    return c->err == AS_OK ? sqlite3_changes64(c->db) : 0;
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

static void begin(struct conn *c)
{
    run(c, q(c, S_BEGIN));
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

static int64_t col_int(sqlite3_stmt *st, int i)
{
    return sqlite3_column_int64(st, i);
}

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

/* Copies id column `i` into `out`; a value that cannot be an id is a
 * corrupt row. */
static void col_id(struct conn *c, sqlite3_stmt *st, int i,
                   char out[UUID_STR_LEN])
{
    const unsigned char *t = sqlite3_column_text(st, i);
    int len = sqlite3_column_bytes(st, i);

    out[0] = '\0';
    if (c->err != AS_OK)
        return;
    if (!t || len <= 0 || len >= UUID_STR_LEN) {
        log_event(LOG_ERROR, "repo.db_error", NULL,
                  json_pack("{s:s, s:s, s:s}", "backend", "sqlite", "op",
                            c->op, "message", "malformed id in a row"));
        refuse(c, AS_ERR_INTERNAL);
        return;
    }
    memcpy(out, t, (size_t)len);
    out[len] = '\0';
}

/* Reads SESSION_COLS. */
static void read_session(struct conn *c, sqlite3_stmt *st,
                         struct session *s, struct arena *a)
{
    memset(s, 0, sizeof *s);
    col_id(c, st, 0, s->id);
    col_id(c, st, 1, s->user_id);
    s->created_at = col_int(st, 2);
    s->last_used_at = col_int(st, 3);
    s->expires_at = col_int(st, 4);
    s->revoked_at = col_int(st, 5);      /* NULL reads as 0 */
    s->ip = col_str(c, st, 6, a);
    s->user_agent = col_str(c, st, 7, a);
    s->amr = col_str(c, st, 8, a);
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

static enum as_err conn_open(struct sq *s, struct conn **out)
{
    static const char setup[] =
        "PRAGMA journal_mode = WAL;"
        "PRAGMA synchronous = NORMAL;"
        "PRAGMA foreign_keys = ON;"
        "PRAGMA trusted_schema = OFF;";
    struct conn *c = calloc(1, sizeof *c);
    int rc;

    *out = NULL;
    if (!c)
        return AS_ERR_NOMEM;
    c->op = "open";
    rc = sqlite3_open_v2(s->path, &c->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                             | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(c->db, 1);
        sqlite3_busy_timeout(c->db, s->timeout_ms);
        sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
        run_sql(c, setup);
    } else if (c->db) {
        fail(c, rc);
    } else {
        c->err = AS_ERR_NOMEM;
    }
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
    char name[16];
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

static enum as_err sq_migrate(void *impl)
{
    const struct migration *m;
    struct conn *c;
    size_t n, i;
    enum as_err err = acquire(impl, "migrate", &c);

    if (err != AS_OK)
        return err;
    run_sql(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
               "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
               "applied_at INTEGER NOT NULL)");
    m = migrations_for("sqlite", &n);
    for (i = 0; i < n && c->err == AS_OK; i++)
        apply(c, &m[i]);
    return release(impl, c);
}

static enum as_err sq_ping(void *impl)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "ping", &c);

    if (err != AS_OK)
        return err;
    st = q(c, S_PING);
    if (row(c, st))
        done(st);
    return release(impl, c);
}

/* Revokes every unrevoked session of `user_id` but `keep_sid`. */
static void revoke_all(struct conn *c, const char *user_id,
                       const char *keep_sid, int64_t now)
{
    sqlite3_stmt *st = q(c, S_SESSION_REVOKE_ALL);

    b_text(c, st, 1, user_id);
    b_text(c, st, 2, keep_sid);
    b_int(c, st, 3, now);
    run(c, st);
}

/* Writes one count of (email, ip) back: count 0 deletes its row. */
static void login_put(struct conn *c, const char *email, const char *ip,
                      const struct login_count *n)
{
    sqlite3_stmt *st = q(c, n->count > 0 ? S_LOGIN_PUT : S_LOGIN_DEL);

    b_text(c, st, 1, email);
    b_text(c, st, 2, ip);
    if (n->count > 0) {
        b_int(c, st, 3, n->count);
        b_int(c, st, 4, n->last_at);
        b_int(c, st, 5, n->locked_until);
    }
    run(c, st);
}

/* BEGIN IMMEDIATE takes the write lock first, so the read, fn() and the
 * writes are one step that every other writer waits for. */
static enum as_err sq_login_failures_update(void *impl, const char *email,
                                            const char *ip,
                                            repo_login_update_fn fn,
                                            void *ctx)
{
    struct login_count mine = { 0 }, all = { 0 };
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "login_failures_update", &c);

    if (err != AS_OK)
        return err;
    begin(c);
    st = q(c, S_LOGIN_READ);
    b_text(c, st, 1, email);
    b_text(c, st, 2, ip);
    while (row(c, st)) {
        struct login_count *n = col_int(st, 0) ? &all : &mine;

        n->count = col_int(st, 1);
        n->last_at = col_int(st, 2);
        n->locked_until = col_int(st, 3);
    }
    if (c->err == AS_OK) {
        fn(ctx, &mine, &all);
        login_put(c, email, ip, &mine);
        login_put(c, email, "*", &all);
    }
    end(c);
    return release(impl, c);
}

static enum as_err sq_login_failures_prune(void *impl, int64_t before)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "login_failures_prune", &c);

    if (err != AS_OK)
        return err;
    st = q(c, S_LOGIN_PRUNE);
    b_int(c, st, 1, before);
    run(c, st);
    return release(impl, c);
}

static enum as_err sq_login_failures_clear(void *impl, const char *email,
                                           const char *ip)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "login_failures_clear", &c);

    if (err != AS_OK)
        return err;
    st = q(c, ip ? S_LOGIN_CLEAR : S_LOGIN_CLEAR_ALL);
    b_text(c, st, 1, email);
    if (ip)
        b_text(c, st, 2, ip);
    run(c, st);
    return release(impl, c);
}

static enum as_err sq_session_create(void *impl, const struct session *s,
                                     const uint8_t hash[REPO_HASH_LEN])
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "session_create", &c);

    if (err != AS_OK)
        return err;
    begin(c);
    st = q(c, S_SESSION_INSERT);
    b_text(c, st, 1, s->id);
    b_text(c, st, 2, s->user_id);
    b_int(c, st, 3, s->created_at);
    b_int(c, st, 4, s->last_used_at);
    b_int(c, st, 5, s->expires_at);
    b_time(c, st, 6, s->revoked_at);
    b_text(c, st, 7, s->ip);
    b_text(c, st, 8, s->user_agent);
    b_text(c, st, 9, s->amr);
    run(c, st);
    st = q(c, S_TOKEN_INSERT);
    b_hash(c, st, 1, hash);
    b_text(c, st, 2, s->id);
    b_int(c, st, 3, s->created_at);
    run(c, st);
    end(c);
    return release(impl, c);
}

/* Reads session `sid` into `out`; AS_ERR_NOT_FOUND when absent. */
static void session_load(struct conn *c, const char *sid,
                         struct session *out, struct arena *a)
{
    sqlite3_stmt *st = q(c, S_SESSION_GET);

    b_text(c, st, 1, sid);
    if (row(c, st))
        read_session(c, st, out, a);
    else
        refuse(c, AS_ERR_NOT_FOUND);
    done(st);
}

static enum as_err sq_session_get(void *impl, const char *sid,
                                  struct session *out, struct arena *a)
{
    struct conn *c;
    enum as_err err = acquire(impl, "session_get", &c);

    if (err != AS_OK)
        return err;
    session_load(c, sid, out, a);
    return release(impl, c);
}

static enum as_err sq_session_state(void *impl, const char *sid,
                                    int64_t now, struct session_state *out)
{
    const unsigned char *e;
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "session_state", &c);

    out->live = false;
    out->role = ROLE_USER;
    out->email[0] = '\0';
    if (err != AS_OK)
        return err;
    st = q(c, S_SESSION_STATE);
    b_text(c, st, 1, sid);
    b_int(c, st, 2, now);
    if (row(c, st)) {
        out->live = col_int(st, 0) != 0;
        out->role = repo_role_parse((const char *)sqlite3_column_text(st, 1));
        e = sqlite3_column_text(st, 2);
        snprintf(out->email, sizeof out->email, "%s",
                 e ? (const char *)e : "");
    }
    done(st);
    return release(impl, c);
}

static enum as_err sq_session_list(void *impl, const char *user_id,
                                   int64_t now, struct session **out,
                                   size_t *n, struct arena *a)
{
    struct session *arr = NULL, *bigger;
    size_t cap = 0;
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "session_list", &c);

    *out = NULL;
    *n = 0;
    if (err != AS_OK)
        return err;
    st = q(c, S_SESSION_LIST);
    b_text(c, st, 1, user_id);
    b_int(c, st, 2, now);
    while (row(c, st)) {
        if (*n == cap) {                 /* grow: the old copy stays */
            cap = cap ? cap * 2 : 8;     /* in the arena until it ends */
            bigger = arena_alloc(a, cap * sizeof *arr);
            if (!bigger) {
                refuse(c, AS_ERR_NOMEM);
                break;
            }
            if (*n)
                memcpy(bigger, arr, *n * sizeof *arr);
            arr = bigger;
        }
        read_session(c, st, &arr[(*n)++], a);
    }
    done(st);
    if (c->err == AS_OK)
        *out = arr;
    else
        *n = 0;
    return release(impl, c);
}

static enum as_err sq_session_revoke(void *impl, const char *sid,
                                     const char *user_id, int64_t now)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "session_revoke", &c);

    if (err != AS_OK)
        return err;
    begin(c);
    st = q(c, S_SESSION_REVOKE);
    b_text(c, st, 1, sid);
    b_text(c, st, 2, user_id);
    b_int(c, st, 3, now);
    run(c, st);
    if (changed(c) == 0)
        refuse(c, AS_ERR_NOT_FOUND);
    end(c);
    return release(impl, c);
}

static enum as_err sq_session_revoke_all(void *impl, const char *user_id,
                                         const char *keep_sid, int64_t now)
{
    struct conn *c;
    enum as_err err = acquire(impl, "session_revoke_all", &c);

    if (err != AS_OK)
        return err;
    begin(c);
    revoke_all(c, user_id, keep_sid, now);
    end(c);
    return release(impl, c);
}

/* now - grace_ms without overflow. */
static int64_t grace_start(int64_t now, int64_t grace_ms)
{
    if (grace_ms <= 0)
        return now;
    return now < INT64_MIN + grace_ms ? INT64_MIN : now - grace_ms;
}

/* The parent could not be consumed: tells why. Fills `out` for GRACE
 * and, for the audit log, REUSED (revoking the session first). */
static enum rotate_result judge(struct conn *c,
                                const uint8_t parent[REPO_HASH_LEN],
                                int64_t now, int64_t grace_ms,
                                struct session *out, struct arena *a)
{
    sqlite3_stmt *st = q(c, S_TOKEN_LOOK);
    char sid[UUID_STR_LEN] = "";
    bool found, used = false, live = false;
    int64_t used_at = 0;

    b_hash(c, st, 1, parent);
    b_int(c, st, 2, now);
    found = row(c, st);
    if (found) {
        used = sqlite3_column_type(st, 0) != SQLITE_NULL;
        used_at = col_int(st, 0);
        col_id(c, st, 1, sid);
        live = col_int(st, 2) != 0;
    }
    done(st);
    if (!found || !used || !live || c->err != AS_OK)
        return ROTATE_INVALID;
    if (used_at >= grace_start(now, grace_ms)) {
        session_load(c, sid, out, a);
        return ROTATE_GRACE;
    }
    st = q(c, S_SESSION_KILL);
    b_text(c, st, 1, sid);
    b_int(c, st, 2, now);
    run(c, st);
    session_load(c, sid, out, a);
    return ROTATE_REUSED;
}

static enum as_err sq_refresh_rotate(void *impl,
                                     const uint8_t parent[REPO_HASH_LEN],
                                     const uint8_t child[REPO_HASH_LEN],
                                     int64_t now, int64_t grace_ms,
                                     int64_t new_expires,
                                     int64_t max_life_ms,
                                     enum rotate_result *res,
                                     struct session *out, struct arena *a)
{
    char sid[UUID_STR_LEN] = "";
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "refresh_rotate", &c);

    *res = ROTATE_INVALID;
    if (err != AS_OK)
        return err;
    begin(c);
    st = q(c, S_TOKEN_USE);              /* consumes a live parent */
    b_hash(c, st, 1, parent);
    b_int(c, st, 2, now);
    if (row(c, st)) {
        col_id(c, st, 0, sid);
        done(st);
        st = q(c, S_TOKEN_INSERT);
        b_hash(c, st, 1, child);
        b_text(c, st, 2, sid);
        b_int(c, st, 3, now);
        run(c, st);
        st = q(c, S_SESSION_TOUCH);
        b_text(c, st, 1, sid);
        b_int(c, st, 2, now);
        b_int(c, st, 3, new_expires);
        b_int(c, st, 4, max_life_ms);
        run(c, st);
        session_load(c, sid, out, a);
        *res = ROTATE_OK;
    } else {
        *res = judge(c, parent, now, grace_ms, out, a);
    }
    end(c);
    if (c->err != AS_OK)
        *res = ROTATE_INVALID;
    return release(impl, c);
}

static enum as_err sq_refresh_session(void *impl,
                                      const uint8_t hash[REPO_HASH_LEN],
                                      int64_t now, struct session *out,
                                      struct arena *a)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "refresh_session", &c);

    if (err != AS_OK)
        return err;
    st = q(c, S_TOKEN_SESSION);
    b_hash(c, st, 1, hash);
    b_int(c, st, 2, now);
    if (row(c, st))
        read_session(c, st, out, a);
    else
        refuse(c, AS_ERR_NOT_FOUND);
    done(st);
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
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
}

/* ---- statements prepared per call (second factor, passkeys) ---------- */

/* Prepares `sql` for this call only (these statements are too rare to be
 * worth a cache slot); NULL after a failure, which the bind and step
 * helpers then skip. Free with sqlite3_finalize(), before end(). */
static sqlite3_stmt *mail_prepare(struct conn *c, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (c->err != AS_OK)
        return NULL;
    rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        fail(c, rc);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/* Runs one-use statement `st` (no rows wanted) and frees it; returns the
 * number of rows it changed. */
static int64_t mail_run(struct conn *c, sqlite3_stmt *st)
{
    int64_t n;

    run(c, st);
    n = changed(c);
    sqlite3_finalize(st);
    return n;
}

/* ---- second factor ----------------------------------------------------- */

/* A login token is live: unused, unexpired at ?2, fewer than ?3 wrong. */
#define MFA_TOKEN_LIVE                                                     \
    "used_at IS NULL AND expires_at > ?2 AND failures < ?3"

static enum as_err sq_mfa_get(void *impl, const char *user_id,
                              struct mfa_state *out, struct arena *a)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "mfa_get", &c);

    if (err != AS_OK)
        return err;
    memset(out, 0, sizeof *out);
    st = mail_prepare(c, "SELECT enabled, secret, last_step FROM user_mfa "
                         "WHERE user_id = ?1");
    b_text(c, st, 1, user_id);
    if (row(c, st)) {
        out->enabled = col_int(st, 0) != 0;
        out->secret = col_str(c, st, 1, a);
        out->last_step = col_int(st, 2);
    } else {
        refuse(c, AS_ERR_NOT_FOUND);
    }
    sqlite3_finalize(st);
    return release(impl, c);
}

static enum as_err sq_mfa_pending(void *impl, const char *user_id,
                                  const char *sealed, int64_t now)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "mfa_pending", &c);

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "INSERT INTO user_mfa (user_id, secret, "
                         "created_at) VALUES (?1, ?2, ?3) "
                         "ON CONFLICT (user_id) DO UPDATE SET "
                         "secret = excluded.secret, last_step = -1, "
                         "created_at = excluded.created_at "
                         "WHERE enabled = 0");
    b_text(c, st, 1, user_id);
    b_text(c, st, 2, sealed);
    b_int(c, st, 3, now);
    if (mail_run(c, st) != 1)
        refuse(c, AS_ERR_CONFLICT);
    return release(impl, c);
}

/* Inserts the `n` recovery code hashes of `user_id`. */
static void recovery_insert(struct conn *c, const char *user_id,
                            const uint8_t (*codes)[REPO_HASH_LEN], size_t n,
                            int64_t now)
{
    size_t i;

    for (i = 0; i < n && c->err == AS_OK; i++) {
        sqlite3_stmt *st = mail_prepare(c, "INSERT INTO mfa_recovery_codes "
                                           "(user_id, hash, created_at) "
                                           "VALUES (?1, ?2, ?3)");
        b_text(c, st, 1, user_id);
        b_hash(c, st, 2, codes[i]);
        b_int(c, st, 3, now);
        mail_run(c, st);
    }
}

static enum as_err sq_mfa_enable(void *impl, const char *user_id,
                                 int64_t step,
                                 const uint8_t (*codes)[REPO_HASH_LEN],
                                 size_t n, const char *keep_sid, int64_t now)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "mfa_enable", &c);

    if (err != AS_OK)
        return err;
    begin(c);
    st = mail_prepare(c, "UPDATE user_mfa SET enabled = 1, last_step = ?2, "
                         "enabled_at = ?3 WHERE user_id = ?1 "
                         "AND enabled = 0 AND last_step < ?2");
    b_text(c, st, 1, user_id);
    b_int(c, st, 2, step);
    b_int(c, st, 3, now);
    if (mail_run(c, st) != 1)
        refuse(c, AS_ERR_NOT_FOUND);
    st = mail_prepare(c, "DELETE FROM mfa_recovery_codes WHERE user_id = ?1");
    b_text(c, st, 1, user_id);
    mail_run(c, st);
    recovery_insert(c, user_id, codes, n, now);
    st = q(c, S_SESSION_REVOKE_ALL);
    b_text(c, st, 1, user_id);
    b_text(c, st, 2, keep_sid);
    b_int(c, st, 3, now);
    run(c, st);
    end(c);
    return release(impl, c);
}

static enum as_err sq_mfa_use_step(void *impl, const char *user_id,
                                   int64_t step)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "mfa_use_step", &c);

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "UPDATE user_mfa SET last_step = ?2 "
                         "WHERE user_id = ?1 AND enabled = 1 "
                         "AND last_step < ?2");
    b_text(c, st, 1, user_id);
    b_int(c, st, 2, step);
    if (mail_run(c, st) != 1)
        refuse(c, AS_ERR_NOT_FOUND);
    return release(impl, c);
}

static enum as_err sq_mfa_use_recovery(void *impl, const char *user_id,
                                       const uint8_t hash[REPO_HASH_LEN],
                                       int64_t now)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "mfa_use_recovery", &c);

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "UPDATE mfa_recovery_codes SET used_at = ?3 "
                         "WHERE user_id = ?1 AND hash = ?2 "
                         "AND used_at IS NULL AND user_id IN (SELECT "
                         "user_id FROM user_mfa WHERE enabled = 1)");
    b_text(c, st, 1, user_id);
    b_hash(c, st, 2, hash);
    b_int(c, st, 3, now);
    if (mail_run(c, st) != 1)
        refuse(c, AS_ERR_NOT_FOUND);
    return release(impl, c);
}

static enum as_err sq_mfa_recovery_set(void *impl, const char *user_id,
                                       const uint8_t (*codes)[REPO_HASH_LEN],
                                       size_t n, int64_t now)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "mfa_recovery_set", &c);

    if (err != AS_OK)
        return err;
    begin(c);
    st = mail_prepare(c, "SELECT 1 FROM user_mfa WHERE user_id = ?1 "
                         "AND enabled = 1");
    b_text(c, st, 1, user_id);
    if (!row(c, st))
        refuse(c, AS_ERR_NOT_FOUND);
    sqlite3_finalize(st);
    st = mail_prepare(c, "DELETE FROM mfa_recovery_codes WHERE user_id = ?1");
    b_text(c, st, 1, user_id);
    mail_run(c, st);
    recovery_insert(c, user_id, codes, n, now);
    end(c);
    return release(impl, c);
}

static enum as_err sq_mfa_disable(void *impl, const char *user_id,
                                  bool *was_on)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "mfa_disable", &c);

    if (err != AS_OK)
        return err;
    begin(c);
    st = mail_prepare(c, "DELETE FROM user_mfa WHERE user_id = ?1 "
                         "RETURNING enabled");
    b_text(c, st, 1, user_id);
    if (row(c, st))
        *was_on = col_int(st, 0) != 0;
    sqlite3_finalize(st);
    st = mail_prepare(c, "DELETE FROM mfa_recovery_codes WHERE user_id = ?1");
    b_text(c, st, 1, user_id);
    mail_run(c, st);
    st = mail_prepare(c, "DELETE FROM mfa_tokens WHERE user_id = ?1");
    b_text(c, st, 1, user_id);
    mail_run(c, st);
    end(c);
    return release(impl, c);
}

static enum as_err sq_mfa_token_create(void *impl,
                                       const uint8_t hash[REPO_HASH_LEN],
                                       const char *user_id, int64_t now,
                                       int64_t expires_at)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "mfa_token_create", &c);

    if (err != AS_OK)
        return err;
    begin(c);
    st = mail_prepare(c, "DELETE FROM mfa_tokens WHERE rowid IN (SELECT "
                         "rowid FROM mfa_tokens WHERE expires_at < ?1 OR "
                         "used_at IS NOT NULL LIMIT 16)");
    b_int(c, st, 1, now);
    mail_run(c, st);
    st = mail_prepare(c, "INSERT INTO mfa_tokens (hash, user_id, "
                         "created_at, expires_at) VALUES (?1, ?2, ?3, ?4)");
    b_hash(c, st, 1, hash);
    b_text(c, st, 2, user_id);
    b_int(c, st, 3, now);
    b_int(c, st, 4, expires_at);
    mail_run(c, st);
    end(c);
    return release(impl, c);
}

static enum as_err sq_mfa_token_user(void *impl,
                                     const uint8_t hash[REPO_HASH_LEN],
                                     int64_t now, unsigned max_failures,
                                     char user_id[UUID_STR_LEN])
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "mfa_token_user", &c);

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "SELECT user_id FROM mfa_tokens "
                         "WHERE hash = ?1 AND " MFA_TOKEN_LIVE);
    b_hash(c, st, 1, hash);
    b_int(c, st, 2, now);
    b_int(c, st, 3, max_failures);
    if (row(c, st))
        col_id(c, st, 0, user_id);
    else
        refuse(c, AS_ERR_NOT_FOUND);
    sqlite3_finalize(st);
    return release(impl, c);
}

static enum as_err sq_mfa_token_attempt(void *impl,
                                        const uint8_t hash[REPO_HASH_LEN],
                                        int64_t now, unsigned max_failures)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "mfa_token_attempt", &c);

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "UPDATE mfa_tokens SET failures = failures + 1 "
                         "WHERE hash = ?1 AND " MFA_TOKEN_LIVE);
    b_hash(c, st, 1, hash);
    b_int(c, st, 2, now);
    b_int(c, st, 3, max_failures);
    if (mail_run(c, st) != 1)
        refuse(c, AS_ERR_NOT_FOUND);
    return release(impl, c);
}

static enum as_err sq_mfa_token_use(void *impl,
                                    const uint8_t hash[REPO_HASH_LEN],
                                    int64_t now, unsigned max_failures)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "mfa_token_use", &c);

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "UPDATE mfa_tokens SET used_at = ?2 "
                         "WHERE hash = ?1 AND " MFA_TOKEN_LIVE);
    b_hash(c, st, 1, hash);
    b_int(c, st, 2, now);
    b_int(c, st, 3, max_failures);
    if (mail_run(c, st) != 1)
        refuse(c, AS_ERR_NOT_FOUND);
    return release(impl, c);
}

/* ---- passkeys ---------------------------------------------------------- */

#define PASSKEY_COLS "id, user_id, cred_id, public_key, sign_count, " \
                     "transports, name, created_at, last_used_at"

/* Reads PASSKEY_COLS. */
static void read_passkey(struct conn *c, sqlite3_stmt *st,
                         struct passkey *p, struct arena *a)
{
    memset(p, 0, sizeof *p);
    col_id(c, st, 0, p->id);
    col_id(c, st, 1, p->user_id);
    p->cred_id = col_str(c, st, 2, a);
    p->public_key = col_str(c, st, 3, a);
    p->sign_count = col_int(st, 4);
    p->transports = col_str(c, st, 5, a);
    p->name = col_str(c, st, 6, a);
    p->created_at = col_int(st, 7);
    p->last_used_at = col_int(st, 8);
}

static enum as_err sq_passkey_challenge_put(void *impl,
                                            const uint8_t hash[REPO_HASH_LEN],
                                            enum passkey_ceremony ceremony,
                                            const char *user_id, int64_t now,
                                            int64_t expires_at)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "passkey_challenge_put", &c);

    if (err != AS_OK)
        return err;
    begin(c);
    st = mail_prepare(c, "DELETE FROM passkey_challenges WHERE rowid IN "
                         "(SELECT rowid FROM passkey_challenges "
                         "WHERE expires_at <= ?1 LIMIT 16)");
    b_int(c, st, 1, now);
    mail_run(c, st);
    st = mail_prepare(c, "INSERT INTO passkey_challenges (hash, ceremony, "
                         "user_id, created_at, expires_at) "
                         "VALUES (?1, ?2, ?3, ?4, ?5)");
    b_hash(c, st, 1, hash);
    b_int(c, st, 2, ceremony);
    b_text(c, st, 3, user_id);
    b_int(c, st, 4, now);
    b_int(c, st, 5, expires_at);
    mail_run(c, st);
    end(c);
    return release(impl, c);
}

static enum as_err sq_passkey_challenge_take(void *impl,
                                             const uint8_t hash[REPO_HASH_LEN],
                                             enum passkey_ceremony ceremony,
                                             int64_t now,
                                             char user_id[UUID_STR_LEN])
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "passkey_challenge_take", &c);

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "DELETE FROM passkey_challenges WHERE hash = ?1 "
                         "AND ceremony = ?2 AND expires_at > ?3 "
                         "RETURNING coalesce(user_id, '')");
    b_hash(c, st, 1, hash);
    b_int(c, st, 2, ceremony);
    b_int(c, st, 3, now);
    if (row(c, st)) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        int len = sqlite3_column_bytes(st, 0);

        if (t && len > 0 && len < UUID_STR_LEN) {
            memcpy(user_id, t, (size_t)len);
            user_id[len] = '\0';
        }
        while (row(c, st))               /* finish the DELETE */
            ;
    } else {
        refuse(c, AS_ERR_NOT_FOUND);
    }
    sqlite3_finalize(st);
    return release(impl, c);
}

static enum as_err sq_passkey_insert(void *impl, const struct passkey *p)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "passkey_insert", &c);

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "INSERT INTO passkeys (" PASSKEY_COLS ") VALUES "
                         "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
                         "ON CONFLICT (cred_id) DO NOTHING");
    b_text(c, st, 1, p->id);
    b_text(c, st, 2, p->user_id);
    b_text(c, st, 3, p->cred_id);
    b_text(c, st, 4, p->public_key);
    b_int(c, st, 5, p->sign_count);
    b_text(c, st, 6, p->transports);
    b_text(c, st, 7, p->name);
    b_int(c, st, 8, p->created_at);
    b_time(c, st, 9, p->last_used_at);
    if (mail_run(c, st) != 1)
        refuse(c, AS_ERR_CONFLICT);
    return release(impl, c);
}

static enum as_err sq_passkey_by_cred(void *impl, const char *cred_id,
                                      struct passkey *out, struct arena *a)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "passkey_by_cred", &c);

    if (err != AS_OK)
        return err;
    memset(out, 0, sizeof *out);
    st = mail_prepare(c, "SELECT " PASSKEY_COLS " FROM passkeys "
                         "WHERE cred_id = ?1");
    b_text(c, st, 1, cred_id);
    if (row(c, st))
        read_passkey(c, st, out, a);
    else
        refuse(c, AS_ERR_NOT_FOUND);
    sqlite3_finalize(st);
    return release(impl, c);
}

static enum as_err sq_passkey_list(void *impl, const char *user_id,
                                   struct passkey **out, size_t *n,
                                   struct arena *a)
{
    struct passkey *arr = arena_alloc(a, REPO_PASSKEY_LIST_MAX * sizeof *arr);
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = arr ? acquire(impl, "passkey_list", &c)
                          : AS_ERR_NOMEM;

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "SELECT " PASSKEY_COLS " FROM passkeys "
                         "WHERE user_id = ?1 ORDER BY id LIMIT "
                         "?2");
    b_text(c, st, 1, user_id);
    b_int(c, st, 2, REPO_PASSKEY_LIST_MAX);
    while (*n < REPO_PASSKEY_LIST_MAX && row(c, st))
        read_passkey(c, st, &arr[(*n)++], a);
    sqlite3_finalize(st);
    if (c->err == AS_OK)
        *out = arr;
    else
        *n = 0;
    return release(impl, c);
}

static enum as_err sq_passkey_delete(void *impl, const char *id,
                                     const char *user_id)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "passkey_delete", &c);

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "DELETE FROM passkeys WHERE id = ?1 "
                         "AND user_id = ?2");
    b_text(c, st, 1, id);
    b_text(c, st, 2, user_id);
    if (mail_run(c, st) != 1)
        refuse(c, AS_ERR_NOT_FOUND);
    return release(impl, c);
}

static enum as_err sq_passkey_use(void *impl, const char *id,
                                  int64_t old_count, int64_t new_count,
                                  int64_t now)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "passkey_use", &c);

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "UPDATE passkeys SET sign_count = ?3, "
                         "last_used_at = ?4 WHERE id = ?1 "
                         "AND sign_count = ?2");
    b_text(c, st, 1, id);
    b_int(c, st, 2, old_count);
    b_int(c, st, 3, new_count);
    b_int(c, st, 4, now);
    if (mail_run(c, st) != 1)
        refuse(c, AS_ERR_NOT_FOUND);
    return release(impl, c);
}

static const struct repo_ops sqlite_ops = {
    .name = "sqlite",
    .migrate = sq_migrate,
    .ping = sq_ping,
    .close = sq_close,
    DB_USER_OPS,
    .login_failures_update = sq_login_failures_update,
    .login_failures_prune = sq_login_failures_prune,
    .login_failures_clear = sq_login_failures_clear,
    .session_create = sq_session_create,
    .session_get = sq_session_get,
    .session_state = sq_session_state,
    .session_list = sq_session_list,
    .session_revoke = sq_session_revoke,
    .session_revoke_all = sq_session_revoke_all,
    .refresh_rotate = sq_refresh_rotate,
    .refresh_session = sq_refresh_session,
    DB_MAIL_OPS,
    .mfa_get = sq_mfa_get,
    .mfa_pending = sq_mfa_pending,
    .mfa_enable = sq_mfa_enable,
    .mfa_use_step = sq_mfa_use_step,
    .mfa_use_recovery = sq_mfa_use_recovery,
    .mfa_recovery_set = sq_mfa_recovery_set,
    .mfa_disable = sq_mfa_disable,
    .mfa_token_create = sq_mfa_token_create,
    .mfa_token_user = sq_mfa_token_user,
    .mfa_token_attempt = sq_mfa_token_attempt,
    .mfa_token_use = sq_mfa_token_use,
    .passkey_challenge_put = sq_passkey_challenge_put,
    .passkey_challenge_take = sq_passkey_challenge_take,
    .passkey_insert = sq_passkey_insert,
    .passkey_by_cred = sq_passkey_by_cred,
    .passkey_list = sq_passkey_list,
    .passkey_delete = sq_passkey_delete,
    .passkey_use = sq_passkey_use,
};

/* Creates the database file readable by its owner only, unless it exists
 * (sqlite gives its -wal and -shm files the same mode). */
static enum as_err create_private(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0600);

    if (fd >= 0) {
        close(fd);
        return AS_OK;
    }
    if (errno == EEXIST)
        return AS_OK;
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
    /* Each connection to ":memory:" is a database of its own. */
    s->max = memory ? 1 : cfg->db_pool_size ? cfg->db_pool_size
                                            : DEFAULT_POOL;
    s->timeout_ms = (int)(cfg->db_timeout_ms && cfg->db_timeout_ms < INT32_MAX
                              ? cfg->db_timeout_ms
                              : DEFAULT_TIMEOUT_MS);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!s->path) {
        sq_close(s);
        return AS_ERR_NOMEM;
    }
    *out = s;
    return AS_OK;
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
    if (err != AS_OK) {
        sq_close(s);
        return err;
    }
    *ops = &sqlite_ops;
    *impl = s;
    return AS_OK;
}
