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
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* What was written to memory BIO `bio`, NUL-terminated; frees `bio`. */
static char *bio_text(BIO *bio)
{
    char *data = NULL, *out;
    long n = BIO_get_mem_data(bio, &data);

    assert_true(n > 0);
    out = calloc(1, (size_t)n + 1);
    assert_non_null(out);
    memcpy(out, data, (size_t)n);
    BIO_free(bio);
    return out;
}

/* OpenSSL's own SubjectPublicKeyInfo PEM of `pk`, NUL-terminated. */
static char *openssl_public_pem(EVP_PKEY *pk)
{
    BIO *bio = BIO_new(BIO_s_mem());

    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pk), 1);
    return bio_text(bio);
}

/* The private PEM of `pk`: PKCS#8, or the type's own (traditional) form. */
static char *private_pem(EVP_PKEY *pk, bool traditional)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int ok;

    assert_non_null(bio);
    ok = traditional
             ? PEM_write_bio_PrivateKey_traditional(bio, pk, NULL, NULL, 0,
                                                    NULL, NULL)
             : PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL);
    assert_int_equal(ok, 1);
    return bio_text(bio);
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
    assert_false(sec_pkey_encrypted((const unsigned char *)pem,
                                    strlen(pem)));
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

/* `pem` (one PEM block) with byte `at` of its DER xor'ed with `flip`,
 * or turned into `set` when flip is 0; lines of 64 as OpenSSL writes. */
static char *der_changed(const char *pem, size_t at, unsigned flip,
                         unsigned set)
{
    const char *body = strchr(pem, '\n') + 1, *end = strstr(pem, "-----END");
    const char *tail = end;
    unsigned char der[512];
    char b64[1024], *out;
    size_t n = 0, i, o, head = (size_t)(body - pem);

    assert_int_equal(sodium_base642bin(der, sizeof der, body,
                                       (size_t)(end - body), "\r\n", &n,
                                       NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_true(at < n);
    der[at] = flip ? (unsigned char)(der[at] ^ flip) : (unsigned char)set;
    sodium_bin2base64(b64, sizeof b64, der, n,
                      sodium_base64_VARIANT_ORIGINAL);
    out = calloc(1, strlen(pem) + 64);
    assert_non_null(out);
    memcpy(out, pem, head);
    for (i = 0, o = head; b64[i]; i++) {
        out[o++] = b64[i];
        if (i % 64 == 63 || !b64[i + 1])
            out[o++] = '\n';
    }
    memcpy(out + o, tail, strlen(tail));
    return out;
}

/* ES256 keys in both forms OpenSSL writes (PKCS#8 and SEC1, with CRLF
 * line ends too) take the fast path and come out as the decoder reads
 * them; 40 fresh keys, so scalars with leading zero bytes are among them
 * about once in 6 runs. */
static void test_p256_fast_path_reads_what_the_decoder_reads(void **state)
{
    size_t i, t;
    bool bad;

    (void)state;
    for (i = 0; i < 40; i++) {
        EVP_PKEY *pk = sec_pkey_generate(CFG_ALG_ES256);

        assert_non_null(pk);
        for (t = 0; t < 3; t++) {
            char *pem = private_pem(pk, t == 1), *crlf, *o;
            const char *c;
            EVP_PKEY *got;

            if (t == 2) {                    /* CRLF line ends */
                crlf = calloc(2, strlen(pem) + 1);
                assert_non_null(crlf);
                for (c = pem, o = crlf; *c; c++) {
                    if (*c == '\n')
                        *o++ = '\r';
                    *o++ = *c;
                }
                free(pem);
                pem = crlf;
            }
            got = sec_pkey_parse_p256((const unsigned char *)pem,
                                      strlen(pem), &bad);
            assert_non_null(got);
            assert_false(bad);
            EVP_PKEY_free(got);
            parses_as(pem, CFG_ALG_ES256, pk);
            free(pem);
        }
        EVP_PKEY_free(pk);
    }
}

/* A key of those forms whose point is not its scalar's (a byte of the
 * point or of the scalar changed, a scalar past the group order) is
 * refused outright: the decoder would load a pair whose tokens its own
 * JWKS cannot verify. Other text is left to the decoder. */
static void test_p256_fast_path_refuses_a_wrong_pair(void **state)
{
    static const size_t d_at[2] = { 36, 7 }, y_at[2] = { 137, 120 };
    EVP_PKEY *pk = sec_pkey_generate(CFG_ALG_ES256);
    EVP_PKEY *rsa = sec_pkey_generate(CFG_ALG_RS256);
    char *pem, *bad_pem, *rsa_pem;
    size_t t, i;
    bool bad;

    (void)state;
    assert_non_null(pk);
    assert_non_null(rsa);
    for (t = 0; t < 2; t++) {
        pem = private_pem(pk, t == 1);
        /* the point's last byte changed: not the scalar's point (and
         * off the curve); the scalar's changed: another point */
        for (i = 0; i < 2; i++) {
            bad_pem = der_changed(pem, i ? d_at[t] + 31 : y_at[t], 1, 0);
            assert_null(sec_pkey_parse_p256((const unsigned char *)bad_pem,
                                            strlen(bad_pem), &bad));
            assert_true(bad);
            assert_null(sec_pkey_parse((const unsigned char *)bad_pem,
                                       strlen(bad_pem), CFG_ALG_ES256));
            assert_int_equal(ERR_peek_error(), 0);
            free(bad_pem);
        }
        /* a scalar of 32 bytes 0xff: not below the group order */
        bad_pem = strdup(pem);
        for (i = 0; i < 32; i++) {
            char *next = der_changed(bad_pem, d_at[t] + i, 0, 0xff);

            free(bad_pem);
            bad_pem = next;
        }
        assert_null(sec_pkey_parse_p256((const unsigned char *)bad_pem,
                                        strlen(bad_pem), &bad));
        assert_true(bad);
        free(bad_pem);
        free(pem);
    }
    rsa_pem = private_pem(rsa, false);           /* another form */
    assert_null(sec_pkey_parse_p256((const unsigned char *)rsa_pem,
                                    strlen(rsa_pem), &bad));
    assert_false(bad);
    free(rsa_pem);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(pk);
}

/* The private PEM of `pk` encrypted with passphrase "hunter2": PKCS#8
 * ("ENCRYPTED PRIVATE KEY"), or the type's own form ("Proc-Type:
 * 4,ENCRYPTED"). */
static char *encrypted_pem(EVP_PKEY *pk, bool traditional)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char pass[] = "hunter2";
    int ok;

    assert_non_null(bio);
    ok = traditional
             ? PEM_write_bio_PrivateKey_traditional(
                   bio, pk, EVP_aes_128_cbc(), (unsigned char *)pass,
                   (int)strlen(pass), NULL, NULL)
             : PEM_write_bio_PKCS8PrivateKey(bio, pk, EVP_aes_128_cbc(),
                                             pass, (int)strlen(pass), NULL,
                                             NULL);
    assert_int_equal(ok, 1);
    return bio_text(bio);
}

/* A new pipe put in place of descriptor `fd`; the old one in *saved and
 * the other end of the pipe returned. */
static int pipe_over(int fd, bool feed, int *saved)
{
    int p[2];

    assert_int_equal(pipe(p), 0);
    *saved = dup(fd);
    assert_true(*saved >= 0);
    assert_true(dup2(feed ? p[0] : p[1], fd) >= 0);
    close(feed ? p[0] : p[1]);
    return feed ? p[1] : p[0];
}

/* An encrypted key is refused (NULL) without asking for its passphrase:
 * OpenSSL's default callback prompts "Enter PEM pass phrase:" on the
 * terminal, or on stderr reading stdin, and a daemon that starts would
 * wait there. The right passphrase waits on stdin and nothing may be
 * written to stderr. */
static void test_parse_refuses_encrypted_without_prompt(void **state)
{
    EVP_PKEY *keys[2] = { sec_pkey_generate(CFG_ALG_ES256),
                          sec_pkey_generate(CFG_ALG_RS256) };
    static const char answer[] = "hunter2\nhunter2\nhunter2\nhunter2\n";
    char err[256];
    int in_saved, err_saved, in_w, err_r, k, form, a;
    ssize_t got;

    (void)state;
    for (k = 0; k < 2; k++)
        for (form = 0; form < 2; form++) {
            char *pem;

            assert_non_null(keys[k]);
            pem = encrypted_pem(keys[k], form == 1);
            for (a = CFG_ALG_ES256; a <= CFG_ALG_HS256; a++) {
                EVP_PKEY *pk;

                in_w = pipe_over(STDIN_FILENO, true, &in_saved);
                err_r = pipe_over(STDERR_FILENO, false, &err_saved);
                assert_int_equal(write(in_w, answer, sizeof answer - 1),
                                 (ssize_t)(sizeof answer - 1));
                close(in_w);
                pk = sec_pkey_parse((const unsigned char *)pem, strlen(pem),
                                    (enum cfg_alg)a);
                dup2(in_saved, STDIN_FILENO);
                dup2(err_saved, STDERR_FILENO);
                close(in_saved);
                close(err_saved);
                fcntl(err_r, F_SETFL, O_NONBLOCK);
                got = read(err_r, err, sizeof err - 1);
                close(err_r);
                err[got > 0 ? got : 0] = '\0';
                if (pk || got > 0)
                    fail_msg("key %d form %d alg %d: parsed %d, stderr "
                             "\"%s\"", k, form, a, pk != NULL, err);
                assert_int_equal(ERR_peek_error(), 0);
                assert_true(sec_pkey_encrypted((const unsigned char *)pem,
                                               strlen(pem)));
            }
            free(pem);
        }
    EVP_PKEY_free(keys[0]);
    EVP_PKEY_free(keys[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_public_half),
        cmocka_unit_test(test_parse_any_type_any_form),
        cmocka_unit_test(test_parse_refuses_non_keys),
        cmocka_unit_test(test_p256_fast_path_reads_what_the_decoder_reads),
        cmocka_unit_test(test_p256_fast_path_refuses_a_wrong_pair),
        cmocka_unit_test(test_parse_refuses_encrypted_without_prompt),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
