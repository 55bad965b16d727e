/* test_crypt.c: the primitives of crypto.h against published answers
 * (FIPS 180-2, RFC 4231, RFC 7693, RFC 4648, SipHash's reference), and
 * streaming against one-shot at every split. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "crypto.h"

/* The lower-case hex of `n` bytes at `p`, in a static buffer. */
static const char *hex(const uint8_t *p, size_t n)
{
    static char buf[2 * CRYPT_BLAKE2B_MAX + 1];

    assert_true(crypt_hex_encode(p, n, buf, sizeof buf));
    return buf;
}

static int setup(void **state)
{
    (void)state;
    return crypt_init() ? 0 : -1;
}

static void sha256_known_answers(void **state)
{
    uint8_t h[CRYPT_SHA256_LEN];
    static const char *million_a =
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    static uint8_t a[1000000];
    (void)state;

    crypt_sha256("abc", 3, h);
    assert_string_equal(hex(h, sizeof h),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    crypt_sha256("", 0, h);
    assert_string_equal(hex(h, sizeof h),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    crypt_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                 56, h);
    assert_string_equal(hex(h, sizeof h),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    memset(a, 'a', sizeof a);
    crypt_sha256(a, sizeof a, h);
    assert_string_equal(hex(h, sizeof h), million_a);
}

/* One RFC 4231 case: key `key` of `klen` bytes, data, expected MAC. */
static void rfc4231(const uint8_t *key, size_t klen, const char *data,
                    const char *want)
{
    struct crypt_hmac_sha256 st;
    uint8_t mac[CRYPT_HMAC_SHA256_LEN];

    crypt_hmac_sha256_init(&st, key, klen);
    crypt_hmac_sha256_update(&st, data, strlen(data));
    crypt_hmac_sha256_final(&st, mac);
    assert_string_equal(hex(mac, sizeof mac), want);
}

static void hmac_sha256_rfc4231(void **state)
{
    uint8_t k1[20], k3[20], k6[131];
    uint8_t d3[50];
    char d3s[51];
    (void)state;

    memset(k1, 0x0b, sizeof k1);
    rfc4231(k1, sizeof k1, "Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    rfc4231((const uint8_t *)"Jefe", 4, "what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(k3, 0xaa, sizeof k3);
    memset(d3, 0xdd, sizeof d3);
    memcpy(d3s, d3, sizeof d3);
    d3s[50] = '\0';
    rfc4231(k3, sizeof k3, d3s,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    memset(k6, 0xaa, sizeof k6);     /* longer than a block: hashed first */
    rfc4231(k6, sizeof k6,
        "Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    rfc4231(k6, sizeof k6,
        "This is a test using a larger than block-size key and a larger "
        "than block-size data. The key needs to be hashed before being "
        "used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

static void hmac_sha256_one_shot_and_streaming_agree(void **state)
{
    static const char msg[] = "The quick brown fox jumps over the lazy dog";
    uint8_t key[CRYPT_HMAC_SHA256_KEY_LEN], one[CRYPT_HMAC_SHA256_LEN];
    uint8_t part[CRYPT_HMAC_SHA256_LEN];
    size_t i, n = sizeof msg - 1;
    (void)state;

    for (i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)i;
    crypt_hmac_sha256(msg, n, key, one);
    /* Python: hmac.new(bytes(range(32)), msg, hashlib.sha256) */
    assert_string_equal(hex(one, sizeof one),
        "f87ad256151fc7b4c5dffa4adb3ebe911a8eeb8a8ebdee3c2a4a8e5f5ec02c32");
    for (i = 0; i <= n; i++) {
        struct crypt_hmac_sha256 st;
        size_t z;

        crypt_hmac_sha256_init(&st, key, sizeof key);
        crypt_hmac_sha256_update(&st, msg, i);
        crypt_hmac_sha256_update(&st, msg + i, n - i);
        crypt_hmac_sha256_final(&st, part);
        assert_memory_equal(part, one, sizeof one);
        for (z = 0; z < sizeof st.opaque; z++)   /* final wiped it */
            assert_int_equal(st.opaque[z], 0);
    }
}

static void blake2b_known_answers(void **state)
{
    static const char fox[] = "The quick brown fox jumps over the lazy dog";
    uint8_t h[CRYPT_BLAKE2B_MAX], key[32];
    size_t i;
    (void)state;

    assert_true(crypt_blake2b(h, 64, "abc", 3, NULL, 0));   /* RFC 7693 */
    assert_string_equal(hex(h, 64),
        "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
        "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923");
    assert_true(crypt_blake2b(h, CRYPT_BLAKE2B_LEN, "", 0, NULL, 0));
    assert_string_equal(hex(h, CRYPT_BLAKE2B_LEN),
        "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
    for (i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)i;
    /* Python: hashlib.blake2b(fox, digest_size=32, key=bytes(range(32))) */
    assert_true(crypt_blake2b(h, 32, fox, sizeof fox - 1, key, sizeof key));
    assert_string_equal(hex(h, 32),
        "5d9461aff732d77d0cc98725ea29298c914fd5193b4c08ec9e3ad6b28c3e2faf");
}

static void blake2b_streaming_equals_one_shot(void **state)
{
    static const char fox[] = "The quick brown fox jumps over the lazy dog";
    uint8_t one[32], part[32], key[32];
    size_t i, n = sizeof fox - 1;
    (void)state;

    for (i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(0xa0 + i);
    assert_true(crypt_blake2b(one, sizeof one, fox, n, key, sizeof key));
    for (i = 0; i <= n; i++) {
        struct crypt_blake2b st;

        assert_true(crypt_blake2b_init(&st, sizeof part, key, sizeof key));
        crypt_blake2b_update(&st, fox, i);
        crypt_blake2b_update(&st, fox + i, n - i);
        assert_true(crypt_blake2b_final(&st, part, sizeof part));
        assert_memory_equal(part, one, sizeof one);
    }
}

static void blake2b_refuses_bad_lengths(void **state)
{
    struct crypt_blake2b st;
    uint8_t h[CRYPT_BLAKE2B_MAX + 1], key[CRYPT_BLAKE2B_KEY_MAX + 1];
    (void)state;

    memset(key, 7, sizeof key);
    assert_false(crypt_blake2b(h, CRYPT_BLAKE2B_MIN - 1, "x", 1, NULL, 0));
    assert_false(crypt_blake2b(h, CRYPT_BLAKE2B_MAX + 1, "x", 1, NULL, 0));
    assert_false(crypt_blake2b(h, 32, "x", 1, key, CRYPT_BLAKE2B_MIN - 1));
    assert_false(crypt_blake2b(h, 32, "x", 1, key, sizeof key));
    assert_false(crypt_blake2b_init(&st, 8, NULL, 0));
    assert_false(crypt_blake2b_init(&st, 32, key, 1));
}

static void compare_is_exact(void **state)
{
    uint8_t a[32], b[32];
    size_t i;
    (void)state;

    for (i = 0; i < sizeof a; i++)
        a[i] = (uint8_t)(i * 7);
    memcpy(b, a, sizeof b);
    assert_true(crypt_equal(a, b, sizeof a));
    assert_true(crypt_equal(a, b, 0));
    for (i = 0; i < sizeof a; i++) {       /* any one bit differs */
        b[i] ^= 0x80;
        assert_false(crypt_equal(a, b, sizeof a));
        b[i] ^= 0x81;
        assert_false(crypt_equal(a, b, sizeof a));
        b[i] ^= 0x01;
    }
    assert_true(crypt_equal(a, b, sizeof a));
}

static void wipe_zeroes(void **state)
{
    uint8_t s[40];
    size_t i;
    (void)state;

    memset(s, 0x5a, sizeof s);
    crypt_wipe(s + 4, 32);
    for (i = 0; i < sizeof s; i++)
        assert_int_equal(s[i], i < 4 || i >= 36 ? 0x5a : 0);
    crypt_wipe(NULL, 0);
}

static void siphash_reference_vector(void **state)
{
    /* SipHash-2-4, key 00..0f, message 00..0e: the paper's Appendix A. */
    static const uint8_t want[8] = { 0xe5, 0x45, 0xbe, 0x49,
                                     0x61, 0xca, 0x29, 0xa1 };
    uint8_t key[CRYPT_SIPHASH_KEY_LEN], msg[15], k2[CRYPT_SIPHASH_KEY_LEN];
    uint64_t v, w;
    size_t i;
    (void)state;

    for (i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)i;
    for (i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)i;
    v = crypt_siphash(msg, sizeof msg, key);
    memcpy(&w, want, sizeof w);
    assert_true(v == w);
    crypt_siphash_keygen(k2);
    assert_false(crypt_equal(k2, key, sizeof key)); /* 2^-128 */
    assert_true(crypt_siphash(msg, sizeof msg, k2) != v);
}

static void aead_round_trip_and_tamper(void **state)
{
    static const char msg[] = "a TOTP secret, twenty";
    uint8_t key[CRYPT_AEAD_KEY_LEN], nonce[CRYPT_AEAD_NONCE_LEN];
    uint8_t box[sizeof msg - 1 + CRYPT_AEAD_TAG_LEN];
    uint8_t out[sizeof msg - 1];
    size_t n = sizeof msg - 1, i;
    (void)state;

    crypt_random(key, sizeof key);
    crypt_random(nonce, sizeof nonce);
    crypt_aead_seal(box, (const uint8_t *)msg, n, "user-1", 6, nonce, key);
    assert_false(memcmp(box, msg, n) == 0);
    assert_true(crypt_aead_open(out, box, sizeof box, "user-1", 6, nonce,
                                key));
    assert_memory_equal(out, msg, n);
    assert_false(crypt_aead_open(out, box, sizeof box, "user-2", 6, nonce,
                                 key));
    for (i = 0; i < sizeof box; i++) {
        box[i] ^= 1;
        assert_false(crypt_aead_open(out, box, sizeof box, "user-1", 6,
                                     nonce, key));
        box[i] ^= 1;
    }
    nonce[0] ^= 1;
    assert_false(crypt_aead_open(out, box, sizeof box, "user-1", 6, nonce,
                                 key));
    assert_false(crypt_aead_open(out, box, CRYPT_AEAD_TAG_LEN - 1, NULL, 0,
                                 nonce, key));
}

static void b64url_rfc4648(void **state)
{
    static const struct { const char *in, *out; } v[] = {
        { "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" },
        { "foobar", "Zm9vYmFy" }, { "\xfb\xff", "-_8" },
    };
    char out[16];
    uint8_t bin[16];
    size_t i, got;
    (void)state;

    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].in);

        assert_true(crypt_b64url_encode(v[i].in, n, out, sizeof out));
        assert_string_equal(out, v[i].out);
        assert_int_equal(CRYPT_B64URL_LEN(n), strlen(v[i].out) + 1);
        assert_true(crypt_b64url_decode(v[i].out, strlen(v[i].out), bin,
                                        sizeof bin, &got));
        assert_int_equal(got, n);
        assert_memory_equal(bin, v[i].in, n);
    }
    assert_false(crypt_b64url_encode("foobar", 6, out, 8)); /* needs 9 */
    assert_false(crypt_b64url_decode("Zm8=", 4, bin, sizeof bin, &got));
    assert_false(crypt_b64url_decode("Zm9v+", 5, bin, sizeof bin, &got));
    assert_false(crypt_b64url_decode("Zm/v", 4, bin, sizeof bin, &got));
    assert_false(crypt_b64url_decode("Zh", 2, bin, sizeof bin, &got));
    assert_false(crypt_b64url_decode("Z", 1, bin, sizeof bin, &got));
    assert_false(crypt_b64url_decode("Zm\0v", 4, bin, sizeof bin, &got));
    assert_false(crypt_b64url_decode("Zm9vYmFy", 8, bin, 5, &got));
}

static void hex_conversions(void **state)
{
    static const uint8_t b[] = { 0x00, 0x7f, 0x80, 0xff, 0xa5 };
    char out[CRYPT_HEX_LEN(sizeof b)];
    uint8_t bin[8];
    size_t got;
    (void)state;

    assert_true(crypt_hex_encode(b, sizeof b, out, sizeof out));
    assert_string_equal(out, "007f80ffa5");
    assert_false(crypt_hex_encode(b, sizeof b, out, sizeof out - 1));
    assert_true(crypt_hex_decode("007F80ffA5", 10, bin, sizeof bin, &got));
    assert_int_equal(got, sizeof b);
    assert_memory_equal(bin, b, sizeof b);
    assert_false(crypt_hex_decode("007", 3, bin, sizeof bin, &got));
    assert_false(crypt_hex_decode("00 7f", 5, bin, sizeof bin, &got));
    assert_false(crypt_hex_decode("0g", 2, bin, sizeof bin, &got));
    assert_false(crypt_hex_decode("00112233", 8, bin, 3, &got));
}

static void random_draws(void **state)
{
    uint8_t a[32], b[32];
    unsigned seen = 0;
    int i;
    (void)state;

    crypt_random(a, sizeof a);
    crypt_random(b, sizeof b);
    assert_false(crypt_equal(a, b, sizeof a));           /* 2^-256 */
    for (i = 0; i < 2000; i++) {
        uint32_t r = crypt_random_uniform(5);

        assert_true(r < 5);
        seen |= 1u << r;
    }
    assert_int_equal(seen, 0x1f);            /* each of 0..4 came up */
    assert_int_equal(crypt_random_uniform(1), 0);
    assert_int_equal(crypt_random_uniform(0), 0);
    assert_true(crypt_random_u32() != crypt_random_u32() ||
                crypt_random_u32() != crypt_random_u32());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sha256_known_answers),
        cmocka_unit_test(hmac_sha256_rfc4231),
        cmocka_unit_test(hmac_sha256_one_shot_and_streaming_agree),
        cmocka_unit_test(blake2b_known_answers),
        cmocka_unit_test(blake2b_streaming_equals_one_shot),
        cmocka_unit_test(blake2b_refuses_bad_lengths),
        cmocka_unit_test(compare_is_exact),
        cmocka_unit_test(wipe_zeroes),
        cmocka_unit_test(siphash_reference_vector),
        cmocka_unit_test(aead_round_trip_and_tamper),
        cmocka_unit_test(b64url_rfc4648),
        cmocka_unit_test(hex_conversions),
        cmocka_unit_test(random_draws),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
