/* test_breaker.c: the circuit breaker's state machine on a fake clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "breaker.h"

#define T0 1000000u              /* any start: the clock is ours */

static int setup(void **state)
{
    struct breaker *b = breaker_new(3, 5000, 1);

    *state = b;
    return b ? 0 : -1;
}

static int teardown(void **state)
{
    breaker_free(*state);
    return 0;
}

/* One call through the breaker at `now` that ends with `res`. */
static bool call(struct breaker *b, uint64_t now, enum as_err res)
{
    if (!breaker_allow(b, now))
        return false;
    breaker_record(b, res, now);
    return true;
}

/* Opens a (3, 5000, 1) breaker at T0. */
static void open_it(struct breaker *b)
{
    int i;

    for (i = 0; i < 3; i++)
        assert_true(call(b, T0, AS_ERR_UNAVAILABLE));
    assert_int_equal(breaker_state(b, T0), BREAKER_OPEN);
}

static void stays_closed_below_threshold(void **state)
{
    struct breaker *b = *state;

    assert_true(call(b, T0, AS_ERR_INTERNAL));
    assert_true(call(b, T0 + 1, AS_ERR_UNAVAILABLE));
    assert_int_equal(breaker_state(b, T0 + 2), BREAKER_CLOSED);
    assert_true(breaker_allow(b, T0 + 2));
    assert_int_equal(breaker_retry_after_ms(b, T0 + 2), 0);
}

static void opens_at_threshold(void **state)
{
    struct breaker *b = *state;

    assert_true(call(b, T0, AS_ERR_INTERNAL));
    assert_true(call(b, T0, AS_ERR_NOMEM));
    assert_int_equal(breaker_state(b, T0), BREAKER_CLOSED);
    assert_true(call(b, T0, AS_ERR_OVERLOADED));
    assert_int_equal(breaker_state(b, T0), BREAKER_OPEN);
}

/* A server that did not answer at all in time opens it at once: with a
 * threshold of 3, two more requests would each wait the same timeout. */
static void unreachable_opens_at_once(void **state)
{
    struct breaker *b = *state;

    assert_true(call(b, T0, AS_ERR_DB_UNREACHABLE));
    assert_int_equal(breaker_state(b, T0), BREAKER_OPEN);
    assert_false(breaker_allow(b, T0 + 1));
    assert_int_equal(breaker_retry_after_ms(b, T0 + 1), 4999);
    assert_true(as_err_is_infra(AS_ERR_DB_UNREACHABLE));
    assert_int_equal(as_err_http_status(AS_ERR_DB_UNREACHABLE), 503);
    /* and its probe, when the server still does not answer, again */
    assert_true(call(b, T0 + 5000, AS_ERR_DB_UNREACHABLE));
    assert_int_equal(breaker_state(b, T0 + 5000), BREAKER_OPEN);
    assert_true(call(b, T0 + 10000, AS_OK));
    assert_int_equal(breaker_state(b, T0 + 10000), BREAKER_CLOSED);
}

static void non_infra_results_reset_streak(void **state)
{
    static const enum as_err ok[] = {
        AS_OK, AS_ERR_NOT_FOUND, AS_ERR_EMAIL_TAKEN, AS_ERR_LAST_ADMIN,
        AS_ERR_BAD_REQUEST, AS_ERR_CONFLICT,
    };
    struct breaker *b = *state;
    size_t i;

    for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_true(call(b, T0, AS_ERR_INTERNAL));
        assert_true(call(b, T0, AS_ERR_INTERNAL));
        assert_true(call(b, T0, ok[i]));             /* streak back to 0 */
        assert_int_equal(breaker_state(b, T0), BREAKER_CLOSED);
    }
    assert_true(call(b, T0, AS_ERR_INTERNAL));
    assert_true(call(b, T0, AS_ERR_INTERNAL));
    assert_int_equal(breaker_state(b, T0), BREAKER_CLOSED);
    assert_true(call(b, T0, AS_ERR_INTERNAL));
    assert_int_equal(breaker_state(b, T0), BREAKER_OPEN);
}

static void open_refuses_until_cooldown(void **state)
{
    struct breaker *b = *state;

    open_it(b);
    assert_false(breaker_allow(b, T0));
    assert_false(breaker_allow(b, T0 + 4999));
    assert_int_equal(breaker_state(b, T0 + 4999), BREAKER_OPEN);
    assert_int_equal(breaker_state(b, T0 + 5000), BREAKER_HALF_OPEN);
}

static void retry_after_counts_down(void **state)
{
    struct breaker *b = *state;

    open_it(b);
    assert_int_equal(breaker_retry_after_ms(b, T0), 5000);
    assert_int_equal(breaker_retry_after_ms(b, T0 + 1234), 3766);
    assert_int_equal(breaker_retry_after_ms(b, T0 + 4999), 1);
    assert_int_equal(breaker_retry_after_ms(b, T0 + 5000), 0);
    assert_int_equal(breaker_retry_after_ms(b, T0 + 99999), 0);
}

static void half_open_limits_probes(void **state)
{
    struct breaker *b = *state;
    struct breaker *two = breaker_new(1, 100, 2);

    open_it(b);
    assert_true(breaker_allow(b, T0 + 5000));      /* the one probe */
    assert_false(breaker_allow(b, T0 + 5001));     /* slot taken */
    assert_false(breaker_allow(b, T0 + 5002));
    assert_int_equal(breaker_state(b, T0 + 5002), BREAKER_HALF_OPEN);

    assert_non_null(two);
    assert_true(call(two, T0, AS_ERR_INTERNAL));
    assert_int_equal(breaker_state(two, T0), BREAKER_OPEN);
    assert_true(breaker_allow(two, T0 + 100));
    assert_true(breaker_allow(two, T0 + 100));
    assert_false(breaker_allow(two, T0 + 100));
    breaker_free(two);
}

static void probe_success_closes(void **state)
{
    struct breaker *b = *state;

    open_it(b);
    assert_true(breaker_allow(b, T0 + 6000));
    breaker_record(b, AS_ERR_NOT_FOUND, T0 + 6001);   /* not infra: fine */
    assert_int_equal(breaker_state(b, T0 + 6001), BREAKER_CLOSED);
    assert_true(breaker_allow(b, T0 + 6002));
    assert_true(breaker_allow(b, T0 + 6002));
    /* A fresh streak is needed to open it again. */
    assert_true(call(b, T0 + 6003, AS_ERR_INTERNAL));
    assert_true(call(b, T0 + 6003, AS_ERR_INTERNAL));
    assert_int_equal(breaker_state(b, T0 + 6003), BREAKER_CLOSED);
}

/* A write refused by a read-only database: no failure (however many,
 * reads go on), and no success either (the failures of a server that
 * does not answer keep counting); a probe it answers closes. */
static void read_only_neither_fails_nor_clears(void **state)
{
    struct breaker *b = *state;
    int i;

    for (i = 0; i < 10; i++)
        assert_true(call(b, T0, AS_ERR_READ_ONLY));
    assert_int_equal(breaker_state(b, T0), BREAKER_CLOSED);
    assert_true(call(b, T0, AS_ERR_UNAVAILABLE));
    assert_true(call(b, T0, AS_ERR_READ_ONLY));
    assert_true(call(b, T0, AS_ERR_UNAVAILABLE));
    assert_true(call(b, T0, AS_ERR_READ_ONLY));
    assert_true(call(b, T0, AS_ERR_UNAVAILABLE));
    assert_int_equal(breaker_state(b, T0), BREAKER_OPEN);
    assert_true(breaker_allow(b, T0 + 6000));
    breaker_record(b, AS_ERR_READ_ONLY, T0 + 6001);
    assert_int_equal(breaker_state(b, T0 + 6001), BREAKER_CLOSED);
}

static void probe_failure_reopens(void **state)
{
    struct breaker *b = *state;
    uint64_t t = T0 + 7000;

    open_it(b);
    assert_true(breaker_allow(b, t));
    breaker_record(b, AS_ERR_UNAVAILABLE, t + 10);
    assert_int_equal(breaker_state(b, t + 10), BREAKER_OPEN);
    assert_false(breaker_allow(b, t + 10));
    /* The cooldown starts again from the failed probe. */
    assert_int_equal(breaker_retry_after_ms(b, t + 10), 5000);
    assert_false(breaker_allow(b, t + 5009));
    assert_true(breaker_allow(b, t + 5010));
    breaker_record(b, AS_OK, t + 5011);
    assert_int_equal(breaker_state(b, t + 5011), BREAKER_CLOSED);
}

static void late_result_while_open_is_ignored(void **state)
{
    struct breaker *b = *state;

    assert_true(breaker_allow(b, T0));     /* slow call starts closed */
    open_it(b);
    breaker_record(b, AS_OK, T0 + 10);     /* and ends after it opened */
    assert_int_equal(breaker_state(b, T0 + 10), BREAKER_OPEN);
    assert_false(breaker_allow(b, T0 + 10));
}

static void zero_settings_are_sane(void **state)
{
    struct breaker *b = breaker_new(0, 0, 0);

    (void)state;
    assert_non_null(b);
    assert_true(call(b, T0, AS_ERR_INTERNAL));     /* threshold 0 acts as 1 */
    assert_int_equal(breaker_state(b, T0), BREAKER_HALF_OPEN);
    assert_true(breaker_allow(b, T0));             /* one probe */
    assert_false(breaker_allow(b, T0));
    breaker_free(b);
    breaker_free(NULL);
}

static void state_names(void **state)
{
    (void)state;
    assert_string_equal(breaker_state_name(BREAKER_CLOSED), "closed");
    assert_string_equal(breaker_state_name(BREAKER_OPEN), "open");
    assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
    assert_string_equal(breaker_state_name((enum breaker_state)42),
                        "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(stays_closed_below_threshold),
        T(opens_at_threshold),
        T(unreachable_opens_at_once),
        T(non_infra_results_reset_streak),
        T(open_refuses_until_cooldown),
        T(retry_after_counts_down),
        T(half_open_limits_probes),
        T(probe_success_closes),
        T(read_only_neither_fails_nor_clears),
        T(probe_failure_reopens),
        T(late_result_while_open_is_ignored),
        cmocka_unit_test(zero_settings_are_sane),
        cmocka_unit_test(state_names),
#undef T
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
