/* test_ratelimit.c: the per-client token buckets on a fake clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>

#include "ratelimit.h"

#define T0 UINT64_C(5000000)     /* any start: the clock is ours */
#define IP "192.0.2.7"

/* Takes `n` tokens of `ip` at `now`; returns how many were granted. */
static unsigned take_n(struct ratelimit *rl, const char *ip, uint64_t now,
                       unsigned n)
{
    unsigned i, ok = 0, retry;

    for (i = 0; i < n; i++)
        if (ratelimit_take(rl, ip, now, &retry))
            ok++;
    return ok;
}

/* The Retry-After a refused request of `ip` at `now` gets (0: passed). */
static unsigned refused_for(struct ratelimit *rl, const char *ip,
                            uint64_t now)
{
    unsigned retry = 12345;

    if (ratelimit_take(rl, ip, now, &retry)) {
        assert_int_equal(retry, 0);
        return 0;
    }
    return retry;
}

static void burst_then_refused(void **state)
{
    struct ratelimit *rl = ratelimit_new(3, 1024);

    (void)state;
    assert_non_null(rl);
    assert_int_equal(take_n(rl, IP, T0, 3), 3);
    /* One token comes back every 20 s. */
    assert_int_equal(refused_for(rl, IP, T0), 20);
    assert_int_equal(refused_for(rl, IP, T0 + 1), 20);
    assert_int_equal(refused_for(rl, IP, T0 + 19000), 1);
    assert_int_equal(refused_for(rl, IP, T0 + 19999), 1);
    /* Refused requests cost nothing: the token is back on time. */
    assert_int_equal(refused_for(rl, IP, T0 + 20000), 0);
    assert_int_equal(refused_for(rl, IP, T0 + 20000), 20);
    ratelimit_free(rl);
}

static void retry_after_rounds_up(void **state)
{
    struct ratelimit *rl = ratelimit_new(30, 1024);
    struct ratelimit *slow = ratelimit_new(1, 1024);
    struct ratelimit *fast = ratelimit_new(1000000, 1024);

    (void)state;
    assert_non_null(rl);
    assert_non_null(slow);
    assert_non_null(fast);
    assert_int_equal(take_n(rl, IP, T0, 31), 30);
    assert_int_equal(refused_for(rl, IP, T0), 2);           /* 2 s each */
    assert_int_equal(refused_for(rl, IP, T0 + 500), 2);     /* 1.5 s */
    assert_int_equal(refused_for(rl, IP, T0 + 1000), 1);
    assert_int_equal(refused_for(rl, IP, T0 + 1999), 1);
    assert_int_equal(take_n(slow, IP, T0, 1), 1);
    assert_int_equal(refused_for(slow, IP, T0), 60);
    assert_int_equal(refused_for(slow, IP, T0 + 30000), 30);
    /* Well under a second to wait is still "at least 1". */
    assert_int_equal(take_n(fast, IP, T0, 1000000), 1000000);
    assert_int_equal(refused_for(fast, IP, T0), 1);
    ratelimit_free(rl);
    ratelimit_free(slow);
    ratelimit_free(fast);
}

static void refill_is_gradual_and_capped(void **state)
{
    struct ratelimit *rl = ratelimit_new(60, 1024);

    (void)state;
    assert_non_null(rl);
    assert_int_equal(take_n(rl, IP, T0, 100), 60);
    assert_int_equal(take_n(rl, IP, T0 + 10000, 100), 10);
    assert_int_equal(take_n(rl, IP, T0 + 10500, 100), 0);
    /* Idle for much longer than a minute: full again, but no fuller. */
    assert_int_equal(take_n(rl, IP, T0 + 600000, 100), 60);
    ratelimit_free(rl);
}

static void keys_are_separate(void **state)
{
    struct ratelimit *rl = ratelimit_new(2, 1024);

    (void)state;
    assert_non_null(rl);
    assert_int_equal(take_n(rl, "10.0.0.1", T0, 5), 2);
    assert_int_equal(take_n(rl, "10.0.0.2", T0, 5), 2);
    /* IPv4-mapped IPv6 is the IPv4 address. */
    assert_int_equal(take_n(rl, "::ffff:10.0.0.1", T0, 5), 0);
    /* One /64 is one bucket; the next /64 is another. */
    assert_int_equal(take_n(rl, "2001:db8::1", T0, 1), 1);
    assert_int_equal(take_n(rl, "2001:db8::ffff:2", T0, 5), 1);
    assert_int_equal(take_n(rl, "2001:db8:0:1::1", T0, 5), 2);
    /* Text that is no address is a key of its own. */
    assert_int_equal(take_n(rl, "unknown", T0, 5), 2);
    assert_int_equal(take_n(rl, "", T0, 5), 2);
    assert_int_equal(take_n(rl, NULL, T0, 5), 0);           /* same as "" */
    ratelimit_free(rl);
}

static void off_when_zero(void **state)
{
    struct ratelimit *rl = ratelimit_new(0, 64);
    unsigned retry = 7;

    (void)state;
    assert_non_null(rl);
    assert_int_equal(take_n(rl, IP, T0, 100000), 100000);
    assert_true(ratelimit_take(rl, IP, T0, &retry));
    assert_int_equal(retry, 0);
    assert_true(ratelimit_take(NULL, IP, T0, &retry));
    ratelimit_free(rl);
    ratelimit_free(NULL);
}

static void memory_is_bounded_and_oldest_evicted(void **state)
{
    struct ratelimit *rl = ratelimit_new(1, 64);
    char ip[32];
    unsigned i;

    (void)state;
    assert_non_null(rl);
    assert_int_equal(ratelimit_capacity(rl), 64);
    /* Many more addresses than entries, each emptying its bucket a
     * millisecond after the one before. */
    for (i = 0; i < 2000; i++) {
        snprintf(ip, sizeof ip, "10.1.%u.%u", i / 256, i % 256);
        assert_int_equal(take_n(rl, ip, T0 + i, 1), 1);
    }
    assert_int_equal(ratelimit_capacity(rl), 64);
    /* The newest are still remembered... */
    assert_int_equal(refused_for(rl, ip, T0 + 2000), 60);
    /* ...the oldest made room, and start again with a full bucket. */
    assert_int_equal(take_n(rl, "10.1.0.0", T0 + 2000, 1), 1);
    assert_int_equal(take_n(rl, "10.1.0.0", T0 + 2000, 1), 0);
    /* Sizes round up to a power of two. */
    ratelimit_free(rl);
    rl = ratelimit_new(1, 1000);
    assert_non_null(rl);
    assert_int_equal(ratelimit_capacity(rl), 1024);
    ratelimit_free(rl);
    rl = ratelimit_new(1, 0);
    assert_non_null(rl);
    assert_int_equal(ratelimit_capacity(rl), 64);
    ratelimit_free(rl);
}

struct racer {
    struct ratelimit *rl;
    unsigned granted;
};

static void *race(void *arg)
{
    struct racer *r = arg;

    r->granted = take_n(r->rl, IP, T0, 2000);
    return NULL;
}

static void concurrent_takes_are_counted_once(void **state)
{
    struct ratelimit *rl = ratelimit_new(1000, 1024);
    struct racer r[4];
    pthread_t t[4];
    unsigned i, total = 0;

    (void)state;
    assert_non_null(rl);
    for (i = 0; i < 4; i++) {
        r[i].rl = rl;
        r[i].granted = 0;
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += r[i].granted;
    }
    assert_int_equal(total, 1000);
    ratelimit_free(rl);
}

/* Take, check, give back: what a check that costs only on failure does
 * (the introspection secret). */
static void a_token_given_back_is_there_again(void **state)
{
    struct ratelimit *rl = ratelimit_new(2, 1024);
    unsigned retry = 99;
    int i;

    (void)state;
    assert_non_null(rl);
    for (i = 0; i < 10; i++) {          /* right ones cost nothing */
        assert_true(ratelimit_take(rl, IP, T0, &retry));
        assert_int_equal(retry, 0);
        ratelimit_give_back(rl, IP);
    }
    assert_int_equal(take_n(rl, IP, T0, 3), 2);
    assert_false(ratelimit_take(rl, IP, T0, &retry));
    assert_int_equal(retry, 30);
    ratelimit_give_back(rl, IP);        /* one back: one more, no more */
    assert_int_equal(take_n(rl, IP, T0, 3), 1);
    /* A bucket not taken from is full: giving back adds nothing. */
    ratelimit_give_back(rl, "192.0.2.77");
    ratelimit_give_back(rl, "192.0.2.77");
    assert_int_equal(take_n(rl, "192.0.2.77", T0, 5), 2);
    /* An IPv6 /64 is one bucket. */
    assert_int_equal(take_n(rl, "2001:db8::1", T0, 1), 1);
    assert_int_equal(take_n(rl, "2001:db8::2:1", T0, 1), 1);
    assert_false(ratelimit_take(rl, "2001:db8::ffff", T0, &retry));
    ratelimit_give_back(rl, "2001:db8::ffff");
    assert_true(ratelimit_take(rl, "2001:db8::1", T0, &retry));
    assert_true(ratelimit_take(rl, "2001:db8:0:1::1", T0, &retry));
    ratelimit_give_back(rl, NULL);      /* no bucket of its own: no-op */
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_token_given_back_is_there_again),
        cmocka_unit_test(burst_then_refused),
        cmocka_unit_test(retry_after_rounds_up),
        cmocka_unit_test(refill_is_gradual_and_capped),
        cmocka_unit_test(keys_are_separate),
        cmocka_unit_test(off_when_zero),
        cmocka_unit_test(memory_is_bounded_and_oldest_evicted),
        cmocka_unit_test(concurrent_takes_are_counted_once),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
