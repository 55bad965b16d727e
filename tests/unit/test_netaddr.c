/* CIDR lists and the client address behind trusted proxies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "netaddr.h"

static void test_parse_and_contains(void **state)
{
    struct netlist *l = netlist_parse(" 10.0.0.0/8 ,127.0.0.1, fd00::/8,"
                                      "192.168.1.0/24");

    (void)state;
    assert_non_null(l);
    assert_true(netlist_contains(l, "10.200.3.4"));
    assert_true(netlist_contains(l, "127.0.0.1"));
    assert_false(netlist_contains(l, "127.0.0.2"));
    assert_true(netlist_contains(l, "::ffff:10.1.1.1"));
    assert_true(netlist_contains(l, "fd12::1"));
    assert_false(netlist_contains(l, "fe80::1"));
    assert_true(netlist_contains(l, "192.168.1.255"));
    assert_false(netlist_contains(l, "192.168.2.1"));
    assert_false(netlist_contains(l, "not an ip"));
    netlist_free(l);
    assert_null(netlist_parse("10.0.0.0/33"));
    assert_null(netlist_parse("banana"));
    assert_null(netlist_parse("::1/129"));
    assert_null(netlist_parse("10.0.0.0/+8"));
    assert_null(netlist_parse("10.0.0.0/ 8"));
    assert_null(netlist_parse("10.0.0.0/"));
    assert_null(netlist_parse("10.0.0.0/0008"));
    l = netlist_parse(NULL);
    assert_non_null(l);
    assert_false(netlist_contains(l, "127.0.0.1"));
    netlist_free(l);
}

/* "unix" names peers on a Unix socket (socket activation): trusted
 * only when listed, and never as a hop of X-Forwarded-For. */
static void test_unix_peers(void **state)
{
    struct netlist *t = netlist_parse("unix, 10.0.0.0/8");
    struct netlist *u = netlist_parse(" UNIX ");
    struct netlist *none = netlist_parse("127.0.0.1");
    char out[64];

    (void)state;
    assert_non_null(t);
    assert_non_null(u);
    assert_true(netlist_contains(t, NETADDR_UNIX_PEER));
    assert_true(netlist_contains(u, NETADDR_UNIX_PEER));
    assert_true(netlist_contains(t, "10.1.2.3"));
    assert_false(netlist_contains(u, "127.0.0.1"));
    assert_false(netlist_contains(none, NETADDR_UNIX_PEER));
    assert_null(netlist_parse("unixx"));
    assert_null(netlist_parse("unix/8"));
    netlist_client_ip(t, "unix", "203.0.113.9", out, sizeof out);
    assert_string_equal(out, "203.0.113.9");
    netlist_client_ip(none, "unix", "203.0.113.9", out, sizeof out);
    assert_string_equal(out, "unix");               /* not believed */
    /* a client cannot pass itself off as the socket's peer */
    netlist_client_ip(t, "unix", "203.0.113.9, unix", out, sizeof out);
    assert_string_equal(out, "unix");
    netlist_client_ip(t, "unix", "unix, 203.0.113.9", out, sizeof out);
    assert_string_equal(out, "203.0.113.9");
    netlist_free(t);
    netlist_free(u);
    netlist_free(none);
}

static void test_client_ip(void **state)
{
    struct netlist *t = netlist_parse("127.0.0.1, 10.0.0.0/8");
    char out[64];

    (void)state;
    /* untrusted peer: the header is ignored */
    netlist_client_ip(t, "203.0.113.9", "1.2.3.4", out, sizeof out);
    assert_string_equal(out, "203.0.113.9");
    /* trusted peer: the right-most untrusted hop */
    netlist_client_ip(t, "127.0.0.1", "1.2.3.4", out, sizeof out);
    assert_string_equal(out, "1.2.3.4");
    netlist_client_ip(t, "127.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.7", out,
                      sizeof out);
    assert_string_equal(out, "1.2.3.4");           /* 6.6.6.6 is spoofable */
    netlist_client_ip(t, "127.0.0.1", "10.0.0.1,10.0.0.2", out, sizeof out);
    assert_string_equal(out, "10.0.0.1");
    netlist_client_ip(t, "127.0.0.1", "garbage", out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
    netlist_client_ip(t, "127.0.0.1", "1.2.3.4, garbage", out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
    netlist_client_ip(t, "127.0.0.1", NULL, out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
    netlist_client_ip(t, "127.0.0.1", " 2001:db8::1 ", out, sizeof out);
    assert_string_equal(out, "2001:db8::1");
    /* hops some proxies write with a port or brackets: the address */
    netlist_client_ip(t, "127.0.0.1", "10.3.3.3:1234", out, sizeof out);
    assert_string_equal(out, "10.3.3.3");
    netlist_client_ip(t, "127.0.0.1", "1.2.3.4:99, 10.0.0.7:8080", out,
                      sizeof out);
    assert_string_equal(out, "1.2.3.4");
    netlist_client_ip(t, "127.0.0.1", "[2001:db8:a::1]", out, sizeof out);
    assert_string_equal(out, "2001:db8:a::1");
    netlist_client_ip(t, "127.0.0.1", "[2001:db8:a::1]:443", out,
                      sizeof out);
    assert_string_equal(out, "2001:db8:a::1");
    /* still malformed: not an address once the port is off */
    netlist_client_ip(t, "127.0.0.1", "1.2.3.4:", out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
    netlist_client_ip(t, "127.0.0.1", "1.2.3.4:123456", out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
    netlist_client_ip(t, "127.0.0.1", "[2001:db8::1]x", out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
    netlist_client_ip(t, "127.0.0.1", "[1.2.3.4]", out, sizeof out);
    assert_string_equal(out, "1.2.3.4");
    netlist_free(t);
}

static void test_client_ip_lines(void **state)
{
    struct netlist *t = netlist_parse("127.0.0.1, 10.0.0.0/8");
    const char *haproxy[] = { "6.6.6.6", "1.2.3.4" };  /* client, proxy */
    const char *chain[] = { "5.5.5.5, 10.0.0.2", "10.0.0.3" };
    const char *bad_last[] = { "1.2.3.4", "garbage" };
    const char *empty_last[] = { "1.2.3.4", "" };
    const char *untrusted_in_first[] = { "9.9.9.9, 8.8.8.8", "10.0.0.1" };
    char out[64];

    (void)state;
    /* the appended line is the nearest hop: the client's own line loses */
    netlist_client_ip_lines(t, "127.0.0.1", haproxy, 2, out, sizeof out);
    assert_string_equal(out, "1.2.3.4");
    /* trusted hops are skipped across lines */
    netlist_client_ip_lines(t, "127.0.0.1", chain, 2, out, sizeof out);
    assert_string_equal(out, "5.5.5.5");
    netlist_client_ip_lines(t, "127.0.0.1", untrusted_in_first, 2, out,
                            sizeof out);
    assert_string_equal(out, "8.8.8.8");
    /* a malformed or empty last line: the peer */
    netlist_client_ip_lines(t, "127.0.0.1", bad_last, 2, out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
    netlist_client_ip_lines(t, "127.0.0.1", empty_last, 2, out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
    /* untrusted peer: every line is ignored */
    netlist_client_ip_lines(t, "203.0.113.9", haproxy, 2, out, sizeof out);
    assert_string_equal(out, "203.0.113.9");
    netlist_client_ip_lines(t, "127.0.0.1", NULL, 0, out, sizeof out);
    assert_string_equal(out, "127.0.0.1");
    netlist_free(t);
}

static void test_client_key(void **state)
{
    char k[NETADDR_KEY_LEN];

    (void)state;
    netaddr_client_key("192.0.2.7", k);
    assert_string_equal(k, "192.0.2.7");
    netaddr_client_key("::ffff:192.0.2.7", k);
    assert_string_equal(k, "192.0.2.7");          /* mapped: the IPv4 */
    netaddr_client_key("2001:db8:1:2:3:4:5:6", k);
    assert_string_equal(k, "2001:db8:1:2::/64");
    netaddr_client_key("2001:DB8:1:2::ffff", k);
    assert_string_equal(k, "2001:db8:1:2::/64");  /* one /64, one key */
    netaddr_client_key("2001:db8:1:3::1", k);
    assert_string_equal(k, "2001:db8:1:3::/64");
    netaddr_client_key("::1", k);
    assert_string_equal(k, "::/64");
    netaddr_client_key("not an address", k);
    assert_string_equal(k, "not an address");
    netaddr_client_key(NULL, k);
    assert_string_equal(k, "");
}

/* The span of a list, each family apart (config.trusts_everyone reads
 * it: src/main.c). */
static void test_span(void **state)
{
    struct netlist *l = netlist_parse("10.0.0.0/8,192.168.1.7,"
                                      "172.16.0.0/12,fd00::/8,::1");
    double v4, v6;

    (void)state;
    assert_non_null(l);
    netlist_span(l, &v4, &v6);
    assert_true(v4 == 0x1p24 + 1 + 0x1p20);
    assert_true(v6 == 0x1p120 + 1);
    netlist_free(l);
    l = netlist_parse("0.0.0.0/2,64.0.0.0/2,128.0.0.0/2");
    netlist_span(l, &v4, &v6);
    assert_true(v4 == 0x1p32 * 0.75 && v6 == 0);
    netlist_free(l);
    l = netlist_parse("::/0");
    netlist_span(l, &v4, &v6);
    assert_true(v4 == 0 && v6 == 0x1p128);
    netlist_free(l);
    netlist_span(NULL, &v4, &v6);
    assert_true(v4 == 0 && v6 == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_contains),
        cmocka_unit_test(test_unix_peers),
        cmocka_unit_test(test_client_ip),
        cmocka_unit_test(test_client_ip_lines),
        cmocka_unit_test(test_client_key),
        cmocka_unit_test(test_span),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
