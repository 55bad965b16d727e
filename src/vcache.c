/* vcache.c: a direct-mapped cache of verified access tokens. */
#include "vcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define STRIPES 64
#define MAX_EMAIL 256

struct entry {
    uint8_t key[32];                 /* SHA-256 of the token */
    const struct sec_keys *keys;     /* the key set that verified it */
    struct sec_claims c;             /* email/role point into the entry */
    char email[MAX_EMAIL];
    char role[8];
    bool used;
};

struct vcache {
    unsigned nslots;
    struct entry *slots;
    pthread_mutex_t mu[STRIPES];
};

struct vcache *vcache_new(unsigned slots)
{
    struct vcache *c = calloc(1, sizeof *c);
    unsigned i;

    if (!c)
        return NULL;
    c->nslots = slots ? slots : 1;
    c->slots = calloc(c->nslots, sizeof *c->slots);
    if (!c->slots) {
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
    sodium_memzero(c->slots, c->nslots * sizeof *c->slots);
    free(c->slots);
    free(c);
}

static unsigned slot_of(const struct vcache *c, const uint8_t key[32])
{
    uint32_t h;

    memcpy(&h, key, sizeof h);
    return h % c->nslots;
}

/* Copies a live hit into `out`; false on a miss. */
static bool lookup(struct vcache *c, const uint8_t key[32],
                   const struct sec_keys *k, int64_t now_s,
                   struct sec_claims *out, struct arena *a)
{
    unsigned i = slot_of(c, key);
    pthread_mutex_t *mu = &c->mu[i % STRIPES];
    struct entry *e = &c->slots[i];
    bool hit;

    pthread_mutex_lock(mu);
    hit = e->used && e->keys == k && sodium_memcmp(e->key, key, 32) == 0 &&
          e->c.exp + SEC_LEEWAY_S > now_s;
    if (hit) {
        *out = e->c;
        out->email = arena_strdup(a, e->email);
        out->role = arena_strdup(a, e->role);
        hit = out->email && out->role;
    }
    pthread_mutex_unlock(mu);
    return hit;
}

static void store(struct vcache *c, const uint8_t key[32],
                  const struct sec_keys *k, const struct sec_claims *cl)
{
    unsigned i = slot_of(c, key);
    pthread_mutex_t *mu = &c->mu[i % STRIPES];
    struct entry *e = &c->slots[i];

    if (strlen(cl->email) >= MAX_EMAIL || strlen(cl->role) >= 8)
        return;
    pthread_mutex_lock(mu);
    memcpy(e->key, key, 32);
    e->keys = k;
    e->c = *cl;
    strcpy(e->email, cl->email);
    strcpy(e->role, cl->role);
    e->c.email = e->email;
    e->c.role = e->role;
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
    crypto_hash_sha256(key, (const unsigned char *)token, len);
    if (lookup(c, key, k, now_s, out, a))
        return AS_OK;
    err = sec_jwt_verify(k, cfg, token, now_s, out, a);
    if (err == AS_OK)
        store(c, key, k, out);
    return err;
}
