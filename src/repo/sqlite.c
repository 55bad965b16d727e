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

#define DEFAULT_POOL (cfg_defaults()->db_pool_size)
#define DEFAULT_TIMEOUT_MS (cfg_defaults()->db_timeout_ms)

#define USER_COLS                                                          \
    "id, email, full_name, password_hash, role, is_active, is_verified, "  \
    "created_at, updated_at"
/* Whether the user (table users) has its second factor on. */
#define USER_MFA_COL                                                       \
    ", EXISTS (SELECT 1 FROM user_mfa m WHERE m.user_id = users.id "       \
    "AND m.enabled = 1)"

/* Every statement this backend runs: values are always bound. */
#define STMT_TABLE(X)                                                      \
    X(S_BEGIN, "BEGIN IMMEDIATE")                                          \
    X(S_COMMIT, "COMMIT")                                                  \
    X(S_PING, "SELECT count(*) FROM sqlite_master")                        \
    X(S_MIG_HAS, "SELECT 1 FROM schema_migrations WHERE version = ?1")     \
    X(S_MIG_ADD, "INSERT INTO schema_migrations (version, name, "          \
      "applied_at) VALUES (?1, ?2, ?3)")                                   \
    X(S_SESSION_REVOKE_ALL, "UPDATE sessions SET revoked_at = ?3 "         \
      "WHERE user_id = ?1 AND revoked_at IS NULL "                         \
      "AND (?2 IS NULL OR id <> ?2)")                                      \

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

/* Reads USER_COLS. */
static void read_user(struct conn *c, sqlite3_stmt *st, struct user *u,
                      struct arena *a)
{
    const char *role;

    memset(u, 0, sizeof *u);
    col_id(c, st, 0, u->id);
    u->email = col_str(c, st, 1, a);
    u->full_name = col_str(c, st, 2, a);
    u->password_hash = col_str(c, st, 3, a);
    role = (const char *)sqlite3_column_text(st, 4);
    u->role = repo_role_parse(role);
    u->is_active = col_int(st, 5) != 0;
    u->is_verified = col_int(st, 6) != 0;
    u->created_at = col_int(st, 7);
    u->updated_at = col_int(st, 8);
    if (sqlite3_column_count(st) > 9)    /* USER_MFA_COL */
        u->mfa_enabled = col_int(st, 9) != 0;
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

/* ---- mail: link tokens and the outbox ---------------------------------- */

#define OTT_LIVE "used_at IS NULL AND expires_at > ?2"

/* Prepares `sql` for this call only (mail statements are too rare to be
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

static enum as_err sq_outbox_add(void *impl, const struct outbox_row *m)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "outbox_add", &c);

    if (err != AS_OK)
        return err;
    if (!m->kind || !m->recipient)
        refuse(c, AS_ERR_BAD_REQUEST);
    st = mail_prepare(c, "INSERT INTO outbox (id, user_id, kind, recipient, "
                         "seed, created_at, next_attempt_at) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)");
    b_text(c, st, 1, m->id);
    b_text(c, st, 2, m->user_id);
    b_text(c, st, 3, m->kind);
    b_text(c, st, 4, m->recipient);
    if (m->seed)
        b_hash(c, st, 5, m->seed);   /* REPO_SEED_LEN == REPO_HASH_LEN */
    b_int(c, st, 6, m->created_at);
    mail_run(c, st);
    return release(impl, c);
}

/* The user `t` is for (see repo_outbox_resolve()) into `user_id`; false
 * when there is none. */
static bool resolve_user(struct conn *c, const struct outbox_row *m,
                         const struct ott *t, char user_id[UUID_STR_LEN])
{
    sqlite3_stmt *st;
    bool found;

    st = mail_prepare(c, t->purpose == OTT_VERIFY
                             ? "SELECT id FROM users WHERE id = ?2 "
                               "AND email = ?1 AND is_active = 1 "
                               "AND is_verified = 0"
                             : "SELECT id FROM users WHERE email = ?1 "
                               "AND is_active = 1");
    b_text(c, st, 1, m->recipient);
    if (t->purpose == OTT_VERIFY)
        b_text(c, st, 2, m->user_id);
    found = row(c, st);
    if (found)
        col_id(c, st, 0, user_id);
    sqlite3_finalize(st);
    return found;
}

/* Counts one mail to `recipient` in the hour of `now`; the new count. */
static int64_t count_mail(struct conn *c, const char *recipient, int64_t now)
{
    sqlite3_stmt *st;
    int64_t n = 0;

    st = mail_prepare(c, "INSERT INTO mail_counts (recipient, window_start, "
                         "n) VALUES (?1, ?2, 1) ON CONFLICT (recipient, "
                         "window_start) DO UPDATE SET n = n + 1 "
                         "RETURNING n");
    b_text(c, st, 1, recipient);
    b_int(c, st, 2, now - now % INT64_C(3600000));
    if (row(c, st))
        n = col_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

static enum as_err sq_outbox_resolve(void *impl, const struct outbox_row *m,
                                     const struct ott *t, unsigned cap,
                                     int64_t now, enum outbox_fate *fate,
                                     char user_id[UUID_STR_LEN])
{
    struct conn *c;
    sqlite3_stmt *st;
    bool found, capped;
    enum as_err err = acquire(impl, "outbox_resolve", &c);

    user_id[0] = '\0';
    *fate = OUTBOX_NO_USER;
    if (err != AS_OK)
        return err;
    if (!m->recipient || (!t && !m->user_id))
        refuse(c, AS_ERR_BAD_REQUEST);
    begin(c);
    if (c->err == AS_OK && !t)
        snprintf(user_id, UUID_STR_LEN, "%s", m->user_id);
    /* The same statements whether or not the user exists: the lookup,
     * then the count, then the decision. */
    found = c->err == AS_OK && (!t || resolve_user(c, m, t, user_id));
    capped = c->err == AS_OK &&
             count_mail(c, m->recipient, now) > (int64_t)cap &&
             t;                          /* a notice is never held back */
    if (c->err == AS_OK)
        *fate = !found ? OUTBOX_NO_USER
                       : capped ? OUTBOX_CAPPED : OUTBOX_READY;
    if (*fate != OUTBOX_READY) {
        st = mail_prepare(c, "DELETE FROM outbox WHERE id = ?1 "
                             "AND sent_at IS NULL");
        b_text(c, st, 1, m->id);
        mail_run(c, st);
    } else {
        if (t) {
            st = mail_prepare(c, "INSERT INTO one_time_tokens (hash, "
                                 "user_id, purpose, email, created_at, "
                                 "expires_at) VALUES (?1, ?2, ?3, ?4, ?5, "
                                 "?6)");
            b_hash(c, st, 1, t->hash);
            b_text(c, st, 2, user_id);
            b_text(c, st, 3, t->purpose == OTT_VERIFY ? "verify" : "reset");
            b_text(c, st, 4, m->recipient);
            b_int(c, st, 5, t->created_at);
            b_int(c, st, 6, t->expires_at);
            mail_run(c, st);
        }
        st = mail_prepare(c, "UPDATE outbox SET resolved = 1, user_id = ?2, "
                             "expires_at = ?3 WHERE id = ?1 "
                             "AND resolved = 0 AND sent_at IS NULL");
        b_text(c, st, 1, m->id);
        b_text(c, st, 2, user_id);
        b_int(c, st, 3, t ? t->expires_at : 0);
        if (mail_run(c, st) != 1)
            refuse(c, AS_ERR_NOT_FOUND);    /* gone meanwhile */
    }
    end(c);
    if (c->err != AS_OK) {
        user_id[0] = '\0';
        *fate = OUTBOX_NO_USER;
    }
    return release(impl, c);
}

static enum as_err sq_outbox_drop(void *impl, const char *id)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "outbox_drop", &c);

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "DELETE FROM outbox WHERE id = ?1 "
                         "AND sent_at IS NULL");
    b_text(c, st, 1, id);
    mail_run(c, st);
    return release(impl, c);
}

static enum as_err sq_ott_reset_user(void *impl,
                                     const uint8_t hash[REPO_HASH_LEN],
                                     int64_t now, struct user *out,
                                     struct arena *a)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "ott_reset_user", &c);

    if (err != AS_OK)
        return err;
    st = mail_prepare(c, "SELECT " USER_COLS " FROM users "
                         "WHERE is_active = 1 AND (id, email) IN "
                         "(SELECT user_id, email FROM one_time_tokens "
                         "WHERE hash = ?1 AND purpose = 'reset' AND "
                         OTT_LIVE ")");
    b_hash(c, st, 1, hash);
    b_int(c, st, 2, now);
    if (row(c, st))
        read_user(c, st, out, a);
    else
        refuse(c, AS_ERR_NOT_FOUND);
    sqlite3_finalize(st);
    return release(impl, c);
}

static enum as_err sq_ott_reset(void *impl, const uint8_t hash[REPO_HASH_LEN],
                                const char *user_id, const char *pw_hash,
                                int64_t now)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "ott_reset", &c);

    if (err != AS_OK)
        return err;
    if (!user_id || !pw_hash)
        refuse(c, AS_ERR_BAD_REQUEST);
    begin(c);
    st = mail_prepare(c, "UPDATE one_time_tokens SET used_at = ?2 "
                         "WHERE hash = ?1 AND purpose = 'reset' "
                         "AND user_id = ?3 AND " OTT_LIVE);
    b_hash(c, st, 1, hash);
    b_int(c, st, 2, now);
    b_text(c, st, 3, user_id);
    if (mail_run(c, st) != 1)
        refuse(c, AS_ERR_NOT_FOUND);
    st = mail_prepare(c, "UPDATE users SET password_hash = ?2, "
                         "updated_at = ?3 WHERE id = ?1 AND is_active = 1 "
                         "AND email = (SELECT email FROM one_time_tokens "
                         "WHERE hash = ?4)");
    b_text(c, st, 1, user_id);
    b_text(c, st, 2, pw_hash);
    b_int(c, st, 3, now);
    b_hash(c, st, 4, hash);
    if (mail_run(c, st) != 1)
        refuse(c, AS_ERR_NOT_FOUND);
    revoke_all(c, user_id, NULL, now);
    st = mail_prepare(c, "UPDATE one_time_tokens SET used_at = ?2 "
                         "WHERE user_id = ?1 AND purpose = 'reset' "
                         "AND used_at IS NULL");
    b_text(c, st, 1, user_id);
    b_int(c, st, 2, now);
    mail_run(c, st);
    end(c);
    return release(impl, c);
}

static enum as_err sq_ott_verify(void *impl,
                                 const uint8_t hash[REPO_HASH_LEN],
                                 int64_t now, char user_id[UUID_STR_LEN])
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "ott_verify", &c);

    user_id[0] = '\0';
    if (err != AS_OK)
        return err;
    begin(c);
    st = mail_prepare(c, "UPDATE one_time_tokens SET used_at = ?2 "
                         "WHERE hash = ?1 AND purpose = 'verify' AND "
                         OTT_LIVE " RETURNING user_id");
    b_hash(c, st, 1, hash);
    b_int(c, st, 2, now);
    if (row(c, st))
        col_id(c, st, 0, user_id);
    else
        refuse(c, AS_ERR_NOT_FOUND);
    sqlite3_finalize(st);
    st = mail_prepare(c, "UPDATE users SET is_verified = 1, updated_at = ?2 "
                         "WHERE id = ?1 AND is_active = 1 "
                         "AND email = (SELECT email FROM one_time_tokens "
                         "WHERE hash = ?3)");
    b_text(c, st, 1, user_id);
    b_int(c, st, 2, now);
    b_hash(c, st, 3, hash);
    if (mail_run(c, st) != 1)
        refuse(c, AS_ERR_NOT_FOUND);
    st = mail_prepare(c, "UPDATE one_time_tokens SET used_at = ?2 "
                         "WHERE user_id = ?1 AND purpose = 'verify' "
                         "AND used_at IS NULL");
    b_text(c, st, 1, user_id);
    b_int(c, st, 2, now);
    mail_run(c, st);
    end(c);
    if (c->err != AS_OK)
        user_id[0] = '\0';
    return release(impl, c);
}

/* A copy in `a` of seed column `i`; NULL when it is NULL or not a
 * seed. */
static const uint8_t *col_seed(struct conn *c, sqlite3_stmt *st, int i,
                               struct arena *a)
{
    const void *b;
    uint8_t *copy;

    if (c->err != AS_OK || sqlite3_column_type(st, i) != SQLITE_BLOB ||
        sqlite3_column_bytes(st, i) != REPO_SEED_LEN)
        return NULL;
    b = sqlite3_column_blob(st, i);
    copy = b ? arena_alloc(a, REPO_SEED_LEN) : NULL;
    if (!copy) {
        refuse(c, AS_ERR_NOMEM);
        return NULL;
    }
    memcpy(copy, b, REPO_SEED_LEN);
    return copy;
}

static enum as_err sq_outbox_claim(void *impl, int64_t now,
                                   int64_t lease_until,
                                   struct outbox_row *out, struct arena *a)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "outbox_claim", &c);

    memset(out, 0, sizeof *out);
    if (err != AS_OK)
        return err;
    begin(c);                /* BEGIN IMMEDIATE: one claimer at a time */
    st = mail_prepare(c, "UPDATE outbox SET locked_until = ?2 WHERE id = "
                         "(SELECT id FROM outbox WHERE sent_at IS NULL "
                         "AND next_attempt_at <= ?1 AND locked_until <= ?1 "
                         "ORDER BY next_attempt_at, id LIMIT 1) "
                         "RETURNING id, kind, recipient, user_id, seed, "
                         "resolved, expires_at, created_at, attempts");
    b_int(c, st, 1, now);
    b_int(c, st, 2, lease_until);
    if (row(c, st)) {
        col_id(c, st, 0, out->id);
        out->kind = col_str(c, st, 1, a);
        out->recipient = col_str(c, st, 2, a);
        out->user_id = col_str(c, st, 3, a);
        out->seed = col_seed(c, st, 4, a);
        out->resolved = col_int(st, 5) != 0;
        out->expires_at = col_int(st, 6);
        out->created_at = col_int(st, 7);
        out->attempts = col_int(st, 8);
    } else {
        refuse(c, AS_ERR_NOT_FOUND);
    }
    sqlite3_finalize(st);
    end(c);
    return release(impl, c);
}

static enum as_err sq_outbox_sent(void *impl, const char *id, int64_t now)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "outbox_sent", &c);

    if (err != AS_OK)
        return err;
    begin(c);
    st = mail_prepare(c, "UPDATE outbox SET sent_at = ?2, seed = NULL, "
                         "locked_until = 0, last_error = NULL "
                         "WHERE id = ?1 AND sent_at IS NULL");
    b_text(c, st, 1, id);
    b_int(c, st, 2, now);
    mail_run(c, st);
    end(c);
    return release(impl, c);
}

static enum as_err sq_outbox_failed(void *impl, const char *id,
                                    int64_t next_at, const char *error)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "outbox_failed", &c);

    if (err != AS_OK)
        return err;
    begin(c);
    st = mail_prepare(c, "UPDATE outbox SET attempts = attempts + 1, "
                         "next_attempt_at = ?2, locked_until = 0, "
                         "last_error = ?3 WHERE id = ?1 AND sent_at IS NULL");
    b_text(c, st, 1, id);
    b_int(c, st, 2, next_at);
    b_text(c, st, 3, error);
    mail_run(c, st);
    end(c);
    return release(impl, c);
}

static enum as_err sq_mail_prune(void *impl, int64_t tokens_before,
                                 int64_t sent_before, int64_t stale_before)
{
    struct conn *c;
    sqlite3_stmt *st;
    enum as_err err = acquire(impl, "mail_prune", &c);

    if (err != AS_OK)
        return err;
    begin(c);
    st = mail_prepare(c, "DELETE FROM one_time_tokens WHERE expires_at < ?1");
    b_int(c, st, 1, tokens_before);
    mail_run(c, st);
    st = mail_prepare(c, "DELETE FROM outbox WHERE sent_at < ?1");
    b_int(c, st, 1, sent_before);
    mail_run(c, st);
    st = mail_prepare(c, "DELETE FROM outbox WHERE resolved = 0 "
                         "AND sent_at IS NULL AND created_at < ?1");
    b_int(c, st, 1, stale_before);
    mail_run(c, st);
    st = mail_prepare(c, "DELETE FROM mail_counts WHERE window_start < ?1");
    b_int(c, st, 1, stale_before);
    mail_run(c, st);
    end(c);
    return release(impl, c);
}

static const struct repo_ops sqlite_ops = {
    .name = "sqlite",
    .migrate = sq_migrate,
    .ping = sq_ping,
    .close = sq_close,
    DB_USER_OPS,
    DB_LOGIN_OPS,
    DB_SESSION_OPS,
    .outbox_add = sq_outbox_add,
    .outbox_resolve = sq_outbox_resolve,
    .outbox_drop = sq_outbox_drop,
    .ott_reset_user = sq_ott_reset_user,
    .ott_reset = sq_ott_reset,
    .ott_verify = sq_ott_verify,
    .outbox_claim = sq_outbox_claim,
    .outbox_sent = sq_outbox_sent,
    .outbox_failed = sq_outbox_failed,
    .mail_prune = sq_mail_prune,
    DB_MFA_OPS,
    DB_PASSKEY_OPS,
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
