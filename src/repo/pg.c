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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#include "cfg.h"
#include "clock.h"
#include "crypto.h"
#include "log.h"
#include "flows.h"
#include "migrations.h"
#include "pqlib.h"
#include "repo/pgurl.h"

#define POOL_DEFAULT (cfg_defaults()->db_pool_size)
#define POOL_MAX 1024u
#define TIMEOUT_DEFAULT_MS (cfg_defaults()->db_timeout_ms)
#define CLIENT_GRACE_MS 2000       /* past statement_timeout: server hung */
#define CONNECT_HUNG_MS 1000       /* a connect failing this late: no answer */
#define MIGRATION_LOCK "7022344802737369718"     /* "authserv" as int8 */
#define MAX_PARAMS 10
#define MAX_KV 64                  /* connection keywords we pass */
#define PIPE_MAX 32                /* answers a transaction awaits at once */
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
#define OID_VOID ((Oid)2278)

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
    atomic_bool read_only;         /* the last ping found it so (logged) */
    size_t nkv;
    char *keys[MAX_KV + 1];        /* NULL-terminated, for PQconnectdbParams */
    char *vals[MAX_KV + 1];        /* may hold a password: wiped on close */
};

/* What a transaction sent and has not read the answer of yet. */
enum pend_kind { PEND_BEGIN, PEND_PREPARE, PEND_STMT, PEND_END };

struct pending {
    enum pend_kind kind;
    unsigned slot;                 /* PEND_PREPARE: the statement's */
    db_answer_fn *fn;              /* PEND_STMT: its reader, or NULL */
    void *arg;
    struct arena *a;               /* where its rows go */
};

/* One connection checked out of the pool by the calling thread. */
struct conn {
    struct pg *pg;
    struct slot *slot;
    PGconn *c;
    bool bad;                      /* drop it instead of returning it */
    bool begin_due;                /* a transaction is open but its BEGIN
                                      goes with the first statement */
    bool piped;                    /* a transaction's statements are out
                                      in pipeline mode */
    bool gated;                    /* an answer to read before COMMIT */
    bool quiet;                    /* a failure after a refusal: not logged */
    bool fresh;                    /* connected by this checkout */
    unsigned npend;
    struct pending pend[PIPE_MAX + 1];       /* + its COMMIT or ROLLBACK */
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
 * has left an error message and an end of file to read. A pooled
 * connection never listens and has read every result, so anything to
 * read while it is idle is the server ending the session. Reading it
 * is not enough: with the FATAL message read but the end of file not
 * yet there (it may come a moment later) libpq still says CONNECTION_OK,
 * and the next statement would fail (a 503 that counts for the
 * breaker). */
static bool idle_alive(PGconn *c)
{
    struct pollfd pfd;
    int rc;

    if (PQstatus(c) != CONNECTION_OK ||
        PQtransactionStatus(c) != PQTRANS_IDLE)
        return false;
    pfd.fd = PQsocket(c);
    pfd.events = POLLIN;
    if (pfd.fd < 0)
        return false;
    do
        rc = poll(&pfd, 1, 0);
    while (rc < 0 && errno == EINTR);
    return rc == 0;
}

/* Connects. A connect that failed only after CONNECT_HUNG_MS found no
 * server answering (a hung or unreachable host, libpq's connect_timeout):
 * AS_ERR_DB_UNREACHABLE, which opens the circuit at once so that the
 * next requests do not wait the same seconds. A quick refusal (server
 * down or restarting, too many connections) is one failure among the
 * breaker's threshold. */
static enum as_err connect_one(struct pg *p, PGconn **out)
{
    int64_t t0 = mono_now();
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
        db_unreached();
        return mono_now() - t0 >= CONNECT_HUNG_MS ? AS_ERR_DB_UNREACHABLE
                                                  : AS_ERR_UNAVAILABLE;
    }
    PQsetNoticeProcessor(c, on_notice, NULL);
    *out = c;
    return AS_OK;
}

static void pool_put(struct conn *c)
{
    if (c->c && (c->bad || c->piped || PQstatus(c->c) != CONNECTION_OK ||
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
static enum as_err pool_take(struct pg *p, struct conn *out, bool ping);

static enum as_err pool_get(struct pg *p, struct conn *out)
{
    return pool_take(p, out, false);
}

/* pool_get, and with `ping` the readiness ping's own slot (the one past
 * the pool's) first, so that a pool whose connections all wait on
 * something else (a row lock, a slow statement) does not read as a
 * server that does not answer (ready.h, ready_stalled). */
static enum as_err pool_take(struct pg *p, struct conn *out, bool ping)
{
    struct timespec until;
    struct slot *s = NULL;
    enum as_err err = AS_OK;
    int rc = 0;

    memset(out, 0, sizeof *out);
    out->pg = p;
    clock_deadline(&until, p->timeout_ms);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        s = ping && !p->slots[p->nslots].busy ? &p->slots[p->nslots]
                                               : free_slot(p);
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
        out->fresh = true;
    }
    if (err != AS_OK)
        pool_put(out);
    /* The ping's own slot refused at once (the server's or the role's
     * connection limit, reached by the pool meanwhile): the pool's
     * connections still work, so the ping asks one of them rather than
     * call a working database not ready. A connect that hung
     * (AS_ERR_DB_UNREACHABLE) is the answer itself. */
    if (err == AS_ERR_UNAVAILABLE && s == &p->slots[p->nslots])
        return pool_take(p, out, false);
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
        if (lost)
            db_unreached();
        return lost ? AS_ERR_UNAVAILABLE : AS_ERR_INTERNAL;
    }
    if (lost || strncmp(st, "08", 2) == 0 || state_is(st, "57P01") ||
        state_is(st, "57P02") || state_is(st, "57P03")) {
        c->bad = true;              /* lost, or the server is going away */
        db_unreached();
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
    /* A write refused by a server that takes none (turned read-only
     * under this connection, or one a URL with target_session_attrs=any
     * reached): unavailable, not broken, and its reads go on
     * (AS_ERR_READ_ONLY does not count against the circuit). While the
     * readiness ping finds the database read-only the connection is
     * kept (a new one per refused write made a backend per request);
     * once it finds it writable, a connection that still refuses keeps
     * a read-only default of its start and is replaced. */
    if (state_is(st, "25006")) {
        c->bad = !atomic_load(&c->pg->read_only);
        return AS_ERR_READ_ONLY;
    }
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
            db_unreached();
            PQclear(keep);
            log_simple(LOG_WARN, timed_out ? "db.timeout"
                                           : "db.connection_lost", op,
                       timed_out ? "no answer from the server in time"
                                 : PQerrorMessage(c->c));
            /* Past statement_timeout and the grace the server did not
             * answer at all: it hangs (see connect_one). */
            return timed_out ? AS_ERR_DB_UNREACHABLE : AS_ERR_UNAVAILABLE;
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
    case PGRES_PIPELINE_ABORTED:    /* skipped after an earlier failure */
        PQclear(keep);
        return AS_ERR_INTERNAL;
    default:                        /* COPY and the like: never ours */
        c->bad = true;
        err = AS_ERR_INTERNAL;
        break;
    }
    if (!c->quiet)
        log_failure(op, keep, c->c, err);
    PQclear(keep);
    return err;
}

/* Whether `sent` (a PQsend* result) went out; marks `c` bad if not. */
static bool conn_sent(struct conn *c, const char *op, int sent)
{
    if (!sent) {
        c->bad = true;
        db_unreached();
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
    db_round_trip();
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
    for (i = 0; err == AS_OK && i < (size_t)PQntuples(done); i++) {
        unsigned long v = strtoul(PQgetvalue(done, (int)i, 0), NULL, 10);
        size_t k = 0;

        while (k < n && m[k].version != v)
            k++;
        if (k == n)
            db_unknown_migration("postgres", (long long)v);
    }
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

/* A pooled connection the server ended a moment before it was taken (a
 * backend terminated, an idle_session_timeout) can still look idle
 * (idle_alive() saw no end yet): its ping fails as a lost connection,
 * where a new one would answer. The ping tries once more, on a new
 * connection, so that /readyz does not call a database that answers not
 * ready (it did, 3 of 30 backend kills). */
static enum as_err pg_ping(void *impl)
{
    struct pg *pg = impl;
    enum as_err err = AS_OK;
    bool ro;
    int tries;

    for (tries = 0; tries < 2; tries++) {
        PGresult *r = NULL;
        struct conn c;
        bool again;

        err = pool_take(impl, &c, true);
        if (err != AS_OK)
            return err;
        /* Writable: a server that takes no writes (a standby, a
         * demoted primary, default_transaction_read_only, also turned on
         * under an open connection) answers reads, and a readiness of
         * reads alone kept an instance whose every login failed behind
         * the load balancer. */
        err = conn_exec(&c, "ping", "SELECT current_setting("
                        "'transaction_read_only')", NULL, false, &r);
        ro = err == AS_OK && (PQntuples(r) != 1 ||
                              strcmp(PQgetvalue(r, 0, 0), "off") != 0);
        if (ro) {
            if (!atomic_exchange(&pg->read_only, true))
                log_simple(LOG_WARN, "db.read_only", "ping",
                           "the database takes no writes (a standby, or "
                           "default_transaction_read_only): not ready");
            c.bad = true;
            err = AS_ERR_UNAVAILABLE;
        } else if (err == AS_OK && atomic_exchange(&pg->read_only, false)) {
            log_simple(LOG_INFO, "db.read_only", "ping",
                       "the database takes writes again");
        }
        /* (a read-only server: the next ping's new connection, to a
         * URL of several hosts, may find the primary) */
        again = err == AS_ERR_UNAVAILABLE && c.bad && !c.fresh && !ro;
        pool_put(&c);
        PQclear(r);
        if (!again)
            break;
    }
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

/* A write transaction runs in libpq's pipeline mode: its BEGIN goes out
 * with its first statement, statements sent ahead (db_send) go out
 * without waiting, and each wait reads every answer queued before it, so
 * a transaction costs one round trip per statement whose rows a flow
 * reads before going on, plus one for the rest and the COMMIT (README.md,
 * "Performance"). One that ran no statement commits or rolls back
 * nothing. */
static enum as_err drv_begin(struct db_conn *d)
{
    struct conn *c = conn_of(d);

    if (c->bad)
        return AS_ERR_UNAVAILABLE;
    c->begin_due = true;
    return AS_OK;
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
    case OID_VOID:                      /* pg_advisory_xact_lock() */
        v->null = true;
        v->len = 0;
        return AS_OK;
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

/* Binds `n` arguments as libpq wants them (`num` holds the digits). */
static enum as_err bind_args(const struct db_val *args, size_t n,
                             Oid *type, const char **val, int *len,
                             int *fmt, char (*num)[24])
{
    size_t i;

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
    return AS_OK;
}

/* A statement bound for libpq: its prepared name and its arguments. */
struct bound {
    char name[16];
    const char *val[DB_ARGS_MAX];
    int len[DB_ARGS_MAX], fmt[DB_ARGS_MAX];
    Oid type[DB_ARGS_MAX];
    char num[DB_ARGS_MAX][24];
};

/* Binds statement `ds` and its `n` arguments into `b` for `c`. */
static enum as_err bind_stmt(const struct conn *c, struct db_stmt *ds,
                             const struct db_val *args, size_t n,
                             struct bound *b)
{
    unsigned slot = db_stmt_slot(ds);
    enum as_err err;

    if (slot >= DB_STMT_MAX || n > DB_ARGS_MAX)
        return AS_ERR_INTERNAL;
    err = bind_args(args, n, b->type, b->val, b->len, b->fmt, b->num);
    if (err != AS_OK)
        return err;
    if (c->bad)
        return AS_ERR_UNAVAILABLE;
    snprintf(b->name, sizeof b->name, "s%u", slot);
    return AS_OK;
}

static struct pending *pend_add(struct conn *c, enum pend_kind kind)
{
    struct pending *p = &c->pend[c->npend++];

    *p = (struct pending){ .kind = kind };
    return p;
}

/* Reads the answers of everything queued on `c`, in order: a statement's
 * rows go to its reader. Returns the first failure (a statement's, or a
 * reader's refusal); the answers after it are read and dropped (the
 * server skipped those statements). A prepare that did not happen is
 * forgotten; a BEGIN or prepare that failed by itself, which no
 * statement of ours causes, drops the connection. */
static enum as_err pipe_collect(struct conn *c)
{
    enum as_err first = AS_OK, err;
    unsigned i;

    for (i = 0; i < c->npend && !c->bad; i++) {
        struct pending *p = &c->pend[i];
        struct db_rows rows;
        PGresult *r = NULL;

        c->quiet = first != AS_OK;
        err = conn_collect(c, c->op, false, &r);
        c->quiet = false;
        if (p->kind == PEND_PREPARE && err != AS_OK)
            c->slot->prep[p->slot / 8] &= (uint8_t)~(1u << (p->slot % 8));
        if (err != AS_OK && first == AS_OK) {
            first = err;
            if (p->kind == PEND_BEGIN || p->kind == PEND_PREPARE)
                c->bad = true;
        } else if (err == AS_OK && first == AS_OK && p->fn) {
            first = read_rows(r, &rows, p->a);
            if (first == AS_OK)
                first = p->fn(p->arg, &rows);
        }
        PQclear(r);
    }
    c->npend = 0;
    c->gated = false;
    if (c->bad && first == AS_OK)
        first = AS_ERR_UNAVAILABLE;
    return first;
}

/* Asks for the answers queued so far (a flush request, not a sync: the
 * transaction stays open) and reads them. */
static enum as_err pipe_read(struct conn *c)
{
    if (c->npend == 0)
        return AS_OK;
    if (!conn_sent(c, c->op, PQsendFlushRequest(c->c)) ||
        !conn_sent(c, c->op, PQflush(c->c) == 0)) {
        c->npend = 0;
        return AS_ERR_UNAVAILABLE;
    }
    db_round_trip();
    return pipe_collect(c);
}

/* Queues area statement `ds` (prepared first on this connection's first
 * use, with the types of the arguments; rows binary and typed), opening
 * the pipeline and its transaction's BEGIN on the transaction's first
 * statement. Nothing is read unless the queue is full. */
static enum as_err pipe_send(struct conn *c, struct db_stmt *ds,
                             const struct db_val *args, size_t n,
                             db_answer_fn *fn, void *arg, bool gate,
                             struct arena *a)
{
    unsigned slot = db_stmt_slot(ds);
    uint8_t bit = (uint8_t)(1u << (slot % 8));
    struct pending *p;
    struct bound b;
    enum as_err err = bind_stmt(c, ds, args, n, &b);

    if (err != AS_OK)
        return err;
    if (c->npend + 3 > PIPE_MAX && (err = pipe_read(c)) != AS_OK)
        return err;
    if (!c->piped) {
        if (!conn_sent(c, c->op, PQenterPipelineMode(c->c)))
            return AS_ERR_UNAVAILABLE;
        c->piped = true;
    }
    if (c->begin_due) {
        c->begin_due = false;
        if (!conn_sent(c, c->op, PQsendQueryParams(c->c, "BEGIN", 0, NULL,
                                                   NULL, NULL, NULL, 0)))
            return AS_ERR_UNAVAILABLE;
        pend_add(c, PEND_BEGIN);
    }
    if (!(c->slot->prep[slot / 8] & bit)) {
        if (!conn_sent(c, c->op, PQsendPrepare(c->c, b.name, ds->pg,
                                               (int)n, b.type)))
            return AS_ERR_UNAVAILABLE;
        c->slot->prep[slot / 8] |= bit;
        pend_add(c, PEND_PREPARE)->slot = slot;
    }
    if (!conn_sent(c, c->op, PQsendQueryPrepared(c->c, b.name, (int)n,
                                                 b.val, b.len, b.fmt, 1)))
        return AS_ERR_UNAVAILABLE;
    p = pend_add(c, PEND_STMT);
    p->fn = fn;
    p->arg = arg;
    p->a = a;
    c->gated = c->gated || gate;
    return AS_OK;
}

/* Ends the transaction: COMMIT (ROLLBACK when !commit) and a sync go out
 * behind what is queued, and all is read in one round trip. After a
 * failure the server skips the rest up to the sync, COMMIT included, and
 * the transaction, aborted, is then rolled back. Returns the first
 * failure. */
static enum as_err pipe_end(struct conn *c, bool commit)
{
    bool timed_out = false;
    enum as_err err;
    PGresult *sync;

    if (c->bad)
        return AS_ERR_UNAVAILABLE;
    if (!conn_sent(c, c->op,
                   PQsendQueryParams(c->c, commit ? "COMMIT" : "ROLLBACK",
                                     0, NULL, NULL, NULL, NULL, 0)) ||
        !conn_sent(c, c->op, PQpipelineSync(c->c)))
        return AS_ERR_UNAVAILABLE;
    pend_add(c, PEND_END);
    db_round_trip();
    err = pipe_collect(c);
    if (c->bad)
        return err;
    if (!wait_ready(c->c, mono_now() + c->pg->timeout_ms + CLIENT_GRACE_MS,
                    &timed_out) ||
        !(sync = PQgetResult(c->c))) {
        c->bad = true;
        return AS_ERR_UNAVAILABLE;
    }
    if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC ||
        !PQexitPipelineMode(c->c))
        c->bad = true;
    PQclear(sync);
    if (c->bad) {
        log_simple(LOG_WARN, "db.connection_lost", c->op,
                   "the pipeline did not end as sent");
        return AS_ERR_UNAVAILABLE;
    }
    c->piped = false;
    if (PQtransactionStatus(c->c) != PQTRANS_IDLE &&
        conn_run(c, c->op, "ROLLBACK", NULL, NULL) != AS_OK)
        c->bad = true;
    return err;
}

static enum as_err drv_commit(struct db_conn *d)
{
    struct conn *c = conn_of(d);
    enum as_err err;

    if (c->begin_due) {
        c->begin_due = false;
        return AS_OK;
    }
    if (!c->piped)
        return c->bad ? AS_ERR_UNAVAILABLE : AS_OK;
    /* A check still to read may refuse: it is read before COMMIT goes. */
    if (c->gated && (err = pipe_read(c)) != AS_OK) {
        (void)pipe_end(c, false);
        return err;
    }
    return pipe_end(c, true);
}

static void drv_rollback(struct db_conn *d)
{
    struct conn *c = conn_of(d);

    c->begin_due = false;
    if (c->piped)
        (void)pipe_end(c, false);
}

static enum as_err drv_send(struct db_conn *d, struct db_stmt *ds,
                            const struct db_val *args, size_t n,
                            db_answer_fn *fn, void *arg, bool gate,
                            struct arena *a)
{
    struct conn *c = conn_of(d);
    struct db_rows none = { 0 };

    if (!ds->pg)
        return fn ? fn(arg, &none) : AS_OK;
    return pipe_send(c, ds, args, n, fn, arg, gate, a);
}

/* Keeps a statement's rows for drv_run(). */
static enum as_err keep_rows(void *arg, const struct db_rows *rows)
{
    *(struct db_rows *)arg = *rows;
    return AS_OK;
}

/* Runs area statement `ds` and reads its rows: inside a transaction
 * behind what was sent ahead, in one round trip with it; outside, as a
 * named prepared statement ("s" and its slot), prepared on first use on
 * this connection with the types of the arguments; results come back
 * binary and typed. */
static enum as_err drv_run(struct db_conn *d, struct db_stmt *ds,
                           const struct db_val *args, size_t n,
                           struct db_rows *out, struct arena *a)
{
    struct conn *c = conn_of(d);
    unsigned slot = db_stmt_slot(ds);
    uint8_t bit = (uint8_t)(1u << (slot % 8));
    PGresult *r = NULL;
    struct bound b;
    enum as_err err;

    memset(out, 0, sizeof *out);
    if (!ds->pg)
        return AS_OK;
    if (c->begin_due || c->piped) {
        err = pipe_send(c, ds, args, n, keep_rows, out, true, a);
        if (err == AS_OK)
            err = pipe_read(c);
        if (err != AS_OK)
            memset(out, 0, sizeof *out);
        return err;
    }
    err = bind_stmt(c, ds, args, n, &b);
    if (err != AS_OK)
        return err;
    if (!(c->slot->prep[slot / 8] & bit)) {
        if (!conn_sent(c, c->op, PQsendPrepare(c->c, b.name, ds->pg,
                                               (int)n, b.type)))
            return AS_ERR_UNAVAILABLE;
        db_round_trip();
        err = conn_collect(c, c->op, false, &r);
        PQclear(r);
        r = NULL;
        if (err != AS_OK)
            return err;
        c->slot->prep[slot / 8] |= bit;
    }
    if (!conn_sent(c, c->op, PQsendQueryPrepared(c->c, b.name, (int)n,
                                                 b.val, b.len, b.fmt, 1)))
        return AS_ERR_UNAVAILABLE;
    db_round_trip();
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
    .rollback = drv_rollback, .run = drv_run, .send = drv_send,
    .release = drv_release,
};

/* ------------------------------------------------------- open / close */

static void pg_close(void *impl)
{
    struct pg *p = impl;
    size_t i;

    if (!p)
        return;
    for (i = 0; p->slots && i <= p->nslots; i++)   /* and the ping's */
        PQfinish(p->slots[i].conn);
    free(p->slots);
    for (i = 0; i < p->nkv; i++) {
        crypt_wipe(p->vals[i], strlen(p->vals[i]));
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

/* Frees the options of a URL, wiped first (the password is one). */
static void options_free(PQconninfoOption *all)
{
    PQconninfoOption *o;

    for (o = all; o->keyword; o++)
        if (o->val)
            crypt_wipe(o->val, strlen(o->val));
    PQconninfoFree(all);
}

/* The options of libpq URI `url`, or NULL (logged, without the URL or
 * libpq's message, which may quote the password) when libpq cannot read
 * it or a port is no port. Free with options_free(). */
static PQconninfoOption *url_options(const char *url)
{
    char *errmsg = NULL, line[160];
    PQconninfoOption *all = PQconninfoParse(url, &errmsg), *o;
    const char *refused = NULL;

    PQfreemem(errmsg);
    for (o = all; o && o->keyword && !refused; o++)
        if (o->val)
            refused = pgurl_option_refused(o->keyword, o->val);
    if (refused) {
        /* its value is not quoted: a password may have ended up there */
        snprintf(line, sizeof line, "AUTH_DATABASE_URL: the value of its "
                 "%s is not one libpq takes%s", refused,
                 strcmp(refused, "port") == 0 ? " (from 1 to 65535)" : "");
        log_simple(LOG_ERROR, "db.bad_url", "open", line);
        options_free(all);
        return NULL;
    }
    if (!all)
        log_simple(LOG_ERROR, "db.bad_url", "open",
                   "AUTH_DATABASE_URL is not a valid libpq URI");
    return all;
}

enum as_err repo_pg_url_check(const char *url)
{
    PQconninfoOption *all;
    const char *why;

    if (!pqlib_load(&why)) {
        log_simple(LOG_ERROR, "db.driver_missing", "open", why);
        return AS_ERR_INTERNAL;
    }
    all = url_options(url);
    if (!all)
        return AS_ERR_BAD_REQUEST;
    options_free(all);
    return AS_OK;
}

/* The URL's own settings, then ours where it has none: bounded connect,
 * TCP keepalives, UTF-8, and server-side timeouts appended to its
 * "options" (ours last, so AUTH_DB_TIMEOUT_MS is the one in force). */
static enum as_err conninfo_build(struct pg *p, const char *url)
{
    char num[24], *opts = NULL;
    const char *user_opts = "";
    PQconninfoOption *all = url_options(url), *o;
    enum as_err err = AS_ERR_NOMEM;
    unsigned idle_tx;
    size_t cap;

    if (!all)
        return AS_ERR_BAD_REQUEST;       /* the operator's to mend: exit 2 */
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
        /* A server that takes writes: of several hosts (in the URL, in
         * PGHOST, behind one DNS name), the primary, after a failover
         * too. `target_session_attrs=any` in the URL keeps a single
         * server's reads going while it takes no writes. */
        !kv_default(p, "target_session_attrs", "read-write") ||
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
    options_free(all);
    return err;
}

static const struct repo_ops pg_ops = {
    .name = "postgres",
    .migrate = pg_migrate,
    .ping = pg_ping,
    .close = pg_close,
    DB_USER_OPS,
    DB_LOGIN_OPS,
    DB_SESSION_OPS,
    DB_MAIL_OPS,
    DB_MFA_OPS,
    DB_KEYS_OPS,
    DB_PASSKEY_OPS,
};

/* Sets up the pool for the libpq URI `url` without connecting (the first
 * call connects). Pool size cfg->db_pool_size; cfg->db_timeout_ms bounds
 * the wait for a free connection and each statement (0: cfg_defaults()).
 * Opens libpq (include/pqlib.h). AS_ERR_INTERNAL for a URL libpq cannot
 * parse or a libpq that cannot be opened, AS_ERR_NOMEM. On AS_OK the
 * caller frees *impl with (*ops)->close. */
enum as_err repo_pg_open(const struct cfg *cfg, const char *url,
                         const struct repo_ops **ops, void **impl)
{
    pthread_condattr_t ca;
    struct pg *p;
    enum as_err err = AS_ERR_NOMEM;
    const char *why;

    *ops = NULL;
    *impl = NULL;
    if (!url)
        return AS_ERR_INTERNAL;
    if (!pqlib_load(&why)) {
        log_simple(LOG_ERROR, "db.driver_missing", "open", why);
        return AS_ERR_INTERNAL;
    }
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
    p->slots = calloc(p->nslots + 1u, sizeof *p->slots);  /* + the ping's */
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
