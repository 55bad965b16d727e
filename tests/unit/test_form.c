/* x-www-form-urlencoded bodies: decoding and the object they become. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "form.h"

static const char *get(json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

/* The body in a buffer of exactly its length (no NUL after it). */
static json_t *parse(struct arena *a, const char *body)
{
    size_t n = strlen(body);
    char *copy = malloc(n ? n : 1);
    json_t *o;

    assert_non_null(copy);
    memcpy(copy, body, n);
    o = form_parse(a, copy, n);
    free(copy);
    return o;
}

static void test_decode(void **state)
{
    struct arena *a = arena_new();
    size_t n = 99;
    char *d;

    (void)state;
    assert_non_null(a);
    assert_string_equal(form_decode(a, "a+b%41%7e%C3%A4", 15, &n),
                        "a bA~\xc3\xa4");
    assert_int_equal(n, 7);
    assert_string_equal(form_decode(a, "abc", 2, &n), "ab"); /* length wins */
    assert_string_equal(form_decode(a, "", 0, &n), "");
    assert_int_equal(n, 0);
    assert_null(form_decode(a, "%4", 2, &n));
    assert_null(form_decode(a, "%", 1, &n));
    assert_null(form_decode(a, "%zz", 3, &n));
    assert_null(form_decode(a, "%41%0", 5, &n));
    d = form_decode(a, "a%00b", 5, &n);           /* NUL kept, length says */
    assert_non_null(d);
    assert_int_equal(n, 3);
    assert_memory_equal(d, "a\0b", 4);
    arena_free(a);
}

static void test_parse(void **state)
{
    struct arena *a = arena_new();
    json_t *o;

    (void)state;
    assert_non_null(a);
    o = parse(a, "grant_type=password&username=ada%40example.com"
                 "&password=correct+horse&scope=&flag&&");
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 5);
    assert_string_equal(get(o, "grant_type"), "password");
    assert_string_equal(get(o, "username"), "ada@example.com");
    assert_string_equal(get(o, "password"), "correct horse");
    assert_string_equal(get(o, "scope"), "");
    assert_string_equal(get(o, "flag"), "");
    json_decref(o);
    o = parse(a, "");
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 0);
    json_decref(o);
    o = parse(a, "a=1=2");                        /* first '=' splits */
    assert_non_null(o);
    assert_string_equal(get(o, "a"), "1=2");
    json_decref(o);
    assert_null(parse(a, "token=a&token=b"));     /* repeated name */
    assert_null(parse(a, "=x"));                  /* empty name */
    assert_null(parse(a, "a=%zz"));
    assert_null(parse(a, "%00=1"));               /* NUL in a name */
    assert_null(parse(a, "a%00b=1"));
    o = parse(a, "a=x%00y");              /* in a value: kept, not cut */
    assert_non_null(o);
    assert_int_equal(json_string_length(json_object_get(o, "a")), 3);
    assert_memory_equal(get(o, "a"), "x\0y", 4);
    json_decref(o);
    assert_null(parse(a, "a=%C3%28"));           /* not UTF-8 */
    assert_null(parse(a, "%FF=1"));
    arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_parse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
