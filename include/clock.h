#ifndef AUTH_CLOCK_H             /* clock.h: the only place that reads time */
#define AUTH_CLOCK_H
#include <stddef.h>
#include <stdint.h>

/* Wall-clock milliseconds since the Unix epoch. */
int64_t clock_ms(void);
/* Monotonic milliseconds, for durations and timeouts. */
uint64_t clock_mono_ms(void);
/* Wall-clock microseconds since the Unix epoch. */
int64_t clock_us(void);
/* The wall-clock microsecond (clock_us()) of the monotonic microsecond
 * `mono_us` (CLOCK_MONOTONIC, now or past): both clocks read at once. */
int64_t clock_us_at(uint64_t mono_us);
/* Formats `ms` as RFC 3339 UTC with second precision ("...T12:00:00Z")
 * into `out` (at least 21 bytes). */
void clock_rfc3339(int64_t ms, char out[32]);
/* The same with milliseconds ("...T12:00:00.250Z", at least 25 bytes):
 * the time of a log line. */
void clock_rfc3339_ms(int64_t ms, char out[32]);
/* The CLOCK_MONOTONIC time `ms` from now, for pthread_cond_timedwait on
 * a condition variable set to that clock. */
struct timespec;
void clock_deadline(struct timespec *ts, uint64_t ms);

#endif
