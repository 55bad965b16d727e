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
#include <openssl/pem.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define EC_COORD_LEN 32          /* P-256 coordinates, left-padded */
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 16384

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
    if (ctx && OSSL_DECODER_from_data(ctx, &p, &left) != 1) {
        EVP_PKEY_free(pk);
        pk = NULL;
    }
    OSSL_DECODER_CTX_free(ctx);
    ERR_pop_to_mark();
    return pk;
}

EVP_PKEY *sec_pkey_parse(const unsigned char *pem, size_t len,
                         enum cfg_alg alg)
{
    EVP_PKEY *pk = NULL;
    BIO *bio;

    if (len > SEC_KEY_FILE_MAX)
        return NULL;
    if (alg == CFG_ALG_ES256 || alg == CFG_ALG_RS256)
        pk = parse_typed(pem, len, alg == CFG_ALG_ES256 ? "EC" : "RSA",
                         OSSL_KEYMGMT_SELECT_KEYPAIR);
    if (pk)
        return pk;
    bio = BIO_new_mem_buf(pem, (int)len);    /* any other type or form */
    if (!bio)
        return NULL;
    pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    return pk;
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
