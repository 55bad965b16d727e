#ifndef AUTH_VCACHE_H            /* vcache.h: verified-token cache */
#define AUTH_VCACHE_H
#include <stdbool.h>
#include <stdint.h>
#include "arena.h"
#include "sec.h"

/* Remembers access tokens that passed sec_jwt_verify(), found by the
 * BLAKE2b of the signature and confirmed by the whole token's text (both
 * compared in constant time), until their exp, so ES256's cost is paid
 * once per token rather than once per request. Bounded and
 * set-associative (8 ways; a full set drops its least recently used
 * entry), so any working set well below `slots` tokens stays cached;
 * thread-safe. It answers only
 * "this exact token verified"; revocation is checked separately. */
struct vcache;

/* NULL when out of memory. Free with vcache_free(); NULL is a no-op. */
struct vcache *vcache_new(unsigned slots);
void vcache_free(struct vcache *c);
/* Verifies `token` through the cache: a hit copies the claims (strings
 * into `a`) if the token has not expired at `now_s`; a miss runs
 * sec_jwt_verify() and remembers a success. Same results as
 * sec_jwt_verify(). */
enum as_err vcache_verify(struct vcache *c, const struct sec_keys *k,
                          const struct cfg *cfg, const char *token,
                          int64_t now_s, struct sec_claims *out,
                          struct arena *a);
/* How many vcache_verify() calls were answered from the cache (`hits`)
 * and how many ran sec_jwt_verify() (`misses`), since vcache_new(). */
void vcache_stats(struct vcache *c, uint64_t *hits, uint64_t *misses);

#endif
