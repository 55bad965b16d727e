/* The header and body deadlines and the per-prefix connection limit, with
 * time and the received-byte counts given by the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "connguard.h"

/* Received-byte counts by fd, as the kernel would report them. */
static uint64_t rx_by_fd[16];
static int expired[16];

static uint64_t fake_rx(int fd)
{
    return rx_by_fd[fd];
}

static void note_expired(int fd, void *arg)
{
    (void)arg;
    expired[fd]++;
}

static struct sockaddr_in v4(const char *ip)
{
    struct sockaddr_in a;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static struct sockaddr_in6 v6(const char *ip)
{
    struct sockaddr_in6 a;

    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &a.sin6_addr);
    return a;
}

static unsigned sweep(struct connguard *g, uint64_t now)
{
    return connguard_sweep(g, now, fake_rx, note_expired, NULL, NULL);
}

static void test_deadline_from_first_byte(void **state)
{
    struct connguard *g = connguard_new(2000, 3000, 0, 16);
    struct sockaddr_in a = v4("192.0.2.1");
    struct cg_conn *idle, *slow, *quick;

    (void)state;
    memset(rx_by_fd, 0, sizeof rx_by_fd);
    memset(expired, 0, sizeof expired);
    idle = connguard_open(g, (struct sockaddr *)&a, 1, 0, 1000);
    slow = connguard_open(g, (struct sockaddr *)&a, 2, 5, 1000);
    quick = connguard_open(g, (struct sockaddr *)&a, 3, 5, 1000);
    assert_non_null(idle);
    assert_non_null(slow);
    assert_non_null(quick);
    connguard_headers_done(g, quick, 1000);     /* a GET: no body */
    connguard_body_done(g, quick);
    /* before the deadline nothing happens, trickling or not */
    rx_by_fd[2] = 50;
    assert_int_equal(sweep(g, 2999), 0);
    /* the deadline passed: only the slow one, only once */
    assert_int_equal(sweep(g, 3000), 1);
    assert_int_equal(expired[2], 1);
    assert_int_equal(sweep(g, 9000), 0);
    assert_int_equal(expired[2], 1);
    /* the idle one never sent a byte: the idle timeout is not ours */
    assert_int_equal(expired[1], 0);
    /* its first byte, seen at 9000, starts its clock */
    rx_by_fd[1] = 1;
    assert_int_equal(sweep(g, 9000), 0);
    assert_int_equal(sweep(g, 10999), 0);
    assert_int_equal(sweep(g, 11000), 1);
    assert_int_equal(expired[1], 1);
    assert_int_equal(expired[3], 0);
    connguard_close(g, idle);
    connguard_close(g, slow);
    connguard_close(g, quick);
    connguard_free(g);
}

static void test_keepalive_next_request(void **state)
{
    struct connguard *g = connguard_new(2000, 3000, 0, 16);
    struct sockaddr_in a = v4("192.0.2.1");
    struct cg_conn *c;

    (void)state;
    memset(rx_by_fd, 0, sizeof rx_by_fd);
    memset(expired, 0, sizeof expired);
    c = connguard_open(g, (struct sockaddr *)&a, 4, 100, 0);
    connguard_headers_done(g, c, 0);
    connguard_body_done(g, c);
    rx_by_fd[4] = 300;
    connguard_request_done(g, c, 300, 0);
    /* idle for long: still no deadline */
    assert_int_equal(sweep(g, 60000), 0);
    /* a request line seen at 61000 starts it even without a new byte */
    connguard_request_line(g, c, 61000, 1);
    assert_int_equal(sweep(g, 62999), 0);
    assert_int_equal(sweep(g, 63000), 1);
    assert_int_equal(expired[4], 1);
    connguard_close(g, c);
    /* an unreadable count starts the clock at once (never unbounded) */
    c = connguard_open(g, (struct sockaddr *)&a, 5, CG_RX_UNKNOWN, 0);
    rx_by_fd[5] = CG_RX_UNKNOWN;
    assert_int_equal(sweep(g, 100), 0);
    assert_int_equal(sweep(g, 2100), 1);
    connguard_close(g, c);
    connguard_free(g);
}

/* A body must be complete body_timeout_ms (3000 here) after its headers,
 * trickling or not; once it is, nothing is timed until the next request. */
static void test_body_deadline(void **state)
{
    struct connguard *g = connguard_new(2000, 3000, 0, 16);
    struct sockaddr_in a = v4("192.0.2.1");
    struct cg_conn *slow, *done;
    unsigned bodies = 99;

    (void)state;
    memset(rx_by_fd, 0, sizeof rx_by_fd);
    memset(expired, 0, sizeof expired);
    slow = connguard_open(g, (struct sockaddr *)&a, 6, 100, 1000);
    done = connguard_open(g, (struct sockaddr *)&a, 7, 100, 1000);
    connguard_headers_done(g, slow, 1500);
    connguard_headers_done(g, done, 1500);
    rx_by_fd[6] = 101;                          /* a byte of body */
    assert_int_equal(sweep(g, 4000), 0);
    connguard_body_done(g, done);
    rx_by_fd[6] = 102;                          /* another: no new clock */
    assert_int_equal(sweep(g, 4499), 0);
    assert_int_equal(connguard_sweep(g, 4500, fake_rx, note_expired, NULL,
                                     &bodies), 1);
    assert_int_equal(bodies, 1);
    assert_int_equal(expired[6], 1);
    /* the served one: no deadline however long its answer takes */
    assert_int_equal(sweep(g, 60000), 0);
    assert_int_equal(expired[7], 0);
    /* its next request: the header deadline again, from its first byte */
    rx_by_fd[7] = 400;
    connguard_request_done(g, done, 300, 0);
    assert_int_equal(connguard_sweep(g, 61000, fake_rx, note_expired, NULL,
                                     &bodies), 0);
    assert_int_equal(connguard_sweep(g, 63000, fake_rx, note_expired, NULL,
                                     &bodies), 1);
    assert_int_equal(bodies, 0);
    assert_int_equal(expired[7], 1);
    connguard_close(g, slow);
    connguard_close(g, done);
    connguard_free(g);
}

static void test_per_prefix_limit(void **state)
{
    struct connguard *g = connguard_new(2000, 3000, 2, 16);
    struct sockaddr_in6 a1 = v6("2001:db8:1:2::1");
    struct sockaddr_in6 a2 = v6("2001:db8:1:2:ffff::9");
    struct sockaddr_in6 other = v6("2001:db8:1:3::1");
    struct sockaddr_in b1 = v4("192.0.2.1"), b2 = v4("192.0.2.2");
    struct sockaddr_in6 mapped = v6("::ffff:192.0.2.1");
    struct cg_conn *c[8];

    (void)state;
    c[0] = connguard_open(g, (struct sockaddr *)&a1, 1, 0, 0);
    c[1] = connguard_open(g, (struct sockaddr *)&a2, 2, 0, 0);
    assert_non_null(c[0]);
    assert_non_null(c[1]);
    /* a third address of the same /64 is refused; another /64 is not */
    assert_null(connguard_open(g, (struct sockaddr *)&a1, 3, 0, 0));
    c[2] = connguard_open(g, (struct sockaddr *)&other, 3, 0, 0);
    assert_non_null(c[2]);
    /* IPv4 counts whole addresses; IPv4-mapped IPv6 is the same address */
    c[3] = connguard_open(g, (struct sockaddr *)&b1, 4, 0, 0);
    c[4] = connguard_open(g, (struct sockaddr *)&mapped, 5, 0, 0);
    assert_non_null(c[3]);
    assert_non_null(c[4]);
    assert_null(connguard_open(g, (struct sockaddr *)&b1, 6, 0, 0));
    c[5] = connguard_open(g, (struct sockaddr *)&b2, 6, 0, 0);
    assert_non_null(c[5]);
    /* a closed one frees its place */
    connguard_close(g, c[0]);
    c[0] = connguard_open(g, (struct sockaddr *)&a2, 1, 0, 0);
    assert_non_null(c[0]);
    connguard_close(g, NULL);
    for (int i = 0; i < 6; i++)
        connguard_close(g, c[i]);
    connguard_free(g);
}

/* ---- parking: real loopback TCP sockets ---- */

/* One TCP connection on 127.0.0.1: the client's end, the server's, and
 * the client's address as the server sees it. */
struct tcp_pair {
    int client, server;
    struct sockaddr_in peer;
};

static void tcp_pair(struct tcp_pair *t)
{
    struct sockaddr_in a = v4("127.0.0.1");
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 4), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    t->client = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(t->client, (struct sockaddr *)&a, sizeof a), 0);
    len = sizeof t->peer;
    t->server = accept(l, (struct sockaddr *)&t->peer, &len);
    assert_true(t->server >= 0);
    close(l);
}

/* The server's side of one request on `t` at `now`: read it, answer. */
static void serve_one(struct connguard *g, struct cg_conn *c,
                      struct tcp_pair *t, uint64_t now)
{
    char buf[64];

    assert_int_equal(write(t->client, "GET / HTTP/1.1\r\n\r\n", 18), 18);
    assert_int_equal(read(t->server, buf, sizeof buf), 18);
    connguard_request_done(g, c, connguard_tcp_rx(t->server), now);
}

/* Whether the client's end of `t` sees the server close it within 5 s
 * (a reset when the server left bytes unread). */
static bool client_sees_eof(const struct tcp_pair *t)
{
    struct pollfd p = { .fd = t->client, .events = POLLIN };
    char b;
    ssize_t n;

    if (poll(&p, 1, 5000) != 1)
        return false;
    n = read(t->client, &b, 1);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static struct {
    pthread_mutex_t mu;
    int fd, calls;
    bool take;
    struct sockaddr_in sa;
} woken = { PTHREAD_MUTEX_INITIALIZER, -1, 0, true, { 0 } };

static bool note_wake(int fd, const struct sockaddr *sa, socklen_t len,
                      void *arg)
{
    (void)arg;
    pthread_mutex_lock(&woken.mu);
    woken.calls++;
    woken.fd = fd;
    if (len == sizeof woken.sa)
        memcpy(&woken.sa, sa, len);
    if (!woken.take)
        close(fd);                  /* refused: the server closes it */
    pthread_mutex_unlock(&woken.mu);
    return woken.take;
}

/* Waits up to 5 s for the guard's thread to have called note_wake() `n`
 * times; returns the last descriptor it was given. */
static int wait_wake(int n)
{
    for (int i = 0; i < 500; i++) {
        int fd = -1;

        pthread_mutex_lock(&woken.mu);
        if (woken.calls >= n)
            fd = woken.fd;
        pthread_mutex_unlock(&woken.mu);
        if (fd >= 0)
            return fd;
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    return -1;
}

static struct connguard *parking_guard(unsigned max_conns)
{
    struct connguard *g = connguard_new(2000, 3000, 0, max_conns);

    connguard_set_parking(g, 15000, 1000, note_wake, NULL);
    pthread_mutex_lock(&woken.mu);
    woken.calls = 0;
    woken.fd = -1;
    woken.take = true;
    pthread_mutex_unlock(&woken.mu);
    return g;
}

/* An idle connection is parked, counted while parked, and given back
 * with its own record (past a full limit) when its next request comes;
 * the server's descriptor is closed meanwhile and the client sees
 * nothing of it. */
static void test_park_and_wake(void **state)
{
    struct connguard *g = parking_guard(2);
    struct cg_conn *busy;
    struct sockaddr_in other = v4("127.0.0.2");
    struct tcp_pair t;
    struct cg_conn *c;
    char buf[64];
    int fd;

    (void)state;
    tcp_pair(&t);
    c = connguard_open(g, (struct sockaddr *)&t.peer, t.server,
                       connguard_tcp_rx(t.server), 1000);
    assert_non_null(c);
    serve_one(g, c, &t, 1000);
    /* idle for less than the minimum: not parked (an answer just sent
     * with Connection: close, say) */
    assert_false(connguard_park(g, c, t.server, 1999));
    assert_true(connguard_park(g, c, t.server, 2000));
    close(t.server);                        /* the server's close */
    /* parked, it holds one of the two places */
    busy = connguard_open(g, (struct sockaddr *)&other, 99, 0, 2000);
    assert_non_null(busy);
    assert_true(connguard_start(g, 1000));
    assert_int_equal(write(t.client, "GET /2 HTTP/1.1\r\n\r\n", 20), 20);
    fd = wait_wake(1);
    assert_true(fd >= 0);
    assert_int_equal(woken.sa.sin_port, t.peer.sin_port);
    /* the server's record of the socket it was given is the parked one */
    assert_ptr_equal(connguard_open(g, (struct sockaddr *)&t.peer, fd,
                                    connguard_tcp_rx(fd), 3000),
                     c);
    assert_int_equal(read(fd, buf, sizeof buf), 20);
    assert_memory_equal(buf, "GET /2", 6);
    connguard_close(g, busy);
    connguard_close(g, c);
    close(fd);
    close(t.client);
    connguard_stop(g);
    connguard_free(g);
}

/* Bytes of a next request that the server has read are lost with its
 * descriptor: such a connection is not parked. Bytes still in the kernel
 * go with the socket: that one is. */
static void test_park_only_what_was_not_read(void **state)
{
    struct connguard *g = parking_guard(4);
    struct tcp_pair t, u;
    struct cg_conn *c, *d;
    char buf[8];

    (void)state;
    tcp_pair(&t);
    tcp_pair(&u);
    c = connguard_open(g, (struct sockaddr *)&t.peer, t.server, 0, 1000);
    d = connguard_open(g, (struct sockaddr *)&u.peer, u.server, 0, 1000);
    serve_one(g, c, &t, 1000);
    serve_one(g, d, &u, 1000);
    assert_int_equal(write(t.client, "GE", 2), 2);
    assert_int_equal(write(u.client, "GE", 2), 2);
    /* let them arrive */
    for (int i = 0; i < 500 && connguard_tcp_rx(u.server) < 20; i++)
        nanosleep(&(struct timespec){ 0, 1000 * 1000 }, NULL);
    assert_int_equal(read(t.server, buf, sizeof buf), 2);   /* read */
    assert_false(connguard_park(g, c, t.server, 5000));
    assert_true(connguard_park(g, d, u.server, 5000));      /* not read */
    close(u.server);
    connguard_close(g, c);
    close(t.server);
    assert_true(connguard_start(g, 1000));
    assert_true(wait_wake(1) >= 0);                 /* woken at once */
    assert_ptr_equal(connguard_open(g, (struct sockaddr *)&u.peer,
                                    woken.fd, 0, 5000), d);
    assert_int_equal(read(woken.fd, buf, sizeof buf), 2);
    connguard_close(g, d);
    close(woken.fd);
    close(t.client);
    close(u.client);
    connguard_stop(g);
    connguard_free(g);
}

/* A parked connection is closed at the idle timeout counted from its
 * last request; one its client closed, or one the server refused back,
 * is forgotten; and the guard's stop closes the rest. */
static void test_parked_ends(void **state)
{
    struct connguard *g = parking_guard(2);
    struct sockaddr_in other = v4("127.0.0.2");
    struct tcp_pair t, u;
    struct cg_conn *c, *d, *e;

    (void)state;
    tcp_pair(&t);
    c = connguard_open(g, (struct sockaddr *)&t.peer, t.server, 0, 1000);
    serve_one(g, c, &t, 1000);
    assert_true(connguard_park(g, c, t.server, 3000));
    close(t.server);
    assert_int_equal(sweep(g, 15999), 0);
    assert_int_equal(sweep(g, 16000), 0);          /* idle 15 s: closed */
    assert_true(client_sees_eof(&t));
    close(t.client);
    /* the client goes away while parked */
    tcp_pair(&t);
    c = connguard_open(g, (struct sockaddr *)&t.peer, t.server, 0, 1000);
    assert_true(connguard_park(g, c, t.server, 3000));   /* never used */
    close(t.server);
    assert_true(connguard_start(g, 1000));
    close(t.client);
    /* the server refuses one given back */
    tcp_pair(&u);
    d = connguard_open(g, (struct sockaddr *)&u.peer, u.server, 0, 1000);
    assert_non_null(d);
    pthread_mutex_lock(&woken.mu);
    woken.take = false;
    pthread_mutex_unlock(&woken.mu);
    assert_true(connguard_park(g, d, u.server, 3000));
    close(u.server);
    assert_int_equal(write(u.client, "G", 1), 1);
    assert_true(wait_wake(1) >= 0);
    assert_true(client_sees_eof(&u));
    close(u.client);
    /* both places free again (the first when its EOF was seen) */
    for (int i = 0; i < 500; i++) {
        e = connguard_open(g, (struct sockaddr *)&other, 98, 0, 4000);
        d = connguard_open(g, (struct sockaddr *)&other, 99, 0, 4000);
        if (e && d)
            break;
        connguard_close(g, e);
        connguard_close(g, d);
        e = d = NULL;
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    assert_non_null(e);
    assert_non_null(d);
    connguard_close(g, e);
    /* a stop closes what is parked */
    tcp_pair(&t);
    c = connguard_open(g, (struct sockaddr *)&t.peer, t.server, 0, 1000);
    assert_true(connguard_park(g, c, t.server, 3000));
    close(t.server);
    connguard_stop(g);
    assert_true(client_sees_eof(&t));
    close(t.client);
    assert_false(connguard_park(g, d, 99, 9000));       /* stopped */
    connguard_close(g, d);
    connguard_free(g);
}

/* Whether the client's end of `t` is still open 100 ms on. */
static bool still_open(const struct tcp_pair *t)
{
    struct pollfd p = { .fd = t->client, .events = POLLIN };

    return poll(&p, 1, 100) == 0;
}

/* At a limit, the longest idle parked connection makes room for a new
 * one; connections in use never do. */
static void test_idle_ones_make_room(void **state)
{
    struct connguard *g = parking_guard(3);
    struct sockaddr_in other = v4("127.0.0.2");
    struct tcp_pair a, b;
    struct cg_conn *ca, *cb, *c[3];

    (void)state;
    tcp_pair(&a);
    tcp_pair(&b);
    ca = connguard_open(g, (struct sockaddr *)&a.peer, a.server, 0, 1000);
    cb = connguard_open(g, (struct sockaddr *)&b.peer, b.server, 0, 1500);
    c[0] = connguard_open(g, (struct sockaddr *)&other, 97, 0, 1000);
    assert_true(connguard_park(g, ca, a.server, 5000));    /* idle longer */
    assert_true(connguard_park(g, cb, b.server, 5000));
    close(a.server);
    close(b.server);
    /* all three places taken: the longest idle parked one goes */
    c[1] = connguard_open(g, (struct sockaddr *)&other, 98, 0, 5000);
    assert_non_null(c[1]);
    assert_true(client_sees_eof(&a));
    assert_true(still_open(&b));
    c[2] = connguard_open(g, (struct sockaddr *)&other, 99, 0, 5000);
    assert_non_null(c[2]);
    assert_true(client_sees_eof(&b));
    /* none parked: refused */
    assert_null(connguard_open(g, (struct sockaddr *)&other, 96, 0, 5000));
    for (int i = 0; i < 3; i++)
        connguard_close(g, c[i]);
    close(a.client);
    close(b.client);
    connguard_free(g);

    /* the same per address: one of its own parked ones goes */
    g = connguard_new(2000, 3000, 1, 8);
    connguard_set_parking(g, 15000, 1000, note_wake, NULL);
    tcp_pair(&a);
    ca = connguard_open(g, (struct sockaddr *)&a.peer, a.server, 0, 1000);
    assert_true(connguard_park(g, ca, a.server, 5000));
    close(a.server);
    tcp_pair(&b);                               /* 127.0.0.1 again */
    cb = connguard_open(g, (struct sockaddr *)&b.peer, b.server, 0, 5000);
    assert_non_null(cb);
    assert_true(client_sees_eof(&a));
    /* in use: the address's next one is refused */
    assert_null(connguard_open(g, (struct sockaddr *)&a.peer, 95, 0, 5000));
    connguard_close(g, cb);
    close(b.server);
    close(a.client);
    close(b.client);
    connguard_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_from_first_byte),
        cmocka_unit_test(test_keepalive_next_request),
        cmocka_unit_test(test_body_deadline),
        cmocka_unit_test(test_per_prefix_limit),
        cmocka_unit_test(test_park_and_wake),
        cmocka_unit_test(test_park_only_what_was_not_read),
        cmocka_unit_test(test_parked_ends),
        cmocka_unit_test(test_idle_ones_make_room),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
