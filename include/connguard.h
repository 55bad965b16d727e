#ifndef AUTH_CONNGUARD_H        /* connguard.h: slow clients, per prefix */
#define AUTH_CONNGUARD_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Bookkeeping of open connections against slow clients: a deadline from a
 * request's first byte to its complete headers, another from its complete
 * headers to its complete body, and a limit of open connections per client
 * address (IPv6: per /64). Thread-safe. */
struct connguard;
struct cg_conn;                 /* one open connection; opaque */

/* A received-byte count that could not be read. */
#define CG_RX_UNKNOWN UINT64_MAX

/* Makes a guard for at most about `max_conns` connections at once, whose
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
 * `per_prefix` connections open already, or out of memory: the caller
 * then refuses the connection. The record lives until connguard_close(). */
struct cg_conn *connguard_open(struct connguard *g, const struct sockaddr *sa,
                               int fd, uint64_t rx_bytes, uint64_t now_ms);
/* Forgets `c`; call it before its socket is closed. NULL is a no-op. */
void connguard_close(struct connguard *g, struct cg_conn *c);
/* The request line of `c`'s current request has arrived at `now_ms`: its
 * first byte came no later. NULL is a no-op. */
void connguard_request_line(struct connguard *g, struct cg_conn *c,
                            uint64_t now_ms);
/* The headers of `c`'s current request are complete at `now_ms`: its body
 * (if any) must be complete by the body deadline. NULL is a no-op. */
void connguard_headers_done(struct connguard *g, struct cg_conn *c,
                            uint64_t now_ms);
/* The body of `c`'s current request is complete (or it had none): no
 * deadline until the request ends. NULL is a no-op. */
void connguard_body_done(struct connguard *g, struct cg_conn *c);
/* `c`'s request ended with `rx_bytes` (or CG_RX_UNKNOWN) received so far:
 * the next request's deadline starts at its first byte after those.
 * NULL is a no-op. */
void connguard_request_done(struct connguard *g, struct cg_conn *c,
                            uint64_t rx_bytes);

/* Reads how many bytes socket `fd` has received (CG_RX_UNKNOWN when it
 * cannot tell). */
typedef uint64_t (*connguard_rx_fn)(int fd);
/* Acts on a socket whose headers are late (production: shuts it down). */
typedef void (*connguard_expire_fn)(int fd, void *arg);

/* Checks every connection waiting for headers or a body at `now_ms`: one
 * waiting for headers whose received count moved past its mark starts its
 * deadline now; one whose deadline has passed is handed to `expire` (once;
 * the socket is still open during the call). Returns how many were
 * expired, and sets `*bodies` (when not NULL) to how many of them were
 * waiting for a body. */
unsigned connguard_sweep(struct connguard *g, uint64_t now_ms,
                         connguard_rx_fn rx, connguard_expire_fn expire,
                         void *arg, unsigned *bodies);

/* The received-byte count of TCP socket `fd` (TCP_INFO), or CG_RX_UNKNOWN. */
uint64_t connguard_tcp_rx(int fd);
/* Starts a thread that sweeps every `period_ms` with the monotonic clock,
 * connguard_tcp_rx and shutdown(2), logging what it closed. False when the
 * thread cannot be made. */
bool connguard_start(struct connguard *g, unsigned period_ms);
/* Stops and joins that thread; a no-op when it is not running. */
void connguard_stop(struct connguard *g);

#endif
