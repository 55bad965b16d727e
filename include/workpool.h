#ifndef AUTH_WORKPOOL_H          /* workpool.h: threads for slow work */
#define AUTH_WORKPOOL_H
#include <stdbool.h>
#include <stddef.h>

/* A fixed set of threads draining a bounded FIFO. Argon2 runs here so the
 * HTTP threads keep serving token checks; memory for hashing is bounded by
 * the number of threads, whatever the load. */
struct workpool;

typedef void (*workpool_fn)(void *arg);

/* Starts `threads` workers with room for `queue` waiting jobs. NULL on
 * failure. Free with workpool_free(). */
struct workpool *workpool_new(unsigned threads, unsigned queue);
/* Runs the jobs already queued, then joins the threads; NULL is a no-op. */
void workpool_free(struct workpool *p);
/* Queues fn(arg). False at once when the queue is full (the caller answers
 * 503 overloaded); fn is then not called. */
bool workpool_submit(struct workpool *p, workpool_fn fn, void *arg);
/* Jobs waiting (not yet running), for metrics. */
size_t workpool_depth(struct workpool *p);

#endif
