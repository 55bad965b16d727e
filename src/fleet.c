/* fleet.c: the LISTEN connection and the key poll of one instance among
 * several on one PostgreSQL database. */
#include "fleet.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "clock.h"
#include "log.h"
#include "pqlib.h"
#include "scache.h"
#include "sec.h"
#include "uuid.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define APP_NAME "auth-serve-listen"
/* The listener pings its connection (an empty query) this often. A
 * connection whose server process stands still, or whose packets a
 * network drops, stays open and silent, and an instance reading nothing
 * from it took itself for up to date and answered a session revoked at
 * another instance from its cache for as long as the cache kept it (a
 * review: 45 s). A ping unanswered PING_STALE_MS ends the listener's
 * vouching (scache_heard()) until it is answered: checks go to the
 * database, and while the database fails too (hung: the usual cause) the
 * cache answers within its time to live, as for a lost connection
 * (scache_check()). Unanswered PING_LOST_MS, longer than a session cache
 * is commonly kept (emptied by a new connection, it would turn a long
 * hang's answers from the cache into 503s), the connection is replaced:
 * a server process stuck for good. TCP's timeouts end a dead network
 * path sooner. */
#define PING_EVERY_MS 250
#define PING_STALE_MS 1000
#define PING_LOST_MS 30000

/* Two threads: the listener reads its connection and never waits on
 * anything else, so it can vouch for the session cache every
 * FLEET_HEARD_EVERY_MS (scache_heard()); the keys thread polls the keys
 * table, a database call that may wait as long as the database does. */
struct fleet {
    struct app *app;
    pthread_t thread, keys_thread;
    bool keys_started;
    int wake[2];                 /* written to stop the listener */
    int keys_wake[2];            /* written: poll the keys now, or stop */
    atomic_bool stop;
    PGconn *conn;                /* the listener's only */
    uint64_t heard_at;           /* its last scache_heard() mark, or 0 */
    bool ping_out;               /* a ping's answer is awaited */
    bool stalled;                /* it has been for PING_STALE_MS */
    uint64_t ping_at;            /* monotonic ms the last ping went, or 0 */
    uint64_t ping_mark;          /* scache_mark() when it went */
    const struct sec_keys **old; /* replaced key sets, freed at stop */
    size_t nold;                 /* (both the keys thread's) */
    pthread_mutex_t mu;          /* with `polled`, */
    pthread_cond_t polled;       /* signalled when a poll ends */
    _Atomic uint64_t polled_at;  /* monotonic ms of the last good poll */
};

/* Connects and listens; NULL on failure (logged without the URL, which
 * may hold a password). Ours come after the URL's settings and win. */
static PGconn *listen_connect(const struct cfg *cfg)
{
    static const char *const keys[] = {
        "dbname", "application_name", "connect_timeout", "keepalives",
        "keepalives_idle", "keepalives_interval", "keepalives_count",
        "tcp_user_timeout", "target_session_attrs", NULL,
    };
    const char *vals[] = {
        cfg->database_url, APP_NAME, "3", "1", "10", "5", "3", "25000",
        "read-write", NULL,          /* the primary: a standby never */
    };                               /* hears a NOTIFY */
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    PGresult *r = NULL;

    if (c && PQstatus(c) == CONNECTION_OK) {
        r = PQexec(c, "LISTEN auth_revoke; LISTEN auth_keys");
        if (PQresultStatus(r) == PGRES_COMMAND_OK) {
            PQclear(r);
            PQsetnonblocking(c, 1);
            return c;
        }
    }
    PQclear(r);
    PQfinish(c);
    return NULL;
}

/* True when `s` is as long as an id can be and has its characters. */
static bool id_shaped(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n < UUID_STR_LEN &&
           strspn(s, "0123456789abcdefABCDEF-") == n;
}

/* One notification: a revocation ("s:<sid>" or "u:<user id>") or a
 * change of the keys table (sets *keys_changed). */
static void heard(struct fleet *f, const PGnotify *n, bool *keys_changed)
{
    const char *p = n->extra ? n->extra : "";

    if (strcmp(n->relname, "auth_keys") == 0) {
        *keys_changed = true;
        return;
    }
    if (strcmp(n->relname, "auth_revoke") != 0 || strlen(p) < 3 ||
        p[1] != ':' || !id_shaped(p + 2))
        return;
    if (p[0] == 's')
        scache_forget(f->app->scache, p + 2);
    else if (p[0] == 'u')
        scache_forget_user(f->app->scache, p + 2);
}

/* Reads what the connection has; false when it is lost. */
static bool drain(struct fleet *f, bool *keys_changed)
{
    PGnotify *n;
    PGresult *r;

    if (!PQconsumeInput(f->conn))
        return false;
    /* the ping's answer, to its end */
    while (f->ping_out && !PQisBusy(f->conn)) {
        r = PQgetResult(f->conn);
        if (!r) {
            f->ping_out = false;
            break;
        }
        PQclear(r);
    }
    while ((n = PQnotifies(f->conn)) != NULL) {
        heard(f, n, keys_changed);
        PQfreemem(n);
    }
    return PQstatus(f->conn) == CONNECTION_OK;
}

static void keys_kick(struct fleet *f);

/* Swaps in the keys of the table when they changed, and marks them
 * current (fleet_keys_current()). */
static void keys_poll(struct fleet *f)
{
    struct app *a = f->app;
    struct sec_keys *k = NULL;
    const struct sec_keys **grown;
    char why[256] = "";
    /* The mark is the poll's start: a poll that read the table before
     * the process stood still vouches for nothing after. */
    uint64_t started = clock_mono_ms();
    bool read = false;
    enum as_err err = sec_keys_poll(a->cfg, a->repo, app_keys(a),
                                    clock_ms(), &k, &read, why, sizeof why);

    if (err != AS_OK && why[0])
        log_event(LOG_WARN, "keys.poll_failed", NULL,
                  json_pack("{s:s}", "message", why));
    /* A table read but not made a set (a key that does not open) leaves
     * the keys in force as the instance's best, and current: refusing
     * to sign over it would stop every login until an operator came. */
    if (err != AS_OK && !read)
        return;
    if (k) {
        grown = realloc(f->old, (f->nold + 1) * sizeof *f->old);
        if (!grown) {
            sec_keys_free(k);
            return;
        }
        f->old = grown;
        f->old[f->nold++] = atomic_exchange(&a->keys, k);
        log_event(LOG_INFO, "keys.reloaded", NULL,
                  json_pack("{s:s, s:s}", "kid", sec_keys_kid(k), "cause",
                            "database"));
    }
    pthread_mutex_lock(&f->mu);
    atomic_store(&f->polled_at, started);         /* the keys are current */
    pthread_cond_broadcast(&f->polled);
    pthread_mutex_unlock(&f->mu);
}

/* Whether the last good poll started at most FLEET_KEYS_STALE_MS before
 * `now` (one that started after `now` was read counts). */
static bool polled_since(struct fleet *f, uint64_t now)
{
    uint64_t at = atomic_load(&f->polled_at);

    return at >= now || now - at <= FLEET_KEYS_STALE_MS;
}

bool fleet_keys_current(struct fleet *f, unsigned wait_ms)
{
    uint64_t until = clock_mono_ms() + wait_ms, now;
    struct timespec ts;
    bool current;

    if (polled_since(f, until - wait_ms))
        return true;                     /* the common case: no lock */
    keys_kick(f);
    clock_deadline(&ts, wait_ms);
    pthread_mutex_lock(&f->mu);
    for (;;) {
        now = clock_mono_ms();
        current = polled_since(f, now);
        if (current || now >= until || atomic_load(&f->stop))
            break;
        pthread_cond_timedwait(&f->polled, &f->mu, &ts);
    }
    pthread_mutex_unlock(&f->mu);
    return current;
}

/* Waits up to `ms` for the connection (when there is one) or the stop
 * pipe; true when the connection has something to read. */
static bool wait_for(struct fleet *f, int ms)
{
    struct pollfd p[2] = { { .fd = f->wake[0], .events = POLLIN },
                           { .fd = f->conn ? PQsocket(f->conn) : -1,
                             .events = POLLIN } };

    if (ms < 0)
        ms = 0;
    if (poll(p, 2, ms) <= 0)
        return false;
    return p[1].fd >= 0 && (p[1].revents & (POLLIN | POLLERR | POLLHUP));
}

/* Sends a ping when one is due and none is out (PING_EVERY_MS), at
 * `now` (scache mark `mark`); false when the connection is lost, or a
 * ping went unanswered PING_LOST_MS. */
static bool ping(struct fleet *f, uint64_t now, uint64_t mark)
{
    if (f->ping_out)
        return now - f->ping_at <= PING_LOST_MS &&
               PQflush(f->conn) >= 0;
    if (f->ping_at && now - f->ping_at < PING_EVERY_MS)
        return true;
    if (!PQsendQuery(f->conn, ""))
        return false;
    f->ping_out = true;
    f->ping_at = now;
    f->ping_mark = mark;
    return PQflush(f->conn) >= 0;
}

/* The mark the listener vouches for at `now`, heard up to `mark`: none
 * after its ping went while that ping is unanswered PING_STALE_MS. */
static uint64_t vouched(struct fleet *f, uint64_t now, uint64_t mark)
{
    bool stalled = f->ping_out && now - f->ping_at > PING_STALE_MS;

    if (stalled != f->stalled)
        log_event(stalled ? LOG_WARN : LOG_INFO,
                  stalled ? "fleet.listen_stalled" : "fleet.listen_answering",
                  NULL, stalled ? json_pack(
                      "{s:s}", "hint", "the LISTEN connection answers no "
                      "ping: bearer checks ask the database until it does")
                                : NULL);
    f->stalled = stalled;
    return stalled ? f->ping_mark : mark;
}

static void lost(struct fleet *f, const char *why)
{
    log_event(LOG_WARN, "fleet.listen_lost", NULL,
              json_pack("{s:s, s:s}", "reason", why, "hint",
                        "revocations at other instances are seen after "
                        "AUTH_SESSION_CACHE_SECONDS until it is back"));
    PQfinish(f->conn);
    f->conn = NULL;
}

/* Asks the keys thread to poll now. */
/* Writes one byte to pipe end `fd` to wake the thread polling the other
 * end. A full non-blocking pipe (EAGAIN) has a wake-up waiting already. */
static void poke(int fd)
{
    ssize_t w;

    do
        w = write(fd, "x", 1);
    while (w < 0 && errno == EINTR);
}

static void keys_kick(struct fleet *f)
{
    poke(f->keys_wake[1]);
}

/* Reads the connection and tells the session cache how far it has
 * heard (scache_heard(): the mark is taken before the read). */
static void listen_step(struct fleet *f)
{
    struct scache *c = f->app->scache;
    uint64_t mark = scache_mark(c);
    bool keys_changed = false, read = drain(f, &keys_changed);
    uint64_t now = clock_mono_ms();
    bool answers = read && ping(f, now, mark);

    /* This thread stood still since its last read (the process was
     * stopped or throttled): the connection may have died meanwhile,
     * and the announcements with it, while what is left of it still
     * reads well once. The cache is emptied before its entries may
     * answer again (its mark is stale until then). */
    if (f->heard_at && mark > f->heard_at + SCACHE_HEARD_SLACK_MS)
        scache_forget_all(c);
    f->heard_at = answers ? mark : 0;
    scache_heard(c, answers ? vouched(f, now, mark) : 0);
    if (!answers)
        lost(f, read ? "no_answer" : "closed");
    if (keys_changed)
        keys_kick(f);
}

static void *run(void *arg)
{
    struct fleet *f = arg;
    uint64_t retry_at = 0, until, now;
    int backoff = BACKOFF_MIN_MS;

    while (!atomic_load(&f->stop)) {
        now = clock_mono_ms();
        if (!f->conn && now >= retry_at) {
            f->conn = listen_connect(f->app->cfg);
            if (f->conn) {
                f->ping_out = f->stalled = false;
                f->ping_at = 0;
                scache_forget_all(f->app->scache);  /* may have missed */
                log_event(LOG_INFO, "fleet.listening", NULL,
                          json_pack("{s:s}", "application_name", APP_NAME));
                backoff = BACKOFF_MIN_MS;
                keys_kick(f);
            } else {
                retry_at = now + (uint64_t)backoff;
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                       : backoff * 2;
            }
        }
        if (f->conn)
            listen_step(f);
        now = clock_mono_ms();
        until = f->conn ? now + FLEET_HEARD_EVERY_MS : retry_at;
        wait_for(f, until > now ? (int)(until - now) : 0);
    }
    scache_heard(f->app->scache, 0);
    PQfinish(f->conn);
    f->conn = NULL;
    return NULL;
}

/* Polls the keys table every FLEET_KEYS_POLL_MS, and at once when the
 * listener asks (its notification, a new connection). */
static void *keys_run(void *arg)
{
    struct fleet *f = arg;
    struct pollfd p = { .fd = f->keys_wake[0], .events = POLLIN };
    char buf[64];

    while (!atomic_load(&f->stop)) {
        keys_poll(f);
        if (poll(&p, 1, FLEET_KEYS_POLL_MS) > 0)
            while (read(f->keys_wake[0], buf, sizeof buf) > 0)
                ;                       /* one poll for all the kicks */
    }
    return NULL;
}

static void close_pair(int fd[2])
{
    if (fd[0] >= 0)
        close(fd[0]);
    if (fd[1] >= 0)
        close(fd[1]);
    fd[0] = fd[1] = -1;
}

/* Wakes both threads to stop, joins those started and frees `f`. */
static void wind_up(struct fleet *f, bool listener)
{
    size_t i;

    atomic_store(&f->stop, true);
    poke(f->wake[1]);
    keys_kick(f);
    if (listener)
        pthread_join(f->thread, NULL);
    if (f->keys_started)
        pthread_join(f->keys_thread, NULL);
    close_pair(f->wake);
    close_pair(f->keys_wake);
    for (i = 0; i < f->nold; i++)
        sec_keys_free((struct sec_keys *)f->old[i]);
    free(f->old);
    pthread_cond_destroy(&f->polled);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

struct fleet *fleet_start(struct app *app)
{
    struct fleet *f;
    pthread_condattr_t ca;
    const char *why;

    if (!pqlib_load(&why))              /* opened by the backend already */
        return NULL;
    f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->app = app;
    f->wake[0] = f->wake[1] = f->keys_wake[0] = f->keys_wake[1] = -1;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->polled, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&f->polled_at, clock_mono_ms());  /* loaded at start */
    if (pipe2(f->wake, O_CLOEXEC) != 0 ||
        pipe2(f->keys_wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        wind_up(f, false);
        return NULL;
    }
    f->keys_started = pthread_create(&f->keys_thread, NULL, keys_run,
                                     f) == 0;
    if (!f->keys_started || pthread_create(&f->thread, NULL, run, f) != 0) {
        wind_up(f, false);
        return NULL;
    }
    (void)pthread_setname_np(f->keys_thread, "auth-keypoll");
    (void)pthread_setname_np(f->thread, "auth-listen");
    return f;
}

void fleet_stop(struct fleet *f)
{
    if (f)
        wind_up(f, true);
}
