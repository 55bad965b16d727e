/* totp.c: RFC 4226 / RFC 6238 one-time codes (HMAC-SHA-1 from OpenSSL,
 * which libsodium lacks), secrets sealed with libsodium's AEAD under a key
 * derived from the one kept with the signing keys, and recovery codes. */
#include "totp.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <string.h>

#include "sec/sec_int.h"

#define LABEL_TOTP "auth-serve totp secret sealing v1"
#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES
#define SEALED_BYTES (NONCE_LEN + TOTP_SECRET_LEN + TAG_LEN)
#define RECOVERY_CHARS 16

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

uint32_t totp_hotp(const uint8_t *key, size_t key_len, uint64_t counter,
                   unsigned digits)
{
    uint8_t msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0, off, i;
    uint32_t bin, mod = 1;

    for (i = 0; i < 8; i++)
        msg[i] = (uint8_t)(counter >> (56 - 8 * i));
    if (digits < 1 || digits > 9 || key_len > INT32_MAX ||
        !HMAC(EVP_sha1(), key, (int)key_len, msg, sizeof msg, mac,
              &mac_len) || mac_len != 20)
        return UINT32_MAX;               /* never a valid code */
    off = mac[19] & 0x0f;
    bin = ((uint32_t)(mac[off] & 0x7f) << 24) |
          ((uint32_t)mac[off + 1] << 16) | ((uint32_t)mac[off + 2] << 8) |
          (uint32_t)mac[off + 3];
    for (i = 0; i < digits; i++)
        mod *= 10;
    sodium_memzero(mac, sizeof mac);
    return bin % mod;
}

int64_t totp_step(int64_t now_s)
{
    return now_s >= 0 ? now_s / TOTP_STEP_S : -1;
}

bool totp_code_shape(const char *code)
{
    size_t i;

    if (!code || strnlen(code, TOTP_DIGITS + 1) != TOTP_DIGITS)
        return false;
    for (i = 0; i < TOTP_DIGITS; i++)
        if (code[i] < '0' || code[i] > '9')
            return false;
    return true;
}

bool totp_match(const uint8_t secret[TOTP_SECRET_LEN], const char *code,
                int64_t now_s, int64_t after_step, int64_t *step)
{
    int64_t now = totp_step(now_s), s;
    char want[TOTP_DIGITS + 1];
    bool found = false;

    *step = -1;
    if (!totp_code_shape(code) || now < 0)
        return false;
    for (s = now - TOTP_WINDOW; s <= now + TOTP_WINDOW; s++) {
        uint32_t v = s < 0 ? UINT32_MAX
                           : totp_hotp(secret, TOTP_SECRET_LEN,
                                       (uint64_t)s, TOTP_DIGITS);
        bool same;

        snprintf(want, sizeof want, "%06u", (unsigned)(v % 1000000u));
        same = v != UINT32_MAX &&
               sodium_memcmp(want, code, TOTP_DIGITS) == 0;
        if (same && s > after_step && !found) {
            found = true;
            *step = s;
        }
    }
    sodium_memzero(want, sizeof want);
    return found;
}

void totp_secret_new(uint8_t out[TOTP_SECRET_LEN])
{
    randombytes_buf(out, TOTP_SECRET_LEN);
}

bool totp_base32(const uint8_t *in, size_t n, char *out, size_t out_len)
{
    size_t bits = 0, o = 0, i;
    uint32_t acc = 0;

    if (out_len < (n * 8 + 4) / 5 + 1)
        return false;
    for (i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = b32[(acc >> (bits - 5)) & 31u];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[o++] = b32[(acc << (5 - bits)) & 31u];
    out[o] = '\0';
    return true;
}

void totp_key(const struct sec_keys *k, uint8_t out[TOTP_KEY_LEN])
{
    sec_derive(k->refresh_key, sizeof k->refresh_key, LABEL_TOTP, out);
}

void totp_seal(const uint8_t key[TOTP_KEY_LEN], const char *user_id,
               const uint8_t secret[TOTP_SECRET_LEN],
               char out[TOTP_SEALED_MAX])
{
    uint8_t box[SEALED_BYTES];

    randombytes_buf(box, NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        box + NONCE_LEN, NULL, secret, TOTP_SECRET_LEN,
        (const unsigned char *)user_id, strlen(user_id), NULL, box, key);
    sec_b64url_encode(box, sizeof box, out, TOTP_SEALED_MAX);
}

enum as_err totp_open(const uint8_t key[TOTP_KEY_LEN], const char *user_id,
                      const char *sealed, uint8_t secret[TOTP_SECRET_LEN])
{
    uint8_t box[SEALED_BYTES];
    size_t got = 0;
    enum as_err err = AS_ERR_SECRET_UNREADABLE;

    memset(secret, 0, TOTP_SECRET_LEN);
    if (sealed && user_id &&
        strnlen(sealed, TOTP_SEALED_MAX) == TOTP_SEALED_LEN &&
        sec_b64url_decode(sealed, TOTP_SEALED_LEN, box, sizeof box, &got) &&
        got == SEALED_BYTES &&
        crypto_aead_xchacha20poly1305_ietf_decrypt(
            secret, NULL, NULL, box + NONCE_LEN, SEALED_BYTES - NONCE_LEN,
            (const unsigned char *)user_id, strlen(user_id), box,
            key) == 0)
        err = AS_OK;
    if (err != AS_OK)
        sodium_memzero(secret, TOTP_SECRET_LEN);
    return err;
}

void totp_recovery_new(char out[TOTP_RECOVERY_LEN + 1])
{
    uint8_t raw[RECOVERY_CHARS];
    size_t i, o = 0;

    randombytes_buf(raw, sizeof raw);
    for (i = 0; i < RECOVERY_CHARS; i++) {
        if (i && i % 4 == 0)
            out[o++] = '-';
        out[o++] = (char)(b32[raw[i] & 31u] | 0x20);   /* lower case */
    }
    out[o] = '\0';
    sodium_memzero(raw, sizeof raw);
}

bool totp_recovery_hash(const char *code, uint8_t out[32])
{
    char norm[RECOVERY_CHARS];
    size_t n = 0, i, len;
    bool ok = true;

    len = code ? strnlen(code, 64) : 64;
    if (len >= 64)
        return false;
    for (i = 0; i < len && ok; i++) {
        char ch = code[i];

        if (ch == '-' || ch == ' ')
            continue;
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch | 0x20);
        ok = n < RECOVERY_CHARS &&
             ((ch >= 'a' && ch <= 'z') || (ch >= '2' && ch <= '7'));
        if (ok)
            norm[n++] = ch;
    }
    ok = ok && n == RECOVERY_CHARS;
    if (ok)
        crypto_hash_sha256(out, (const unsigned char *)norm, n);
    sodium_memzero(norm, sizeof norm);
    return ok;
}
