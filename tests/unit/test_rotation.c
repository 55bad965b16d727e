/* test_rotation.c: the refresh rotation rule (src/core/rotation.c) on a
 * fake clock: one token's life from fresh to replayed, and the edges. */
#include "rotation.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define T0 INT64_C(1700000000000)
#define GRACE INT64_C(10000)
#define DAY INT64_C(86400000)

/* A clock the test moves by hand. */
struct fake_clock {
    int64_t now;
};

static void tick(struct fake_clock *c, int64_t ms)
{
    c->now += ms;
}

/* A token of a live session (expiring in a day) of an active user. */
static struct rotation_facts fresh(void)
{
    return (struct rotation_facts){ .found = true, .expires_at = T0 + DAY,
                                    .created_at = T0, .user_active = true };
}

static void fresh_token_rotates(void **state)
{
    struct rotation_facts f = fresh();

    (void)state;
    assert_int_equal(rotation_judge(&f, T0, GRACE, DAY), ROTATE_OK);
}

/* Used at T0: a retry within the grace re-derives the child, up to and
 * including its last millisecond; one millisecond later it is a replay. */
static void grace_then_reuse(void **state)
{
    struct fake_clock clock = { T0 };
    struct rotation_facts f = fresh();

    (void)state;
    f.used = true;
    f.used_at = clock.now;
    assert_int_equal(rotation_judge(&f, clock.now, GRACE, DAY), ROTATE_GRACE);
    tick(&clock, GRACE - 1);
    assert_int_equal(rotation_judge(&f, clock.now, GRACE, DAY), ROTATE_GRACE);
    tick(&clock, 1);
    assert_int_equal(rotation_judge(&f, clock.now, GRACE, DAY), ROTATE_GRACE);
    tick(&clock, 1);
    assert_int_equal(rotation_judge(&f, clock.now, GRACE, DAY), ROTATE_REUSED);
    tick(&clock, DAY / 2);
    assert_int_equal(rotation_judge(&f, clock.now, GRACE, DAY), ROTATE_REUSED);
    /* without a grace every second use is a replay */
    assert_int_equal(rotation_judge(&f, T0 + 1, 0, DAY), ROTATE_REUSED);
    /* even in the millisecond of the rotation itself */
    assert_int_equal(rotation_judge(&f, T0, 0, DAY), ROTATE_REUSED);
    assert_int_equal(rotation_judge(&f, T0 + 1, -5, DAY), ROTATE_REUSED);
}

static void expired_session_is_invalid(void **state)
{
    struct fake_clock clock = { T0 };
    struct rotation_facts f = fresh();

    (void)state;
    tick(&clock, DAY - 1);
    assert_int_equal(rotation_judge(&f, clock.now, GRACE, DAY), ROTATE_OK);
    tick(&clock, 1);                     /* expires_at is not live */
    assert_int_equal(rotation_judge(&f, clock.now, GRACE, DAY), ROTATE_INVALID);
    f.used = true;                       /* nor a replay: nothing to revoke */
    f.used_at = T0;
    assert_int_equal(rotation_judge(&f, clock.now, GRACE, DAY), ROTATE_INVALID);
}

static void revoked_inactive_unknown_are_invalid(void **state)
{
    struct rotation_facts f = fresh();

    (void)state;
    f.revoked = true;
    assert_int_equal(rotation_judge(&f, T0, GRACE, DAY), ROTATE_INVALID);
    f.used = true;                       /* a replay after a revocation */
    f.used_at = T0 - DAY / 2;
    assert_int_equal(rotation_judge(&f, T0, GRACE, DAY), ROTATE_INVALID);
    f = fresh();
    f.user_active = false;
    assert_int_equal(rotation_judge(&f, T0, GRACE, DAY), ROTATE_INVALID);
    f = fresh();
    f.found = false;
    assert_int_equal(rotation_judge(&f, T0, GRACE, DAY), ROTATE_INVALID);
}

/* A session is moved forward by each rotation but never past its
 * creation plus the maximum life. */
static void max_lifetime_caps_the_expiry(void **state)
{
    struct fake_clock clock = { T0 };
    int64_t created = T0, life = 90 * DAY, exp;

    (void)state;
    exp = rotation_expiry(created, clock.now + 30 * DAY, life);
    assert_int_equal(exp, T0 + 30 * DAY);
    tick(&clock, 80 * DAY);
    exp = rotation_expiry(created, clock.now + 30 * DAY, life);
    assert_int_equal(exp, T0 + 90 * DAY);
    tick(&clock, 10 * DAY);              /* the session ended: expired */
    {
        struct rotation_facts f = fresh();

        f.expires_at = exp;
        assert_int_equal(rotation_judge(&f, clock.now, GRACE, DAY),
                         ROTATE_INVALID);
    }
    assert_int_equal(rotation_expiry(created, T0 + 1, 0), T0);
}

/* A rotated-out token is kept for its own lifetime (life_ms from its
 * creation) and the grace after it: rotated out in its last seconds, a
 * retry within the grace still gets the child and a replay after the
 * grace still ends the session; past both it is invalid, as once a
 * rotation has pruned it (before, it was a retry or a replay until
 * another refresh of its session pruned it; a review). The newest
 * token's life is the session's expiry. */
static void rotated_token_kept_its_life_and_the_grace(void **state)
{
    struct rotation_facts f = fresh();

    (void)state;
    f.expires_at = T0 + 2 * DAY;            /* refreshed since */
    f.used = true;
    f.used_at = T0 + DAY - 2000;            /* 2 s before its own end */
    assert_int_equal(rotation_judge(&f, T0 + DAY + 1, GRACE, DAY),
                     ROTATE_GRACE);         /* past its life, in the grace */
    assert_int_equal(rotation_judge(&f, T0 + DAY - 2000 + GRACE + 1, GRACE,
                                    DAY), ROTATE_REUSED);
    assert_int_equal(rotation_judge(&f, T0 + DAY + GRACE, GRACE, DAY),
                     ROTATE_REUSED);        /* its last kept millisecond */
    assert_int_equal(rotation_judge(&f, T0 + DAY + GRACE + 1, GRACE, DAY),
                     ROTATE_INVALID);       /* kept no longer */
    assert_int_equal(rotation_judge(&f, T0 + DAY + GRACE + 1, GRACE, 0),
                     ROTATE_REUSED);        /* no lifetime given */
    assert_int_equal(rotation_judge(&f, T0 + DAY, 0, DAY),
                     ROTATE_REUSED);        /* no grace: its life only */
    assert_int_equal(rotation_judge(&f, T0 + DAY + 1, 0, DAY),
                     ROTATE_INVALID);
    assert_int_equal(rotation_judge(&f, T0 + DAY + 1, -5, DAY),
                     ROTATE_INVALID);
    /* the lifetime lowered since it was issued: rotated out a moment
     * ago, two lifetimes after it was made (its session on the old one) */
    f.used_at = T0 + 2 * DAY;
    f.expires_at = T0 + 30 * DAY;
    assert_int_equal(rotation_judge(&f, T0 + 2 * DAY + GRACE, GRACE, DAY),
                     ROTATE_GRACE);
    assert_int_equal(rotation_judge(&f, T0 + 2 * DAY + GRACE + 1, GRACE,
                                    DAY), ROTATE_INVALID);
    assert_int_equal(rotation_judge(&f, T0 + 2 * DAY, 0, DAY),
                     ROTATE_INVALID);       /* no grace: kept no longer */
    f.used = false;                         /* the newest: the session's */
    assert_int_equal(rotation_judge(&f, T0 + DAY + GRACE + 1, GRACE, DAY),
                     ROTATE_OK);
    assert_int_equal(rotation_kept_from(T0, DAY, GRACE), T0 - DAY - GRACE);
    assert_int_equal(rotation_kept_from(INT64_MIN + 1, DAY, GRACE),
                     INT64_MIN);
    assert_int_equal(rotation_kept_from(T0, -1, -1), T0);
}

/* Extreme times and graces neither wrap nor trap (UBSan would). */
static void no_overflow(void **state)
{
    struct rotation_facts f = fresh();

    (void)state;
    f.used = true;
    f.used_at = INT64_MIN;
    f.expires_at = INT64_MAX;
    assert_int_equal(rotation_judge(&f, INT64_MIN + 5, INT64_MAX, DAY),
                     ROTATE_GRACE);
    assert_int_equal(rotation_judge(&f, INT64_MIN + 5, 1, DAY), ROTATE_REUSED);
    f.used_at = 0;
    assert_int_equal(rotation_judge(&f, INT64_MAX - 1, INT64_MAX, INT64_MAX),
                     ROTATE_GRACE);
    assert_int_equal(rotation_judge(&f, INT64_MAX - 1, INT64_MAX, DAY),
                     ROTATE_GRACE);     /* a grace longer than time: kept */
    assert_int_equal(rotation_judge(&f, INT64_MAX - 1, GRACE, DAY),
                     ROTATE_INVALID);   /* created long before */
    f.created_at = INT64_MIN;               /* not before a saturated now */
    assert_int_equal(rotation_judge(&f, INT64_MIN + 5, 1, INT64_MAX),
                     ROTATE_GRACE);
    assert_int_equal(rotation_expiry(INT64_MAX - 5, INT64_MAX, INT64_MAX),
                     INT64_MAX);
    assert_int_equal(rotation_expiry(INT64_MAX - 5, INT64_MAX, 1),
                     INT64_MAX - 4);
    assert_int_equal(rotation_expiry(INT64_MIN + 5, 0, INT64_MIN),
                     INT64_MIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fresh_token_rotates),
        cmocka_unit_test(grace_then_reuse),
        cmocka_unit_test(expired_session_is_invalid),
        cmocka_unit_test(revoked_inactive_unknown_are_invalid),
        cmocka_unit_test(max_lifetime_caps_the_expiry),
        cmocka_unit_test(rotated_token_kept_its_life_and_the_grace),
        cmocka_unit_test(no_overflow),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
