/* The flat JSON writer of the hot paths writes what jansson writes for
 * the same members, byte for byte, for every kind of string. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "jsonw.h"
#include "validate.h"

static const char *const strings[] = {
    "", "plain", "ada@example.com", "quote\"back\\slash/slash",
    "ctl\x01\x02\x1f\b\f\n\r\t end", "del\x7f", "caf\xc3\xa9 \xe2\x80\xa8 "
    "\xf0\x9f\x94\x91", "</script>",
};

/* `got` is jansson's compact text of `doc`; frees both. */
static void assert_same_text(json_t *doc, char *got)
{
    char *want = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);

    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    free(want);
    json_decref(doc);
}

static void test_same_as_jansson(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        json_t *doc = json_pack("{s:s, s:I, s:b, s:n, s:I, s:[s,s]}", "s",
                                strings[i], "n", (json_int_t)-1234567890123,
                                "b", 1, "z", "big",
                                (json_int_t)INT64_MAX, "amr", "pwd", "otp");
        struct jw w;

        jw_begin(&w);
        jw_str(&w, "s", strings[i]);
        jw_int(&w, "n", -1234567890123);
        jw_bool(&w, "b", true);
        jw_str(&w, "z", NULL);
        jw_int(&w, "big", INT64_MAX);
        jw_raw(&w, "amr", "[\"pwd\",\"otp\"]");
        assert_same_text(doc, jw_finish(&w));
    }
}

/* The worst case of the escaping: long values of nothing but bytes that
 * need \u escapes, then quotes, at every length across the first growth
 * of the buffer: the same text as jansson's. */
static void test_worst_case_escapes(void **state)
{
    static const char fill[] = { 0x01, 0x1f, '"', '\\', '\n', 'a' };
    char s[400];
    size_t n, i, f;

    (void)state;
    for (f = 0; f < sizeof fill; f++) {
        for (n = 150; n < sizeof s; n += 7) {
            struct jw w;

            for (i = 0; i < n; i++)
                s[i] = i % 3 ? fill[f] : fill[(f + 1) % sizeof fill];
            s[n] = '\0';
            jw_begin(&w);
            jw_str(&w, "k", s);
            jw_str(&w, "l", s);
            assert_same_text(json_pack("{s:s, s:s}", "k", s, "l", s),
                             jw_finish(&w));
        }
    }
}

/* A long value grows the buffer; an empty object is "{}"; a missing raw
 * member fails the whole text. */
static void test_growth_and_failure(void **state)
{
    char big[5000];
    struct jw w;
    char *got;

    (void)state;
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    jw_begin(&w);
    jw_str(&w, "k", big);
    got = jw_finish(&w);
    assert_non_null(got);
    assert_int_equal(strlen(got), sizeof big - 1 + 8);
    free(got);
    jw_begin(&w);
    got = jw_finish(&w);
    assert_string_equal(got, "{}");
    free(got);
    jw_begin(&w);
    jw_raw(&w, "amr", NULL);
    assert_null(jw_finish(&w));
}

/* The escaping reads eight bytes at a time: random valid UTF-8 strings
 * of every length to 200 at every alignment, built of the bytes that need
 * escapes, their neighbours, and multi-byte characters whose continuation
 * bytes are those bytes with the high bit set (0xA2 is '"' | 0x80, 0x9C
 * is '\\' | 0x80): the same text as jansson's. */
static void test_random_strings_same_as_jansson(void **state)
{
    static const char *const pieces[] = {
        "a", "Z", " ", "!", "#", "[", "]", "~", "\x7f", "\x01", "\x1f",
        "\"", "\\", "\n", "\t", "\xc2\xa2", "\xc3\x9c", "\xc2\xa0",
        "\xe2\x82\xac", "\xf0\x9f\x94\x91", "abcdefgh", "0190c1d2-0000",
    };
    const size_t np = sizeof pieces / sizeof pieces[0];
    uint64_t x = 0x9e3779b97f4a7c15u;
    char buf[256 + 8];
    unsigned round;

    (void)state;
    for (round = 0; round < 20000; round++) {
        size_t off, len = 0, want_len;
        json_t *doc;
        struct jw w;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        off = x % 8;
        want_len = (x >> 8) % 200;
        while (len < want_len) {
            const char *p;

            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            p = pieces[x % np];
            if (len + strlen(p) > 250)
                break;
            memcpy(buf + off + len, p, strlen(p));
            len += strlen(p);
        }
        buf[off + len] = '\0';
        doc = json_pack("{s:s}", "s", buf + off);
        assert_non_null(doc);
        jw_begin(&w);
        jw_str(&w, "s", buf + off);
        assert_same_text(doc, jw_finish(&w));
    }
}

/* /api/v1/users/me's text is v_user_json() dumped, with and without a
 * name, for both roles and every flag. */
static void test_user_text_same_as_tree(void **state)
{
    struct user u = { .id = "0190c1d2-0000-7000-8000-0000000000aa",
                      .email = "ada@example.com", .role = ROLE_ADMIN,
                      .is_active = true, .created_at = 1700000000123,
                      .updated_at = 1700000999000 };
    unsigned i;

    (void)state;
    for (i = 0; i < 16; i++) {
        u.full_name = i & 1 ? "Ada \"Countess\" Lovelace" : NULL;
        u.role = i & 2 ? ROLE_ADMIN : ROLE_USER;
        u.is_verified = i & 4;
        u.mfa_enabled = i & 8;
        assert_same_text(v_user_json(&u), v_user_text(&u));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_jansson),
        cmocka_unit_test(test_worst_case_escapes),
        cmocka_unit_test(test_random_strings_same_as_jansson),
        cmocka_unit_test(test_growth_and_failure),
        cmocka_unit_test(test_user_text_same_as_tree),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
