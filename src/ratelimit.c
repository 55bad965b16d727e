/* ratelimit.c: per-client token buckets in a fixed-size table.
 *
 * Each bucket is kept as one number, its "theoretical arrival time" (the
 * generic cell rate algorithm): the time at which the bucket would be full
 * again. A request costs one interval T = 1 min / per_minute; it passes
 * while the bucket is no more than `per_minute` intervals in debt. A slot
 * whose time has passed holds a full bucket, which is the same as no
 * entry: such slots are the first to be reused. */
#include "ratelimit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

#include "netaddr.h"

#define WAYS 8                   /* entries per set */
#define MIN_SETS 8u
#define MAX_LOCKS 64u
#define US_PER_MINUTE UINT64_C(60000000)

struct slot {
    uint64_t key;                /* keyed hash of the address */
    uint64_t tat_us;             /* bucket full again at this time */
};

struct ratelimit {
    unsigned per_minute;
    uint64_t interval_us;        /* one token */
    uint64_t burst_us;           /* the whole bucket */
    size_t nsets, nlocks;
    struct slot *slots;          /* nsets * WAYS */
    pthread_mutex_t *locks;      /* set i is guarded by lock i % nlocks */
    uint8_t hash_key[CRYPT_SIPHASH_KEY_LEN];
};

struct ratelimit *ratelimit_new(unsigned per_minute, size_t entries)
{
    struct ratelimit *rl;
    size_t i, sets = MIN_SETS;

    if (!crypt_init())
        return NULL;
    while (sets * WAYS < entries && sets < (SIZE_MAX / WAYS) / 2)
        sets *= 2;
    rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    rl->per_minute = per_minute;
    if (per_minute) {
        rl->interval_us = US_PER_MINUTE / per_minute;
        if (rl->interval_us == 0)
            rl->interval_us = 1;
        rl->burst_us = rl->interval_us * per_minute;
    }
    rl->nsets = sets;
    rl->nlocks = sets < MAX_LOCKS ? sets : MAX_LOCKS;
    rl->slots = calloc(sets * WAYS, sizeof *rl->slots);
    rl->locks = calloc(rl->nlocks, sizeof *rl->locks);
    if (!rl->slots || !rl->locks) {
        free(rl->slots);
        free(rl->locks);
        free(rl);
        return NULL;
    }
    for (i = 0; i < rl->nlocks; i++)
        pthread_mutex_init(&rl->locks[i], NULL);
    /* A secret key, so nobody can choose addresses that share a set. */
    crypt_siphash_keygen(rl->hash_key);
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    size_t i;

    if (!rl)
        return;
    for (i = 0; i < rl->nlocks; i++)
        pthread_mutex_destroy(&rl->locks[i]);
    free(rl->locks);
    free(rl->slots);
    free(rl);
}

size_t ratelimit_capacity(const struct ratelimit *rl)
{
    return rl->nsets * WAYS;
}

/* The keyed hash of the bucket `ip` belongs to (see ratelimit.h): the
 * address's key of netaddr_client_key(), shared with the lockout. */
static uint64_t bucket_key(const struct ratelimit *rl, const char *ip)
{
    char key[NETADDR_KEY_LEN];

    netaddr_client_key(ip, key);
    return crypt_siphash(key, strlen(key), rl->hash_key);
}

/* The slot of `key` in `set`: its own, else the one nearest to full
 * (an empty one first), which is taken over. Under the set's lock. */
static struct slot *find_slot(struct slot *set, uint64_t key,
                              uint64_t now_us)
{
    struct slot *victim = &set[0];
    size_t i;

    for (i = 0; i < WAYS; i++) {
        if (set[i].key == key && set[i].tat_us != 0)
            return &set[i];
        if (set[i].tat_us < victim->tat_us)
            victim = &set[i];
    }
    victim->key = key;
    victim->tat_us = now_us;
    return victim;
}

bool ratelimit_take(struct ratelimit *rl, const char *ip, uint64_t now_ms,
                    unsigned *retry_s)
{
    uint64_t key, now_us = now_ms * 1000u, start, wait_us;
    struct slot *s;
    size_t set;
    bool ok;

    *retry_s = 0;
    if (!rl || rl->per_minute == 0)
        return true;
    key = bucket_key(rl, ip ? ip : "");
    set = (size_t)(key % rl->nsets);
    pthread_mutex_lock(&rl->locks[set % rl->nlocks]);
    s = find_slot(&rl->slots[set * WAYS], key, now_us);
    start = s->tat_us > now_us ? s->tat_us : now_us;
    ok = start + rl->interval_us - now_us <= rl->burst_us;
    if (ok)
        s->tat_us = start + rl->interval_us;
    pthread_mutex_unlock(&rl->locks[set % rl->nlocks]);
    if (!ok) {
        wait_us = start + rl->interval_us - now_us - rl->burst_us;
        wait_us = (wait_us + 999999u) / 1000000u;
        *retry_s = wait_us < 1 ? 1u
                 : wait_us > 86400u ? 86400u : (unsigned)wait_us;
    }
    return ok;
}

void ratelimit_give_back(struct ratelimit *rl, const char *ip)
{
    uint64_t key;
    struct slot *set;
    size_t i, n;

    if (!rl || rl->per_minute == 0)
        return;
    key = bucket_key(rl, ip ? ip : "");
    n = (size_t)(key % rl->nsets);
    set = &rl->slots[n * WAYS];
    pthread_mutex_lock(&rl->locks[n % rl->nlocks]);
    for (i = 0; i < WAYS; i++)
        if (set[i].key == key && set[i].tat_us > rl->interval_us) {
            set[i].tat_us -= rl->interval_us;
            break;
        }
    pthread_mutex_unlock(&rl->locks[n % rl->nlocks]);
}
