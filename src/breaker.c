/* breaker.c: a circuit breaker with an injected clock. */
#include "breaker.h"

#include <pthread.h>
#include <stdlib.h>

struct breaker {
    pthread_mutex_t mu;
    unsigned threshold;          /* consecutive failures that open it */
    uint64_t cooldown_ms;        /* how long it stays open */
    unsigned probes;             /* calls let through while half-open */
    enum breaker_state state;    /* as last stored; see current() */
    unsigned failures;           /* current streak while closed */
    unsigned in_flight;          /* probe slots taken while half-open */
    uint64_t opened_at;          /* when it last opened */
};

struct breaker *breaker_new(unsigned threshold, uint64_t cooldown_ms,
                            unsigned probes)
{
    struct breaker *b = calloc(1, sizeof *b);

    if (!b)
        return NULL;
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        return NULL;
    }
    b->threshold = threshold ? threshold : 1;
    b->cooldown_ms = cooldown_ms;
    b->probes = probes ? probes : 1;
    b->state = BREAKER_CLOSED;
    return b;
}

void breaker_free(struct breaker *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* True once the cooldown of an open breaker has passed at `now`. A clock
 * that went backwards counts as not passed. */
static bool cooled(const struct breaker *b, uint64_t now)
{
    return now >= b->opened_at && now - b->opened_at >= b->cooldown_ms;
}

/* The state at `now`, turning open into half-open after the cooldown.
 * Called with the mutex held. */
static enum breaker_state current(struct breaker *b, uint64_t now)
{
    if (b->state == BREAKER_OPEN && cooled(b, now)) {
        b->state = BREAKER_HALF_OPEN;
        b->in_flight = 0;
    }
    return b->state;
}

static void trip(struct breaker *b, uint64_t now)
{
    b->state = BREAKER_OPEN;
    b->opened_at = now;
    b->in_flight = 0;
    b->failures = 0;
}

bool breaker_allow(struct breaker *b, uint64_t now_ms)
{
    bool ok = false;

    pthread_mutex_lock(&b->mu);
    switch (current(b, now_ms)) {
    case BREAKER_CLOSED:
        ok = true;
        break;
    case BREAKER_HALF_OPEN:
        if (b->in_flight < b->probes) {
            b->in_flight++;
            ok = true;
        }
        break;
    case BREAKER_OPEN:
        break;
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void breaker_record(struct breaker *b, enum as_err res, uint64_t now_ms)
{
    /* A server that refused a write because it takes none answered: the
     * reads it serves are no reason to refuse every call (not a failure),
     * nor does it clear the failures counted while closed (not a
     * success); a probe it answers closes the circuit. */
    bool read_only = res == AS_ERR_READ_ONLY;
    bool failed = as_err_is_infra(res) != 0 && !read_only;

    pthread_mutex_lock(&b->mu);
    switch (current(b, now_ms)) {
    case BREAKER_CLOSED:
        if (read_only)
            break;
        if (!failed)
            b->failures = 0;
        else if (res == AS_ERR_DB_UNREACHABLE ||
                 ++b->failures >= b->threshold)
            trip(b, now_ms);
        break;
    case BREAKER_HALF_OPEN:
        if (failed) {
            trip(b, now_ms);
        } else {
            b->state = BREAKER_CLOSED;
            b->failures = 0;
            b->in_flight = 0;
        }
        break;
    case BREAKER_OPEN:
        /* A call let through before it opened: the verdict stands until
         * the cooldown's probe. */
        break;
    }
    pthread_mutex_unlock(&b->mu);
}

enum breaker_state breaker_state(struct breaker *b, uint64_t now_ms)
{
    enum breaker_state s;

    pthread_mutex_lock(&b->mu);
    s = current(b, now_ms);
    pthread_mutex_unlock(&b->mu);
    return s;
}

uint64_t breaker_retry_after_ms(struct breaker *b, uint64_t now_ms)
{
    uint64_t left = 0;

    pthread_mutex_lock(&b->mu);
    if (current(b, now_ms) == BREAKER_OPEN) {
        left = b->cooldown_ms;
        if (now_ms >= b->opened_at)
            left -= now_ms - b->opened_at;
    }
    pthread_mutex_unlock(&b->mu);
    return left;
}

const char *breaker_state_name(enum breaker_state s)
{
    switch (s) {
    case BREAKER_CLOSED:
        return "closed";
    case BREAKER_OPEN:
        return "open";
    case BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}
