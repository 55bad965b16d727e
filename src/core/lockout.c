/* lockout.c: the login lockout rules, written once above both backends
 * (README "Lockout"). */
#include "lockout.h"

#include "cfg.h"
#include "netaddr.h"

/* A count idle this long (or twice the longest delay, if longer) starts
 * again from zero, and its row may be pruned. */
#define FORGET_MS INT64_C(86400000)
#define FIRST_DELAY_MS INT64_C(1000)
#define MAX_DOUBLINGS 20

void lockout_policy_init(struct lockout_policy *p, const struct cfg *cfg)
{
    p->threshold = cfg->lockout_threshold ? cfg->lockout_threshold : 1;
    p->max_delay_ms = (int64_t)cfg->lockout_max_seconds * 1000;
}

static int64_t forget_ms(const struct lockout_policy *p)
{
    return p->max_delay_ms > FORGET_MS / 2 ? 2 * p->max_delay_ms
                                           : FORGET_MS;
}

/* The delay after `over` failures past a threshold: 1 s, doubling. */
static int64_t delay_ms(const struct lockout_policy *p, int64_t over)
{
    int64_t d = FIRST_DELAY_MS << (over < MAX_DOUBLINGS ? over
                                                        : MAX_DOUBLINGS);

    return d < p->max_delay_ms ? d : p->max_delay_ms;
}

/* The email's total that locks it for every address: one past ten
 * times the threshold (README "Lockout": "only past 10 times the
 * threshold"), so ten addresses, each adding at most the threshold,
 * never reach it; an eleventh is needed. */
static int64_t all_limit(const struct lockout_policy *p)
{
    return p->threshold * LOCKOUT_ALL_FACTOR + 1;
}

/* Forgets a count idle for too long. */
static void freshen(const struct lockout_policy *p, int64_t now,
                    struct login_count *c)
{
    if (c->count > 0 && c->last_at < now - forget_ms(p))
        *c = (struct login_count){ 0 };
}

void lockout_attempt(const struct lockout_policy *p, int64_t now,
                     struct login_count *addr, struct login_count *all,
                     struct lockout_verdict *v)
{
    int64_t limit = all_limit(p);

    freshen(p, now, addr);
    freshen(p, now, all);
    v->refused = addr->locked_until > now || all->locked_until > now;
    addr->count++;
    addr->last_at = now;
    addr->locked_until = addr->count >= p->threshold
                             ? now + delay_ms(p, addr->count - p->threshold)
                             : 0;
    /* One address adds at most the threshold to the total, however many
     * and however long its failures go on: it alone never locks the email
     * for anyone else. Once the total is reached (past ten addresses'
     * worth), every attempt counts and doubles the email's delay: else
     * each of any number of addresses past its own threshold (made so
     * by attempts refused during the email's delay) got a check per
     * delay of its own, and the total bounded nothing. */
    if (addr->count <= p->threshold || all->count >= limit) {
        all->count++;
        all->last_at = now;
        all->locked_until = all->count >= limit
                                ? now + delay_ms(p, all->count - limit)
                                : 0;
    }
    v->until = addr->locked_until > now ? addr->locked_until : 0;
    if (all->locked_until > now && all->locked_until > v->until)
        v->until = all->locked_until;
}

struct attempt_ctx {
    const struct lockout_policy *p;
    int64_t now;
    struct lockout_verdict v;
    struct repo_user_read *read;
    struct lockout_ticket *t;
};

/* Each new row (the address's count started now) prunes a few idle
 * ones, in the same transaction, so the table stays bounded. */
static int64_t attempt_fn(void *arg, struct login_count *addr,
                          struct login_count *all)
{
    struct attempt_ctx *x = arg;
    int64_t all_before = all->count;

    lockout_attempt(x->p, x->now, addr, all, &x->v);
    if (x->t)              /* a retried transaction: its last run's counts */
        *x->t = (struct lockout_ticket){ .set = true, .count = addr->count,
                                         .locked_until = addr->locked_until,
                                         .all_count = all->count,
                                         .all_locked_until =
                                             all->locked_until,
                                         .all_counted =
                                             all->count != all_before };
    if (x->read)
        x->read->wanted = !x->v.refused;  /* a locked caller: no lookup */
    return addr->count == 1 ? x->now - forget_ms(x->p) : 0;
}

enum as_err lockout_begin(struct repo *r, const struct lockout_policy *p,
                          const char *email, const char *ip, int64_t now,
                          int64_t *retry_s, struct repo_user_read *read,
                          struct lockout_ticket *t)
{
    struct attempt_ctx x = { .p = p, .now = now, .read = read, .t = t };
    char key[NETADDR_KEY_LEN];
    enum as_err err;

    *retry_s = 0;
    netaddr_client_key(ip, key);
    err = read ? repo_login_failures_read(r, email, key, attempt_fn, &x,
                                          read)
               : repo_login_failures_update(r, email, key, attempt_fn, &x);
    if (err != AS_OK)
        return err;
    if (!x.v.refused)
        return AS_OK;
    if (t)
        t->set = false;                 /* refused: nothing to take back */
    *retry_s = x.v.until > now ? (x.v.until - now + 999) / 1000 : 1;
    if (*retry_s < 1)
        *retry_s = 1;
    return AS_ERR_RATE_LIMITED;
}

void lockout_take_back(const struct lockout_policy *p,
                       struct login_count *addr, struct login_count *all,
                       const struct lockout_ticket *t)
{
    /* Nothing counted since the attempt: the count and the lock are the
     * ones it left (every attempt raises the count, every take-back
     * restores its own), and the lock it armed replaced none in force. */
    bool last = t && t->set && addr->count == t->count &&
                addr->locked_until == t->locked_until;
    bool all_last = t && t->set && all->count == t->all_count &&
                    all->locked_until == t->all_locked_until;
    /* The attempt counted in the total as lockout_attempt() decided
     * (its ticket says; without one: within the address's threshold, or
     * with the total reached before it, so above it now). */
    bool in_all = t && t->set ? t->all_counted
                              : addr->count <= p->threshold ||
                                    all->count > all_limit(p);

    if (addr->count <= 0)
        return;
    if (in_all && all->count > 0) {
        all->count--;
        /* The attempt that took the total to its limit: while it was
         * checked, every attempt counted (lockout_attempt()), those of
         * addresses past their own threshold too, which count only once
         * the limit is reached. They go back with it: else ten addresses
         * hammering during the owner's right password left the total
         * past the limit, and locked the email for everyone. (Another
         * fresh address's failure in that window goes back too: at most
         * one per check of a right password.) */
        if (t && t->set && t->all_counted &&
            t->all_count == all_limit(p) && all->count >= all_limit(p))
            all->count = all_limit(p) - 1;
        if (all->count < all_limit(p) || all_last)
            all->locked_until = 0;
    }
    addr->count--;
    if (addr->count < p->threshold || last)
        addr->locked_until = 0;
}

struct refund_ctx {
    const struct lockout_policy *p;
    const struct lockout_ticket *t;
};

static int64_t refund_fn(void *arg, struct login_count *addr,
                         struct login_count *all)
{
    struct refund_ctx *x = arg;

    lockout_take_back(x->p, addr, all, x->t);
    return 0;
}

enum as_err lockout_refund(struct repo *r, const struct lockout_policy *p,
                           const char *email, const char *ip,
                           const struct lockout_ticket *t)
{
    struct refund_ctx x = { p, t };
    char key[NETADDR_KEY_LEN];

    netaddr_client_key(ip, key);
    return repo_login_failures_update(r, email, key, refund_fn, &x);
}

enum as_err lockout_passed(struct repo *r, const char *email,
                           const char *ip)
{
    char key[NETADDR_KEY_LEN];

    netaddr_client_key(ip, key);
    return repo_login_failures_clear(r, email, key);
}

enum as_err lockout_unlock(struct repo *r, const char *email)
{
    return repo_login_failures_clear(r, email, NULL);
}
