/* test_totp.c: RFC 6238 codes (appendix B vectors, the window, step
 * boundaries, replay), sealed secrets, recovery codes, QR documents. */
#include "totp.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "qr.h"
#include "sec.h"

/* RFC 6238 appendix B: the SHA-1 seed is the ASCII "1234567890" twice. */
static const uint8_t rfc_seed[20] = "12345678901234567890";

static int setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

/* The 6-digit code of `step` under `secret`, as text. */
static void code_at(const uint8_t *secret, int64_t step, char out[7])
{
    snprintf(out, 7, "%06u",
             (unsigned)totp_hotp(secret, TOTP_SECRET_LEN, (uint64_t)step,
                                 6));
}

static void rfc6238_appendix_b_sha1(void **state)
{
    static const struct { int64_t t; uint32_t code; } v[] = {
        { 59, 94287082u },         { 1111111109, 7081804u },
        { 1111111111, 14050471u }, { 1234567890, 89005924u },
        { 2000000000, 69279037u }, { 20000000000, 65353130u },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof v / sizeof v[0]; i++)
        assert_int_equal(totp_hotp(rfc_seed, sizeof rfc_seed,
                                   (uint64_t)totp_step(v[i].t), 8),
                         v[i].code);
    /* six digits are the last six of the same value (RFC 4226 s5.3) */
    assert_int_equal(totp_hotp(rfc_seed, sizeof rfc_seed, 1, 6), 287082u);
}

static void rfc4226_appendix_d(void **state)
{
    static const uint32_t hotp[] = { 755224, 287082, 359152, 969429,
                                     338314, 254676, 287922, 162583,
                                     399871, 520489 };
    uint64_t c;

    (void)state;
    for (c = 0; c < 10; c++)
        assert_int_equal(totp_hotp(rfc_seed, sizeof rfc_seed, c, 6),
                         hotp[c]);
}

static void window_is_one_step_either_side(void **state)
{
    int64_t now = 1700000000, step = totp_step(now), got;
    char c[7];

    (void)state;
    code_at(rfc_seed, step, c);
    assert_true(totp_match(rfc_seed, c, now, -1, &got));
    assert_int_equal(got, step);
    code_at(rfc_seed, step - 1, c);
    assert_true(totp_match(rfc_seed, c, now, -1, &got));
    assert_int_equal(got, step - 1);
    code_at(rfc_seed, step + 1, c);
    assert_true(totp_match(rfc_seed, c, now, -1, &got));
    assert_int_equal(got, step + 1);
    code_at(rfc_seed, step - 2, c);
    assert_false(totp_match(rfc_seed, c, now, -1, &got));
    code_at(rfc_seed, step + 2, c);
    assert_false(totp_match(rfc_seed, c, now, -1, &got));
}

static void step_boundaries(void **state)
{
    int64_t t0 = 1700000010, got;   /* a multiple of 30 */
    char c[7];

    (void)state;
    assert_int_equal(t0 % TOTP_STEP_S, 0);
    assert_int_equal(totp_step(t0 - 1) + 1, totp_step(t0));
    /* the code of step S-1 still passes at the first second of S+0 and at
     * the last second of S, and no longer at the first second of S+1 */
    code_at(rfc_seed, totp_step(t0) - 1, c);
    assert_true(totp_match(rfc_seed, c, t0, -1, &got));
    assert_true(totp_match(rfc_seed, c, t0 + 29, -1, &got));
    assert_false(totp_match(rfc_seed, c, t0 + 30, -1, &got));
    /* the code of step S+1 passes from the last second of S-1 on */
    code_at(rfc_seed, totp_step(t0) + 1, c);
    assert_false(totp_match(rfc_seed, c, t0 - 1, -1, &got));
    assert_true(totp_match(rfc_seed, c, t0, -1, &got));
}

static void each_step_once(void **state)
{
    int64_t now = 1700000000, step = totp_step(now), got;
    char c[7];

    (void)state;
    code_at(rfc_seed, step, c);
    assert_true(totp_match(rfc_seed, c, now, step - 1, &got));
    assert_false(totp_match(rfc_seed, c, now, step, &got));  /* replay */
    assert_false(totp_match(rfc_seed, c, now + 30, step, &got));
    /* an older step after a newer one was used is refused too */
    code_at(rfc_seed, step - 1, c);
    assert_false(totp_match(rfc_seed, c, now, step, &got));
    code_at(rfc_seed, step + 1, c);
    assert_true(totp_match(rfc_seed, c, now, step, &got));
    assert_int_equal(got, step + 1);
}

static void malformed_codes(void **state)
{
    int64_t got;

    (void)state;
    assert_false(totp_code_shape(NULL));
    assert_false(totp_code_shape("12345"));
    assert_false(totp_code_shape("1234567"));
    assert_false(totp_code_shape("12a456"));
    assert_false(totp_code_shape(" 12345"));
    assert_true(totp_code_shape("012345"));
    assert_false(totp_match(rfc_seed, "", 1700000000, -1, &got));
    assert_int_equal(got, -1);
}

static void base32_rfc4648(void **state)
{
    char out[64];

    (void)state;
    assert_true(totp_base32((const uint8_t *)"foobar", 6, out, sizeof out));
    assert_string_equal(out, "MZXW6YTBOI");
    assert_true(totp_base32((const uint8_t *)"f", 1, out, sizeof out));
    assert_string_equal(out, "MY");
    assert_true(totp_base32(rfc_seed, 20, out, sizeof out));
    assert_string_equal(out, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    assert_int_equal(strlen(out), TOTP_B32_LEN);
    assert_false(totp_base32(rfc_seed, 20, out, TOTP_B32_LEN));
}

static void seal_round_trip(void **state)
{
    uint8_t key[TOTP_KEY_LEN], secret[TOTP_SECRET_LEN], back[20];
    char a[TOTP_SEALED_MAX], b[TOTP_SEALED_MAX];
    const char *uid = "0190c1d2-0000-7000-8000-000000000001";

    (void)state;
    randombytes_buf(key, sizeof key);
    totp_secret_new(secret);
    totp_seal(key, uid, secret, a);
    assert_int_equal(strlen(a), TOTP_SEALED_LEN);
    assert_int_equal(totp_open(key, uid, a, back), AS_OK);
    assert_memory_equal(back, secret, sizeof secret);
    /* a fresh nonce each time: the same secret never seals the same */
    totp_seal(key, uid, secret, b);
    assert_string_not_equal(a, b);
    /* the sealed text does not hold the secret in any plain form */
    {
        char b32[TOTP_B32_LEN + 1];

        totp_base32(secret, sizeof secret, b32, sizeof b32);
        assert_null(strstr(a, b32));
    }
}

static void seal_refuses_tampering(void **state)
{
    uint8_t key[TOTP_KEY_LEN], other[TOTP_KEY_LEN], secret[20], back[20];
    char s[TOTP_SEALED_MAX], t[TOTP_SEALED_MAX];
    const char *uid = "0190c1d2-0000-7000-8000-000000000001";
    size_t i;

    (void)state;
    randombytes_buf(key, sizeof key);
    randombytes_buf(other, sizeof other);
    totp_secret_new(secret);
    totp_seal(key, uid, secret, s);
    /* every character flipped, one at a time, is refused */
    for (i = 0; i < TOTP_SEALED_LEN; i++) {
        memcpy(t, s, sizeof t);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_int_equal(totp_open(key, uid, t, back),
                         AS_ERR_SECRET_UNREADABLE);
        assert_memory_equal(back, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
                            20);
    }
    assert_int_equal(totp_open(other, uid, s, back),
                     AS_ERR_SECRET_UNREADABLE);
    assert_int_equal(totp_open(key, "0190c1d2-0000-7000-8000-000000000002",
                               s, back), AS_ERR_SECRET_UNREADABLE);
    s[10] = '\0';
    assert_int_equal(totp_open(key, uid, s, back), AS_ERR_SECRET_UNREADABLE);
    assert_int_equal(totp_open(key, uid, NULL, back),
                     AS_ERR_SECRET_UNREADABLE);
}

static void key_follows_the_signing_keys(void **state)
{
    struct cfg cfg;
    struct sec_keys *k1 = NULL, *k2 = NULL, *k3 = NULL;
    char s1[] = "0123456789abcdef0123456789abcdef-a";
    char s2[] = "0123456789abcdef0123456789abcdef-b";
    uint8_t a[TOTP_KEY_LEN], b[TOTP_KEY_LEN], c[TOTP_KEY_LEN];
    char why[256];

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    cfg.jwt_alg = CFG_ALG_HS256;
    cfg.jwt_secret = s1;
    assert_int_equal(sec_keys_load(&cfg, &k1, why, sizeof why), AS_OK);
    assert_int_equal(sec_keys_load(&cfg, &k3, why, sizeof why), AS_OK);
    cfg.jwt_secret = s2;
    assert_int_equal(sec_keys_load(&cfg, &k2, why, sizeof why), AS_OK);
    totp_key(k1, a);
    totp_key(k2, b);
    totp_key(k3, c);
    assert_memory_not_equal(a, b, sizeof a);
    assert_memory_equal(a, c, sizeof a);
    sec_keys_free(k1);
    sec_keys_free(k2);
    sec_keys_free(k3);
}

static void recovery_codes(void **state)
{
    char a[TOTP_RECOVERY_LEN + 1], b[TOTP_RECOVERY_LEN + 1];
    uint8_t h1[32], h2[32];
    size_t i;

    (void)state;
    totp_recovery_new(a);
    totp_recovery_new(b);
    assert_int_equal(strlen(a), TOTP_RECOVERY_LEN);
    assert_string_not_equal(a, b);
    assert_int_equal(a[4], '-');
    assert_true(totp_recovery_hash(a, h1));
    /* upper case and no dashes are the same code */
    for (i = 0; a[i]; i++)
        b[i] = a[i] >= 'a' && a[i] <= 'z' ? (char)(a[i] - 32) : a[i];
    b[i] = '\0';
    assert_true(totp_recovery_hash(b, h2));
    assert_memory_equal(h1, h2, 32);
    assert_false(totp_recovery_hash("abcd-efgh-ijkl-mno", h2));
    assert_false(totp_recovery_hash("abcd-efgh-ijkl-mnop-q", h2));
    assert_false(totp_recovery_hash("abcd-efgh-ijkl-mno1", h2));
    assert_false(totp_recovery_hash("123456", h2));
    assert_false(totp_recovery_hash(NULL, h2));
}

static void qr_svg_document(void **state)
{
    char *svg = qr_svg("otpauth://totp/auth-serve:ada%40example.com?"
                       "secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    char big[8000];

    (void)state;
    assert_non_null(svg);
    assert_true(strncmp(svg, "<svg ", 5) == 0);
    assert_non_null(strstr(svg, "</svg>"));
    assert_non_null(strstr(svg, "v1h-"));
    free(svg);
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_null(qr_svg(big));           /* beyond a QR code's capacity */
    assert_null(qr_svg(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc6238_appendix_b_sha1),
        cmocka_unit_test(rfc4226_appendix_d),
        cmocka_unit_test(window_is_one_step_either_side),
        cmocka_unit_test(step_boundaries),
        cmocka_unit_test(each_step_once),
        cmocka_unit_test(malformed_codes),
        cmocka_unit_test(base32_rfc4648),
        cmocka_unit_test(seal_round_trip),
        cmocka_unit_test(seal_refuses_tampering),
        cmocka_unit_test(key_follows_the_signing_keys),
        cmocka_unit_test(recovery_codes),
        cmocka_unit_test(qr_svg_document),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
