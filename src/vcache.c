/* vcache.c: a set-associative cache of verified access tokens. A token
 * maps to one set of WAYS entries; a new token replaces the set's free or
 * expired entry, else its least recently used one, so a working set of
 * tokens well below the capacity always fits whatever their hashes (a
 * direct-mapped table loses entries to collisions at any size). */
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
    uint8_t key[32];                 /* BLAKE2b-256 of the token */
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
    crypt_wipe(c->slots, (size_t)c->nsets * WAYS * sizeof *c->slots);
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

static bool live(const struct entry *e, const struct sec_keys *k,
                 int64_t now_s)
{
    return e->used && e->keys == k && e->c.exp + SEC_LEEWAY_S > now_s;
}

/* Copies a live hit into `out`; false on a miss. */
static bool lookup(struct vcache *c, const uint8_t key[32],
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

        if (!live(e, k, now_s) || !same_key(e->key, key))
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
                  const struct sec_keys *k, const struct sec_claims *cl,
                  int64_t now_s)
{
    unsigned s = set_of(c, key), w;
    pthread_mutex_t *mu = &c->mu[s % STRIPES];
    struct entry *set = &c->slots[(size_t)s * WAYS];
    struct entry *e = &set[0];

    if (strlen(cl->email) >= MAX_EMAIL || strlen(cl->role) >= 8)
        return;
    pthread_mutex_lock(mu);
    for (w = 0; w < WAYS; w++) {            /* free or dead, else LRU */
        if (!live(&set[w], k, now_s) ||
            same_key(set[w].key, key)) {
            e = &set[w];
            break;
        }
        if (set[w].used_at < e->used_at)
            e = &set[w];
    }
    memcpy(e->key, key, 32);
    e->keys = k;
    e->c = *cl;
    strcpy(e->email, cl->email);
    strcpy(e->role, cl->role);
    e->c.email = e->email;
    e->c.role = e->role;
    e->used_at = ++c->clock[s];
    e->used = true;
    pthread_mutex_unlock(mu);
}

enum as_err vcache_verify(struct vcache *c, const struct sec_keys *k,
                          const struct cfg *cfg, const char *token,
                          int64_t now_s, struct sec_claims *out,
                          struct arena *a)
{
    uint8_t key[32];
    size_t len = strnlen(token, SEC_MAX_JWT_BYTES + 1);
    enum as_err err;

    if (len > SEC_MAX_JWT_BYTES)
        return AS_ERR_INVALID_TOKEN;
    /* BLAKE2b: collision resistant like SHA-256, several times cheaper
     * in libsodium, and this runs on every bearer request. */
    crypt_blake2b(key, sizeof key, token, len, NULL, 0);
    if (lookup(c, key, k, now_s, out, a)) {
        atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
        return AS_OK;
    }
    atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
    err = sec_jwt_verify(k, cfg, token, now_s, out, a);
    if (err == AS_OK)
        store(c, key, k, out, now_s);
    return err;
}

void vcache_stats(struct vcache *c, uint64_t *hits, uint64_t *misses)
{
    *hits = atomic_load(&c->hits);
    *misses = atomic_load(&c->misses);
}
