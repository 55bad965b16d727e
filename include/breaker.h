#ifndef AUTH_BREAKER_H           /* breaker.h: guards every database call */
#define AUTH_BREAKER_H
#include <stdbool.h>
#include <stdint.h>
#include "err.h"

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct breaker;                  /* opaque; fields and mutex in breaker.c */

/* Thread-safe. Opens after `threshold` consecutive infrastructure
 * failures (as_err_is_infra) for `cooldown_ms`, then lets up to `probes`
 * calls through (half-open): a success closes it, a failure opens it
 * again. Time is passed in. NULL when out of memory. */
struct breaker *breaker_new(unsigned threshold, uint64_t cooldown_ms,
                            unsigned probes);
void breaker_free(struct breaker *b);                  /* NULL is a no-op */
/* True when a call may go ahead at `now_ms`. A true answer in half-open
 * takes one probe slot, which breaker_record() gives back. */
bool breaker_allow(struct breaker *b, uint64_t now_ms);
/* Records the result of a call that breaker_allow() let through. Only
 * infrastructure failures count; any other result is a success. One
 * AS_ERR_DB_UNREACHABLE (the server did not answer in time) opens it at
 * once: each call after it would wait out the same timeout. */
void breaker_record(struct breaker *b, enum as_err res, uint64_t now_ms);
/* The state at `now_ms` (open turns half-open once the cooldown passed). */
enum breaker_state breaker_state(struct breaker *b, uint64_t now_ms);
/* Milliseconds until an open breaker lets a probe through (0 otherwise),
 * for Retry-After. */
uint64_t breaker_retry_after_ms(struct breaker *b, uint64_t now_ms);
/* Name of a state: "closed", "open", "half_open". */
const char *breaker_state_name(enum breaker_state s);

#endif
