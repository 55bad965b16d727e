/* test_token.c: opaque tokens, their hash, refresh-token children, and
 * the tokens of mailed links derived from the outbox's seeds. */
#include "sec.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>
#include <string.h>

#include "cfg.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

static char secret_a[] = "0123456789abcdef0123456789abcdef-a";
static char secret_b[] = "0123456789abcdef0123456789abcdef-b";

static struct sec_keys *hs_keys(char *secret)
{
    struct cfg cfg;
    struct sec_keys *k = NULL;
    char why[256];

    memset(&cfg, 0, sizeof cfg);
    cfg.jwt_alg = CFG_ALG_HS256;
    cfg.jwt_secret = secret;
    assert_int_equal(sec_keys_load(&cfg, &k, why, sizeof why), AS_OK);
    return k;
}

static int setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

static void new_tokens_have_the_shape(void **state)
{
    char a[SEC_TOKEN_LEN + 1], b[SEC_TOKEN_LEN + 1];
    uint8_t raw[64];
    size_t got = 0;

    (void)state;
    sec_token_new(a);
    sec_token_new(b);
    assert_int_equal(strlen(a), SEC_TOKEN_LEN);
    assert_true(sec_token_valid(a));
    assert_true(sec_token_valid(b));
    assert_string_not_equal(a, b);
    assert_int_equal(sodium_base642bin(raw, sizeof raw, a, strlen(a), NULL,
                                       &got, NULL, B64), 0);
    assert_int_equal(got, 32);
}

static void valid_checks_length_and_alphabet(void **state)
{
    char t[SEC_TOKEN_LEN + 2];

    (void)state;
    memset(t, 'A', SEC_TOKEN_LEN);
    t[SEC_TOKEN_LEN] = '\0';
    assert_true(sec_token_valid(t));
    t[5] = '-';
    t[6] = '_';
    assert_true(sec_token_valid(t));
    t[7] = '+';
    assert_false(sec_token_valid(t));
    t[7] = '/';
    assert_false(sec_token_valid(t));
    t[7] = '=';
    assert_false(sec_token_valid(t));
    t[7] = ' ';
    assert_false(sec_token_valid(t));
    t[7] = 'A';
    t[SEC_TOKEN_LEN] = 'A';
    t[SEC_TOKEN_LEN + 1] = '\0';
    assert_false(sec_token_valid(t));          /* 44 characters */
    t[SEC_TOKEN_LEN - 1] = '\0';
    assert_false(sec_token_valid(t));          /* 42 characters */
    assert_false(sec_token_valid(""));
    assert_false(sec_token_valid(NULL));
}

static void hash_is_sha256_of_text(void **state)
{
    static const uint8_t abc[32] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
    };
    uint8_t out[32], other[32];

    (void)state;
    sec_token_hash("abc", out);
    assert_memory_equal(out, abc, 32);
    sec_token_hash("abd", other);
    assert_memory_not_equal(out, other, 32);
}

static void child_is_deterministic_and_new(void **state)
{
    struct sec_keys *k = hs_keys(secret_a), *again = hs_keys(secret_a);
    char parent[SEC_TOKEN_LEN + 1], other[SEC_TOKEN_LEN + 1];
    char c1[SEC_TOKEN_LEN + 1], c2[SEC_TOKEN_LEN + 1];
    char c3[SEC_TOKEN_LEN + 1], c4[SEC_TOKEN_LEN + 1];

    (void)state;
    sec_token_new(parent);
    sec_token_new(other);
    sec_token_child(k, parent, c1);
    sec_token_child(again, parent, c2);       /* another instance */
    sec_token_child(k, other, c3);
    sec_token_child(k, c1, c4);
    assert_true(sec_token_valid(c1));
    assert_string_equal(c1, c2);
    assert_string_not_equal(c1, parent);
    assert_string_not_equal(c1, c3);
    assert_string_not_equal(c4, c1);
    sec_keys_free(k);
    sec_keys_free(again);
}

static void child_depends_on_the_key(void **state)
{
    struct sec_keys *a = hs_keys(secret_a), *b = hs_keys(secret_b);
    char parent[SEC_TOKEN_LEN + 1], ca[SEC_TOKEN_LEN + 1];
    char cb[SEC_TOKEN_LEN + 1];

    (void)state;
    sec_token_new(parent);
    sec_token_child(a, parent, ca);
    sec_token_child(b, parent, cb);
    assert_string_not_equal(ca, cb);
    sec_token_child(NULL, parent, ca);
    assert_string_equal(ca, "");
    sec_keys_free(a);
    sec_keys_free(b);
}

/* A link's token comes from its seed and the key: the same on every
 * instance with the same keys, another with other keys or another seed,
 * never the seed itself nor a refresh child of it. */
static void link_token_needs_the_key(void **state)
{
    struct sec_keys *a = hs_keys(secret_a), *b = hs_keys(secret_b);
    struct sec_keys *a2 = hs_keys(secret_a);
    uint8_t seed[SEC_SEED_LEN], other[SEC_SEED_LEN];
    char t1[SEC_TOKEN_LEN + 1], t2[SEC_TOKEN_LEN + 1];
    char tb[SEC_TOKEN_LEN + 1], to[SEC_TOKEN_LEN + 1];
    char seed_b64[SEC_TOKEN_LEN + 1], child[SEC_TOKEN_LEN + 1];

    (void)state;
    sec_link_seed(seed);
    sec_link_seed(other);
    assert_memory_not_equal(seed, other, SEC_SEED_LEN);
    sec_link_token(a, seed, t1);
    sec_link_token(a2, seed, t2);
    sec_link_token(b, seed, tb);
    sec_link_token(a, other, to);
    assert_true(sec_token_valid(t1));
    assert_string_equal(t1, t2);
    assert_string_not_equal(t1, tb);
    assert_string_not_equal(t1, to);
    sodium_bin2base64(seed_b64, sizeof seed_b64, seed, sizeof seed, B64);
    assert_string_not_equal(t1, seed_b64);
    sec_token_child(a, seed_b64, child);
    assert_string_not_equal(t1, child);
    sec_keys_free(a);
    sec_keys_free(a2);
    sec_keys_free(b);
}

static void secrets_compare_by_digest(void **state)
{
    (void)state;
    assert_true(sec_secret_equal("introspection-secret-0123456789abcdef",
                                 "introspection-secret-0123456789abcdef"));
    assert_false(sec_secret_equal("introspection-secret-0123456789abcde",
                                  "introspection-secret-0123456789abcdef"));
    assert_false(sec_secret_equal("introspection-secret-0123456789abcdefx",
                                  "introspection-secret-0123456789abcdef"));
    assert_false(sec_secret_equal("", "x"));
    assert_true(sec_secret_equal("", ""));
    assert_false(sec_secret_equal(NULL, "x"));
    assert_false(sec_secret_equal("x", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(secrets_compare_by_digest),
        cmocka_unit_test(new_tokens_have_the_shape),
        cmocka_unit_test(valid_checks_length_and_alphabet),
        cmocka_unit_test(hash_is_sha256_of_text),
        cmocka_unit_test(child_is_deterministic_and_new),
        cmocka_unit_test(child_depends_on_the_key),
        cmocka_unit_test(link_token_needs_the_key),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
