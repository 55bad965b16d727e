#ifndef AUTH_WORKPOOL_H          /* workpool.h: threads for slow work */
#define AUTH_WORKPOOL_H
#include <stdbool.h>
#include <stddef.h>

/* A fixed set of threads draining a bounded queue (first in, first out;
 * with clients counted, fair between them), at the priority of the
 * process. The requests that hash a password run here, so the HTTP
 * threads keep serving token checks; their Argon2 computations themselves
 * run on the lower-priority hashing threads of password.h. */
struct workpool;

typedef void (*workpool_fn)(void *arg);

/* A pool of up to `threads` workers with room for `queue` waiting jobs:
 * one worker starts now, the others when a job queued finds no worker
 * idle. NULL on failure. Free with workpool_free(). */
struct workpool *workpool_new(unsigned threads, unsigned queue);
/* Names the pool's threads, those started and those to come, as `ps -L`,
 * `top -H` and `perf` list them (at most 15 bytes are kept): started
 * from an HTTP thread they would carry its name. */
void workpool_name(struct workpool *p, const char *name);
/* Runs the jobs already queued, then joins the threads; NULL is a no-op. */
void workpool_free(struct workpool *p);
/* Queues fn(arg). False at once when the queue is full (the caller answers
 * 503 overloaded); fn is then not called. */
bool workpool_submit(struct workpool *p, workpool_fn fn, void *arg);
/* Caps the jobs any one client may have queued or running at once, for
 * workpool_submit_for(), at `per_client` (0: no cap), so that no client
 * holds more than that share of the pool. Call before the first submit.
 * False when out of memory (then nothing is capped). */
bool workpool_limit_clients(struct workpool *p, unsigned per_client);

/* Lets a full queue make room for a client with few jobs waiting: the
 * newest waiting job of the client (first named) with the most waiting,
 * at least two more, is taken out and `drop`(its arg) is called on the
 * submitting thread, outside the pool's lock, to answer it (503
 * overloaded); its fn never runs. Without it a full queue refuses the
 * newcomer. Call before the first submit. */
void workpool_on_drop(struct workpool *p, workpool_fn drop);

enum workpool_refusal {
    WORKPOOL_QUEUED,        /* fn will run */
    WORKPOOL_FULL,          /* the queue is full (answer 503 overloaded) */
    WORKPOOL_CLIENT_FULL,   /* one of the job's clients is at its cap
                               (answer 429 with Retry-After) */
};
/* Queues fn(arg) on behalf of up to two clients (`a`, `b`: any text that
 * names a client, such as an address key or an account id; NULL: none),
 * counted from now until fn returns or calls workpool_leave_clients().
 * fn is not called unless the result is WORKPOOL_QUEUED. */
enum workpool_refusal workpool_submit_for(struct workpool *p, workpool_fn fn,
                                          void *arg, const char *a,
                                          const char *b);
/* Called from inside a job: stops counting it against its clients now
 * instead of when fn returns. A job whose last effect on its client comes
 * before fn returns (such as resuming the client's connection, which may
 * then send its next request at once) calls this just before it. A no-op
 * outside a job and when called again. */
void workpool_leave_clients(void);
/* Jobs waiting (not yet running) and running now (at most the number of
 * workers; a job counts until its worker comes back for the next), read
 * together, for metrics. */
void workpool_load(struct workpool *p, size_t *waiting, unsigned *running);

#endif
