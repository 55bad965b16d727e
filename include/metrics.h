#ifndef AUTH_METRICS_H           /* metrics.h: Prometheus counters */
#define AUTH_METRICS_H
#include <stddef.h>
#include <stdint.h>

struct route;
struct app;

/* Request counts by route and status, latency histograms by route.
 * Lock-free (atomics); made once at start. */
struct metrics;

/* Counters for the `nroutes` routes of `routes` (the route table,
 * router_routes(); borrowed for the metrics' life: requests are counted
 * by their route's place in it). NULL when out of memory. Free with
 * metrics_free(); NULL is a no-op. */
struct metrics *metrics_new(const struct route *routes, size_t nroutes);
void metrics_free(struct metrics *m);
/* Records one answered request; `route` NULL for unmatched paths. */
void metrics_request(struct metrics *m, const struct route *route,
                     unsigned status, uint64_t duration_us);
/* Records one answered request of a method no route of its path has (a
 * 405, or an OPTIONS answer): under method "other" and the pattern of
 * `route`, a route of that path. */
void metrics_request_other(struct metrics *m, const struct route *route,
                           unsigned status, uint64_t duration_us);
/* The Prometheus text exposition of everything, including the hash queue
 * depth, circuit state and database errors read from `app`. Caller frees
 * with free(); NULL when out of memory. */
char *metrics_render(struct metrics *m, struct app *app);

#endif
