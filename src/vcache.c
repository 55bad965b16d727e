/* vcache.c: a set-associative cache of verified access tokens. A token
 * maps to one set of WAYS entries; a new token replaces the set's free or
 * expired entry, else its least recently used one, so a working set of
 * tokens well below the capacity always fits whatever their hashes (a
 * direct-mapped table loses entries to collisions at any size).
 *
 * An entry is found by the BLAKE2b of the token's signature segment and
 * confirmed by comparing the whole token, both in time independent of
 * the contents. Hashing only the signature (43 to 342 characters, one
 * to three BLAKE2b blocks) instead of the whole ~700-byte token saves
 * about 3,000 instructions a request; the whole-token comparison means a
 * token whose header or payload differs from a cached one never hits,
 * whatever its signature. */
#include "vcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

#define WAYS 8
#define STRIPES 64
#define MAX_EMAIL 256

struct entry {
    uint8_t key[32];                 /* BLAKE2b-256 of its signature */
    char *token;                     /* the whole token, malloc'd */
    size_t len;
    const struct sec_keys *keys;     /* the key set that verified it */
    struct sec_claims c;             /* email/role point into the entry */
    uint64_t used_at;                /* the set's clock at the last use */
    char email[MAX_EMAIL];
    char role[8];
    bool used;
};

struct vcache {
    unsigned nsets;
    struct entry *slots;             /* nsets x WAYS */
    uint64_t *clock;                 /* per set: uses so far */
    atomic_uint_fast64_t hits, misses;
    pthread_mutex_t mu[STRIPES];
};

/* A copy of a token: it is a bearer credential, so wiped before free. */
static void drop_token(char *t, size_t len)
{
    if (t) {
        crypt_wipe(t, len);
        free(t);
    }
}

struct vcache *vcache_new(unsigned slots)
{
    struct vcache *c = calloc(1, sizeof *c);
    unsigned i;

    if (!c)
        return NULL;
    c->nsets = slots / WAYS ? slots / WAYS : 1;
    c->slots = calloc((size_t)c->nsets * WAYS, sizeof *c->slots);
    c->clock = calloc(c->nsets, sizeof *c->clock);
    if (!c->slots || !c->clock) {
        free(c->slots);
        free(c->clock);
        free(c);
        return NULL;
    }
    for (i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->mu[i], NULL);
    return c;
}

void vcache_free(struct vcache *c)
{
    unsigned i;

    if (!c)
        return;
    for (i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->mu[i]);
    /* Only the sets ever stored into (a store ticks the set's clock): a
     * wipe of the whole table would have the kernel map, zero and then
     * free every page of it that no token ever touched, megabytes for
     * an idle daemon, on every stop. */
    for (i = 0; i < c->nsets; i++) {
        struct entry *set = &c->slots[(size_t)i * WAYS];
        unsigned w;

        if (!c->clock[i])
            continue;
        for (w = 0; w < WAYS; w++)
            drop_token(set[w].token, set[w].len);
        crypt_wipe(set, WAYS * sizeof *set);
    }
    free(c->slots);
    free(c->clock);
    free(c);
}

static unsigned set_of(const struct vcache *c, const uint8_t key[32])
{
    uint32_t h;

    memcpy(&h, key, sizeof h);
    return h % c->nsets;
}

/* Two keys equal, in the same time whatever they hold: the four words
 * are folded with no branch on their contents (sodium_memcmp, a byte
 * loop through volatile pointers, took 280 instructions a call). */
static bool same_key(const uint8_t a[32], const uint8_t b[32])
{
    uint64_t x[4], y[4], d = 0;
    unsigned i;

    memcpy(x, a, 32);
    memcpy(y, b, 32);
    for (i = 0; i < 4; i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

/* The entry holds exactly `token`: lengths first (not secret), then
 * every byte folded in, with no branch on the contents, so the time says
 * nothing of how much of a cached token a guess got right. */
static bool same_token(const struct entry *e, const char *token, size_t len)
{
    uint64_t x, y, d = 0;
    size_t i = 0;

    if (e->len != len)
        return false;
    for (; i + 8 <= len; i += 8) {
        memcpy(&x, e->token + i, 8);
        memcpy(&y, token + i, 8);
        d |= x ^ y;
    }
    for (; i < len; i++)
        d |= (uint64_t)((unsigned char)e->token[i] ^
                        (unsigned char)token[i]);
    return d == 0;
}

static bool live(const struct entry *e, const struct sec_keys *k,
                 int64_t now_s)
{
    /* and never past the end of the key that signed it (a retired key) */
    return e->used && e->keys == k && e->c.exp + SEC_LEEWAY_S > now_s &&
           e->c.key_until >= now_s;
}

/* Copies a live hit into `out`; false on a miss. */
static bool lookup(struct vcache *c, const uint8_t key[32],
                   const char *token, size_t len,
                   const struct sec_keys *k, int64_t now_s,
                   struct sec_claims *out, struct arena *a)
{
    unsigned s = set_of(c, key), w;
    pthread_mutex_t *mu = &c->mu[s % STRIPES];
    struct entry *set = &c->slots[(size_t)s * WAYS];
    bool hit = false;

    pthread_mutex_lock(mu);
    for (w = 0; w < WAYS && !hit; w++) {
        struct entry *e = &set[w];

        if (!live(e, k, now_s) || !same_key(e->key, key) ||
            !same_token(e, token, len))
            continue;
        e->used_at = ++c->clock[s];
        *out = e->c;
        out->email = arena_strdup(a, e->email);
        out->role = arena_strdup(a, e->role);
        hit = out->email && out->role;
    }
    pthread_mutex_unlock(mu);
    return hit;
}

static void store(struct vcache *c, const uint8_t key[32],
                  const char *token, size_t len,
                  const struct sec_keys *k, const struct sec_claims *cl,
                  int64_t now_s)
{
    unsigned s = set_of(c, key), w;
    pthread_mutex_t *mu = &c->mu[s % STRIPES];
    struct entry *set = &c->slots[(size_t)s * WAYS];
    struct entry *e = &set[0];
    char *copy, *old;
    size_t old_len;

    if (strlen(cl->email) >= MAX_EMAIL || strlen(cl->role) >= 8)
        return;
    copy = malloc(len);
    if (!copy)
        return;                         /* not cached: still verified */
    memcpy(copy, token, len);
    pthread_mutex_lock(mu);
    for (w = 0; w < WAYS; w++) {            /* free or dead, else LRU */
        if (!live(&set[w], k, now_s) ||
            (same_key(set[w].key, key) && same_token(&set[w], token, len))) {
            e = &set[w];
            break;
        }
        if (set[w].used_at < e->used_at)
            e = &set[w];
    }
    old = e->token;
    old_len = e->len;
    memcpy(e->key, key, 32);
    e->token = copy;
    e->len = len;
    e->keys = k;
    e->c = *cl;
    strcpy(e->email, cl->email);
    strcpy(e->role, cl->role);
    e->c.email = e->email;
    e->c.role = e->role;
    e->used_at = ++c->clock[s];
    e->used = true;
    pthread_mutex_unlock(mu);
    drop_token(old, old_len);
}

enum as_err vcache_verify(struct vcache *c, const struct sec_keys *k,
                          const struct cfg *cfg, const char *token,
                          int64_t now_s, struct sec_claims *out,
                          struct arena *a)
{
    uint8_t key[32];
    size_t len = strnlen(token, SEC_MAX_JWT_BYTES + 1);
    const char *dot, *sig;
    enum as_err err;

    if (len > SEC_MAX_JWT_BYTES)
        return AS_ERR_INVALID_TOKEN;
    /* The key is the signature segment's (the whole text when there is
     * no dot: such a token never verifies, so it is never stored). */
    dot = memrchr(token, '.', len);
    sig = dot ? dot + 1 : token;
    crypt_blake2b(key, sizeof key, sig, len - (size_t)(sig - token), NULL, 0);
    if (lookup(c, key, token, len, k, now_s, out, a)) {
        atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
        return AS_OK;
    }
    atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
    err = sec_jwt_verify(k, cfg, token, now_s, out, a);
    if (err == AS_OK)
        store(c, key, token, len, k, out, now_s);
    return err;
}

void vcache_stats(struct vcache *c, uint64_t *hits, uint64_t *misses)
{
    *hits = atomic_load(&c->hits);
    *misses = atomic_load(&c->misses);
}
