#ifndef AUTH_METRICS_H           /* metrics.h: Prometheus counters */
#define AUTH_METRICS_H
#include <stdint.h>

struct route;
struct app;

/* Request counts by route and status, latency histograms by route.
 * Lock-free (atomics); made once at start. */
struct metrics;

/* NULL when out of memory. Free with metrics_free(); NULL is a no-op. */
struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);
/* Records one answered request; `route` NULL for unmatched paths. */
void metrics_request(struct metrics *m, const struct route *route,
                     unsigned status, uint64_t duration_us);
/* The Prometheus text exposition of everything, including the hash queue
 * depth, circuit state and database errors read from `app`. Caller frees
 * with free(); NULL when out of memory. */
char *metrics_render(struct metrics *m, struct app *app);

#endif
