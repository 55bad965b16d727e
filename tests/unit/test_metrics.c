/* Metrics: requests are counted by their route's place in the table the
 * metrics were made with, and rendered under that route's method and
 * pattern; a request of no route is counted as unmatched, a status not
 * listed as "other". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"
#include "http.h"
#include "metrics.h"
#include "repo/repo_int.h"
#include "workpool.h"

static void fake_close(void *impl)
{
    (void)impl;
}

static const struct repo_ops fake = { .name = "fake", .close = fake_close };

/* The rendered counter line of `method pattern status`, with its value,
 * or NULL when it is not there. */
static const char *line(const char *text, const char *method,
                        const char *pattern, const char *status)
{
    char want[256];

    snprintf(want, sizeof want,
             "auth_http_requests_total{method=\"%s\",route=\"%s\","
             "status=\"%s\"} ", method, pattern, status);
    return strstr(text, want);
}

static void test_counted_by_route(void **state)
{
    struct cfg c = { .cb_failure_threshold = 5, .cb_open_seconds = 1 };
    struct app app = { .listen_fd = -1 };
    size_t n;
    const struct route *all = router_routes(&n);
    struct metrics *m = metrics_new(all, n);
    char *text;

    (void)state;
    assert_true(n > 2);
    assert_non_null(m);
    assert_int_equal(repo_wrap(&c, &fake, NULL, &app.repo), AS_OK);
    app.pool = workpool_new(1, 1);
    assert_non_null(app.pool);
    metrics_request(m, &all[1], 200, 1500);
    metrics_request(m, &all[1], 200, 2500);
    metrics_request(m, &all[2], 401, 10);
    metrics_request(m, NULL, 404, 10);
    metrics_request(m, NULL, 418, 10);
    text = metrics_render(m, &app);
    assert_non_null(text);
    assert_non_null(line(text, all[1].method, all[1].pattern, "200"));
    assert_int_equal(atoi(strchr(line(text, all[1].method, all[1].pattern,
                                      "200"), '}') + 2),
                     2);
    assert_non_null(line(text, all[2].method, all[2].pattern, "401"));
    assert_null(line(text, all[1].method, all[1].pattern, "401"));
    assert_null(line(text, all[0].method, all[0].pattern, "200"));
    assert_non_null(line(text, "any", "(unmatched)", "404"));
    assert_non_null(line(text, "any", "(unmatched)", "other"));
    assert_null(line(text, all[1].method, all[1].pattern, "other"));
    free(text);
    metrics_free(m);
    workpool_free(app.pool);
    repo_close(app.repo);
}

/* A request of a method no route of its path has (405, OPTIONS) is
 * counted under method "other" and the path's pattern, once per pattern
 * whichever of its routes names it; it was counted as unmatched. */
static void test_other_methods_counted_by_pattern(void **state)
{
    struct cfg c = { .cb_failure_threshold = 5, .cb_open_seconds = 1 };
    struct app app = { .listen_fd = -1 };
    size_t n, i, j = 0;
    const struct route *all = router_routes(&n);
    struct metrics *m = metrics_new(all, n);
    const char *l;
    char *text;

    (void)state;
    assert_non_null(m);
    assert_int_equal(repo_wrap(&c, &fake, NULL, &app.repo), AS_OK);
    app.pool = workpool_new(1, 1);
    assert_non_null(app.pool);
    for (i = 1; i < n; i++) {           /* two routes of one pattern */
        for (j = 0; j < i && strcmp(all[i].pattern, all[j].pattern); j++)
            ;
        if (j < i)
            break;
    }
    assert_true(i < n);
    metrics_request_other(m, &all[i], 405, 10);
    metrics_request_other(m, &all[j], 405, 10);
    metrics_request_other(m, &all[i], 204, 10);
    metrics_request(m, NULL, 404, 10);
    text = metrics_render(m, &app);
    assert_non_null(text);
    l = line(text, "other", all[i].pattern, "405");
    assert_non_null(l);
    assert_int_equal(atoi(strchr(l, '}') + 2), 2);
    assert_non_null(line(text, "other", all[i].pattern, "204"));
    assert_null(line(text, "any", "(unmatched)", "405"));
    assert_non_null(line(text, "any", "(unmatched)", "404"));
    assert_non_null(strstr(text, "auth_http_request_duration_seconds_count{"
                                 "method=\"other\""));
    free(text);
    metrics_free(m);
    workpool_free(app.pool);
    repo_close(app.repo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counted_by_route),
        cmocka_unit_test(test_other_methods_counted_by_pattern),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
