#ifndef AUTH_CRYPTO_H             /* crypto.h: the cryptographic primitives */
#define AUTH_CRYPTO_H
/* Everything outside src/sec/ that hashes, MACs, draws random bytes, wipes
 * a secret or converts binary to text comes through here; libsodium is
 * only seen by src/sec/ (crypt.c implements this header with it). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRYPT_SHA256_LEN 32
#define CRYPT_HMAC_SHA256_LEN 32
#define CRYPT_HMAC_SHA256_KEY_LEN 32   /* the key of the one-shot form */
#define CRYPT_BLAKE2B_LEN 32           /* the usual output length */
#define CRYPT_BLAKE2B_MIN 16           /* output lengths allowed */
#define CRYPT_BLAKE2B_MAX 64
#define CRYPT_BLAKE2B_KEY_MAX 64       /* key lengths allowed: 0 or 16..64 */
#define CRYPT_SIPHASH_KEY_LEN 16
#define CRYPT_AEAD_KEY_LEN 32          /* XChaCha20-Poly1305 (IETF) */
#define CRYPT_AEAD_NONCE_LEN 24
#define CRYPT_AEAD_TAG_LEN 16
/* Characters of the base64url text (no padding) of `n` bytes, NUL
 * included; of the lower-case hex text, NUL included. */
#define CRYPT_B64URL_LEN(n) (((size_t)(n) * 4 + 2) / 3 + 1)
#define CRYPT_HEX_LEN(n) ((size_t)(n) * 2 + 1)

/* The state of a streaming HMAC-SHA256: caller's storage, opaque. */
struct crypt_hmac_sha256 {
    _Alignas(8) unsigned char opaque[208];
};
/* The state of a streaming BLAKE2b: caller's storage, opaque. */
struct crypt_blake2b {
    _Alignas(64) unsigned char opaque[384];
};

/* Starts the library: call once before any thread is started (again is
 * harmless). False when the primitives cannot be used. */
bool crypt_init(void);

/* Overwrites `n` bytes at `p` with zeros in a way the compiler cannot
 * drop. NULL with n == 0 is a no-op. */
void crypt_wipe(void *p, size_t n);
/* True when the `n` bytes at `a` and `b` are equal. Takes the same time
 * whatever the contents, so it suits secrets and MACs. */
bool crypt_equal(const void *a, const void *b, size_t n);

/* Fills `n` bytes at `out` from the system's secure random source. */
void crypt_random(void *out, size_t n);
/* `n` random bytes for identifiers that are not secrets (request ids,
 * UUIDs): the same generator as crypt_random(), drawn a few hundred bytes
 * at a time into a buffer of the calling thread, each byte handed out
 * once (one system call per request was a few percent of a /verify). */
void crypt_random_id(void *out, size_t n);
/* A uniformly random 32-bit number. */
uint32_t crypt_random_u32(void);
/* A uniformly random number below `upper` (no modulo bias); 0 when
 * `upper` is below 2. */
uint32_t crypt_random_uniform(uint32_t upper);

/* SHA-256 of the `n` bytes at `in`. */
void crypt_sha256(const void *in, size_t n, uint8_t out[CRYPT_SHA256_LEN]);

/* HMAC-SHA256 of `in` with a key of exactly CRYPT_HMAC_SHA256_KEY_LEN
 * bytes (RFC 2104). */
void crypt_hmac_sha256(const void *in, size_t n,
                       const uint8_t key[CRYPT_HMAC_SHA256_KEY_LEN],
                       uint8_t out[CRYPT_HMAC_SHA256_LEN]);
/* Streaming HMAC-SHA256 with a key of any length (RFC 2104: a key longer
 * than 64 bytes is hashed first): init, update any number of times,
 * final. Final writes the MAC and wipes the state. */
void crypt_hmac_sha256_init(struct crypt_hmac_sha256 *st, const void *key,
                            size_t key_len);
void crypt_hmac_sha256_update(struct crypt_hmac_sha256 *st, const void *in,
                              size_t n);
void crypt_hmac_sha256_final(struct crypt_hmac_sha256 *st,
                             uint8_t out[CRYPT_HMAC_SHA256_LEN]);

/* BLAKE2b of `in` into `out_len` bytes (CRYPT_BLAKE2B_MIN..MAX), keyed
 * with `key` when `key_len` is not 0 (CRYPT_BLAKE2B_MIN..KEY_MAX bytes).
 * False, and `out` untouched, when a length is out of range. */
bool crypt_blake2b(uint8_t *out, size_t out_len, const void *in, size_t n,
                   const void *key, size_t key_len);
/* Streaming BLAKE2b, the same lengths as crypt_blake2b(): init (false
 * when a length is out of range), update, final (false when `out_len`
 * differs from init's). Final wipes the state. */
bool crypt_blake2b_init(struct crypt_blake2b *st, size_t out_len,
                        const void *key, size_t key_len);
void crypt_blake2b_update(struct crypt_blake2b *st, const void *in,
                          size_t n);
bool crypt_blake2b_final(struct crypt_blake2b *st, uint8_t *out,
                         size_t out_len);

/* A fresh random SipHash key. */
void crypt_siphash_keygen(uint8_t key[CRYPT_SIPHASH_KEY_LEN]);
/* SipHash-2-4 of `in` under `key`, its 8 bytes read in host order: a
 * keyed hash for tables whose buckets an attacker must not be able to aim
 * at. Not a MAC. */
uint64_t crypt_siphash(const void *in, size_t n,
                       const uint8_t key[CRYPT_SIPHASH_KEY_LEN]);

/* XChaCha20-Poly1305 (IETF) of the `n` bytes at `msg` with additional
 * data `ad` (may be NULL when `ad_len` is 0) into `out`, which holds
 * n + CRYPT_AEAD_TAG_LEN bytes (ciphertext, then tag). */
void crypt_aead_seal(uint8_t *out, const uint8_t *msg, size_t n,
                     const void *ad, size_t ad_len,
                     const uint8_t nonce[CRYPT_AEAD_NONCE_LEN],
                     const uint8_t key[CRYPT_AEAD_KEY_LEN]);
/* Opens what crypt_aead_seal() made: `n` bytes at `in` (tag included)
 * into `out`, which holds n - CRYPT_AEAD_TAG_LEN bytes. False when `in`
 * is shorter than a tag or was altered (nothing usable is left in
 * `out`). */
bool crypt_aead_open(uint8_t *out, const uint8_t *in, size_t n,
                     const void *ad, size_t ad_len,
                     const uint8_t nonce[CRYPT_AEAD_NONCE_LEN],
                     const uint8_t key[CRYPT_AEAD_KEY_LEN]);

/* base64url without padding of the `n` bytes at `in` into `out`,
 * NUL-terminated; false (`out` untouched) when `out_len` is below
 * CRYPT_B64URL_LEN(n). */
bool crypt_b64url_encode(const void *in, size_t n, char *out,
                         size_t out_len);
/* Strict base64url without padding: the whole of `in[0..n)` in the
 * alphabet, no stray or left-over bits, into at most `out_len` bytes at
 * `out`, their number in `*got`. False on any malformed input or when it
 * does not fit. */
bool crypt_b64url_decode(const char *in, size_t n, uint8_t *out,
                         size_t out_len, size_t *got);
/* Lower-case hex of the `n` bytes at `in` into `out`, NUL-terminated;
 * false (`out` untouched) when `out_len` is below CRYPT_HEX_LEN(n). */
bool crypt_hex_encode(const void *in, size_t n, char *out, size_t out_len);
/* The bytes of the hex text `in[0..n)` (either case, nothing else) into
 * at most `out_len` bytes at `out`, their number in `*got`. False when
 * a character is not a hex digit, `n` is odd, or it does not fit. */
bool crypt_hex_decode(const char *in, size_t n, uint8_t *out,
                      size_t out_len, size_t *got);

#endif
