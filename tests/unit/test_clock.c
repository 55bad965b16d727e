/* clock_us_at(), and clock_rfc3339 and clock_rfc3339_ms against glibc's gmtime_r and
 * strftime (plus the milliseconds), which they replace on the hot paths: every day of 1900-2200 at its first and last
 * millisecond, a million random instants of years 1000-9999, and the
 * edges (before 1970, leap days, century years). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "clock.h"

static void reference(int64_t ms, char out[32])
{
    time_t s = (time_t)(ms / 1000 - (ms % 1000 < 0));
    struct tm tm;

    assert_non_null(gmtime_r(&s, &tm));
    assert_true(strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0);
}

static void same(int64_t ms)
{
    char want[32], have[32], want_ms[40];
    int frac = (int)(ms % 1000 + (ms % 1000 < 0 ? 1000 : 0));

    reference(ms, want);
    clock_rfc3339(ms, have);
    if (strcmp(want, have) != 0)
        fail_msg("%lld ms: %s, want %s", (long long)ms, have, want);
    snprintf(want_ms, sizeof want_ms, "%.*s.%03dZ",
             (int)strlen(want) - 1, want, frac);
    clock_rfc3339_ms(ms, have);
    if (strcmp(want_ms, have) != 0)
        fail_msg("%lld ms: %s, want %s", (long long)ms, have, want_ms);
}

static void test_edges(void **state)
{
    static const struct { int64_t ms; const char *want; } c[] = {
        { 0, "1970-01-01T00:00:00Z" },
        { 999, "1970-01-01T00:00:00Z" },
        { -1, "1969-12-31T23:59:59Z" },
        { -1000, "1969-12-31T23:59:59Z" },
        { -1001, "1969-12-31T23:59:58Z" },
        { 951782400000, "2000-02-29T00:00:00Z" },
        { 4107542400000, "2100-03-01T00:00:00Z" },
        { 1798761599999, "2026-12-31T23:59:59Z" },
        { 253402300799999, "9999-12-31T23:59:59Z" },
        { -62135596800000, "0001-01-01T00:00:00Z" },
    };
    static const struct { int64_t ms; const char *want; } f[] = {
        { 0, "1970-01-01T00:00:00.000Z" },
        { 999, "1970-01-01T00:00:00.999Z" },
        { 1050, "1970-01-01T00:00:01.050Z" },
        { -1, "1969-12-31T23:59:59.999Z" },
        { -1001, "1969-12-31T23:59:58.999Z" },
        { 1798761599999, "2026-12-31T23:59:59.999Z" },
        { 253402300800007, "10000-01-01T00:00:00.007Z" },  /* gmtime_r */
    };
    char have[32];

    (void)state;
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        clock_rfc3339(c[i].ms, have);
        assert_string_equal(have, c[i].want);
    }
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        clock_rfc3339_ms(f[i].ms, have);
        assert_string_equal(have, f[i].want);
    }
}

static void test_every_day_1900_2200(void **state)
{
    (void)state;
    for (int64_t day = -25567; day <= 84006; day++) {
        same(day * 86400000);
        same(day * 86400000 + 86399999);
        same(day * 86400000 + 43210123);
    }
}

static void test_random_instants(void **state)
{
    /* xorshift64: a fixed seed, so a failure repeats */
    uint64_t x = 0x9e3779b97f4a7c15u;
    const int64_t lo = -30610224000000;          /* 1000-01-01 */
    const uint64_t span = (uint64_t)(253402300799999 - lo);

    (void)state;
    for (int i = 0; i < 1000000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        same(lo + (int64_t)(x % span));
    }
}

/* clock_us_at(): the wall microsecond of a monotonic instant, now and
 * 1.5 s ago, between wall readings taken around it. */
static void test_us_at(void **state)
{
    struct timespec m;
    uint64_t now_us;
    int64_t before, at, after;

    (void)state;
    before = clock_us();
    clock_gettime(CLOCK_MONOTONIC, &m);
    now_us = (uint64_t)m.tv_sec * 1000000u + (uint64_t)m.tv_nsec / 1000u;
    at = clock_us_at(now_us);
    after = clock_us();
    /* (the two clocks are read a moment apart: a few us of slack) */
    assert_true(before - 5 <= at && at <= after + 5);
    at = clock_us_at(now_us - 1500000u);
    assert_true(before - 1500005 <= at && at <= after - 1499995);
    assert_true(clock_us() / 1000 >= after / 1000 &&
                clock_ms() >= after / 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_every_day_1900_2200),
        cmocka_unit_test(test_random_instants),
        cmocka_unit_test(test_us_at),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
