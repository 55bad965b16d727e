/* The header and body deadlines and the per-prefix connection limit, with
 * time and the received-byte counts given by the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

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
    connguard_request_done(g, c, 300);
    /* idle for long: still no deadline */
    assert_int_equal(sweep(g, 60000), 0);
    /* a request line seen at 61000 starts it even without a new byte */
    connguard_request_line(g, c, 61000);
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
    connguard_request_done(g, done, 300);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_from_first_byte),
        cmocka_unit_test(test_keepalive_next_request),
        cmocka_unit_test(test_body_deadline),
        cmocka_unit_test(test_per_prefix_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
