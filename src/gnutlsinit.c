/* gnutlsinit.c: GnuTLS left uninitialised at start, since the daemon
 * speaks plain HTTP and never calls GnuTLS (README "Performance",
 * "Start-up").
 *
 * Debian's libmicrohttpd is built with HTTPS support, so it loads GnuTLS,
 * and GnuTLS is initialised twice before main(): by its own constructor
 * and by libmicrohttpd's (MHD_init() calls gnutls_global_init()). That
 * initialisation builds GnuTLS's ASN.1 trees, reads its system priority
 * file and probes its ciphers: about 1 ms of `auth-serve --help` on the
 * 2-core test machine (README "Performance"), for a library the daemon
 * never calls.
 *
 * Both are skipped from here. This file is linked into the executable
 * alone (CMakeLists.txt), whose symbols come before every library's for
 * the libraries' calls, as src/mhdepoll.c does for epoll:
 * - GnuTLS's constructor first asks _gnutls_global_init_skip(), a weak
 *   function the library exports for this, and returns when it says 1.
 * - gnutls_global_init() called before the executable's own constructor
 *   runs (that is, by a library's constructor: libmicrohttpd's) does
 *   nothing; the matching gnutls_global_deinit() (libmicrohttpd's
 *   destructor) does nothing either.
 * - Any later call goes to GnuTLS's own functions: a library that uses
 *   GnuTLS after start (none the daemon loads today: libpq and libcurl 4
 *   are OpenSSL's) initialises it on its first call, as GnuTLS asks of
 *   every caller, and gets a working library.
 * tests/unit/test_gnutlsinit.c links this file the same way. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdbool.h>

int _gnutls_global_init_skip(void);
int gnutls_global_init(void);
void gnutls_global_deinit(void);

/* Set by the executable's constructor, which runs after every library's. */
static bool started;
/* gnutls_global_init() calls answered without GnuTLS, not yet matched by
 * a gnutls_global_deinit(). */
static atomic_int skipped;

__attribute__((constructor)) static void gnutlsinit_started(void)
{
    started = true;
}

int _gnutls_global_init_skip(void)
{
    return 1;
}

int gnutls_global_init(void)
{
    int (*next)(void);

    if (!started) {
        atomic_fetch_add(&skipped, 1);
        return 0;
    }
    *(void **)&next = dlsym(RTLD_NEXT, "gnutls_global_init");
    return next ? next() : -59;          /* GNUTLS_E_INTERNAL_ERROR */
}

void gnutls_global_deinit(void)
{
    void (*next)(void);
    int n = atomic_load(&skipped);

    while (n > 0)
        if (atomic_compare_exchange_weak(&skipped, &n, n - 1))
            return;
    *(void **)&next = dlsym(RTLD_NEXT, "gnutls_global_deinit");
    if (next)
        next();
}
