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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counted_by_route),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
