/* clock.c: wall and monotonic time, RFC 3339 formatting. */
#include "clock.h"

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

int64_t clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t clock_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t clock_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t clock_us_at(uint64_t mono_us)
{
    struct timespec mono;
    int64_t wall_us = clock_us(), ago_us;

    clock_gettime(CLOCK_MONOTONIC, &mono);
    ago_us = (int64_t)mono.tv_sec * 1000000 + mono.tv_nsec / 1000 -
             (int64_t)mono_us;
    return wall_us - (ago_us > 0 ? ago_us : 0);
}

/* Two digits of `v` (0-99) at `p`. */
static char *two(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

/* The proleptic Gregorian date of day `z` since 1970-01-01, by whole
 * 400-year eras (H. Hinnant, "chrono-Compatible Low-Level Date
 * Algorithms", civil_from_days). gmtime_r takes glibc's time-zone lock
 * on every call and strftime walks a format: for the two times of a
 * user's JSON, 2.3k of the 5.9k instructions GET /users/me spent beyond
 * GET /healthz (README.md, "Performance"). */
static void civil(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era, yy;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    yy = (int64_t)yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

/* "YYYY-MM-DDTHH:MM:SS", then ".mmm" when `frac`, then "Z". */
static void rfc3339(int64_t ms, bool frac, char out[32])
{
    /* Floor division: a time before 1970 is in the day and second it
     * falls in, as gmtime_r has it. */
    int64_t s = ms / 1000 - (ms % 1000 < 0);
    int64_t days = s / 86400 - (s % 86400 < 0), y;
    unsigned sod = (unsigned)(s - days * 86400), m, d;
    unsigned milli = (unsigned)(ms - s * 1000);
    char *p = out;

    civil(days, &y, &m, &d);
    if (y < 0 || y > 9999) {     /* not a time this daemon stores */
        time_t t = (time_t)s;
        struct tm tm;

        gmtime_r(&t, &tm);
        p += strftime(out, 24, "%Y-%m-%dT%H:%M:%S", &tm);
    } else {
        p = two(p, (unsigned)(y / 100));
        p = two(p, (unsigned)(y % 100));
        *p++ = '-';
        p = two(p, m);
        *p++ = '-';
        p = two(p, d);
        *p++ = 'T';
        p = two(p, sod / 3600);
        *p++ = ':';
        p = two(p, sod / 60 % 60);
        *p++ = ':';
        p = two(p, sod % 60);
    }
    if (frac) {
        *p++ = '.';
        *p++ = (char)('0' + milli / 100);
        p = two(p, milli % 100);
    }
    *p++ = 'Z';
    *p = '\0';
}

void clock_rfc3339(int64_t ms, char out[32])
{
    rfc3339(ms, false, out);
}

void clock_rfc3339_ms(int64_t ms, char out[32])
{
    rfc3339(ms, true, out);
}

void clock_deadline(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}
