#ifndef AUTH_REPO_INT_H          /* repo_int.h: inside the repository only */
#define AUTH_REPO_INT_H
#include "repo.h"

/* Builds a repository around a backend that is already open: every call
 * goes through a breaker made from cfg->cb_failure_threshold and
 * cfg->cb_open_seconds (0 takes cfg_defaults()'s). Takes `impl` in
 * every case: on failure (AS_ERR_NOMEM) it has been closed with
 * ops->close. The result is freed with repo_close(). repo_open() uses it;
 * tests use it to put a fake backend behind the real dispatcher. */
enum as_err repo_wrap(const struct cfg *cfg, const struct repo_ops *ops,
                      void *impl, struct repo **out);

/* The backoff in ms before attempt `attempt` + 2 of a call that hit a
 * lock conflict: a random value (from `rnd`) between half and all of
 * 4 ms doubled `attempt` times. Pure: tests pass `rnd`. */
unsigned repo_retry_delay_ms(unsigned attempt, uint32_t rnd);

/* role_name(): "admin" or "user"; NULL for a value outside enum role. */
const char *repo_role_name(enum role r);
/* role_parse(), with ROLE_USER for anything but "user" and "admin". */
enum role repo_role_parse(const char *s);

#endif
