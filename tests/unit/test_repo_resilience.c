/* test_repo_resilience.c: the repository through its dispatcher (repo.h:
 * retries and breaker included) where a restructuring of storage is most
 * likely to change behaviour:
 *
 *  - refresh rotation raced by many threads presenting one token, on both
 *    backends: exactly one ROTATE_OK, every other ROTATE_GRACE, never
 *    ROTATE_REUSED within the grace, never an error;
 *  - a rotation raced against a logout everywhere or a deactivation:
 *    OK before the end or INVALID after it, never an error, and no
 *    token of the session works afterwards;
 *  - PostgreSQL: every pooled connection killed (pg_terminate_backend)
 *    between calls after each statement was prepared on it: the next
 *    calls work on new connections (statements prepared again);
 *  - PostgreSQL: a connection kept after a statement timeout or a failed
 *    statement inside a transaction still runs its prepared statements.
 *
 * The PostgreSQL groups need AUTH_TEST_PG_URL (tests/pg-cluster.sh start
 * DIR prints one) and skip without it; each case has a schema of its own.
 * The SQLite group uses a file under AUTH_TEST_TMP (or /tmp). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "repo.h"
#include "uuid.h"

#define T0 INT64_C(1700000000000)
#define HOUR INT64_C(3600000)
#define LIFE (90 * 24 * HOUR)
#define GRACE_MS INT64_C(10000)
#define RACE_THREADS 8
#define RACE_ROUNDS 25
#define WORKERS 3                     /* = the pool size of the kill case */
#define KILL_ROUNDS 4
#define SETTLE_MS 20000               /* a call must work again by then */

struct fx {
    bool pg;
    char schema[48];
    char app[64];
    char path[512];                   /* the SQLite file */
    PGconn *side;                     /* PostgreSQL: the test's own view */
    struct repo *r;
};

/* Every rotated-out token names its session (repo_refresh_session()). */
static const struct repo_kept EVERY_KEPT = { INT64_MIN, INT64_MIN };

static unsigned seq;

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static const char *pg_url(void)
{
    const char *u = getenv("AUTH_TEST_PG_URL");

    return u && *u ? u : NULL;
}

static void pause_ms(long ms)         /* poll interval, never a wait-for */
{
    struct timespec ts = { 0, ms * 1000000L };

    nanosleep(&ts, NULL);
}

/* Runs the test's own SQL (identifiers only, never outside values). */
static PGresult *side_q(struct fx *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static PGresult *side_q(struct fx *f, const char *fmt, ...)
{
    char sql[1024];
    PGresult *r;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    r = PQexec(f->side, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK &&
        PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("side SQL failed: %s: %s", sql, PQerrorMessage(f->side));
    return r;
}

static int64_t side_int(struct fx *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int64_t side_int(struct fx *f, const char *fmt, ...)
{
    char sql[1024];
    PGresult *r;
    int64_t v;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    PQclear(side_q(f, "SELECT pg_stat_clear_snapshot()"));
    r = side_q(f, "%s", sql);
    assert_int_equal(PQntuples(r), 1);
    v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* Opens the fixture's repository through repo_open() and migrates it. */
static void fx_open(struct fx *f, unsigned pool, unsigned timeout_ms)
{
    const char *b = pg_url();
    struct cfg cfg;
    char url[2048];

    memset(&cfg, 0, sizeof cfg);
    cfg.db_pool_size = pool;
    cfg.db_timeout_ms = timeout_ms;
    cfg.cb_failure_threshold = 3;
    cfg.cb_open_seconds = 1;
    if (f->pg)
        snprintf(url, sizeof url, "%s%soptions=-c%%20search_path%%3D%s"
                 "&application_name=%s", b, strchr(b, '?') ? "&" : "?",
                 f->schema, f->app);
    else
        snprintf(url, sizeof url, "sqlite:%s", f->path);
    cfg.database_url = url;
    assert_int_equal(repo_open(&cfg, &f->r), AS_OK);
    assert_string_equal(repo_backend(f->r), f->pg ? "postgres" : "sqlite");
    assert_int_equal(repo_migrate(f->r), AS_OK);
}

static int setup(void **state, bool pg, unsigned pool, unsigned timeout_ms)
{
    const char *tmp = getenv("AUTH_TEST_TMP");
    struct fx *f;

    *state = NULL;
    if (pg && !pg_url())
        return 0;                     /* the case then skips */
    f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->pg = pg;
    seq++;
    if (pg) {
        snprintf(f->schema, sizeof f->schema, "res%ld_%u", (long)getpid(),
                 seq);
        snprintf(f->app, sizeof f->app, "%s_app", f->schema);
        f->side = PQconnectdb(pg_url());
        if (PQstatus(f->side) != CONNECTION_OK)
            fail_msg("cannot reach AUTH_TEST_PG_URL: %s",
                     PQerrorMessage(f->side));
        PQsetNoticeProcessor(f->side, quiet, NULL);
        PQclear(side_q(f, "DROP SCHEMA IF EXISTS %s CASCADE", f->schema));
        PQclear(side_q(f, "CREATE SCHEMA %s", f->schema));
        PQclear(side_q(f, "SET search_path TO %s", f->schema));
    } else {
        snprintf(f->path, sizeof f->path, "%s/resilience-%ld-%u.db",
                 tmp && *tmp ? tmp : "/tmp", (long)getpid(), seq);
        unlink(f->path);
    }
    fx_open(f, pool, timeout_ms);
    *state = f;
    return 0;
}

static int setup_sqlite(void **state)
{
    return setup(state, false, 0, 0);
}

static int setup_pg(void **state)
{
    return setup(state, true, WORKERS, 2000);
}

/* One connection and a short statement timeout. */
static int setup_pg_one(void **state)
{
    return setup(state, true, 1, 400);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char side[600];

    if (!f)
        return 0;
    repo_close(f->r);
    if (f->pg) {
        PQclear(PQexec(f->side, "ROLLBACK"));
        PQclear(side_q(f, "DROP SCHEMA IF EXISTS %s CASCADE", f->schema));
        PQfinish(f->side);
    } else {
        unlink(f->path);
        snprintf(side, sizeof side, "%s-wal", f->path);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", f->path);
        unlink(side);
    }
    free(f);
    return 0;
}

#define NEED(f)                                                            \
    struct fx *f = *state;                                                 \
    if (!f) {                                                              \
        skip();                                                            \
        return;                                                            \
    }

/* --------------------------------------------------------------- data */

static void mk_user(struct user *u, unsigned n, char *email, size_t cap)
{
    uint8_t rnd[10];

    memset(u, 0, sizeof *u);
    memset(rnd, 0, sizeof rnd);
    memcpy(rnd, &n, sizeof n);
    uuid_v7_format(T0 + (int64_t)n, rnd, u->id);
    snprintf(email, cap, "u%u@example.com", n);
    u->email = email;
    u->password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    u->role = ROLE_USER;
    u->is_active = true;
    u->created_at = u->updated_at = T0;
}

static void mk_session(struct session *s, unsigned n, const char *user_id)
{
    uint8_t rnd[10];

    memset(s, 0, sizeof *s);
    memset(rnd, 0xa5, sizeof rnd);
    memcpy(rnd, &n, sizeof n);
    uuid_v7_format(T0 + (int64_t)n, rnd, s->id);
    snprintf(s->user_id, sizeof s->user_id, "%s", user_id);
    s->created_at = s->last_used_at = T0;
    s->expires_at = T0 + HOUR;
    s->ip = "127.0.0.1";
    s->user_agent = "test/1.0";
}

static void mk_hash(uint8_t h[REPO_HASH_LEN], unsigned tag)
{
    unsigned i;

    for (i = 0; i < REPO_HASH_LEN; i++)
        h[i] = (uint8_t)(i * 7u);
    memcpy(h, &tag, sizeof tag);          /* distinct tags, distinct hashes */
}

/* ---------------------------------------------------- rotation racing */

struct rot {
    struct repo *r;
    pthread_barrier_t *go;
    const uint8_t *parent;
    uint8_t child[REPO_HASH_LEN];
    int64_t now;
    enum rotate_result res;
    enum as_err err;
    struct session out;
    struct arena *a;
};

static void *rot_thread(void *p)
{
    struct rot *x = p;

    pthread_barrier_wait(x->go);
    x->err = repo_refresh_rotate(x->r, x->parent, x->child, x->now,
                                 GRACE_MS, x->now + 5 * HOUR, LIFE,
                                 &x->res, &x->out, x->a);
    return NULL;
}

/* RACE_ROUNDS rounds of RACE_THREADS threads presenting one fresh token
 * at once (each its own child and a `now` within the grace): one OK, the
 * rest GRACE, no REUSED, no error; the winner's child works, the session
 * stays live. Then the parent past the grace is a replay. */
static void test_rotation_race(void **state)
{
    NEED(f);
    struct rot x[RACE_THREADS];
    pthread_t th[RACE_THREADS];
    pthread_barrier_t go;
    struct session_state st;
    struct session s, got;
    struct user u;
    struct arena *a = arena_new();
    uint8_t parent[REPO_HASH_LEN];
    char email[64];
    const uint8_t *winner;
    enum rotate_result res;
    int i, round, ok, grace, reused, errs;

    assert_non_null(a);
    mk_user(&u, 1, email, sizeof email);
    assert_int_equal(repo_user_insert(f->r, &u), AS_OK);
    for (round = 0; round < RACE_ROUNDS; round++) {
        mk_session(&s, (unsigned)round + 10, u.id);
        mk_hash(parent, (unsigned)round * 100 + 1);
        assert_int_equal(repo_session_create(f->r, &s, parent, NULL), AS_OK);
        pthread_barrier_init(&go, NULL, RACE_THREADS);
        for (i = 0; i < RACE_THREADS; i++) {
            memset(&x[i], 0, sizeof x[i]);
            x[i].r = f->r;
            x[i].go = &go;
            x[i].parent = parent;
            mk_hash(x[i].child, (unsigned)round * 100 + 2 + (unsigned)i);
            x[i].now = T0 + 1000 + i;
            x[i].err = AS_ERR_INTERNAL;
            x[i].res = ROTATE_INVALID;
            x[i].a = arena_new();
            assert_non_null(x[i].a);
            assert_int_equal(pthread_create(&th[i], NULL, rot_thread,
                                            &x[i]), 0);
        }
        ok = grace = reused = errs = 0;
        winner = NULL;
        for (i = 0; i < RACE_THREADS; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        for (i = 0; i < RACE_THREADS; i++) {
            errs += x[i].err != AS_OK;
            ok += x[i].res == ROTATE_OK;
            grace += x[i].res == ROTATE_GRACE;
            reused += x[i].res == ROTATE_REUSED;
            if (x[i].res == ROTATE_OK)
                winner = x[i].child;
            if (x[i].err == AS_OK)
                assert_string_equal(x[i].out.id, s.id);
        }
        if (errs || ok != 1 || grace != RACE_THREADS - 1 || reused)
            fail_msg("%s round %d: %d errors, %d OK, %d GRACE, %d REUSED",
                     repo_backend(f->r), round, errs, ok, grace, reused);
        assert_int_equal(repo_refresh_session(f->r, winner, T0 + 2000, NULL,
                                              &got, a), AS_OK);
        assert_string_equal(got.id, s.id);
        assert_int_equal(repo_session_state(f->r, s.id, T0 + 2000, &st),
                         AS_OK);
        assert_true(st.live);
        for (i = 0; i < RACE_THREADS; i++)
            arena_free(x[i].a);
        /* The parent again, past the grace: a replay, the session ends. */
        assert_int_equal(repo_refresh_rotate(f->r, parent, x[0].child,
                                             T0 + 1000 + GRACE_MS + 100,
                                             GRACE_MS, T0 + 5 * HOUR, LIFE,
                                             &res, &got, a), AS_OK);
        assert_int_equal(res, ROTATE_REUSED);
        assert_int_equal(repo_session_state(f->r, s.id, T0 + 20000, &st),
                         AS_OK);
        assert_false(st.live);
    }
    arena_free(a);
}

/* ------------------------------------ rotation against revocation */

struct ender {
    struct repo *r;
    pthread_barrier_t *go;
    const char *user_id;
    bool deactivate;                  /* else: logout everywhere */
    enum as_err err;
};

static void *ender_thread(void *p)
{
    struct ender *x = p;
    struct user_patch up = { .set = UF_ACTIVE, .is_active = false };

    pthread_barrier_wait(x->go);
    x->err = x->deactivate
                 ? repo_user_patch(x->r, x->user_id, &up, T0 + 1500, NULL,
                                   NULL)
                 : repo_session_revoke_all(x->r, x->user_id, NULL,
                                           T0 + 1500);
    return NULL;
}

/* The rotation reads the session's facts and then consumes the token
 * (a read, then a compare-and-set): raced against a logout everywhere
 * or a deactivation of the user, it either rotated before the end (OK)
 * or finds the session ended (INVALID), never fails, and whatever the
 * order, neither the parent nor the child works afterwards. */
static void test_rotation_against_revocation(void **state)
{
    NEED(f);
    pthread_barrier_t go;
    pthread_t th[2];
    struct session_state st;
    struct session s, got;
    struct user u;
    struct user_patch on = { .set = UF_ACTIVE, .is_active = true };
    struct ender e;
    struct rot x;
    struct arena *a = arena_new();
    uint8_t parent[REPO_HASH_LEN];
    char email[64];
    int round, ok = 0, invalid = 0;

    assert_non_null(a);
    mk_user(&u, 2, email, sizeof email);
    assert_int_equal(repo_user_insert(f->r, &u), AS_OK);
    for (round = 0; round < RACE_ROUNDS * 2; round++) {
        assert_int_equal(repo_user_patch(f->r, u.id, &on, T0, NULL, NULL),
                         AS_OK);
        mk_session(&s, (unsigned)round + 500, u.id);
        mk_hash(parent, (unsigned)round * 100 + 50001);
        assert_int_equal(repo_session_create(f->r, &s, parent, NULL), AS_OK);
        pthread_barrier_init(&go, NULL, 2);
        memset(&x, 0, sizeof x);
        x.r = f->r;
        x.go = &go;
        x.parent = parent;
        mk_hash(x.child, (unsigned)round * 100 + 50002);
        x.now = T0 + 1000;
        x.err = AS_ERR_INTERNAL;
        x.a = arena_new();
        assert_non_null(x.a);
        e = (struct ender){ .r = f->r, .go = &go, .user_id = u.id,
                            .deactivate = round % 2 == 1,
                            .err = AS_ERR_INTERNAL };
        assert_int_equal(pthread_create(&th[0], NULL, rot_thread, &x), 0);
        assert_int_equal(pthread_create(&th[1], NULL, ender_thread, &e), 0);
        pthread_join(th[0], NULL);
        pthread_join(th[1], NULL);
        pthread_barrier_destroy(&go);
        if (x.err != AS_OK || e.err != AS_OK ||
            (x.res != ROTATE_OK && x.res != ROTATE_INVALID))
            fail_msg("%s round %d: rotation error %d result %d, end %d",
                     repo_backend(f->r), round, (int)x.err, (int)x.res,
                     (int)e.err);
        ok += x.res == ROTATE_OK;
        invalid += x.res == ROTATE_INVALID;
        assert_int_equal(repo_session_state(f->r, s.id, T0 + 2000, &st),
                         AS_OK);
        assert_false(st.live);
        assert_int_equal(repo_refresh_session(f->r, x.child, T0 + 2000,
                                              NULL, &got, a), AS_ERR_NOT_FOUND);
        assert_int_equal(repo_refresh_session(f->r, parent, T0 + 2000,
                                              &EVERY_KEPT, &got, a), AS_ERR_NOT_FOUND);
        arena_free(x.a);
    }
    print_message("%s: %d rotated before the end, %d found it ended\n",
                  repo_backend(f->r), ok, invalid);
    arena_free(a);
}

/* ----------------------------------------- connections killed (pg) */

/* The outcome of one call that must work, once the pool and the breaker
 * let it: AS_ERR_UNAVAILABLE is waited out (counted); any other error is
 * kept in `w->failed` and ends the pass (threads never assert). */
#define SETTLED(w, call)                                                   \
    do {                                                                   \
        uint64_t until_ = clock_mono_ms() + SETTLE_MS;                     \
        enum as_err e_;                                                    \
        while ((e_ = (call)) == AS_ERR_UNAVAILABLE &&                      \
               clock_mono_ms() < until_) {                                 \
            (w)->unavailable++;                                            \
            pause_ms(20);                                                  \
        }                                                                  \
        if (e_ != AS_OK) {                                                 \
            snprintf((w)->failed, sizeof (w)->failed, "%s: error %d",      \
                     #call, (int)e_);                                      \
            goto out;                                                      \
        }                                                                  \
    } while (0)

/* A fact a thread checks: false is kept in `w->failed`, ends the pass. */
#define CHECK(w, cond)                                                     \
    do {                                                                   \
        if (!(cond)) {                                                     \
            snprintf((w)->failed, sizeof (w)->failed, "not %s", #cond);    \
            goto out;                                                      \
        }                                                                  \
    } while (0)

struct work {
    struct repo *r;
    pthread_barrier_t *go;
    unsigned id, round;
    unsigned unavailable;
    char failed[256];
};

/* One pass over statements of the users and sessions areas, as a request
 * mix would run them. */
static void *work_thread(void *p)
{
    struct work *w = p;
    unsigned n = 1000 + w->round * 10 + w->id;
    struct arena *a = arena_new();
    struct session_state st;
    struct session s, got, *list;
    struct user u, back;
    uint8_t h[REPO_HASH_LEN], c[REPO_HASH_LEN];
    enum rotate_result res = ROTATE_INVALID;
    char email[64];
    int64_t cnt;
    size_t k;

    mk_user(&u, n, email, sizeof email);
    mk_session(&s, n, u.id);
    mk_hash(h, n * 2);
    mk_hash(c, n * 2 + 1);
    pthread_barrier_wait(w->go);
    CHECK(w, a != NULL);
    SETTLED(w, repo_user_insert(w->r, &u));
    SETTLED(w, repo_user_by_id(w->r, u.id, &back, a));
    SETTLED(w, repo_user_by_email(w->r, u.email, &back, a));
    SETTLED(w, repo_session_create(w->r, &s, h, NULL));
    SETTLED(w, repo_refresh_rotate(w->r, h, c, T0 + 10, GRACE_MS,
                                   T0 + 2 * HOUR, LIFE, &res, &got, a));
    CHECK(w, res == ROTATE_OK);
    SETTLED(w, repo_refresh_session(w->r, c, T0 + 20, NULL, &got, a));
    SETTLED(w, repo_session_state(w->r, s.id, T0 + 20, &st));
    CHECK(w, st.live);
    SETTLED(w, repo_session_list(w->r, u.id, T0 + 20, &list, &k, a));
    CHECK(w, k == 1);
    SETTLED(w, repo_user_set_password(w->r, u.id, u.password_hash, NULL,
                                      T0 + 30));
    SETTLED(w, repo_session_state(w->r, s.id, T0 + 40, &st));
    CHECK(w, !st.live);
    SETTLED(w, repo_user_count(w->r, false, &cnt));
    SETTLED(w, repo_user_delete(w->r, u.id, 1000));
out:
    arena_free(a);
    return NULL;
}

static unsigned run_workers(struct fx *f, unsigned round)
{
    struct work w[WORKERS];
    pthread_t th[WORKERS];
    pthread_barrier_t go;
    unsigned i, unavailable = 0;

    pthread_barrier_init(&go, NULL, WORKERS);
    for (i = 0; i < WORKERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].r = f->r;
        w[i].go = &go;
        w[i].id = i;
        w[i].round = round;
        assert_int_equal(pthread_create(&th[i], NULL, work_thread, &w[i]),
                         0);
    }
    for (i = 0; i < WORKERS; i++) {
        pthread_join(th[i], NULL);
        unavailable += w[i].unavailable;
    }
    for (i = 0; i < WORKERS; i++)
        if (w[i].failed[0])
            fail_msg("round %u, worker %u: %s", round, i, w[i].failed);
    pthread_barrier_destroy(&go);
    return unavailable;
}

/* Kills every backend of the repository's pool and waits until the
 * server has let them go. Returns how many there were. */
static int64_t kill_pool(struct fx *f)
{
    uint64_t deadline = clock_mono_ms() + 20000;
    int64_t n = side_int(f, "SELECT count(pg_terminate_backend(pid)) FROM "
                         "pg_stat_activity WHERE application_name = '%s'",
                         f->app);

    while (side_int(f, "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = '%s'", f->app) != 0) {
        if (clock_mono_ms() > deadline)
            fail_msg("the pool's backends did not go away");
        pause_ms(10);
    }
    return n;
}

/* Each round: the workers use every pooled connection (so each has its
 * statements prepared), then all of them are terminated between calls;
 * the next round must work on new connections, the first call already:
 * a killed connection is found at checkout, before any statement. */
static void test_pool_killed_between_calls(void **state)
{
    NEED(f);
    unsigned round, unavailable = 0;
    int64_t killed, total = 0;

    for (round = 0; round < KILL_ROUNDS; round++) {
        unavailable += run_workers(f, round);
        killed = kill_pool(f);
        assert_true(killed >= 1);
        total += killed;
    }
    unavailable += run_workers(f, round);
    print_message("pool killed %u times (%lld backends), %u calls "
                  "unavailable before working again\n", KILL_ROUNDS,
                  (long long)total, unavailable);
    assert_int_equal(unavailable, 0);
}

/* A rotation at T0 + 20, waiting out AS_ERR_UNAVAILABLE (an open
 * breaker) for at most SETTLE_MS. */
static enum as_err settled_rotate(struct repo *r, const uint8_t *h,
                                  const uint8_t *c, enum rotate_result *res,
                                  struct session *got, struct arena *a)
{
    uint64_t until = clock_mono_ms() + SETTLE_MS;
    enum as_err e;

    while ((e = repo_refresh_rotate(r, h, c, T0 + 20, GRACE_MS,
                                    T0 + 2 * HOUR, LIFE, res, got, a))
               == AS_ERR_UNAVAILABLE && clock_mono_ms() < until)
        pause_ms(20);
    return e;
}

/* A statement timeout in a transaction, then a failed statement in
 * another: the one pooled connection is kept (same backend) and its
 * prepared statements still run. */
static void test_connection_kept_after_errors(void **state)
{
    NEED(f);
    struct arena *a = arena_new();
    struct session_state st;
    struct session s, got;
    struct user u;
    uint8_t h[REPO_HASH_LEN], c[REPO_HASH_LEN];
    enum rotate_result res;
    char email[64];
    int64_t pid;
    enum as_err e;

    assert_non_null(a);
    mk_user(&u, 7, email, sizeof email);
    mk_session(&s, 7, u.id);
    mk_hash(h, 70);
    mk_hash(c, 71);
    assert_int_equal(repo_user_insert(f->r, &u), AS_OK);
    assert_int_equal(repo_session_create(f->r, &s, h, NULL), AS_OK);
    pid = side_int(f, "SELECT pid FROM pg_stat_activity "
                   "WHERE application_name = '%s'", f->app);
    /* The session's row held elsewhere: the rotation times out. */
    PQclear(side_q(f, "BEGIN"));
    PQclear(side_q(f, "SELECT 1 FROM sessions WHERE id = '%s' FOR UPDATE",
                   s.id));
    e = repo_refresh_rotate(f->r, h, c, T0 + 10, GRACE_MS, T0 + 2 * HOUR,
                            LIFE, &res, &got, a);
    assert_int_equal(e, AS_ERR_UNAVAILABLE);
    assert_int_equal(res, ROTATE_INVALID);
    PQclear(side_q(f, "ROLLBACK"));
    /* The same session again: a failed insert inside its transaction. */
    assert_int_not_equal(repo_session_create(f->r, &s, c, NULL), AS_OK);
    /* The breaker may have opened (threshold 3): wait it out. */
    e = settled_rotate(f->r, h, c, &res, &got, a);
    assert_int_equal(e, AS_OK);
    assert_int_equal(res, ROTATE_OK);
    assert_int_equal(repo_session_state(f->r, s.id, T0 + 30, &st), AS_OK);
    assert_true(st.live);
    assert_int_equal(side_int(f, "SELECT pid FROM pg_stat_activity "
                              "WHERE application_name = '%s'", f->app),
                     pid);
    arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rotation_race, setup_sqlite,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rotation_race, setup_pg,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rotation_against_revocation,
                                        setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_against_revocation,
                                        setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_pool_killed_between_calls,
                                        setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_connection_kept_after_errors,
                                        setup_pg_one, teardown),
    };

    log_init(LOG_ERROR, 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
