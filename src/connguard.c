/* connguard.c: the header and body deadlines, the connection limits, and
 * idle keep-alive connections held outside libmicrohttpd (README.md,
 * "Connections"). libmicrohttpd's idle timeout restarts on every byte, its
 * per-address limit counts exact IPv6 addresses, and it keeps a zeroed
 * 16 KiB pool resident for every connection it holds, idle or not; so the
 * deadlines and limits are kept here, fed by its connection notifications,
 * and a connection idle between requests is parked here on a few dozen
 * bytes until its next request arrives. */
#include "connguard.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/sockios.h>       /* SIOCINQ */
#include <linux/tcp.h>           /* struct tcp_info with tcpi_bytes_received */

#include "clock.h"
#include "crypto.h"
#include "log.h"

struct cg_conn {
    struct cg_conn *next;        /* bucket chain */
    uint8_t key[16];             /* IPv4 as ::ffff:a.b.c.d, IPv6 its /64 */
    size_t bucket;
    int fd;                      /* the server's; parked: the guard's */
    enum {
        CG_HEADERS, CG_BODY, CG_SERVED,   /* what it waits for */
        CG_PARKED,               /* idle, held by the guard */
        CG_HANDOFF,              /* parked, being given back to the server */
        CG_FREE                  /* not a connection's (see wake_one()) */
    } phase;
    bool expired;                /* handed to expire() already */
    uint64_t rx_mark;            /* bytes received when the wait began */
    uint64_t first_ms;           /* first byte of this request, 0: none */
    uint64_t body_ms;            /* when its headers were complete */
    uint64_t idle_ms;            /* idle since (handoff: handed at) */
    uint64_t taken;              /* bytes the server had read by then */
    uint64_t seq;                /* names a handoff */
    size_t target_len;           /* the request target as read, plus 1
                                    (0: not known); the connection's server
                                    thread's alone (connguard_target()) */
    struct cg_conn *older, *newer;  /* parked: in the order they parked */
    socklen_t peer_len;          /* 0: not an IP peer (never parked) */
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer;
};

struct connguard {
    pthread_mutex_t mu;
    uint64_t timeout_ms;         /* first byte to complete headers */
    uint64_t body_timeout_ms;    /* complete headers to complete body */
    unsigned per_prefix;
    size_t nbuckets;             /* a power of two */
    uint8_t hkey[CRYPT_SIPHASH_KEY_LEN];
    pthread_t thread;
    bool running, stopping;
    unsigned period_ms;
    size_t open;                 /* recorded connections, parked ones too */
    size_t max_conns;            /* 0: no limit */
    /* parking (off until connguard_set_parking()) */
    int epfd, stopfd;
    uint64_t idle_timeout_ms;    /* a parked one is closed this long idle */
    uint64_t min_idle_ms;        /* idle less than this: not parked */
    connguard_wake_fn wake;
    void *wake_arg;
    uint64_t next_seq;
    unsigned parked_since_trim;
    struct cg_conn *oldest, *newest;    /* the parked ones */
    /* The records: one array, used from its start (its pages touched as
     * connections come) and reused through a free list, so that parked
     * connections' records lie together, not one on each page of the
     * heap between the pools that libmicrohttpd freed. */
    struct cg_conn *slab, *unused;
    size_t nslab, used;
    struct cg_conn **buckets;
};

/* A free record, or NULL when all `max_conns` are taken; under g->mu
 * (with no limit, one from the heap). */
static struct cg_conn *record_new(struct connguard *g)
{
    struct cg_conn *c = g->unused;

    if (g->nslab == 0)
        return malloc(sizeof *c);
    if (c)
        g->unused = c->next;
    else if (g->used < g->nslab)
        c = &g->slab[g->used++];
    return c;
}

static void record_free(struct connguard *g, struct cg_conn *c)
{
    if (g->nslab == 0) {
        free(c);
        return;
    }
    c->phase = CG_FREE;
    c->fd = -1;
    c->next = g->unused;
    g->unused = c;
}

/* Takes parked `c` out of the parked order and the epoll set; under
 * g->mu. */
static void unpark(struct connguard *g, struct cg_conn *c)
{
    (void)epoll_ctl(g->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->older)
        c->older->newer = c->newer;
    else
        g->oldest = c->newer;
    if (c->newer)
        c->newer->older = c->older;
    else
        g->newest = c->older;
    c->older = c->newer = NULL;
}

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
    g->nslab = max_conns;
    g->slab = max_conns ? calloc(max_conns, sizeof *g->slab) : NULL;
    if (!g->buckets || (max_conns && !g->slab)) {
        free(g->buckets);
        free(g->slab);
        free(g);
        return NULL;
    }
    g->nbuckets = n;
    g->max_conns = max_conns;
    g->timeout_ms = header_timeout_ms;
    g->body_timeout_ms = body_timeout_ms;
    g->per_prefix = per_prefix;
    g->epfd = epoll_create1(EPOLL_CLOEXEC);
    g->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g->epfd >= 0 && g->stopfd >= 0) {
        struct epoll_event ev;

        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.ptr = g;                        /* the stop signal */
        if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->stopfd, &ev) != 0) {
            close(g->stopfd);
            g->stopfd = -1;
        }
    }
    if (g->epfd < 0 || g->stopfd < 0) {
        if (g->epfd >= 0)
            close(g->epfd);
        if (g->stopfd >= 0)
            close(g->stopfd);
        free(g->buckets);
        free(g->slab);
        free(g);
        return NULL;
    }
    crypt_siphash_keygen(g->hkey);    /* chains an attacker cannot aim */
    pthread_mutex_init(&g->mu, NULL);
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
            if (c->phase == CG_PARKED)
                close(c->fd);       /* the epoll set goes with g->epfd */
            record_free(g, c);
        }
    }
    free(g->slab);
    if (g->epfd >= 0)
        close(g->epfd);
    if (g->stopfd >= 0)
        close(g->stopfd);
    free(g->buckets);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* The counting key of `sa`: IPv4 (also IPv4-mapped) whole, IPv6 its /64.
 * False for other families, which all share one key (every client on a
 * Unix socket counts as one address) and are never parked. */
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

/* Closes parked `c`'s socket and forgets it; under g->mu. */
static void evict(struct connguard *g, struct cg_conn *c);

/* Whether `c` was recorded with the address `sa` (port included). */
static bool same_peer(const struct cg_conn *c, const struct sockaddr *sa)
{
    if (!sa || c->peer_len == 0 || sa->sa_family != c->peer.sa.sa_family)
        return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const void *)sa;

        return in4->sin_port == c->peer.in4.sin_port &&
               in4->sin_addr.s_addr == c->peer.in4.sin_addr.s_addr;
    }
    {
        const struct sockaddr_in6 *in6 = (const void *)sa;

        return in6->sin6_port == c->peer.in6.sin6_port &&
               memcmp(&in6->sin6_addr, &c->peer.in6.sin6_addr, 16) == 0;
    }
}

/* Starts `c`'s wait for a request's headers, `rx_bytes` received so far. */
static void await_request(struct cg_conn *c, uint64_t rx_bytes,
                          uint64_t now_ms)
{
    c->phase = CG_HEADERS;
    c->rx_mark = rx_bytes;
    c->first_ms = 0;
    if (rx_bytes != 0)                          /* data already there */
        c->first_ms = now_ms ? now_ms : 1;
    c->idle_ms = now_ms;
}

struct cg_conn *connguard_open(struct connguard *g, const struct sockaddr *sa,
                               int fd, uint64_t rx_bytes, uint64_t now_ms)
{
    struct cg_conn n, *c, *p, *idlest = NULL;
    unsigned same = 0;

    memset(&n, 0, sizeof n);
    if (!prefix_key(sa, n.key))
        memset(n.key, 0xff, sizeof n.key);  /* e.g. a Unix socket */
    else {
        n.peer_len = sa->sa_family == AF_INET ? sizeof n.peer.in4
                                              : sizeof n.peer.in6;
        memcpy(&n.peer, sa, n.peer_len);
    }
    n.bucket = (size_t)(crypt_siphash(n.key, sizeof n.key, g->hkey) &
                        (g->nbuckets - 1));
    n.fd = fd;
    await_request(&n, rx_bytes, now_ms);
    pthread_mutex_lock(&g->mu);
    for (p = g->buckets[n.bucket]; p; p = p->next) {
        /* a parked connection given back: its record, its place */
        if (p->phase == CG_HANDOFF && p->fd == fd && same_peer(p, sa)) {
            p->expired = false;
            await_request(p, rx_bytes, now_ms);
            pthread_mutex_unlock(&g->mu);
            return p;
        }
        if (memcmp(p->key, n.key, sizeof n.key) != 0)
            continue;
        same++;
        if (p->phase == CG_PARKED && (!idlest || p->idle_ms < idlest->idle_ms))
            idlest = p;
    }
    /* At a limit, the longest idle of the parked connections that fill
     * it is closed to make room (idle keep-alive connections are the
     * server's to close at any time); without one the new one is
     * refused. Only records of the array are evicted here: the guard's
     * thread may still hold an event naming one (see wake_one()). */
    if (g->per_prefix && same >= g->per_prefix && idlest && g->nslab &&
        same - 1 < g->per_prefix)
        evict(g, idlest);
    else if (g->per_prefix && same >= g->per_prefix)
        goto refuse;
    if (g->max_conns && g->open >= g->max_conns && g->oldest)
        evict(g, g->oldest);
    c = NULL;
    if (!(g->max_conns && g->open >= g->max_conns))
        c = record_new(g);
    if (c) {
        *c = n;
        c->next = g->buckets[c->bucket];
        g->buckets[c->bucket] = c;
        g->open++;
    }
    pthread_mutex_unlock(&g->mu);
    return c;
refuse:
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* Takes `c` out of its bucket and frees it; under g->mu. */
static void drop(struct connguard *g, struct cg_conn *c)
{
    struct cg_conn **pp;

    for (pp = &g->buckets[c->bucket]; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            g->open--;
            break;
        }
    }
    record_free(g, c);
}

static void evict(struct connguard *g, struct cg_conn *c)
{
    unpark(g, c);
    close(c->fd);
    drop(g, c);
}

void connguard_close(struct connguard *g, struct cg_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&g->mu);
    drop(g, c);
    pthread_mutex_unlock(&g->mu);
}

void connguard_request_line(struct connguard *g, struct cg_conn *c,
                            uint64_t now_ms, size_t target_len)
{
    if (!c)
        return;
    pthread_mutex_lock(&g->mu);
    if (c->phase == CG_HEADERS && c->first_ms == 0)
        c->first_ms = now_ms ? now_ms : 1;
    c->target_len = target_len + 1;
    pthread_mutex_unlock(&g->mu);
}

bool connguard_target(struct connguard *g, struct cg_conn *c, size_t *len)
{
    /* Written only by the connection's own server thread (the request
     * line, the request's end), which is the caller: no lock on the
     * request path. */
    (void)g;
    if (!c || c->target_len == 0)
        return false;
    *len = c->target_len - 1;
    return true;
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
                            uint64_t rx_bytes, uint64_t now_ms)
{
    if (!c)
        return;
    pthread_mutex_lock(&g->mu);
    await_request(c, 0, now_ms);
    c->rx_mark = c->taken = rx_bytes;
    c->target_len = 0;                   /* the next request's is not known */
    pthread_mutex_unlock(&g->mu);
}


/* A record being given back to the server that it never took (it refused
 * the socket, and closed it, after saying yes) is forgotten after this. */
#define HANDOFF_MS 10000u

/* Starts `c`'s header deadline once a byte past its mark has arrived;
 * true when the deadline of what it waits for has passed at `now_ms`. */
static bool late(const struct connguard *g, struct cg_conn *c,
                 uint64_t now_ms, connguard_rx_fn rx)
{
    if (c->phase == CG_SERVED || c->phase == CG_PARKED ||
        c->phase == CG_HANDOFF)
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

/* True when `c`, parked or being handed back, is done with at `now_ms`:
 * idle past the idle timeout, or a handoff the server never took. */
static bool stale(const struct connguard *g, const struct cg_conn *c,
                  uint64_t now_ms)
{
    uint64_t limit = c->phase == CG_PARKED    ? g->idle_timeout_ms
                     : c->phase == CG_HANDOFF ? HANDOFF_MS
                                              : UINT64_MAX;

    return limit != UINT64_MAX && now_ms >= c->idle_ms &&
           now_ms - c->idle_ms >= limit;
}

unsigned connguard_sweep(struct connguard *g, uint64_t now_ms,
                         connguard_rx_fn rx, connguard_expire_fn expire,
                         void *arg, unsigned *bodies)
{
    unsigned n = 0, b = 0;
    size_t i;

    pthread_mutex_lock(&g->mu);
    for (i = 0; i < g->nbuckets; i++) {
        struct cg_conn **pp = &g->buckets[i], *c;

        while ((c = *pp) != NULL) {
            if (stale(g, c, now_ms)) {
                if (c->phase == CG_PARKED) {    /* ours to close */
                    unpark(g, c);
                    close(c->fd);
                }
                *pp = c->next;
                g->open--;
                record_free(g, c);
                continue;
            }
            pp = &c->next;
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

/* Bytes socket `fd` has received that nobody has read yet (the kernel's
 * queue), or CG_RX_UNKNOWN. */
static uint64_t queued(int fd)
{
    int n = 0;

    if (ioctl(fd, SIOCINQ, &n) != 0 || n < 0)
        return CG_RX_UNKNOWN;
    return (uint64_t)n;
}

/* What the server has read of socket `fd`: received less queued. */
static uint64_t taken(int fd)
{
    uint64_t rx = connguard_tcp_rx(fd), q = queued(fd);

    return rx == CG_RX_UNKNOWN || q == CG_RX_UNKNOWN || q > rx
               ? CG_RX_UNKNOWN
               : rx - q;
}

void connguard_set_parking(struct connguard *g, uint64_t idle_timeout_ms,
                           uint64_t min_idle_ms, connguard_wake_fn wake,
                           void *arg)
{
    g->idle_timeout_ms = idle_timeout_ms;
    g->min_idle_ms = min_idle_ms;
    g->wake = wake;
    g->wake_arg = arg;
}

bool connguard_parkable(const struct cg_conn *c)
{
    return c && c->peer_len != 0;   /* set for AF_INET and AF_INET6 only */
}

bool connguard_park(struct connguard *g, struct cg_conn *c, int fd,
                    uint64_t now_ms)
{
    struct epoll_event ev;
    uint64_t have;
    bool ok = false;

    if (!c || fd < 0 || !g->wake || c->peer_len == 0)
        return false;
    have = taken(fd);
    pthread_mutex_lock(&g->mu);
    /* Idle for a while (not closed right after its answer), and nothing
     * of a next request read by the server since its last one: the
     * socket is where it was between two requests, and any byte that has
     * come since is still in the kernel's queue for the next reader. */
    if (!g->stopping && c->phase == CG_HEADERS && have != CG_RX_UNKNOWN &&
        have == c->taken && now_ms >= c->idle_ms &&
        now_ms - c->idle_ms >= g->min_idle_ms) {
        int mine = fcntl(fd, F_DUPFD_CLOEXEC, 0);

        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = c;
        if (mine >= 0 && epoll_ctl(g->epfd, EPOLL_CTL_ADD, mine, &ev) == 0) {
            c->fd = mine;
            c->phase = CG_PARKED;
            c->older = g->newest;
            c->newer = NULL;
            if (g->newest)
                g->newest->newer = c;
            else
                g->oldest = c;
            g->newest = c;
            g->parked_since_trim++;
            ok = true;
        } else if (mine >= 0) {
            close(mine);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return ok;
}

/* A parked connection has something to read: bytes of its next request,
 * handed to the server with its record, or the client's end, and then it
 * is closed here. */
static void wake_one(struct connguard *g, struct cg_conn *c)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer;
    socklen_t len;
    size_t bucket;
    uint64_t seq;
    struct cg_conn *p;
    ssize_t n;
    char b;
    int fd;

    pthread_mutex_lock(&g->mu);
    /* An event of this batch may name a record evicted meanwhile, and
     * perhaps used again: records of the array stay memory of ours, and
     * one parked again is woken only if its socket has bytes. */
    if (c->phase != CG_PARKED || g->stopping) {
        pthread_mutex_unlock(&g->mu);
        return;
    }
    n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        pthread_mutex_unlock(&g->mu);
        return;                                 /* nothing after all */
    }
    if (n <= 0) {                               /* closed or reset */
        evict(g, c);
        pthread_mutex_unlock(&g->mu);
        return;
    }
    unpark(g, c);
    c->taken = taken(c->fd);
    c->phase = CG_HANDOFF;
    c->idle_ms = clock_mono_ms();
    c->seq = ++g->next_seq;
    seq = c->seq;
    bucket = c->bucket;
    fd = c->fd;
    len = c->peer_len;
    memcpy(&peer, &c->peer, len);
    pthread_mutex_unlock(&g->mu);
    if (g->wake(fd, &peer.sa, len, g->wake_arg))
        return;               /* its record goes with it: connguard_open() */
    /* refused, and the socket closed by the server: forget the record,
     * unless a connection given the same descriptor took it meanwhile */
    pthread_mutex_lock(&g->mu);
    for (p = g->buckets[bucket]; p; p = p->next) {
        if (p->seq == seq && p->phase == CG_HANDOFF) {
            drop(g, p);
            break;
        }
    }
    pthread_mutex_unlock(&g->mu);
}

static void shut(int fd, void *arg)
{
    (void)arg;
    (void)shutdown(fd, SHUT_RDWR);  /* the server sees EOF and closes it */
}

/* The guard's thread: wakes parked connections as their bytes come, and
 * sweeps every period_ms. */
static void *guard(void *arg)
{
    struct connguard *g = arg;
    struct epoll_event ev[64];
    uint64_t next = clock_mono_ms() + g->period_ms;

    for (;;) {
        uint64_t now = clock_mono_ms();
        unsigned closed, bodies, parked;
        bool stop = false;
        int i, n;

        n = epoll_wait(g->epfd, ev, 64,
                       now >= next ? 0 : (int)(next - now));
        for (i = 0; i < n; i++) {
            if (ev[i].data.ptr == g)
                stop = true;
            else
                wake_one(g, ev[i].data.ptr);
        }
        if (stop)
            break;
        now = clock_mono_ms();
        if (now < next)
            continue;
        next = now + g->period_ms;
        closed = connguard_sweep(g, now, connguard_tcp_rx, shut, NULL,
                                 &bodies);
        if (closed > bodies)
            log_event(LOG_WARN, "http.header_timeout", NULL,
                      json_pack("{s:i}", "closed", (int)(closed - bodies)));
        if (bodies)
            log_event(LOG_WARN, "http.body_timeout", NULL,
                      json_pack("{s:i}", "closed", (int)bodies));
        pthread_mutex_lock(&g->mu);
        parked = g->parked_since_trim;
        if (parked >= 32)
            g->parked_since_trim = 0;
        pthread_mutex_unlock(&g->mu);
        /* The pools of connections parked since are free now; glibc
         * returns free pages inside its heaps only when asked. */
        if (parked >= 32)
            (void)malloc_trim(0);
    }
    return NULL;
}

bool connguard_start(struct connguard *g, unsigned period_ms)
{
    g->period_ms = period_ms ? period_ms : 1;
    g->stopping = false;
    if (pthread_create(&g->thread, NULL, guard, g) != 0)
        return false;
    (void)pthread_setname_np(g->thread, "auth-connguard");
    g->running = true;
    return true;
}

/* Closes the parked connections; under g->mu. They are idle ones:
 * closed, as the server closes its own at its stop. */
static void close_parked(struct connguard *g)
{
    size_t i;

    for (i = 0; i < g->nbuckets; i++) {
        struct cg_conn **pp = &g->buckets[i], *c;

        while ((c = *pp) != NULL) {
            if (c->phase != CG_PARKED) {
                pp = &c->next;
                continue;
            }
            unpark(g, c);
            close(c->fd);
            *pp = c->next;
            g->open--;
            record_free(g, c);
        }
    }
}

void connguard_quiesce(struct connguard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->stopping = true;                 /* no more parking, no waking */
    /* With the thread running, only records of the slab may go now: it
     * may hold an event naming one, and wake_one() reads it (a record
     * of the slab stays memory of ours, freed by malloc it would not). */
    if (g->nslab || !g->running)
        close_parked(g);
    pthread_mutex_unlock(&g->mu);
}

unsigned connguard_cut_unread(struct connguard *g)
{
    unsigned n = 0;
    size_t i;

    if (!g)
        return 0;
    pthread_mutex_lock(&g->mu);
    for (i = 0; i < g->nbuckets; i++) {
        struct cg_conn *c;

        for (c = g->buckets[i]; c; c = c->next) {
            /* An idle connection waits for headers too, with nothing
             * sent: the server's stop closes it anyway. */
            if ((c->phase == CG_HEADERS && c->first_ms == 0) ||
                (c->phase != CG_HEADERS && c->phase != CG_BODY))
                continue;
            shut(c->fd, NULL);          /* under the lock: still ours */
            n++;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return n;
}

void connguard_stop(struct connguard *g)
{
    uint64_t one = 1;

    if (!g)
        return;
    connguard_quiesce(g);
    if (g->running) {
        (void)!write(g->stopfd, &one, sizeof one);
        pthread_join(g->thread, NULL);
        g->running = false;
    }
    pthread_mutex_lock(&g->mu);
    close_parked(g);
    pthread_mutex_unlock(&g->mu);
}
