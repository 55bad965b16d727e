/* test_openapi.c: the served OpenAPI document against the route table
 * and the error table, so neither can drift from what is documented. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "http.h"
#include "openapi.h"

#define MAX_REF_DEPTH 8          /* $ref chains longer than this fail */

static const char *const http_methods[] = {
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
};

static int setup(void **state)
{
    json_t *doc = openapi_document();

    *state = doc;
    return json_is_object(doc) ? 0 : -1;
}

static int teardown(void **state)
{
    json_decref(*state);
    return 0;
}

/* Lower-case copy of `s` into `out` (truncated to `n` bytes with NUL). */
static void lower(const char *s, char *out, size_t n)
{
    size_t i;

    for (i = 0; s[i] && i + 1 < n; i++)
        out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a')
                                              : s[i];
    out[i] = '\0';
}

static bool is_http_method(const char *key)
{
    size_t i;

    for (i = 0; i < sizeof http_methods / sizeof http_methods[0]; i++)
        if (strcmp(key, http_methods[i]) == 0)
            return true;
    return false;
}

/* The route of the table with `method` (any case) and `pattern`. */
static const struct route *route_find(const char *method, const char *pattern)
{
    size_t i, n;
    const struct route *r = router_routes(&n);
    char want[16], have[16];

    lower(method, want, sizeof want);
    for (i = 0; i < n; i++) {
        lower(r[i].method, have, sizeof have);
        if (strcmp(have, want) == 0 && strcmp(r[i].pattern, pattern) == 0)
            return &r[i];
    }
    return NULL;
}

/* The operation object documented for `route`, or NULL (borrowed). */
static json_t *doc_operation(json_t *doc, const struct route *route)
{
    char m[16];
    json_t *item = json_object_get(json_object_get(doc, "paths"),
                                   route->pattern);

    lower(route->method, m, sizeof m);
    return json_object_get(item, m);
}

/* Resolves a local JSON pointer ("#/a/b") in `doc`; NULL when it does
 * not resolve (borrowed). */
static json_t *pointer_get(json_t *doc, const char *ref)
{
    char seg[256];
    const char *p;
    json_t *node = doc;

    if (strncmp(ref, "#/", 2) != 0)
        return NULL;
    p = ref + 2;
    while (node && *p) {
        size_t o = 0;

        for (; *p && *p != '/'; p++) {
            char c = *p;

            if (c == '~') {
                if (p[1] != '0' && p[1] != '1')
                    return NULL;
                c = p[1] == '0' ? '~' : '/';
                p++;
            }
            if (o + 1 >= sizeof seg)
                return NULL;
            seg[o++] = c;
        }
        seg[o] = '\0';
        if (*p == '/')
            p++;
        node = json_object_get(node, seg);
    }
    return node;
}

/* `node`, or what its "$ref" chain leads to; NULL when broken. */
static json_t *deref(json_t *doc, json_t *node)
{
    int depth;

    for (depth = 0; node && depth < MAX_REF_DEPTH; depth++) {
        const char *ref = json_string_value(json_object_get(node, "$ref"));

        if (!ref)
            return node;
        node = pointer_get(doc, ref);
    }
    return NULL;
}

/* Calls `fn` for every operation of the document. */
typedef void (*op_fn)(json_t *doc, const char *path, const char *method,
                      json_t *op, void *ctx);

static void each_operation(json_t *doc, op_fn fn, void *ctx)
{
    const char *path, *key;
    json_t *item, *op;

    json_object_foreach(json_object_get(doc, "paths"), path, item) {
        json_object_foreach(item, key, op) {
            if (is_http_method(key))
                fn(doc, path, key, op, ctx);
        }
    }
}

static void is_openapi_31(void **state)
{
    json_t *doc = *state;
    json_t *info = json_object_get(doc, "info");
    const char *v = json_string_value(json_object_get(doc, "openapi"));

    assert_non_null(v);
    assert_int_equal(strncmp(v, "3.1.", 4), 0);
    assert_string_equal(json_string_value(json_object_get(info, "title")),
                        "auth-serve");
    assert_string_equal(json_string_value(json_object_get(info, "version")),
                        AUTH_VERSION);
    assert_true(json_is_object(json_object_get(doc, "paths")));
}

static void every_route_is_documented(void **state)
{
    json_t *doc = *state;
    size_t i, n, missing = 0;
    const struct route *r = router_routes(&n);

    assert_true(n > 0);
    for (i = 0; i < n; i++) {
        if (!json_is_object(doc_operation(doc, &r[i]))) {
            print_error("undocumented route: %s %s\n", r[i].method,
                        r[i].pattern);
            missing++;
        }
    }
    assert_int_equal(missing, 0);
}

static void count_unrouted(json_t *doc, const char *path,
                           const char *method, json_t *op, void *ctx)
{
    size_t *unrouted = ctx;

    (void)doc;
    (void)op;
    if (!route_find(method, path)) {
        print_error("documented but not routed: %s %s\n", method, path);
        (*unrouted)++;
    }
}

static void every_operation_is_routed(void **state)
{
    size_t unrouted = 0;

    each_operation(*state, count_unrouted, &unrouted);
    assert_int_equal(unrouted, 0);
}

struct op_check {
    size_t ops, bad;
    json_t *ids;                 /* operationIds seen */
};

static bool is_2xx(const char *status)
{
    return strlen(status) == 3 && status[0] == '2' &&
           ((status[1] >= '0' && status[1] <= '9' && status[2] >= '0' &&
             status[2] <= '9') ||
            strcmp(status, "2XX") == 0);
}

/* True when `tag` is one of the document's top-level tags. */
static bool tag_known(json_t *doc, const char *tag)
{
    size_t i;
    json_t *t;

    json_array_foreach(json_object_get(doc, "tags"), i, t) {
        const char *name = json_string_value(json_object_get(t, "name"));

        if (tag && name && strcmp(tag, name) == 0)
            return true;
    }
    return false;
}

/* An operation has a unique operationId, a summary, known tags, and a
 * responses object with at least one 2xx. */
static void check_operation(json_t *doc, const char *path,
                            const char *method, json_t *op, void *ctx)
{
    struct op_check *c = ctx;
    json_t *responses = json_object_get(op, "responses");
    json_t *tags = json_object_get(op, "tags");
    const char *id = json_string_value(json_object_get(op, "operationId"));
    const char *status;
    json_t *v;
    size_t i, twos = 0, bad_tags = 0;

    c->ops++;
    json_object_foreach(responses, status, v) {
        if (is_2xx(status))
            twos++;
    }
    json_array_foreach(tags, i, v) {
        if (!tag_known(doc, json_string_value(v)))
            bad_tags++;
    }
    if (!json_is_object(responses) || twos == 0 || !id || !*id ||
        json_object_get(c->ids, id) ||
        !json_string_value(json_object_get(op, "summary")) ||
        json_array_size(tags) == 0 || bad_tags) {
        print_error("incomplete operation: %s %s\n", method, path);
        c->bad++;
    }
    if (id)
        json_object_set_new(c->ids, id, json_true());
}

static void every_operation_is_complete(void **state)
{
    struct op_check c = { .ids = json_object() };

    assert_non_null(c.ids);
    each_operation(*state, check_operation, &c);
    json_decref(c.ids);
    assert_true(c.ops > 0);
    assert_int_equal(c.bad, 0);
}

static void core_schemas_exist(void **state)
{
    json_t *schemas = json_object_get(json_object_get(*state, "components"),
                                      "schemas");
    json_t *problem = json_object_get(schemas, "Problem");
    json_t *required = json_object_get(problem, "required");
    const char *want[] = { "type", "title", "status", "detail", "code",
                           "request_id" };
    size_t i, j, found;
    json_t *v;

    assert_true(json_is_object(json_object_get(schemas, "User")));
    assert_true(json_is_object(json_object_get(schemas, "TokenPair")));
    assert_true(json_is_object(problem));
    assert_true(json_is_object(json_object_get(
        json_object_get(problem, "properties"), "errors")));
    for (i = 0; i < sizeof want / sizeof want[0]; i++) {
        found = 0;
        json_array_foreach(required, j, v) {
            if (json_is_string(v) &&
                strcmp(json_string_value(v), want[i]) == 0)
                found++;
        }
        assert_int_equal(found, 1);
    }
}

/* Counts "$ref"s under `node` that do not resolve within `doc`. */
static size_t broken_refs(json_t *doc, json_t *node)
{
    const char *key;
    json_t *v;
    size_t i, broken = 0;

    if (json_is_array(node)) {
        json_array_foreach(node, i, v) {
            broken += broken_refs(doc, v);
        }
    } else if (json_is_object(node)) {
        json_object_foreach(node, key, v) {
            if (strcmp(key, "$ref") == 0 && json_is_string(v) &&
                !pointer_get(doc, json_string_value(v))) {
                print_error("broken $ref: %s\n", json_string_value(v));
                broken++;
            } else {
                broken += broken_refs(doc, v);
            }
        }
    }
    return broken;
}

static void every_ref_resolves(void **state)
{
    json_t *doc = *state;

    assert_non_null(pointer_get(doc, "#/components/schemas/User"));
    assert_null(pointer_get(doc, "#/components/schemas/NoSuchThing"));
    assert_int_equal(broken_refs(doc, doc), 0);
}

/* True when the JSON array `arr` holds the string `s`. */
static bool array_has(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;

    json_array_foreach(arr, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

static void problem_codes_match_error_table(void **state)
{
    json_t *code = pointer_get(*state, "#/components/schemas/Problem/"
                                       "properties/code");
    json_t *documented = json_object_get(code, "enum");
    json_t *table = json_array();
    size_t i, bad = 0;
    json_t *v;

    assert_non_null(table);
    assert_true(json_array_size(documented) > 0);
#define X(c, status, name, title)                                            \
    if (strcmp(name, "ok") != 0)                                             \
        json_array_append_new(table, json_string(name));
    AS_ERR_TABLE(X)
#undef X
    json_array_foreach(table, i, v) {
        if (!array_has(documented, json_string_value(v))) {
            print_error("undocumented problem code: %s\n",
                        json_string_value(v));
            bad++;
        }
    }
    json_array_foreach(documented, i, v) {
        if (!array_has(table, json_string_value(v))) {
            print_error("documented code not in err.h: %s\n",
                        json_string_value(v));
            bad++;
        }
    }
    json_decref(table);
    assert_int_equal(bad, 0);
}

/* True when response `resp` documents the response header `name`. */
static bool has_header(json_t *doc, json_t *resp, const char *name)
{
    return deref(doc, json_object_get(json_object_get(resp, "headers"),
                                      name)) != NULL;
}

/* Every response documents X-Request-ID, errors are problem documents,
 * and the headers the contract promises per status are there. */
static void check_responses(json_t *doc, const char *path,
                            const char *method, json_t *op, void *ctx)
{
    size_t *bad = ctx;
    const char *status;
    json_t *ref, *resp;

    json_object_foreach(json_object_get(op, "responses"), status, ref) {
        bool ok;

        resp = deref(doc, ref);
        ok = resp && has_header(doc, resp, "X-Request-ID");
        if (ok && (status[0] == '4' || status[0] == '5'))
            ok = json_object_get(json_object_get(resp, "content"),
                                 "application/problem+json") != NULL;
        if (ok && strcmp(status, "201") == 0)
            ok = has_header(doc, resp, "Location");
        if (ok && strcmp(status, "401") == 0)
            ok = has_header(doc, resp, "WWW-Authenticate");
        if (ok && (strcmp(status, "429") == 0 || strcmp(status, "503") == 0))
            ok = has_header(doc, resp, "Retry-After");
        if (!ok) {
            print_error("response %s of %s %s lacks what the contract says\n",
                        status, method, path);
            (*bad)++;
        }
    }
}

static void responses_carry_contract_headers(void **state)
{
    size_t bad = 0;

    each_operation(*state, check_responses, &bad);
    assert_int_equal(bad, 0);
}

/* True when the success (200, else 201) response of `op` says
 * "Cache-Control: no-store". */
static bool says_no_store(json_t *doc, json_t *op)
{
    json_t *responses = json_object_get(op, "responses");
    json_t *ok = deref(doc, json_object_get(responses, "200")
                                ? json_object_get(responses, "200")
                                : json_object_get(responses, "201"));
    json_t *h = deref(doc, json_object_get(json_object_get(ok, "headers"),
                                           "Cache-Control"));
    const char *v = json_string_value(
        json_object_get(json_object_get(h, "schema"), "const"));

    return v && strcmp(v, "no-store") == 0;
}

/* True when `op` lists a body of media type `media`. */
static bool takes_media(json_t *doc, json_t *op, const char *media)
{
    json_t *body = deref(doc, json_object_get(op, "requestBody"));

    return json_object_get(json_object_get(body, "content"), media) != NULL;
}

/* True when `op` may be called with the bearerAuth scheme. */
static bool takes_bearer(json_t *op)
{
    size_t i;
    json_t *req;

    json_array_foreach(json_object_get(op, "security"), i, req) {
        if (json_object_get(req, "bearerAuth"))
            return true;
    }
    return false;
}

/* The route flags and access agree with the document: form bodies,
 * no-store responses (tokens, accounts), bearer security with 401 (and 403 where a
 * role or identity is needed) on protected routes. A public route may
 * still document a bearer token that its handler checks itself. */
static void routes_agree_with_operations(void **state)
{
    json_t *doc = *state;
    size_t i, n, bad = 0;
    const struct route *r = router_routes(&n);

    for (i = 0; i < n; i++) {
        json_t *op = doc_operation(doc, &r[i]);
        json_t *responses = json_object_get(op, "responses");
        bool ok = true;

        if (!op)
            continue;            /* reported by every_route_is_documented */
        if (takes_media(doc, op, "application/x-www-form-urlencoded") !=
            ((r[i].flags & RF_FORM) != 0))
            ok = false;
        if (says_no_store(doc, op) != ((r[i].flags & RF_NO_STORE) != 0))
            ok = false;
        if (r[i].access != ACCESS_PUBLIC &&
            (!takes_bearer(op) || !json_object_get(responses, "401")))
            ok = false;
        if (r[i].access != ACCESS_PUBLIC && r[i].access != ACCESS_USER &&
            !json_object_get(responses, "403"))
            ok = false;
        if (!ok) {
            print_error("route flags or access disagree with the document: "
                        "%s %s\n", r[i].method, r[i].pattern);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(is_openapi_31),
        cmocka_unit_test(every_route_is_documented),
        cmocka_unit_test(every_operation_is_routed),
        cmocka_unit_test(every_operation_is_complete),
        cmocka_unit_test(core_schemas_exist),
        cmocka_unit_test(every_ref_resolves),
        cmocka_unit_test(problem_codes_match_error_table),
        cmocka_unit_test(responses_carry_contract_headers),
        cmocka_unit_test(routes_agree_with_operations),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
