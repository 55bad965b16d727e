/* token.c: opaque random tokens (refresh, reset, verification), their
 * stored hash, and the deterministic child of a refresh token. */
#include "sec/sec_int.h"

#include <sodium.h>
#include <string.h>

#define TOKEN_BYTES 32

void sec_token_new(char out[SEC_TOKEN_LEN + 1])
{
    uint8_t raw[TOKEN_BYTES];

    randombytes_buf(raw, sizeof raw);
    sec_b64url_encode(raw, sizeof raw, out, SEC_TOKEN_LEN + 1);
    sodium_memzero(raw, sizeof raw);
}

void sec_token_hash(const char *token, uint8_t out[32])
{
    crypto_hash_sha256(out, (const unsigned char *)token, strlen(token));
}

void sec_token_child(const struct sec_keys *k, const char *parent,
                     char out[SEC_TOKEN_LEN + 1])
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];

    out[0] = '\0';
    if (!k || !parent)
        return;
    crypto_auth_hmacsha256(mac, (const unsigned char *)parent,
                           strlen(parent), k->refresh_key);
    sec_b64url_encode(mac, sizeof mac, out, SEC_TOKEN_LEN + 1);
    sodium_memzero(mac, sizeof mac);
}

bool sec_token_valid(const char *s)
{
    return s && strnlen(s, SEC_TOKEN_LEN + 1) == SEC_TOKEN_LEN &&
           sec_b64url_alphabet(s, SEC_TOKEN_LEN);
}
