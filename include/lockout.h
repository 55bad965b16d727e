#ifndef AUTH_LOCKOUT_H           /* lockout.h: the login lockout rules */
#define AUTH_LOCKOUT_H
#include <stdbool.h>
#include <stdint.h>
#include "err.h"
#include "repo.h"

struct cfg;

/* The whole lockout rule lives in src/core/lockout.c (README "Lockout"); the
 * repository only stores the counts and runs one update atomically.
 *
 * Every check of a password, one-time code or secret of an account goes
 * through it: lockout_begin() before the (costly) check, which counts the
 * attempt as a failure at once, so that concurrent guesses can never slip
 * past the threshold; lockout_passed() when the login is complete, which
 * ends the address's run of failures. An attempt made while locked is
 * refused without checking, and counted. */

/* Failures of one email from every address together lock it only past
 * this many times the threshold. */
#define LOCKOUT_ALL_FACTOR 10

struct lockout_policy {
    int64_t threshold;           /* failures from one address before delays */
    int64_t max_delay_ms;        /* the longest delay */
};

/* What lockout_attempt() decided. */
struct lockout_verdict {
    bool refused;                /* locked: answer 429, do not check */
    int64_t until;               /* Unix ms the lock now in force ends
                                    (0: none) */
};

/* What one attempt left in the counts, so that its take-back can tell
 * whether anything counted since: the address's and the total's count and
 * lock right after it, and whether it counted in the total at all. */
struct lockout_ticket {
    bool set;
    int64_t count, locked_until;
    int64_t all_count, all_locked_until;
    bool all_counted;            /* it added to the total */
};

/* The policy of AUTH_LOCKOUT_THRESHOLD and AUTH_LOCKOUT_MAX_SECONDS. */
void lockout_policy_init(struct lockout_policy *p, const struct cfg *cfg);

/* The rule, as a pure function of the stored counts: counts one attempt
 * at `now` from one address (`addr`) on one email (`all`: the total of
 * every address, to which each address adds at most the threshold),
 * updating both in place, and tells whether it must be refused. */
void lockout_attempt(const struct lockout_policy *p, int64_t now,
                     struct login_count *addr, struct login_count *all,
                     struct lockout_verdict *v);

/* Takes back one attempt that lockout_attempt() counted: the address's
 * count, the share of the total it added, and a lock that no longer
 * holds. The attempt was allowed, so no lock was in force before it: the
 * lock it armed goes too, when `t` (may be NULL) shows that nothing was
 * counted since (a lock a later failure armed stays). */
void lockout_take_back(const struct lockout_policy *p,
                       struct login_count *addr, struct login_count *all,
                       const struct lockout_ticket *t);

/* Counts an attempt on `email` (normalised) from client address `ip`
 * (an IPv6 address counts as its /64) at `now`, atomically with the check
 * of the lock, filling ticket `t` (may be NULL) for lockout_refund(). AS_OK: go on and check the secret (it stays counted as a
 * failure unless lockout_passed() follows). AS_ERR_RATE_LIMITED: locked,
 * refuse without checking; *retry_s gets the seconds until the lock ends
 * (at least 1). Otherwise a repository error (nothing may be checked).
 * With `read` (may be NULL), an unlocked attempt also reads the user of
 * `email` into it, in the same step (repo_login_failures_read()). */
enum as_err lockout_begin(struct repo *r, const struct lockout_policy *p,
                          const char *email, const char *ip, int64_t now,
                          int64_t *retry_s, struct repo_user_read *read,
                          struct lockout_ticket *t);
/* Takes back the attempt lockout_begin() counted (its ticket `t`, or
 * NULL) when the secret proved right but the login is not complete yet
 * (a right password with the second factor on): the count neither grows
 * nor ends, and the delay it armed is lifted (README "Second factor"). */
enum as_err lockout_refund(struct repo *r, const struct lockout_policy *p,
                           const char *email, const char *ip,
                           const struct lockout_ticket *t);
/* Ends the run of failures of `email` from `ip` (and the email's total)
 * after a complete login. */
enum as_err lockout_passed(struct repo *r, const char *email,
                           const char *ip);
/* Lifts every lock and count of `email` (an admin's unlock). */
enum as_err lockout_unlock(struct repo *r, const char *email);

#endif
