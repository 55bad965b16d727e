/* workpool.c: a bounded job queue drained by a fixed set of threads.
 *
 * With clients counted (workpool_limit_clients()), the queue is fair
 * between them rather than first in, first out: a worker takes the
 * oldest job of the client (the job's first one, its address) whose
 * turn came longest ago: when its last job started or, for a client
 * with none queued or running, when it came. A client with a long
 * backlog waits its turn behind every other client's next job instead
 * of holding everyone behind its own, and a client coming back with
 * one job at a time takes its turn behind those already waiting (a
 * newcomer counted as never served would go first every time, and a
 * stream of them would hold back a client with two jobs for ever).
 *
 * And with a drop function set (workpool_on_drop()), a full queue makes
 * room for a client with few jobs waiting by dropping the newest
 * waiting job of the client with the most: a few addresses filling the
 * queue slow each other down, not the rest of the clients (README.md,
 * "Security"). */
#include "workpool.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

#define JOB_CLIENTS 2

struct job {
    workpool_fn fn;
    void *arg;
    uint64_t client[JOB_CLIENTS];  /* keyed hashes of its clients; 0: none */
};

/* Jobs per client, an open-addressing table (linear probing, deletion by
 * backward shift) with room for twice every client that can be counted. */
struct client_count {
    uint64_t key;                   /* 0: empty */
    unsigned n;                     /* jobs queued or running */
    unsigned waiting;               /* jobs queued, as their first client */
    uint64_t last_start;            /* when one of them last started, or
                                       when it came (jobs started then) */
};

struct workpool {
    pthread_mutex_t mu;
    pthread_cond_t more;
    struct job *ring;
    size_t cap, head, len;
    bool stopping;
    unsigned nthreads;              /* started so far, up to `want` */
    unsigned want;
    unsigned idle;                  /* started, waiting for a job */
    unsigned running;               /* jobs taken from the ring, not done */
    pthread_t *threads;
    unsigned per_client;            /* 0: no cap */
    workpool_fn drop;               /* answers a job dropped, or NULL */
    uint64_t starts;                /* jobs started so far */
    struct client_count *counts;    /* `mask` + 1 entries, or NULL */
    size_t mask;
    uint8_t hash_key[CRYPT_SIPHASH_KEY_LEN];
    char name[16];                  /* its threads' (workpool_name()) */
};

/* The slot of `key`: its own, or the empty one where it would go. */
static struct client_count *count_slot(struct workpool *p, uint64_t key)
{
    size_t i = (size_t)key & p->mask;

    while (p->counts[i].key != 0 && p->counts[i].key != key)
        i = (i + 1) & p->mask;
    return &p->counts[i];
}

/* Empties slot i and shifts back the entries of its probe run. */
static void count_remove(struct workpool *p, size_t i)
{
    size_t j = i, home;

    for (;;) {
        j = (j + 1) & p->mask;
        if (p->counts[j].key == 0)
            break;
        home = (size_t)p->counts[j].key & p->mask;
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;                   /* already between home and j */
        p->counts[i] = p->counts[j];
        i = j;
    }
    p->counts[i] = (struct client_count){ 0 };
}

/* The job this thread is running, while it has clients still counted. */
static __thread struct workpool *running_pool;
static __thread struct job *running_job;

/* One job fewer for each client of `j`. Under p->mu. */
static void clients_leave(struct workpool *p, const struct job *j)
{
    struct client_count *c;
    size_t k;

    for (k = 0; k < JOB_CLIENTS; k++) {
        if (!p->counts || j->client[k] == 0)
            continue;
        c = count_slot(p, j->client[k]);
        if (c->key == 0)
            continue;
        if (--c->n == 0)
            count_remove(p, (size_t)(c - p->counts));
    }
}

/* The job at offset i of the queue, taken out of it: the jobs before it
 * move up one place. Under p->mu. */
static struct job ring_take(struct workpool *p, size_t i)
{
    struct job j = p->ring[(p->head + i) % p->cap];

    for (; i > 0; i--)
        p->ring[(p->head + i) % p->cap] =
            p->ring[(p->head + i - 1) % p->cap];
    p->head = (p->head + 1) % p->cap;
    p->len--;
    return j;
}

/* The first client's count of job `j`, or NULL (none counted). */
static struct client_count *first_client(struct workpool *p,
                                         const struct job *j)
{
    struct client_count *c;

    if (!p->counts || j->client[0] == 0)
        return NULL;
    c = count_slot(p, j->client[0]);
    return c->key ? c : NULL;
}

/* The offset of the next job to run: the oldest one of the client whose
 * turn came longest ago (a job of no client counts as never).
 * Under p->mu, with p->len > 0. */
static size_t next_job(struct workpool *p)
{
    const struct client_count *c;
    uint64_t t, best_t = UINT64_MAX;
    size_t i, best = 0;

    if (!p->counts)
        return 0;
    for (i = 0; i < p->len && best_t > 0; i++) {
        c = first_client(p, &p->ring[(p->head + i) % p->cap]);
        t = c ? c->last_start : 0;
        if (t < best_t) {
            best_t = t;
            best = i;
        }
    }
    return best;
}

static void *worker(void *arg)
{
    struct workpool *p = arg;
    bool ran = false;

    for (;;) {
        struct job j;
        struct client_count *c;

        pthread_mutex_lock(&p->mu);
        if (ran)                        /* the last job is done */
            p->running--;
        p->idle++;
        while (p->len == 0 && !p->stopping)
            pthread_cond_wait(&p->more, &p->mu);
        p->idle--;
        if (p->len == 0) {                      /* stopping and drained */
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        j = ring_take(p, next_job(p));
        if ((c = first_client(p, &j)) != NULL) {
            c->waiting--;
            c->last_start = ++p->starts;
        }
        p->running++;
        pthread_mutex_unlock(&p->mu);
        running_pool = p;
        running_job = &j;
        j.fn(j.arg);
        workpool_leave_clients();
        ran = true;
    }
}

void workpool_leave_clients(void)
{
    struct workpool *p = running_pool;
    struct job *j = running_job;

    running_pool = NULL;
    running_job = NULL;
    if (!p || !j || (j->client[0] == 0 && j->client[1] == 0))
        return;
    pthread_mutex_lock(&p->mu);
    clients_leave(p, j);
    pthread_mutex_unlock(&p->mu);
}

/* Starts one more worker, with every signal blocked (main() waits for
 * them). Under p->mu, or before `p` is shared. False when it cannot. */
static bool spawn(struct workpool *p)
{
    sigset_t all, old;
    bool ok;

    if (p->nthreads >= p->want)
        return false;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    ok = pthread_create(&p->threads[p->nthreads], NULL, worker, p) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ok && p->name[0])
        (void)pthread_setname_np(p->threads[p->nthreads], p->name);
    if (ok)
        p->nthreads++;
    return ok;
}

/* The workers start one at a time, when a queued job finds none idle:
 * the first at once, the others as the load asks for them. Starting all
 * of them here cost a start-up a millisecond or more on a busy core
 * (README.md, "Performance"), before any job could need them. */
struct workpool *workpool_new(unsigned threads, unsigned queue)
{
    struct workpool *p = calloc(1, sizeof *p);

    if (!p)
        return NULL;
    p->cap = queue ? queue : 1;
    p->ring = calloc(p->cap, sizeof *p->ring);
    p->threads = calloc(threads ? threads : 1, sizeof *p->threads);
    if (!p->ring || !p->threads) {
        free(p->ring);
        free(p->threads);
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->more, NULL);
    p->want = threads ? threads : 1;
    if (!spawn(p)) {
        workpool_free(p);
        return NULL;
    }
    return p;
}

void workpool_name(struct workpool *p, const char *name)
{
    unsigned i;

    pthread_mutex_lock(&p->mu);
    snprintf(p->name, sizeof p->name, "%s", name);
    for (i = 0; i < p->nthreads; i++)
        (void)pthread_setname_np(p->threads[i], p->name);
    pthread_mutex_unlock(&p->mu);
}

void workpool_free(struct workpool *p)
{
    unsigned i;

    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;                 /* no worker starts after this */
    pthread_cond_broadcast(&p->more);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->more);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p->ring);
    free(p->counts);
    free(p);
}

bool workpool_submit(struct workpool *p, workpool_fn fn, void *arg)
{
    return workpool_submit_for(p, fn, arg, NULL, NULL) == WORKPOOL_QUEUED;
}

bool workpool_limit_clients(struct workpool *p, unsigned per_client)
{
    size_t want = 4 * (p->cap + p->want), n = 64;

    while (n < want)
        n *= 2;
    free(p->counts);
    p->counts = calloc(n, sizeof *p->counts);
    if (!p->counts)
        return false;
    p->mask = n - 1;
    p->per_client = per_client;
    crypt_siphash_keygen(p->hash_key);
    return true;
}

/* The keyed hash naming client `name` (never 0), or 0 for none. */
static uint64_t client_key(const struct workpool *p, const char *name)
{
    uint64_t k;

    if (!name || !p->counts)
        return 0;
    k = crypt_siphash(name, strlen(name), p->hash_key);
    return k ? k : 1;
}

/* Whether every client of `j` is under the cap. Under p->mu. */
static bool clients_fit(struct workpool *p, const struct job *j)
{
    size_t k;

    for (k = 0; k < JOB_CLIENTS; k++)
        if (j->client[k] && p->per_client &&
            count_slot(p, j->client[k])->n >= p->per_client)
            return false;
    return true;
}

/* One job more for each client of `j`, waiting. Under p->mu. */
static void clients_enter(struct workpool *p, const struct job *j)
{
    struct client_count *c;
    size_t k;

    for (k = 0; k < JOB_CLIENTS; k++) {
        if (!p->counts || j->client[k] == 0)
            continue;
        c = count_slot(p, j->client[k]);
        if (c->key == 0)                /* new: its turn counts from now */
            *c = (struct client_count){ .key = j->client[k],
                                        .last_start = p->starts };
        c->n++;
        if (k == 0)
            c->waiting++;
    }
}

/* Makes room in the full queue for job `j`: takes out the newest waiting
 * job of the client with the most waiting, if that client has at least
 * two more than j's has (so that two such clients do not take turns
 * dropping each other's jobs). False, and nothing taken, otherwise.
 * Under p->mu. */
static bool make_room(struct workpool *p, const struct job *j,
                      struct job *dropped)
{
    const struct client_count *mine = first_client(p, j);
    struct client_count *c, *most = NULL;
    size_t i;

    if (!p->drop || !p->counts)
        return false;
    for (i = 0; i < p->len; i++) {
        c = first_client(p, &p->ring[(p->head + i) % p->cap]);
        if (c && (!most || c->waiting > most->waiting))
            most = c;
    }
    if (!most || most == mine ||
        most->waiting < (mine ? mine->waiting : 0) + 2)
        return false;
    for (i = p->len; i-- > 0;)
        if (first_client(p, &p->ring[(p->head + i) % p->cap]) == most)
            break;
    *dropped = ring_take(p, i);
    most->waiting--;
    clients_leave(p, dropped);
    return true;
}

enum workpool_refusal workpool_submit_for(struct workpool *p, workpool_fn fn,
                                          void *arg, const char *a,
                                          const char *b)
{
    struct job j = { fn, arg, { client_key(p, a), client_key(p, b) } };
    struct job dropped = { NULL, NULL, { 0, 0 } };
    enum workpool_refusal res = WORKPOOL_QUEUED;

    if (j.client[1] == j.client[0])
        j.client[1] = 0;                  /* one client named twice */
    pthread_mutex_lock(&p->mu);
    if (p->stopping)
        res = WORKPOOL_FULL;
    else if (p->len >= p->cap)          /* room only for one under its cap */
        res = clients_fit(p, &j) && make_room(p, &j, &dropped)
                  ? WORKPOOL_QUEUED : WORKPOOL_FULL;
    else if (!clients_fit(p, &j))
        res = WORKPOOL_CLIENT_FULL;
    if (res == WORKPOOL_QUEUED) {
        clients_enter(p, &j);
        p->ring[(p->head + p->len) % p->cap] = j;
        p->len++;
        if (p->len > p->idle)           /* a job no idle worker will take */
            spawn(p);
        pthread_cond_signal(&p->more);
    }
    pthread_mutex_unlock(&p->mu);
    if (dropped.fn)
        p->drop(dropped.arg);             /* answered, never run */
    return res;
}

void workpool_on_drop(struct workpool *p, workpool_fn drop)
{
    p->drop = drop;
}

void workpool_load(struct workpool *p, size_t *waiting, unsigned *running)
{
    pthread_mutex_lock(&p->mu);
    *waiting = p->len;
    *running = p->running;
    pthread_mutex_unlock(&p->mu);
}
