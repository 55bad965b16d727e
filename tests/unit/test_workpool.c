/* test_workpool.c: the bounded job queue and each client's share of it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "workpool.h"

/* A job that waits until the test opens the gate. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open, started, ran;
};

static struct gate g = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                         0, 0, 0 };

static void held(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g.mu);
    g.started++;
    pthread_cond_broadcast(&g.cv);
    while (!g.open)
        pthread_cond_wait(&g.cv, &g.mu);
    g.ran++;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
}

static void gate_reset(void)
{
    pthread_mutex_lock(&g.mu);
    g.open = g.started = g.ran = 0;
    pthread_mutex_unlock(&g.mu);
}

static void wait_started(int n)
{
    pthread_mutex_lock(&g.mu);
    while (g.started < n)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
}

static void wait_ran(int n)
{
    pthread_mutex_lock(&g.mu);
    while (g.ran < n)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
}

static void gate_open(void)
{
    pthread_mutex_lock(&g.mu);
    g.open = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
}

static void a_client_gets_its_share_only(void **state)
{
    struct workpool *p = workpool_new(1, 16);
    char name[32];
    size_t waiting;
    unsigned running;
    int i;

    (void)state;
    gate_reset();
    assert_non_null(p);
    assert_true(workpool_limit_clients(p, 2));
    /* One running, one queued: the client's two. */
    assert_int_equal(workpool_submit_for(p, held, NULL, "10.0.0.1", NULL),
                     WORKPOOL_QUEUED);
    wait_started(1);
    assert_int_equal(workpool_submit_for(p, held, NULL, "10.0.0.1", NULL),
                     WORKPOOL_QUEUED);
    assert_int_equal(workpool_submit_for(p, held, NULL, "10.0.0.1", NULL),
                     WORKPOOL_CLIENT_FULL);
    /* The same account from another address is capped too. */
    assert_int_equal(workpool_submit_for(p, held, NULL, "10.0.0.2", "acct"),
                     WORKPOOL_QUEUED);
    assert_int_equal(workpool_submit_for(p, held, NULL, "10.0.0.3", "acct"),
                     WORKPOOL_QUEUED);
    assert_int_equal(workpool_submit_for(p, held, NULL, "10.0.0.4", "acct"),
                     WORKPOOL_CLIENT_FULL);
    /* Everyone else fills the rest of the queue, then it is full. */
    for (i = 0; i < 13; i++) {
        snprintf(name, sizeof name, "192.0.2.%d", i);
        assert_int_equal(workpool_submit_for(p, held, NULL, name, NULL),
                         WORKPOOL_QUEUED);
    }
    assert_int_equal(workpool_submit_for(p, held, NULL, "192.0.2.99", NULL),
                     WORKPOOL_FULL);
    workpool_load(p, &waiting, &running);
    assert_int_equal(waiting, 16);
    assert_int_equal(running, 1);               /* one worker, one job */
    gate_open();
    wait_ran(17);
    /* Each worker counts its job done just after it returns (10 s). */
    for (i = 0; i < 10000 && (workpool_load(p, &waiting, &running),
                              running != 0); i++)
        nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
    assert_int_equal(running, 0);
    workpool_free(p);
    assert_int_equal(g.ran, 17);
}

static void finished_jobs_free_the_share(void **state)
{
    struct workpool *p = workpool_new(2, 8);
    int round;

    (void)state;
    assert_non_null(p);
    assert_true(workpool_limit_clients(p, 1));
    /* Many rounds over many keys: counts return to zero and the table's
     * deletions keep every other key findable. */
    for (round = 0; round < 200; round++) {
        char a[32], b[32];

        gate_reset();
        snprintf(a, sizeof a, "a%d", round);
        snprintf(b, sizeof b, "b%d", round);
        assert_int_equal(workpool_submit_for(p, held, NULL, a, NULL),
                         WORKPOOL_QUEUED);
        assert_int_equal(workpool_submit_for(p, held, NULL, a, NULL),
                         WORKPOOL_CLIENT_FULL);
        assert_int_equal(workpool_submit_for(p, held, NULL, b, b),
                         WORKPOOL_QUEUED);   /* one client named twice */
        wait_started(2);
        gate_open();
        while (workpool_submit_for(p, held, NULL, a, NULL) !=
               WORKPOOL_QUEUED)
            ;                       /* until the first job has finished */
        wait_ran(3);                /* all done before the gate closes */
    }
    workpool_free(p);
}

/* A job that ends its clients' count, then waits at the gate, as a
 * request does that has resumed its connection but not yet returned. */
static void leaves_then_held(void *arg)
{
    (void)arg;
    workpool_leave_clients();
    workpool_leave_clients();           /* again: no effect */
    held(NULL);
}

static void a_job_can_free_its_share_before_it_returns(void **state)
{
    struct workpool *p = workpool_new(2, 8);
    int round;

    (void)state;
    assert_non_null(p);
    assert_true(workpool_limit_clients(p, 1));
    workpool_leave_clients();           /* outside a job: no effect */
    for (round = 0; round < 100; round++) {
        char a[32], b[32];

        snprintf(a, sizeof a, "10.0.%d.1", round);
        snprintf(b, sizeof b, "acct%d", round);
        gate_reset();
        assert_int_equal(workpool_submit_for(p, leaves_then_held, NULL, a, b),
                         WORKPOOL_QUEUED);
        wait_started(1);
        /* Still running, yet no longer counted against either client. */
        assert_int_equal(workpool_submit_for(p, held, NULL, a, b),
                         WORKPOOL_QUEUED);
        /* That one is counted until it returns. */
        assert_int_equal(workpool_submit_for(p, held, NULL, a, NULL),
                         WORKPOOL_CLIENT_FULL);
        assert_int_equal(workpool_submit_for(p, held, NULL, NULL, b),
                         WORKPOOL_CLIENT_FULL);
        gate_open();
        wait_ran(2);
        gate_reset();
        while (workpool_submit_for(p, held, NULL, a, NULL) !=
               WORKPOOL_QUEUED)
            ;                       /* until the second job has finished */
        /* Each job left once: the cap holds again, no count went wrong. */
        assert_int_equal(workpool_submit_for(p, held, NULL, a, NULL),
                         WORKPOOL_CLIENT_FULL);
        gate_open();
        wait_ran(1);
    }
    workpool_free(p);
}

static void without_a_cap_only_the_queue_limits(void **state)
{
    struct workpool *p = workpool_new(1, 4);
    int i;

    (void)state;
    gate_reset();
    assert_non_null(p);
    assert_int_equal(workpool_submit_for(p, held, NULL, "x", NULL),
                     WORKPOOL_QUEUED);
    wait_started(1);
    for (i = 0; i < 4; i++)
        assert_true(workpool_submit(p, held, NULL));
    assert_int_equal(workpool_submit_for(p, held, NULL, "x", NULL),
                     WORKPOOL_FULL);
    gate_open();
    workpool_free(p);
    assert_int_equal(g.ran, 5);
}

/* Jobs that record the order they ran in, or were dropped in. */
static struct {
    pthread_mutex_t mu;
    intptr_t ran[32], dropped[32];
    int nran, ndropped;
} rec = { PTHREAD_MUTEX_INITIALIZER, { 0 }, { 0 }, 0, 0 };

static void record(void *arg)
{
    pthread_mutex_lock(&rec.mu);
    if (rec.nran < 32)
        rec.ran[rec.nran++] = (intptr_t)arg;
    pthread_mutex_unlock(&rec.mu);
}

static void record_drop(void *arg)
{
    pthread_mutex_lock(&rec.mu);
    if (rec.ndropped < 32)
        rec.dropped[rec.ndropped++] = (intptr_t)arg;
    pthread_mutex_unlock(&rec.mu);
}

static void rec_reset(void)
{
    pthread_mutex_lock(&rec.mu);
    rec.nran = rec.ndropped = 0;
    pthread_mutex_unlock(&rec.mu);
}

static enum workpool_refusal put(struct workpool *p, intptr_t id,
                                 const char *client)
{
    return workpool_submit_for(p, record, (void *)id, client, NULL);
}

/* A pool of one worker with room for `queue` waiting jobs, each client
 * capped at 8, `drop` (or none) answering dropped jobs, and its worker
 * held by a job of client `holder` (whose last start is then now); the
 * records cleared. */
static struct workpool *held_pool(unsigned queue, workpool_fn drop,
                                  const char *holder)
{
    struct workpool *p = workpool_new(1, queue);

    gate_reset();
    rec_reset();
    assert_non_null(p);
    assert_true(workpool_limit_clients(p, 8));
    if (drop)
        workpool_on_drop(p, drop);
    assert_int_equal(workpool_submit_for(p, held, NULL, holder, NULL),
                     WORKPOOL_QUEUED);
    wait_started(1);
    return p;
}

/* Clients take turns, the one whose turn came longest ago first (when
 * its last job started, or when it came), each client's jobs in their
 * own order: A, B and C all came while A0 ran, so A1, B5, C9 (oldest
 * job first), then A and B by turns. First in, first out would run A's
 * four first. */
static void clients_take_turns(void **state)
{
    static const intptr_t want[] = { 1, 5, 9, 2, 6, 3, 7, 4, 8 };
    struct workpool *p = held_pool(16, NULL, "A");
    size_t i;

    (void)state;
    for (i = 1; i <= 4; i++)
        assert_int_equal(put(p, (intptr_t)i, "A"), WORKPOOL_QUEUED);
    for (i = 5; i <= 8; i++)
        assert_int_equal(put(p, (intptr_t)i, "B"), WORKPOOL_QUEUED);
    assert_int_equal(put(p, 9, "C"), WORKPOOL_QUEUED);
    gate_open();
    workpool_free(p);                       /* runs what is queued */
    assert_int_equal(rec.nran, 9);
    for (i = 0; i < 9; i++)
        assert_int_equal(rec.ran[i], want[i]);
}

/* A job that records itself, stops counting against its client and, for
 * `comebacks` rounds, queues the next job of the same client: a client
 * that sends one request at a time, as a login client waits for its
 * answer (src/server.c frees the share before it resumes). */
static struct workpool *comeback_pool;
static int comebacks, comeback_refused;

static void record_and_come_back(void *arg)
{
    intptr_t id = (intptr_t)arg;
    char name[16];

    record(arg);
    workpool_leave_clients();
    if (__atomic_fetch_sub(&comebacks, 1, __ATOMIC_RELAXED) <= 0)
        return;
    snprintf(name, sizeof name, "c%d", (int)(id % 100));
    if (workpool_submit_for(comeback_pool, record_and_come_back,
                            (void *)(id + 100), name, NULL) !=
        WORKPOOL_QUEUED)
        __atomic_store_n(&comeback_refused, 1, __ATOMIC_RELAXED);
}

/* Two clients sending one job at a time, each back the moment its last
 * one ran, do not hold back a client with two jobs: its second runs
 * behind at most one job of each. Counted as never served, each
 * comeback went first, and the second job waited for all 200. */
static void clients_coming_back_do_not_starve_a_backlog(void **state)
{
    struct workpool *p = held_pool(16, NULL, "X");
    int i, at = -1;

    (void)state;
    comeback_pool = p;
    comebacks = 200;
    comeback_refused = 0;
    assert_int_equal(put(p, 1, "V"), WORKPOOL_QUEUED);
    assert_int_equal(put(p, 2, "V"), WORKPOOL_QUEUED);
    assert_int_equal(workpool_submit_for(p, record_and_come_back,
                                         (void *)(intptr_t)11, "c11", NULL),
                     WORKPOOL_QUEUED);
    assert_int_equal(workpool_submit_for(p, record_and_come_back,
                                         (void *)(intptr_t)12, "c12", NULL),
                     WORKPOOL_QUEUED);
    gate_open();
    for (i = 0; i < 10000 && __atomic_load_n(&comebacks, __ATOMIC_RELAXED)
                                 > 0; i++)
        nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
    workpool_free(p);
    assert_int_equal(comeback_refused, 0);
    for (i = 0; i < rec.nran; i++)
        if (rec.ran[i] == 2)
            at = i;
    assert_true(at >= 1);
    assert_true(at <= 3);               /* V1, one of each, V2 */
}

/* A full queue makes room for a client with few waiting by dropping the
 * newest waiting job of the client with the most (two more at least);
 * a dropped job is answered and never runs. */
static void a_full_queue_drops_the_longest_backlog(void **state)
{
    struct workpool *p = held_pool(8, record_drop, "A");
    intptr_t i;

    (void)state;
    for (i = 1; i <= 6; i++)                /* A: one running, six waiting */
        assert_int_equal(put(p, i, "A"), WORKPOOL_QUEUED);
    assert_int_equal(put(p, 20, "B"), WORKPOOL_QUEUED);
    assert_int_equal(put(p, 21, "B"), WORKPOOL_QUEUED);   /* full: 8 */
    /* C, none waiting: A's newest goes. */
    assert_int_equal(put(p, 30, "C"), WORKPOOL_QUEUED);
    assert_int_equal(rec.ndropped, 1);
    assert_int_equal(rec.dropped[0], 6);
    /* B, two waiting, against A's five: A's newest again. */
    assert_int_equal(put(p, 22, "B"), WORKPOOL_QUEUED);
    assert_int_equal(rec.ndropped, 2);
    assert_int_equal(rec.dropped[1], 5);
    /* B (3) against A (4): too close, B is refused, nothing dropped;
     * A, the longest itself, is refused too. */
    assert_int_equal(put(p, 23, "B"), WORKPOOL_FULL);
    assert_int_equal(put(p, 7, "A"), WORKPOOL_FULL);
    assert_int_equal(rec.ndropped, 2);
    /* D, none waiting, against A's four. */
    assert_int_equal(put(p, 40, "D"), WORKPOOL_QUEUED);
    assert_int_equal(rec.dropped[2], 4);
    gate_open();
    workpool_free(p);
    assert_int_equal(rec.ndropped, 3);
    assert_int_equal(rec.nran, 8);          /* A 1-3, B 20-22, C, D */
    for (i = 0; i < rec.nran; i++)
        assert_true(rec.ran[i] != 4 && rec.ran[i] != 5 && rec.ran[i] != 6);
}

/* Without a drop function a full queue refuses the newcomer, however
 * long another client's backlog. */
static void without_a_drop_a_full_queue_refuses(void **state)
{
    struct workpool *p = held_pool(4, NULL, "A");
    intptr_t i;

    (void)state;
    for (i = 1; i <= 4; i++)
        assert_int_equal(put(p, i, "A"), WORKPOOL_QUEUED);
    assert_int_equal(put(p, 9, "B"), WORKPOOL_FULL);
    gate_open();
    workpool_free(p);
    assert_int_equal(rec.nran, 4);
    assert_int_equal(rec.ndropped, 0);
}

/* Each job notes the name of the thread it runs on, then holds. */
static char names[4][16];

static void named(void *arg)
{
    int i;

    pthread_mutex_lock(&g.mu);
    i = g.started;
    pthread_mutex_unlock(&g.mu);
    pthread_getname_np(pthread_self(), names[i % 4], sizeof names[0]);
    held(arg);
}

/* The first worker starts in workpool_new(), the others later from the
 * submitting thread (an HTTP thread in the daemon, whose name they would
 * carry): all answer to the pool's name. Before, none did. */
static void every_worker_has_the_pool_name(void **state)
{
    struct workpool *p = workpool_new(3, 8);
    int i;

    (void)state;
    assert_non_null(p);
    gate_reset();
    workpool_name(p, "auth-test-pool-too-long");
    for (i = 0; i < 3; i++) {
        assert_true(workpool_submit(p, named, NULL));
        wait_started(i + 1);            /* one at a time: its own slot */
    }
    gate_open();
    wait_ran(3);
    workpool_free(p);
    for (i = 0; i < 3; i++)
        assert_string_equal(names[i], "auth-test-pool-");  /* 15 bytes */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_client_gets_its_share_only),
        cmocka_unit_test(finished_jobs_free_the_share),
        cmocka_unit_test(a_job_can_free_its_share_before_it_returns),
        cmocka_unit_test(without_a_cap_only_the_queue_limits),
        cmocka_unit_test(clients_take_turns),
        cmocka_unit_test(clients_coming_back_do_not_starve_a_backlog),
        cmocka_unit_test(a_full_queue_drops_the_longest_backlog),
        cmocka_unit_test(without_a_drop_a_full_queue_refuses),
        cmocka_unit_test(every_worker_has_the_pool_name),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
