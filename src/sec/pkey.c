/* pkey.c: ES256/RS256 keys with OpenSSL 3: generate, parse, check, PEM,
 * JWK and RFC 7638 thumbprint. */
#include "sec/sec_int.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define EC_COORD_LEN 32          /* P-256 coordinates, left-padded */
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 16384

/* Gives OpenSSL no passphrase, so that an encrypted key fails to parse:
 * its default callback prompts "Enter PEM pass phrase:" on the terminal
 * (or on stderr, reading stdin without one) and the start waits there
 * for good. The daemon takes unencrypted keys only (README.md,
 * "Configuration"). */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* The key of `pem` decoded as key type `type` only ("EC", "RSA"), or NULL
 * without an error left queued. Naming the type spares OpenSSL 3 from
 * trying the decoders of every key type it knows, which costs more than
 * the key itself at start-up (README.md, "Performance"). `select`: the
 * key pair, or the public key alone. */
static EVP_PKEY *parse_typed(const unsigned char *pem, size_t len,
                             const char *type, int select)
{
    EVP_PKEY *pk = NULL;
    OSSL_DECODER_CTX *ctx;
    const unsigned char *p = pem;
    size_t left = len;

    ERR_set_mark();
    ctx = OSSL_DECODER_CTX_new_for_pkey(&pk, "PEM", NULL, type, select, NULL,
                                        NULL);
    if (ctx && (OSSL_DECODER_CTX_set_pem_password_cb(ctx, no_passphrase,
                                                     NULL) != 1 ||
                OSSL_DECODER_from_data(ctx, &p, &left) != 1)) {
        EVP_PKEY_free(pk);
        pk = NULL;
    }
    OSSL_DECODER_CTX_free(ctx);
    ERR_pop_to_mark();
    return pk;
}

/* The DER of a P-256 key pair as OpenSSL writes it (and the daemon, in
 * the keys folder and the database): PKCS#8 (RFC 5208 and 5915, "PRIVATE
 * KEY") and SEC1 (RFC 5915, "EC PRIVATE KEY"), each with the curve named
 * and the public point uncompressed. Only the private scalar and the
 * point vary; they are at fixed offsets. */
#define P256_D_LEN 32
#define P256_POINT_LEN 65        /* 0x04 || X || Y */
static const unsigned char pkcs8_head[] = {
    0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
    0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20
};
static const unsigned char pkcs8_mid[] = { 0xa1, 0x44, 0x03, 0x42, 0x00 };
static const unsigned char sec1_head[] = {
    0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20
};
static const unsigned char sec1_mid[] = {
    0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    0xa1, 0x44, 0x03, 0x42, 0x00
};

/* The base64 body of `pem` between `begin` and `end` lines, decoded into
 * `der`; its length, or 0 when `pem` is not exactly that one block. */
static size_t pem_body(const unsigned char *pem, size_t len,
                       const char *begin, const char *end,
                       unsigned char *der, size_t cap)
{
    const char *p = (const char *)pem, *stop = p + len, *body, *tail;
    size_t n = 0, b = strlen(begin), e = strlen(end);

    if (len < b + e || memcmp(p, begin, b) != 0)
        return 0;
    body = p + b;
    while (stop > body && (stop[-1] == '\n' || stop[-1] == '\r'))
        stop--;
    tail = stop - e;
    if (tail < body || memcmp(tail, end, e) != 0 ||
        sodium_base642bin(der, cap, body, (size_t)(tail - body), "\r\n", &n,
                          NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
        return 0;
    return n;
}

/* The P-256 key pair of a PEM in one of the forms above, built from its
 * scalar and point with EVP_PKEY_fromdata() and checked (the scalar in
 * range, the point its public key): OpenSSL 3's decoder enumerates every
 * key manager of every provider first, which at start-up costs more than
 * the rest of reading the key (README.md, "Performance"). NULL for any
 * other text, which the caller gives to the decoder; a key of these
 * forms that fails the checks is refused (*bad set). */
EVP_PKEY *sec_pkey_parse_p256(const unsigned char *pem, size_t len,
                              bool *bad)
{
    unsigned char der[160];
    const unsigned char *d, *q;
    size_t n;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    EVP_PKEY *pk = NULL;
    BIGNUM *bn = NULL;

    *bad = false;
    n = pem_body(pem, len, "-----BEGIN PRIVATE KEY-----",
                 "-----END PRIVATE KEY-----", der, sizeof der);
    if (n == sizeof pkcs8_head + P256_D_LEN + sizeof pkcs8_mid +
                 P256_POINT_LEN &&
        memcmp(der, pkcs8_head, sizeof pkcs8_head) == 0 &&
        memcmp(der + sizeof pkcs8_head + P256_D_LEN, pkcs8_mid,
               sizeof pkcs8_mid) == 0) {
        d = der + sizeof pkcs8_head;
    } else {
        n = pem_body(pem, len, "-----BEGIN EC PRIVATE KEY-----",
                     "-----END EC PRIVATE KEY-----", der, sizeof der);
        if (n != sizeof sec1_head + P256_D_LEN + sizeof sec1_mid +
                     P256_POINT_LEN ||
            memcmp(der, sec1_head, sizeof sec1_head) != 0 ||
            memcmp(der + sizeof sec1_head + P256_D_LEN, sec1_mid,
                   sizeof sec1_mid) != 0) {
            sodium_memzero(der, sizeof der);
            return NULL;
        }
        d = der + sizeof sec1_head;
    }
    q = d + P256_D_LEN + (d == der + sizeof pkcs8_head ? sizeof pkcs8_mid
                                                       : sizeof sec1_mid);
    ERR_set_mark();
    bn = BN_secure_new();
    bld = OSSL_PARAM_BLD_new();
    if (bn && bld && BN_bin2bn(d, P256_D_LEN, bn) &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                        SN_X9_62_prime256v1, 0) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, q,
                                         P256_POINT_LEN))
        params = OSSL_PARAM_BLD_to_param(bld);
    ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL) : NULL;
    if (ctx && EVP_PKEY_fromdata_init(ctx) == 1 &&
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_KEYPAIR, params) == 1)
        check = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (!check || EVP_PKEY_private_check(check) != 1 ||
        EVP_PKEY_pairwise_check(check) != 1) {
        EVP_PKEY_free(pk);
        pk = NULL;
        *bad = true;
    }
    ERR_pop_to_mark();
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);    /* the scalar's copy: cleansed */
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(bn);
    sodium_memzero(der, sizeof der);
    return pk;
}

EVP_PKEY *sec_pkey_parse(const unsigned char *pem, size_t len,
                         enum cfg_alg alg)
{
    EVP_PKEY *pk = NULL;
    BIO *bio;
    bool bad = false;

    if (len > SEC_KEY_FILE_MAX)
        return NULL;
    if (alg == CFG_ALG_ES256)
        pk = sec_pkey_parse_p256(pem, len, &bad);
    if (pk || bad)
        return pk;
    if (alg == CFG_ALG_ES256 || alg == CFG_ALG_RS256)
        pk = parse_typed(pem, len, alg == CFG_ALG_ES256 ? "EC" : "RSA",
                         OSSL_KEYMGMT_SELECT_KEYPAIR);
    if (pk)
        return pk;
    bio = BIO_new_mem_buf(pem, (int)len);    /* any other type or form */
    if (!bio)
        return NULL;
    ERR_set_mark();                          /* a failure is only NULL */
    pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    ERR_pop_to_mark();
    BIO_free(bio);
    return pk;
}

/* True when `needle` occurs in the `len` bytes of `pem` (not a string:
 * a PEM read from a file has no NUL). */
static bool pem_has(const unsigned char *pem, size_t len,
                    const char *needle)
{
    return memmem(pem, len, needle, strlen(needle)) != NULL;
}

bool sec_pkey_encrypted(const unsigned char *pem, size_t len)
{
    return pem_has(pem, len, "-----BEGIN ENCRYPTED PRIVATE KEY-----") ||
           pem_has(pem, len, "Proc-Type: 4,ENCRYPTED");
}

size_t sec_pkey_count(const unsigned char *pem, size_t len)
{
    static const char begin[] = "-----BEGIN ", tail[] = "PRIVATE KEY-----";
    const unsigned char *p = pem, *end = pem + len, *eol;
    size_t n = 0;

    while ((p = memmem(p, (size_t)(end - p), begin, sizeof begin - 1))) {
        p += sizeof begin - 1;
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if (eol > p && eol[-1] == '\r')
            eol--;
        if ((size_t)(eol - p) >= sizeof tail - 1 &&
            memcmp(eol - (sizeof tail - 1), tail, sizeof tail - 1) == 0)
            n++;
    }
    return n;
}

/* The public half of `pk` as a key of its own, taken from the key's
 * parameters: no PEM written and read back, and no private half kept. */
EVP_PKEY *sec_pkey_public(EVP_PKEY *pk)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    OSSL_PARAM *params = NULL;
    EVP_PKEY *pub = NULL;

    if (!ctx || EVP_PKEY_todata(pk, EVP_PKEY_PUBLIC_KEY, &params) != 1 ||
        EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pub, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        EVP_PKEY_free(pub);
        pub = NULL;
    }
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    return pub;
}

EVP_PKEY *sec_pkey_generate(enum cfg_alg alg)
{
    if (alg == CFG_ALG_ES256)
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", SN_X9_62_prime256v1);
    if (alg == CFG_ALG_RS256)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)RSA_MIN_BITS);
    return NULL;
}

static bool ec_is_p256(EVP_PKEY *pk)
{
    char group[64];
    size_t n = 0;

    if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME,
                                        group, sizeof group, &n))
        return false;
    return strcmp(group, SN_X9_62_prime256v1) == 0;
}

bool sec_pkey_fits(EVP_PKEY *pk, enum cfg_alg alg, char *why,
                   size_t why_len)
{
    int bits = EVP_PKEY_get_bits(pk);

    if (alg == CFG_ALG_ES256) {
        if (!EVP_PKEY_is_a(pk, "EC")) {
            sec_why(why, why_len, "ES256 needs an EC P-256 key, found %s",
                    EVP_PKEY_get0_type_name(pk));
            return false;
        }
        if (!ec_is_p256(pk)) {
            sec_why(why, why_len, "ES256 needs curve P-256 (prime256v1)");
            return false;
        }
        return true;
    }
    if (alg == CFG_ALG_RS256) {
        if (!EVP_PKEY_is_a(pk, "RSA")) {
            sec_why(why, why_len, "RS256 needs an RSA key, found %s",
                    EVP_PKEY_get0_type_name(pk));
            return false;
        }
        if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
            sec_why(why, why_len, "RS256 needs an RSA key of %d to %d "
                    "bits, found %d", RSA_MIN_BITS, RSA_MAX_BITS, bits);
            return false;
        }
        return true;
    }
    sec_why(why, why_len, "%s does not use a key pair", sec_alg_name(alg));
    return false;
}

/* The contents of a memory BIO as a malloc'd NUL-terminated buffer. */
static unsigned char *bio_take(BIO *bio, size_t *len)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    unsigned char *out;

    if (n <= 0 || !data)
        return NULL;
    out = malloc((size_t)n + 1);
    if (!out)
        return NULL;
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    return out;
}

unsigned char *sec_pkey_private_pem(EVP_PKEY *pk, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_secmem());      /* cleansed when freed */
    unsigned char *out = NULL;

    if (!bio)
        return NULL;
    if (PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL))
        out = bio_take(bio, len);
    BIO_free(bio);
    return out;
}

/* The big-number parameter `name` of `pk` as big-endian bytes in `out`
 * (left-padded to `pad` bytes when pad > 0); the length, or -1 when it is
 * missing or does not fit in `cap`. */
static int bn_param_bytes(EVP_PKEY *pk, const char *name, int pad,
                          unsigned char *out, size_t cap)
{
    BIGNUM *bn = NULL;
    int n = -1;

    if (!EVP_PKEY_get_bn_param(pk, name, &bn))
        return -1;
    if (BN_num_bytes(bn) <= (int)cap && pad <= (int)cap)
        n = pad ? BN_bn2binpad(bn, out, pad) : BN_bn2bin(bn, out);
    BN_free(bn);
    return n;
}

/* base64url of the big-endian bytes of a BIGNUM parameter of `pk`, padded
 * on the left to `pad` bytes (0: minimal length). New json string. */
static json_t *bn_param_b64(EVP_PKEY *pk, const char *name, int pad)
{
    unsigned char bin[RSA_MAX_BITS / 8];
    char text[sizeof bin * 4 / 3 + 4];
    int n = bn_param_bytes(pk, name, pad, bin, sizeof bin);

    return n > 0 && sec_b64url_encode(bin, (size_t)n, text, sizeof text)
               ? json_string(text)
               : NULL;
}

static json_t *jwk_members(EVP_PKEY *pk, enum cfg_alg alg)
{
    if (alg == CFG_ALG_ES256)
        return json_pack("{s:s, s:s, s:o?, s:o?}", "kty", "EC",
                         "crv", "P-256",
                         "x", bn_param_b64(pk, OSSL_PKEY_PARAM_EC_PUB_X,
                                           EC_COORD_LEN),
                         "y", bn_param_b64(pk, OSSL_PKEY_PARAM_EC_PUB_Y,
                                           EC_COORD_LEN));
    return json_pack("{s:s, s:o?, s:o?}", "kty", "RSA",
                     "n", bn_param_b64(pk, OSSL_PKEY_PARAM_RSA_N, 0),
                     "e", bn_param_b64(pk, OSSL_PKEY_PARAM_RSA_E, 0));
}

json_t *sec_pkey_jwk(EVP_PKEY *pk, enum cfg_alg alg, char kid[SEC_KID_MAX])
{
    json_t *jwk = jwk_members(pk, alg);

    if (!jwk || !sec_jwk_thumbprint(jwk, kid) ||
        json_object_set_new(jwk, "kid", json_string(kid)) != 0 ||
        json_object_set_new(jwk, "use", json_string("sig")) != 0 ||
        json_object_set_new(jwk, "alg",
                            json_string(sec_alg_name(alg))) != 0) {
        json_decref(jwk);
        return NULL;
    }
    return jwk;
}

/* Copies member `name` of `from` (a string) into `to`. */
static bool copy_member(json_t *to, const json_t *from, const char *name)
{
    json_t *v = json_object_get(from, name);

    return json_is_string(v) && json_object_set(to, name, v) == 0;
}

bool sec_jwk_thumbprint(const json_t *jwk, char kid[SEC_KID_MAX])
{
    static const char *const ec[] = { "crv", "kty", "x", "y", NULL };
    static const char *const rsa[] = { "e", "kty", "n", NULL };
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *const *names;
    json_t *req = json_object();
    char *canon = NULL;
    unsigned char digest[32];
    bool ok = req != NULL && kty != NULL;

    if (ok && strcmp(kty, "EC") == 0)
        names = ec;
    else if (ok && strcmp(kty, "RSA") == 0)
        names = rsa;
    else
        ok = false;
    for (; ok && *names; names++)
        ok = copy_member(req, jwk, *names);
    if (ok)          /* lexicographic members, no whitespace: RFC 7638 s3 */
        canon = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
    ok = canon != NULL;
    if (ok) {
        crypto_hash_sha256(digest, (const unsigned char *)canon,
                           strlen(canon));
        ok = sec_b64url_encode(digest, sizeof digest, kid, SEC_KID_MAX);
    }
    free(canon);
    json_decref(req);
    return ok;
}
