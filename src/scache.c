/* scache.c: direct-mapped session-state cache with lock striping. A
 * generation counter, bumped by every forget, keeps an answer read from
 * the database before a revocation from being stored after it. */
#include "scache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

#define STRIPES 64

struct slot {
    char sid[UUID_STR_LEN];
    char user_id[UUID_STR_LEN];
    struct session_state st;
    uint64_t at_ms;                       /* when it was fetched */
    bool used;
};

struct scache {
    uint64_t ttl_ms;
    unsigned nslots;
    struct slot *slots;
    atomic_uint_fast64_t gen;             /* forgets so far */
    pthread_mutex_t mu[STRIPES];
};

struct scache *scache_new(unsigned slots, uint64_t ttl_ms)
{
    struct scache *c = calloc(1, sizeof *c);
    unsigned i;

    if (!c)
        return NULL;
    c->nslots = slots ? slots : 1;
    c->ttl_ms = ttl_ms;
    c->slots = calloc(c->nslots, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    for (i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->mu[i], NULL);
    return c;
}

void scache_free(struct scache *c)
{
    unsigned i;

    if (!c)
        return;
    for (i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->mu[i]);
    free(c->slots);
    free(c);
}

static unsigned slot_of(const struct scache *c, const char *sid)
{
    uint32_t h = 2166136261u;                     /* FNV-1a */

    for (; *sid; sid++)
        h = (h ^ (uint8_t)*sid) * 16777619u;
    return h % c->nslots;
}

/* Copies a fresh-enough (or, with `any_age`, any) entry for `sid`. */
static bool lookup(struct scache *c, const char *sid, bool any_age,
                   struct session_state *out)
{
    unsigned i = slot_of(c, sid);
    pthread_mutex_t *mu = &c->mu[i % STRIPES];
    struct slot *s = &c->slots[i];
    bool hit;

    pthread_mutex_lock(mu);
    hit = s->used && strcmp(s->sid, sid) == 0 &&
          (any_age || clock_mono_ms() - s->at_ms < c->ttl_ms);
    if (hit)
        *out = s->st;
    pthread_mutex_unlock(mu);
    return hit;
}

/* Stores `st`, read from the database while the generation was `gen`;
 * not when a forget came since (the answer may predate a revocation). */
static void store(struct scache *c, const char *sid, const char *user_id,
                  const struct session_state *st, uint_fast64_t gen)
{
    unsigned i = slot_of(c, sid);
    pthread_mutex_t *mu = &c->mu[i % STRIPES];
    struct slot *s = &c->slots[i];

    pthread_mutex_lock(mu);
    if (atomic_load(&c->gen) != gen) {
        pthread_mutex_unlock(mu);
        return;
    }
    snprintf(s->sid, sizeof s->sid, "%s", sid);
    snprintf(s->user_id, sizeof s->user_id, "%s", user_id ? user_id : "");
    s->st = *st;
    s->at_ms = clock_mono_ms();
    s->used = true;
    pthread_mutex_unlock(mu);
}

enum as_err scache_check(struct scache *c, struct repo *r, const char *sid,
                         const char *user_id, struct session_state *out)
{
    uint_fast64_t gen;
    enum as_err err;

    if (strlen(sid) >= UUID_STR_LEN)
        return AS_ERR_INVALID_TOKEN;
    if (c->ttl_ms && lookup(c, sid, false, out))
        return AS_OK;
    gen = atomic_load(&c->gen);           /* before the read */
    err = repo_session_state(r, sid, clock_ms(), out);
    if (err == AS_OK) {
        store(c, sid, user_id, out, gen);
        return AS_OK;
    }
    if (as_err_is_infra(err) && lookup(c, sid, true, out))
        return AS_OK;                         /* database down: stale */
    return err;
}

bool scache_peek(struct scache *c, const char *sid,
                 struct session_state *out)
{
    return strlen(sid) < UUID_STR_LEN && c->ttl_ms &&
           lookup(c, sid, false, out);
}

void scache_forget(struct scache *c, const char *sid)
{
    unsigned i = slot_of(c, sid);
    pthread_mutex_t *mu = &c->mu[i % STRIPES];

    atomic_fetch_add(&c->gen, 1);         /* first: see store() */
    pthread_mutex_lock(mu);
    if (strcmp(c->slots[i].sid, sid) == 0)
        c->slots[i].used = false;
    pthread_mutex_unlock(mu);
}

void scache_forget_user(struct scache *c, const char *user_id)
{
    unsigned i;

    atomic_fetch_add(&c->gen, 1);         /* first: see store() */
    for (i = 0; i < c->nslots; i++) {
        pthread_mutex_t *mu = &c->mu[i % STRIPES];

        pthread_mutex_lock(mu);
        if (strcmp(c->slots[i].user_id, user_id) == 0)
            c->slots[i].used = false;
        pthread_mutex_unlock(mu);
    }
}

void scache_forget_all(struct scache *c)
{
    unsigned i;

    atomic_fetch_add(&c->gen, 1);         /* first: see store() */
    for (i = 0; i < c->nslots; i++) {
        pthread_mutex_t *mu = &c->mu[i % STRIPES];

        pthread_mutex_lock(mu);
        c->slots[i].used = false;
        pthread_mutex_unlock(mu);
    }
}
