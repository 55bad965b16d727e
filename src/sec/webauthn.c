/* webauthn.c: the relying party's checks of WebAuthn Level 3, sections 7.1
 * and 7.2. CBOR (attestation objects, COSE keys, extensions) is decoded
 * by libcbor and never by hand; signatures are verified by OpenSSL from
 * the COSE key itself, which is what the repository stores. */
#include "webauthn.h"

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "sec/cborlib.h"
#include "sec/sec_int.h"

#define RP_ID_HASH_LEN 32
#define AD_MIN 37                    /* rpIdHash, flags, signCount */
#define AAGUID_LEN 16

/* COSE_Key labels and values (RFC 9052, RFC 9053). */
#define COSE_KTY 1
#define COSE_ALG 3
#define COSE_CRV (-1)
#define COSE_X (-2)
#define COSE_Y (-3)
#define COSE_RSA_N (-1)
#define COSE_RSA_E (-2)
#define KTY_OKP 1
#define KTY_EC2 2
#define KTY_RSA 3
#define CRV_P256 1
#define CRV_ED25519 6
#define RSA_MIN_BITS 2048
#define RSA_MAX_BYTES 512

const char *wa_result_name(enum wa_result r)
{
    static const char *const names[] = {
        "ok", "bad_format", "bad_type", "bad_challenge", "bad_origin",
        "bad_rp_id", "no_user_presence", "no_user_verification",
        "bad_flags", "bad_attestation", "bad_key", "bad_signature",
        "cloned", "unavailable",
    };

    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "?";
}

bool wa_available(void)
{
    const char *why;

    return cborlib_load(&why);
}

char *wa_b64url(struct arena *a, const uint8_t *in, size_t n)
{
    size_t len = sodium_base64_ENCODED_LEN(
        n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = arena_alloc(a, len);

    if (out && !sec_b64url_encode(in, n, out, len))
        return NULL;
    return out;
}

bool wa_unb64url(struct arena *a, const char *s, size_t max,
                 const uint8_t **out, size_t *n)
{
    size_t len = s ? strlen(s) : 0;
    unsigned char *buf;

    *out = NULL;
    *n = 0;
    if (!s || len > (max + 2) / 3 * 4)
        return false;
    buf = arena_alloc(a, max + 1);
    if (!buf || !sec_b64url_decode(s, len, buf, max, n))
        return false;
    *out = buf;
    return true;
}

/* ---- clientDataJSON (sections 5.8.1, 7.1 steps 5-10, 7.2 steps 11-15) */

/* Whether `origin` is one of the comma-separated `list` (blanks around
 * items ignored; compared exactly, as the spec's origin match is). */
static bool origin_allowed(const char *list, const char *origin)
{
    size_t olen = strlen(origin);

    while (list && *list) {
        const char *end = strchr(list, ',');
        const char *b = list, *e = end ? end : list + strlen(list);

        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - b) == olen && memcmp(b, origin, olen) == 0)
            return true;
        list = end ? end + 1 : NULL;
    }
    return false;
}

/* The challenge string of parsed client data, decoded into `out`. */
static bool challenge_of(const json_t *cd, uint8_t out[WA_CHALLENGE_LEN])
{
    const char *s = json_string_value(json_object_get(cd, "challenge"));
    unsigned char buf[WA_CHALLENGE_LEN + 1];
    size_t got = 0;

    if (!s || strlen(s) > 64 ||
        !sec_b64url_decode(s, strlen(s), buf, sizeof buf, &got) ||
        got != WA_CHALLENGE_LEN)
        return false;
    memcpy(out, buf, WA_CHALLENGE_LEN);
    return true;
}

bool wa_client_challenge(const uint8_t *cdj, size_t n,
                         uint8_t out[WA_CHALLENGE_LEN])
{
    json_t *cd;
    bool ok;

    if (!cdj || n == 0 || n > WA_CLIENT_DATA_MAX)
        return false;
    cd = json_loadb((const char *)cdj, n, JSON_REJECT_DUPLICATES, NULL);
    ok = json_is_object(cd) && challenge_of(cd, out);
    json_decref(cd);
    return ok;
}

/* Checks the collected client data of a ceremony of `type`. */
static enum wa_result client_data_check(const struct wa_rp *rp,
                                        const char *type,
                                        const uint8_t challenge[32],
                                        const uint8_t *cdj, size_t n)
{
    uint8_t got[WA_CHALLENGE_LEN];
    const char *t, *origin;
    const json_t *cross;
    enum wa_result r = WA_OK;
    json_t *cd = NULL;

    if (cdj && n > 0 && n <= WA_CLIENT_DATA_MAX)
        cd = json_loadb((const char *)cdj, n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(cd)) {
        json_decref(cd);
        return WA_BAD_FORMAT;
    }
    t = json_string_value(json_object_get(cd, "type"));
    origin = json_string_value(json_object_get(cd, "origin"));
    cross = json_object_get(cd, "crossOrigin");
    if (!t || strcmp(t, type) != 0)
        r = WA_BAD_TYPE;
    else if (!challenge_of(cd, got) ||
             sodium_memcmp(got, challenge, WA_CHALLENGE_LEN) != 0)
        r = WA_BAD_CHALLENGE;
    else if (!origin || !origin_allowed(rp->origins, origin))
        r = WA_BAD_ORIGIN;
    else if (cross && !json_is_false(cross))
        r = WA_BAD_ORIGIN;
    /* A topOrigin belongs to a cross-origin ceremony only (sections 7.1
     * and 7.2), and those are refused above: with crossOrigin false or
     * absent it contradicts the rest of the client data, so it is
     * refused whatever it names. */
    else if (json_object_get(cd, "topOrigin"))
        r = WA_BAD_ORIGIN;
    json_decref(cd);
    return r;
}

/* ---- CBOR helpers ------------------------------------------------------ */

/* The integer value of a CBOR integer item. */
static bool cbor_int(const cbor_item_t *it, int64_t *out)
{
    uint64_t v;

    if (!it || !(cbor_isa_uint(it) || cbor_isa_negint(it)))
        return false;
    v = cbor_get_int(it);
    if (v > INT64_MAX)
        return false;
    *out = cbor_isa_uint(it) ? (int64_t)v : -1 - (int64_t)v;
    return true;
}

/* The value under integer key `key` of a definite map, or NULL; NULL
 * too when the key is there twice (RFC 8949 5.6: such a map is not
 * valid, and which value counts would be a guess). */
static cbor_item_t *map_int(const cbor_item_t *map, int64_t key)
{
    struct cbor_pair *p = cbor_map_handle(map);
    size_t i, n = cbor_map_size(map);
    cbor_item_t *found = NULL;
    int64_t k;

    for (i = 0; i < n; i++)
        if (cbor_int(p[i].key, &k) && k == key) {
            if (found)
                return NULL;
            found = p[i].value;
        }
    return found;
}

/* The value under text key `key` of a definite map, or NULL (also when
 * the key is there twice). */
static cbor_item_t *map_text(const cbor_item_t *map, const char *key)
{
    struct cbor_pair *p = cbor_map_handle(map);
    size_t i, n = cbor_map_size(map), kl = strlen(key);
    cbor_item_t *found = NULL;

    for (i = 0; i < n; i++)
        if (cbor_isa_string(p[i].key) && cbor_string_is_definite(p[i].key) &&
            cbor_string_length(p[i].key) == kl &&
            memcmp(cbor_string_handle(p[i].key), key, kl) == 0) {
            if (found)
                return NULL;
            found = p[i].value;
        }
    return found;
}

/* A definite byte string's bytes, or NULL. */
static const uint8_t *bytes_of(const cbor_item_t *it, size_t *n)
{
    if (!it || !cbor_isa_bytestring(it) || !cbor_bytestring_is_definite(it))
        return NULL;
    *n = cbor_bytestring_length(it);
    return cbor_bytestring_handle(it);
}

/* What scan() tracks: bytes left after the head just read, and whether
 * a head was refused. */
struct scan {
    size_t left;
    bool bad;
};

static void scan_collection(void *ctx, size_t items)
{
    struct scan *s = ctx;

    if (items > s->left)                /* each item takes a byte at least */
        s->bad = true;
}

static void scan_indefinite(void *ctx)
{
    ((struct scan *)ctx)->bad = true;   /* CTAP2 canonical CBOR has none */
}

/* Whether `n` bytes are a sequence of CBOR data items with only definite
 * lengths, none of which declares more items than bytes remain. Run
 * before cbor_load(), which allocates what a header declares: 16 KiB of
 * hostile input must not make it reserve gigabytes. */
static bool scan(const uint8_t *p, size_t n)
{
    struct cbor_callbacks cb = cbor_empty_callbacks;
    struct cbor_decoder_result res;
    struct scan s = { 0, false };
    size_t off = 0;

    cb.array_start = scan_collection;
    cb.map_start = scan_collection;
    cb.indef_array_start = scan_indefinite;
    cb.indef_map_start = scan_indefinite;
    cb.byte_string_start = scan_indefinite;
    cb.string_start = scan_indefinite;
    while (off < n && !s.bad) {
        s.left = n - off;
        res = cbor_stream_decode(p + off, n - off, &cb, &s);
        if (res.status != CBOR_DECODER_FINISHED || res.read == 0)
            return false;
        off += res.read;
    }
    return !s.bad;
}

/* Decodes one CBOR item at the start of `p` (`n` bytes, all of them CBOR
 * heads: see scan()); *used gets its length. NULL when it is not CBOR or
 * not a definite map. */
static cbor_item_t *load_map(const uint8_t *p, size_t n, size_t *used)
{
    struct cbor_load_result res;
    cbor_item_t *it;

    if (n == 0 || !scan(p, n))
        return NULL;
    it = cbor_load(p, n, &res);
    if (!it || res.error.code != CBOR_ERR_NONE || !cbor_isa_map(it) ||
        !cbor_map_is_definite(it)) {
        if (it)
            cbor_decref(&it);
        return NULL;
    }
    *used = res.read;
    return it;
}

/* ---- COSE keys --------------------------------------------------------- */

/* EVP_PKEY from OSSL_PARAMs of key type `name`. */
static EVP_PKEY *pkey_fromdata(const char *name, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = bld ? OSSL_PARAM_BLD_to_param(bld) : NULL;
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, name, NULL)
                               : NULL;
    EVP_PKEY *pk = NULL;

    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        EVP_PKEY_free(pk);
        pk = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pk;
}

/* A P-256 key from COSE x and y (the point is checked to be on the
 * curve by OpenSSL). */
static EVP_PKEY *ec2_key(const cbor_item_t *k)
{
    const uint8_t *x, *y;
    size_t xn = 0, yn = 0;
    uint8_t pt[65];
    int64_t crv = 0;
    OSSL_PARAM_BLD *bld;
    EVP_PKEY *pk = NULL;

    x = bytes_of(map_int(k, COSE_X), &xn);
    y = bytes_of(map_int(k, COSE_Y), &yn);
    if (!cbor_int(map_int(k, COSE_CRV), &crv) || crv != CRV_P256 || !x ||
        !y || xn != 32 || yn != 32)
        return NULL;
    pt[0] = 0x04;                      /* uncompressed point */
    memcpy(pt + 1, x, 32);
    memcpy(pt + 33, y, 32);
    bld = OSSL_PARAM_BLD_new();
    if (bld &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                        "prime256v1", 0) == 1 &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                         sizeof pt) == 1)
        pk = pkey_fromdata("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    return pk;
}

/* An Ed25519 key from COSE x. The encoding must be a canonical point of
 * the prime-order subgroup, not of small order (libsodium's check):
 * OpenSSL's verification (RFC 8032, 5.1.7) does not ask, and with a key
 * of small order a signature made without any private key (R the
 * identity, S zero) passes for one message in four. */
static EVP_PKEY *okp_key(const cbor_item_t *k)
{
    const uint8_t *x;
    size_t xn = 0;
    int64_t crv = 0;

    x = bytes_of(map_int(k, COSE_X), &xn);
    if (!cbor_int(map_int(k, COSE_CRV), &crv) || crv != CRV_ED25519 || !x ||
        xn != crypto_core_ed25519_BYTES ||
        crypto_core_ed25519_is_valid_point(x) != 1)
        return NULL;
    return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, xn);
}

static EVP_PKEY *rsa_key(const cbor_item_t *k)
{
    const uint8_t *nb, *eb;
    size_t nn = 0, en = 0;
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pk = NULL;

    nb = bytes_of(map_int(k, COSE_RSA_N), &nn);
    eb = bytes_of(map_int(k, COSE_RSA_E), &en);
    if (!nb || !eb || nn > RSA_MAX_BYTES || en == 0 || en > 8)
        return NULL;
    n = BN_bin2bn(nb, (int)nn, NULL);
    e = BN_bin2bn(eb, (int)en, NULL);
    if (n && e && BN_num_bits(n) >= RSA_MIN_BITS && BN_is_odd(e) &&
        !BN_is_one(e))
        bld = OSSL_PARAM_BLD_new();
    if (bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) == 1)
        pk = pkey_fromdata("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pk;
}

/* The public key of COSE_Key `cose` (the whole buffer, one definite map)
 * and its algorithm, which must be one that registration offers and fit
 * the key type. NULL otherwise; caller frees with EVP_PKEY_free(). */
static EVP_PKEY *cose_key(const uint8_t *cose, size_t n, int64_t *alg)
{
    size_t used = 0;
    int64_t kty = 0;
    cbor_item_t *k = load_map(cose, n, &used);
    EVP_PKEY *pk = NULL;

    *alg = 0;
    if (k && used == n && cbor_int(map_int(k, COSE_KTY), &kty) &&
        cbor_int(map_int(k, COSE_ALG), alg)) {
        if (kty == KTY_EC2 && *alg == WA_ALG_ES256)
            pk = ec2_key(k);
        else if (kty == KTY_OKP && *alg == WA_ALG_EDDSA)
            pk = okp_key(k);
        else if (kty == KTY_RSA && *alg == WA_ALG_RS256)
            pk = rsa_key(k);
    }
    if (k)
        cbor_decref(&k);
    return pk;
}

/* Verifies `sig` over `msg` with `pk` under COSE algorithm `alg`. */
static bool sig_ok(EVP_PKEY *pk, int64_t alg, const uint8_t *msg,
                   size_t msg_len, const uint8_t *sig, size_t sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const EVP_MD *md = alg == WA_ALG_EDDSA ? NULL : EVP_sha256();
    bool ok = ctx && sig_len > 0 &&
              EVP_DigestVerifyInit(ctx, NULL, md, NULL, pk) == 1 &&
              EVP_DigestVerify(ctx, sig, sig_len, msg, msg_len) == 1;

    EVP_MD_CTX_free(ctx);
    return ok;
}

/* ---- authenticatorData (section 6.1) ----------------------------------- */

struct auth_data {
    uint8_t flags;
    uint32_t count;
    const uint8_t *cred_id, *cose;    /* with AT */
    size_t cred_id_len, cose_len;
};

/* Reads `ad`: header, attested credential data when AT, extensions when
 * ED, and nothing after them. */
static enum wa_result auth_data_parse(const uint8_t *ad, size_t n,
                                      struct auth_data *out)
{
    size_t off = AD_MIN, used = 0;
    cbor_item_t *it;

    memset(out, 0, sizeof *out);
    if (!ad || n < AD_MIN)
        return WA_BAD_FORMAT;
    out->flags = ad[32];
    out->count = (uint32_t)ad[33] << 24 | (uint32_t)ad[34] << 16 |
                 (uint32_t)ad[35] << 8 | ad[36];
    if (out->flags & WA_FLAG_AT) {
        if (n - off < AAGUID_LEN + 2)
            return WA_BAD_FORMAT;
        off += AAGUID_LEN;
        out->cred_id_len = (size_t)ad[off] << 8 | ad[off + 1];
        off += 2;
        if (out->cred_id_len == 0 || out->cred_id_len > WA_CRED_ID_MAX ||
            n - off < out->cred_id_len)
            return WA_BAD_FORMAT;
        out->cred_id = ad + off;
        off += out->cred_id_len;
        it = load_map(ad + off, n - off, &used);
        if (!it)
            return WA_BAD_FORMAT;
        cbor_decref(&it);
        out->cose = ad + off;
        out->cose_len = used;
        off += used;
    }
    if (out->flags & WA_FLAG_ED) {
        it = load_map(ad + off, n - off, &used);
        if (!it)
            return WA_BAD_FORMAT;
        cbor_decref(&it);
        off += used;
    }
    return off == n ? WA_OK : WA_BAD_FORMAT;
}

/* The rpIdHash, UP, UV and backup flag checks both ceremonies make. */
static enum wa_result auth_data_check(const struct wa_rp *rp,
                                      const uint8_t *ad,
                                      const struct auth_data *d)
{
    uint8_t h[RP_ID_HASH_LEN];

    SHA256((const unsigned char *)rp->rp_id, strlen(rp->rp_id), h);
    if (sodium_memcmp(h, ad, RP_ID_HASH_LEN) != 0)
        return WA_BAD_RP_ID;
    if (!(d->flags & WA_FLAG_UP))
        return WA_NO_UP;
    if (!(d->flags & WA_FLAG_UV))
        return WA_NO_UV;
    if ((d->flags & WA_FLAG_BS) && !(d->flags & WA_FLAG_BE))
        return WA_BAD_FLAGS;
    return WA_OK;
}

/* ---- the ceremonies ---------------------------------------------------- */

/* Reads the attestation object: fmt "none", an empty attStmt, and the
 * authenticator data (borrowed from `*obj`, which the caller frees). */
static enum wa_result attestation_none(const uint8_t *att, size_t n,
                                       cbor_item_t **obj, const uint8_t **ad,
                                       size_t *ad_len)
{
    size_t used = 0;
    const cbor_item_t *fmt, *stmt;

    *obj = load_map(att, n, &used);
    if (!*obj || used != n)
        return WA_BAD_FORMAT;
    fmt = map_text(*obj, "fmt");
    stmt = map_text(*obj, "attStmt");
    *ad = bytes_of(map_text(*obj, "authData"), ad_len);
    if (!fmt || !cbor_isa_string(fmt) || !cbor_string_is_definite(fmt) ||
        !stmt || !cbor_isa_map(stmt) || !*ad)
        return WA_BAD_FORMAT;
    if (cbor_string_length(fmt) != 4 ||
        memcmp(cbor_string_handle(fmt), "none", 4) != 0 ||
        cbor_map_size(stmt) != 0)
        return WA_BAD_ATTESTATION;
    return WA_OK;
}

enum wa_result wa_register_verify(const struct wa_rp *rp,
                                  const uint8_t challenge[WA_CHALLENGE_LEN],
                                  const uint8_t *cdj, size_t cdj_len,
                                  const uint8_t *att, size_t att_len,
                                  struct wa_cred *out, struct arena *a)
{
    cbor_item_t *obj = NULL;
    const uint8_t *ad = NULL;
    size_t ad_len = 0;
    struct auth_data d;
    EVP_PKEY *pk = NULL;
    uint8_t *id, *cose;
    enum wa_result r = wa_available()
                           ? client_data_check(rp, "webauthn.create",
                                               challenge, cdj, cdj_len)
                           : WA_UNAVAILABLE;

    memset(out, 0, sizeof *out);
    if (r == WA_OK)
        r = attestation_none(att, att_len, &obj, &ad, &ad_len);
    if (r == WA_OK)
        r = auth_data_parse(ad, ad_len, &d);
    if (r == WA_OK)
        r = auth_data_check(rp, ad, &d);
    if (r == WA_OK && !(d.flags & WA_FLAG_AT))
        r = WA_BAD_FLAGS;
    if (r == WA_OK) {
        pk = cose_key(d.cose, d.cose_len, &out->alg);
        if (!pk || d.cose_len > WA_COSE_MAX)
            r = WA_BAD_KEY;
    }
    if (r == WA_OK) {
        id = arena_alloc(a, d.cred_id_len);
        cose = arena_alloc(a, d.cose_len);
        if (!id || !cose) {
            r = WA_BAD_FORMAT;
        } else {
            memcpy(id, d.cred_id, d.cred_id_len);
            memcpy(cose, d.cose, d.cose_len);
            out->id = id;
            out->id_len = d.cred_id_len;
            out->cose = cose;
            out->cose_len = d.cose_len;
            out->sign_count = d.count;
            out->flags = d.flags;
        }
    }
    EVP_PKEY_free(pk);
    if (obj)
        cbor_decref(&obj);
    return r;
}

enum wa_result wa_assert_verify(const struct wa_rp *rp,
                                const uint8_t challenge[WA_CHALLENGE_LEN],
                                const uint8_t *cdj, size_t cdj_len,
                                const uint8_t *ad, size_t ad_len,
                                const uint8_t *sig, size_t sig_len,
                                const uint8_t *cose, size_t cose_len,
                                uint32_t stored_count, uint32_t *new_count)
{
    struct auth_data d;
    EVP_PKEY *pk = NULL;
    uint8_t *msg = NULL;
    int64_t alg = 0;
    enum wa_result r = wa_available()
                           ? client_data_check(rp, "webauthn.get",
                                               challenge, cdj, cdj_len)
                           : WA_UNAVAILABLE;

    *new_count = 0;
    if (r == WA_OK)
        r = auth_data_parse(ad, ad_len, &d);
    if (r == WA_OK)
        r = auth_data_check(rp, ad, &d);
    if (r == WA_OK && (d.flags & WA_FLAG_AT))
        r = WA_BAD_FLAGS;                 /* no attested data in a get */
    if (r == WA_OK) {
        *new_count = d.count;
        pk = cose_key(cose, cose_len, &alg);
        msg = pk ? malloc(ad_len + SHA256_DIGEST_LENGTH) : NULL;
        if (!msg)
            r = WA_BAD_KEY;
    }
    if (r == WA_OK) {
        memcpy(msg, ad, ad_len);
        SHA256(cdj, cdj_len, msg + ad_len);
        if (!sig_ok(pk, alg, msg, ad_len + SHA256_DIGEST_LENGTH, sig,
                    sig_len))
            r = WA_BAD_SIGNATURE;
    }
    if (r == WA_OK && (stored_count != 0 || d.count != 0) &&
        d.count <= stored_count)
        r = WA_CLONED;
    free(msg);
    EVP_PKEY_free(pk);
    return r;
}
