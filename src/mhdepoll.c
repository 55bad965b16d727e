/* mhdepoll.c: two corrections to libmicrohttpd 0.9.75's use of epoll,
 * made by defining epoll_wait() and epoll_ctl() in the executable, whose
 * symbols come before libc's for the library's calls (and for the rest
 * of the process, where they behave as libc's). */
#include "mhdepoll.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/epoll.h>

/* libmicrohttpd (0.9.75, and its 0.9 line since) drains its epoll set in
 * batches of 128 events and, after a full batch, calls epoll_wait() again
 * with the loop's whole timeout (the earliest idle timeout, 15 s by
 * default). When exactly a multiple of 128 connections were ready, that
 * call sleeps until another event comes, with those connections' requests
 * read as ready but not yet served: a burst of 256 clients waited 15 s.
 * This definition takes the library's calls (the executable's symbol comes
 * first) and never sleeps right after a full batch on the same thread,
 * which is what that loop means to do ("drain"). Everything else is
 * epoll_wait() itself. README "Connections"; tests/e2e/test_burst.py. */
int epoll_wait(int epfd, struct epoll_event *events, int maxevents,
               int timeout);

int epoll_wait(int epfd, struct epoll_event *events, int maxevents,
               int timeout)
{
    static _Thread_local bool after_full;
    int n = epoll_pwait(epfd, events, maxevents, after_full ? 0 : timeout,
                        NULL);

    after_full = n > 0 && n == maxevents;
    return n;
}

/* The listening socket while the server quiesces, else -1. */
static atomic_int quiescing_fd = -1;

void mhdepoll_quiescing(int fd)
{
    atomic_store(&quiescing_fd, fd);
}

typedef int (*epoll_ctl_fn)(int, int, int, struct epoll_event *);

/* libmicrohttpd 0.9.75's MHD_quiesce_daemon() takes the listening socket
 * out of each worker thread's epoll set while that thread may be taking it
 * out itself (it does on its next loop once it sees the daemon quiesced).
 * Whichever of the two comes second gets ENOENT, and in two of its three
 * places libmicrohttpd then aborts the process ("Failed to remove listen FD
 * from epoll set"): a SIGTERM while connections were closing could end in
 * SIGABRT. The socket is out of the set either way, which is what both
 * meant, so while stopping, this definition (the executable's symbol comes
 * first, as for epoll_wait() above) answers that one ENOENT as success.
 * Everything else is the next epoll_ctl(). tests/e2e/test_shutdown_race.py */
int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event);

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
{
    static _Atomic(epoll_ctl_fn) next;
    epoll_ctl_fn f = atomic_load(&next);
    int rc = -1;

    if (!f) {
        *(void **)&f = dlsym(RTLD_NEXT, "epoll_ctl");
        atomic_store(&next, f);
    }
    if (f)
        rc = f(epfd, op, fd, event);
    else
        errno = ENOSYS;
    if (rc != 0 && op == EPOLL_CTL_DEL && errno == ENOENT && fd >= 0 &&
        fd == atomic_load(&quiescing_fd))
        rc = 0;
    return rc;
}
