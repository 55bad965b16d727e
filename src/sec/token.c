/* token.c: opaque random tokens (refresh, reset, verification), their
 * stored hash, the deterministic child of a refresh token, and the token
 * of a mailed link derived from the seed the outbox keeps. */
#include "sec/sec_int.h"

#include <sodium.h>
#include <string.h>

#define TOKEN_BYTES 32
#define LABEL_LINK "auth-serve mailed link v1"

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

void sec_link_seed(uint8_t out[SEC_SEED_LEN])
{
    randombytes_buf(out, SEC_SEED_LEN);
}

void sec_link_token(const struct sec_keys *k,
                    const uint8_t seed[SEC_SEED_LEN],
                    char out[SEC_TOKEN_LEN + 1])
{
    uint8_t key[32], mac[crypto_auth_hmacsha256_BYTES];

    out[0] = '\0';
    if (!k || !seed)
        return;
    /* A key of its own, so a link token never equals a refresh child. */
    sec_derive(k->refresh_key, sizeof k->refresh_key, LABEL_LINK, key);
    crypto_auth_hmacsha256(mac, seed, SEC_SEED_LEN, key);
    sec_b64url_encode(mac, sizeof mac, out, SEC_TOKEN_LEN + 1);
    sodium_memzero(key, sizeof key);
    sodium_memzero(mac, sizeof mac);
}

bool sec_token_valid(const char *s)
{
    return s && strnlen(s, SEC_TOKEN_LEN + 1) == SEC_TOKEN_LEN &&
           sec_b64url_alphabet(s, SEC_TOKEN_LEN);
}
