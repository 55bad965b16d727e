/* Session cache: freshness, forgetting, and answers while the database
 * is down; plus the work pool it shares the request path with. */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "arena.h"
#include "cfg.h"
#include "repo/repo_int.h"
#include "scache.h"
#include "uuid.h"
#include "workpool.h"

static atomic_int calls;
static enum as_err next_err;
static bool next_live;
/* The owner the fake database answers (U1 when NULL), and whether it says
 * every session ended (set by a racing revoker). */
static const char *fake_owner;
static atomic_bool all_ended;
/* Runs inside the database read, after the answer was taken: a
 * revocation landing between the read and the store. */
static void (*during_read)(void);

static enum as_err fake_state(void *impl, const char *sid, int64_t now,
                              struct session_state *out)
{
    (void)impl;
    (void)sid;
    (void)now;
    calls++;
    if (next_err != AS_OK)
        return next_err;
    out->live = next_live && !atomic_load(&all_ended);
    out->role = ROLE_USER;
    snprintf(out->user_id, sizeof out->user_id, "%s",
             fake_owner ? fake_owner
                        : "0190c1d2-0000-7000-8000-0000000000aa");  /* U1 */
    if (during_read)
        during_read();
    return AS_OK;
}

static int user_calls;

static enum as_err fake_user(void *impl, const char *id, struct user *out,
                             struct arena *a)
{
    (void)impl;
    (void)a;
    user_calls++;
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", id);
    out->email = "ada@example.com";
    out->is_active = true;
    return AS_OK;
}

static void fake_close(void *impl)
{
    (void)impl;
}

static const struct repo_ops fake = {
    .name = "fake", .session_state = fake_state, .user_by_id = fake_user,
    .close = fake_close,
};

static struct repo *fake_repo(void)
{
    struct cfg c = { .cb_failure_threshold = 1000, .cb_open_seconds = 1 };
    struct repo *r = NULL;

    assert_int_equal(repo_wrap(&c, &fake, NULL, &r), AS_OK);
    return r;
}

static const char *S1 = "0190c1d2-0000-7000-8000-000000000001";
static const char *S2 = "0190c1d2-0000-7000-8000-000000000002";
static const char *U1 = "0190c1d2-0000-7000-8000-0000000000aa";

static void test_fresh_answers_are_cached(void **state)
{
    struct repo *r = fake_repo();
    struct scache *c = scache_new(128, 60000);
    struct session_state st;

    (void)state;
    calls = 0;
    next_err = AS_OK;
    next_live = true;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_true(st.live);
    next_live = false;                  /* revoked elsewhere */
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_true(st.live);               /* still within the ttl */
    assert_int_equal(calls, 1);
    scache_forget(c, S1);               /* revoked here: seen at once */
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_false(st.live);
    assert_int_equal(calls, 2);
    scache_free(c);
    repo_close(r);
}

/* The process's anonymous resident memory, KiB (Linux). */
static long rss_anon_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");

    assert_non_null(f);
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Forgetting all (what a PostgreSQL instance's notification listener
 * does when it connects) forgets sessions and user rows, keeps no stale
 * answer for an outage, and touches no page of the table: the daemon's
 * table (65,536 slots) is 26 MiB of which an idle instance should keep
 * next to nothing resident. */
static void test_forget_all(void **state)
{
    struct repo *r = fake_repo();
    struct scache *c = scache_new(65536, 60000);
    struct session_state st;
    struct user u;
    struct arena *a = arena_new();
    long before, after;

    (void)state;
    assert_non_null(c);
    assert_non_null(a);
    calls = user_calls = 0;
    next_err = AS_OK;
    next_live = true;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_int_equal(scache_user(c, r, U1, &u, a), AS_OK);
    assert_int_equal(scache_user(c, r, U1, &u, a), AS_OK);
    assert_int_equal(user_calls, 1);
    before = rss_anon_kib();
    scache_forget_all(c);
    after = rss_anon_kib();
    assert_true(after - before < 1024);
    next_err = AS_ERR_UNAVAILABLE;      /* no stale answer after it */
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_ERR_UNAVAILABLE);
    next_err = AS_OK;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_int_equal(calls, 3);         /* asked again once, then cached */
    assert_int_equal(scache_user(c, r, U1, &u, a), AS_OK);
    assert_int_equal(user_calls, 2);
    arena_free(a);
    scache_free(c);
    repo_close(r);
}

static void test_ttl_zero_always_asks(void **state)
{
    struct repo *r = fake_repo();
    struct scache *c = scache_new(128, 0);
    struct session_state st;

    (void)state;
    calls = 0;
    next_err = AS_OK;
    next_live = true;
    scache_check(c, r, S1, U1, &st);
    scache_check(c, r, S1, U1, &st);
    assert_int_equal(calls, 2);
    scache_free(c);
    repo_close(r);
}

/* A session is filed under its owner as the database names it, not
 * under the subject of the token that asked: a token naming another
 * user's session leaves nothing that a revocation of the owner's
 * sessions would miss. */
static void test_filed_under_the_owner(void **state)
{
    static const char *U2 = "0190c1d2-0000-7000-8000-0000000000bb";
    struct repo *r = fake_repo();
    struct scache *c = scache_new(128, 3600 * 1000);
    struct session_state st;

    (void)state;
    next_err = AS_OK;
    next_live = true;
    assert_int_equal(scache_check(c, r, S1, U2, &st), AS_OK);
    assert_string_equal(st.user_id, U1);
    assert_true(scache_peek(c, S1, &st));
    scache_forget_user(c, U2);                /* not U2's: still there */
    assert_true(scache_peek(c, S1, &st));
    scache_forget_user(c, U1);
    assert_false(scache_peek(c, S1, &st));
    scache_free(c);
    repo_close(r);
}

static struct scache *revoking_cache;
static bool revoke_by_user;

/* The revocation: the database says "ended" from now on, and this
 * instance forgets the session (or every session of its user). */
static void revoke_now(void)
{
    next_live = false;
    if (revoke_by_user)
        scache_forget_user(revoking_cache, U1);
    else
        scache_forget(revoking_cache, S1);
}

/* A read that saw the session live, overtaken by a revocation before it
 * stores its answer, must not put the live answer back in the cache. */
static void test_revoke_between_read_and_store(void **state)
{
    struct repo *r = fake_repo();
    struct scache *c = scache_new(128, 60000);
    struct session_state st;
    int round;

    (void)state;
    for (round = 0; round < 2; round++) {
        revoking_cache = c;
        revoke_by_user = round == 1;
        calls = 0;
        next_err = AS_OK;
        next_live = true;
        during_read = revoke_now;
        assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
        assert_true(st.live);           /* the read predates the revoke */
        during_read = NULL;
        assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
        assert_false(st.live);          /* not served the stale answer */
        assert_int_equal(calls, 2);
        /* Without a revocation in between, answers are cached again. */
        assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
        assert_int_equal(calls, 2);
        scache_forget(c, S1);
    }
    scache_free(c);
    repo_close(r);
}

static int ran;

static void job(void *arg)
{
    __atomic_add_fetch(&ran, 1, __ATOMIC_SEQ_CST);
    if (arg)
        usleep(20000);
}

static void test_workpool_bounds(void **state)
{
    struct workpool *p = workpool_new(1, 2);
    int accepted = 0, i;

    (void)state;
    ran = 0;
    for (i = 0; i < 50; i++)
        accepted += workpool_submit(p, job, &ran);
    /* one running and two queued at most while the first sleeps */
    assert_true(accepted >= 2 && accepted < 50);
    workpool_free(p);                   /* runs what was queued */
    assert_int_equal(ran, accepted);
}

/* ---- a fake clock: set-associativity and refresh ahead of expiry ---- */

static _Atomic uint64_t fake_ms;

static uint64_t fake_now(void)
{
    return fake_ms;
}

static void sid_n(char out[UUID_STR_LEN], unsigned n)
{
    /* scattered, as real ids hash: not eight in a row */
    snprintf(out, UUID_STR_LEN, "0190c1d2-0000-7000-8000-%012llx",
             (unsigned long long)(n + 1) * 0x9e3779b97f4aull % 0xffffffffffffull);
}

/* While the database is down: a sole writer (SQLite) answers a session
 * seen before whatever its entry's age; on a shared database (other
 * instances go on revoking meanwhile) never past the time to live; with
 * a time to live of 0 nothing is answered without the database. */
static void test_forget_user_and_database_down(void **state)
{
    struct repo *r = fake_repo();
    struct session_state st;
    struct scache *c;
    int sole;

    (void)state;
    for (sole = 0; sole < 2; sole++) {
        c = scache_new(128, 1000);
        scache_set_clock(c, fake_now);
        scache_set_sole_writer(c, sole);
        fake_ms = 5000;
        next_err = AS_OK;
        next_live = true;
        assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
        next_err = AS_ERR_UNAVAILABLE;
        fake_ms = 5999;                 /* within the time to live */
        assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
        assert_true(st.live);
        fake_ms = 6000;                 /* past it */
        assert_int_equal(scache_check(c, r, S1, U1, &st),
                         sole ? AS_OK : AS_ERR_UNAVAILABLE);
        fake_ms = 5000 + 3600 * 1000;   /* an hour on */
        assert_int_equal(scache_check(c, r, S1, U1, &st),
                         sole ? AS_OK : AS_ERR_UNAVAILABLE);
        /* never seen: the database's error */
        assert_int_equal(scache_check(c, r, S2, U1, &st),
                         AS_ERR_UNAVAILABLE);
        scache_forget_user(c, U1);
        assert_int_equal(scache_check(c, r, S1, U1, &st),
                         AS_ERR_UNAVAILABLE);
        /* a client error is not an outage: no stale answer */
        next_err = AS_OK;
        scache_check(c, r, S1, U1, &st);
        next_err = AS_ERR_NOT_FOUND;
        fake_ms += 3600 * 1000;
        assert_int_equal(scache_check(c, r, S1, U1, &st), AS_ERR_NOT_FOUND);
        assert_int_equal(scache_check(c, r, "x", U1, &st), AS_ERR_NOT_FOUND);
        scache_free(c);
    }
    c = scache_new(128, 0);             /* 0: always the database */
    scache_set_clock(c, fake_now);
    scache_set_sole_writer(c, true);
    next_err = AS_OK;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    next_err = AS_ERR_UNAVAILABLE;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_ERR_UNAVAILABLE);
    scache_free(c);
    repo_close(r);
}

/* A listener's marks (scache_heard()): entries answer while the last
 * mark is at most SCACHE_HEARD_SLACK_MS old, then only the database does
 * (the process stood still: revocations may wait unread); a mark of 0
 * lifts the check, the time to live alone bounding entries. Sessions and
 * user rows alike. */
static void test_entries_answer_only_while_the_listener_keeps_up(
    void **state)
{
    struct repo *r = fake_repo();
    struct session_state st;
    struct arena *a = arena_new();
    struct scache *c = scache_new(128, 60000);
    struct user u;
    int before;

    (void)state;
    scache_set_clock(c, fake_now);
    fake_ms = 10000;
    next_err = AS_OK;
    next_live = true;
    scache_heard(c, scache_mark(c));
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_int_equal(scache_user(c, r, U1, &u, a), AS_OK);
    fake_ms = 10000 + SCACHE_HEARD_SLACK_MS;       /* the slack: cached */
    before = calls;
    assert_true(scache_peek(c, S1, &st));
    assert_true(scache_user_peek(c, U1, &u, a));
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_int_equal(calls, before);
    fake_ms++;                                     /* past it */
    assert_false(scache_peek(c, S1, &st));
    assert_false(scache_user_peek(c, U1, &u, a));
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_int_equal(calls, before + 1);           /* the database's */
    /* the listener caught up: the entries answer again */
    scache_heard(c, scache_mark(c));
    fake_ms += 1000;
    assert_false(scache_peek(c, S1, &st));
    scache_heard(c, scache_mark(c));
    assert_true(scache_peek(c, S1, &st));
    assert_true(scache_user_peek(c, U1, &u, a));
    /* no mark out (no connection, or a call of its own): the time to
     * live alone */
    scache_heard(c, 0);
    fake_ms += 30000;
    assert_true(scache_peek(c, S1, &st));
    fake_ms += 30000;
    assert_false(scache_peek(c, S1, &st));
    /* a mark taken after the reader's clock read does not wrap */
    scache_heard(c, fake_ms + 5);
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_true(scache_peek(c, S1, &st));
    /* the listener's mark stale (its connection silent) and the
     * database failing too (hung): entries answer within the time to
     * live, as without a mark (a review: after a hang every seen
     * session got 503); a refusal of the database's is no outage */
    scache_heard(c, scache_mark(c));
    next_err = AS_OK;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    fake_ms += 1000;
    before = calls;
    next_err = AS_ERR_UNAVAILABLE;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_int_equal(calls, before + 1);           /* asked first */
    next_err = AS_ERR_NOT_FOUND;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_ERR_NOT_FOUND);
    next_err = AS_ERR_UNAVAILABLE;
    fake_ms += 60000;                              /* past the ttl */
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_ERR_UNAVAILABLE);
    next_err = AS_OK;
    scache_free(c);
    arena_free(a);
    repo_close(r);
}

static void slow_read(void)
{
    fake_ms += 900;                     /* the reply comes late */
}

/* An entry's age counts from the start of the read that made it: a
 * reply that came late (a slow pool, a stalled server) was stored as if
 * read on arrival, and answered for its delay past the time to live
 * (a review). */
static void test_an_entry_is_as_old_as_its_read(void **state)
{
    struct repo *r = fake_repo();
    struct session_state st;
    struct scache *c = scache_new(128, 1000);
    int before;

    (void)state;
    scache_set_clock(c, fake_now);
    fake_ms = 50000;
    next_err = AS_OK;
    next_live = true;
    during_read = slow_read;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    during_read = NULL;
    assert_int_equal(fake_ms, 50900);
    fake_ms = 50999;                    /* within the ttl of the read */
    assert_true(scache_peek(c, S1, &st));
    fake_ms = 51000;                    /* past it, 100 ms after arrival */
    assert_false(scache_peek(c, S1, &st));
    before = calls;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_int_equal(calls, before + 1);
    scache_free(c);
    repo_close(r);
}

/* One set of eight: eight sessions, however they hash, all stay cached
 * (a direct-mapped table of eight slots loses most of them to
 * collisions); a ninth replaces the one fetched longest ago. */
static void test_a_set_holds_eight_sessions(void **state)
{
    struct repo *r = fake_repo();
    struct scache *c = scache_new(8, 60000);
    struct session_state st;
    char sid[UUID_STR_LEN];
    unsigned i;

    (void)state;
    scache_set_clock(c, fake_now);
    next_err = AS_OK;
    next_live = true;
    calls = 0;
    for (i = 0; i < 8; i++) {
        fake_ms = 1000 + i;
        sid_n(sid, i);
        assert_int_equal(scache_check(c, r, sid, U1, &st), AS_OK);
    }
    for (i = 0; i < 8; i++) {
        sid_n(sid, i);
        assert_true(scache_peek(c, sid, &st));
    }
    assert_int_equal(calls, 8);
    fake_ms = 2000;
    sid_n(sid, 8);
    assert_int_equal(scache_check(c, r, sid, U1, &st), AS_OK);
    sid_n(sid, 0);                      /* the oldest went */
    assert_false(scache_peek(c, sid, &st));
    for (i = 1; i <= 8; i++) {
        sid_n(sid, i);
        assert_true(scache_peek(c, sid, &st));
    }
    /* and the next goes where the oldest now is, not where the newest
     * (session 8, in the first slot) is */
    fake_ms = 2001;
    sid_n(sid, 9);
    assert_int_equal(scache_check(c, r, sid, U1, &st), AS_OK);
    sid_n(sid, 1);
    assert_false(scache_peek(c, sid, &st));
    for (i = 2; i <= 9; i++) {
        sid_n(sid, i);
        assert_true(scache_peek(c, sid, &st));
    }
    scache_free(c);
    repo_close(r);
}

/* In the last quarter of its time to live an entry is still served, and
 * exactly one caller is asked to refresh it; the refresh renews it, so a
 * busy session never expires into a burst of database reads. */
static void test_refresh_ahead_of_expiry(void **state)
{
    struct repo *r = fake_repo();
    struct scache *c = scache_new(1024, 4000);
    struct session_state st;
    bool refresh;

    (void)state;
    scache_set_clock(c, fake_now);
    next_err = AS_OK;
    next_live = true;
    calls = 0;
    fake_ms = 10000;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    fake_ms = 12999;
    assert_true(scache_peek_refresh(c, S1, &st, &refresh));
    assert_false(refresh);
    fake_ms = 13000;                    /* the last quarter */
    assert_true(scache_peek_refresh(c, S1, &st, &refresh));
    assert_true(refresh);
    assert_true(scache_peek_refresh(c, S1, &st, &refresh));
    assert_false(refresh);              /* claimed once */
    assert_true(scache_peek(c, S1, &st));
    next_live = false;                  /* what the refresh will read */
    scache_refresh(c, r, S1, U1);
    assert_int_equal(calls, 2);
    fake_ms = 14500;                    /* past the first answer's ttl */
    assert_true(scache_peek_refresh(c, S1, &st, &refresh));
    assert_false(st.live);              /* the refreshed answer */
    assert_false(refresh);
    fake_ms = 13000 + 3000;             /* the new answer's last quarter */
    assert_true(scache_peek_refresh(c, S1, &st, &refresh));
    assert_true(refresh);

    /* A refresh that fails leaves the entry to expire at its time. */
    next_err = AS_ERR_UNAVAILABLE;
    scache_refresh(c, r, S1, U1);
    fake_ms = 13000 + 3999;
    assert_true(scache_peek_refresh(c, S1, &st, &refresh));
    assert_false(refresh);
    fake_ms = 13000 + 4000;
    assert_false(scache_peek_refresh(c, S1, &st, &refresh));
    next_err = AS_OK;

    /* A revocation landing during the refresh's read wins. */
    next_live = true;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    fake_ms += 3000;
    assert_true(scache_peek_refresh(c, S1, &st, &refresh));
    assert_true(refresh);
    revoking_cache = c;
    revoke_by_user = false;
    during_read = revoke_now;
    scache_refresh(c, r, S1, U1);
    during_read = NULL;
    assert_false(scache_peek(c, S1, &st));
    scache_free(c);
    repo_close(r);
}

#define CLAIMERS 8

static struct scache *claim_cache;
static atomic_int claims;
static pthread_barrier_t claim_start;

static void *claimer(void *arg)
{
    struct session_state st;
    bool refresh = false;

    (void)arg;
    pthread_barrier_wait(&claim_start);
    if (scache_peek_refresh(claim_cache, S1, &st, &refresh) && refresh)
        atomic_fetch_add(&claims, 1);
    return NULL;
}

/* Many HTTP threads at the same instant: one of them refreshes. */
static void test_one_refresh_among_racing_readers(void **state)
{
    struct repo *r = fake_repo();
    pthread_t t[CLAIMERS];
    struct session_state st;
    int round, i;

    (void)state;
    claim_cache = scache_new(1024, 4000);
    scache_set_clock(claim_cache, fake_now);
    next_err = AS_OK;
    next_live = true;
    for (round = 0; round < 200; round++) {
        fake_ms = 100000 + (uint64_t)round * 10000;
        scache_forget(claim_cache, S1);
        assert_int_equal(scache_check(claim_cache, r, S1, U1, &st), AS_OK);
        fake_ms += 3500;
        atomic_store(&claims, 0);
        pthread_barrier_init(&claim_start, NULL, CLAIMERS);
        for (i = 0; i < CLAIMERS; i++)
            pthread_create(&t[i], NULL, claimer, NULL);
        for (i = 0; i < CLAIMERS; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&claim_start);
        assert_int_equal(atomic_load(&claims), 1);
    }
    scache_free(claim_cache);
    repo_close(r);
}


static double thread_cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Forgetting a user's sessions in the daemon's full-size cache forgets
 * all of theirs, wherever they are filed, keeps another user's, and is
 * one step rather than a walk over every slot: 20,000 of them (a login
 * at AUTH_MAX_SESSIONS_PER_USER makes one) take well under a second of
 * CPU time (a walk took about 0.9 ms each). */
static void test_forget_user_is_one_step(void **state)
{
    static const char *U2 = "0190c1d2-0000-7000-8000-0000000000bb";
    struct repo *r = fake_repo();
    struct scache *c = scache_new(65536, 3600 * 1000);
    struct session_state st;
    char sid[UUID_STR_LEN];
    double cpu0;
    unsigned i;

    (void)state;
    next_err = AS_OK;
    next_live = true;
    for (i = 0; i < 64; i++) {
        sid_n(sid, i);
        fake_owner = i % 2 ? U2 : U1;
        assert_int_equal(scache_check(c, r, sid, NULL, &st), AS_OK);
    }
    fake_owner = NULL;
    calls = 0;
    scache_forget_user(c, U1);
    for (i = 0; i < 64; i++) {
        sid_n(sid, i);
        assert_true(scache_peek(c, sid, &st) == (i % 2 == 1));
    }
    cpu0 = thread_cpu_s();
    for (i = 0; i < 20000; i++)
        scache_forget_user(c, U1);
    assert_true(thread_cpu_s() - cpu0 < 0.5);
    for (i = 1; i < 64; i += 2) {
        sid_n(sid, i);
        assert_true(scache_peek(c, sid, &st));
    }
    assert_int_equal(calls, 0);
    scache_free(c);
    repo_close(r);
}

#define READERS 3
#define ROUNDS 300

static struct scache *race_cache;
static struct repo *race_repo;
static atomic_bool race_stop;

static void *reader(void *arg)
{
    struct session_state st;
    char sid[UUID_STR_LEN];
    unsigned i = (unsigned)(uintptr_t)arg;

    while (!atomic_load(&race_stop)) {
        sid_n(sid, i++ % 8);
        (void)scache_check(race_cache, race_repo, sid, U1, &st);
    }
    return NULL;
}

/* Readers keep reading and storing a user's eight sessions while that
 * user's sessions end and are forgotten: once the forget has returned,
 * no answer of the cache says live, ROUNDS times. */
static void test_forget_user_while_readers_store(void **state)
{
    pthread_t t[READERS];
    struct session_state st;
    char sid[UUID_STR_LEN];
    int round, i, k;

    (void)state;
    race_repo = fake_repo();
    race_cache = scache_new(65536, 3600 * 1000);
    next_err = AS_OK;
    next_live = true;
    for (round = 0; round < ROUNDS; round++) {
        atomic_store(&all_ended, false);
        atomic_store(&race_stop, false);
        for (k = 0; k < 8; k++) {
            sid_n(sid, (unsigned)k);
            assert_int_equal(scache_check(race_cache, race_repo, sid, U1,
                                          &st), AS_OK);
        }
        for (i = 0; i < READERS; i++)
            pthread_create(&t[i], NULL, reader, (void *)(uintptr_t)i);
        usleep((useconds_t)(round % 7) * 100);
        atomic_store(&all_ended, true);       /* the revocation commits */
        scache_forget_user(race_cache, U1);
        for (k = 0; k < 8; k++) {
            sid_n(sid, (unsigned)k);
            if (scache_peek(race_cache, sid, &st))
                assert_false(st.live);
        }
        atomic_store(&race_stop, true);
        for (i = 0; i < READERS; i++)
            pthread_join(t[i], NULL);
        for (k = 0; k < 8; k++) {
            sid_n(sid, (unsigned)k);
            assert_int_equal(scache_check(race_cache, race_repo, sid, U1,
                                          &st), AS_OK);
            assert_false(st.live);
        }
    }
    atomic_store(&all_ended, false);
    scache_free(race_cache);
    repo_close(race_repo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_answers_are_cached),
        cmocka_unit_test(test_forget_all),
        cmocka_unit_test(test_ttl_zero_always_asks),
        cmocka_unit_test(test_forget_user_and_database_down),
        cmocka_unit_test(test_filed_under_the_owner),
        cmocka_unit_test(test_revoke_between_read_and_store),
        cmocka_unit_test(test_workpool_bounds),
        cmocka_unit_test(test_entries_answer_only_while_the_listener_keeps_up),
        cmocka_unit_test(test_an_entry_is_as_old_as_its_read),
        cmocka_unit_test(test_a_set_holds_eight_sessions),
        cmocka_unit_test(test_refresh_ahead_of_expiry),
        cmocka_unit_test(test_one_refresh_among_racing_readers),
        cmocka_unit_test(test_forget_user_is_one_step),
        cmocka_unit_test(test_forget_user_while_readers_store),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
