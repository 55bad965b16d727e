/* jwt.c: access tokens. libjwt signs and checks HS256 (opened with the
 * keys: jwtlib.h); ES256 and RS256 are signed and checked here, with the
 * key read once. Everything libjwt 1.10 leaves open (shape, size,
 * algorithm pinning, kid lookup, every claim) is checked here before or
 * after it. */
#include "sec/sec_int.h"
#include "sec/jwtlib.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "role.h"

struct segments {                /* header.payload.signature */
    const char *p[3];
    size_t n[3];
};

/* ---- amr (RFC 8176) ---- */

static const struct { unsigned bit; const char *name; } amr_names[] = {
    { SEC_AMR_PWD, "pwd" },
    { SEC_AMR_OTP, "otp" },
    { SEC_AMR_HWK, "hwk" },
    { SEC_AMR_MFA, "mfa" },
};
#define N_AMR (sizeof amr_names / sizeof amr_names[0])

unsigned sec_amr_parse(const char *text)
{
    unsigned bits = 0;
    size_t i, n;

    while (text && *text) {
        n = strcspn(text, " ");
        for (i = 0; i < N_AMR; i++)
            if (strlen(amr_names[i].name) == n &&
                strncmp(text, amr_names[i].name, n) == 0)
                bits |= amr_names[i].bit;
        text += n;
        text += strspn(text, " ");
    }
    return bits;
}

json_t *sec_amr_json(unsigned amr)
{
    json_t *arr = json_array();
    size_t i;

    if (!amr)
        amr = SEC_AMR_PWD;
    for (i = 0; arr && i < N_AMR; i++)
        if ((amr & amr_names[i].bit) &&
            json_array_append_new(arr, json_string(amr_names[i].name)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    return arr;
}

/* The amr bits of an "amr" claim (absent: 0). */
static unsigned amr_claim(const json_t *p)
{
    const json_t *arr = json_object_get(p, "amr");
    unsigned bits = 0;
    size_t i, j;

    for (i = 0; i < json_array_size(arr) && i < 8; i++) {
        const char *s = json_string_value(json_array_get(arr, i));

        for (j = 0; s && j < N_AMR; j++)
            if (strcmp(s, amr_names[j].name) == 0)
                bits |= amr_names[j].bit;
    }
    return bits;
}

/* ---- signing ---- */

/* Adds the "amr" array (libjwt 1.10 adds arrays only from JSON text). */
static int add_amr(jwt_t *jwt, unsigned amr)
{
    json_t *doc = json_pack("{s:o}", "amr", sec_amr_json(amr));
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    int rc = text ? jwt_add_grants_json(jwt, text) : 1;

    free(text);
    json_decref(doc);
    return rc;
}

static int add_claims(jwt_t *jwt, const struct cfg *cfg,
                      const struct sec_claims *c)
{
    int rc = 0;

    rc |= jwt_add_grant(jwt, "iss", cfg->jwt_issuer);
    rc |= jwt_add_grant(jwt, "aud", cfg->jwt_audience);
    rc |= jwt_add_grant(jwt, "sub", c->sub);
    rc |= jwt_add_grant(jwt, "sid", c->sid);
    rc |= jwt_add_grant(jwt, "jti", c->jti);
    rc |= jwt_add_grant(jwt, "role", c->role);
    rc |= jwt_add_grant(jwt, "email", c->email);
    rc |= jwt_add_grant_int(jwt, "iat", (long)c->iat);
    rc |= jwt_add_grant_int(jwt, "nbf", (long)c->nbf);
    rc |= jwt_add_grant_int(jwt, "exp", (long)c->exp);
    rc |= add_amr(jwt, c->amr);
    return rc;
}

static bool sign_inputs_ok(const struct sec_keys *k, const struct cfg *cfg,
                           const struct sec_claims *c)
{
    enum role role;

    return k && cfg && c && k->sign && k->sign_len <= INT_MAX &&
           k->signer < k->n_keys && cfg->jwt_issuer && cfg->jwt_audience &&
           c->email && c->role &&
           role_parse(c->role, &role) &&
           uuid_valid(c->sub) &&
           uuid_valid(c->sid) && uuid_valid(c->jti);
}

/* ---- ES256 and RS256 without libjwt ----
 * libjwt 1.10 reads the private key's PEM again for every signature, and
 * with OpenSSL 3 that costs several times the signature itself (README.md,
 * "Performance"). The key is read once per signing key here and the
 * token assembled the way libjwt assembles it: compact JSON with sorted
 * keys, base64url without padding, "typ" "JWT". */

static pthread_mutex_t pkey_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    unsigned char *pem;             /* a copy, wiped when replaced */
    size_t len;
    EVP_PKEY *pkey;
} pkey_cache;

/* The parsed signing key of `k` (a reference for the caller to free with
 * EVP_PKEY_free), or NULL. */
static EVP_PKEY *signing_pkey(const struct sec_keys *k)
{
    EVP_PKEY *pk = NULL;
    unsigned char *copy = NULL;

    pthread_mutex_lock(&pkey_mu);
    if (pkey_cache.pkey && pkey_cache.len == k->sign_len &&
        memcmp(pkey_cache.pem, k->sign, k->sign_len) == 0)
        goto take;
    copy = malloc(k->sign_len ? k->sign_len : 1);
    pk = copy ? sec_pkey_parse(k->sign, k->sign_len, k->alg) : NULL;
    if (!pk)
        goto out;
    memcpy(copy, k->sign, k->sign_len);
    if (pkey_cache.pem)
        sodium_memzero(pkey_cache.pem, pkey_cache.len);
    free(pkey_cache.pem);
    EVP_PKEY_free(pkey_cache.pkey);
    pkey_cache.pem = copy;
    pkey_cache.len = k->sign_len;
    pkey_cache.pkey = pk;
    copy = NULL;
take:
    pk = EVP_PKEY_up_ref(pkey_cache.pkey) == 1 ? pkey_cache.pkey : NULL;
out:
    pthread_mutex_unlock(&pkey_mu);
    free(copy);
    return pk;
}

#define B64URL_LEN(n) \
    sodium_base64_ENCODED_LEN((n), sodium_base64_VARIANT_URLSAFE_NO_PADDING)

/* Appends the base64url form of `n` bytes to `dst` (room checked by the
 * caller); returns the characters written. */
static size_t b64url(char *dst, size_t room, const void *src, size_t n)
{
    return sec_b64url_encode(src, n, dst, room) ? strlen(dst) : 0;
}

/* ECDSA is malleable: with (r, s) valid, so is (r, n - s), a second
 * spelling of the same token. ES256 signatures are written with the low
 * s (s <= n/2, the rule of Bitcoin's BIP 62 and libsecp256k1) and only
 * that one is accepted, so a token keeps one spelling. n is P-256's group
 * order (SEC 2, s2.4.2), big-endian like the JWS bytes, so memcmp orders
 * them as numbers. */
static const unsigned char p256_n[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
    0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51
};
static const unsigned char p256_half_n[32] = {          /* n >> 1 */
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00,
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42,
    0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8
};

static bool s_is_high(const unsigned char s[32])
{
    return memcmp(s, p256_half_n, 32) > 0;
}

static void s_negate(unsigned char s[32])               /* s = n - s */
{
    int i, borrow = 0;

    for (i = 31; i >= 0; i--) {
        int d = p256_n[i] - s[i] - borrow;

        borrow = d < 0;
        s[i] = (unsigned char)(d & 0xff);
    }
}

/* The JWS signature of `in` with `pk`: ES256 as the 64 bytes r || s
 * (RFC 7518 s3.4) with the low s, RS256 as PKCS #1 v1.5. Its length,
 * 0 on failure. */
static size_t jws_sign(EVP_PKEY *pk, enum cfg_alg alg, const char *in,
                       size_t n, unsigned char *sig, size_t room)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[160];
    const unsigned char *p = der;
    size_t len = sizeof der, out = 0;
    ECDSA_SIG *es = NULL;

    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) != 1)
        goto done;
    if (alg == CFG_ALG_RS256) {
        len = room;
        if (EVP_DigestSign(md, sig, &len, (const unsigned char *)in, n) == 1)
            out = len;
        goto done;
    }
    if (room < 64 ||
        EVP_DigestSign(md, der, &len, (const unsigned char *)in, n) != 1)
        goto done;
    es = d2i_ECDSA_SIG(NULL, &p, (long)len);
    if (es && BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) == 32 &&
        BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) == 32) {
        if (s_is_high(sig + 32))
            s_negate(sig + 32);
        out = 64;
    }
done:
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    return out;
}

static json_t *claims_json(const struct cfg *cfg, const struct sec_claims *c)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, "
                     "s:o}",
                     "iss", cfg->jwt_issuer, "aud", cfg->jwt_audience,
                     "sub", c->sub, "sid", c->sid, "jti", c->jti,
                     "role", c->role, "email", c->email,
                     "iat", (json_int_t)c->iat, "nbf", (json_int_t)c->nbf,
                     "exp", (json_int_t)c->exp,
                     "amr", sec_amr_json(c->amr));
}

/* header.payload.signature of the claims, signed with the cached key. */
static enum as_err sign_pkey(const struct sec_keys *k, const struct cfg *cfg,
                             const struct sec_claims *c, char **out)
{
    json_t *head = json_pack("{s:s, s:s, s:s}", "alg",
                             sec_alg_name(k->alg), "kid",
                             k->keys[k->signer].kid, "typ", "JWT");
    json_t *body = claims_json(cfg, c);
    size_t flags = JSON_COMPACT | JSON_SORT_KEYS, hn, bn, room, n, sn;
    char *h = head ? json_dumps(head, flags) : NULL;
    char *b = body ? json_dumps(body, flags) : NULL;
    char *token = NULL;
    unsigned char sig[1024];                /* RSA up to 8192 bits */
    EVP_PKEY *pk = NULL;
    enum as_err err = AS_ERR_NOMEM;

    if (!h || !b)
        goto out;
    hn = strlen(h);
    bn = strlen(b);
    room = B64URL_LEN(hn) + B64URL_LEN(bn) + B64URL_LEN(sizeof sig) + 2;
    token = malloc(room);
    if (!token)
        goto out;
    err = AS_ERR_INTERNAL;
    n = b64url(token, room, h, hn);
    token[n++] = '.';
    n += b64url(token + n, room - n, b, bn);
    pk = signing_pkey(k);
    sn = pk ? jws_sign(pk, k->alg, token, n, sig, sizeof sig) : 0;
    if (sn == 0)
        goto out;
    token[n++] = '.';
    b64url(token + n, room - n, sig, sn);
    *out = token;
    token = NULL;
    err = AS_OK;
out:
    EVP_PKEY_free(pk);
    free(token);
    free(h);
    free(b);
    json_decref(head);
    json_decref(body);
    return err;
}

enum as_err sec_jwt_sign(const struct sec_keys *k, const struct cfg *cfg,
                         const struct sec_claims *c, char **out)
{
    jwt_t *jwt = NULL;
    enum as_err err = AS_ERR_INTERNAL;
    const char *why;
    char *token;

    *out = NULL;
    if (!sign_inputs_ok(k, cfg, c))
        return AS_ERR_INTERNAL;
    if (k->alg == CFG_ALG_ES256 || k->alg == CFG_ALG_RS256)
        return sign_pkey(k, cfg, c, out);
    if (!jwtlib_load(&why))
        return AS_ERR_INTERNAL;
    if (jwt_new(&jwt) != 0)
        return AS_ERR_NOMEM;
    if (jwt_set_alg(jwt, k->jwt_alg, k->sign, (int)k->sign_len) != 0 ||
        jwt_add_header(jwt, "kid", k->keys[k->signer].kid) != 0 ||
        add_claims(jwt, cfg, c) != 0)
        goto out;
    token = jwt_encode_str(jwt);
    if (!token)
        goto out;
    *out = token;
    err = AS_OK;
out:
    jwt_free(jwt);                       /* libjwt wipes its key copy */
    return err;
}

/* ---- verification ---- */

/* Three non-empty base64url segments, nothing else, bounded length. */
static bool split(const char *token, struct segments *s)
{
    size_t len = strnlen(token, SEC_MAX_JWT_BYTES + 1);
    const char *start = token, *end = token + len;
    int i;

    if (len > SEC_MAX_JWT_BYTES)
        return false;
    for (i = 0; i < 3; i++) {
        const char *stop = i < 2 ? memchr(start, '.', (size_t)(end - start))
                                 : end;
        if (!stop)
            return false;
        s->p[i] = start;
        s->n[i] = (size_t)(stop - start);
        if (s->n[i] == 0 || !sec_b64url_alphabet(start, s->n[i]))
            return false;                /* also refuses a fourth '.' */
        start = stop + 1;
    }
    return true;
}

/* The JSON object a header or payload segment encodes, or NULL. Duplicate
 * names are refused: two "alg" or two "sub" must not mean two things. */
static json_t *segment_json(const char *p, size_t n)
{
    unsigned char buf[SEC_MAX_JWT_BYTES];
    size_t got = 0;
    json_t *j;

    if (!sec_b64url_decode(p, n, buf, sizeof buf, &got))
        return NULL;
    j = json_loadb((const char *)buf, got, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* The key the header names, if the header also names the configured alg
 * and asks for no extension. */
static const struct sec_key *header_key(const struct sec_keys *k,
                                        const char *p, size_t n)
{
    json_t *hdr = segment_json(p, n);
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    const char *kid = json_string_value(json_object_get(hdr, "kid"));
    const struct sec_key *key = NULL;

    if (alg && strcmp(alg, sec_alg_name(k->alg)) == 0 &&
        !json_object_get(hdr, "crit"))
        key = sec_keys_find(k, kid);
    json_decref(hdr);
    return key;
}

/* ES256 and RS256 are checked here with the key read at load: libjwt
 * 1.10 reads the public key's PEM again for every token, and with OpenSSL
 * 3 that cost about three times all the rest of the check, so a flood of
 * tokens with made-up signatures (or many new valid ones) held a core at
 * about 1,600 a second, against 6,300 now (README.md, "Performance").
 * The signature segment must be the one base64url string of its bytes
 * (no stray bits in its last character: one token, one spelling) and,
 * for ES256, exactly r || s (RFC 7518 s3.4) with the low s (above),
 * which is turned into the DER form OpenSSL checks. */
static bool jws_verify(const struct sec_key *key, enum cfg_alg alg,
                       const struct segments *s)
{
    unsigned char sig[1024], der[80], *dp = der;
    char again[B64URL_LEN(sizeof sig)];
    size_t n = 0, signed_len = s->n[0] + 1 + s->n[1];
    const unsigned char *check = sig;
    int der_len;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *sv = NULL;
    EVP_MD_CTX *md = NULL;
    bool ok = false;

    if (!key->pkey ||
        !sec_b64url_decode(s->p[2], s->n[2], sig, sizeof sig, &n) ||
        n == 0 || !sec_b64url_encode(sig, n, again, sizeof again) ||
        strlen(again) != s->n[2] || memcmp(again, s->p[2], s->n[2]) != 0)
        return false;
    if (alg == CFG_ALG_ES256) {
        if (n != 64 || s_is_high(sig + 32))
            return false;
        es = ECDSA_SIG_new();
        r = BN_bin2bn(sig, 32, NULL);
        sv = BN_bin2bn(sig + 32, 32, NULL);
        if (!es || !r || !sv || ECDSA_SIG_set0(es, r, sv) != 1)
            goto out;
        r = sv = NULL;                      /* es owns them */
        der_len = i2d_ECDSA_SIG(es, NULL);
        if (der_len <= 0 || (size_t)der_len > sizeof der ||
            i2d_ECDSA_SIG(es, &dp) != der_len)
            goto out;
        check = der;
        n = (size_t)der_len;
    }
    md = EVP_MD_CTX_new();
    ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
                                    key->pkey) == 1 &&
         EVP_DigestVerify(md, check, n, (const unsigned char *)s->p[0],
                          signed_len) == 1;
out:
    EVP_MD_CTX_free(md);
    ECDSA_SIG_free(es);
    BN_free(r);
    BN_free(sv);
    return ok;
}

/* Always with a key (without one libjwt skips the signature), and the
 * algorithm libjwt saw must be the configured one. */
static bool signature_ok(const struct sec_keys *k, const struct sec_key *key,
                         const char *token, const struct segments *s)
{
    jwt_t *jwt = NULL;
    const char *why;
    bool ok;

    if (k->alg == CFG_ALG_ES256 || k->alg == CFG_ALG_RS256)
        return jws_verify(key, k->alg, s);
    if (!key->verify || key->verify_len == 0 || key->verify_len > INT_MAX ||
        !jwtlib_load(&why))
        return false;
    ok = jwt_decode(&jwt, token, key->verify, (int)key->verify_len) == 0 &&
         jwt != NULL && jwt_get_alg(jwt) == k->jwt_alg;
    jwt_free(jwt);
    return ok;
}

static bool int_claim(const json_t *p, const char *name, int64_t *v)
{
    const json_t *j = json_object_get(p, name);

    if (!json_is_integer(j))
        return false;
    *v = (int64_t)json_integer_value(j);
    return true;
}

/* A non-empty string claim, or NULL. */
static const char *str_claim(const json_t *p, const char *name)
{
    const char *s = json_string_value(json_object_get(p, name));

    return s && s[0] ? s : NULL;
}

static bool uuid_claim(const json_t *p, const char *name,
                       char out[UUID_STR_LEN])
{
    const char *s = str_claim(p, name);

    if (!s || !uuid_valid(s))
        return false;
    memcpy(out, s, UUID_STR_LEN);
    return true;
}

/* "aud" is the audience, or an array of strings holding it. */
static bool aud_ok(const json_t *aud, const char *want)
{
    size_t i, n = json_array_size(aud);
    bool found = false;

    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (!json_is_array(aud) || n == 0)
        return false;
    for (i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(aud, i));
        if (!s)
            return false;
        if (strcmp(s, want) == 0)
            found = true;
    }
    return found;
}

static bool times_ok(const json_t *p, int64_t now, struct sec_claims *out)
{
    if (!int_claim(p, "exp", &out->exp) || !int_claim(p, "nbf", &out->nbf) ||
        !int_claim(p, "iat", &out->iat))
        return false;
    return out->exp > now - SEC_LEEWAY_S && out->nbf <= now + SEC_LEEWAY_S &&
           out->iat <= now + SEC_LEEWAY_S;
}

static bool parties_ok(const json_t *p, const struct cfg *cfg)
{
    const char *iss = str_claim(p, "iss");

    return iss && cfg->jwt_issuer && cfg->jwt_audience &&
           strcmp(iss, cfg->jwt_issuer) == 0 &&
           aud_ok(json_object_get(p, "aud"), cfg->jwt_audience);
}

/* sub, sid, jti, role and email into `out`, strings copied into `a`. */
static enum as_err subject_take(const json_t *p, struct sec_claims *out,
                                struct arena *a)
{
    const char *role = str_claim(p, "role");
    const char *email = str_claim(p, "email");
    enum role r;

    if (!uuid_claim(p, "sub", out->sub) || !uuid_claim(p, "sid", out->sid) ||
        !uuid_claim(p, "jti", out->jti) || !email || !role ||
        !role_parse(role, &r))
        return AS_ERR_INVALID_TOKEN;
    out->amr = amr_claim(p);
    out->role = arena_strdup(a, role);
    out->email = arena_strdup(a, email);
    return out->role && out->email ? AS_OK : AS_ERR_NOMEM;
}

static enum as_err claims_check(const struct segments *s,
                                const struct cfg *cfg, int64_t now,
                                struct sec_claims *out, struct arena *a)
{
    json_t *p = segment_json(s->p[1], s->n[1]);
    enum as_err err = AS_ERR_INVALID_TOKEN;

    if (p && times_ok(p, now, out) && parties_ok(p, cfg))
        err = subject_take(p, out, a);
    json_decref(p);
    return err;
}

enum as_err sec_jwt_verify(const struct sec_keys *k, const struct cfg *cfg,
                           const char *token, int64_t now_s,
                           struct sec_claims *out, struct arena *a)
{
    struct segments s;
    const struct sec_key *key;
    enum as_err err = AS_ERR_INVALID_TOKEN;

    if (out)
        memset(out, 0, sizeof *out);
    if (!k || !cfg || !token || !out || !a || !split(token, &s))
        return AS_ERR_INVALID_TOKEN;
    key = header_key(k, s.p[0], s.n[0]);
    if (key && key->until < now_s)
        key = NULL;                 /* retired long enough: as if gone */
    if (key && signature_ok(k, key, token, &s))
        err = claims_check(&s, cfg, now_s, out, a);
    if (err == AS_OK)
        out->key_until = key->until;
    if (err != AS_OK)
        memset(out, 0, sizeof *out);
    return err;
}
