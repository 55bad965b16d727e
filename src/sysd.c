/* sysd.c: the systemd service protocol through libsystemd: socket
 * activation, readiness and status notifications, and a watchdog that
 * only pets while the daemon really answers HTTP. */
#include "sysd.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <dlfcn.h>
#include <systemd/sd-daemon.h>

#include "clock.h"
#include "log.h"

/* ---- libsystemd, opened under systemd ----------------------------------
 * The daemon does not link libsystemd: it and the six libraries it pulls
 * in (compression, libgcrypt) cost every start about a millisecond of
 * loading (README.md, "Performance"), while outside systemd every call of
 * the protocol is a no-op. sysd_open() opens it when the service manager
 * speaks to the process; the package still depends on libsystemd0. */

#define SYSTEMD_SONAME "libsystemd.so.0"

static struct {
    __typeof__(sd_listen_fds) *listen_fds;
    __typeof__(sd_is_socket) *is_socket;
    __typeof__(sd_notify) *notify;
    __typeof__(sd_watchdog_enabled) *watchdog_enabled;
} sd;
static bool sd_loaded;                  /* set once, before any thread */
static char sd_error[256];

bool sysd_open(const char **why)
{
    void *h;
    const char *e;

    *why = NULL;
    if (sd_loaded || (!getenv("NOTIFY_SOCKET") && !getenv("LISTEN_FDS") &&
                      !getenv("WATCHDOG_USEC")))
        return true;                    /* loaded, or not under systemd */
    h = dlopen(SYSTEMD_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        e = dlerror();
        snprintf(sd_error, sizeof sd_error, "%s", e ? e : SYSTEMD_SONAME);
        *why = sd_error;
        return false;
    }
#define SD_SYM(field, name) \
    (sd.field = (__typeof__(sd.field))dlsym(h, name)) != NULL
    sd_loaded = SD_SYM(listen_fds, "sd_listen_fds") &&
                SD_SYM(is_socket, "sd_is_socket") &&
                SD_SYM(notify, "sd_notify") &&
                SD_SYM(watchdog_enabled, "sd_watchdog_enabled");
#undef SD_SYM
    if (!sd_loaded) {
        snprintf(sd_error, sizeof sd_error, "%s lacks a function",
                 SYSTEMD_SONAME);
        *why = sd_error;
        dlclose(h);
    }
    return sd_loaded;
}

struct sysd_watchdog {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;                  /* signalled to stop */
    bool stop;
    int listen_fd;
    uint64_t interval_ms;               /* half of WATCHDOG_USEC */
};

int sysd_listen_fd(bool *bad)
{
    int n;

    *bad = false;
    if (!sd_loaded)
        return -1;                      /* not under systemd */
    n = sd.listen_fds(1);               /* 1: unset LISTEN_* for children */
    if (n <= 0)
        return -1;
    if (n > 1 || sd.is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM,
                              1) <= 0) {
        *bad = true;
        return -1;
    }
    return SD_LISTEN_FDS_START;
}

void sysd_notify(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (!sd_loaded)
        return;                         /* not under systemd */
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    (void)sd.notify(0, msg);
}

/* The address to reach a socket listening on `fd`: its own, with a
 * wildcard address replaced by loopback. */
static bool probe_addr(int fd, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)(void *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)ss;

    *len = sizeof *ss;
    memset(ss, 0, sizeof *ss);
    if (getsockname(fd, (struct sockaddr *)ss, len) != 0)
        return false;
    if (ss->ss_family == AF_INET &&
        in4->sin_addr.s_addr == htonl(INADDR_ANY))
        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (ss->ss_family == AF_INET6 &&
             IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
        in6->sin6_addr = in6addr_loopback;
    return ss->ss_family == AF_INET || ss->ss_family == AF_INET6 ||
           ss->ss_family == AF_UNIX;
}

bool sysd_probe(int listen_fd, uint64_t timeout_ms)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\n"
                              "Host: localhost\r\n"
                              "User-Agent: auth-serve-watchdog\r\n"
                              "Connection: close\r\n\r\n";
    static const char ok[] = "HTTP/1.1 200 ";
    struct sockaddr_storage ss;
    socklen_t len;
    struct timeval tv = { (time_t)(timeout_ms / 1000),
                          (suseconds_t)(timeout_ms % 1000) * 1000 };
    uint64_t deadline = clock_mono_ms() + timeout_ms;
    char buf[sizeof ok];
    size_t got = 0;
    bool answered = false;
    int fd = -1;

    if (!probe_addr(listen_fd, &ss, &len))
        goto out;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (struct sockaddr *)&ss, len) != 0 ||
        send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req -
                                                                 1))
        goto out;
    while (got < sizeof ok - 1 && clock_mono_ms() < deadline) {
        ssize_t n = recv(fd, buf + got, sizeof ok - 1 - got, 0);

        if (n <= 0 && !(n < 0 && errno == EINTR))
            goto out;
        if (n > 0)
            got += (size_t)n;
    }
    answered = got == sizeof ok - 1 && memcmp(buf, ok, got) == 0;
out:
    if (fd >= 0)
        close(fd);
    return answered;
}

static void *watchdog_main(void *arg)
{
    struct sysd_watchdog *w = arg;
    bool was_ok = true;

    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        bool ok;
        struct timespec until;

        pthread_mutex_unlock(&w->mu);
        /* half the interval to answer leaves half to notify in time */
        ok = sysd_probe(w->listen_fd, w->interval_ms / 2);
        if (ok)
            (void)sd.notify(0, "WATCHDOG=1");
        if (ok != was_ok)
            log_event(ok ? LOG_INFO : LOG_WARN,
                      ok ? "watchdog.answering" : "watchdog.not_answering",
                      NULL, NULL);
        was_ok = ok;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)(w->interval_ms / 1000);
        until.tv_nsec += (long)(w->interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&w->mu);
        while (!w->stop &&
               pthread_cond_timedwait(&w->cv, &w->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

bool sysd_watchdog_new(int listen_fd, struct sysd_watchdog **out)
{
    struct sysd_watchdog *w = NULL;
    pthread_condattr_t ca;
    uint64_t usec = 0;
    bool ok = false;

    *out = NULL;
    if (!sd_loaded || sd.watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return true;                    /* not asked for: nothing to do */
    w = calloc(1, sizeof *w);
    if (!w)
        goto out;
    w->listen_fd = listen_fd;
    w->interval_ms = usec / 2000u ? usec / 2000u : 1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&w->thread, NULL, watchdog_main, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        goto out;
    }
    (void)pthread_setname_np(w->thread, "auth-watchdog");
    log_event(LOG_INFO, "watchdog.started", NULL,
              json_pack("{s:I}", "interval_ms", (json_int_t)w->interval_ms));
    *out = w;
    ok = true;
out:
    return ok;
}

void sysd_watchdog_free(struct sysd_watchdog *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
