/* test_gnutlsinit.c: src/gnutlsinit.c, linked into this test as into the
 * daemon (CMakeLists.txt, auth_skip_gnutls_init). GnuTLS is reached with
 * dlsym(): libmicrohttpd loads it, and nothing here is built against it.
 * The tests run in order, in one process: the first two see the process
 * as it started. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GNUTLS_RND_NONCE 0
#define GNUTLS_E_LIB_IN_ERROR_STATE (-402)

typedef int (*rnd_fn)(int, void *, size_t);

static rnd_fn gnutls_rnd_fn(void)
{
    rnd_fn f;

    *(void **)&f = dlsym(RTLD_DEFAULT, "gnutls_rnd");
    return f;
}

int gnutls_global_init(void);
void gnutls_global_deinit(void);

/* Neither GnuTLS's constructor nor libmicrohttpd's initialised GnuTLS:
 * its functions still refuse, as before any initialisation. */
static void gnutls_is_not_initialised_at_start(void **state)
{
    rnd_fn rnd = gnutls_rnd_fn();
    unsigned char b[16];

    (void)state;
    if (!rnd)
        skip();                 /* a libmicrohttpd without GnuTLS */
    assert_int_equal(rnd(GNUTLS_RND_NONCE, b, sizeof b),
                     GNUTLS_E_LIB_IN_ERROR_STATE);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    static const char body[] = "ok";
    struct MHD_Response *r;
    enum MHD_Result ret;

    (void)cls; (void)url; (void)method; (void)version; (void)upload;
    (void)upload_size; (void)con_cls;
    r = MHD_create_response_from_buffer(sizeof body - 1, (void *)body,
                                        MHD_RESPMEM_PERSISTENT);
    ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* libmicrohttpd serves plain HTTP with GnuTLS never initialised. */
static void plain_http_is_served_without_gnutls(void **state)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    const union MHD_DaemonInfo *info;
    struct MHD_Daemon *d;
    char buf[512];
    size_t n = 0;
    ssize_t k;
    int s;

    (void)state;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                         answer, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                         MHD_OPTION_END);
    assert_non_null(d);
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    sa.sin_port = htons(info->port);
    s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof sa), 0);
    static const char req[] =
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_int_equal(write(s, req, sizeof req - 1), (ssize_t)sizeof req - 1);
    while (n < sizeof buf - 1 && (k = read(s, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)k;
    buf[n] = '\0';
    close(s);
    MHD_stop_daemon(d);
    assert_true(strncmp(buf, "HTTP/1.1 200", 12) == 0);
    assert_non_null(strstr(buf, "\r\n\r\nok"));
}

/* A caller after start gets GnuTLS's own initialisation, and a working
 * library; its deinit is GnuTLS's too. */
static void a_later_caller_gets_a_working_gnutls(void **state)
{
    rnd_fn rnd = gnutls_rnd_fn();
    unsigned char b[16];

    (void)state;
    if (!rnd)
        skip();
    assert_int_equal(gnutls_global_init(), 0);
    assert_int_equal(rnd(GNUTLS_RND_NONCE, b, sizeof b), 0);
    assert_int_equal(gnutls_global_init(), 0);      /* counted, as GnuTLS does */
    gnutls_global_deinit();
    assert_int_equal(rnd(GNUTLS_RND_NONCE, b, sizeof b), 0);
    gnutls_global_deinit();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gnutls_is_not_initialised_at_start),
        cmocka_unit_test(plain_http_is_served_without_gnutls),
        cmocka_unit_test(a_later_caller_gets_a_working_gnutls),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
