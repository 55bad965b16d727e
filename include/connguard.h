#ifndef AUTH_CONNGUARD_H        /* connguard.h: slow clients, per prefix */
#define AUTH_CONNGUARD_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Bookkeeping of open connections against slow clients: a deadline from a
 * request's first byte to its complete headers, another from its complete
 * headers to its complete body, a limit of open connections in all and per
 * client address (IPv6: per /64); and idle connections parked: held here,
 * outside the server, until their next request arrives. Thread-safe. */
struct connguard;
struct cg_conn;                 /* one open connection; opaque */

/* A received-byte count that could not be read. */
#define CG_RX_UNKNOWN UINT64_MAX

/* Makes a guard for at most `max_conns` connections at once (0: no limit),
 * parked ones included, whose
 * requests must have complete headers `header_timeout_ms` after their first
 * byte and a complete body `body_timeout_ms` after that, and at most
 * `per_prefix` connections from one IPv4 address or IPv6 /64 (0: no
 * limit). NULL when out of memory. Free with connguard_free(). */
struct connguard *connguard_new(uint64_t header_timeout_ms,
                                uint64_t body_timeout_ms,
                                unsigned per_prefix, unsigned max_conns);
/* Frees `g` and any connection still recorded (stop the sweeper first with
 * connguard_stop()). NULL is a no-op. */
void connguard_free(struct connguard *g);

/* Records a new connection from `sa` on socket `fd`, `rx_bytes` (or
 * CG_RX_UNKNOWN) received on it so far, at `now_ms`. Its first request
 * waits for headers from then on. NULL when the address or its /64 has
 * `per_prefix` connections open already, `max_conns` are open, or out of
 * memory: the caller then refuses the connection. A parked connection
 * being given back (see connguard_set_parking()) gets its own record
 * back, whatever the limits. The record lives until connguard_close() or
 * connguard_park(). */
struct cg_conn *connguard_open(struct connguard *g, const struct sockaddr *sa,
                               int fd, uint64_t rx_bytes, uint64_t now_ms);
/* Forgets `c`; call it before its socket is closed. NULL is a no-op. */
void connguard_close(struct connguard *g, struct cg_conn *c);
/* The request line of `c`'s current request has arrived at `now_ms`: its
 * first byte came no later. Its target, as read, is `target_len` bytes up
 * to its first NUL. NULL is a no-op. */
void connguard_request_line(struct connguard *g, struct cg_conn *c,
                            uint64_t now_ms, size_t target_len);
/* True, with *len the target length connguard_request_line() recorded
 * for `c`'s current request, when one was; false for NULL. Called by the
 * thread serving `c` (it takes no lock). */
bool connguard_target(struct connguard *g, struct cg_conn *c, size_t *len);
/* The headers of `c`'s current request are complete at `now_ms`: its body
 * (if any) must be complete by the body deadline. NULL is a no-op. */
void connguard_headers_done(struct connguard *g, struct cg_conn *c,
                            uint64_t now_ms);
/* The body of `c`'s current request is complete (or it had none): no
 * deadline until the request ends. NULL is a no-op. */
void connguard_body_done(struct connguard *g, struct cg_conn *c);
/* `c`'s request ended at `now_ms` with `rx_bytes` (or CG_RX_UNKNOWN)
 * received so far, all read by the server: the next request's deadline
 * starts at its first byte after those. NULL is a no-op. */
void connguard_request_done(struct connguard *g, struct cg_conn *c,
                            uint64_t rx_bytes, uint64_t now_ms);

/* Hands a parked connection's socket `fd`, with bytes of its next
 * request waiting, back to the server, from the guard's thread. True when
 * the server took it; false when it refused it, and closed it. */
typedef bool (*connguard_wake_fn)(int fd, const struct sockaddr *sa,
                                  socklen_t len, void *arg);
/* Turns parking on (before connguard_start()): a parked connection is
 * closed `idle_timeout_ms` after it fell idle, and one idle for less than
 * `min_idle_ms` is not parked. */
void connguard_set_parking(struct connguard *g, uint64_t idle_timeout_ms,
                           uint64_t min_idle_ms, connguard_wake_fn wake,
                           void *arg);
/* The server is about to close `c`'s socket `fd` at `now_ms`. When
 * parking is on, `c` is a TCP connection idle since its last request (or
 * since it opened) for min_idle_ms or more, and the server has read no
 * byte since (any that came are still queued in the kernel), the guard
 * keeps a duplicate of the socket and `c`, and returns true: the server
 * closes its descriptor and does not call connguard_close(). When the
 * next request's bytes come, `wake` gives the socket back, and the
 * server's connguard_open() of it gets `c` back. False: nothing done. */
bool connguard_park(struct connguard *g, struct cg_conn *c, int fd,
                    uint64_t now_ms);
/* Whether `c` can ever be parked: a TCP connection. One on a Unix socket
 * cannot (no peer address to give back, no TCP byte counts), so the
 * server keeps it idle for AUTH_CONNECTION_TIMEOUT itself. */
bool connguard_parkable(const struct cg_conn *c);

/* Reads how many bytes socket `fd` has received (CG_RX_UNKNOWN when it
 * cannot tell). */
typedef uint64_t (*connguard_rx_fn)(int fd);
/* Acts on a socket whose headers are late (production: shuts it down). */
typedef void (*connguard_expire_fn)(int fd, void *arg);

/* Checks every connection waiting for headers or a body at `now_ms`: one
 * waiting for headers whose received count moved past its mark starts its
 * deadline now; one whose deadline has passed is handed to `expire` (once;
 * the socket is still open during the call). Parked connections idle for
 * the idle timeout are closed and forgotten. Returns how many were
 * expired, and sets `*bodies` (when not NULL) to how many of them were
 * waiting for a body. */
unsigned connguard_sweep(struct connguard *g, uint64_t now_ms,
                         connguard_rx_fn rx, connguard_expire_fn expire,
                         void *arg, unsigned *bodies);

/* The received-byte count of TCP socket `fd` (TCP_INFO), or CG_RX_UNKNOWN. */
uint64_t connguard_tcp_rx(int fd);
/* Starts a thread that sweeps every `period_ms` with the monotonic clock,
 * connguard_tcp_rx and shutdown(2), logging what it closed, and wakes
 * parked connections. False when the thread cannot be made. */
bool connguard_start(struct connguard *g, unsigned period_ms);
/* The server stops: no connection is parked any more, and none parked
 * is woken; the thread goes on sweeping, so a request still being sent
 * meets its header or body deadline while the server drains. */
void connguard_quiesce(struct connguard *g);
/* Shuts down every connection still sending its request (its headers or
 * its body): past the stop's grace, a request not yet read is one the
 * client may send again, and none of it has run. Returns how many. */
unsigned connguard_cut_unread(struct connguard *g);
/* Ends parking, stops and joins that thread (when running) and closes
 * the parked connections. */
void connguard_stop(struct connguard *g);

#endif
