/* Field validation: emails, names, printable copies, the user object. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "validate.h"

static void test_email(void **state)
{
    struct arena *a = arena_new();
    static const char *bad[] = {
        "", "   ", "plain", "@example.com", "a@", "a@b", "a@@b.com",
        "a b@example.com", "a@exa mple.com", ".a@example.com",
        "a.@example.com", "a..b@example.com", "a@-x.com", "a@x-.com",
        "a@x..com", "a@.x.com", "a;drop@example.com", "\"q\"@example.com",
        "a@example.com.", "<a@example.com>", "a@ex_ample.com",
        "caf\xc3\xa9@example.com",
    };
    size_t i;

    (void)state;
    assert_string_equal(v_email(a, "  Ada@Example.COM\t"),
                        "ada@example.com");
    assert_string_equal(v_email(a, "o'brien+tag@sub.example.co.uk"),
                        "o'brien+tag@sub.example.co.uk");
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (v_email(a, bad[i]))
            fail_msg("accepted %s", bad[i]);
    {
        char big[300];

        memset(big, 'a', sizeof big);
        memcpy(big + 250, "@x.com", 7);
        assert_null(v_email(a, big));            /* over 254 bytes */
    }
    arena_free(a);
}

/* An address to store ends in a name: a relay that reads a dotted
 * number as an address would connect where a registration says. */
static void test_new_email_names_a_host(void **state)
{
    struct arena *a = arena_new();
    static const char *const numeric[] = {
        "p@10.0.0.5", "p@127.0.0.1", "p@169.254.169.254", "p@0.0.0.0",
        "p@999.999.999.999", "p@0x7f.1", "p@1.0x7f", "p@example.123",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof numeric / sizeof numeric[0]; i++) {
        if (!v_email(a, numeric[i]))         /* a lookup still reads it */
            fail_msg("v_email refused %s", numeric[i]);
        if (v_new_email(a, numeric[i]))
            fail_msg("v_new_email accepted %s", numeric[i]);
    }
    assert_string_equal(v_new_email(a, " Ada@Example.COM "),
                        "ada@example.com");
    assert_string_equal(v_new_email(a, "a@10.0.0.5.example"),
                        "a@10.0.0.5.example");
    assert_string_equal(v_new_email(a, "a@xn--80ak6aa92e.xn--p1ai"),
                        "a@xn--80ak6aa92e.xn--p1ai");
    assert_null(v_new_email(a, "no-at-sign"));
    arena_free(a);
}

static void test_names_and_printable(void **state)
{
    struct arena *a = arena_new();
    char long_name[220];

    (void)state;
    assert_true(v_full_name("Ada Lovelace"));
    assert_true(v_full_name("\xe6\x9d\x8e\xe5\xb0\x8f\xe9\xbe\x99"));
    assert_false(v_full_name(""));
    assert_false(v_full_name("tab\there"));
    /* C1 controls, separators, bidirectional formatting: refused */
    assert_false(v_full_name("a\xc2\x85" "b"));               /* NEL */
    assert_false(v_full_name("a\xc2\x9b" "b"));               /* CSI */
    assert_false(v_full_name("a\xe2\x80\xa8" "b"));           /* U+2028 */
    assert_false(v_full_name("a\xe2\x80\xae" "nimda"));       /* RLO */
    assert_false(v_full_name("a\xe2\x81\xa6" "b"));           /* LRI */
    assert_false(v_full_name("a\xe2\x81\xa9"));               /* PDI */
    /* their neighbours stay names: U+00A0, U+00E9, U+2027, U+202F,
     * U+2065 (unassigned, valid UTF-8), U+206A */
    assert_true(v_full_name("a\xc2\xa0" "b\xc3\xa9"));
    assert_true(v_full_name("a\xe2\x80\xa7" "b\xe2\x80\xaf"));
    assert_true(v_full_name("a\xe2\x81\xa5" "b\xe2\x81\xaa"));
    assert_true(v_full_name("\xd9\x85\xd8\xad\xd9\x85\xd8\xaf"));  /* Arabic */
    /* a BOM, noncharacters; a name of blanks or invisible marks only */
    assert_false(v_full_name("a\xef\xbb\xbf" "b"));            /* U+FEFF */
    assert_false(v_full_name("a\xef\xbf\xbe"));                /* U+FFFE */
    assert_false(v_full_name("a\xf0\x9f\xbf\xbf"));            /* U+1FFFF */
    assert_false(v_full_name("a\xef\xb7\x90"));                /* U+FDD0 */
    assert_false(v_full_name("   "));
    assert_false(v_full_name("\xe2\x80\x8b\xe3\x80\x80\xc2\xa0"));
    assert_false(v_full_name("\xe3\x85\xa4"));                 /* U+3164 */
    /* a joiner between letters, an emoji, a private-use character,
     * a blank among letters: still names */
    assert_true(v_full_name("a\xe2\x80\x8d" "b \xf0\x9f\x98\x80"));
    assert_true(v_full_name("\xee\x80\x80" " x"));
    assert_true(v_full_name(" Ada "));
    /* not UTF-8: a stray byte, an overlong slash, a surrogate */
    assert_false(v_full_name("bad\xff\xfename"));
    assert_false(v_full_name("\xc0\xaf"));
    assert_false(v_full_name("\xed\xa0\x80"));
    memset(long_name, 'n', sizeof long_name);
    long_name[sizeof long_name - 1] = '\0';
    assert_false(v_full_name(long_name));
    assert_string_equal(v_printable(a, "curl/8\x01\xff", 64), "curl/8??");
    assert_int_equal(strlen(v_printable(a, long_name, 10)), 10);
    assert_null(v_printable(a, NULL, 10));
    arena_free(a);
}

static void test_fields(void **state)
{
    json_t *in = json_loads("{\"s\":\"x\",\"n\":1,\"z\":null,\"b\":true}",
                            0, NULL);
    struct response res = { 0 };
    const char *s;
    bool b, present, is_null;

    (void)state;
    assert_non_null(in);
    json_object_set_new(in, "nul", json_stringn("a\0b", 3));
    assert_true(v_string(&res, in, "s", true, 10, &s));
    assert_string_equal(s, "x");
    assert_false(v_string(&res, in, "n", true, 10, &s));
    assert_false(v_string(&res, in, "missing", true, 10, &s));
    assert_true(v_string(&res, in, "missing", false, 10, &s));
    assert_null(s);
    assert_false(v_string(&res, in, "nul", true, 10, &s));
    assert_false(v_string(&res, in, "s", true, 0, &s));
    assert_true(v_string_or_null(&res, in, "z", 10, &s, &is_null));
    assert_true(is_null);
    assert_true(v_bool(&res, in, "b", &b, &present));
    assert_true(b && present);
    assert_false(v_bool(&res, in, "s", &b, &present));
    assert_int_equal(json_array_size(res.errors), 5);
    json_decref(res.errors);
    json_decref(in);
}

static void test_user_json(void **state)
{
    struct user u = { .id = "0190c1d2-0000-7000-8000-000000000000",
                      .email = "a@example.com", .password_hash = "$argon2",
                      .role = ROLE_ADMIN, .is_active = true,
                      .created_at = 1795867200000, .updated_at = 0 };
    json_t *j = v_user_json(&u);

    (void)state;
    assert_null(json_object_get(j, "password_hash"));
    assert_true(json_is_null(json_object_get(j, "full_name")));
    assert_string_equal(json_string_value(json_object_get(j, "role")),
                        "admin");
    assert_string_equal(json_string_value(json_object_get(j, "created_at")),
                        "2026-11-28T12:00:00Z");
    assert_true(json_is_false(json_object_get(j, "mfa_enabled")));
    assert_int_equal(json_object_size(j), 9);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_new_email_names_a_host),
        cmocka_unit_test(test_names_and_printable),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_user_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
