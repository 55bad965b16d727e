/* Router: matching, {id} parameters, 404/405, problem documents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "handlers.h"
#include "http.h"

static struct arena *a;

static int setup(void **state)
{
    (void)state;
    a = arena_new();
    return a ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    arena_free(a);
    return 0;
}

static enum router_result match(const char *m, const char *p,
                                const struct route **r, const char **param,
                                char *allow)
{
    return router_match(m, p, a, r, param, allow, 128);
}

static void test_exact_routes(void **state)
{
    const struct route *r;
    const char *param;
    char allow[128];

    (void)state;
    assert_int_equal(match("POST", "/api/v1/auth/login", &r, &param, allow),
                     ROUTE_FOUND);
    assert_ptr_equal(r->fn, h_login);
    assert_null(param);
    assert_int_equal(match("GET", "/api/v1/users/me", &r, &param, allow),
                     ROUTE_FOUND);
    assert_ptr_equal(r->fn, h_me_get);          /* not /users/{id} */
    assert_int_equal(r->access, ACCESS_USER);
    assert_int_equal(match("HEAD", "/healthz", &r, &param, allow),
                     ROUTE_FOUND);
}

/* Every method's flags at a path, for an answer that must not show a
 * restricted route (ROUTE_BAD_METHOD has no route to read them from). */
static void test_path_flags(void **state)
{
    const struct route *r;
    const char *param;
    char allow[128];
    size_t n, i, restricted = 0;
    const struct route *all = router_routes(&n);

    (void)state;
    assert_int_equal(match("POST", "/metrics", &r, &param, allow),
                     ROUTE_BAD_METHOD);
    assert_true(router_path_flags("/metrics") & RF_RESTRICTED);
    assert_false(router_path_flags("/metrics/") & RF_RESTRICTED);
    assert_false(router_path_flags("/metricsx") & RF_RESTRICTED);
    assert_int_equal(router_path_flags("/no-such-path"), 0);
    /* /users/me is a literal: not the flags of /users/{id} */
    assert_int_equal(router_path_flags("/api/v1/users/me") & RF_OFFLOAD,
                     RF_OFFLOAD);         /* PATCH, DELETE check a password */
    assert_int_equal(router_path_flags("/api/v1/users/0190d4c4-6b8d-7000-"
                                       "8000-000000000000") & RF_OFFLOAD, 0);
    assert_int_equal(router_path_flags("/api/v1/auth/login"),
                     RF_OFFLOAD | RF_NO_STORE | RF_FORM | RF_CREDENTIAL);
    for (i = 0; i < n; i++)
        restricted += (all[i].flags & RF_RESTRICTED) != 0;
    assert_int_equal(restricted, 1);             /* /metrics alone */
    /* The route a 405 is counted under: the path's, literal before
     * pattern, whatever the method. */
    assert_null(router_path_route("/no-such-path"));
    assert_string_equal(router_path_route("/api/v1/users/me")->pattern,
                        "/api/v1/users/me");
    assert_string_equal(router_path_route("/api/v1/users/0190d4c4-6b8d-"
                                          "7000-8000-000000000000")->pattern,
                        "/api/v1/users/{id}");
    assert_string_equal(router_path_route("/healthz")->pattern, "/healthz");
}

static void test_param(void **state)
{
    const struct route *r;
    const char *param;
    char allow[128];

    (void)state;
    assert_int_equal(match("GET", "/api/v1/users/0190c1d2-aaaa", &r, &param,
                           allow), ROUTE_FOUND);
    assert_ptr_equal(r->fn, h_user_get);
    assert_string_equal(param, "0190c1d2-aaaa");
    assert_int_equal(r->access, ACCESS_SELF_OR_ADMIN);
    assert_int_equal(match("DELETE", "/api/v1/auth/sessions/x", &r, &param,
                           allow), ROUTE_FOUND);
    assert_string_equal(param, "x");
    /* a UUID in upper case is the same id (RFC 9562 s4); others as sent */
    assert_int_equal(match("GET", "/api/v1/users/0190C1D2-AAAA-7BBB-8CCC-"
                           "DDDDEEEEFFFF", &r, &param, allow), ROUTE_FOUND);
    assert_string_equal(param, "0190c1d2-aaaa-7bbb-8ccc-ddddeeeeffff");
    assert_int_equal(match("GET", "/docs/Swagger-UI.CSS", &r, &param,
                           allow), ROUTE_FOUND);
    assert_string_equal(param, "Swagger-UI.CSS");
    /* empty, nested, or over-long segments do not match */
    assert_int_equal(match("GET", "/api/v1/users/", &r, &param, allow),
                     ROUTE_NOT_FOUND);
    assert_int_equal(match("GET", "/api/v1/users/a/b", &r, &param, allow),
                     ROUTE_NOT_FOUND);
    {
        char path[200];

        memset(path, 'x', sizeof path);
        memcpy(path, "/api/v1/users/", 14);
        path[sizeof path - 1] = '\0';
        assert_int_equal(match("GET", path, &r, &param, allow),
                         ROUTE_NOT_FOUND);
    }
}

static void test_not_found_and_method(void **state)
{
    const struct route *r;
    const char *param;
    char allow[128];

    (void)state;
    assert_int_equal(match("GET", "/", &r, &param, allow), ROUTE_NOT_FOUND);
    assert_int_equal(match("GET", "/api/v1/auth/loginx", &r, &param, allow),
                     ROUTE_NOT_FOUND);
    assert_int_equal(match("GET", "/api/v1/auth/login", &r, &param, allow),
                     ROUTE_BAD_METHOD);
    assert_string_equal(allow, "POST");
    assert_int_equal(match("PUT", "/api/v1/users/me", &r, &param, allow),
                     ROUTE_BAD_METHOD);
    assert_string_equal(allow, "GET, HEAD, PATCH, DELETE");
    assert_int_equal(match("POST", "/api/v1/users/abc", &r, &param, allow),
                     ROUTE_BAD_METHOD);
    assert_string_equal(allow, "GET, HEAD, PATCH, DELETE");
}

static void test_admin_routes_in_table(void **state)
{
    size_t n, i, admin = 0;
    const struct route *all = router_routes(&n);

    (void)state;
    for (i = 0; i < n; i++) {
        assert_non_null(all[i].fn);
        assert_true(all[i].pattern[0] == '/');
        if (strncmp(all[i].pattern, "/api/v1/users", 13) == 0 &&
            strstr(all[i].pattern, "/me") == NULL &&
            strcmp(all[i].method, "GET") != 0)
            assert_true(all[i].access == ACCESS_ADMIN ||
                        all[i].access == ACCESS_ADMIN_NOT_SELF);
        admin += all[i].access == ACCESS_ADMIN;
    }
    assert_true(admin >= 3);
}

static void test_problem(void **state)
{
    json_t *errs = json_pack("[{s:s, s:s}]", "field", "password", "message",
                             "is too short");
    json_t *p = res_problem(AS_ERR_VALIDATION, "Check the fields.",
                            "rid-1", errs);

    (void)state;
    assert_string_equal(json_string_value(json_object_get(p, "type")),
                        "about:blank");
    assert_int_equal(json_integer_value(json_object_get(p, "status")), 422);
    assert_string_equal(json_string_value(json_object_get(p, "code")),
                        "validation_error");
    assert_string_equal(json_string_value(json_object_get(p, "request_id")),
                        "rid-1");
    assert_int_equal(json_array_size(json_object_get(p, "errors")), 1);
    json_decref(p);
    p = res_problem(AS_ERR_BAD_CREDENTIALS, NULL, "r", NULL);
    assert_int_equal(json_integer_value(json_object_get(p, "status")), 401);
    assert_string_equal(json_string_value(json_object_get(p, "code")),
                        "invalid_credentials");
    assert_non_null(json_string_value(json_object_get(p, "detail")));
    assert_null(json_object_get(p, "errors"));
    json_decref(p);
    /* Without a detail of its own, a 422 says what its errors are about. */
    p = res_problem(AS_ERR_VALIDATION, NULL, "r", errs);
    assert_string_equal(json_string_value(json_object_get(p, "detail")),
                        "The field password is too short.");
    json_decref(p);
    json_array_append_new(errs, json_pack("{s:s, s:s}", "field", "email",
                                          "message", "is required"));
    p = res_problem(AS_ERR_VALIDATION, NULL, "r", errs);
    assert_string_equal(json_string_value(json_object_get(p, "detail")),
                        "2 fields are invalid: password, email.");
    json_decref(p);
    json_decref(errs);
}

static void test_error_table(void **state)
{
    (void)state;
    assert_int_equal(as_err_http_status(AS_OK), 200);
    assert_int_equal(as_err_http_status(AS_ERR_TOO_LARGE), 413);
    assert_int_equal(as_err_http_status(AS_ERR_MEDIA_TYPE), 415);
    assert_int_equal(as_err_http_status(AS_ERR_RATE_LIMITED), 429);
    assert_string_equal(as_err_code(AS_ERR_LAST_ADMIN), "last_admin");
    assert_true(as_err_is_infra(AS_ERR_UNAVAILABLE));
    assert_false(as_err_is_infra(AS_ERR_NOT_FOUND));
    assert_int_equal(as_err_http_status((enum as_err)9999), 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_routes),
        cmocka_unit_test(test_param),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_admin_routes_in_table),
        cmocka_unit_test(test_problem),
        cmocka_unit_test(test_path_flags),
        cmocka_unit_test(test_error_table),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
