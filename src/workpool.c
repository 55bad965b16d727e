/* workpool.c: a bounded job queue drained by a fixed set of threads. */
#include "workpool.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

/* Workers run at this nice value: hashing is throughput work, and when it
 * saturates the cores the request threads (token checks answered in a
 * millisecond) must still get a core at once. Raising one's own nice
 * value needs no privilege. */
#define WORKER_NICE 10

struct job {
    workpool_fn fn;
    void *arg;
};

struct workpool {
    pthread_mutex_t mu;
    pthread_cond_t more;
    struct job *ring;
    size_t cap, head, len;
    bool stopping;
    unsigned nthreads;
    pthread_t *threads;
};

static void *worker(void *arg)
{
    struct workpool *p = arg;

    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), WORKER_NICE);
    for (;;) {
        struct job j;

        pthread_mutex_lock(&p->mu);
        while (p->len == 0 && !p->stopping)
            pthread_cond_wait(&p->more, &p->mu);
        if (p->len == 0) {                      /* stopping and drained */
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        j = p->ring[p->head];
        p->head = (p->head + 1) % p->cap;
        p->len--;
        pthread_mutex_unlock(&p->mu);
        j.fn(j.arg);
    }
}

struct workpool *workpool_new(unsigned threads, unsigned queue)
{
    struct workpool *p = calloc(1, sizeof *p);
    unsigned i;

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
    for (i = 0; i < (threads ? threads : 1); i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            break;
        p->nthreads++;
    }
    if (p->nthreads == 0) {
        workpool_free(p);
        return NULL;
    }
    return p;
}

void workpool_free(struct workpool *p)
{
    unsigned i;

    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->more);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->more);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p->ring);
    free(p);
}

bool workpool_submit(struct workpool *p, workpool_fn fn, void *arg)
{
    bool ok;

    pthread_mutex_lock(&p->mu);
    ok = p->len < p->cap && !p->stopping;
    if (ok) {
        p->ring[(p->head + p->len) % p->cap] = (struct job){ fn, arg };
        p->len++;
        pthread_cond_signal(&p->more);
    }
    pthread_mutex_unlock(&p->mu);
    return ok;
}

size_t workpool_depth(struct workpool *p)
{
    size_t n;

    pthread_mutex_lock(&p->mu);
    n = p->len;
    pthread_mutex_unlock(&p->mu);
    return n;
}
