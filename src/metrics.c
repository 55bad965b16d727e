/* metrics.c: request counters and latency histograms, rendered in the
 * Prometheus text format. */
#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"
#include "clock.h"
#include "http.h"  /* struct route, struct app; not the route table */
#include "repo.h"
#include "workpool.h"

#define MAX_ROUTES 64
static const unsigned statuses[] = { 200, 201, 202, 204, 400, 401, 403,
                                     404, 405, 409, 413, 415, 422, 429,
                                     500, 503 };
#define NSTATUS (sizeof statuses / sizeof statuses[0])
#define OTHER NSTATUS                   /* any status not listed */
static const double bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1, 0.25, 0.5, 1, 2.5, 5 };
#define NBOUNDS (sizeof bounds / sizeof bounds[0])

struct route_stats {
    atomic_uint_fast64_t count[NSTATUS + 1];
    atomic_uint_fast64_t bucket[NBOUNDS + 1];   /* last: +Inf */
    atomic_uint_fast64_t sum_us;
};

struct metrics {
    const struct route *routes;                 /* the route table */
    size_t nroutes;
    struct route_stats r[MAX_ROUTES + 1];       /* last: unmatched */
    /* Requests of another method, by pattern: at the place of the
     * pattern's first route (first[i]: that place for route i). */
    struct route_stats other[MAX_ROUTES];
    size_t first[MAX_ROUTES];
};

struct metrics *metrics_new(const struct route *routes, size_t nroutes)
{
    struct metrics *m = calloc(1, sizeof(struct metrics));
    size_t i, j;

    if (m) {
        m->routes = routes;
        m->nroutes = nroutes;
        for (i = 0; i < nroutes && i < MAX_ROUTES; i++)
            for (j = 0; j <= i; j++)
                if (strcmp(routes[j].pattern, routes[i].pattern) == 0) {
                    m->first[i] = j;
                    break;
                }
    }
    return m;
}

void metrics_free(struct metrics *m)
{
    free(m);
}

static size_t route_index(const struct metrics *m, const struct route *route)
{
    size_t i;

    if (!route || !m->routes)
        return MAX_ROUTES;
    i = (size_t)(route - m->routes);
    return i < m->nroutes && i < MAX_ROUTES ? i : MAX_ROUTES;
}

static void count_in(struct route_stats *rs, unsigned status,
                     uint64_t duration_us)
{
    size_t s, b;

    for (s = 0; s < NSTATUS && statuses[s] != status; s++)
        ;
    atomic_fetch_add_explicit(&rs->count[s], 1, memory_order_relaxed);
    for (b = 0; b < NBOUNDS && (double)duration_us / 1e6 > bounds[b]; b++)
        ;
    atomic_fetch_add_explicit(&rs->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rs->sum_us, duration_us,
                              memory_order_relaxed);
}

void metrics_request(struct metrics *m, const struct route *route,
                     unsigned status, uint64_t duration_us)
{
    count_in(&m->r[route_index(m, route)], status, duration_us);
}

void metrics_request_other(struct metrics *m, const struct route *route,
                           unsigned status, uint64_t duration_us)
{
    size_t i = route_index(m, route);

    count_in(i < MAX_ROUTES ? &m->other[m->first[i]] : &m->r[MAX_ROUTES],
             status, duration_us);
}

/* The request counts of one route (family auth_http_requests_total). */
static void render_counts(FILE *f, const struct route_stats *rs,
                          const char *method, const char *pattern)
{
    size_t s;

    for (s = 0; s <= NSTATUS; s++) {
        uint64_t v = atomic_load(&rs->count[s]);
        char st[8];

        if (!v)
            continue;
        if (s < NSTATUS)
            snprintf(st, sizeof st, "%u", statuses[s]);
        else
            strcpy(st, "other");
        fprintf(f, "auth_http_requests_total{method=\"%s\",route=\"%s\","
                   "status=\"%s\"} %llu\n", method, pattern, st,
                (unsigned long long)v);
    }
}

/* The answer times of one route (family
 * auth_http_request_duration_seconds). */
static void render_times(FILE *f, const struct route_stats *rs,
                         const char *method, const char *pattern)
{
    uint64_t cum = 0, total = 0;
    size_t b;

    for (b = 0; b <= NBOUNDS; b++)
        total += atomic_load(&rs->bucket[b]);
    if (!total)
        return;
    for (b = 0; b <= NBOUNDS; b++) {
        cum += atomic_load(&rs->bucket[b]);
        if (b < NBOUNDS)
            fprintf(f, "auth_http_request_duration_seconds_bucket{method="
                       "\"%s\",route=\"%s\",le=\"%g\"} %llu\n", method,
                    pattern, bounds[b], (unsigned long long)cum);
        else
            fprintf(f, "auth_http_request_duration_seconds_bucket{method="
                       "\"%s\",route=\"%s\",le=\"+Inf\"} %llu\n", method,
                    pattern, (unsigned long long)cum);
    }
    fprintf(f, "auth_http_request_duration_seconds_sum{method=\"%s\","
               "route=\"%s\"} %.6f\n", method, pattern,
            (double)atomic_load(&rs->sum_us) / 1e6);
    fprintf(f, "auth_http_request_duration_seconds_count{method=\"%s\","
               "route=\"%s\"} %llu\n", method, pattern,
            (unsigned long long)total);
}

char *metrics_render(struct metrics *m, struct app *app)
{
    size_t n = m->nroutes, i, len, waiting;
    unsigned running;
    const struct route *all = m->routes;
    struct breaker *br = repo_breaker(app->repo);
    enum breaker_state st = breaker_state(br, clock_mono_ms());
    char *out = NULL;
    FILE *f = open_memstream(&out, &len);

    if (!f)
        return NULL;
    /* Each family in one group, its HELP and TYPE first (the text
     * exposition format; OpenMetrics parsers refuse a family reopened). */
    fputs("# HELP auth_http_requests_total HTTP requests answered.\n"
          "# TYPE auth_http_requests_total counter\n", f);
    for (i = 0; i < n && i < MAX_ROUTES; i++)
        render_counts(f, &m->r[i], all[i].method, all[i].pattern);
    for (i = 0; i < n && i < MAX_ROUTES; i++)
        if (m->first[i] == i)
            render_counts(f, &m->other[i], "other", all[i].pattern);
    render_counts(f, &m->r[MAX_ROUTES], "any", "(unmatched)");
    fputs("# HELP auth_http_request_duration_seconds Time to answer.\n"
          "# TYPE auth_http_request_duration_seconds histogram\n", f);
    for (i = 0; i < n && i < MAX_ROUTES; i++)
        render_times(f, &m->r[i], all[i].method, all[i].pattern);
    for (i = 0; i < n && i < MAX_ROUTES; i++)
        if (m->first[i] == i)
            render_times(f, &m->other[i], "other", all[i].pattern);
    render_times(f, &m->r[MAX_ROUTES], "any", "(unmatched)");
    workpool_load(app->pool, &waiting, &running);
    fprintf(f, "# HELP auth_hash_queue_depth Argon2 jobs waiting.\n"
               "# TYPE auth_hash_queue_depth gauge\n"
               "auth_hash_queue_depth %zu\n"
               "# HELP auth_hash_jobs_running Requests that hash a password "
               "running on the hashing workers now.\n"
               "# TYPE auth_hash_jobs_running gauge\n"
               "auth_hash_jobs_running %u\n", waiting, running);
    fputs("# HELP auth_circuit_state Database circuit breaker state "
          "(1 for the current one).\n# TYPE auth_circuit_state gauge\n", f);
    fprintf(f, "auth_circuit_state{state=\"closed\"} %d\n"
               "auth_circuit_state{state=\"open\"} %d\n"
               "auth_circuit_state{state=\"half_open\"} %d\n",
            st == BREAKER_CLOSED, st == BREAKER_OPEN,
            st == BREAKER_HALF_OPEN);
    fprintf(f, "# HELP auth_db_errors_total Database calls that failed "
               "(infrastructure errors).\n# TYPE auth_db_errors_total "
               "counter\nauth_db_errors_total %llu\n",
            (unsigned long long)repo_error_count(app->repo));
    fclose(f);
    return out;
}
