/* test_pkey_pem.c: the start-up paths of pkey.c give what OpenSSL's
 * generic ones give: the public PEM of a P-256 key written by hand, and
 * the private key parsed with the configured type tried first. */
#include "sec/sec_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#define ROUNDS 32

/* OpenSSL's own SubjectPublicKeyInfo PEM of `pk`, NUL-terminated. */
static char *openssl_public_pem(EVP_PKEY *pk)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *out;
    long n;

    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pk), 1);
    n = BIO_get_mem_data(bio, &data);
    assert_true(n > 0);
    out = calloc(1, (size_t)n + 1);
    assert_non_null(out);
    memcpy(out, data, (size_t)n);
    BIO_free(bio);
    return out;
}

/* The private PEM of `pk`: PKCS#8, or the type's own (traditional) form. */
static char *private_pem(EVP_PKEY *pk, bool traditional)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *out;
    long n;
    int ok;

    assert_non_null(bio);
    ok = traditional
             ? PEM_write_bio_PrivateKey_traditional(bio, pk, NULL, NULL, 0,
                                                    NULL, NULL)
             : PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL);
    assert_int_equal(ok, 1);
    n = BIO_get_mem_data(bio, &data);
    out = calloc(1, (size_t)n + 1);
    assert_non_null(out);
    memcpy(out, data, (size_t)n);
    BIO_free(bio);
    return out;
}

/* The public PEM of fresh P-256 keys is byte for byte OpenSSL's, and reads
 * back as the same public key; so is an RSA key's (OpenSSL writes it). */
static void test_public_pem_matches_openssl(void **state)
{
    int i;

    (void)state;
    for (i = 0; i < ROUNDS + 1; i++) {
        EVP_PKEY *pk = sec_pkey_generate(i < ROUNDS ? CFG_ALG_ES256
                                                    : CFG_ALG_RS256);
        char *want;
        unsigned char *got;
        size_t len = 0;
        BIO *bio;
        EVP_PKEY *back;

        assert_non_null(pk);
        want = openssl_public_pem(pk);
        got = sec_pkey_public_pem(pk, &len);
        assert_non_null(got);
        assert_int_equal(len, strlen(want));
        assert_string_equal((const char *)got, want);
        bio = BIO_new_mem_buf(got, (int)len);
        back = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        assert_non_null(back);
        assert_int_equal(EVP_PKEY_eq(back, pk), 1);
        EVP_PKEY_free(back);
        BIO_free(bio);
        free(got);
        free(want);
        EVP_PKEY_free(pk);
    }
}

/* Parses `pem` with `alg` first; checks it is `pk` with its private half
 * and that no error is left queued by the path that did not fit. */
static void parses_as(const char *pem, enum cfg_alg alg, EVP_PKEY *pk)
{
    EVP_PKEY *got;
    char *a, *b;

    ERR_clear_error();
    got = sec_pkey_parse((const unsigned char *)pem, strlen(pem), alg);
    assert_non_null(got);
    assert_int_equal(EVP_PKEY_eq(got, pk), 1);
    a = private_pem(got, false);
    b = private_pem(pk, false);
    assert_string_equal(a, b);
    assert_int_equal(ERR_peek_error(), 0);
    free(a);
    free(b);
    EVP_PKEY_free(got);
}

/* Whatever the configured algorithm, PKCS#8 and traditional PEM of EC and
 * RSA keys are read as before: the type named first only goes faster,
 * a key of another type still parses (sec_pkey_fits then refuses it). */
static void test_parse_any_type_any_form(void **state)
{
    static const enum cfg_alg algs[] = { CFG_ALG_ES256, CFG_ALG_RS256,
                                         CFG_ALG_HS256 };
    EVP_PKEY *ec = sec_pkey_generate(CFG_ALG_ES256);
    EVP_PKEY *rsa = sec_pkey_generate(CFG_ALG_RS256);
    EVP_PKEY *keys[2] = { ec, rsa };
    size_t i, j, t;

    (void)state;
    assert_non_null(ec);
    assert_non_null(rsa);
    for (i = 0; i < 2; i++)
        for (t = 0; t < 2; t++) {
            char *pem = private_pem(keys[i], t == 1);

            for (j = 0; j < sizeof algs / sizeof algs[0]; j++)
                parses_as(pem, algs[j], keys[i]);
            free(pem);
        }
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

/* Not a private key: NULL for every algorithm, nothing left queued. */
static void test_parse_refuses_non_keys(void **state)
{
    EVP_PKEY *ec = sec_pkey_generate(CFG_ALG_ES256);
    char *pem, *pub;
    const char *bad[4];
    size_t i;
    int a;

    (void)state;
    assert_non_null(ec);
    pem = private_pem(ec, false);
    pub = openssl_public_pem(ec);
    pem[strlen(pem) / 2] = '\0';         /* truncated */
    bad[0] = pem;
    bad[1] = pub;                        /* a public key only */
    bad[2] = "not a key at all";
    bad[3] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    for (i = 0; i < 4; i++)
        for (a = CFG_ALG_ES256; a <= CFG_ALG_HS256; a++)
            assert_null(sec_pkey_parse((const unsigned char *)bad[i],
                                       strlen(bad[i]), (enum cfg_alg)a));
    free(pem);
    free(pub);
    EVP_PKEY_free(ec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_public_pem_matches_openssl),
        cmocka_unit_test(test_parse_any_type_any_form),
        cmocka_unit_test(test_parse_refuses_non_keys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
