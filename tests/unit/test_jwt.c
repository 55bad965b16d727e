/* test_jwt.c: signing and strict verification of access tokens. */
#include "sec.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "sec/sec_int.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

static char issuer[] = "auth-serve", audience[] = "auth-serve";
static char other_name[] = "someone-else";
static char secret[] = "an HS256 secret of more than thirty-two bytes";

struct fx {
    char root[PATH_MAX], es_dir[PATH_MAX + 8], rs_dir[PATH_MAX + 8];
    char other_dir[PATH_MAX + 8];
    struct cfg es, rs, hs, other;
    struct sec_keys *kes, *krs, *khs, *kother;
    struct arena *a;
    int64_t now;
};

/* ---- fixtures ---- */

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void make_root(char root[PATH_MAX], const char *name)
{
    const char *base = getenv("AUTH_TEST_TMP");

    if (!base || !base[0])
        base = "/tmp";
    if (mkdir(base, 0700) != 0)
        assert_int_equal(errno, EEXIST);
    assert_true(snprintf(root, PATH_MAX, "%s/%s-XXXXXX", base, name) <
                PATH_MAX);
    assert_non_null(mkdtemp(root));
}

static void cfg_base(struct cfg *c, enum cfg_alg alg, char *dir)
{
    memset(c, 0, sizeof *c);
    c->jwt_alg = alg;
    c->data_dir = dir;
    c->jwt_issuer = issuer;
    c->jwt_audience = audience;
    c->access_ttl = 900;
}

static struct sec_keys *load(const struct cfg *c)
{
    struct sec_keys *k = NULL;
    char why[512] = "";

    if (sec_keys_load(c, &k, why, sizeof why) != AS_OK)
        fail_msg("sec_keys_load: %s", why);
    return k;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    if (!f || sodium_init() < 0)
        return -1;
    make_root(f->root, "test_jwt");
    snprintf(f->es_dir, sizeof f->es_dir, "%s/es", f->root);
    snprintf(f->rs_dir, sizeof f->rs_dir, "%s/rs", f->root);
    snprintf(f->other_dir, sizeof f->other_dir, "%s/other", f->root);
    cfg_base(&f->es, CFG_ALG_ES256, f->es_dir);
    cfg_base(&f->rs, CFG_ALG_RS256, f->rs_dir);
    cfg_base(&f->other, CFG_ALG_ES256, f->other_dir);
    cfg_base(&f->hs, CFG_ALG_HS256, NULL);
    f->hs.jwt_secret = secret;
    f->kes = load(&f->es);
    f->krs = load(&f->rs);
    f->khs = load(&f->hs);
    f->kother = load(&f->other);
    f->now = (int64_t)time(NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    sec_keys_free(f->kes);
    sec_keys_free(f->krs);
    sec_keys_free(f->khs);
    sec_keys_free(f->kother);
    nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int arena_setup(void **state)
{
    struct fx *f = *state;

    f->a = arena_new();
    return f->a ? 0 : -1;
}

static int arena_teardown(void **state)
{
    struct fx *f = *state;

    arena_free(f->a);
    f->a = NULL;
    return 0;
}

/* ---- helpers ---- */

static struct sec_claims claims_at(int64_t now)
{
    struct sec_claims c;

    memset(&c, 0, sizeof c);
    uuid_v7_new(c.sub);
    uuid_v7_new(c.sid);
    uuid_v7_new(c.jti);
    c.email = "ada@example.com";
    c.role = "user";
    c.iat = now;
    c.nbf = now;
    c.exp = now + 900;
    return c;
}

__attribute__((noinline))
static char *sign(const struct sec_keys *k, const struct cfg *cfg,
                  const struct sec_claims *c)
{
    char *token = NULL;

    assert_int_equal(sec_jwt_sign(k, cfg, c, &token), AS_OK);
    assert_non_null(token);
    return token;
}

static enum as_err verify(struct fx *f, const struct sec_keys *k,
                          const struct cfg *cfg, const char *token)
{
    struct sec_claims out;

    return sec_jwt_verify(k, cfg, token, f->now, &out, f->a);
}

static char *b64(const void *p, size_t n)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, B64);
    char *out = malloc(cap);

    assert_non_null(out);
    sodium_bin2base64(out, cap, p, n, B64);
    return out;
}

/* header.payload.HMAC-SHA-256(secret): any JSON text, signed properly. */
static char *craft_hs256(const char *header, const char *payload,
                         const char *key)
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[32];
    char *h = b64(header, strlen(header)), *p = b64(payload, strlen(payload));
    char *s, *token;
    size_t n = strlen(h) + strlen(p) + 2 + 64;

    token = malloc(n);
    assert_non_null(token);
    snprintf(token, n, "%s.%s", h, p);
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)key,
                                strlen(key));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)token,
                                  strlen(token));
    crypto_auth_hmacsha256_final(&st, mac);
    s = b64(mac, sizeof mac);
    strcat(token, ".");
    strcat(token, s);
    free(h);
    free(p);
    free(s);
    return token;
}

/* Every claim of a valid token as a JSON object; caller decrefs. */
static json_t *full_payload(int64_t now)
{
    char sub[UUID_STR_LEN], sid[UUID_STR_LEN], jti[UUID_STR_LEN];

    uuid_v7_new(sub);
    uuid_v7_new(sid);
    uuid_v7_new(jti);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}",
                     "iss", issuer, "aud", audience, "sub", sub, "sid", sid,
                     "jti", jti, "role", "user", "email", "ada@example.com",
                     "iat", (json_int_t)now, "nbf", (json_int_t)now,
                     "exp", (json_int_t)(now + 900));
}

static char *hs_header(struct fx *f)
{
    char *h = NULL;

    assert_true(asprintf(&h, "{\"alg\":\"HS256\",\"typ\":\"JWT\","
                         "\"kid\":\"%s\"}", sec_keys_kid(f->khs)) > 0);
    return h;
}

/* An HS256 token of `payload` (stolen) under the test's key and kid. */
static char *craft_payload(struct fx *f, json_t *payload)
{
    char *h = hs_header(f), *p = json_dumps(payload, JSON_COMPACT);
    char *token = craft_hs256(h, p, secret);

    free(h);
    free(p);
    json_decref(payload);
    return token;
}

static void expect_invalid(struct fx *f, const struct sec_keys *k,
                           const struct cfg *cfg, char *token)
{
    assert_int_equal(verify(f, k, cfg, token), AS_ERR_INVALID_TOKEN);
    free(token);
}

static void expect_valid(struct fx *f, const struct sec_keys *k,
                         const struct cfg *cfg, char *token)
{
    assert_int_equal(verify(f, k, cfg, token), AS_OK);
    free(token);
}

/* The decoded JSON of segment `i` of `token`; caller decrefs. */
static json_t *segment(const char *token, int i)
{
    const char *p = token, *end;
    unsigned char buf[SEC_MAX_JWT_BYTES];
    size_t got = 0;

    while (i-- > 0)
        p = strchr(p, '.') + 1;
    end = strchr(p, '.');
    assert_int_equal(sodium_base642bin(buf, sizeof buf, p,
                                       end ? (size_t)(end - p) : strlen(p),
                                       NULL, &got, NULL, B64), 0);
    return json_loadb((const char *)buf, got, 0, NULL);
}

/* ---- round trips ---- */

static void round_trip(struct fx *f, const struct sec_keys *k,
                       const struct cfg *cfg, const char *alg)
{
    struct sec_claims c = claims_at(f->now), out;
    char *token = sign(k, cfg, &c);
    json_t *hdr = segment(token, 0), *body = segment(token, 1);

    assert_string_equal(json_string_value(json_object_get(hdr, "alg")), alg);
    assert_string_equal(json_string_value(json_object_get(hdr, "kid")),
                        sec_keys_kid(k));
    assert_string_equal(json_string_value(json_object_get(body, "iss")),
                        issuer);
    assert_string_equal(json_string_value(json_object_get(body, "aud")),
                        audience);
    assert_int_equal(sec_jwt_verify(k, cfg, token, f->now, &out, f->a),
                     AS_OK);
    assert_string_equal(out.sub, c.sub);
    assert_string_equal(out.sid, c.sid);
    assert_string_equal(out.jti, c.jti);
    assert_string_equal(out.email, c.email);
    assert_string_equal(out.role, c.role);
    assert_int_equal(out.iat, c.iat);
    assert_int_equal(out.nbf, c.nbf);
    assert_int_equal(out.exp, c.exp);
    json_decref(hdr);
    json_decref(body);
    free(token);
}

static void es256_round_trip(void **state)
{
    struct fx *f = *state;

    round_trip(f, f->kes, &f->es, "ES256");
}

static void rs256_round_trip(void **state)
{
    struct fx *f = *state;

    round_trip(f, f->krs, &f->rs, "RS256");
}

static void hs256_round_trip(void **state)
{
    struct fx *f = *state;

    round_trip(f, f->khs, &f->hs, "HS256");
}


/* The SubjectPublicKeyInfo PEM of `key`, as OpenSSL writes it (what a
 * verifier would be given), in a static buffer. */
static const char *public_pem(const struct sec_key *key)
{
    static char pem[1024];
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n;

    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, key->pkey), 1);
    n = BIO_get_mem_data(bio, &data);
    assert_true(n > 0 && (size_t)n < sizeof pem);
    memcpy(pem, data, (size_t)n);
    pem[n] = '\0';
    BIO_free(bio);
    return pem;
}
/* ES256 signatures are JOSE's raw r||s (64 bytes), so any other JOSE
 * library verifies them: checked here with OpenSSL directly. */
static void es256_signature_is_raw_r_s(void **state)
{
    struct fx *f = *state;
    struct sec_claims c = claims_at(f->now);
    char *token = sign(f->kes, &f->es, &c), *dot = strrchr(token, '.');
    const struct sec_key *key = sec_keys_find(f->kes, sec_keys_kid(f->kes));
    unsigned char raw[128], *der = NULL;
    size_t got = 0;
    BIO *bio = BIO_new_mem_buf(public_pem(key), -1);
    EVP_PKEY *pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    ECDSA_SIG *sig = ECDSA_SIG_new();
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int der_len;

    assert_int_equal(sodium_base642bin(raw, sizeof raw, dot + 1,
                                       strlen(dot + 1), NULL, &got, NULL,
                                       B64), 0);
    assert_int_equal(got, 64);
    ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL),
                   BN_bin2bn(raw + 32, 32, NULL));
    der_len = i2d_ECDSA_SIG(sig, &der);
    assert_true(der_len > 0);
    assert_non_null(pub);
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub),
                     1);
    assert_int_equal(EVP_DigestVerify(md, der, (size_t)der_len,
                                      (const unsigned char *)token,
                                      (size_t)(dot - token)), 1);
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    ECDSA_SIG_free(sig);
    EVP_PKEY_free(pub);
    BIO_free(bio);
    free(token);
}

static void sign_refuses_incomplete_claims(void **state)
{
    struct fx *f = *state;
    struct sec_claims c = claims_at(f->now);
    char *token = NULL;

    c.email = NULL;
    assert_int_not_equal(sec_jwt_sign(f->kes, &f->es, &c, &token), AS_OK);
    assert_null(token);
    c = claims_at(f->now);
    strcpy(c.sub, "not-a-uuid");
    assert_int_not_equal(sec_jwt_sign(f->kes, &f->es, &c, &token), AS_OK);
    assert_null(token);
    c = claims_at(f->now);
    c.role = "root";
    assert_int_not_equal(sec_jwt_sign(f->kes, &f->es, &c, &token), AS_OK);
    assert_null(token);
}

/* ---- tampering ---- */

static void tampered_payload_refused(void **state)
{
    struct fx *f = *state;
    struct sec_claims c = claims_at(f->now);
    char *token = sign(f->kes, &f->es, &c), *forged;
    char *p1 = strchr(token, '.') + 1, *p2 = strchr(p1, '.');
    json_t *body = segment(token, 1);
    char *text, *enc;

    json_object_set_new(body, "role", json_string("admin"));
    text = json_dumps(body, JSON_COMPACT);
    enc = b64(text, strlen(text));
    assert_true(asprintf(&forged, "%.*s.%s%s", (int)(p1 - token - 1), token,
                         enc, p2) > 0);
    expect_invalid(f, f->kes, &f->es, forged);
    expect_valid(f, f->kes, &f->es, token);
    json_decref(body);
    free(text);
    free(enc);
}

static void flipped_signature_refused(void **state)
{
    struct fx *f = *state;
    const struct sec_keys *keys[] = { f->kes, f->krs, f->khs };
    const struct cfg *cfgs[] = { &f->es, &f->rs, &f->hs };
    int i;

    for (i = 0; i < 3; i++) {
        struct sec_claims c = claims_at(f->now);
        char *token = sign(keys[i], cfgs[i], &c);
        char *sig = strrchr(token, '.') + 1;

        sig[10] = sig[10] == 'A' ? 'B' : 'A';
        expect_invalid(f, keys[i], cfgs[i], token);
    }
}

/* A signature has one spelling: its last base64url character carries
 * bits past the signature's end (4 for ES256's 64 bytes and a 2048-bit
 * RSA signature), which must be zero; with one of them set the token is
 * refused, not read as the same one. */
static void signature_spelled_one_way(void **state)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    struct fx *f = *state;
    const struct sec_keys *keys[] = { f->kes, f->krs };
    const struct cfg *cfgs[] = { &f->es, &f->rs };
    int i;

    for (i = 0; i < 2; i++) {
        struct sec_claims c = claims_at(f->now);
        char *token = sign(keys[i], cfgs[i], &c);
        char *last = token + strlen(token) - 1;
        size_t at = (size_t)(strchr(alphabet, *last) - alphabet);

        assert_int_equal(at & 0xf, 0);        /* the unused bits: zero */
        *last = alphabet[at | 1];
        expect_invalid(f, keys[i], cfgs[i], token);
    }
}

/* ES256's signature is r || s, 64 bytes: one byte more or less, or the
 * DER form OpenSSL itself writes, is refused. */
static void es256_signature_length_checked(void **state)
{
    struct fx *f = *state;
    struct sec_claims c = claims_at(f->now);
    char *token = sign(f->kes, &f->es, &c);
    char *dot = strrchr(token, '.') + 1, *bad;
    unsigned char sig[80];
    size_t got = 0, n;
    char enc[128];

    assert_int_equal(sodium_base642bin(sig, sizeof sig, dot, strlen(dot),
                                       NULL, &got, NULL, B64), 0);
    assert_int_equal(got, 64);
    for (n = 63; n <= 65; n += 2) {
        sig[64] = 0;
        sodium_bin2base64(enc, sizeof enc, sig, n, B64);
        bad = malloc((size_t)(dot - token) + strlen(enc) + 1);
        memcpy(bad, token, (size_t)(dot - token));
        strcpy(bad + (dot - token), enc);
        expect_invalid(f, f->kes, &f->es, bad);
    }
    free(token);
}

/* ECDSA is malleable: (r, n - s) is a valid signature wherever (r, s)
 * is. Every signature is written with the low s, and the twin with the
 * high s, which OpenSSL itself verifies, is refused: one token, one
 * spelling. n comes from OpenSSL's curve, not from the code under test. */
static void es256_signature_has_low_s(void **state)
{
    struct fx *f = *state;
    const struct sec_key *key = sec_keys_find(f->kes, sec_keys_kid(f->kes));
    EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    const BIGNUM *order = EC_GROUP_get0_order(group);
    BIGNUM *half = BN_new(), *s = BN_new(), *twin = BN_new();
    BIO *bio = BIO_new_mem_buf(public_pem(key), -1);
    EVP_PKEY *pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    int i;

    assert_non_null(order);
    assert_non_null(pub);
    assert_int_equal(BN_rshift1(half, order), 1);
    for (i = 0; i < 64; i++) {      /* a high s half the time, unchecked */
        struct sec_claims c = claims_at(f->now);
        char *token = sign(f->kes, &f->es, &c), *dot = strrchr(token, '.');
        unsigned char raw[128], *der = NULL;
        size_t got = 0, head = (size_t)(dot + 1 - token);
        ECDSA_SIG *sig = ECDSA_SIG_new();
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        char enc[128], *forged;
        int der_len;

        assert_int_equal(sodium_base642bin(raw, sizeof raw, dot + 1,
                                           strlen(dot + 1), NULL, &got,
                                           NULL, B64), 0);
        assert_int_equal(got, 64);
        assert_non_null(BN_bin2bn(raw + 32, 32, s));
        assert_true(BN_cmp(s, half) <= 0);
        assert_int_equal(BN_sub(twin, order, s), 1);
        assert_int_equal(BN_bn2binpad(twin, raw + 32, 32), 32);
        /* The twin is a good ECDSA signature of the same bytes... */
        ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL),
                       BN_bin2bn(raw + 32, 32, NULL));
        der_len = i2d_ECDSA_SIG(sig, &der);
        assert_true(der_len > 0);
        assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
                                              pub), 1);
        assert_int_equal(EVP_DigestVerify(md, der, (size_t)der_len,
                                          (const unsigned char *)token,
                                          head - 1), 1);
        /* ...and still not a second spelling of the token. */
        sodium_bin2base64(enc, sizeof enc, raw, 64, B64);
        forged = malloc(head + strlen(enc) + 1);
        memcpy(forged, token, head);
        strcpy(forged + head, enc);
        expect_invalid(f, f->kes, &f->es, forged);
        expect_valid(f, f->kes, &f->es, token);
        OPENSSL_free(der);
        EVP_MD_CTX_free(md);
        ECDSA_SIG_free(sig);
    }
    EVP_PKEY_free(pub);
    BIO_free(bio);
    BN_free(half);
    BN_free(s);
    BN_free(twin);
    EC_GROUP_free(group);
}

/* ---- time claims ---- */

static void expiry_with_leeway(void **state)
{
    struct fx *f = *state;
    struct sec_claims c = claims_at(f->now - 1000);

    c.exp = f->now - SEC_LEEWAY_S - 1;
    expect_invalid(f, f->kes, &f->es, sign(f->kes, &f->es, &c));
    c.exp = f->now - SEC_LEEWAY_S;
    expect_invalid(f, f->kes, &f->es, sign(f->kes, &f->es, &c));
    c.exp = f->now - SEC_LEEWAY_S + 1;
    expect_valid(f, f->kes, &f->es, sign(f->kes, &f->es, &c));
}

static void not_before_with_leeway(void **state)
{
    struct fx *f = *state;
    struct sec_claims c = claims_at(f->now);

    c.nbf = f->now + SEC_LEEWAY_S + 1;
    expect_invalid(f, f->kes, &f->es, sign(f->kes, &f->es, &c));
    c.nbf = f->now + SEC_LEEWAY_S;
    expect_valid(f, f->kes, &f->es, sign(f->kes, &f->es, &c));
    c.nbf = f->now;
    c.iat = f->now + SEC_LEEWAY_S + 1;      /* issued in the future */
    expect_invalid(f, f->kes, &f->es, sign(f->kes, &f->es, &c));
}

/* ---- issuer and audience ---- */

static void wrong_issuer_refused(void **state)
{
    struct fx *f = *state;
    struct sec_claims c = claims_at(f->now);
    struct cfg elsewhere = f->es;

    elsewhere.jwt_issuer = other_name;
    expect_invalid(f, f->kes, &elsewhere, sign(f->kes, &f->es, &c));
}

static void wrong_audience_refused(void **state)
{
    struct fx *f = *state;
    struct sec_claims c = claims_at(f->now);
    struct cfg elsewhere = f->es;

    elsewhere.jwt_audience = other_name;
    expect_invalid(f, f->kes, &elsewhere, sign(f->kes, &f->es, &c));
}

static void audience_array(void **state)
{
    struct fx *f = *state;
    json_t *p = full_payload(f->now);

    json_object_set_new(p, "aud", json_pack("[s,s]", "x", audience));
    expect_valid(f, f->khs, &f->hs, craft_payload(f, p));
    p = full_payload(f->now);
    json_object_set_new(p, "aud", json_pack("[s,s]", "x", "y"));
    expect_invalid(f, f->khs, &f->hs, craft_payload(f, p));
    p = full_payload(f->now);
    json_object_set_new(p, "aud", json_pack("[s,i]", audience, 7));
    expect_invalid(f, f->khs, &f->hs, craft_payload(f, p));
    p = full_payload(f->now);
    json_object_set_new(p, "aud", json_array());
    expect_invalid(f, f->khs, &f->hs, craft_payload(f, p));
}

/* ---- algorithm and key confusion ---- */

static void alg_none_refused(void **state)
{
    struct fx *f = *state;
    json_t *p = full_payload(f->now);
    char *body = json_dumps(p, JSON_COMPACT), *h_text = NULL;
    char *h, *b = b64(body, strlen(body)), *token = NULL;

    assert_true(asprintf(&h_text, "{\"alg\":\"none\",\"kid\":\"%s\"}",
                         sec_keys_kid(f->kes)) > 0);
    h = b64(h_text, strlen(h_text));
    assert_true(asprintf(&token, "%s.%s.", h, b) > 0);
    expect_invalid(f, f->kes, &f->es, token);
    assert_true(asprintf(&token, "%s.%s.AAAA", h, b) > 0);
    expect_invalid(f, f->kes, &f->es, token);
    assert_true(asprintf(&token, "%s.%s", h, b) > 0);
    expect_invalid(f, f->kes, &f->es, token);
    free(h_text);
    free(h);
    assert_true(asprintf(&h_text, "{\"alg\":\"none\",\"kid\":\"%s\"}",
                         sec_keys_kid(f->khs)) > 0);
    h = b64(h_text, strlen(h_text));
    assert_true(asprintf(&token, "%s.%s.", h, b) > 0);
    expect_invalid(f, f->khs, &f->hs, token);
    free(h_text);
    free(h);
    free(b);
    free(body);
    json_decref(p);
}

/* The classic confusion: an HS256 token whose HMAC key is the verifier's
 * public PEM. Our header check refuses it before libjwt sees it. */
static void hs256_with_public_pem_refused(void **state)
{
    struct fx *f = *state;
    const struct sec_key *key = sec_keys_find(f->kes, sec_keys_kid(f->kes));
    json_t *p = full_payload(f->now);
    char *body = json_dumps(p, JSON_COMPACT), *h = NULL, *token;

    assert_true(asprintf(&h, "{\"alg\":\"HS256\",\"typ\":\"JWT\","
                         "\"kid\":\"%s\"}", sec_keys_kid(f->kes)) > 0);
    token = craft_hs256(h, body, public_pem(key));
    expect_invalid(f, f->kes, &f->es, token);
    free(h);
    free(body);
    json_decref(p);
}

static void other_algorithms_refused(void **state)
{
    struct fx *f = *state;
    struct sec_claims c = claims_at(f->now);

    expect_invalid(f, f->kes, &f->es, sign(f->krs, &f->rs, &c));
    expect_invalid(f, f->krs, &f->rs, sign(f->kes, &f->es, &c));
    expect_invalid(f, f->khs, &f->hs, sign(f->kes, &f->es, &c));
    expect_invalid(f, f->kes, &f->es, sign(f->khs, &f->hs, &c));
}

static void unknown_kid_refused(void **state)
{
    struct fx *f = *state;
    struct sec_claims c = claims_at(f->now);
    json_t *p = full_payload(f->now);
    char *body = json_dumps(p, JSON_COMPACT);

    expect_invalid(f, f->kes, &f->es, sign(f->kother, &f->other, &c));
    expect_valid(f, f->kother, &f->other, sign(f->kother, &f->other, &c));
    expect_invalid(f, f->khs, &f->hs,
                   craft_hs256("{\"alg\":\"HS256\",\"kid\":\"nope\"}", body,
                               secret));
    expect_invalid(f, f->khs, &f->hs,
                   craft_hs256("{\"alg\":\"HS256\"}", body, secret));
    expect_invalid(f, f->khs, &f->hs,
                   craft_hs256("{\"alg\":\"HS256\",\"kid\":7}", body,
                               secret));
    free(body);
    json_decref(p);
}

static void header_oddities_refused(void **state)
{
    struct fx *f = *state;
    json_t *p = full_payload(f->now);
    char *body = json_dumps(p, JSON_COMPACT), *h = NULL;
    const char *kid = sec_keys_kid(f->khs);

    assert_true(asprintf(&h, "{\"alg\":\"HS256\",\"kid\":\"%s\"}", kid) > 0);
    expect_valid(f, f->khs, &f->hs, craft_hs256(h, body, secret));
    free(h);
    assert_true(asprintf(&h, "{\"alg\":\"HS256\",\"kid\":\"%s\","
                         "\"crit\":[\"exp\"]}", kid) > 0);
    expect_invalid(f, f->khs, &f->hs, craft_hs256(h, body, secret));
    free(h);
    assert_true(asprintf(&h, "{\"alg\":\"none\",\"alg\":\"HS256\","
                         "\"kid\":\"%s\"}", kid) > 0);
    expect_invalid(f, f->khs, &f->hs, craft_hs256(h, body, secret));
    free(h);
    assert_true(asprintf(&h, "[\"HS256\",\"%s\"]", kid) > 0);
    expect_invalid(f, f->khs, &f->hs, craft_hs256(h, body, secret));
    free(h);
    free(body);
    json_decref(p);
}

/* ---- claims ---- */

static void every_claim_required(void **state)
{
    static const char *const names[] = { "iss", "aud", "sub", "iat", "nbf",
                                         "exp", "jti", "sid", "role",
                                         "email" };
    struct fx *f = *state;
    size_t i;

    expect_valid(f, f->khs, &f->hs, craft_payload(f, full_payload(f->now)));
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        json_t *p = full_payload(f->now);

        assert_int_equal(json_object_del(p, names[i]), 0);
        expect_invalid(f, f->khs, &f->hs, craft_payload(f, p));
    }
}

static void claim_types_checked(void **state)
{
    struct fx *f = *state;
    struct { const char *name; json_t *value; } bad[] = {
        { "exp", json_string("9999999999") },
        { "exp", json_real(9999999999.0) },
        { "nbf", json_true() },
        { "iat", json_null() },
        { "sub", json_integer(42) },
        { "sub", json_string("not-a-uuid") },
        { "sid", json_string("") },
        { "jti", json_array() },
        { "role", json_string("root") },
        { "role", json_integer(1) },
        { "email", json_string("") },
        { "email", json_object() },
        { "iss", json_null() },
        { "aud", json_integer(7) },
    };
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *p = full_payload(f->now);

        json_object_set_new(p, bad[i].name, bad[i].value);
        expect_invalid(f, f->khs, &f->hs, craft_payload(f, p));
    }
}

static void duplicate_claims_refused(void **state)
{
    struct fx *f = *state;
    json_t *p = full_payload(f->now);
    char *body = json_dumps(p, JSON_COMPACT), *dup = NULL, *h = hs_header(f);

    body[strlen(body) - 1] = '\0';             /* drop the closing brace */
    assert_true(asprintf(&dup, "%s,\"role\":\"admin\"}", body) > 0);
    expect_invalid(f, f->khs, &f->hs, craft_hs256(h, dup, secret));
    free(dup);
    free(body);
    free(h);
    json_decref(p);
}

/* ---- shape ---- */

static void garbage_refused(void **state)
{
    static const char *const junk[] = {
        "", ".", "..", "...", "a", "a.b", "a.b.c", "a.b.c.d", "a..c",
        ".b.c", "a.b.", "eyJ.eyJ.sig", "e30.e30.e30", "====.====.====",
        "a b.c d.e f", "a+b.c/d.e=f", "\xff\xfe.\x01\x02.\x80",
        "eyJhbGciOiJFUzI1NiJ9.e30.AAAA",
        "bnVsbA.bnVsbA.AAAA",                /* "null" segments */
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
    };
    struct fx *f = *state;
    struct sec_claims out;
    size_t i;

    for (i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        assert_int_equal(verify(f, f->kes, &f->es, junk[i]),
                         AS_ERR_INVALID_TOKEN);
        assert_int_equal(verify(f, f->khs, &f->hs, junk[i]),
                         AS_ERR_INVALID_TOKEN);
    }
    assert_int_equal(sec_jwt_verify(f->kes, &f->es, NULL, f->now, &out,
                                    f->a), AS_ERR_INVALID_TOKEN);
}

/* A token just under the limit verifies; one just over is refused
 * unparsed, signature and claims being otherwise fine. */
static void too_long_refused(void **state)
{
    struct fx *f = *state;
    char email[SEC_MAX_JWT_BYTES];
    size_t pad;
    bool near_limit_ok = false;

    for (pad = 5500; pad < 6500; pad += 1) {
        json_t *p = full_payload(f->now);
        char *token;
        size_t len;

        memset(email, 'a', pad);
        strcpy(email + pad, "@example.com");
        json_object_set_new(p, "email", json_string(email));
        token = craft_payload(f, p);
        len = strlen(token);
        if (len <= SEC_MAX_JWT_BYTES && len > SEC_MAX_JWT_BYTES - 4) {
            expect_valid(f, f->khs, &f->hs, token);
            near_limit_ok = true;
            continue;
        }
        if (len > SEC_MAX_JWT_BYTES) {
            expect_invalid(f, f->khs, &f->hs, token);
            assert_true(near_limit_ok);
            return;
        }
        free(token);
    }
    fail_msg("never crossed the limit");
}

/* The signing key is read once and kept: signing with one key set, then
 * another, then the first again signs each token with its own key. */
static void signing_keys_alternate(void **state)
{
    struct fx *f = *state;
    struct sec_claims c = claims_at(f->now);
    const struct sec_keys *sets[] = { f->kes, f->kother, f->krs, f->kes,
                                      f->kother };
    const struct cfg *cfgs[] = { &f->es, &f->other, &f->rs, &f->es,
                                 &f->other };
    size_t i, j;

    for (i = 0; i < 5; i++) {
        char *token = sign(sets[i], cfgs[i], &c);

        for (j = 0; j < 5; j++)
            assert_int_equal(verify(f, sets[j], cfgs[j], token) == AS_OK,
                             sets[j] == sets[i]);
        free(token);
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, arena_setup, arena_teardown)
    const struct CMUnitTest tests[] = {
        T(es256_round_trip),
        T(rs256_round_trip),
        T(hs256_round_trip),
        T(es256_signature_is_raw_r_s),
        T(signing_keys_alternate),
        T(sign_refuses_incomplete_claims),
        T(tampered_payload_refused),
        T(flipped_signature_refused),
        T(signature_spelled_one_way),
        T(es256_signature_length_checked),
    T(es256_signature_has_low_s),
        T(expiry_with_leeway),
        T(not_before_with_leeway),
        T(wrong_issuer_refused),
        T(wrong_audience_refused),
        T(audience_array),
        T(alg_none_refused),
        T(hs256_with_public_pem_refused),
        T(other_algorithms_refused),
        T(unknown_kid_refused),
        T(header_oddities_refused),
        T(every_claim_required),
        T(claim_types_checked),
        T(duplicate_claims_refused),
        T(garbage_refused),
        T(too_long_refused),
    };
#undef T

    return cmocka_run_group_tests(tests, setup, teardown);
}
