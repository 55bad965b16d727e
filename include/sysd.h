#ifndef AUTH_SYSD_H              /* sysd.h: the systemd service protocol */
#define AUTH_SYSD_H
#include <stdbool.h>
#include <stdint.h>

/* Opens libsystemd when the service manager speaks to this process
 * (NOTIFY_SOCKET, LISTEN_FDS or WATCHDOG_USEC set); call it first, before
 * any thread starts. True when opened or not needed (then every call
 * below is a no-op, as libsystemd's own are outside systemd); false with
 * *why (static storage) when it is needed and cannot be opened. */
bool sysd_open(const char **why);

/* The listening socket passed by socket activation (LISTEN_FDS), or -1
 * when none was passed. Sets *bad when sockets were passed but the first
 * is not a listening stream socket (or more than one was passed), so
 * the caller can refuse to start instead of binding AUTH_PORT. */
int sysd_listen_fd(bool *bad);

/* Sends `state` ("READY=1\nSTATUS=...") to the service manager; a no-op
 * without NOTIFY_SOCKET. Printf-style; never fails the caller. */
void sysd_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A thread that sends WATCHDOG=1 every half WATCHDOG_USEC, each time
 * only after a GET /healthz to the daemon's own listening socket
 * `listen_fd` was answered 200 in time: a daemon whose request threads
 * stop answering stops petting the watchdog and systemd restarts it. */
struct sysd_watchdog;

/* Starts it when the service manager asked for a watchdog (else *out is
 * NULL and nothing runs). False when the thread cannot start. */
bool sysd_watchdog_new(int listen_fd, struct sysd_watchdog **out);
/* Stops and frees it (joins the thread); NULL is a no-op. */
void sysd_watchdog_free(struct sysd_watchdog *w);
/* True when one GET /healthz to `listen_fd`'s address is answered 200
 * within `timeout_ms`. */
bool sysd_probe(int listen_fd, uint64_t timeout_ms);

#endif
