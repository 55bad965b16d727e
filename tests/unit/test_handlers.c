/* Handlers with a fake request (no libmicrohttpd connection) on a real
 * SQLite repository: the route table, the access rule and the handler
 * run as server.c runs them, and the answer is inspected as rendered
 * (status, Content-Type, the problem document of src/openapi.json). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "http_fixture.h"
#include "handlers/hx.h"
#include "openapi.h"

static const char *PW = "correct horse battery";

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    *state = f;
    return f && fx_open(f, 5) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    fx_close(*state);
    return 0;
}

/* Asserts a problem document: status, code, and this request's id. */
static void assert_problem(const struct fx_answer *a, unsigned status,
                           const char *code)
{
    assert_int_equal(a->status, status);
    assert_non_null(a->ctype);
    assert_string_equal(a->ctype, "application/problem+json");
    assert_non_null(a->json);
    assert_int_equal(json_integer_value(json_object_get(a->json, "status")),
                     status);
    assert_string_equal(fx_str(a, "code"), code);
    assert_string_equal(fx_str(a, "request_id"), "test-request");
    assert_non_null(fx_str(a, "detail"));
}

/* True when the 422 answer names `field` among its errors. */
static bool names_field(const struct fx_answer *a, const char *field)
{
    json_t *errs = json_object_get(a->json, "errors"), *e;
    size_t i;

    json_array_foreach(errs, i, e) {
        const char *f = json_string_value(json_object_get(e, "field"));

        if (f && strcmp(f, field) == 0 &&
            json_string_value(json_object_get(e, "message")))
            return true;
    }
    return false;
}

static struct fx_answer reg(struct fx *f, const char *body)
{
    return fx_call(f, "POST", "/api/v1/auth/register", NULL, body);
}

static void test_register_bad_bodies(void **state)
{
    struct fx *f = *state;
    struct fx_answer a;

    a = reg(f, NULL);                             /* no body at all */
    assert_problem(&a, 400, "malformed_json");
    fx_done(&a);
    a = reg(f, "[\"ada@example.com\"]");          /* not an object */
    assert_problem(&a, 400, "malformed_json");
    fx_done(&a);
    a = reg(f, "{\"email\":\"a@example.com\",");  /* cut short */
    assert_problem(&a, 400, "malformed_json");
    fx_done(&a);
    a = reg(f, "{\"email\":\"a@example.com\",\"email\":\"b@example.com\","
               "\"password\":\"correct horse battery\"}");
    assert_problem(&a, 400, "malformed_json");    /* duplicate keys */
    fx_done(&a);
    a = reg(f, "{}");
    assert_problem(&a, 422, "validation_error");
    assert_true(names_field(&a, "email"));
    assert_true(names_field(&a, "password"));
    fx_done(&a);
    /* U+0000 is valid JSON (RFC 8259 s7) but no field takes it: 422
     * naming the member, in its value or deeper down; in a key, which
     * jansson does not read, 400 */
    a = reg(f, "{\"email\":\"ada@example.com\\u0000x\","
               "\"password\":\"correct horse battery\"}");
    assert_problem(&a, 422, "validation_error");
    assert_true(names_field(&a, "email"));
    fx_done(&a);
    a = reg(f, "{\"email\":\"ada@example.com\",\"password\":"
               "\"correct horse battery\",\"x\":{\"y\":[1,\"\\u0000\"]}}");
    assert_problem(&a, 422, "validation_error");
    assert_true(names_field(&a, "x"));
    fx_done(&a);
    a = reg(f, "{\"email\":\"ada@example.com\",\"password\":"
               "\"correct horse battery\",\"role\\u0000\":\"admin\"}");
    assert_problem(&a, 400, "malformed_json");   /* jansson holds none */
    fx_done(&a);
    a = reg(f, "{\"email\":\"not-an-email\","
               "\"password\":\"correct horse battery\"}");
    assert_problem(&a, 422, "validation_error");
    assert_true(names_field(&a, "email"));
    assert_false(names_field(&a, "password"));
    fx_done(&a);
    a = reg(f, "{\"email\":\"ada@example.com\",\"password\":\"short\"}");
    assert_problem(&a, 422, "validation_error");
    assert_true(names_field(&a, "password"));
    fx_done(&a);
    a = reg(f, "{\"email\":\"ada@example.com\",\"password\":7}");
    assert_problem(&a, 422, "validation_error");
    assert_true(names_field(&a, "password"));
    fx_done(&a);
    a = reg(f, "{\"email\":\"ada@example.com\","
               "\"password\":\"correct horse battery\",\"role\":\"admin\"}");
    assert_problem(&a, 403, "forbidden");         /* no self-promotion */
    fx_done(&a);
    /* none of these created the account */
    a = fx_call(f, "POST", "/api/v1/auth/login", NULL,
                "{\"email\":\"ada@example.com\","
                "\"password\":\"correct horse battery\"}");
    assert_problem(&a, 401, "invalid_credentials");
    fx_done(&a);
}

static void test_register_created_then_taken(void **state)
{
    struct fx *f = *state;
    const char *body = "{\"email\":\"Ada@Example.com\","
                       "\"password\":\"correct horse battery\","
                       "\"full_name\":\"Ada Lovelace\"}";
    struct fx_answer a = reg(f, body);
    char where[128];

    assert_int_equal(a.status, 201);
    assert_string_equal(a.ctype, "application/json");
    assert_string_equal(fx_str(&a, "email"), "ada@example.com");
    assert_string_equal(fx_str(&a, "role"), "user");
    assert_null(json_object_get(a.json, "password_hash"));
    snprintf(where, sizeof where, "/api/v1/users/%s", fx_str(&a, "id"));
    assert_non_null(fx_res_header(&a, "Location"));
    assert_string_equal(fx_res_header(&a, "Location"), where);
    fx_done(&a);
    a = reg(f, body);
    assert_problem(&a, 409, "email_taken");
    fx_done(&a);
}

static void test_login_wrong_password(void **state)
{
    struct fx *f = *state;
    struct fx_answer a, b;

    fx_register(f, "ada@example.com", PW);
    a = fx_call(f, "POST", "/api/v1/auth/login", NULL,
                "{\"email\":\"ada@example.com\",\"password\":\"wrong one!\"}");
    assert_problem(&a, 401, "invalid_credentials");
    assert_null(json_object_get(a.json, "access_token"));
    /* an unknown email gets the very same answer */
    b = fx_call(f, "POST", "/api/v1/auth/login", NULL,
                "{\"email\":\"bob@example.com\",\"password\":\"wrong one!\"}");
    assert_problem(&b, 401, "invalid_credentials");
    assert_string_equal(fx_str(&a, "detail"), fx_str(&b, "detail"));
    fx_done(&a);
    fx_done(&b);
    a = fx_call(f, "POST", "/api/v1/auth/login", NULL,
                "{\"email\":\"ada@example.com\","
                "\"password\":\"correct horse battery\"}");
    assert_int_equal(a.status, 200);
    assert_string_equal(fx_str(&a, "token_type"), "Bearer");
    assert_non_null(fx_str(&a, "refresh_token"));
    fx_done(&a);
}

static void test_me_with_and_without_token(void **state)
{
    struct fx *f = *state;
    char tok[2048];
    struct fx_answer a;

    fx_register(f, "ada@example.com", PW);
    fx_login(f, "ada@example.com", PW, tok, sizeof tok, NULL, 0);
    a = fx_call(f, "GET", "/api/v1/users/me", NULL, NULL);
    assert_problem(&a, 401, "unauthorized");
    assert_false(a.rc->authed);
    fx_done(&a);
    a = fx_call(f, "GET", "/api/v1/users/me", "not.a.token", NULL);
    assert_problem(&a, 401, "invalid_token");
    fx_done(&a);
    a = fx_call(f, "GET", "/api/v1/users/me", tok, NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(fx_str(&a, "email"), "ada@example.com");
    assert_string_equal(fx_str(&a, "id"), a.rc->claims.sub);
    fx_done(&a);
}

static void test_admin_route_needs_admin(void **state)
{
    struct fx *f = *state;
    char user_tok[2048], admin_tok[2048], path[128];
    struct fx_answer a;

    fx_register(f, "ada@example.com", PW);
    fx_register(f, "root@example.com", PW);
    fx_make_admin(f, "root@example.com");
    fx_login(f, "ada@example.com", PW, user_tok, sizeof user_tok, NULL, 0);
    fx_login(f, "root@example.com", PW, admin_tok, sizeof admin_tok, NULL,
             0);
    a = fx_call(f, "GET", "/api/v1/users", user_tok, NULL);
    assert_problem(&a, 403, "forbidden");
    assert_null(json_object_get(a.json, "items"));
    fx_done(&a);
    a = fx_call(f, "GET", "/api/v1/users?limit=1", admin_tok, NULL);
    assert_int_equal(a.status, 200);
    assert_int_equal(json_array_size(json_object_get(a.json, "items")), 1);
    assert_non_null(fx_str(&a, "next_cursor"));   /* the query was read */
    fx_done(&a);
    a = fx_call(f, "GET", "/api/v1/users?limit=0", admin_tok, NULL);
    assert_problem(&a, 422, "validation_error");
    fx_done(&a);
    /* an admin changes itself through /users/me only */
    a = fx_call(f, "GET", "/api/v1/users/me", admin_tok, NULL);
    snprintf(path, sizeof path, "/api/v1/users/%s", fx_str(&a, "id"));
    fx_done(&a);
    a = fx_call(f, "PATCH", path, admin_tok, "{\"full_name\":\"Root\"}");
    assert_problem(&a, 403, "forbidden");
    fx_done(&a);
}

static void test_verify_revoked_session(void **state)
{
    struct fx *f = *state;
    char tok[2048], refresh[256], body[320];
    struct fx_answer a;

    fx_register(f, "ada@example.com", PW);
    fx_login(f, "ada@example.com", PW, tok, sizeof tok, refresh,
             sizeof refresh);
    a = fx_call(f, "GET", "/api/v1/auth/verify", tok, NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(fx_res_header(&a, "X-Auth-Role"), "user");
    assert_string_equal(fx_res_header(&a, "X-Auth-Email"),
                        "ada@example.com");
    assert_string_equal(fx_res_header(&a, "X-Auth-User-Id"),
                        a.rc->claims.sub);
    fx_done(&a);
    snprintf(body, sizeof body, "{\"refresh_token\":\"%s\"}", refresh);
    a = fx_call(f, "POST", "/api/v1/auth/logout", NULL, body);
    assert_int_equal(a.status, 204);
    assert_null(a.ctype);                         /* no body */
    fx_done(&a);
    a = fx_call(f, "GET", "/api/v1/auth/verify", tok, NULL);
    assert_problem(&a, 401, "invalid_token");
    assert_string_equal(fx_str(&a, "detail"), "The session has ended.");
    assert_null(fx_res_header(&a, "X-Auth-User-Id"));
    fx_done(&a);
    a = fx_call(f, "POST", "/api/v1/auth/logout", NULL, body);  /* again */
    assert_problem(&a, 401, "invalid_token");
    fx_done(&a);
}

static void test_unknown_route_and_method(void **state)
{
    struct fx *f = *state;
    struct fx_answer a = fx_call(f, "GET", "/api/v1/nothing", NULL, NULL);

    assert_problem(&a, 404, "not_found");
    fx_done(&a);
    a = fx_call(f, "DELETE", "/api/v1/auth/login", NULL, NULL);
    assert_problem(&a, 405, "method_not_allowed");
    fx_done(&a);
    a = fx_call(f, "GET", "/healthz", NULL, NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(fx_str(&a, "status"), "ok");
    fx_done(&a);
}

/* The OpenAPI document and the docs' files are answered from memory the
 * process keeps (the daemon sends it without a copy, README
 * "Connections"): the same bytes for every request, and the body is the
 * embedded document. */
static void test_documents_are_answered_without_a_copy(void **state)
{
    struct fx *f = *state;
    struct fx_answer a = fx_call(f, "GET", "/openapi.json", NULL, NULL);
    struct fx_answer b = fx_call(f, "GET", "/openapi.json", NULL, NULL);
    struct fx_answer c = fx_call(f, "GET", "/docs/swagger-ui-bundle.js",
                                 NULL, NULL);
    struct fx_answer e = fx_call(f, "GET", "/docs/swagger-ui-bundle.js",
                                 NULL, NULL);
    json_t *doc = openapi_document();
    size_t n;

    assert_int_equal(a.status, 200);
    assert_string_equal(a.ctype, "application/json");
    assert_non_null(a.json);
    assert_true(json_equal(a.json, doc));
    assert_non_null(a.rc->res.fixed);
    assert_ptr_equal(a.rc->res.fixed, b.rc->res.fixed);
    assert_ptr_equal(a.rc->res.fixed, openapi_text(&n));
    assert_int_equal(a.rc->res.fixed_len, n);
    assert_null(a.rc->res.raw);
    assert_int_equal(c.status, 200);
    assert_non_null(c.rc->res.fixed);
    assert_ptr_equal(c.rc->res.fixed, e.rc->res.fixed);
    assert_true(c.rc->res.fixed_len > 1000000);
    assert_null(c.rc->res.raw);
    json_decref(doc);
    fx_done(&a);
    fx_done(&b);
    fx_done(&c);
    fx_done(&e);
}

/* A session's remaining lifetime in whole seconds, rounded up: a
 * second boundary between the session's start and the answer's clock
 * reading does not report a 30-day session as 2591999 s. */
static void test_seconds_left_round_up(void **state)
{
    const int64_t ttl = 2592000000, t0 = 1780000000999; /* 1 ms to a tick */

    (void)state;
    assert_int_equal(hx_seconds_left(t0 + ttl, t0), 2592000);
    assert_int_equal(hx_seconds_left(t0 + ttl, t0 + 1), 2592000);
    assert_int_equal(hx_seconds_left(t0 + ttl, t0 + 999), 2592000);
    assert_int_equal(hx_seconds_left(t0 + ttl, t0 + 1000), 2591999);
    assert_int_equal(hx_seconds_left(t0 + 1, t0), 1);
    assert_int_equal(hx_seconds_left(t0, t0), 0);
    assert_int_equal(hx_seconds_left(t0 - 5000, t0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seconds_left_round_up),
        cmocka_unit_test_setup_teardown(test_register_bad_bodies, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_register_created_then_taken,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_wrong_password, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_me_with_and_without_token,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_route_needs_admin, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_verify_revoked_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_route_and_method, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_documents_are_answered_without_a_copy, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
