/* fuzz_jwt.c: access-token verification (sec_jwt_verify) under ES256 and
 * HS256. The first input byte picks a mode:
 *   0  the rest is a token, verified with both key sets;
 *   1  the rest is "header JSON" NUL "payload JSON": the harness encodes
 *      and signs it with the HS256 secret, so that the claim checks behind
 *      the signature are reached; it must never verify under ES256;
 *   2  the same, signed with the ES256 key; it must never verify under
 *      HS256.
 * Whatever verifies must carry the configured "alg" and well-formed
 * claims. The keys are fixed (so that seeds can name their kid) and are
 * loaded once from a temporary folder that is removed right after. */
#include <jansson.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "cfg.h"
#include "sec.h"
#include "uuid.h"

#define NOW_S 1780000000          /* 2026-05-28T20:26:40Z, for every run */
#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A P-256 key made for this harness only; it signs nothing real. */
static const char es_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgQeVwucKuLxmOqZ9T\n"
    "vRhoWyR7zRagiPo9hOus6dcYoN2hRANCAAT7+ZXArczYuGqZWrceLizg9bJj6bc3\n"
    "VhPuhRfOqwvFGOmDar2Z5IJUmDmuVnfAhCyu88uyAHINjwhp61YAsiKD\n"
    "-----END PRIVATE KEY-----\n";
static char hs_secret[] = "fuzz-only HS256 secret, 32 bytes or more";
static char issuer[] = "auth-serve", audience[] = "auth-serve";

static struct cfg es_cfg, hs_cfg;
static struct sec_keys *es_keys, *hs_keys;
static EVP_PKEY *es_pkey;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_jwt: %s\n", what);
    abort();
}

/* Writes the ES256 key into a fresh folder, loads both key sets, and
 * removes the folder again. */
static void load_keys(void)
{
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX], path[PATH_MAX + 16], why[256];
    FILE *f;
    BIO *bio;

    if (snprintf(dir, sizeof dir, "%s/fuzz-jwt-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp") >= (int)sizeof dir ||
        !mkdtemp(dir))
        die("cannot make a temporary folder");
    snprintf(path, sizeof path, "%s/es256.pem", dir);
    f = fopen(path, "wx");
    if (!f || fputs(es_pem, f) == EOF || fclose(f) != 0)
        die("cannot write the key file");
    es_cfg.jwt_alg = CFG_ALG_ES256;
    es_cfg.data_dir = dir;
    es_cfg.jwt_key_file = path;
    hs_cfg.jwt_alg = CFG_ALG_HS256;
    hs_cfg.jwt_secret = hs_secret;
    es_cfg.jwt_issuer = hs_cfg.jwt_issuer = issuer;
    es_cfg.jwt_audience = hs_cfg.jwt_audience = audience;
    es_cfg.access_ttl = hs_cfg.access_ttl = 900;
    if (sec_keys_load(&es_cfg, &es_keys, why, sizeof why) != AS_OK ||
        sec_keys_load(&hs_cfg, &hs_keys, why, sizeof why) != AS_OK)
        die(why);
    unlink(path);
    rmdir(dir);
    es_cfg.jwt_key_file = NULL;           /* it pointed into this frame */
    es_cfg.data_dir = NULL;
    bio = BIO_new_mem_buf(es_pem, -1);
    es_pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!es_pkey)
        die("cannot parse the ES256 key");
}

static void free_keys(void)
{
    sec_keys_free(es_keys);
    sec_keys_free(hs_keys);
    EVP_PKEY_free(es_pkey);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        die("sodium_init");
    load_keys();
    atexit(free_keys);
    return 0;
}

/* HMAC-SHA-256 of `msg` with the HS256 secret. */
static size_t sign_hs(const char *msg, size_t n, unsigned char sig[64])
{
    crypto_auth_hmacsha256_state st;

    crypto_auth_hmacsha256_init(&st, (const unsigned char *)hs_secret,
                                strlen(hs_secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, n);
    crypto_auth_hmacsha256_final(&st, sig);
    return 32;
}

/* ECDSA P-256 with SHA-256 of `msg`, as JWS wants it: r || s. */
static size_t sign_es(const char *msg, size_t n, unsigned char sig[64])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[80];
    const unsigned char *p = der;
    size_t der_len = sizeof der, out = 0;
    ECDSA_SIG *es = NULL;

    if (md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL,
                                 es_pkey) == 1 &&
        EVP_DigestSign(md, der, &der_len, (const unsigned char *)msg,
                       n) == 1 &&
        der_len <= LONG_MAX &&
        (es = d2i_ECDSA_SIG(NULL, &p, (long)der_len)) != NULL &&
        BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) == 32 &&
        BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) == 32)
        out = 64;
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    if (out == 0)
        die("ES256 signing failed");
    return out;
}

static char *b64_append(char *dst, const void *src, size_t n)
{
    sodium_bin2base64(dst, sodium_base64_ENCODED_LEN(n, B64), src, n, B64);
    return dst + strlen(dst);
}

/* "b64(header).b64(payload).b64(sig)"; caller frees. */
static char *make_token(const uint8_t *data, size_t size, bool es)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t hn = nul ? (size_t)(nul - data) : size;
    size_t pn = nul ? size - hn - 1 : 0;
    size_t cap = sodium_base64_ENCODED_LEN(hn, B64) +
                 sodium_base64_ENCODED_LEN(pn, B64) +
                 sodium_base64_ENCODED_LEN(64, B64) + 2;
    char *tok = malloc(cap), *end;
    unsigned char sig[64];
    size_t sn;

    if (!tok)
        die("out of memory");
    end = b64_append(tok, data, hn);
    *end++ = '.';
    end = b64_append(end, nul ? nul + 1 : data, pn);
    sn = es ? sign_es(tok, (size_t)(end - tok), sig)
            : sign_hs(tok, (size_t)(end - tok), sig);
    *end++ = '.';
    b64_append(end, sig, sn);
    return tok;
}

/* A token that verified: the alg it names and every claim it carries. */
static void check_ok(const char *tok, const struct sec_claims *c,
                     const char *alg)
{
    size_t hlen = strcspn(tok, ".");
    unsigned char hdr[8192];
    size_t got = 0;
    json_t *h;

    if (sodium_base642bin(hdr, sizeof hdr, tok, hlen, NULL, &got, NULL,
                          B64) != 0)
        die("a verified token has a bad header encoding");
    h = json_loadb((const char *)hdr, got, 0, NULL);
    if (!h || strcmp(json_string_value(json_object_get(h, "alg")) ?
                     json_string_value(json_object_get(h, "alg")) : "",
                     alg) != 0)
        die("a token verified under another alg");
    json_decref(h);
    if (!uuid_valid(c->sub) || !uuid_valid(c->sid) || !uuid_valid(c->jti) ||
        !c->email || !c->email[0] || !c->role ||
        (strcmp(c->role, "user") != 0 && strcmp(c->role, "admin") != 0) ||
        c->exp <= NOW_S - SEC_LEEWAY_S || c->nbf > NOW_S + SEC_LEEWAY_S)
        die("a verified token has bad claims");
}

/* Verifies `tok` under `k`; `must_fail` for a token signed otherwise. */
static void verify(const struct sec_keys *k, const struct cfg *cfg,
                   const char *tok, const char *alg, bool must_fail)
{
    struct arena *a = arena_new();
    struct sec_claims c;
    enum as_err err;

    if (!a)
        die("out of memory");
    err = sec_jwt_verify(k, cfg, tok, NOW_S, &c, a);
    if (err == AS_OK && must_fail)
        die("a token signed with another key verified");
    if (err == AS_OK)
        check_ok(tok, &c, alg);
    else if (err != AS_ERR_INVALID_TOKEN)
        die("an error other than invalid_token");
    arena_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *tok;
    unsigned mode;

    if (size == 0)
        return 0;
    mode = data[0] % 3u;
    data++;
    size--;
    if (mode == 0) {
        tok = malloc(size + 1);
        if (!tok)
            die("out of memory");
        memcpy(tok, data, size);
        tok[size] = '\0';
    } else {
        tok = make_token(data, size, mode == 2);
    }
    verify(es_keys, &es_cfg, tok, "ES256", mode == 1);
    verify(hs_keys, &hs_cfg, tok, "HS256", mode == 2);
    free(tok);
    return 0;
}
