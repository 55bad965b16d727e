/* ready.c: the database readiness prober behind /readyz. */
#include "ready.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "log.h"

/* A ready_check() starts a ping only when the last one ended at least
 * this long ago, so that a flood of /readyz calls costs the database at
 * most this many pings a second: 1000 / KICK_GAP_MS. */
#define KICK_GAP_MS 20u

struct ready {
    ready_ping_fn ping;
    void *arg;
    uint64_t interval_ms, stall_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;                  /* kicks and stop */
    pthread_cond_t ended;               /* a ping ended */
    pthread_t thread;
    bool stopping, kicked, running;
    bool last_ok;                       /* the last finished ping's result */
    uint64_t pings;                     /* finished pings */
    /* ready_failed() calls since start; of them, those before the
     * running ping started, and before the last finished one did */
    atomic_uint_fast64_t failures;
    uint64_t failures_at_start, failures_before_last;
    uint64_t started_ms, ended_ms;      /* of the running / last ping */
    /* When the running ping counts as stalled (0: none running), read
     * without the mutex by ready_stalled() on every database call. */
    _Atomic uint64_t stall_at;
    _Atomic uint64_t stall_said;        /* the stall_at "db.stalled" was
                                           logged for */
};

/* Milliseconds from `t` to `now` (0 when `now` is earlier). */
static uint64_t since(uint64_t now, uint64_t t)
{
    return now > t ? now - t : 0;
}

/* Waits on `cv` (with r->mu held) until `deadline_ms` (monotonic) or a
 * signal. */
static void wait_until(struct ready *r, pthread_cond_t *cv,
                       uint64_t deadline_ms)
{
    uint64_t now = clock_mono_ms(), left = deadline_ms > now
                                               ? deadline_ms - now : 0;
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(left / 1000u);
    ts.tv_nsec += (long)(left % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    (void)pthread_cond_timedwait(cv, &r->mu, &ts);
}

/* Set on a prober's own thread. */
static _Thread_local bool is_prober;

static void *prober(void *arg)
{
    struct ready *r = arg;
    enum as_err err;

    is_prober = true;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        r->running = true;
        r->kicked = false;
        r->started_ms = clock_mono_ms();
        r->failures_at_start = atomic_load(&r->failures);
        atomic_store_explicit(&r->stall_at, r->started_ms + r->stall_ms,
                              memory_order_relaxed);
        pthread_mutex_unlock(&r->mu);
        err = r->ping(r->arg);                  /* may wait: no lock held */
        atomic_store_explicit(&r->stall_at, 0, memory_order_relaxed);
        /* "db.stall_ended" only after this ping's own "db.stalled" */
        if (atomic_exchange(&r->stall_said, 0) ==
            r->started_ms + r->stall_ms)
            log_event(err == AS_OK ? LOG_INFO : LOG_WARN, "db.stall_ended",
                      NULL, json_pack("{s:I, s:s}", "ping_ms",
                                      (json_int_t)since(clock_mono_ms(),
                                                        r->started_ms),
                                      "result", as_err_code(err)));
        pthread_mutex_lock(&r->mu);
        r->running = false;
        r->last_ok = err == AS_OK;
        r->failures_before_last = r->failures_at_start;
        r->ended_ms = clock_mono_ms();
        r->pings++;
        pthread_cond_broadcast(&r->ended);
        while (!r->stopping && !r->kicked &&
               since(clock_mono_ms(), r->ended_ms) < r->interval_ms)
            wait_until(r, &r->cv, r->ended_ms + r->interval_ms);
        /* kicked: still at most one ping per KICK_GAP_MS */
        while (!r->stopping &&
               since(clock_mono_ms(), r->ended_ms) < KICK_GAP_MS)
            wait_until(r, &r->cv, r->ended_ms + KICK_GAP_MS);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

struct ready *ready_new(ready_ping_fn ping, void *arg, uint64_t interval_ms,
                        uint64_t stall_ms)
{
    struct ready *r = calloc(1, sizeof *r);
    pthread_condattr_t ca;

    if (!r)
        return NULL;
    r->ping = ping;
    r->arg = arg;
    r->interval_ms = interval_ms ? interval_ms : 1;
    r->stall_ms = stall_ms;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_cond_init(&r->ended, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&r->thread, NULL, prober, r) != 0) {
        pthread_cond_destroy(&r->ended);
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return NULL;
    }
    (void)pthread_setname_np(r->thread, "auth-ready");
    return r;
}

void ready_free(struct ready *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->ended);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

bool ready_check(struct ready *r, uint64_t now_ms)
{
    bool ok;

    pthread_mutex_lock(&r->mu);
    if (r->running)
        ok = r->last_ok && since(now_ms, r->started_ms) < r->stall_ms;
    else
        ok = r->last_ok;
    /* a call failed after the last finished ping began */
    ok = ok && atomic_load(&r->failures) == r->failures_before_last;
    if (!r->running && !r->kicked &&
        since(now_ms, r->ended_ms) >= KICK_GAP_MS) {
        r->kicked = true;
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

void ready_failed(struct ready *r)
{
    /* a ping's own failure is its result, and asks for no other ping:
     * with the database down that would be a ping every KICK_GAP_MS */
    if (is_prober)
        return;
    atomic_fetch_add(&r->failures, 1);
    pthread_mutex_lock(&r->mu);
    r->kicked = true;           /* a running ping began too early: next */
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

bool ready_stalled(struct ready *r, uint64_t now_ms)
{
    uint64_t at = atomic_load_explicit(&r->stall_at, memory_order_relaxed);

    if (at == 0 || now_ms < at)
        return false;
    if (atomic_exchange(&r->stall_said, at) != at)   /* once a ping */
        log_event(LOG_WARN, "db.stalled", NULL,
                  json_pack("{s:I, s:s}", "ping_ms",
                            (json_int_t)(now_ms - at + r->stall_ms),
                            "hint", "the database did not answer a ping; "
                            "calls that need it are refused at once until "
                            "it does"));
    return true;
}

bool ready_wait_first(struct ready *r, uint64_t timeout_ms)
{
    uint64_t end = clock_mono_ms() + timeout_ms;
    bool ok;

    pthread_mutex_lock(&r->mu);
    while (r->pings == 0 && clock_mono_ms() < end)
        wait_until(r, &r->ended, end);
    ok = r->pings > 0 && r->last_ok;
    pthread_mutex_unlock(&r->mu);
    return ok;
}
