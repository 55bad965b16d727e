/* test_pkey_pem.c: the start-up paths of pkey.c give what OpenSSL's
 * generic ones give: the public half of a key pair taken from its
 * parameters, and the private key parsed with the configured type tried
 * first. */
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

/* The public half of fresh P-256 and RSA keys is the same public key
 * (the same SubjectPublicKeyInfo as OpenSSL writes for the pair), holds
 * no private half, and verifies what the pair signs. */
static void test_public_half(void **state)
{
    static const unsigned char msg[] = "header.payload";
    int i;

    (void)state;
    for (i = 0; i < 2 * 4; i++) {
        enum cfg_alg alg = i % 2 ? CFG_ALG_RS256 : CFG_ALG_ES256;
        EVP_PKEY *pk = sec_pkey_generate(alg), *pub;
        unsigned char sig[512];
        size_t sig_len = sizeof sig;
        char *want, *got;
        BIGNUM *priv = NULL;
        EVP_MD_CTX *md;

        assert_non_null(pk);
        pub = sec_pkey_public(pk);
        assert_non_null(pub);
        assert_int_equal(EVP_PKEY_eq(pub, pk), 1);
        want = openssl_public_pem(pk);
        got = openssl_public_pem(pub);
        assert_string_equal(got, want);
        assert_int_equal(EVP_PKEY_get_bn_param(pub, alg == CFG_ALG_ES256
                                                        ? "priv"
                                                        : "d",
                                               &priv),
                         0);
        assert_null(priv);
        md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL,
                                            pk), 1);
        assert_int_equal(EVP_DigestSign(md, sig, &sig_len, msg,
                                        sizeof msg - 1), 1);
        EVP_MD_CTX_free(md);
        md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
                                              pub), 1);
        assert_int_equal(EVP_DigestVerify(md, sig, sig_len, msg,
                                          sizeof msg - 1), 1);
        EVP_MD_CTX_free(md);
        ERR_clear_error();
        free(got);
        free(want);
        EVP_PKEY_free(pub);
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
        cmocka_unit_test(test_public_half),
        cmocka_unit_test(test_parse_any_type_any_form),
        cmocka_unit_test(test_parse_refuses_non_keys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
