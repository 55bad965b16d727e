/* pg.c: the PostgreSQL backend of the repository, over a libpq pool.
 *
 * Connections are made lazily, up to the pool size, and handed to one
 * thread at a time. Every statement is sent asynchronously and waited for
 * under a deadline, so neither a slow query (statement_timeout) nor a hung
 * server (client deadline, TCP keepalives) can hold a request thread. A
 * connection found broken is dropped and a new one is made on next use.
 * Values only ever travel as parameters (PQsendQueryParams). */
#include "repo.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "flows.h"
#include "migrations.h"

#define POOL_DEFAULT 8u
#define POOL_MAX 1024u
#define TIMEOUT_DEFAULT_MS 5000u
#define CLIENT_GRACE_MS 2000       /* past statement_timeout: server hung */
#define MIGRATION_LOCK "7022344802737369718"     /* "authserv" as int8 */
#define MAX_PARAMS 10
#define MAX_KV 64                  /* connection keywords we pass */
#define SERVER_OPTIONS "-c statement_timeout=%u "                         \
    "-c idle_in_transaction_session_timeout=%u "                          \
    "-c client_min_messages=warning"

/* Type OIDs (server catalog/pg_type_d.h; fixed since forever). */
#define OID_BOOL ((Oid)16)
#define OID_BYTEA ((Oid)17)
#define OID_INT8 ((Oid)20)
#define OID_INT2 ((Oid)21)
#define OID_INT4 ((Oid)23)
#define OID_TEXT ((Oid)25)
#define OID_UNKNOWN ((Oid)705)
#define OID_VARCHAR ((Oid)1043)

struct slot {
    PGconn *conn;                  /* NULL: not connected (yet, or again) */
    bool busy;
    uint8_t prep[DB_STMT_MAX / 8]; /* area statements prepared on conn */
};

struct pg {
    struct db base;                /* first: the flows reach the driver */
    pthread_mutex_t mu;
    pthread_cond_t freed;
    bool sync_ready;
    struct slot *slots;
    unsigned nslots;
    unsigned timeout_ms;
    size_t nkv;
    char *keys[MAX_KV + 1];        /* NULL-terminated, for PQconnectdbParams */
    char *vals[MAX_KV + 1];        /* may hold a password: wiped on close */
};

/* One connection checked out of the pool by the calling thread. */
struct conn {
    struct pg *pg;
    struct slot *slot;
    PGconn *c;
    bool bad;                      /* drop it instead of returning it */
    const char *op;                /* for the log (the driver's calls) */
};

/* Parameters of one statement; values point into the struct or borrow the
 * caller's strings, so build it in place and do not copy it. */
struct params {
    int n;
    bool invalid;                  /* text that is not UTF-8, or overflow */
    const char *val[MAX_PARAMS];
    int len[MAX_PARAMS];
    int fmt[MAX_PARAMS];
    Oid type[MAX_PARAMS];
    char num[MAX_PARAMS][24];
};

/* ---------------------------------------------------------------- utils */

static int64_t mono_now(void)
{
    return (int64_t)clock_mono_ms();
}

/* Strict UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
static bool utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        unsigned need, i;
        uint32_t cp, min;

        if (*p < 0x80) {
            p++;
            continue;
        }
        if (*p >= 0xc2 && *p <= 0xdf) {
            need = 1, cp = *p & 0x1fu, min = 0x80;
        } else if ((*p & 0xf0) == 0xe0) {
            need = 2, cp = *p & 0x0fu, min = 0x800;
        } else if (*p >= 0xf0 && *p <= 0xf4) {
            need = 3, cp = *p & 0x07u, min = 0x10000;
        } else {
            return false;
        }
        for (i = 1; i <= need; i++) {
            if ((p[i] & 0xc0) != 0x80)          /* also stops at the NUL */
                return false;
            cp = (cp << 6) | (p[i] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += need + 1;
    }
    return true;
}

/* Copies `msg` into `out` on one line, without trailing white space. */
static void one_line(const char *msg, char *out, size_t cap)
{
    size_t i, n = 0;

    for (i = 0; msg && msg[i] && n + 1 < cap; i++)
        out[n++] = (msg[i] == '\n' || msg[i] == '\r' || msg[i] == '\t')
                       ? ' ' : msg[i];
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static void p_add(struct params *q, Oid type, const char *v, int len, int fmt)
{
    if (q->n >= MAX_PARAMS) {
        q->invalid = true;
        return;
    }
    q->val[q->n] = v;
    q->len[q->n] = len;
    q->fmt[q->n] = fmt;
    q->type[q->n] = type;
    q->n++;
}

/* A text parameter; NULL is SQL NULL. */
static void p_text(struct params *q, const char *s)
{
    if (s && !utf8_ok(s))
        q->invalid = true;
    p_add(q, OID_TEXT, s, 0, 0);
}

static void p_i64(struct params *q, int64_t v)
{
    if (q->n < MAX_PARAMS)
        snprintf(q->num[q->n], sizeof q->num[0], "%" PRId64, v);
    p_add(q, OID_INT8, q->n < MAX_PARAMS ? q->num[q->n] : NULL, 0, 0);
}

/* A binary bytea parameter of REPO_HASH_LEN bytes. */
static void p_hash(struct params *q, const uint8_t h[REPO_HASH_LEN])
{
    p_add(q, OID_BYTEA, (const char *)h, REPO_HASH_LEN, 1);
}

/* ------------------------------------------------------------- logging */

static void on_notice(void *arg, const char *msg)
{
    char line[512];

    (void)arg;
    if (!log_enabled(LOG_DEBUG))
        return;
    one_line(msg, line, sizeof line);
    log_event(LOG_DEBUG, "db.notice", NULL,
              json_pack("{s:s, s:s}", "backend", "postgres", "message",
                        line));
}

/* Logs a failed statement: the operation, SQLSTATE, constraint and the
 * server's primary message, which never carries a parameter value except
 * for data exceptions (class 22), whose message is left out. */
static void log_failure(const char *op, const PGresult *r, PGconn *c,
                        enum as_err err)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *cons = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME)
                         : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                        : NULL;
    enum log_level lvl = err == AS_ERR_EMAIL_TAKEN ? LOG_DEBUG
                       : err == AS_ERR_NOT_FOUND ? LOG_INFO
                       : err == AS_ERR_UNAVAILABLE ||
                         err == AS_ERR_LOCK_CONFLICT ? LOG_WARN : LOG_ERROR;
    char line[512];

    if (!log_enabled(lvl))
        return;
    if (!msg)
        msg = PQerrorMessage(c);            /* client side: no values */
    if (st && strncmp(st, "22", 2) == 0)
        msg = "data exception (message withheld)";
    one_line(msg, line, sizeof line);
    log_event(lvl, "db.error", NULL,
              json_pack("{s:s, s:s, s:s?, s:s?, s:s}", "backend", "postgres",
                        "op", op, "sqlstate", st, "constraint", cons,
                        "message", line));
}

static void log_simple(enum log_level lvl, const char *event, const char *op,
                       const char *msg)
{
    char line[512];

    one_line(msg, line, sizeof line);
    log_event(lvl, event, NULL,
              json_pack("{s:s, s:s, s:s}", "backend", "postgres", "op", op,
                        "message", line));
}

/* ------------------------------------------------------------- the pool */

static void deadline_after(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* A free slot, preferring one that holds a connection. Under p->mu. */
static struct slot *free_slot(struct pg *p)
{
    struct slot *empty = NULL;
    unsigned i;

    for (i = 0; i < p->nslots; i++) {
        if (p->slots[i].busy)
            continue;
        if (p->slots[i].conn)
            return &p->slots[i];
        if (!empty)
            empty = &p->slots[i];
    }
    return empty;
}

/* Whether an idle pooled connection still works, without a round trip:
 * a server that closed it (restart, pg_terminate_backend, idle timeout)
 * has left an error message and an end of file to read. */
static bool idle_alive(PGconn *c)
{
    struct pollfd pfd;
    int rc, round;

    if (PQstatus(c) != CONNECTION_OK ||
        PQtransactionStatus(c) != PQTRANS_IDLE)
        return false;
    pfd.fd = PQsocket(c);
    pfd.events = POLLIN;
    if (pfd.fd < 0)
        return false;
    /* The message and the end of file may take more than one read. */
    for (round = 0; round < 4; round++) {
        pfd.revents = 0;
        do
            rc = poll(&pfd, 1, 0);
        while (rc < 0 && errno == EINTR);
        if (rc < 0 || (pfd.revents & (POLLERR | POLLNVAL)))
            return false;
        if (rc == 0)
            break;
        if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK)
            return false;
    }
    return round < 4 && PQstatus(c) == CONNECTION_OK;
}

static enum as_err connect_one(struct pg *p, PGconn **out)
{
    PGconn *c = PQconnectdbParams((const char *const *)p->keys,
                                  (const char *const *)p->vals, 0);

    *out = NULL;
    if (!c)
        return AS_ERR_NOMEM;
    if (PQstatus(c) != CONNECTION_OK) {
        /* libpq's message names host and port, never the password. */
        log_simple(LOG_WARN, "db.connect_failed", "connect",
                   PQerrorMessage(c));
        PQfinish(c);
        return AS_ERR_UNAVAILABLE;
    }
    PQsetNoticeProcessor(c, on_notice, NULL);
    *out = c;
    return AS_OK;
}

static void pool_put(struct conn *c)
{
    if (c->c && (c->bad || PQstatus(c->c) != CONNECTION_OK ||
                 PQtransactionStatus(c->c) != PQTRANS_IDLE)) {
        PQfinish(c->c);
        c->c = NULL;
    }
    pthread_mutex_lock(&c->pg->mu);
    c->slot->conn = c->c;
    c->slot->busy = false;
    pthread_cond_signal(&c->pg->freed);
    pthread_mutex_unlock(&c->pg->mu);
    c->slot = NULL;
    c->c = NULL;
}

/* Checks out a working connection, waiting at most timeout_ms for a free
 * slot. AS_ERR_UNAVAILABLE when none frees up or the server is down. */
static enum as_err pool_get(struct pg *p, struct conn *out)
{
    struct timespec until;
    struct slot *s = NULL;
    enum as_err err = AS_OK;
    int rc = 0;

    memset(out, 0, sizeof *out);
    out->pg = p;
    deadline_after(&until, p->timeout_ms);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        s = free_slot(p);
        if (s || rc == ETIMEDOUT)
            break;
        rc = pthread_cond_timedwait(&p->freed, &p->mu, &until);
    }
    if (s)
        s->busy = true;
    pthread_mutex_unlock(&p->mu);
    if (!s) {
        log_simple(LOG_WARN, "db.pool_timeout", "acquire",
                   "no free connection in time");
        return AS_ERR_UNAVAILABLE;
    }
    out->slot = s;
    out->c = s->conn;
    if (out->c && !idle_alive(out->c)) {
        log_simple(LOG_INFO, "db.reconnect", "acquire",
                   "pooled connection was closed");
        PQfinish(out->c);
        out->c = NULL;
    }
    if (!out->c) {
        err = connect_one(p, &out->c);
        memset(s->prep, 0, sizeof s->prep);  /* a new server session */
    }
    if (err != AS_OK)
        pool_put(out);
    return err;
}

/* -------------------------------------------------------- statements */

/* Waits until a result can be read without blocking. False when the
 * connection failed or `deadline` (monotonic ms; < 0: none) passed. */
static bool wait_ready(PGconn *c, int64_t deadline, bool *timed_out)
{
    while (PQisBusy(c)) {
        struct pollfd pfd = { .fd = PQsocket(c), .events = POLLIN };
        int ms = -1, rc;

        if (pfd.fd < 0)
            return false;
        if (deadline >= 0) {
            int64_t left = deadline - mono_now();

            if (left <= 0) {
                *timed_out = true;
                return false;
            }
            ms = left > INT_MAX ? INT_MAX : (int)left;
        }
        rc = poll(&pfd, 1, ms);
        if (rc < 0 && errno != EINTR)
            return false;
        if (rc > 0 && !PQconsumeInput(c))
            return false;
    }
    return true;
}

static bool state_is(const char *st, const char *want)
{
    return st && strcmp(st, want) == 0;
}

/* Maps a failed result once; marks the connection bad when it is lost. */
static enum as_err classify(struct conn *c, const PGresult *r)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *cons = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
    bool lost = PQstatus(c->c) != CONNECTION_OK;

    if (!st) {                      /* failed on the client side */
        c->bad = true;
        return lost ? AS_ERR_UNAVAILABLE : AS_ERR_INTERNAL;
    }
    if (lost || strncmp(st, "08", 2) == 0 || state_is(st, "57P01") ||
        state_is(st, "57P02") || state_is(st, "57P03")) {
        c->bad = true;              /* lost, or the server is going away */
        return AS_ERR_UNAVAILABLE;
    }
    if (state_is(st, "23505") && cons && strcmp(cons, "users_email_key") == 0)
        return AS_ERR_EMAIL_TAKEN;
    /* Deadlock, serialization failure: the transaction is rolled back and
     * the dispatcher (repo.c) runs the call again. */
    if (state_is(st, "40P01") || state_is(st, "40001"))
        return AS_ERR_LOCK_CONFLICT;
    if (state_is(st, "23503"))      /* the user or session was just deleted */
        return AS_ERR_NOT_FOUND;
    if (strncmp(st, "53", 2) == 0 || state_is(st, "57014"))
        return AS_ERR_UNAVAILABLE;   /* resources, statement_timeout */
    return AS_ERR_INTERNAL;
}

/* Collects the result of what was just sent on `c` (see conn_exec). */
static enum as_err conn_collect(struct conn *c, const char *op,
                                bool unbounded, PGresult **out)
{
    int64_t deadline = unbounded ? -1 : mono_now() + c->pg->timeout_ms +
                                            CLIENT_GRACE_MS;
    PGresult *r, *keep = NULL;
    bool timed_out = false;
    enum as_err err;

    for (;;) {
        if (!wait_ready(c->c, deadline, &timed_out)) {
            c->bad = true;
            PQclear(keep);
            log_simple(LOG_WARN, timed_out ? "db.timeout"
                                           : "db.connection_lost", op,
                       timed_out ? "no answer from the server in time"
                                 : PQerrorMessage(c->c));
            return AS_ERR_UNAVAILABLE;
        }
        r = PQgetResult(c->c);
        if (!r)
            break;
        if (keep && PQresultStatus(keep) == PGRES_FATAL_ERROR) {
            PQclear(r);             /* the first error is the one */
        } else {
            PQclear(keep);
            keep = r;
        }
    }
    if (!keep) {
        c->bad = true;
        return AS_ERR_INTERNAL;
    }
    switch (PQresultStatus(keep)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
        *out = keep;
        return AS_OK;
    case PGRES_FATAL_ERROR:
        err = classify(c, keep);
        break;
    default:                        /* COPY and the like: never ours */
        c->bad = true;
        err = AS_ERR_INTERNAL;
        break;
    }
    log_failure(op, keep, c->c, err);
    PQclear(keep);
    return err;
}

/* Whether `sent` (a PQsend* result) went out; marks `c` bad if not. */
static bool conn_sent(struct conn *c, const char *op, int sent)
{
    if (!sent) {
        c->bad = true;
        log_simple(LOG_WARN, "db.connection_lost", op, PQerrorMessage(c->c));
    }
    return sent != 0;
}

/* Runs one statement (`q` NULL: a parameterless, possibly multi-statement
 * text through the simple protocol). On AS_OK *out is the result, which
 * the caller clears. `unbounded` lifts the client deadline (migrations). */
static enum as_err conn_exec(struct conn *c, const char *op, const char *sql,
                             const struct params *q, bool unbounded,
                             PGresult **out)
{
    *out = NULL;
    if (q && q->invalid)
        return AS_ERR_VALIDATION;
    if (c->bad)
        return AS_ERR_UNAVAILABLE;
    if (!conn_sent(c, op, q ? PQsendQueryParams(c->c, sql, q->n, q->type,
                                                q->val, q->len, q->fmt, 0)
                            : PQsendQuery(c->c, sql)))
        return AS_ERR_UNAVAILABLE;
    return conn_collect(c, op, unbounded, out);
}

/* Runs a statement and keeps only the number of rows it touched or
 * returned (`rows` may be NULL). */
static enum as_err conn_run(struct conn *c, const char *op, const char *sql,
                            const struct params *q, long *rows)
{
    PGresult *r;
    enum as_err err = conn_exec(c, op, sql, q, false, &r);

    if (err == AS_OK && rows) {
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            *rows = PQntuples(r);
        else
            *rows = strtol(PQcmdTuples(r), NULL, 10);
    }
    PQclear(r);
    return err;
}

static enum as_err tx_begin(struct conn *c, const char *op)
{
    return conn_run(c, op, "BEGIN", NULL, NULL);
}

/* Commits when `err` is AS_OK, else rolls back; returns the outcome. */
static enum as_err tx_finish(struct conn *c, const char *op, enum as_err err)
{
    if (err == AS_OK)
        return conn_run(c, op, "COMMIT", NULL, NULL);
    if (!c->bad && conn_run(c, op, "ROLLBACK", NULL, NULL) != AS_OK)
        c->bad = true;
    return err;
}

/* One statement on a pooled connection, outside any transaction. */
static enum as_err one_shot(struct pg *p, const char *op, const char *sql,
                            const struct params *q, PGresult **out)
{
    struct conn c;
    enum as_err err;

    *out = NULL;
    if (q && q->invalid)
        return AS_ERR_VALIDATION;
    err = pool_get(p, &c);
    if (err != AS_OK)
        return err;
    err = conn_exec(&c, op, sql, q, false, out);
    pool_put(&c);
    return err;
}

static enum as_err one_shot_rows(struct pg *p, const char *op,
                                 const char *sql, const struct params *q,
                                 long *rows)
{
    PGresult *r;
    enum as_err err = one_shot(p, op, sql, q, &r);

    if (err == AS_OK)
        *rows = PQresultStatus(r) == PGRES_TUPLES_OK
                    ? PQntuples(r) : strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return err;
}

/* -------------------------------------------------------------- rows */

static int64_t col_i64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static bool col_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

/* Arena copy of a column; NULL for SQL NULL. False when out of memory. */
static bool col_dup(const PGresult *r, int row, int col, struct arena *a,
                    const char **out)
{
    *out = NULL;
    if (PQgetisnull(r, row, col))
        return true;
    *out = arena_strdup(a, PQgetvalue(r, row, col));
    return *out != NULL;
}

static bool col_id(const PGresult *r, int row, int col,
                   char out[UUID_STR_LEN])
{
    const char *v = PQgetvalue(r, row, col);
    size_t n = strnlen(v, UUID_STR_LEN);

    if (PQgetisnull(r, row, col) || n >= UUID_STR_LEN)
        return false;
    memcpy(out, v, n + 1);
    return true;
}

#define SESSION_COLS "s.id, s.user_id, s.created_at, s.last_used_at, " \
                     "s.expires_at, s.revoked_at, s.ip, s.user_agent, s.amr"
#define SESSION_NCOLS 9

static enum as_err row_session(const PGresult *r, int i, struct session *s,
                               struct arena *a)
{
    memset(s, 0, sizeof *s);
    if (!col_id(r, i, 0, s->id) || !col_id(r, i, 1, s->user_id))
        return AS_ERR_INTERNAL;
    s->created_at = col_i64(r, i, 2);
    s->last_used_at = col_i64(r, i, 3);
    s->expires_at = col_i64(r, i, 4);
    s->revoked_at = col_i64(r, i, 5);
    if (!col_dup(r, i, 6, a, &s->ip) || !col_dup(r, i, 7, a, &s->user_agent)
        || !col_dup(r, i, 8, a, &s->amr))
        return AS_ERR_NOMEM;
    return AS_OK;
}

/* --------------------------------------------------------- migrations */

static bool applied(const PGresult *r, unsigned version)
{
    int i;

    for (i = 0; i < PQntuples(r); i++)
        if (strtoul(PQgetvalue(r, i, 0), NULL, 10) == version)
            return true;
    return false;
}

static enum as_err apply_one(struct conn *c, const struct migration *m)
{
    static const char op[] = "migrate";
    struct params q = { 0 };
    PGresult *r = NULL;
    enum as_err err;

    p_i64(&q, m->version);
    p_text(&q, m->name);
    p_i64(&q, clock_ms());
    err = tx_begin(c, op);
    if (err == AS_OK)           /* our own file: trusted, multi-statement */
        err = conn_exec(c, op, m->sql, NULL, true, &r);
    PQclear(r);
    if (err == AS_OK)
        err = conn_run(c, op,
                       "INSERT INTO schema_migrations (version, name, "
                       "applied_at) VALUES ($1, $2, $3)", &q, NULL);
    err = tx_finish(c, op, err);
    if (err == AS_OK)
        log_event(LOG_INFO, "db.migrated", NULL,
                  json_pack("{s:s, s:i, s:s}", "backend", "postgres",
                            "version", (int)m->version, "name", m->name));
    return err;
}

static enum as_err pg_migrate(void *impl)
{
    static const char op[] = "migrate";
    const struct migration *m;
    struct conn c;
    PGresult *done = NULL;
    bool locked = false;
    size_t n, i;
    enum as_err err;

    m = migrations_for("postgres", &n);
    err = pool_get(impl, &c);
    if (err != AS_OK)
        return err;
    /* Waiting for another instance's migration may take long. */
    err = conn_run(&c, op, "SET statement_timeout = 0", NULL, NULL);
    if (err == AS_OK) {
        err = conn_exec(&c, op, "SELECT pg_advisory_lock(" MIGRATION_LOCK
                        ")", NULL, true, &done);
        PQclear(done);
        done = NULL;
        locked = err == AS_OK;
    }
    if (err == AS_OK)
        err = conn_run(&c, op,
                       "CREATE TABLE IF NOT EXISTS schema_migrations ("
                       "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                       "applied_at BIGINT NOT NULL)", NULL, NULL);
    if (err == AS_OK)
        err = conn_exec(&c, op, "SELECT version FROM schema_migrations",
                        NULL, false, &done);
    for (i = 0; err == AS_OK && i < n; i++)
        if (!applied(done, m[i].version))
            err = apply_one(&c, &m[i]);
    PQclear(done);
    /* A failure here drops the connection, which releases both. */
    if (locked && !c.bad &&
        conn_run(&c, op, "SELECT pg_advisory_unlock(" MIGRATION_LOCK ")",
                 NULL, NULL) != AS_OK)
        c.bad = true;
    if (!c.bad && conn_run(&c, op, "RESET statement_timeout", NULL, NULL)
                      != AS_OK)
        c.bad = true;
    pool_put(&c);
    return err;
}

static enum as_err pg_ping(void *impl)
{
    PGresult *r;
    enum as_err err = one_shot(impl, "ping", "SELECT 1", NULL, &r);

    PQclear(r);
    return err;
}

/* ---------------------------------------------- the driver (driver.h) */

static struct conn *conn_of(struct db_conn *d)
{
    return (struct conn *)(void *)d;
}

static enum as_err drv_acquire(void *impl, const char *op,
                               struct db_conn **out)
{
    struct conn *c = calloc(1, sizeof *c);
    enum as_err err;

    *out = NULL;
    if (!c)
        return AS_ERR_NOMEM;
    err = pool_get(impl, c);
    if (err != AS_OK) {
        free(c);
        return err;
    }
    c->op = op;
    *out = (struct db_conn *)(void *)c;
    return AS_OK;
}

static enum as_err drv_begin(struct db_conn *d)
{
    return tx_begin(conn_of(d), conn_of(d)->op);
}

static enum as_err drv_commit(struct db_conn *d)
{
    return tx_finish(conn_of(d), conn_of(d)->op, AS_OK);
}

static void drv_rollback(struct db_conn *d)
{
    tx_finish(conn_of(d), conn_of(d)->op, AS_ERR_INTERNAL);
}

static void drv_release(void *impl, struct db_conn *d)
{
    struct conn *c = conn_of(d);

    (void)impl;
    pool_put(c);
    free(c);
}

/* A big-endian integer of `len` bytes (binary results). */
static int64_t be_int(const char *p, int len)
{
    uint64_t u = (len > 0 && (signed char)p[0] < 0) ? UINT64_MAX : 0;
    int k;

    for (k = 0; k < len; k++)
        u = (u << 8) | (uint8_t)p[k];
    return (int64_t)u;
}

/* Value (`i`, `j`) of binary result `r`, typed by its column's type. */
static enum as_err read_val(const PGresult *r, int i, int j,
                            struct db_val *v, struct arena *a)
{
    const char *p = PQgetvalue(r, i, j);
    int len = PQgetlength(r, i, j);
    Oid t = PQftype(r, j);
    uint8_t *b;

    memset(v, 0, sizeof *v);
    v->null = PQgetisnull(r, i, j);
    v->len = v->null ? 0 : (size_t)len;
    switch (t) {
    case OID_BOOL:
        v->type = DB_BOOL;
        v->i = !v->null && len == 1 && p[0] != 0;
        return AS_OK;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        v->type = DB_INT;
        v->i = v->null ? 0 : be_int(p, len);
        v->len = 0;
        return AS_OK;
    case OID_TEXT:
    case OID_VARCHAR:
    case OID_UNKNOWN:
        v->type = DB_TEXT;
        if (!v->null && !(v->s = arena_strndup(a, p, (size_t)len)))
            return AS_ERR_NOMEM;
        return AS_OK;
    case OID_BYTEA:
        v->type = DB_BLOB;
        if (v->null)
            return AS_OK;
        b = arena_alloc(a, (size_t)len + 1);
        if (!b)
            return AS_ERR_NOMEM;
        memcpy(b, p, (size_t)len);
        v->b = b;
        return AS_OK;
    default:
        log_simple(LOG_ERROR, "db.error", "read", "unexpected column type");
        return AS_ERR_INTERNAL;
    }
}

/* Every row of `r` into `out`, in `a`. */
static enum as_err read_rows(const PGresult *r, struct db_rows *out,
                             struct arena *a)
{
    int rows = PQntuples(r), cols = PQnfields(r), i, j;
    struct db_val *v = NULL;
    enum as_err err = AS_OK;

    out->changed = strtoll(PQcmdTuples((PGresult *)r), NULL, 10);
    if (rows > 0 && cols > 0) {
        v = arena_alloc(a, (size_t)rows * (size_t)cols * sizeof *v);
        if (!v)
            return AS_ERR_NOMEM;
    }
    for (i = 0; err == AS_OK && i < rows; i++)
        for (j = 0; err == AS_OK && j < cols; j++)
            err = read_val(r, i, j, &v[(size_t)i * (size_t)cols + j], a);
    if (err != AS_OK)
        return err;
    out->n = (size_t)rows;
    out->cols = (size_t)cols;
    out->v = v;
    return AS_OK;
}

/* Runs area statement `ds` as a named prepared statement ("s" and its
 * slot), prepared on first use on this connection with the types of the
 * arguments; results come back binary and typed. */
static enum as_err drv_run(struct db_conn *d, struct db_stmt *ds,
                           const struct db_val *args, size_t n,
                           struct db_rows *out, struct arena *a)
{
    struct conn *c = conn_of(d);
    unsigned slot = db_stmt_slot(ds);
    uint8_t bit = (uint8_t)(1u << (slot % 8));
    const char *val[DB_ARGS_MAX];
    int len[DB_ARGS_MAX], fmt[DB_ARGS_MAX];
    Oid type[DB_ARGS_MAX];
    char num[DB_ARGS_MAX][24], name[16];
    PGresult *r = NULL;
    enum as_err err;
    size_t i;

    memset(out, 0, sizeof *out);
    if (!ds->pg)
        return AS_OK;
    if (slot >= DB_STMT_MAX || n > DB_ARGS_MAX)
        return AS_ERR_INTERNAL;
    for (i = 0; i < n; i++) {
        const struct db_val *v = &args[i];

        len[i] = fmt[i] = 0;
        val[i] = NULL;
        type[i] = v->type == DB_TEXT ? OID_TEXT : v->type == DB_INT
                  ? OID_INT8 : v->type == DB_BOOL ? OID_BOOL : OID_BYTEA;
        if (v->null)
            continue;
        if (v->type == DB_TEXT && !utf8_ok(v->s))
            return AS_ERR_VALIDATION;    /* never stored, never matched */
        if (v->type == DB_TEXT) {
            val[i] = v->s;
        } else if (v->type == DB_INT) {
            snprintf(num[i], sizeof num[i], "%" PRId64, v->i);
            val[i] = num[i];
        } else if (v->type == DB_BOOL) {
            val[i] = v->i ? "t" : "f";
        } else {
            val[i] = (const char *)v->b;
            len[i] = (int)v->len;
            fmt[i] = 1;
        }
    }
    if (c->bad)
        return AS_ERR_UNAVAILABLE;
    snprintf(name, sizeof name, "s%u", slot);
    if (!(c->slot->prep[slot / 8] & bit)) {
        if (!conn_sent(c, c->op, PQsendPrepare(c->c, name, ds->pg, (int)n,
                                               type)))
            return AS_ERR_UNAVAILABLE;
        err = conn_collect(c, c->op, false, &r);
        PQclear(r);
        r = NULL;
        if (err != AS_OK)
            return err;
        c->slot->prep[slot / 8] |= bit;
    }
    if (!conn_sent(c, c->op, PQsendQueryPrepared(c->c, name, (int)n, val,
                                                 len, fmt, 1)))
        return AS_ERR_UNAVAILABLE;
    err = conn_collect(c, c->op, false, &r);
    if (err == AS_OK)
        err = read_rows(r, out, a);
    PQclear(r);
    if (err != AS_OK)
        memset(out, 0, sizeof *out);
    return err;
}

static const struct db_driver pg_driver = {
    .acquire = drv_acquire, .begin = drv_begin, .commit = drv_commit,
    .rollback = drv_rollback, .run = drv_run, .release = drv_release,
};

/* ------------------------------------------------------ login failures */

/* Writes one count of (email, ip) back: count 0 deletes its row. */
static enum as_err login_put(struct conn *c, const char *op,
                             const char *email, const char *ip,
                             const struct login_count *n)
{
    struct params q = { 0 };

    p_text(&q, email);
    p_text(&q, ip);
    if (n->count <= 0)
        return conn_run(c, op, "DELETE FROM login_failures "
                               "WHERE email = $1 AND ip = $2", &q, NULL);
    p_i64(&q, n->count);
    p_i64(&q, n->last_at);
    p_i64(&q, n->locked_until);
    return conn_run(c, op,
                    "INSERT INTO login_failures (email, ip, count, last_at, "
                    "locked_until) VALUES ($1, $2, $3, $4, $5) "
                    "ON CONFLICT (email, ip) DO UPDATE SET "
                    "count = EXCLUDED.count, last_at = EXCLUDED.last_at, "
                    "locked_until = EXCLUDED.locked_until", &q, NULL);
}

/* Reads the two counts inside the transaction. */
static enum as_err login_read(struct conn *c, const char *op,
                              const char *email, const char *ip,
                              struct login_count *mine,
                              struct login_count *all)
{
    struct params q = { 0 };
    PGresult *r;
    enum as_err err;
    int i;

    p_text(&q, email);
    p_text(&q, ip);
    err = conn_exec(c, op,
                    "SELECT ip = '*', count, last_at, locked_until "
                    "FROM login_failures "
                    "WHERE email = $1 AND ip IN ($2, '*')", &q, false, &r);
    for (i = 0; err == AS_OK && i < PQntuples(r); i++) {
        struct login_count *n = col_bool(r, i, 0) ? all : mine;

        n->count = col_i64(r, i, 1);
        n->last_at = col_i64(r, i, 2);
        n->locked_until = col_i64(r, i, 3);
    }
    PQclear(r);
    return err;
}

/* A transaction-scoped advisory lock on the email (key space 0x4c4f,
 * "LO", apart from the single-key locks of the migrations) serialises
 * every update of its counts, on every instance; one lock per
 * transaction, so it cannot deadlock. */
static enum as_err pg_login_failures_update(void *impl, const char *email,
                                            const char *ip,
                                            repo_login_update_fn fn,
                                            void *ctx)
{
    static const char op[] = "login_failures_update";
    struct login_count mine = { 0 }, all = { 0 };
    struct params lk = { 0 }, key = { 0 };
    struct conn c;
    enum as_err err;

    p_text(&lk, email);
    p_text(&key, ip);
    if (lk.invalid || key.invalid)
        return AS_ERR_VALIDATION;
    err = pool_get(impl, &c);
    if (err != AS_OK)
        return err;
    err = tx_begin(&c, op);
    if (err == AS_OK)
        err = conn_run(&c, op,
                       "SELECT pg_advisory_xact_lock(19535, hashtext($1))",
                       &lk, NULL);
    if (err == AS_OK)
        err = login_read(&c, op, email, ip, &mine, &all);
    if (err == AS_OK) {
        fn(ctx, &mine, &all);
        err = login_put(&c, op, email, ip, &mine);
    }
    if (err == AS_OK)
        err = login_put(&c, op, email, "*", &all);
    err = tx_finish(&c, op, err);
    pool_put(&c);
    return err;
}

/* Skips rows others hold, so it never waits nor deadlocks. */
static enum as_err pg_login_failures_prune(void *impl, int64_t before)
{
    struct params q = { 0 };
    long rows = 0;

    p_i64(&q, before);
    return one_shot_rows(impl, "login_failures_prune",
                         "DELETE FROM login_failures "
                         "WHERE last_at < $1 AND (email, ip) IN "
                         "(SELECT email, ip FROM login_failures "
                         "WHERE last_at < $1 LIMIT 16 "
                         "FOR UPDATE SKIP LOCKED)", &q, &rows);
}

/* Under the email's advisory lock, like an update: the two rows of a
 * clear and of an update are then never locked in opposite orders (a
 * DELETE of both rows could take the '*' row first and deadlock). */
static enum as_err pg_login_failures_clear(void *impl, const char *email,
                                           const char *ip)
{
    static const char op[] = "login_failures_clear";
    struct params lk = { 0 }, q = { 0 };
    struct conn c;
    enum as_err err;

    p_text(&lk, email);
    p_text(&q, email);
    if (ip)
        p_text(&q, ip);
    if (q.invalid || lk.invalid)
        return AS_OK;               /* such text was never counted */
    err = pool_get(impl, &c);
    if (err != AS_OK)
        return err;
    err = tx_begin(&c, op);
    if (err == AS_OK)
        err = conn_run(&c, op,
                       "SELECT pg_advisory_xact_lock(19535, hashtext($1))",
                       &lk, NULL);
    if (err == AS_OK)
        err = conn_run(&c, op,
                       ip ? "DELETE FROM login_failures "
                            "WHERE email = $1 AND ip IN ($2, '*')"
                          : "DELETE FROM login_failures WHERE email = $1",
                       &q, NULL);
    err = tx_finish(&c, op, err);
    pool_put(&c);
    return err;
}

/* ------------------------------------------------------------ sessions */

static enum as_err pg_session_create(void *impl, const struct session *s,
                                     const uint8_t refresh_hash[REPO_HASH_LEN])
{
    static const char op[] = "session_create";
    struct params q = { 0 }, t = { 0 };
    struct conn c;
    enum as_err err;

    p_text(&q, s->id);
    p_text(&q, s->user_id);
    p_i64(&q, s->created_at);
    p_i64(&q, s->last_used_at);
    p_i64(&q, s->expires_at);
    p_text(&q, s->ip);
    p_text(&q, s->user_agent);
    p_text(&q, s->amr);
    p_hash(&t, refresh_hash);
    p_text(&t, s->id);
    p_i64(&t, s->created_at);
    if (q.invalid)
        return AS_ERR_VALIDATION;
    err = pool_get(impl, &c);
    if (err != AS_OK)
        return err;
    err = tx_begin(&c, op);
    if (err == AS_OK)
        err = conn_run(&c, op,
                       "INSERT INTO sessions (id, user_id, created_at, "
                       "last_used_at, expires_at, ip, user_agent, amr) "
                       "VALUES ($1, $2, $3, $4, $5, $6, $7, "
                       "coalesce($8, 'pwd'))", &q, NULL);
    if (err == AS_OK)
        err = conn_run(&c, op,
                       "INSERT INTO refresh_tokens (hash, session_id, "
                       "created_at) VALUES ($1, $2, $3)", &t, NULL);
    err = tx_finish(&c, op, err);
    pool_put(&c);
    return err;
}

static enum as_err pg_session_get(void *impl, const char *sid,
                                  struct session *out, struct arena *a)
{
    struct params q = { 0 };
    PGresult *r;
    enum as_err err;

    if (!sid || !utf8_ok(sid))
        return AS_ERR_NOT_FOUND;
    p_text(&q, sid);
    err = one_shot(impl, "session_get",
                   "SELECT " SESSION_COLS " FROM sessions s WHERE s.id = $1",
                   &q, &r);
    if (err == AS_OK)
        err = PQntuples(r) == 1 ? row_session(r, 0, out, a)
                                : AS_ERR_NOT_FOUND;
    PQclear(r);
    return err;
}

static enum as_err pg_session_state(void *impl, const char *sid, int64_t now,
                                    struct session_state *out)
{
    struct params q = { 0 };
    PGresult *r;
    enum as_err err;

    out->live = false;
    out->role = ROLE_USER;
    out->email[0] = '\0';
    if (!sid || !utf8_ok(sid))
        return AS_OK;
    p_text(&q, sid);
    p_i64(&q, now);
    err = one_shot(impl, "session_state",
                   "SELECT s.revoked_at IS NULL AND s.expires_at > $2 "
                   "AND u.is_active, u.role = 'admin', u.email "
                   "FROM sessions s JOIN users u ON u.id = s.user_id "
                   "WHERE s.id = $1", &q, &r);
    if (err == AS_OK && PQntuples(r) == 1) {
        out->live = col_bool(r, 0, 0);
        out->role = col_bool(r, 0, 1) ? ROLE_ADMIN : ROLE_USER;
        snprintf(out->email, sizeof out->email, "%s", PQgetvalue(r, 0, 2));
    }
    PQclear(r);
    return err;
}

static enum as_err pg_session_list(void *impl, const char *user_id,
                                   int64_t now, struct session **out,
                                   size_t *n, struct arena *a)
{
    struct params q = { 0 };
    PGresult *r;
    enum as_err err;
    int i, rows;

    *out = NULL;
    *n = 0;
    if (!user_id || !utf8_ok(user_id))
        return AS_OK;
    p_text(&q, user_id);
    p_i64(&q, now);
    err = one_shot(impl, "session_list",
                   "SELECT " SESSION_COLS " FROM sessions s "
                   "WHERE s.user_id = $1 AND s.revoked_at IS NULL "
                   "AND s.expires_at > $2 "
                   "ORDER BY s.created_at DESC, s.id DESC "
                   "LIMIT " REPO_SESSION_LIST_MAX_STR, &q, &r);
    rows = err == AS_OK ? PQntuples(r) : 0;
    if (rows > 0) {
        *out = arena_alloc(a, (size_t)rows * sizeof **out);
        if (!*out)
            err = AS_ERR_NOMEM;
    }
    for (i = 0; err == AS_OK && i < rows; i++)
        err = row_session(r, i, &(*out)[i], a);
    if (err == AS_OK)
        *n = (size_t)rows;
    else
        *out = NULL;
    PQclear(r);
    return err;
}

static enum as_err pg_session_revoke(void *impl, const char *sid,
                                     const char *user_id, int64_t now)
{
    struct params q = { 0 };
    long rows = 0;
    enum as_err err;

    if (!sid || !utf8_ok(sid) || (user_id && !utf8_ok(user_id)))
        return AS_ERR_NOT_FOUND;
    p_text(&q, sid);
    p_text(&q, user_id);
    p_i64(&q, now);
    err = one_shot_rows(impl, "session_revoke",
                        "UPDATE sessions SET revoked_at = $3 "
                        "WHERE id = $1 AND revoked_at IS NULL "
                        "AND expires_at > $3 "
                        "AND ($2::text IS NULL OR user_id = $2)", &q, &rows);
    if (err == AS_OK && rows == 0)
        err = AS_ERR_NOT_FOUND;
    return err;
}

static enum as_err pg_session_revoke_all(void *impl, const char *user_id,
                                         const char *keep_sid, int64_t now)
{
    struct params q = { 0 };
    long rows = 0;

    if (!user_id || !utf8_ok(user_id))
        return AS_OK;
    p_text(&q, user_id);
    p_text(&q, keep_sid);
    p_i64(&q, now);
    /* The user's row first (lock order), as a password change does. */
    return one_shot_rows(impl, "session_revoke_all",
                         "UPDATE sessions SET revoked_at = $3 "
                         "WHERE user_id = (SELECT id FROM users "
                         "WHERE id = $1 FOR NO KEY UPDATE) "
                         "AND revoked_at IS NULL "
                         "AND ($2::text IS NULL OR id <> $2)", &q, &rows);
}

/* ------------------------------------------------------ refresh tokens */

/* The winner of a rotation: stores the child and moves the session. */
static enum as_err rotate_ok(struct conn *c, const char *sid,
                             const uint8_t child[REPO_HASH_LEN], int64_t now,
                             int64_t new_expires, int64_t max_life_ms,
                             struct session *out, struct arena *a)
{
    static const char op[] = "refresh_rotate";
    struct params t = { 0 }, s = { 0 };
    PGresult *r = NULL;
    enum as_err err;

    p_hash(&t, child);
    p_text(&t, sid);
    p_i64(&t, now);
    p_text(&s, sid);
    p_i64(&s, now);
    p_i64(&s, new_expires);
    p_i64(&s, max_life_ms);
    err = conn_run(c, op,
                   "INSERT INTO refresh_tokens (hash, session_id, created_at)"
                   " VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING", &t,
                   NULL);
    if (err == AS_OK)
        err = conn_exec(c, op,
                        "UPDATE sessions s SET last_used_at = $2, "
                        "expires_at = least($3, s.created_at + $4) "
                        "WHERE s.id = $1 "
                        "RETURNING " SESSION_COLS, &s, false, &r);
    if (err == AS_OK)
        err = PQntuples(r) == 1 ? row_session(r, 0, out, a)
                                : AS_ERR_INTERNAL;
    PQclear(r);
    return err;
}

/* The losers: why the parent could not be consumed now. */
static enum as_err rotate_miss(struct conn *c,
                               const uint8_t parent[REPO_HASH_LEN],
                               int64_t now, int64_t grace_ms,
                               enum rotate_result *res, struct session *out,
                               struct arena *a)
{
    static const char op[] = "refresh_rotate";
    struct params q = { 0 }, v = { 0 };
    PGresult *r = NULL;
    enum as_err err;
    int64_t used_at;

    p_hash(&q, parent);
    p_i64(&q, now);
    err = conn_exec(c, op,
                    "SELECT " SESSION_COLS ", t.used_at, "
                    "s.revoked_at IS NULL AND s.expires_at > $2 "
                    "AND u.is_active "
                    "FROM refresh_tokens t "
                    "JOIN sessions s ON s.id = t.session_id "
                    "JOIN users u ON u.id = s.user_id WHERE t.hash = $1",
                    &q, false, &r);
    if (err != AS_OK)
        goto out;
    *res = ROTATE_INVALID;
    if (PQntuples(r) != 1 || !col_bool(r, 0, SESSION_NCOLS + 1) ||
        PQgetisnull(r, 0, SESSION_NCOLS))
        goto out;
    used_at = col_i64(r, 0, SESSION_NCOLS);
    if (used_at >= now - grace_ms) {
        err = row_session(r, 0, out, a);
        *res = ROTATE_GRACE;
        goto out;
    }
    p_text(&v, PQgetvalue(r, 0, 0));
    p_i64(&v, now);
    err = conn_run(c, op,
                   "UPDATE sessions SET revoked_at = $2 "
                   "WHERE id = $1 AND revoked_at IS NULL", &v, NULL);
    if (err == AS_OK)
        err = row_session(r, 0, out, a);        /* for the audit event */
    *res = ROTATE_REUSED;
out:
    PQclear(r);
    return err;
}

static enum as_err pg_refresh_rotate(void *impl,
                                     const uint8_t parent[REPO_HASH_LEN],
                                     const uint8_t child[REPO_HASH_LEN],
                                     int64_t now, int64_t grace_ms,
                                     int64_t new_expires,
                                     int64_t max_life_ms,
                                     enum rotate_result *res,
                                     struct session *out, struct arena *a)
{
    static const char op[] = "refresh_rotate";
    struct params q = { 0 }, l = { 0 };
    char sid[UUID_STR_LEN];
    PGresult *r = NULL;
    struct conn c;
    enum as_err err;

    *res = ROTATE_INVALID;
    p_hash(&q, parent);
    p_i64(&q, now);
    p_hash(&l, parent);
    err = pool_get(impl, &c);
    if (err != AS_OK)
        return err;
    err = tx_begin(&c, op);
    /* The session's row before its tokens (lock order): a concurrent
     * rotation or delete of the same session waits here. */
    if (err == AS_OK)
        err = conn_run(&c, op,
                       "SELECT id FROM sessions WHERE id = (SELECT "
                       "session_id FROM refresh_tokens WHERE hash = $1) "
                       "FOR NO KEY UPDATE", &l, NULL);
    /* Consumes the parent only while unused and its session is live;
     * concurrent callers queue on the row and then see it used. */
    if (err == AS_OK)
        err = conn_exec(&c, op,
                        "UPDATE refresh_tokens SET used_at = $2 "
                        "WHERE hash = $1 AND used_at IS NULL "
                        "AND session_id IN (SELECT s.id FROM sessions s "
                        "JOIN users u ON u.id = s.user_id "
                        "WHERE s.revoked_at IS NULL AND s.expires_at > $2 "
                        "AND u.is_active) RETURNING session_id", &q, false,
                        &r);
    if (err == AS_OK && PQntuples(r) == 1) {
        if (!col_id(r, 0, 0, sid))
            err = AS_ERR_INTERNAL;
        if (err == AS_OK)
            err = rotate_ok(&c, sid, child, now, new_expires, max_life_ms,
                            out, a);
        if (err == AS_OK)
            *res = ROTATE_OK;
    } else if (err == AS_OK) {
        err = rotate_miss(&c, parent, now, grace_ms, res, out, a);
    }
    PQclear(r);
    err = tx_finish(&c, op, err);
    if (err != AS_OK)
        *res = ROTATE_INVALID;
    pool_put(&c);
    return err;
}

static enum as_err pg_refresh_session(void *impl,
                                      const uint8_t hash[REPO_HASH_LEN],
                                      int64_t now, struct session *out,
                                      struct arena *a)
{
    struct params q = { 0 };
    PGresult *r;
    enum as_err err;

    p_hash(&q, hash);
    p_i64(&q, now);
    err = one_shot(impl, "refresh_session",
                   "SELECT " SESSION_COLS " FROM refresh_tokens t "
                   "JOIN sessions s ON s.id = t.session_id "
                   "JOIN users u ON u.id = s.user_id "
                   "WHERE t.hash = $1 AND t.used_at IS NULL "
                   "AND s.revoked_at IS NULL AND s.expires_at > $2 "
                   "AND u.is_active", &q, &r);
    if (err == AS_OK)
        err = PQntuples(r) == 1 ? row_session(r, 0, out, a)
                                : AS_ERR_NOT_FOUND;
    PQclear(r);
    return err;
}

/* ------------------------------------------------------- open / close */

static void pg_close(void *impl)
{
    struct pg *p = impl;
    size_t i;

    if (!p)
        return;
    for (i = 0; p->slots && i < p->nslots; i++)
        PQfinish(p->slots[i].conn);
    free(p->slots);
    for (i = 0; i < p->nkv; i++) {
        sodium_memzero(p->vals[i], strlen(p->vals[i]));
        free(p->keys[i]);
        free(p->vals[i]);
    }
    if (p->sync_ready) {
        pthread_cond_destroy(&p->freed);
        pthread_mutex_destroy(&p->mu);
    }
    free(p);
}

static bool kv_has(const struct pg *p, const char *key)
{
    size_t i;

    for (i = 0; i < p->nkv; i++)
        if (strcmp(p->keys[i], key) == 0)
            return true;
    return false;
}

static bool kv_add(struct pg *p, const char *key, const char *val)
{
    if (p->nkv >= MAX_KV)
        return false;
    p->keys[p->nkv] = strdup(key);
    p->vals[p->nkv] = strdup(val);
    if (!p->keys[p->nkv] || !p->vals[p->nkv]) {
        free(p->keys[p->nkv]);
        free(p->vals[p->nkv]);
        p->keys[p->nkv] = p->vals[p->nkv] = NULL;
        return false;
    }
    p->nkv++;
    return true;
}

static bool kv_default(struct pg *p, const char *key, const char *val)
{
    return kv_has(p, key) || kv_add(p, key, val);
}

/* The URL's own settings, then ours where it has none: bounded connect,
 * TCP keepalives, UTF-8, and server-side timeouts appended to its
 * "options" (ours last, so AUTH_DB_TIMEOUT_MS is the one in force). */
static enum as_err conninfo_build(struct pg *p, const char *url)
{
    char *errmsg = NULL, num[24], *opts = NULL;
    const char *user_opts = "";
    PQconninfoOption *all = PQconninfoParse(url, &errmsg), *o;
    enum as_err err = AS_ERR_NOMEM;
    unsigned idle_tx;
    size_t cap;

    if (!all) {
        /* The message may quote the URL, which holds a password. */
        PQfreemem(errmsg);
        log_simple(LOG_ERROR, "db.bad_url", "open",
                   "AUTH_DATABASE_URL is not a valid libpq URI");
        return AS_ERR_INTERNAL;
    }
    for (o = all; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "options") == 0)
            user_opts = o->val;
        else if (strcmp(o->keyword, "client_encoding") != 0 &&
                 !kv_add(p, o->keyword, o->val))
            goto out;
    }
    snprintf(num, sizeof num, "%u", p->timeout_ms + 5000);
    if (!kv_default(p, "connect_timeout", "3") ||
        !kv_default(p, "keepalives", "1") ||
        !kv_default(p, "keepalives_idle", "30") ||
        !kv_default(p, "keepalives_interval", "10") ||
        !kv_default(p, "keepalives_count", "3") ||
        !kv_default(p, "tcp_user_timeout", num) ||
        !kv_default(p, "application_name", "auth-serve") ||
        !kv_add(p, "client_encoding", "UTF8"))
        goto out;
    idle_tx = p->timeout_ms > 6000 ? p->timeout_ms * 10 : 60000;
    cap = strlen(user_opts) + sizeof SERVER_OPTIONS + 32;
    opts = malloc(cap);
    if (!opts)
        goto out;
    snprintf(opts, cap, "%s%s" SERVER_OPTIONS, user_opts,
             *user_opts ? " " : "", p->timeout_ms, idle_tx);
    if (!kv_add(p, "options", opts))
        goto out;
    err = AS_OK;
out:
    free(opts);
    for (o = all; o->keyword; o++)
        if (o->val)
            sodium_memzero(o->val, strlen(o->val));
    PQconninfoFree(all);
    return err;
}

/* ------------------------------------------------ one-row statements */

/* Runs statement `sql` inside the transaction of `c` and requires it to
 * touch exactly one row: AS_ERR_NOT_FOUND otherwise. */
static enum as_err mail_one_row(struct conn *c, const char *op,
                                const char *sql, const struct params *q)
{
    long rows = 0;
    enum as_err err = conn_run(c, op, sql, q, &rows);

    return err == AS_OK && rows != 1 ? AS_ERR_NOT_FOUND : err;
}

/* ------------------------------------------------------ second factor */

/* A login token is live: unused, unexpired at $2, fewer than $3 wrong. */
#define MFA_TOKEN_LIVE "used_at IS NULL AND expires_at > $2 AND failures < $3"

static enum as_err pg_mfa_get(void *impl, const char *user_id,
                              struct mfa_state *out, struct arena *a)
{
    struct params q = { 0 };
    PGresult *r;
    enum as_err err;

    memset(out, 0, sizeof *out);
    p_text(&q, user_id);
    err = one_shot(impl, "mfa_get",
                   "SELECT enabled, secret, last_step FROM user_mfa "
                   "WHERE user_id = $1", &q, &r);
    if (err == AS_OK && PQntuples(r) != 1)
        err = AS_ERR_NOT_FOUND;
    if (err == AS_OK) {
        out->enabled = col_bool(r, 0, 0);
        out->last_step = col_i64(r, 0, 2);
        if (!col_dup(r, 0, 1, a, &out->secret))
            err = AS_ERR_NOMEM;
    }
    PQclear(r);
    return err;
}

static enum as_err pg_mfa_pending(void *impl, const char *user_id,
                                  const char *sealed, int64_t now)
{
    struct params q = { 0 };
    long rows = 0;
    enum as_err err;

    p_text(&q, user_id);
    p_text(&q, sealed);
    p_i64(&q, now);
    err = one_shot_rows(impl, "mfa_pending",
                        "INSERT INTO user_mfa AS m (user_id, secret, "
                        "created_at) VALUES ($1, $2, $3) "
                        "ON CONFLICT (user_id) DO UPDATE SET "
                        "secret = excluded.secret, last_step = -1, "
                        "created_at = excluded.created_at "
                        "WHERE NOT m.enabled", &q, &rows);
    return err == AS_OK && rows != 1 ? AS_ERR_CONFLICT : err;
}

/* Inside a transaction: replaces the recovery codes of `user_id`. */
static enum as_err recovery_put(struct conn *c, const char *op,
                                const char *user_id,
                                const uint8_t (*codes)[REPO_HASH_LEN],
                                size_t n, int64_t now)
{
    struct params d = { 0 };
    enum as_err err;
    size_t i;

    p_text(&d, user_id);
    err = conn_run(c, op, "DELETE FROM mfa_recovery_codes "
                          "WHERE user_id = $1", &d, NULL);
    for (i = 0; i < n && err == AS_OK; i++) {
        struct params q = { 0 };

        p_text(&q, user_id);
        p_hash(&q, codes[i]);
        p_i64(&q, now);
        err = conn_run(c, op, "INSERT INTO mfa_recovery_codes (user_id, "
                              "hash, created_at) VALUES ($1, $2, $3)", &q,
                       NULL);
    }
    return err;
}

static enum as_err pg_mfa_enable(void *impl, const char *user_id,
                                 int64_t step,
                                 const uint8_t (*codes)[REPO_HASH_LEN],
                                 size_t n, const char *keep_sid, int64_t now)
{
    static const char op[] = "mfa_enable";
    struct params q = { 0 }, s = { 0 };
    struct conn c;
    enum as_err err;

    p_text(&q, user_id);
    p_i64(&q, step);
    p_i64(&q, now);
    p_text(&s, user_id);
    p_text(&s, keep_sid);
    p_i64(&s, now);
    if (q.invalid || s.invalid)
        return AS_ERR_NOT_FOUND;
    err = pool_get(impl, &c);
    if (err != AS_OK)
        return err;
    err = tx_begin(&c, op);
    if (err == AS_OK)
        err = mail_one_row(&c, op,
                           "UPDATE user_mfa SET enabled = true, "
                           "last_step = $2, enabled_at = $3 "
                           "WHERE user_id = $1 AND NOT enabled "
                           "AND last_step < $2", &q);
    if (err == AS_OK)
        err = recovery_put(&c, op, user_id, codes, n, now);
    if (err == AS_OK)
        err = conn_run(&c, op,
                       "UPDATE sessions SET revoked_at = $3 "
                       "WHERE user_id = $1 AND revoked_at IS NULL "
                       "AND ($2::text IS NULL OR id <> $2)", &s, NULL);
    err = tx_finish(&c, op, err);
    pool_put(&c);
    return err;
}

static enum as_err pg_mfa_use_step(void *impl, const char *user_id,
                                   int64_t step)
{
    struct params q = { 0 };
    long rows = 0;
    enum as_err err;

    p_text(&q, user_id);
    p_i64(&q, step);
    err = one_shot_rows(impl, "mfa_use_step",
                        "UPDATE user_mfa SET last_step = $2 "
                        "WHERE user_id = $1 AND enabled AND last_step < $2",
                        &q, &rows);
    return err == AS_OK && rows != 1 ? AS_ERR_NOT_FOUND : err;
}

static enum as_err pg_mfa_use_recovery(void *impl, const char *user_id,
                                       const uint8_t hash[REPO_HASH_LEN],
                                       int64_t now)
{
    struct params q = { 0 };
    long rows = 0;
    enum as_err err;

    p_text(&q, user_id);
    p_hash(&q, hash);
    p_i64(&q, now);
    err = one_shot_rows(impl, "mfa_use_recovery",
                        "UPDATE mfa_recovery_codes SET used_at = $3 "
                        "WHERE user_id = $1 AND hash = $2 "
                        "AND used_at IS NULL AND user_id IN (SELECT "
                        "user_id FROM user_mfa WHERE enabled)", &q, &rows);
    return err == AS_OK && rows != 1 ? AS_ERR_NOT_FOUND : err;
}

static enum as_err pg_mfa_recovery_set(void *impl, const char *user_id,
                                       const uint8_t (*codes)[REPO_HASH_LEN],
                                       size_t n, int64_t now)
{
    static const char op[] = "mfa_recovery_set";
    struct params q = { 0 };
    struct conn c;
    enum as_err err;

    p_text(&q, user_id);
    if (q.invalid)
        return AS_ERR_NOT_FOUND;
    err = pool_get(impl, &c);
    if (err != AS_OK)
        return err;
    err = tx_begin(&c, op);
    /* the row lock orders this against a concurrent disable */
    if (err == AS_OK)
        err = mail_one_row(&c, op,
                           "SELECT 1 FROM user_mfa WHERE user_id = $1 "
                           "AND enabled FOR UPDATE", &q);
    if (err == AS_OK)
        err = recovery_put(&c, op, user_id, codes, n, now);
    err = tx_finish(&c, op, err);
    pool_put(&c);
    return err;
}

static enum as_err pg_mfa_disable(void *impl, const char *user_id,
                                  bool *was_on)
{
    static const char op[] = "mfa_disable";
    struct params q = { 0 };
    PGresult *r = NULL;
    struct conn c;
    enum as_err err;

    p_text(&q, user_id);
    if (q.invalid)
        return AS_ERR_NOT_FOUND;
    err = pool_get(impl, &c);
    if (err != AS_OK)
        return err;
    err = tx_begin(&c, op);
    if (err == AS_OK)
        err = conn_exec(&c, op, "DELETE FROM user_mfa WHERE user_id = $1 "
                                "RETURNING enabled", &q, false, &r);
    if (err == AS_OK && PQntuples(r) == 1)
        *was_on = col_bool(r, 0, 0);
    PQclear(r);
    if (err == AS_OK)
        err = conn_run(&c, op, "DELETE FROM mfa_recovery_codes "
                               "WHERE user_id = $1", &q, NULL);
    if (err == AS_OK)
        err = conn_run(&c, op, "DELETE FROM mfa_tokens WHERE user_id = $1",
                       &q, NULL);
    err = tx_finish(&c, op, err);
    pool_put(&c);
    return err;
}

static enum as_err pg_mfa_token_create(void *impl,
                                       const uint8_t hash[REPO_HASH_LEN],
                                       const char *user_id, int64_t now,
                                       int64_t expires_at)
{
    struct params d = { 0 }, q = { 0 };
    long rows = 0;
    enum as_err err;

    p_i64(&d, now);
    p_hash(&q, hash);
    p_text(&q, user_id);
    p_i64(&q, now);
    p_i64(&q, expires_at);
    err = one_shot_rows(impl, "mfa_token_create",
                        "DELETE FROM mfa_tokens WHERE hash IN (SELECT hash "
                        "FROM mfa_tokens WHERE expires_at < $1 OR used_at "
                        "IS NOT NULL LIMIT 16)", &d, &rows);
    if (err == AS_OK)
        err = one_shot_rows(impl, "mfa_token_create",
                            "INSERT INTO mfa_tokens (hash, user_id, "
                            "created_at, expires_at) VALUES ($1, $2, $3, $4)",
                            &q, &rows);
    return err;
}

static enum as_err pg_mfa_token_user(void *impl,
                                     const uint8_t hash[REPO_HASH_LEN],
                                     int64_t now, unsigned max_failures,
                                     char user_id[UUID_STR_LEN])
{
    struct params q = { 0 };
    PGresult *r;
    enum as_err err;

    p_hash(&q, hash);
    p_i64(&q, now);
    p_i64(&q, max_failures);
    err = one_shot(impl, "mfa_token_user",
                   "SELECT user_id FROM mfa_tokens WHERE hash = $1 AND "
                   MFA_TOKEN_LIVE, &q, &r);
    if (err == AS_OK && PQntuples(r) != 1)
        err = AS_ERR_NOT_FOUND;
    if (err == AS_OK && !col_id(r, 0, 0, user_id))
        err = AS_ERR_INTERNAL;
    PQclear(r);
    return err;
}

static enum as_err pg_mfa_token_attempt(void *impl,
                                        const uint8_t hash[REPO_HASH_LEN],
                                        int64_t now, unsigned max_failures)
{
    struct params q = { 0 };
    long rows = 0;
    enum as_err err;

    p_hash(&q, hash);
    p_i64(&q, now);
    p_i64(&q, max_failures);
    err = one_shot_rows(impl, "mfa_token_attempt",
                        "UPDATE mfa_tokens SET failures = failures + 1 "
                        "WHERE hash = $1 AND " MFA_TOKEN_LIVE, &q, &rows);
    return err == AS_OK && rows != 1 ? AS_ERR_NOT_FOUND : err;
}

static enum as_err pg_mfa_token_use(void *impl,
                                    const uint8_t hash[REPO_HASH_LEN],
                                    int64_t now, unsigned max_failures)
{
    struct params q = { 0 };
    long rows = 0;
    enum as_err err;

    p_hash(&q, hash);
    p_i64(&q, now);
    p_i64(&q, max_failures);
    err = one_shot_rows(impl, "mfa_token_use",
                        "UPDATE mfa_tokens SET used_at = $2 WHERE hash = $1 "
                        "AND " MFA_TOKEN_LIVE, &q, &rows);
    return err == AS_OK && rows != 1 ? AS_ERR_NOT_FOUND : err;
}

/* ------------------------------------------------------ signing keys */

#define KEYS_LOCK "4242000101"   /* advisory lock of the keys table */

static enum as_err pg_keys_list(void *impl, struct key_row *out, size_t cap,
                                size_t *n, struct arena *a)
{
    PGresult *r;
    enum as_err err = one_shot(impl, "keys_list",
                               "SELECT kid, encode(sealed, 'hex'), "
                               "created_at, signs_from FROM auth_keys "
                               "ORDER BY signs_from, kid", NULL, &r);
    int i;

    for (i = 0; err == AS_OK && i < PQntuples(r) && (size_t)i < cap; i++) {
        const char *kid = PQgetvalue(r, i, 0), *hex = PQgetvalue(r, i, 1);
        size_t hl = strlen(hex), bl = 0;
        uint8_t *bin = arena_alloc(a, hl / 2 + 1);

        if (!bin)
            err = AS_ERR_NOMEM;
        else if (strlen(kid) >= sizeof out[i].kid ||
                 sodium_hex2bin(bin, hl / 2 + 1, hex, hl, NULL, &bl,
                                NULL) != 0)
            err = AS_ERR_INTERNAL;
        if (err != AS_OK)
            break;
        memcpy(out[i].kid, kid, strlen(kid) + 1);
        out[i].sealed = bin;
        out[i].sealed_len = bl;
        out[i].created_at = col_i64(r, i, 2);
        out[i].signs_from = col_i64(r, i, 3);
        *n = (size_t)i + 1;
    }
    PQclear(r);
    return err;
}

static enum as_err pg_keys_add(void *impl, const struct key_row *rows,
                               size_t n, bool only_if_empty, bool *added)
{
    static const char op[] = "keys_add";
    struct conn c;
    long have = 0;
    size_t i;
    enum as_err err = pool_get(impl, &c);

    if (err != AS_OK)
        return err;
    err = tx_begin(&c, op);
    if (err == AS_OK)
        err = conn_run(&c, op, "SELECT pg_advisory_xact_lock(" KEYS_LOCK ")",
                       NULL, NULL);
    if (err == AS_OK && only_if_empty)
        err = conn_run(&c, op, "SELECT 1 FROM auth_keys WHERE kid <> '"
                       REPO_KEY_REFRESH "' LIMIT 1", NULL, &have);
    for (i = 0; err == AS_OK && have == 0 && i < n; i++) {
        struct params q = { 0 };

        p_text(&q, rows[i].kid);
        p_add(&q, OID_BYTEA, (const char *)rows[i].sealed,
              (int)rows[i].sealed_len, 1);
        p_i64(&q, rows[i].created_at);
        p_i64(&q, rows[i].signs_from);
        err = conn_run(&c, op, "INSERT INTO auth_keys (kid, sealed, "
                       "created_at, signs_from) VALUES ($1, $2, $3, $4) "
                       "ON CONFLICT (kid) DO NOTHING", &q, NULL);
    }
    err = tx_finish(&c, op, err);
    pool_put(&c);
    if (err == AS_OK)
        *added = have == 0;
    return err;
}

static enum as_err pg_keys_prune(void *impl, int64_t now, int64_t before)
{
    struct params q = { 0 };
    long rows = 0;

    p_i64(&q, now);
    p_i64(&q, before);
    return one_shot_rows(impl, "keys_prune",
                         "DELETE FROM auth_keys k WHERE k.kid <> '"
                         REPO_KEY_REFRESH "' AND (SELECT min(n.signs_from) "
                         "FROM auth_keys n WHERE n.kid <> '" REPO_KEY_REFRESH
                         "' AND n.signs_from > k.signs_from AND "
                         "n.signs_from <= $1) < $2", &q, &rows);
}

/* ------------------------------------------------------------ passkeys */

#define PASSKEY_COLS "id, user_id, cred_id, public_key, sign_count, " \
                     "transports, name, created_at, last_used_at"

/* Reads PASSKEY_COLS of row `i`. */
static enum as_err row_passkey(const PGresult *r, int i, struct passkey *p,
                               struct arena *a)
{
    memset(p, 0, sizeof *p);
    if (!col_id(r, i, 0, p->id) || !col_id(r, i, 1, p->user_id))
        return AS_ERR_INTERNAL;
    p->sign_count = col_i64(r, i, 4);
    p->created_at = col_i64(r, i, 7);
    p->last_used_at = col_i64(r, i, 8);
    if (!col_dup(r, i, 2, a, &p->cred_id) ||
        !col_dup(r, i, 3, a, &p->public_key) ||
        !col_dup(r, i, 5, a, &p->transports) ||
        !col_dup(r, i, 6, a, &p->name))
        return AS_ERR_NOMEM;
    return AS_OK;
}

static enum as_err pg_passkey_challenge_put(void *impl,
                                            const uint8_t hash[REPO_HASH_LEN],
                                            enum passkey_ceremony ceremony,
                                            const char *user_id, int64_t now,
                                            int64_t expires_at)
{
    struct params d = { 0 }, q = { 0 };
    long rows = 0;
    enum as_err err;

    p_i64(&d, now);
    p_hash(&q, hash);
    p_i64(&q, ceremony);
    p_text(&q, user_id);
    p_i64(&q, now);
    p_i64(&q, expires_at);
    err = one_shot_rows(impl, "passkey_challenge_put",
                        "DELETE FROM passkey_challenges WHERE hash IN "
                        "(SELECT hash FROM passkey_challenges "
                        "WHERE expires_at <= $1 LIMIT 16)", &d, &rows);
    if (err == AS_OK)
        err = one_shot_rows(impl, "passkey_challenge_put",
                            "INSERT INTO passkey_challenges (hash, "
                            "ceremony, user_id, created_at, expires_at) "
                            "SELECT $1, $2, $3, $4, $5 WHERE $3::text IS "
                            "NULL OR EXISTS (SELECT 1 FROM users "
                            "WHERE id = $3)", &q, &rows);
    return err == AS_OK && rows != 1 ? AS_ERR_NOT_FOUND : err;
}

static enum as_err pg_passkey_challenge_take(void *impl,
                                             const uint8_t hash[REPO_HASH_LEN],
                                             enum passkey_ceremony ceremony,
                                             int64_t now,
                                             char user_id[UUID_STR_LEN])
{
    struct params q = { 0 };
    PGresult *r;
    enum as_err err;

    p_hash(&q, hash);
    p_i64(&q, ceremony);
    p_i64(&q, now);
    err = one_shot(impl, "passkey_challenge_take",
                   "DELETE FROM passkey_challenges WHERE hash = $1 "
                   "AND ceremony = $2 AND expires_at > $3 "
                   "RETURNING coalesce(user_id, '')", &q, &r);
    if (err == AS_OK && PQntuples(r) != 1)
        err = AS_ERR_NOT_FOUND;
    if (err == AS_OK && PQgetvalue(r, 0, 0)[0] && !col_id(r, 0, 0, user_id))
        err = AS_ERR_INTERNAL;
    PQclear(r);
    return err;
}

static enum as_err pg_passkey_insert(void *impl, const struct passkey *p)
{
    struct params q = { 0 };
    long rows = 0;
    enum as_err err;

    p_text(&q, p->id);
    p_text(&q, p->user_id);
    p_text(&q, p->cred_id);
    p_text(&q, p->public_key);
    p_i64(&q, p->sign_count);
    p_text(&q, p->transports);
    p_text(&q, p->name);
    p_i64(&q, p->created_at);
    err = one_shot_rows(impl, "passkey_insert",
                        "INSERT INTO passkeys (" PASSKEY_COLS ") "
                        "SELECT $1, $2, $3, $4, $5, $6, $7, $8, NULL "
                        "WHERE EXISTS (SELECT 1 FROM users WHERE id = $2) "
                        "ON CONFLICT (cred_id) DO NOTHING", &q, &rows);
    return err == AS_OK && rows != 1 ? AS_ERR_CONFLICT : err;
}

static enum as_err pg_passkey_by_cred(void *impl, const char *cred_id,
                                      struct passkey *out, struct arena *a)
{
    struct params q = { 0 };
    PGresult *r;
    enum as_err err;

    memset(out, 0, sizeof *out);
    p_text(&q, cred_id);
    if (q.invalid)
        return AS_ERR_NOT_FOUND;
    err = one_shot(impl, "passkey_by_cred",
                   "SELECT " PASSKEY_COLS " FROM passkeys "
                   "WHERE cred_id = $1", &q, &r);
    if (err == AS_OK && PQntuples(r) != 1)
        err = AS_ERR_NOT_FOUND;
    if (err == AS_OK)
        err = row_passkey(r, 0, out, a);
    PQclear(r);
    return err;
}

static enum as_err pg_passkey_list(void *impl, const char *user_id,
                                   struct passkey **out, size_t *n,
                                   struct arena *a)
{
    struct params q = { 0 };
    PGresult *r;
    enum as_err err;
    int i, rows;

    p_text(&q, user_id);
    p_i64(&q, REPO_PASSKEY_LIST_MAX);
    if (q.invalid)
        return AS_OK;
    err = one_shot(impl, "passkey_list",
                   "SELECT " PASSKEY_COLS " FROM passkeys "
                   "WHERE user_id = $1 ORDER BY id LIMIT $2", &q, &r);
    rows = err == AS_OK ? PQntuples(r) : 0;
    if (rows > 0) {
        *out = arena_alloc(a, (size_t)rows * sizeof **out);
        if (!*out)
            err = AS_ERR_NOMEM;
    }
    for (i = 0; err == AS_OK && i < rows; i++)
        err = row_passkey(r, i, &(*out)[i], a);
    if (err == AS_OK)
        *n = (size_t)rows;
    else
        *out = NULL;
    PQclear(r);
    return err;
}

static enum as_err pg_passkey_delete(void *impl, const char *id,
                                     const char *user_id)
{
    struct params q = { 0 };
    long rows = 0;
    enum as_err err;

    p_text(&q, id);
    p_text(&q, user_id);
    if (q.invalid)
        return AS_ERR_NOT_FOUND;
    err = one_shot_rows(impl, "passkey_delete",
                        "DELETE FROM passkeys WHERE id = $1 "
                        "AND user_id = $2", &q, &rows);
    return err == AS_OK && rows != 1 ? AS_ERR_NOT_FOUND : err;
}

static enum as_err pg_passkey_use(void *impl, const char *id,
                                  int64_t old_count, int64_t new_count,
                                  int64_t now)
{
    struct params q = { 0 };
    long rows = 0;
    enum as_err err;

    p_text(&q, id);
    p_i64(&q, old_count);
    p_i64(&q, new_count);
    p_i64(&q, now);
    err = one_shot_rows(impl, "passkey_use",
                        "UPDATE passkeys SET sign_count = $3, "
                        "last_used_at = $4 WHERE id = $1 "
                        "AND sign_count = $2", &q, &rows);
    return err == AS_OK && rows != 1 ? AS_ERR_NOT_FOUND : err;
}

static const struct repo_ops pg_ops = {
    .name = "postgres",
    .migrate = pg_migrate,
    .ping = pg_ping,
    .close = pg_close,
    DB_USER_OPS,
    .login_failures_update = pg_login_failures_update,
    .login_failures_prune = pg_login_failures_prune,
    .login_failures_clear = pg_login_failures_clear,
    .session_create = pg_session_create,
    .session_get = pg_session_get,
    .session_state = pg_session_state,
    .session_list = pg_session_list,
    .session_revoke = pg_session_revoke,
    .session_revoke_all = pg_session_revoke_all,
    .refresh_rotate = pg_refresh_rotate,
    .refresh_session = pg_refresh_session,
    DB_MAIL_OPS,
    .mfa_get = pg_mfa_get,
    .mfa_pending = pg_mfa_pending,
    .mfa_enable = pg_mfa_enable,
    .mfa_use_step = pg_mfa_use_step,
    .mfa_use_recovery = pg_mfa_use_recovery,
    .mfa_recovery_set = pg_mfa_recovery_set,
    .mfa_disable = pg_mfa_disable,
    .mfa_token_create = pg_mfa_token_create,
    .mfa_token_user = pg_mfa_token_user,
    .mfa_token_attempt = pg_mfa_token_attempt,
    .mfa_token_use = pg_mfa_token_use,
    .keys_list = pg_keys_list,
    .keys_add = pg_keys_add,
    .keys_prune = pg_keys_prune,
    .passkey_challenge_put = pg_passkey_challenge_put,
    .passkey_challenge_take = pg_passkey_challenge_take,
    .passkey_insert = pg_passkey_insert,
    .passkey_by_cred = pg_passkey_by_cred,
    .passkey_list = pg_passkey_list,
    .passkey_delete = pg_passkey_delete,
    .passkey_use = pg_passkey_use,
};

/* Sets up the pool for the libpq URI `url` without connecting (the first
 * call connects). Pool size cfg->db_pool_size (0: 8); cfg->db_timeout_ms
 * (0: 5000) bounds the wait for a free connection and each statement.
 * AS_ERR_INTERNAL for a URL libpq cannot parse, AS_ERR_NOMEM. On AS_OK the
 * caller frees *impl with (*ops)->close. */
enum as_err repo_pg_open(const struct cfg *cfg, const char *url,
                         const struct repo_ops **ops, void **impl)
{
    pthread_condattr_t ca;
    struct pg *p;
    enum as_err err = AS_ERR_NOMEM;

    *ops = NULL;
    *impl = NULL;
    if (!url)
        return AS_ERR_INTERNAL;
    p = calloc(1, sizeof *p);
    if (!p)
        return AS_ERR_NOMEM;
    p->base.drv = &pg_driver;
    p->nslots = cfg && cfg->db_pool_size ? cfg->db_pool_size : POOL_DEFAULT;
    if (p->nslots > POOL_MAX)
        p->nslots = POOL_MAX;
    p->timeout_ms = cfg && cfg->db_timeout_ms ? cfg->db_timeout_ms
                                              : TIMEOUT_DEFAULT_MS;
    if (p->timeout_ms > 3600000u)
        p->timeout_ms = 3600000u;
    p->slots = calloc(p->nslots, sizeof *p->slots);
    if (!p->slots)
        goto out;
    if (pthread_condattr_init(&ca) != 0)
        goto out;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&p->freed, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        goto out;
    }
    pthread_condattr_destroy(&ca);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        pthread_cond_destroy(&p->freed);
        goto out;
    }
    p->sync_ready = true;
    err = conninfo_build(p, url);
out:
    if (err != AS_OK) {
        pg_close(p);
        return err;
    }
    *ops = &pg_ops;
    *impl = p;
    return AS_OK;
}
