#ifndef AUTH_RATELIMIT_H         /* ratelimit.h: per-client token buckets */
#define AUTH_RATELIMIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Token buckets keyed by client address, in memory, per instance. Each
 * bucket holds `per_minute` tokens and refills at `per_minute` tokens a
 * minute. The table has a fixed number of entries (set-associative; a new
 * address evicts the entry of its set that is nearest to full), so memory
 * stays bounded whatever the number of addresses. Thread-safe. */
struct ratelimit;

/* A limiter of `per_minute` requests a minute (0: off, every request
 * passes) with room for about `entries` addresses (rounded up to a power
 * of two, at least 64). NULL when out of memory. Free with
 * ratelimit_free(). */
struct ratelimit *ratelimit_new(unsigned per_minute, size_t entries);
/* NULL is a no-op. */
void ratelimit_free(struct ratelimit *rl);
/* Takes one token from the bucket of `ip` at monotonic time `now_ms`.
 * True when the request may go on. False when the bucket is empty; then
 * *retry_s gets the whole seconds until a token is back (at least 1).
 * IPv6 addresses share one bucket per /64 (one host usually owns a whole
 * /64); IPv4-mapped IPv6 counts as the IPv4 address; any other text is a
 * key of its own. */
bool ratelimit_take(struct ratelimit *rl, const char *ip, uint64_t now_ms,
                    unsigned *retry_s);
/* Puts back the token a ratelimit_take() of `ip` took, for checks that
 * cost a token only when they fail (a wrong introspection secret): take,
 * check, give back on success. Checking first and taking on failure let
 * requests running at once all pass the check on the last token. A
 * no-op where the bucket was since taken over by another address. */
void ratelimit_give_back(struct ratelimit *rl, const char *ip);
/* Entries in the table (the bound on the addresses it tracks). */
size_t ratelimit_capacity(const struct ratelimit *rl);

#endif
