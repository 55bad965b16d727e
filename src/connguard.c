/* connguard.c: the header and body deadlines and the per-prefix connection
 * limit (README.md, "Connections"). libmicrohttpd's idle timeout restarts on
 * every byte and its per-address limit counts exact IPv6 addresses, so
 * both are kept here, fed by its connection notifications. */
#include "connguard.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <linux/tcp.h>           /* struct tcp_info with tcpi_bytes_received */

#include "clock.h"
#include "crypto.h"
#include "log.h"

struct cg_conn {
    struct cg_conn *next;        /* bucket chain */
    uint8_t key[16];             /* IPv4 as ::ffff:a.b.c.d, IPv6 its /64 */
    size_t bucket;
    int fd;
    enum { CG_HEADERS, CG_BODY, CG_SERVED } phase;  /* what it waits for */
    bool expired;                /* handed to expire() already */
    uint64_t rx_mark;            /* bytes received when the wait began */
    uint64_t first_ms;           /* first byte of this request, 0: none */
    uint64_t body_ms;            /* when its headers were complete */
};

struct connguard {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t timeout_ms;         /* first byte to complete headers */
    uint64_t body_timeout_ms;    /* complete headers to complete body */
    unsigned per_prefix;
    size_t nbuckets;             /* a power of two */
    uint8_t hkey[CRYPT_SIPHASH_KEY_LEN];
    pthread_t thread;
    bool running, stopping;
    unsigned period_ms;
    struct cg_conn **buckets;
};

struct connguard *connguard_new(uint64_t header_timeout_ms,
                                uint64_t body_timeout_ms,
                                unsigned per_prefix, unsigned max_conns)
{
    struct connguard *g = calloc(1, sizeof *g);
    size_t n = 64;

    if (!g)
        return NULL;
    while (n < max_conns && n < ((size_t)1 << 20))
        n <<= 1;
    g->buckets = calloc(n, sizeof *g->buckets);
    if (!g->buckets) {
        free(g);
        return NULL;
    }
    g->nbuckets = n;
    g->timeout_ms = header_timeout_ms;
    g->body_timeout_ms = body_timeout_ms;
    g->per_prefix = per_prefix;
    crypt_siphash_keygen(g->hkey);    /* chains an attacker cannot aim */
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    return g;
}

void connguard_free(struct connguard *g)
{
    size_t i;

    if (!g)
        return;
    for (i = 0; i < g->nbuckets; i++) {
        while (g->buckets[i]) {
            struct cg_conn *c = g->buckets[i];

            g->buckets[i] = c->next;
            free(c);
        }
    }
    free(g->buckets);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* The counting key of `sa`: IPv4 (also IPv4-mapped) whole, IPv6 its /64.
 * False for other families (not counted). */
static bool prefix_key(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const void *)sa;

        key[10] = key[11] = 0xff;
        memcpy(key + 12, &in4->sin_addr, 4);
        return true;
    }
    if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;

        memcpy(key, &in6->sin6_addr, 16);
        if (memcmp(key, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) != 0)
            memset(key + 8, 0, 8);
        return true;
    }
    return false;
}

struct cg_conn *connguard_open(struct connguard *g, const struct sockaddr *sa,
                               int fd, uint64_t rx_bytes, uint64_t now_ms)
{
    struct cg_conn *c = calloc(1, sizeof *c), *p;
    uint64_t hv;
    unsigned same = 0;

    if (!c)
        return NULL;
    if (!prefix_key(sa, c->key))
        memset(c->key, 0xff, sizeof c->key);  /* e.g. a Unix socket */
    hv = crypt_siphash(c->key, sizeof c->key, g->hkey);
    c->bucket = (size_t)(hv & (g->nbuckets - 1));
    c->fd = fd;
    c->phase = CG_HEADERS;
    c->rx_mark = rx_bytes;
    if (rx_bytes != 0)                          /* data already there */
        c->first_ms = now_ms ? now_ms : 1;
    pthread_mutex_lock(&g->mu);
    for (p = g->buckets[c->bucket]; p; p = p->next)
        same += memcmp(p->key, c->key, sizeof c->key) == 0;
    if (g->per_prefix && same >= g->per_prefix) {
        pthread_mutex_unlock(&g->mu);
        free(c);
        return NULL;
    }
    c->next = g->buckets[c->bucket];
    g->buckets[c->bucket] = c;
    pthread_mutex_unlock(&g->mu);
    return c;
}

void connguard_close(struct connguard *g, struct cg_conn *c)
{
    struct cg_conn **pp;

    if (!c)
        return;
    pthread_mutex_lock(&g->mu);
    for (pp = &g->buckets[c->bucket]; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    pthread_mutex_unlock(&g->mu);
    free(c);
}

void connguard_request_line(struct connguard *g, struct cg_conn *c,
                            uint64_t now_ms)
{
    if (!c)
        return;
    pthread_mutex_lock(&g->mu);
    if (c->phase == CG_HEADERS && c->first_ms == 0)
        c->first_ms = now_ms ? now_ms : 1;
    pthread_mutex_unlock(&g->mu);
}

void connguard_headers_done(struct connguard *g, struct cg_conn *c,
                            uint64_t now_ms)
{
    if (!c)
        return;
    pthread_mutex_lock(&g->mu);
    c->phase = CG_BODY;
    c->body_ms = now_ms;
    pthread_mutex_unlock(&g->mu);
}

void connguard_body_done(struct connguard *g, struct cg_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&g->mu);
    c->phase = CG_SERVED;
    pthread_mutex_unlock(&g->mu);
}

void connguard_request_done(struct connguard *g, struct cg_conn *c,
                            uint64_t rx_bytes)
{
    if (!c)
        return;
    pthread_mutex_lock(&g->mu);
    c->phase = CG_HEADERS;
    c->rx_mark = rx_bytes;
    c->first_ms = 0;
    pthread_mutex_unlock(&g->mu);
}

/* Starts `c`'s header deadline once a byte past its mark has arrived;
 * true when the deadline of what it waits for has passed at `now_ms`. */
static bool late(const struct connguard *g, struct cg_conn *c,
                 uint64_t now_ms, connguard_rx_fn rx)
{
    if (c->phase == CG_SERVED)
        return false;
    if (c->phase == CG_BODY)
        return now_ms >= c->body_ms &&
               now_ms - c->body_ms >= g->body_timeout_ms;
    if (c->first_ms == 0) {
        uint64_t got = rx(c->fd);

        if (got == CG_RX_UNKNOWN || c->rx_mark == CG_RX_UNKNOWN ||
            got != c->rx_mark)
            c->first_ms = now_ms ? now_ms : 1;
        return false;
    }
    return now_ms >= c->first_ms && now_ms - c->first_ms >= g->timeout_ms;
}

unsigned connguard_sweep(struct connguard *g, uint64_t now_ms,
                         connguard_rx_fn rx, connguard_expire_fn expire,
                         void *arg, unsigned *bodies)
{
    unsigned n = 0, b = 0;
    size_t i;

    pthread_mutex_lock(&g->mu);
    for (i = 0; i < g->nbuckets; i++) {
        struct cg_conn *c;

        for (c = g->buckets[i]; c; c = c->next) {
            if (c->expired || !late(g, c, now_ms, rx))
                continue;
            c->expired = true;
            expire(c->fd, arg);     /* under the lock: the fd is still ours */
            n++;
            b += c->phase == CG_BODY;
        }
    }
    pthread_mutex_unlock(&g->mu);
    if (bodies)
        *bodies = b;
    return n;
}

uint64_t connguard_tcp_rx(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;

    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) +
                  sizeof ti.tcpi_bytes_received)
        return CG_RX_UNKNOWN;
    return ti.tcpi_bytes_received;
}

static void shut(int fd, void *arg)
{
    (void)arg;
    (void)shutdown(fd, SHUT_RDWR);  /* the server sees EOF and closes it */
}

static void *sweeper(void *arg)
{
    struct connguard *g = arg;

    pthread_mutex_lock(&g->mu);
    while (!g->stopping) {
        struct timespec ts;
        unsigned closed, bodies;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(g->period_ms % 1000u) * 1000000L;
        ts.tv_sec += (time_t)(g->period_ms / 1000u + ts.tv_nsec / 1000000000L);
        ts.tv_nsec %= 1000000000L;
        (void)pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        if (g->stopping)
            break;
        pthread_mutex_unlock(&g->mu);
        closed = connguard_sweep(g, clock_mono_ms(), connguard_tcp_rx, shut,
                                 NULL, &bodies);
        if (closed > bodies)
            log_event(LOG_WARN, "http.header_timeout", NULL,
                      json_pack("{s:i}", "closed", (int)(closed - bodies)));
        if (bodies)
            log_event(LOG_WARN, "http.body_timeout", NULL,
                      json_pack("{s:i}", "closed", (int)bodies));
        pthread_mutex_lock(&g->mu);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

bool connguard_start(struct connguard *g, unsigned period_ms)
{
    g->period_ms = period_ms ? period_ms : 1;
    g->stopping = false;
    if (pthread_create(&g->thread, NULL, sweeper, g) != 0)
        return false;
    g->running = true;
    return true;
}

void connguard_stop(struct connguard *g)
{
    if (!g || !g->running)
        return;
    pthread_mutex_lock(&g->mu);
    g->stopping = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    g->running = false;
}
