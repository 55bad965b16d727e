/* scache.c: set-associative session-state cache with lock striping, and
 * beside it the user rows (for /api/v1/users/me), forgotten with the
 * sessions. A generation counter, bumped by every forget, keeps an
 * answer read from the database before a revocation or a change from
 * being stored after it. */
#include "scache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

#define STRIPES 64
#define WAYS 8                   /* sessions of one set, oldest replaced */
#define USER_SHARE 16            /* a user row per this many session slots */
#define ROW_EMAIL 320
#define ROW_NAME 804             /* 200 characters of up to 4 bytes */
#define USER_GENS 4096           /* generations of users, by user id hash */

struct slot {
    char sid[UUID_STR_LEN];
    char user_id[UUID_STR_LEN];
    struct session_state st;
    uint64_t at_ms;                       /* when it was fetched */
    uint64_t claim_ms;                    /* a refresh asked for, or 0 */
    uint64_t epoch;                       /* live while it is c->epoch */
    uint64_t ugen;                        /* and while its user's
                                             generation is this */
    unsigned uidx;                        /* its user's generation */
};

/* A user row as repo_user_by_id() read it, without the password hash. */
struct row {
    char id[UUID_STR_LEN];
    char email[ROW_EMAIL];
    char full_name[ROW_NAME];
    bool has_name, is_active, is_verified, mfa_enabled;
    enum role role;
    int64_t created_at, updated_at;
    uint64_t at_ms;
    uint64_t epoch;                       /* as a slot's */
};

struct scache {
    uint64_t ttl_ms;
    atomic_uint_fast64_t heard;           /* scache_heard(); 0: none */
    bool outage_any_age;                  /* scache_set_sole_writer() */
    uint64_t (*now)(void);                /* clock_mono_ms */
    unsigned nslots, nrows;
    struct slot *slots;
    struct row *rows;
    atomic_uint_fast64_t gen;             /* forgets so far */
    /* Entries stored since the last scache_forget_all() carry this; the
     * others are free. Forgetting all is one increment: writing a flag in
     * every slot made all of the table's pages resident (26 MiB at the
     * default size) on each PostgreSQL instance, whose notification
     * listener forgets all when it (re)connects. 0 is never current. */
    atomic_uint_fast64_t epoch;
    /* Forgetting one user's sessions is one increment too, of the
     * generation of every user whose id hashes to the same place (they
     * lose their entries as well, which costs them a database read, and
     * while a sole writer's database is down, the stale answer it would
     * have given them): scanning all 65,536 slots took half of a login's
     * own time (README.md "Performance"). */
    atomic_uint_fast64_t ugen[USER_GENS];
    pthread_mutex_t mu[STRIPES];
};

struct scache *scache_new(unsigned slots, uint64_t ttl_ms)
{
    struct scache *c = calloc(1, sizeof *c);
    unsigned i;

    if (!c)
        return NULL;
    c->nslots = (slots + WAYS - 1) / WAYS * WAYS;
    if (!c->nslots)
        c->nslots = WAYS;
    c->ttl_ms = ttl_ms;
    c->now = clock_mono_ms;
    atomic_init(&c->epoch, 1);
    atomic_init(&c->heard, 0);
    c->nrows = c->nslots / USER_SHARE ? c->nslots / USER_SHARE : 1;
    c->slots = calloc(c->nslots, sizeof *c->slots);
    c->rows = calloc(c->nrows, sizeof *c->rows);
    if (!c->slots || !c->rows) {
        free(c->slots);
        free(c->rows);
        free(c);
        return NULL;
    }
    for (i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->mu[i], NULL);
    return c;
}

void scache_set_sole_writer(struct scache *c, bool sole)
{
    c->outage_any_age = sole;
}

void scache_set_clock(struct scache *c, uint64_t (*now_ms)(void))
{
    c->now = now_ms ? now_ms : clock_mono_ms;
}

void scache_free(struct scache *c)
{
    unsigned i;

    if (!c)
        return;
    for (i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->mu[i]);
    free(c->slots);
    free(c->rows);
    free(c);
}

static uint32_t fnv(const char *s)
{
    uint32_t h = 2166136261u;                     /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Forgets the row of `user_id`; the caller holds no stripe lock. */
static void forget_row(struct scache *c, const char *user_id)
{
    unsigned i = fnv(user_id) % c->nrows;
    pthread_mutex_t *mu = &c->mu[i % STRIPES];

    pthread_mutex_lock(mu);
    if (strcmp(c->rows[i].id, user_id) == 0)
        c->rows[i].epoch = 0;
    pthread_mutex_unlock(mu);
}

/* The first slot of the set of `sid` (WAYS slots from there). */
static unsigned set_of(const struct scache *c, const char *sid)
{
    return fnv(sid) % (c->nslots / WAYS) * WAYS;
}

/* Whether an entry stored in `epoch` is still there. */
static bool live(struct scache *c, uint64_t epoch)
{
    return epoch == atomic_load(&c->epoch);
}

static pthread_mutex_t *set_lock(struct scache *c, unsigned set)
{
    return &c->mu[set / WAYS % STRIPES];
}

/* Whether slot `s` holds an entry: stored in this epoch, its user's
 * sessions not forgotten since. */
static bool held(struct scache *c, const struct slot *s)
{
    return live(c, s->epoch) && s->ugen == atomic_load(&c->ugen[s->uidx]);
}

/* The slot holding `sid` in its set, or NULL; the caller holds the lock. */
static struct slot *find(struct scache *c, unsigned set, const char *sid)
{
    unsigned w;

    for (w = 0; w < WAYS; w++) {
        struct slot *s = &c->slots[set + w];

        if (held(c, s) && strcmp(s->sid, sid) == 0)
            return s;
    }
    return NULL;
}

/* A fresh entry's last quarter of its time to live: the first request
 * that sees it there (on the HTTP thread's fast path) is still answered
 * from it and claims a refresh, which a database worker makes in the
 * background (scache_refresh()). Before, every request of a busy session
 * that came after its entry expired and before it was fetched again went
 * to the database: at 64 connections, a burst of queries and of waiting
 * requests every AUTH_SESSION_CACHE_SECONDS for each session. An answer
 * is never served older than the time to live; a refresh that fails
 * (the database slow or down, the queue full) leaves the entry to expire
 * as before. */
static bool wants_refresh(const struct scache *c, const struct slot *s,
                          uint64_t now)
{
    return !s->claim_ms && now - s->at_ms >= c->ttl_ms - c->ttl_ms / 4;
}

uint64_t scache_mark(struct scache *c)
{
    uint64_t now = c->now();

    return now ? now : 1;                 /* 0 lifts the check */
}

void scache_heard(struct scache *c, uint64_t mark)
{
    atomic_store(&c->heard, mark);        /* after the forgets it covers */
}

/* Whether entries may answer at `now`: no listener has a mark out, or
 * its last one is recent (scache.h, scache_heard()). */
static bool heard_lately(struct scache *c, uint64_t now)
{
    uint64_t h = atomic_load(&c->heard);

    return h == 0 || now <= h + SCACHE_HEARD_SLACK_MS;
}

/* How old an entry lookup() takes: fresh (within the time to live, and
 * the listener's mark recent), within the time to live, or any age. */
enum age { AGE_FRESH, AGE_TTL, AGE_ANY };

/* Copies an entry for `sid` young enough for `age`. With `claim`, sets
 * *claim when this caller claimed the entry's refresh. */
static bool lookup(struct scache *c, const char *sid, enum age age,
                   bool *claim, struct session_state *out)
{
    unsigned set = set_of(c, sid);
    pthread_mutex_t *mu = set_lock(c, set);
    uint64_t now = c->now();
    struct slot *s;
    bool hit;

    pthread_mutex_lock(mu);
    s = find(c, set, sid);
    hit = s && (age == AGE_ANY ||
                (now - s->at_ms < c->ttl_ms &&
                 (age == AGE_TTL || heard_lately(c, now))));
    if (hit) {
        *out = s->st;
        if (claim && wants_refresh(c, s, now)) {
            s->claim_ms = now | 1;
            *claim = true;
        }
    }
    pthread_mutex_unlock(mu);
    return hit;
}

/* Stores `st`, read from the database from `asked` on while the
 * generation was `gen` (its age counts from the read's start: a reply
 * that came late is as old as the question, and the time to live bounds
 * what it may miss); not when a forget came since (the answer may
 * predate a revocation).
 * It takes the slot `sid` had, else a free one of its set, else the one
 * fetched longest ago. */
static void store(struct scache *c, const char *sid, const char *user_id,
                  const struct session_state *st, uint_fast64_t gen,
                  uint64_t asked)
{
    unsigned set = set_of(c, sid), w;
    pthread_mutex_t *mu = set_lock(c, set);
    const char *owner = st->user_id[0] ? st->user_id
                                       : user_id ? user_id : "";
    unsigned uidx = fnv(owner) % USER_GENS;
    uint64_t ugen;
    struct slot *s;

    pthread_mutex_lock(mu);
    /* The user's generation before the check of `gen`: a forget bumps
     * `gen` first, so a generation read after its bump fails the
     * check, and one read before it ends the entry with the bump. */
    ugen = atomic_load(&c->ugen[uidx]);
    if (atomic_load(&c->gen) != gen) {
        pthread_mutex_unlock(mu);
        return;
    }
    s = find(c, set, sid);
    for (w = 0; !s && w < WAYS; w++)
        if (!held(c, &c->slots[set + w]))
            s = &c->slots[set + w];
    if (!s) {                   /* the set is full: its oldest entry */
        s = &c->slots[set];
        for (w = 1; w < WAYS; w++)
            if (c->slots[set + w].at_ms < s->at_ms)
                s = &c->slots[set + w];
    }
    snprintf(s->sid, sizeof s->sid, "%s", sid);
    /* The session's owner as the database said, not the token's word. */
    snprintf(s->user_id, sizeof s->user_id, "%s", owner);
    s->uidx = uidx;
    s->ugen = ugen;
    s->st = *st;
    s->at_ms = asked;        /* its age counts from the read's start */
    s->claim_ms = 0;
    s->epoch = atomic_load(&c->epoch);
    pthread_mutex_unlock(mu);
}

enum as_err scache_check(struct scache *c, struct repo *r, const char *sid,
                         const char *user_id, struct session_state *out)
{
    uint64_t asked;
    uint_fast64_t gen;
    enum as_err err;

    if (strlen(sid) >= UUID_STR_LEN)
        return AS_ERR_INVALID_TOKEN;
    if (c->ttl_ms && lookup(c, sid, AGE_FRESH, NULL, out))
        return AS_OK;
    gen = atomic_load(&c->gen);           /* before the read */
    asked = c->now();
    err = repo_session_state(r, sid, clock_ms(), out);
    if (err == AS_OK) {
        if (c->ttl_ms)
            store(c, sid, user_id, out, gen, asked);
        return AS_OK;
    }
    /* The database down: an entry of any age answers only where nobody
     * else could have changed the session meanwhile (a sole writer, and
     * revocations made here forget their entries). On a shared database
     * other instances go on revoking while this one is cut off, so the
     * answer stays bounded by the time to live, as when the listener's
     * connection is lost: also when the listener's mark is not recent
     * (its connection silent, most often with the database hung), which
     * kept the fresh lookup above from answering; and 0 asks the
     * database every time. */
    if (c->ttl_ms && as_err_is_infra(err) &&
        lookup(c, sid, c->outage_any_age ? AGE_ANY : AGE_TTL, NULL, out))
        return AS_OK;                         /* database down: stale */
    return err;
}

bool scache_peek(struct scache *c, const char *sid,
                 struct session_state *out)
{
    return strlen(sid) < UUID_STR_LEN && c->ttl_ms &&
           lookup(c, sid, AGE_FRESH, NULL, out);
}

bool scache_peek_refresh(struct scache *c, const char *sid,
                         struct session_state *out, bool *refresh)
{
    *refresh = false;
    return strlen(sid) < UUID_STR_LEN && c->ttl_ms &&
           lookup(c, sid, AGE_FRESH, refresh, out);
}

void scache_refresh(struct scache *c, struct repo *r, const char *sid,
                    const char *user_id)
{
    uint_fast64_t gen = atomic_load(&c->gen);     /* before the read */
    uint64_t asked = c->now();
    struct session_state st;

    if (strlen(sid) < UUID_STR_LEN &&
        repo_session_state(r, sid, clock_ms(), &st) == AS_OK)
        store(c, sid, user_id, &st, gen, asked);
}

void scache_forget(struct scache *c, const char *sid)
{
    unsigned set = set_of(c, sid);
    pthread_mutex_t *mu = set_lock(c, set);
    char user_id[UUID_STR_LEN] = "";
    unsigned w;

    atomic_fetch_add(&c->gen, 1);         /* first: see store() */
    pthread_mutex_lock(mu);
    /* Every copy of it in its set (one ended by a forget of its user's
     * generation may lie beside the live one), and its owner's row even
     * when such a forget ended the entry already. */
    for (w = 0; w < WAYS; w++) {
        struct slot *s = &c->slots[set + w];

        if (live(c, s->epoch) && strcmp(s->sid, sid) == 0) {
            s->epoch = 0;
            memcpy(user_id, s->user_id, sizeof user_id);
        }
    }
    pthread_mutex_unlock(mu);
    if (user_id[0])
        forget_row(c, user_id);
}

void scache_forget_user(struct scache *c, const char *user_id)
{
    atomic_fetch_add(&c->gen, 1);         /* first: see store() */
    atomic_fetch_add(&c->ugen[fnv(user_id) % USER_GENS], 1);
    forget_row(c, user_id);
}

/* Copies a fresh row of `id` into `out` (strings into `a`). */
static bool row_lookup(struct scache *c, const char *id, struct user *out,
                       struct arena *a)
{
    unsigned i = fnv(id) % c->nrows;
    pthread_mutex_t *mu = &c->mu[i % STRIPES];
    const struct row *w = &c->rows[i];
    uint64_t now = c->now();
    bool hit;

    pthread_mutex_lock(mu);
    hit = live(c, w->epoch) && strcmp(w->id, id) == 0 &&
          now - w->at_ms < c->ttl_ms && heard_lately(c, now);
    if (hit) {
        memset(out, 0, sizeof *out);
        memcpy(out->id, w->id, sizeof out->id);
        out->email = arena_strdup(a, w->email);
        out->full_name = w->has_name ? arena_strdup(a, w->full_name) : NULL;
        out->role = w->role;
        out->is_active = w->is_active;
        out->is_verified = w->is_verified;
        out->mfa_enabled = w->mfa_enabled;
        out->created_at = w->created_at;
        out->updated_at = w->updated_at;
        hit = out->email && (!w->has_name || out->full_name);
    }
    pthread_mutex_unlock(mu);
    return hit;
}

/* Stores `u`, read from `asked` on while the generation was `gen` (see
 * store()). */
static void row_store(struct scache *c, const struct user *u,
                      uint_fast64_t gen, uint64_t asked)
{
    unsigned i = fnv(u->id) % c->nrows;
    pthread_mutex_t *mu = &c->mu[i % STRIPES];
    struct row *w = &c->rows[i];

    if (!u->email || strlen(u->email) >= sizeof w->email ||
        (u->full_name && strlen(u->full_name) >= sizeof w->full_name))
        return;
    pthread_mutex_lock(mu);
    if (atomic_load(&c->gen) == gen) {
        memcpy(w->id, u->id, sizeof w->id);
        strcpy(w->email, u->email);
        w->has_name = u->full_name != NULL;
        strcpy(w->full_name, u->full_name ? u->full_name : "");
        w->role = u->role;
        w->is_active = u->is_active;
        w->is_verified = u->is_verified;
        w->mfa_enabled = u->mfa_enabled;
        w->created_at = u->created_at;
        w->updated_at = u->updated_at;
        w->at_ms = asked;
        w->epoch = atomic_load(&c->epoch);
    }
    pthread_mutex_unlock(mu);
}

enum as_err scache_user(struct scache *c, struct repo *r, const char *id,
                        struct user *out, struct arena *a)
{
    uint_fast64_t gen;
    uint64_t asked;
    enum as_err err;

    if (c->ttl_ms && row_lookup(c, id, out, a))
        return AS_OK;
    gen = atomic_load(&c->gen);           /* before the read */
    asked = c->now();
    err = repo_user_by_id(r, id, out, a);
    if (err != AS_OK)
        return err;
    out->password_hash = NULL;
    if (c->ttl_ms)
        row_store(c, out, gen, asked);
    return AS_OK;
}

bool scache_user_peek(struct scache *c, const char *id, struct user *out,
                      struct arena *a)
{
    return c->ttl_ms && row_lookup(c, id, out, a);
}

void scache_forget_all(struct scache *c)
{
    atomic_fetch_add(&c->gen, 1);         /* first: see store() */
    atomic_fetch_add(&c->epoch, 1);       /* every entry, rows too */
}
