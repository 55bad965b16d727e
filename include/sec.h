#ifndef AUTH_SEC_H               /* sec.h: JWT, keys, opaque tokens */
#define AUTH_SEC_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "arena.h"
#include "err.h"
#include "uuid.h"

struct cfg;
struct repo;

#define SEC_TOKEN_LEN 43         /* base64url of 32 random bytes, no pad */
#define SEC_MAX_JWT_BYTES 8192   /* longer tokens are refused unparsed */
#define SEC_LEEWAY_S 30          /* clock skew allowed on exp and nbf */

/* The signing key and every key still accepted for verification.
 * Immutable once loaded: share it between threads freely. */
struct sec_keys;

/* RFC 8176 authentication methods of a session, as bits of
 * sec_claims.amr (0 means "pwd" alone, as before the claim existed). */
enum sec_amr { SEC_AMR_PWD = 1u, SEC_AMR_OTP = 2u, SEC_AMR_HWK = 4u,
               SEC_AMR_MFA = 8u };

/* Claims of an access token. Strings are borrowed (from the caller for
 * signing, from the arena for verification). */
struct sec_claims {
    char sub[UUID_STR_LEN];      /* user id */
    char sid[UUID_STR_LEN];      /* session id */
    char jti[UUID_STR_LEN];
    const char *email;
    const char *role;            /* "user" or "admin" */
    int64_t iat, nbf, exp;       /* seconds */
    unsigned amr;                /* enum sec_amr bits */
    int64_t key_until;           /* verified: the Unix second past which
                                    the key that signed it verifies
                                    nothing (INT64_MAX: no end) */
};

/* Loads keys for cfg->jwt_alg: HS256 from cfg->jwt_secret; ES256/RS256
 * from cfg->jwt_key_file, or from cfg->data_dir/keys/ where a missing key
 * is generated (mode 0600, folder 0700) on first start. Also loads or
 * makes the refresh-derivation key. Logs which kid signs. Caller frees
 * with sec_keys_free(); on error *out is NULL and `why` says what. */
enum as_err sec_keys_load(const struct cfg *cfg, struct sec_keys **out,
                          char *why, size_t why_len);
/* sec_keys_load() at `now_ms` (Unix ms) for a process that signed with
 * `prev` until now (NULL at start): in the keys folder, a key retires
 * when a load finds it no longer current, so it stays valid until access
 * TTL + 60 s after the reload that stopped its use. With `r` a PostgreSQL
 * repository (and no HS256 or key file), the keys are those stored in the
 * database (README.md, "Several instances"): the signer is the newest key
 * whose publish delay has passed, and the first key is imported from the
 * keys folder or generated when the database has none. */
enum as_err sec_keys_open(const struct cfg *cfg, struct repo *r,
                          const struct sec_keys *prev, int64_t now_ms,
                          struct sec_keys **out, char *why, size_t why_len);
/* With keys in PostgreSQL: a new key set in *out (caller frees) when the
 * database's keys at `now_ms` differ from `cur`'s (a key added, the
 * signer switched, a key pruned), else *out is NULL. With keys in the
 * data folder: a new set when a key was added there (`keys rotate`),
 * published and verifying, `cur`'s signer still signing. Nothing with a
 * key file or HS256. `*read` (may be NULL) says
 * whether the database answered, even when the keys it holds could not
 * be made a set (a key that does not open): the instance then goes on
 * with `cur`, and the failure is the poll's, not the database's. */
enum as_err sec_keys_poll(const struct cfg *cfg, struct repo *r,
                          const struct sec_keys *cur, int64_t now_ms,
                          struct sec_keys **out, bool *read, char *why,
                          size_t why_len);
void sec_keys_free(struct sec_keys *k);          /* wipes; NULL is a no-op */
/* `auth-serve keys generate`: makes a key under data_dir/keys/ unless one
 * exists. `auth-serve keys rotate`: makes a new key that signs from the
 * next load; earlier keys stay for verification until tokens they signed
 * have expired (access TTL + leeway after retirement), then are pruned.
 * With `r` (PostgreSQL) both act on the keys in the database instead, and
 * a rotated key signs AUTH_KEY_PUBLISH_SECONDS after it was added.
 * Both print the kid to stdout. Return 0 or exit status 2. */
int sec_keys_cli(const struct cfg *cfg, struct repo *r, const char *verb);
/* The JWKS's Cache-Control max-age (s) for AUTH_KEY_PUBLISH_SECONDS
 * `publish_s`: at most 300, and less than the publish delay. */
unsigned sec_jwks_max_age(unsigned publish_s);
/* How long (s, at `now_s`) this process has published the key that
 * signs in `k`: from the load or poll that first listed it. */
int64_t sec_keys_listed_for(const struct sec_keys *k, int64_t now_s);
/* kid of the signing key (borrowed); "" under HS256 without kid. */
const char *sec_keys_kid(const struct sec_keys *k);
/* JWKS document {"keys":[...]} of every verification key still valid
 * at Unix second `now_s` (empty under HS256). New reference; caller
 * decrefs. */
json_t *sec_jwks(const struct sec_keys *k, int64_t now_s);

/* Signs an access token with every claim of `c` plus iss and aud from the
 * config, header kid. Caller frees *out with free(). */
enum as_err sec_jwt_sign(const struct sec_keys *k, const struct cfg *cfg,
                         const struct sec_claims *c, char **out);
/* Verifies `token` strictly: length <= SEC_MAX_JWT_BYTES, the configured
 * alg only (never none), a known kid, signature, then exp/nbf (with
 * SEC_LEEWAY_S at `now_s`), iss, aud, and every claim present with the
 * right type. AS_ERR_INVALID_TOKEN on any failure. Claims' strings live
 * in `a`. */
enum as_err sec_jwt_verify(const struct sec_keys *k, const struct cfg *cfg,
                           const char *token, int64_t now_s,
                           struct sec_claims *out, struct arena *a);

/* The amr bits of space-separated RFC 8176 values (a session's record;
 * NULL or unknown values count as nothing). */
unsigned sec_amr_parse(const char *text);
/* The "amr" claim of `amr` bits: a JSON array, ["pwd"] at least. New
 * reference; NULL when out of memory. */
json_t *sec_amr_json(unsigned amr);

/* A fresh opaque token: SEC_TOKEN_LEN base64url characters and a NUL. */
void sec_token_new(char out[SEC_TOKEN_LEN + 1]);
/* SHA-256 of a token's text, the only form stored. */
void sec_token_hash(const char *token, uint8_t out[32]);
/* The refresh token that rotation derives from `parent`: a keyed hash
 * with the refresh-derivation key, so retries get the same child. */
void sec_token_child(const struct sec_keys *k, const char *parent,
                     char out[SEC_TOKEN_LEN + 1]);
#define SEC_SEED_LEN 32          /* a mailed link's seed, in bytes */
/* A fresh random seed for a mailed link. */
void sec_link_seed(uint8_t out[SEC_SEED_LEN]);
/* The token of the mailed link made from `seed`: a keyed hash with a key
 * derived from the refresh-derivation key (kept with the signing keys:
 * refresh.key, the key file or the HS256 secret). The outbox keeps only
 * the seed, which is no use without that key; the same seed gives the
 * same token on every instance sharing the keys. A secret: wipe it. */
void sec_link_token(const struct sec_keys *k,
                    const uint8_t seed[SEC_SEED_LEN],
                    char out[SEC_TOKEN_LEN + 1]);
/* True when `s` has the shape of an opaque token (length, alphabet). */
bool sec_token_valid(const char *s);
/* True when secret `given` equals `expected` (NULL never does). Compares
 * keyed hashes of both (a key random to the process) in constant time,
 * so neither the time nor the answer tells the length of `expected` or
 * how much of it a guess got right. */
bool sec_secret_equal(const char *given, const char *expected);

#endif
