#ifndef AUTH_TOTP_H              /* totp.h: RFC 6238 codes, sealed secrets */
#define AUTH_TOTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "err.h"

struct sec_keys;

#define TOTP_SECRET_LEN 20       /* 160 bits (RFC 4226 s4 recommends it) */
#define TOTP_B32_LEN 32          /* base32 of the secret, no padding */
#define TOTP_STEP_S 30           /* seconds per step */
#define TOTP_DIGITS 6
#define TOTP_WINDOW 1            /* steps accepted either side of now */
#define TOTP_KEY_LEN 32          /* the sealing key */
/* base64url of nonce (24) || secret (20) || tag (16), and a NUL. */
#define TOTP_SEALED_LEN 80
#define TOTP_SEALED_MAX (TOTP_SEALED_LEN + 1)
#define TOTP_RECOVERY_COUNT 10
/* A recovery code: 16 base32 characters (80 bits) in groups of four. */
#define TOTP_RECOVERY_LEN 19

/* The RFC 4226 HOTP value of `counter` under `key` (HMAC-SHA-1, dynamic
 * truncation), reduced to `digits` (1-9) decimal digits. */
uint32_t totp_hotp(const uint8_t *key, size_t key_len, uint64_t counter,
                   unsigned digits);
/* The RFC 6238 time step of `now_s` (T0 = 0, X = TOTP_STEP_S). */
int64_t totp_step(int64_t now_s);
/* True when `code` (exactly TOTP_DIGITS ASCII digits) is the code of a step
 * within TOTP_WINDOW of the step of `now_s` and later than `after_step`
 * (the last step already accepted: each step is accepted once). *step
 * gets the matching step. Every candidate is computed and compared in
 * constant time. */
bool totp_match(const uint8_t secret[TOTP_SECRET_LEN], const char *code,
                int64_t now_s, int64_t after_step, int64_t *step);
/* True when `code` has the shape of a TOTP code (TOTP_DIGITS digits). */
bool totp_code_shape(const char *code);

/* A fresh random secret. */
void totp_secret_new(uint8_t out[TOTP_SECRET_LEN]);
/* RFC 4648 base32 (upper case, no padding) of `n` bytes into `out`;
 * false when `out_len` is too small. */
bool totp_base32(const uint8_t *in, size_t n, char *out, size_t out_len);

/* The key that seals TOTP secrets, derived from the refresh-derivation
 * key kept with the signing keys (so it is never in the database). */
void totp_key(const struct sec_keys *k, uint8_t out[TOTP_KEY_LEN]);
/* Encrypts `secret` for user `user_id` (XChaCha20-Poly1305, the user id
 * as associated data, so a sealed secret moved to another row fails)
 * into `out` as text. */
void totp_seal(const uint8_t key[TOTP_KEY_LEN], const char *user_id,
               const uint8_t secret[TOTP_SECRET_LEN],
               char out[TOTP_SEALED_MAX]);
/* Decrypts what totp_seal made. AS_ERR_SECRET_UNREADABLE when `sealed` is
 * malformed, tampered with, sealed for another user or under another
 * key; `secret` is then zeroed. */
enum as_err totp_open(const uint8_t key[TOTP_KEY_LEN], const char *user_id,
                      const char *sealed, uint8_t secret[TOTP_SECRET_LEN]);

/* A fresh recovery code, "abcd-efgh-ijkl-mnop" (base32, lower case). */
void totp_recovery_new(char out[TOTP_RECOVERY_LEN + 1]);
/* SHA-256 of the normalised recovery code `code` (case and dashes or
 * spaces ignored), the only form stored. False when `code` cannot be a
 * recovery code. */
bool totp_recovery_hash(const char *code, uint8_t out[32]);

#endif
