/* test_ready.c: the readiness prober with a ping the test controls: a
 * ping that hangs makes ready_check() say "not ready" after the stall
 * time, and ready_check() never waits for it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "clock.h"
#include "ready.h"

#define INTERVAL_MS 60000u      /* no periodic ping during a test */
#define STALL_MS 1000u
#define DEADLINE_MS 10000u      /* polls give up after this */

/* The ping the prober calls: answers `result`, or, while `hold` is set,
 * blocks until the test clears it. */
struct fake_db {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool hold;
    enum as_err result;
    unsigned calls, inside;
    struct ready *self;         /* set: the ping reports its own failure */
};

static enum as_err fake_ping(void *arg)
{
    struct fake_db *f = arg;
    enum as_err res;

    pthread_mutex_lock(&f->mu);
    f->calls++;
    f->inside++;
    while (f->hold)
        pthread_cond_wait(&f->cv, &f->mu);
    f->inside--;
    res = f->result;
    pthread_mutex_unlock(&f->mu);
    if (f->self && res != AS_OK)    /* as repo_ping()'s failure does */
        ready_failed(f->self);
    return res;
}

static void fake_set(struct fake_db *f, bool hold, enum as_err result)
{
    pthread_mutex_lock(&f->mu);
    f->hold = hold;
    f->result = result;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static unsigned fake_inside(struct fake_db *f)
{
    unsigned n;

    pthread_mutex_lock(&f->mu);
    n = f->inside;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static void nap(void)
{
    struct timespec ts = { 0, 2 * 1000 * 1000 };

    nanosleep(&ts, NULL);
}

/* Polls ready_check() until it answers `want` (each call asks for a
 * ping); false after DEADLINE_MS. */
static bool poll_until(struct ready *r, bool want)
{
    uint64_t end = clock_mono_ms() + DEADLINE_MS;

    while (clock_mono_ms() < end) {
        if (ready_check(r, clock_mono_ms()) == want)
            return true;
        nap();
    }
    return false;
}

/* Waits until a ping is running, asking `r` (if any) for one. */
static bool wait_inside(struct fake_db *f, struct ready *r)
{
    uint64_t end = clock_mono_ms() + DEADLINE_MS;

    while (clock_mono_ms() < end) {
        if (fake_inside(f) > 0)
            return true;
        if (r)
            (void)ready_check(r, clock_mono_ms());
        nap();
    }
    return false;
}

static unsigned fake_calls(struct fake_db *f)
{
    unsigned n;

    pthread_mutex_lock(&f->mu);
    n = f->calls;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* Waits, without asking for pings, until the prober has made `n`. */
static bool wait_calls(struct fake_db *f, unsigned n)
{
    uint64_t end = clock_mono_ms() + DEADLINE_MS;

    while (clock_mono_ms() < end && fake_calls(f) < n)
        nap();
    return fake_calls(f) >= n;
}

/* A request's call failed (a stopped database refused it): not ready at
 * once, where the last ping's success answered for up to a second; a
 * ping is asked for by the failure itself, and its success is ready
 * again. A failure while a ping runs is not cleared by that ping, which
 * began before it, but by the next. */
static void a_failed_call_is_not_ready_until_a_later_ping(void **state)
{
    struct fake_db f = { .result = AS_OK };
    struct ready *r;
    unsigned calls;

    (void)state;
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    r = ready_new(fake_ping, &f, INTERVAL_MS, STALL_MS);
    assert_non_null(r);
    assert_true(ready_wait_first(r, DEADLINE_MS));
    assert_true(ready_check(r, clock_mono_ms()));
    fake_set(&f, true, AS_OK);      /* the ping it asks for waits */
    ready_failed(r);
    assert_false(ready_check(r, clock_mono_ms()));    /* at once */
    assert_true(wait_inside(&f, NULL));              /* no check asked */
    fake_set(&f, false, AS_OK);
    assert_true(poll_until(r, true));

    fake_set(&f, true, AS_OK);                     /* a ping that hangs */
    assert_true(wait_inside(&f, r));
    calls = fake_calls(&f);
    ready_failed(r);
    assert_false(ready_check(r, clock_mono_ms()));
    fake_set(&f, false, AS_OK);
    assert_true(wait_calls(&f, calls + 1));          /* the next one */
    assert_true(poll_until(r, true));
    ready_free(r);
    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
}

/* The ping's own failure goes through the same report (repo_ping()):
 * it is the ping's result and asks for no further ping, else a stopped
 * database got one every few milliseconds. */
static void a_pings_own_failure_asks_for_no_ping(void **state)
{
    struct fake_db f = { .result = AS_ERR_UNAVAILABLE };
    struct ready *r;
    unsigned calls;
    uint64_t end;

    (void)state;
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    f.hold = true;                  /* until f.self is set */
    r = ready_new(fake_ping, &f, INTERVAL_MS, STALL_MS);
    assert_non_null(r);
    pthread_mutex_lock(&f.mu);
    f.self = r;
    pthread_mutex_unlock(&f.mu);
    fake_set(&f, false, AS_ERR_UNAVAILABLE);
    assert_false(ready_wait_first(r, DEADLINE_MS));
    calls = fake_calls(&f);
    end = clock_mono_ms() + 300;
    while (clock_mono_ms() < end)
        nap();
    assert_int_equal(fake_calls(&f), calls);
    assert_false(ready_check(r, clock_mono_ms()));
    ready_free(r);
    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
}

static void hung_ping_is_not_ready_and_never_waited_for(void **state)
{
    struct fake_db f = { .result = AS_OK };
    struct ready *r;
    uint64_t t0, took;

    (void)state;
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    r = ready_new(fake_ping, &f, INTERVAL_MS, STALL_MS);
    assert_non_null(r);
    assert_true(poll_until(r, true));

    /* The database hangs: the next ping never returns. */
    fake_set(&f, true, AS_OK);
    assert_true(wait_inside(&f, r));
    t0 = clock_mono_ms();
    /* Within the stall time the last answer stands ... */
    assert_true(ready_check(r, t0));
    /* ... past it, not ready; and the answer comes at once. */
    assert_false(ready_check(r, t0 + STALL_MS));
    took = clock_mono_ms() - t0;
    assert_true(took < 100);
    assert_true(poll_until(r, false));            /* on the real clock too */

    /* It answers again, successfully: ready once polled. */
    fake_set(&f, false, AS_OK);
    assert_true(poll_until(r, true));

    /* It answers, with a failure: not ready. */
    fake_set(&f, false, AS_ERR_UNAVAILABLE);
    assert_true(poll_until(r, false));
    fake_set(&f, false, AS_OK);
    assert_true(poll_until(r, true));
    ready_free(r);
    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
}

/* ready_stalled() is what database calls check: false while the running
 * ping is younger than the stall time or none runs, true past it, and
 * false again as soon as the ping returned, whatever its result. */
static void stalled_only_while_a_ping_hangs(void **state)
{
    struct fake_db f = { .result = AS_OK };
    struct ready *r;
    uint64_t t0;

    (void)state;
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    r = ready_new(fake_ping, &f, INTERVAL_MS, STALL_MS);
    assert_non_null(r);
    assert_true(poll_until(r, true));
    t0 = clock_mono_ms();
    assert_false(ready_stalled(r, t0));
    assert_false(ready_stalled(r, t0 + 10 * STALL_MS));   /* none runs */

    fake_set(&f, true, AS_OK);
    assert_true(wait_inside(&f, r));
    t0 = clock_mono_ms();
    assert_false(ready_stalled(r, t0));
    assert_true(ready_stalled(r, t0 + STALL_MS));
    assert_true(ready_stalled(r, t0 + STALL_MS));       /* and it stays */

    fake_set(&f, false, AS_ERR_UNAVAILABLE);            /* it answers */
    while (fake_inside(&f) > 0)
        nap();
    {
        uint64_t end = clock_mono_ms() + DEADLINE_MS;

        while (ready_stalled(r, clock_mono_ms() + STALL_MS) &&
               clock_mono_ms() < end)
            nap();
    }
    assert_false(ready_stalled(r, clock_mono_ms() + STALL_MS));
    ready_free(r);
    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
}

static void polls_are_bounded_pings(void **state)
{
    struct fake_db f = { .result = AS_OK };
    struct ready *r;
    unsigned i, calls;
    uint64_t t0, ms;

    (void)state;
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    r = ready_new(fake_ping, &f, INTERVAL_MS, STALL_MS);
    assert_non_null(r);
    assert_true(poll_until(r, true));
    /* A flood of checks: at most one ping every few milliseconds. */
    pthread_mutex_lock(&f.mu);
    f.calls = 0;
    pthread_mutex_unlock(&f.mu);
    t0 = clock_mono_ms();
    for (i = 0; i < 200000; i++)
        (void)ready_check(r, clock_mono_ms());
    ms = clock_mono_ms() - t0;
    pthread_mutex_lock(&f.mu);
    calls = f.calls;
    pthread_mutex_unlock(&f.mu);
    assert_true(calls <= ms / 10 + 2);
    ready_free(r);
    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
}

static void not_ready_before_first_ping_ends(void **state)
{
    struct fake_db f = { .hold = true, .result = AS_OK };
    struct ready *r;

    (void)state;
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    r = ready_new(fake_ping, &f, INTERVAL_MS, STALL_MS);
    assert_non_null(r);
    assert_true(wait_inside(&f, NULL));
    assert_false(ready_check(r, clock_mono_ms()));
    fake_set(&f, false, AS_OK);
    assert_true(poll_until(r, true));
    ready_free(r);
    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
}

/* Start-up announces readiness after ready_wait_first(): from then on
 * ready_check() agrees at once, with no poll. 200 fresh probers, as many
 * starts (a check straight after ready_new() races the first ping). */
static void first_ping_awaited_then_check_agrees(void **state)
{
    struct fake_db f = { .result = AS_OK };
    struct ready *r;
    unsigned i;

    (void)state;
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    for (i = 0; i < 200; i++) {
        r = ready_new(fake_ping, &f, INTERVAL_MS, STALL_MS);
        assert_non_null(r);
        assert_true(ready_wait_first(r, DEADLINE_MS));
        assert_true(ready_check(r, clock_mono_ms()));
        ready_free(r);
    }
    /* A failing database: the wait says so, and so does the check. */
    fake_set(&f, false, AS_ERR_UNAVAILABLE);
    r = ready_new(fake_ping, &f, INTERVAL_MS, STALL_MS);
    assert_non_null(r);
    assert_false(ready_wait_first(r, DEADLINE_MS));
    assert_false(ready_check(r, clock_mono_ms()));
    ready_free(r);
    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
}

/* A hung first ping: the wait gives up after its timeout (not before),
 * and a ping ending later is seen by a second wait. */
static void first_ping_wait_is_bounded(void **state)
{
    struct fake_db f = { .hold = true, .result = AS_OK };
    struct ready *r;
    uint64_t t0, took;

    (void)state;
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    r = ready_new(fake_ping, &f, INTERVAL_MS, STALL_MS);
    assert_non_null(r);
    t0 = clock_mono_ms();
    assert_false(ready_wait_first(r, 100));
    took = clock_mono_ms() - t0;
    assert_true(took >= 100);
    assert_true(took < DEADLINE_MS);
    fake_set(&f, false, AS_OK);
    assert_true(ready_wait_first(r, DEADLINE_MS));
    assert_true(ready_check(r, clock_mono_ms()));
    ready_free(r);
    pthread_cond_destroy(&f.cv);
    pthread_mutex_destroy(&f.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hung_ping_is_not_ready_and_never_waited_for),
        cmocka_unit_test(stalled_only_while_a_ping_hangs),
        cmocka_unit_test(polls_are_bounded_pings),
        cmocka_unit_test(not_ready_before_first_ping_ends),
        cmocka_unit_test(first_ping_awaited_then_check_agrees),
        cmocka_unit_test(first_ping_wait_is_bounded),
        cmocka_unit_test(a_failed_call_is_not_ready_until_a_later_ping),
        cmocka_unit_test(a_pings_own_failure_asks_for_no_ping),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
