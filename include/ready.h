#ifndef AUTH_READY_H             /* ready.h: readiness without waiting */
#define AUTH_READY_H
#include <stdbool.h>
#include <stdint.h>
#include "err.h"

/* A background prober of the database: its own thread calls `ping`
 * every `interval_ms` (and soon after a ready_check() asks), and keeps
 * the outcome, so /readyz answers from it on an HTTP thread without ever
 * waiting on the database. Thread-safe. */
struct ready;

/* Checks the database; may wait as long as the database makes it. */
typedef enum as_err (*ready_ping_fn)(void *arg);

/* Starts the prober; the first ping runs at once. `ping` and `arg` are
 * borrowed until ready_free(). A ping still running after `stall_ms`
 * counts as a failure. NULL when out of memory or threads. */
struct ready *ready_new(ready_ping_fn ping, void *arg, uint64_t interval_ms,
                        uint64_t stall_ms);
/* Stops the prober (after the ping in progress, if any, returns) and
 * frees it; NULL is a no-op. */
void ready_free(struct ready *r);
/* True when, at monotonic time `now_ms`, the last finished ping
 * succeeded and no ping has been running for `stall_ms` or more. Asks
 * for a new ping at once (at most one every few milliseconds), so that a
 * caller polling this sees a recovery promptly. Never waits on a ping. */
bool ready_check(struct ready *r, uint64_t now_ms);
/* True when a ping has been running for `stall_ms` or more at `now_ms`:
 * the database does not answer, and a call made now would wait out its
 * timeout (README.md "Circuit breaker"). Lock-free, one atomic load; the
 * first true of a stalled ping logs "db.stalled", its end
 * "db.stall_ended". */
bool ready_stalled(struct ready *r, uint64_t now_ms);
/* A database call did not reach the database (on any thread; never
 * waits; src/repo/driver.h db_unreached()): ready_check() says not ready
 * until a ping that starts after it succeeds, and a ping is asked for
 * now. Without this, /readyz answered the last ping's 200 for up to a
 * second after requests got 503 from a stopped database. */
void ready_failed(struct ready *r);
/* Waits until the first ping has ended, at most `timeout_ms`; true when
 * it ended in time and succeeded. For start-up only (it blocks): a
 * caller that announces readiness after it sees ready_check() agree. */
bool ready_wait_first(struct ready *r, uint64_t timeout_ms);

#endif
