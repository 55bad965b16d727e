/* test_lockout.c: the lockout rule (src/core/lockout.c) as a pure function of
 * the stored counts, on a fake clock. The storage and its atomicity are
 * tested on both backends in test_repo.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lockout.h"

#define T0 INT64_C(1700000000000)
#define DAY INT64_C(86400000)

static const struct lockout_policy pol = { 3, 8000 };

/* One attempt from `a` at `now`: 0 when checked, else the lock's end. */
static int64_t attempt(struct login_count *a, struct login_count *all,
                       int64_t now)
{
    struct lockout_verdict v;

    lockout_attempt(&pol, now, a, all, &v);
    return v.refused ? v.until : 0;
}

/* The ticket of the attempt just made on `a` and `all`, which did (or
 * did not) count in the total. */
static struct lockout_ticket ticket(const struct login_count *a,
                                    const struct login_count *all,
                                    bool all_counted)
{
    return (struct lockout_ticket){ .set = true, .count = a->count,
                                    .locked_until = a->locked_until,
                                    .all_count = all->count,
                                    .all_locked_until = all->locked_until,
                                    .all_counted = all_counted };
}

/* One attempt under policy `p`, whatever its verdict. */
static void count(const struct lockout_policy *p, int64_t now,
                  struct login_count *a, struct login_count *all)
{
    struct lockout_verdict v;

    lockout_attempt(p, now, a, all, &v);
}

static void threshold_then_doubling_then_cap(void **state)
{
    struct login_count a = { 0 }, all = { 0 };
    struct lockout_verdict v;

    (void)state;
    assert_int_equal(attempt(&a, &all, T0), 0);
    assert_int_equal(attempt(&a, &all, T0 + 1), 0);
    assert_int_equal(a.locked_until, 0);
    /* The third attempt is checked, and locks at once for 1 s. */
    lockout_attempt(&pol, T0 + 2, &a, &all, &v);
    assert_false(v.refused);
    assert_int_equal(v.until, T0 + 1002);
    /* During a delay: refused, counted, doubled (2, 4, 8, 8 s). */
    assert_int_equal(attempt(&a, &all, T0 + 10), T0 + 2010);
    assert_int_equal(attempt(&a, &all, T0 + 20), T0 + 4020);
    assert_int_equal(attempt(&a, &all, T0 + 30), T0 + 8030);
    assert_int_equal(attempt(&a, &all, T0 + 40), T0 + 8040);
    assert_int_equal(a.count, 7);
    /* Once it ran out, one attempt is checked (and locks again). */
    assert_int_equal(attempt(&a, &all, T0 + 8041), 0);
    assert_int_equal(a.locked_until, T0 + 8041 + 8000);
}

static void one_address_adds_at_most_the_threshold(void **state)
{
    struct login_count a = { 0 }, b = { 0 }, all = { 0 };
    int64_t t = T0;
    int i;

    (void)state;
    /* Ten thousand attempts, each after the last lock ran out. */
    for (i = 0; i < 10000; i++) {
        attempt(&a, &all, t);
        t += 8001;
    }
    assert_int_equal(a.count, 10000);
    assert_int_equal(all.count, 3);
    assert_int_equal(all.locked_until, 0);
    assert_int_equal(attempt(&b, &all, t), 0);
}

/* README "Lockout": only past 10 times the threshold. Ten addresses,
 * each adding the threshold, reach it exactly and lock no one else; the
 * eleventh address's failure goes past it. */
static void past_ten_times_the_threshold_locks_every_address(void **state)
{
    struct login_count a[12] = { { 0 } }, all = { 0 };
    int i, j;

    (void)state;
    for (i = 0; i < 10; i++)
        for (j = 0; j < 3; j++)
            assert_int_equal(attempt(&a[i], &all, T0 + i), 0);
    assert_int_equal(all.count, 30);
    assert_int_equal(all.locked_until, 0);
    /* Ten addresses past their own threshold add nothing more. */
    for (i = 0; i < 10; i++)
        assert_true(attempt(&a[i], &all, T0 + 20) > 0);
    assert_int_equal(all.count, 30);
    assert_int_equal(all.locked_until, 0);
    /* The eleventh address is checked, and its failure locks the email. */
    assert_int_equal(attempt(&a[10], &all, T0 + 50), 0);
    assert_int_equal(all.count, 31);
    assert_int_equal(all.locked_until, T0 + 50 + 1000);
    /* A fresh address is refused, and its attempt doubles the lock. */
    assert_int_equal(attempt(&a[11], &all, T0 + 100), T0 + 2100);
    /* So does an address past its own threshold, once the total is
     * reached: its attempt counts too. */
    assert_int_equal(attempt(&a[0], &all, T0 + 200), T0 + 4200);
    assert_int_equal(all.count, 33);
    /* With the delay run out, one attempt from any of them is checked,
     * and the next from any other address waits for the doubled delay. */
    assert_int_equal(attempt(&a[1], &all, T0 + 4200), 0);
    assert_int_equal(all.locked_until, T0 + 4200 + 8000);
    assert_true(attempt(&a[2], &all, T0 + 4201) > 0);
}

/* The owner's right password, from an eleventh address, takes the
 * total to its limit while it is checked; ten addresses at their
 * threshold go on guessing meanwhile (refused, and counted, since the
 * limit is reached). Its take-back takes theirs back too: the total is
 * again ten addresses' worth, and the email is not locked. */
static void a_take_back_at_the_limit_takes_back_what_it_let_count(
    void **state)
{
    struct login_count a[12] = { { 0 } }, all = { 0 };
    struct lockout_ticket t;
    int i, j;

    (void)state;
    for (i = 0; i < 10; i++)
        for (j = 0; j < 3; j++)
            assert_int_equal(attempt(&a[i], &all, T0 + i), 0);
    assert_int_equal(attempt(&a[10], &all, T0 + 100), 0);   /* the owner */
    t = ticket(&a[10], &all, true);
    assert_int_equal(all.count, 31);
    for (i = 0; i < 10; i++)                    /* during its check */
        assert_true(attempt(&a[i], &all, T0 + 101 + i) > 0);
    assert_int_equal(all.count, 41);
    lockout_take_back(&pol, &a[10], &all, &t);
    assert_int_equal(all.count, 30);
    assert_int_equal(all.locked_until, 0);
    assert_int_equal(a[10].count, 0);
    assert_int_equal(attempt(&a[11], &all, T0 + 200), 0);   /* checked */
    /* A take-back of an attempt made past the limit takes only its own. */
    t = ticket(&a[11], &all, true);
    assert_int_equal(all.count, 31);
    assert_true(attempt(&a[0], &all, T0 + 201) > 0);
    assert_int_equal(all.count, 32);
    all.count = 40;                             /* others, meanwhile */
    t.all_count = 35;
    lockout_take_back(&pol, &a[11], &all, &t);
    assert_int_equal(all.count, 39);
}

/* Below the total, an address past its own threshold never adds to it
 * (it alone never locks the email for others), however long it goes on;
 * a take-back above the total takes its share back. */
static void the_total_counts_every_address_only_once_reached(void **state)
{
    const struct lockout_policy one = { 1, 8000 };
    struct login_count a = { 0 }, b = { 0 }, all = { 0 };
    struct lockout_ticket t;
    int i;

    (void)state;
    for (i = 0; i < 50; i++)
        count(&one, T0 + i * 10000, &a, &all);
    assert_int_equal(all.count, 1);
    all.count = 10;                       /* ten addresses' worth */
    all.last_at = T0;
    count(&one, T0 + 600000, &b, &all);   /* past it: the total reached */
    assert_int_equal(all.count, 11);
    count(&one, T0 + 700000, &a, &all);
    assert_int_equal(all.count, 12);
    t = ticket(&a, &all, true);
    lockout_take_back(&one, &a, &all, &t);
    assert_int_equal(all.count, 11);
    assert_int_equal(all.locked_until, 0);

    /* An attempt that did not count in the total (its address past its
     * threshold, the total not reached) takes nothing from it, even when
     * other addresses took it past the limit meanwhile. */
    all = (struct login_count){ .count = 5, .last_at = T0 + 800000 };
    count(&one, T0 + 800000, &a, &all);
    assert_int_equal(all.count, 5);
    t = ticket(&a, &all, false);
    all.count = 12;                              /* others, meanwhile */
    lockout_take_back(&one, &a, &all, &t);
    assert_int_equal(all.count, 12);
}

static void idle_counts_start_over(void **state)
{
    struct login_count a = { 0 }, all = { 0 };
    const struct lockout_policy longer = { 3, 3 * DAY };
    struct lockout_verdict v;
    int i;

    (void)state;
    for (i = 0; i < 5; i++)
        attempt(&a, &all, T0);
    assert_int_equal(attempt(&a, &all, T0 + DAY + 1), 0);
    assert_int_equal(a.count, 1);
    assert_int_equal(all.count, 1);
    /* With delays longer than half a day, counts last twice the delay. */
    a = all = (struct login_count){ 0 };
    for (i = 0; i < 5; i++)
        lockout_attempt(&longer, T0, &a, &all, &v);
    lockout_attempt(&longer, T0 + DAY + 1, &a, &all, &v);
    assert_false(v.refused);                    /* the 4 s lock is over */
    assert_int_equal(a.count, 6);               /* but the count goes on */
}

static void the_shift_never_overflows(void **state)
{
    const struct lockout_policy huge = { 1, INT64_C(1) << 50 };
    struct login_count a = { 0 }, all = { 0 };
    struct lockout_verdict v;
    int i;

    (void)state;
    for (i = 0; i < 100; i++)
        lockout_attempt(&huge, T0, &a, &all, &v);
    assert_int_equal(a.locked_until, T0 + (INT64_C(1000) << 20));
}

/* A right password that does not complete the login (second factor on)
 * takes its attempt back: the run neither grows nor ends. */
static void a_right_secret_takes_its_attempt_back(void **state)
{
    struct login_count a = { 0 }, all = { 0 };

    (void)state;
    assert_int_equal(attempt(&a, &all, T0), 0);          /* wrong */
    assert_int_equal(attempt(&a, &all, T0 + 1), 0);      /* right... */
    lockout_take_back(&pol, &a, &all, NULL);                   /* ...not done */
    assert_int_equal(a.count, 1);
    assert_int_equal(all.count, 1);
    assert_int_equal(attempt(&a, &all, T0 + 2), 0);
    assert_int_equal(a.locked_until, 0);                 /* 2 of 3 */
    /* Taking back the attempt that reached the threshold lifts its lock. */
    assert_int_equal(attempt(&a, &all, T0 + 3), 0);
    assert_int_equal(a.locked_until, T0 + 1003);
    lockout_take_back(&pol, &a, &all, NULL);
    assert_int_equal(a.locked_until, 0);
    assert_int_equal(a.count, 2);
    /* Nothing to take back: no change, never negative. */
    a = all = (struct login_count){ 0 };
    lockout_take_back(&pol, &a, &all, NULL);
    assert_int_equal(a.count, 0);
    assert_int_equal(all.count, 0);
}

/* Past the threshold, once the delay has run out, a right secret that
 * does not complete the login takes back the delay it armed too: the
 * next attempt is checked at once (README "Lockout"), and no delay
 * doubles for it. A delay a later failure armed stays. */
static void a_take_back_lifts_the_delay_it_armed(void **state)
{
    struct login_count a = { 0 }, all = { 0 };
    struct lockout_ticket t;
    int64_t now = T0 + 3;

    (void)state;
    assert_int_equal(attempt(&a, &all, T0), 0);
    assert_int_equal(attempt(&a, &all, T0 + 1), 0);
    assert_int_equal(attempt(&a, &all, T0 + 2), 0);      /* 1 s delay */
    now = a.locked_until;                                /* run out */
    assert_int_equal(attempt(&a, &all, now), 0);         /* right... */
    assert_int_equal(a.locked_until, now + 2000);
    t = ticket(&a, &all, false);           /* past its threshold: not */
    lockout_take_back(&pol, &a, &all, &t);               /* ...not done */
    assert_int_equal(a.count, 3);
    assert_int_equal(a.locked_until, 0);
    assert_int_equal(attempt(&a, &all, now + 1), 0);     /* checked at once */
    assert_int_equal(a.locked_until, now + 1 + 2000);    /* not 4 s */

    /* Without the ticket: the count only (as before). */
    now = a.locked_until;
    assert_int_equal(attempt(&a, &all, now), 0);
    lockout_take_back(&pol, &a, &all, NULL);
    assert_int_equal(a.locked_until, now + 4000);

    /* A failure counted after the right secret: its delay stays. */
    now = a.locked_until;
    assert_int_equal(attempt(&a, &all, now), 0);         /* right */
    t = ticket(&a, &all, false);
    assert_int_not_equal(attempt(&a, &all, now + 1), 0); /* refused, armed */
    lockout_take_back(&pol, &a, &all, &t);
    assert_true(a.locked_until > now + 1);
    assert_int_not_equal(attempt(&a, &all, now + 2), 0);

    /* The total's delay, armed by the attempt, goes the same way. */
    {
        const struct lockout_policy one = { 1, 8000 };
        struct login_count b = { 0 }, tot = { .count = 10, .last_at = T0 };
        struct lockout_verdict v;

        lockout_attempt(&one, T0, &b, &tot, &v);         /* the 11th */
        assert_false(v.refused);
        assert_int_equal(tot.locked_until, T0 + 1000);
        t = ticket(&b, &tot, true);
        lockout_take_back(&one, &b, &tot, &t);
        assert_int_equal(tot.count, 10);
        assert_int_equal(tot.locked_until, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(threshold_then_doubling_then_cap),
        cmocka_unit_test(one_address_adds_at_most_the_threshold),
        cmocka_unit_test(past_ten_times_the_threshold_locks_every_address),
        cmocka_unit_test(a_take_back_at_the_limit_takes_back_what_it_let_count),
        cmocka_unit_test(the_total_counts_every_address_only_once_reached),
        cmocka_unit_test(idle_counts_start_over),
        cmocka_unit_test(the_shift_never_overflows),
        cmocka_unit_test(a_right_secret_takes_its_attempt_back),
        cmocka_unit_test(a_take_back_lifts_the_delay_it_armed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
