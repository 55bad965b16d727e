/* crypt.c: crypto.h on libsodium, the one library of primitives. */
#include "crypto.h"

#include <sodium.h>
#include <stdalign.h>
#include <string.h>

/* The opaque states must hold libsodium's, at its alignment. */
_Static_assert(sizeof(struct crypt_hmac_sha256) >=
               sizeof(crypto_auth_hmacsha256_state),
               "HMAC-SHA256 state too small");
_Static_assert(alignof(struct crypt_hmac_sha256) >=
               alignof(crypto_auth_hmacsha256_state),
               "HMAC-SHA256 state misaligned");
_Static_assert(sizeof(struct crypt_blake2b) >=
               sizeof(crypto_generichash_state),
               "BLAKE2b state too small");
_Static_assert(alignof(struct crypt_blake2b) >=
               alignof(crypto_generichash_state),
               "BLAKE2b state misaligned");
/* The lengths this header promises are libsodium's. */
_Static_assert(CRYPT_SHA256_LEN == crypto_hash_sha256_BYTES, "SHA-256");
_Static_assert(CRYPT_HMAC_SHA256_LEN == crypto_auth_hmacsha256_BYTES &&
               CRYPT_HMAC_SHA256_KEY_LEN == crypto_auth_hmacsha256_KEYBYTES,
               "HMAC-SHA256");
_Static_assert(CRYPT_BLAKE2B_LEN == crypto_generichash_BYTES &&
               CRYPT_BLAKE2B_MIN == crypto_generichash_BYTES_MIN &&
               CRYPT_BLAKE2B_MAX == crypto_generichash_BYTES_MAX &&
               CRYPT_BLAKE2B_MIN == crypto_generichash_KEYBYTES_MIN &&
               CRYPT_BLAKE2B_KEY_MAX == crypto_generichash_KEYBYTES_MAX,
               "BLAKE2b");
_Static_assert(CRYPT_SIPHASH_KEY_LEN == crypto_shorthash_KEYBYTES &&
               crypto_shorthash_BYTES == sizeof(uint64_t), "SipHash");
_Static_assert(CRYPT_AEAD_KEY_LEN ==
               crypto_aead_xchacha20poly1305_ietf_KEYBYTES &&
               CRYPT_AEAD_NONCE_LEN ==
               crypto_aead_xchacha20poly1305_ietf_NPUBBYTES &&
               CRYPT_AEAD_TAG_LEN ==
               crypto_aead_xchacha20poly1305_ietf_ABYTES,
               "XChaCha20-Poly1305");
_Static_assert(CRYPT_B64URL_LEN(1) ==
               sodium_base64_ENCODED_LEN(
                   1, sodium_base64_VARIANT_URLSAFE_NO_PADDING) &&
               CRYPT_B64URL_LEN(32) ==
               sodium_base64_ENCODED_LEN(
                   32, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
               "base64url length");

#define B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING

bool crypt_init(void)
{
    return sodium_init() >= 0;
}

void crypt_wipe(void *p, size_t n)
{
    if (p && n)
        sodium_memzero(p, n);
}

bool crypt_equal(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0;
}

void crypt_random(void *out, size_t n)
{
    randombytes_buf(out, n);
}

#define ID_POOL 512

void crypt_random_id(void *out, size_t n)
{
    static _Thread_local unsigned char pool[ID_POOL];
    static _Thread_local size_t used = ID_POOL;

    if (n > ID_POOL / 4) {
        randombytes_buf(out, n);
        return;
    }
    if (ID_POOL - used < n) {
        randombytes_buf(pool, sizeof pool);
        used = 0;
    }
    memcpy(out, pool + used, n);
    sodium_memzero(pool + used, n);     /* each byte once */
    used += n;
}

uint32_t crypt_random_u32(void)
{
    return randombytes_random();
}

uint32_t crypt_random_uniform(uint32_t upper)
{
    return randombytes_uniform(upper);
}

void crypt_sha256(const void *in, size_t n, uint8_t out[CRYPT_SHA256_LEN])
{
    crypto_hash_sha256(out, in, n);
}

void crypt_hmac_sha256(const void *in, size_t n,
                       const uint8_t key[CRYPT_HMAC_SHA256_KEY_LEN],
                       uint8_t out[CRYPT_HMAC_SHA256_LEN])
{
    crypto_auth_hmacsha256(out, in, n, key);
}

static crypto_auth_hmacsha256_state *hmac_state(struct crypt_hmac_sha256 *st)
{
    return (crypto_auth_hmacsha256_state *)(void *)st->opaque;
}

void crypt_hmac_sha256_init(struct crypt_hmac_sha256 *st, const void *key,
                            size_t key_len)
{
    crypto_auth_hmacsha256_init(hmac_state(st), key, key_len);
}

void crypt_hmac_sha256_update(struct crypt_hmac_sha256 *st, const void *in,
                              size_t n)
{
    crypto_auth_hmacsha256_update(hmac_state(st), in, n);
}

void crypt_hmac_sha256_final(struct crypt_hmac_sha256 *st,
                             uint8_t out[CRYPT_HMAC_SHA256_LEN])
{
    crypto_auth_hmacsha256_final(hmac_state(st), out);
    sodium_memzero(st, sizeof *st);
}

/* True when an output length `out_len` and a key length `key_len` are
 * ones BLAKE2b takes. */
static bool blake2b_lengths(size_t out_len, size_t key_len)
{
    return out_len >= CRYPT_BLAKE2B_MIN && out_len <= CRYPT_BLAKE2B_MAX &&
           (key_len == 0 || (key_len >= CRYPT_BLAKE2B_MIN &&
                             key_len <= CRYPT_BLAKE2B_KEY_MAX));
}

bool crypt_blake2b(uint8_t *out, size_t out_len, const void *in, size_t n,
                   const void *key, size_t key_len)
{
    if (!blake2b_lengths(out_len, key_len))
        return false;
    return crypto_generichash(out, out_len, in, n, key_len ? key : NULL,
                              key_len) == 0;
}

static crypto_generichash_state *b2_state(struct crypt_blake2b *st)
{
    return (crypto_generichash_state *)(void *)st->opaque;
}

bool crypt_blake2b_init(struct crypt_blake2b *st, size_t out_len,
                        const void *key, size_t key_len)
{
    if (!blake2b_lengths(out_len, key_len))
        return false;
    return crypto_generichash_init(b2_state(st), key_len ? key : NULL,
                                   key_len, out_len) == 0;
}

void crypt_blake2b_update(struct crypt_blake2b *st, const void *in, size_t n)
{
    crypto_generichash_update(b2_state(st), in, n);
}

bool crypt_blake2b_final(struct crypt_blake2b *st, uint8_t *out,
                         size_t out_len)
{
    bool ok = out_len >= CRYPT_BLAKE2B_MIN && out_len <= CRYPT_BLAKE2B_MAX &&
              crypto_generichash_final(b2_state(st), out, out_len) == 0;

    sodium_memzero(st, sizeof *st);
    return ok;
}

void crypt_siphash_keygen(uint8_t key[CRYPT_SIPHASH_KEY_LEN])
{
    crypto_shorthash_keygen(key);
}

uint64_t crypt_siphash(const void *in, size_t n,
                       const uint8_t key[CRYPT_SIPHASH_KEY_LEN])
{
    unsigned char h[crypto_shorthash_BYTES];
    uint64_t v;

    crypto_shorthash(h, in, n, key);
    memcpy(&v, h, sizeof v);
    return v;
}

void crypt_aead_seal(uint8_t *out, const uint8_t *msg, size_t n,
                     const void *ad, size_t ad_len,
                     const uint8_t nonce[CRYPT_AEAD_NONCE_LEN],
                     const uint8_t key[CRYPT_AEAD_KEY_LEN])
{
    crypto_aead_xchacha20poly1305_ietf_encrypt(out, NULL, msg, n, ad, ad_len,
                                               NULL, nonce, key);
}

bool crypt_aead_open(uint8_t *out, const uint8_t *in, size_t n,
                     const void *ad, size_t ad_len,
                     const uint8_t nonce[CRYPT_AEAD_NONCE_LEN],
                     const uint8_t key[CRYPT_AEAD_KEY_LEN])
{
    if (n < CRYPT_AEAD_TAG_LEN)
        return false;
    return crypto_aead_xchacha20poly1305_ietf_decrypt(
               out, NULL, NULL, in, n, ad, ad_len, nonce, key) == 0;
}

bool crypt_b64url_encode(const void *in, size_t n, char *out,
                         size_t out_len)
{
    if (n > (SIZE_MAX - 3) / 4 || out_len < CRYPT_B64URL_LEN(n))
        return false;
    sodium_bin2base64(out, out_len, in, n, B64URL);
    return true;
}

bool crypt_b64url_decode(const char *in, size_t n, uint8_t *out,
                         size_t out_len, size_t *got)
{
    const char *end = NULL;
    size_t i;

    *got = 0;
    for (i = 0; i < n; i++) {         /* the alphabet and nothing else */
        unsigned char c = (unsigned char)in[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok)
            return false;
    }
    if (sodium_base642bin(out, out_len, in, n, NULL, got, &end, B64URL) != 0)
        return false;
    return end == in + n;             /* the whole text was consumed */
}

bool crypt_hex_encode(const void *in, size_t n, char *out, size_t out_len)
{
    if (n >= SIZE_MAX / 2 || out_len < CRYPT_HEX_LEN(n))
        return false;
    sodium_bin2hex(out, out_len, in, n);
    return true;
}

bool crypt_hex_decode(const char *in, size_t n, uint8_t *out,
                      size_t out_len, size_t *got)
{
    const char *end = NULL;

    *got = 0;
    if (n % 2 != 0 ||
        sodium_hex2bin(out, out_len, in, n, NULL, got, &end) != 0)
        return false;
    return end == in + n;
}
