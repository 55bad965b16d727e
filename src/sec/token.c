/* token.c: opaque random tokens (refresh, reset, verification), their
 * stored hash, the deterministic child of a refresh token, and the token
 * of a mailed link derived from the seed the outbox keeps. */
#include "sec/sec_int.h"

#include <pthread.h>
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

static uint8_t compare_key[crypto_generichash_KEYBYTES];
static pthread_once_t compare_once = PTHREAD_ONCE_INIT;

static void compare_key_init(void)
{
    randombytes_buf(compare_key, sizeof compare_key);
}

bool sec_secret_equal(const char *given, const char *expected)
{
    uint8_t a[crypto_generichash_BYTES], b[crypto_generichash_BYTES];
    bool same;

    if (!given || !expected)
        return false;
    pthread_once(&compare_once, compare_key_init);
    crypto_generichash(a, sizeof a, (const unsigned char *)given,
                       strlen(given), compare_key, sizeof compare_key);
    crypto_generichash(b, sizeof b, (const unsigned char *)expected,
                       strlen(expected), compare_key, sizeof compare_key);
    same = sodium_memcmp(a, b, sizeof a) == 0;
    sodium_memzero(a, sizeof a);
    sodium_memzero(b, sizeof b);
    return same;
}
