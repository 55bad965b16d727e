/* repo.c: picks the backend from the URL; every call passes the breaker. */
#include "repo.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"

#include "breaker.h"
#include "cfg.h"
#include "clock.h"
#include "driver.h"
#include "log.h"
#include "repo_int.h"

#define DEFAULT_CB_THRESHOLD (cfg_defaults()->cb_failure_threshold)
#define DEFAULT_CB_OPEN_SECONDS (cfg_defaults()->cb_open_seconds)
#define RETRY_MAX 5u                 /* attempts at a call (see TRIES) */
#define RETRY_BASE_MS 4u             /* backoff before the 2nd attempt */

struct repo {
    const struct repo_ops *ops;
    void *impl;
    struct breaker *br;
    atomic_uint_fast64_t errors;     /* infrastructure failures, refusals */
    /* repo_set_gate()'s: set once, read by every call */
    _Atomic(repo_gate_fn *) gate;
    _Atomic(repo_failed_fn *) failed;
    void *_Atomic gate_arg;
};

/* pg.c defines the real repo_pg_open when the build has the PostgreSQL
 * backend (CMake option AUTH_POSTGRES, README "Layout"); without it a
 * postgres URL is refused here, and the log says why. */
#ifndef AUTH_POSTGRES
enum as_err repo_pg_open(const struct cfg *cfg, const char *url,
                         const struct repo_ops **ops, void **impl)
{
    (void)cfg;
    (void)url;
    *ops = NULL;
    *impl = NULL;
    log_event(LOG_ERROR, "repo.open_failed", NULL,
              json_pack("{s:s, s:s}", "backend", "postgres", "reason",
                        "postgres backend not built"));
    return AS_ERR_INTERNAL;
}

/* (`config check`: a postgres URL is one this build cannot use) */
enum as_err repo_pg_url_check(const char *url)
{
    (void)url;
    log_event(LOG_ERROR, "repo.open_failed", NULL,
              json_pack("{s:s, s:s}", "backend", "postgres", "reason",
                        "postgres backend not built"));
    return AS_ERR_BAD_REQUEST;
}
#endif

const char *repo_role_name(enum role r)
{
    return role_name(r);
}

enum role repo_role_parse(const char *s)
{
    enum role r = ROLE_USER;

    return role_parse(s, &r) ? r : ROLE_USER;
}

/* mkdir(dir, 0700) unless it exists; logs why not otherwise. */
static enum as_err make_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return AS_OK;
    log_event(LOG_ERROR, "repo.open_failed", NULL,
              json_pack("{s:s, s:s, s:s}", "backend", "sqlite", "folder",
                        dir, "reason", strerror(errno)));
    return AS_ERR_INTERNAL;
}

/* Creates every missing folder above the file `path`, mode 0700. */
static enum as_err make_parents(const char *path)
{
    enum as_err err = AS_OK;
    char *dir = strdup(path);
    char *slash, *p;

    if (!dir)
        return AS_ERR_NOMEM;
    slash = strrchr(dir, '/');
    if (slash && slash != dir) {        /* else "." or "/": both exist */
        *slash = '\0';
        for (p = strchr(dir + 1, '/'); p && err == AS_OK;
             p = strchr(p + 1, '/')) {
            *p = '\0';
            err = make_dir(dir);
            *p = '/';
        }
        if (err == AS_OK)
            err = make_dir(dir);
    }
    free(dir);
    return err;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

enum as_err repo_wrap(const struct cfg *cfg, const struct repo_ops *ops,
                      void *impl, struct repo **out)
{
    unsigned threshold = cfg->cb_failure_threshold ? cfg->cb_failure_threshold
                                                   : DEFAULT_CB_THRESHOLD;
    uint64_t open_ms = (uint64_t)(cfg->cb_open_seconds
                                      ? cfg->cb_open_seconds
                                      : DEFAULT_CB_OPEN_SECONDS) * 1000u;
    struct repo *r = calloc(1, sizeof *r);

    *out = NULL;
    if (r)
        r->br = breaker_new(threshold, open_ms, 1);
    if (!r || !r->br) {
        free(r);
        ops->close(impl);
        return AS_ERR_NOMEM;
    }
    r->ops = ops;
    r->impl = impl;
    *out = r;
    return AS_OK;
}

enum as_err repo_open(const struct cfg *cfg, struct repo **out)
{
    const char *url = cfg->database_url;
    const struct repo_ops *ops = NULL;
    void *impl = NULL;
    enum as_err err;

    *out = NULL;
    if (url && has_prefix(url, "sqlite:") && url[7] != '\0') {
        err = make_parents(url + 7);
        if (err == AS_OK)
            err = repo_sqlite_open(cfg, url + 7, &ops, &impl);
    } else if (url && (has_prefix(url, "postgresql://")
                       || has_prefix(url, "postgres://"))) {
        err = repo_pg_open(cfg, url, &ops, &impl);
    } else {
        /* cfg_load() refuses such URLs; never log one (it may hold a
         * password). */
        log_event(LOG_ERROR, "repo.open_failed", NULL,
                  json_pack("{s:s}", "reason", "unsupported database URL"));
        err = AS_ERR_INTERNAL;
    }
    if (err == AS_OK)
        err = repo_wrap(cfg, ops, impl, out);
    return err;
}

/* The pid holding a flock(2) on the file `st` names, from /proc/locks
 * (lines such as "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"), or
 * 0 when it cannot be told. */
static long flock_holder(const struct stat *st)
{
    FILE *f = fopen("/proc/locks", "re");
    char line[256];
    long pid = 0, p;
    unsigned maj, min;
    unsigned long ino;

    while (f && pid == 0 && fgets(line, sizeof line, f))
        if (strstr(line, "FLOCK") &&
            sscanf(line, "%*[^F]FLOCK %*s %*s %ld %x:%x:%lu", &p, &maj, &min,
                   &ino) == 4 &&
            ino == (unsigned long)st->st_ino && maj == major(st->st_dev) &&
            min == minor(st->st_dev))
            pid = p;
    if (f)
        fclose(f);
    return pid;
}

/* README "Running on PostgreSQL and several instances": one daemon per
 * SQLite database. Another daemon on the same file would answer from its
 * own session cache what this one revoked (nothing tells it; PostgreSQL
 * has NOTIFY for that). The lock is flock(2) on the database file itself,
 * whatever name, link or hard link reaches it: independent of SQLite's
 * own POSIX record locks (Linux keeps the two apart), and held by a
 * descriptor this process never closes, since closing one would drop
 * this process's record locks on the file (a caution SQLite's
 * documentation gives): gone with the process, so a crash leaves
 * nothing to clean. Called once the backend has opened (made) the file. */
enum as_err repo_claim(const struct cfg *cfg, long *holder)
{
    const char *url = cfg->database_url;
    struct stat st;
    int fd;

    *holder = 0;
    if (!url || !has_prefix(url, "sqlite:") || url[7] == '\0' ||
        strcmp(url + 7, ":memory:") == 0)
        return AS_OK;      /* PostgreSQL: instances share; memory: private */
    fd = open(url + 7, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        log_event(LOG_ERROR, "repo.open_failed", NULL,
                  json_pack("{s:s, s:s, s:s}", "backend", "sqlite", "path",
                            url + 7, "reason", strerror(errno)));
        return AS_ERR_INTERNAL;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return AS_OK;                   /* fd kept open: the lock */
    if (errno != EWOULDBLOCK) {
        log_event(LOG_ERROR, "repo.open_failed", NULL,
                  json_pack("{s:s, s:s, s:s}", "backend", "sqlite", "path",
                            url + 7, "reason", strerror(errno)));
        return AS_ERR_INTERNAL;         /* fd kept: this process exits */
    }
    *holder = flock_holder(&st);
    return AS_ERR_CONFLICT;             /* fd kept: this process exits */
}

void repo_close(struct repo *r)
{
    if (!r)
        return;
    r->ops->close(r->impl);
    breaker_free(r->br);
    free(r);
}

const char *repo_backend(const struct repo *r)
{
    return r->ops->name;
}

struct breaker *repo_breaker(struct repo *r)
{
    return r->br;
}

uint64_t repo_error_count(struct repo *r)
{
    return atomic_load_explicit(&r->errors, memory_order_relaxed);
}

void repo_set_gate(struct repo *r, repo_gate_fn *gate,
                   repo_failed_fn *failed, void *arg)
{
    atomic_store_explicit(&r->gate_arg, arg, memory_order_relaxed);
    atomic_store_explicit(&r->failed, failed, memory_order_release);
    atomic_store_explicit(&r->gate, gate, memory_order_release);
}

bool repo_gated(struct repo *r, uint64_t now_ms)
{
    repo_gate_fn *gate = atomic_load_explicit(&r->gate, memory_order_acquire);

    return gate && gate(atomic_load_explicit(&r->gate_arg,
                                             memory_order_relaxed),
                        now_ms);
}

/* Whether a call may go to the database now: no gate says it hangs, and
 * the breaker lets it through. */
static bool allowed(struct repo *r)
{
    uint64_t now = clock_mono_ms();

    (void)db_take_unreached();          /* this call's own, from here */
    return !repo_gated(r, now) && breaker_allow(r->br, now);
}

static enum as_err refused(struct repo *r)
{
    atomic_fetch_add_explicit(&r->errors, 1, memory_order_relaxed);
    return AS_ERR_UNAVAILABLE;
}

/* Feeds the result of a call to the breaker; logs when that moves it.
 * Returns it, a lock conflict (retries ran out) or an unreachable server
 * as AS_ERR_UNAVAILABLE. */
static enum as_err settle(struct repo *r, enum as_err err)
{
    uint64_t now = clock_mono_ms();
    enum breaker_state before = breaker_state(r->br, now);
    enum breaker_state after;
    repo_failed_fn *failed;

    if (as_err_is_infra(err)) {
        atomic_fetch_add_explicit(&r->errors, 1, memory_order_relaxed);
        failed = atomic_load_explicit(&r->failed, memory_order_acquire);
        /* only a database not reached (driver.h db_unreached()) */
        if (failed && db_take_unreached())
            failed(atomic_load_explicit(&r->gate_arg, memory_order_relaxed));
    }
    breaker_record(r->br, err, now);
    after = breaker_state(r->br, now);
    if (after != before)
        log_event(after == BREAKER_CLOSED ? LOG_INFO : LOG_WARN,
                  "repo.circuit", NULL,
                  json_pack("{s:s, s:s, s:s, s:s}", "backend", r->ops->name,
                            "from", breaker_state_name(before),
                            "to", breaker_state_name(after),
                            "last_error", as_err_code(err)));
    return err == AS_ERR_LOCK_CONFLICT || err == AS_ERR_DB_UNREACHABLE ||
           err == AS_ERR_READ_ONLY
               ? AS_ERR_UNAVAILABLE : err;
}

/* The backoff before a retry: see repo_int.h. */
unsigned repo_retry_delay_ms(unsigned attempt, uint32_t rnd)
{
    unsigned cap = RETRY_BASE_MS << (attempt < 8 ? attempt : 8);

    return cap / 2 + rnd % (cap / 2 + 1);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000,
                           .tv_nsec = (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The result of this thread's latest attempt, which TRIES() yields. */
static _Thread_local enum as_err last_try;

/* Whether attempt `n` (from 0) of a call, which returned `err`, ends it:
 * anything but a lock conflict does, and so does the last attempt. Else
 * sleeps a jittered, doubling backoff before the next attempt. */
static bool try_done(struct repo *r, enum as_err err, unsigned n)
{
    unsigned ms;

    last_try = err;
    if (err != AS_ERR_LOCK_CONFLICT)
        return true;
    if (n + 1 >= RETRY_MAX) {
        log_event(LOG_WARN, "repo.retries_exhausted", NULL,
                  json_pack("{s:s, s:i}", "backend", r->ops->name,
                            "attempts", (int)RETRY_MAX));
        return true;
    }
    ms = repo_retry_delay_ms(n, crypt_random_u32());
    log_event(LOG_DEBUG, "repo.retry", NULL,
              json_pack("{s:s, s:i, s:i}", "backend", r->ops->name,
                        "attempt", (int)n + 2, "delay_ms", (int)ms));
    sleep_ms(ms);
    return false;
}

/* r->ops->CALL, called again while it reports a lock conflict, at most
 * RETRY_MAX times in all (unrolled: an expression cannot loop). Every
 * attempt is the whole call: a backend aborts the transaction it ran
 * and keeps nothing of it, so the next attempt starts from scratch. */
_Static_assert(RETRY_MAX == 5, "TRIES unrolls RETRY_MAX attempts");
#define TRIES(r, CALL)                                                     \
    ((void)(try_done((r), (r)->ops->CALL, 0) ||                            \
            try_done((r), (r)->ops->CALL, 1) ||                            \
            try_done((r), (r)->ops->CALL, 2) ||                            \
            try_done((r), (r)->ops->CALL, 3) ||                            \
            try_done((r), (r)->ops->CALL, 4)),                             \
     last_try)

/* Runs r->ops->CALL (retried on lock conflicts, see TRIES) when the
 * breaker allows it, recording only the final result; AS_ERR_UNAVAILABLE
 * at once otherwise, or when the retries ran out. CALL names the op and
 * its arguments: DISPATCH(r, ping(r->impl)). */
#define DISPATCH(r, CALL)                                                  \
    (allowed(r) ? settle((r), TRIES(r, CALL)) : refused(r))

enum as_err repo_migrate(struct repo *r)
{
    return DISPATCH(r, migrate(r->impl));
}

enum as_err repo_ping(struct repo *r)
{
    return DISPATCH(r, ping(r->impl));
}

enum as_err repo_user_insert(struct repo *r, const struct user *u)
{
    return DISPATCH(r, user_insert(r->impl, u));
}

enum as_err repo_user_by_id(struct repo *r, const char *id,
                            struct user *out, struct arena *a)
{
    return DISPATCH(r, user_by_id(r->impl, id, out, a));
}

enum as_err repo_user_by_email(struct repo *r, const char *email,
                               struct user *out, struct arena *a)
{
    return DISPATCH(r, user_by_email(r->impl, email, out, a));
}

enum as_err repo_user_patch(struct repo *r, const char *id,
                            const struct user_patch *p, int64_t now,
                            struct user *out, struct arena *a)
{
    return DISPATCH(r, user_patch(r->impl, id, p, now, out, a));
}

enum as_err repo_user_update(struct repo *r, const struct user *u,
                             int64_t now)
{
    struct user_patch p = {
        .set = UF_EMAIL | UF_FULL_NAME | UF_ROLE | UF_ACTIVE | UF_VERIFIED,
        .email = u->email, .full_name = u->full_name, .role = u->role,
        .is_active = u->is_active, .is_verified = u->is_verified,
    };

    return repo_user_patch(r, u->id, &p, now, NULL, NULL);
}

enum as_err repo_user_set_password(struct repo *r, const char *id,
                                   const char *hash, const char *keep_sid,
                                   int64_t now)
{
    return DISPATCH(r, user_set_password(r->impl, id, hash, keep_sid, now));
}

enum as_err repo_user_rehash(struct repo *r, const char *id, const char *old,
                             const char *hash)
{
    return DISPATCH(r, user_rehash(r->impl, id, old, hash));
}

enum as_err repo_user_delete(struct repo *r, const char *id, int64_t now)
{
    return DISPATCH(r, user_delete(r->impl, id, now));
}

enum as_err repo_user_list(struct repo *r, const char *q, const char *after,
                           unsigned limit, struct user *out, size_t *n,
                           struct arena *a)
{
    return DISPATCH(r, user_list(r->impl, q, after, limit, out, n, a));
}

enum as_err repo_user_count(struct repo *r, bool admins_only, int64_t *out)
{
    return DISPATCH(r, user_count(r->impl, admins_only, out));
}

/* Whether (email, ip) may key a login-failure count. */
static bool login_key_ok(const char *email, const char *ip)
{
    return email && ip && strcmp(ip, "*") != 0;
}

enum as_err repo_login_failures_update(struct repo *r, const char *email,
                                       const char *ip,
                                       repo_login_update_fn fn, void *ctx)
{
    if (!login_key_ok(email, ip) || !fn)
        return AS_ERR_BAD_REQUEST;
    return DISPATCH(r, login_failures_update(r->impl, email, ip, fn, ctx,
                                             NULL));
}

enum as_err repo_login_failures_read(struct repo *r, const char *email,
                                     const char *ip, repo_login_update_fn fn,
                                     void *ctx, struct repo_user_read *read)
{
    if (!login_key_ok(email, ip) || !fn || !read || !read->out || !read->a)
        return AS_ERR_BAD_REQUEST;
    return DISPATCH(r, login_failures_update(r->impl, email, ip, fn, ctx,
                                             read));
}

enum as_err repo_login_failures_clear(struct repo *r, const char *email,
                                      const char *ip)
{
    if (!email || (ip && strcmp(ip, "*") == 0))
        return AS_ERR_BAD_REQUEST;
    return DISPATCH(r, login_failures_clear(r->impl, email, ip));
}

enum as_err repo_session_create(struct repo *r, const struct session *s,
                                const uint8_t refresh_hash[REPO_HASH_LEN],
                                struct session_upkeep *up)
{
    if (up)
        up->ended = 0;
    if (up && up->passed_email &&
        (!up->passed_ip || strcmp(up->passed_ip, "*") == 0))
        return AS_ERR_BAD_REQUEST;
    return DISPATCH(r, session_create(r->impl, s, refresh_hash, up));
}

enum as_err repo_session_get(struct repo *r, const char *sid,
                             struct session *out, struct arena *a)
{
    return DISPATCH(r, session_get(r->impl, sid, out, a));
}

enum as_err repo_session_state(struct repo *r, const char *sid, int64_t now,
                               struct session_state *out)
{
    return DISPATCH(r, session_state(r->impl, sid, now, out));
}

enum as_err repo_session_list(struct repo *r, const char *user_id,
                              int64_t now, struct session **out, size_t *n,
                              struct arena *a)
{
    return DISPATCH(r, session_list(r->impl, user_id, now, out, n, a));
}

enum as_err repo_session_revoke(struct repo *r, const char *sid,
                                const char *user_id, int64_t now)
{
    return DISPATCH(r, session_revoke(r->impl, sid, user_id, now));
}

enum as_err repo_session_revoke_all(struct repo *r, const char *user_id,
                                    const char *keep_sid, int64_t now)
{
    return DISPATCH(r, session_revoke_all(r->impl, user_id, keep_sid, now));
}

enum as_err repo_refresh_rotate(struct repo *r,
                                const uint8_t parent[REPO_HASH_LEN],
                                const uint8_t child[REPO_HASH_LEN],
                                int64_t now, int64_t grace_ms,
                                int64_t new_expires, int64_t max_life_ms,
                                enum rotate_result *res,
                                struct session *out, struct arena *a)
{
    return DISPATCH(r, refresh_rotate(r->impl, parent, child, now, grace_ms,
                                      new_expires, max_life_ms, res, out,
                                      a));
}

enum as_err repo_refresh_session(struct repo *r,
                                 const uint8_t hash[REPO_HASH_LEN],
                                 int64_t now, const struct repo_kept *rotated,
                                 struct session *out, struct arena *a)
{
    return DISPATCH(r, refresh_session(r->impl, hash, now, rotated, out,
                                       a));
}

enum as_err repo_outbox_add(struct repo *r, const struct outbox_row *m,
                            int64_t stale_before)
{
    return DISPATCH(r, outbox_add(r->impl, m, stale_before));
}

enum as_err repo_outbox_resolve(struct repo *r, const struct outbox_row *m,
                                const struct ott *t, unsigned cap,
                                int64_t now, enum outbox_fate *fate,
                                char user_id[UUID_STR_LEN])
{
    return DISPATCH(r, outbox_resolve(r->impl, m, t, cap, now, fate,
                                      user_id));
}

enum as_err repo_outbox_drop(struct repo *r, const char *id)
{
    return DISPATCH(r, outbox_drop(r->impl, id));
}

enum as_err repo_ott_reset_user(struct repo *r,
                                const uint8_t hash[REPO_HASH_LEN],
                                int64_t now, struct user *out,
                                struct arena *a)
{
    return DISPATCH(r, ott_reset_user(r->impl, hash, now, out, a));
}

enum as_err repo_ott_reset(struct repo *r, const uint8_t hash[REPO_HASH_LEN],
                           const char *user_id, const char *pw_hash,
                           bool drop_factors, int64_t now)
{
    return DISPATCH(r, ott_reset(r->impl, hash, user_id, pw_hash,
                                 drop_factors, now));
}

enum as_err repo_ott_verify(struct repo *r, const uint8_t hash[REPO_HASH_LEN],
                            int64_t now, char user_id[UUID_STR_LEN])
{
    return DISPATCH(r, ott_verify(r->impl, hash, now, user_id));
}

enum as_err repo_outbox_claim(struct repo *r, int64_t now,
                              int64_t lease_until, struct outbox_row *out,
                              struct arena *a)
{
    return DISPATCH(r, outbox_claim(r->impl, now, lease_until, out, a));
}

enum as_err repo_outbox_sent(struct repo *r, const char *id, int64_t now)
{
    return DISPATCH(r, outbox_sent(r->impl, id, now));
}

enum as_err repo_outbox_failed(struct repo *r, const char *id,
                               int64_t next_at, const char *error)
{
    return DISPATCH(r, outbox_failed(r->impl, id, next_at, error));
}

enum as_err repo_mail_prune(struct repo *r, int64_t tokens_before,
                            int64_t sent_before, int64_t stale_before)
{
    return DISPATCH(r, mail_prune(r->impl, tokens_before, sent_before,
                                  stale_before));
}

/* ---- second factor ---- */

enum as_err repo_mfa_get(struct repo *r, const char *user_id,
                         struct mfa_state *out, struct arena *a)
{
    return DISPATCH(r, mfa_get(r->impl, user_id, out, a));
}

enum as_err repo_mfa_pending(struct repo *r, const char *user_id,
                             const char *sealed, int64_t now)
{
    return DISPATCH(r, mfa_pending(r->impl, user_id, sealed, now));
}

enum as_err repo_mfa_enable(struct repo *r, const char *user_id,
                            int64_t step, const char *sealed,
                            const uint8_t (*codes)[REPO_HASH_LEN], size_t n,
                            const char *keep_sid, int64_t now_us)
{
    if (!sealed)
        return AS_ERR_BAD_REQUEST;
    return DISPATCH(r, mfa_enable(r->impl, user_id, step, sealed, codes, n,
                                  keep_sid, now_us));
}

enum as_err repo_mfa_use_step(struct repo *r, const char *user_id,
                              int64_t step,
                              const struct repo_mfa_login *login)
{
    if (login && !login->token)
        return AS_ERR_BAD_REQUEST;
    return DISPATCH(r, mfa_use_step(r->impl, user_id, step, login));
}

enum as_err repo_mfa_use_recovery(struct repo *r, const char *user_id,
                                  const uint8_t hash[REPO_HASH_LEN],
                                  int64_t now,
                                  const struct repo_mfa_login *login)
{
    if (login && !login->token)
        return AS_ERR_BAD_REQUEST;
    return DISPATCH(r, mfa_use_recovery(r->impl, user_id, hash, now,
                                        login));
}

enum as_err repo_mfa_recovery_set(struct repo *r, const char *user_id,
                                  const uint8_t *proof, int64_t since_us,
                                  const uint8_t (*codes)[REPO_HASH_LEN],
                                  size_t n, int64_t now_us)
{
    return DISPATCH(r, mfa_recovery_set(r->impl, user_id, proof, since_us,
                                        codes, n, now_us));
}

enum as_err repo_mfa_disable(struct repo *r, const char *user_id,
                             const uint8_t *proof, bool *was_on)
{
    *was_on = false;
    return DISPATCH(r, mfa_disable(r->impl, user_id, proof, was_on));
}

enum as_err repo_mfa_token_create(struct repo *r,
                                  const uint8_t hash[REPO_HASH_LEN],
                                  const char *user_id, int64_t pw_gen,
                                  int64_t now, int64_t expires_at)
{
    return DISPATCH(r, mfa_token_create(r->impl, hash, user_id, pw_gen,
                                        now, expires_at));
}

enum as_err repo_mfa_token_user(struct repo *r,
                                const uint8_t hash[REPO_HASH_LEN],
                                int64_t now, unsigned max_failures,
                                char user_id[UUID_STR_LEN])
{
    user_id[0] = '\0';
    return DISPATCH(r, mfa_token_user(r->impl, hash, now, max_failures,
                                      user_id));
}

enum as_err repo_mfa_token_attempt(struct repo *r,
                                   const uint8_t hash[REPO_HASH_LEN],
                                   int64_t now, unsigned max_failures)
{
    return DISPATCH(r, mfa_token_attempt(r->impl, hash, now, max_failures));
}

enum as_err repo_mfa_token_refund(struct repo *r,
                                  const uint8_t hash[REPO_HASH_LEN])
{
    return DISPATCH(r, mfa_token_refund(r->impl, hash));
}

enum as_err repo_mfa_token_use(struct repo *r,
                               const uint8_t hash[REPO_HASH_LEN],
                               int64_t now, unsigned max_failures)
{
    return DISPATCH(r, mfa_token_use(r->impl, hash, now, max_failures));
}

/* The keys table exists only on PostgreSQL; elsewhere the call fails
 * without touching the breaker. */
#define DISPATCH_KEYS(r, fn, CALL)                                         \
    ((r)->ops->fn ? DISPATCH(r, CALL) : AS_ERR_INTERNAL)

enum as_err repo_keys_list(struct repo *r, struct key_row *out, size_t cap,
                           size_t *n, struct arena *a)
{
    *n = 0;
    return DISPATCH_KEYS(r, keys_list, keys_list(r->impl, out, cap, n, a));
}

enum as_err repo_keys_add(struct repo *r, const struct key_row *rows,
                          size_t n, bool only_if_empty, bool *added)
{
    *added = false;
    return DISPATCH_KEYS(r, keys_add,
                         keys_add(r->impl, rows, n, only_if_empty, added));
}

enum as_err repo_keys_prune(struct repo *r, int64_t now, int64_t before)
{
    return DISPATCH_KEYS(r, keys_prune, keys_prune(r->impl, now, before));
}

/* ---- passkeys ---- */

enum as_err repo_passkey_challenge_put(struct repo *r,
                                       const uint8_t hash[REPO_HASH_LEN],
                                       enum passkey_ceremony ceremony,
                                       const char *user_id, unsigned keep,
                                       int64_t now, int64_t expires_at)
{
    return DISPATCH(r, passkey_challenge_put(r->impl, hash, ceremony,
                                             user_id, keep, now,
                                             expires_at));
}

enum as_err repo_passkey_challenge_take(struct repo *r,
                                        const uint8_t hash[REPO_HASH_LEN],
                                        enum passkey_ceremony ceremony,
                                        const char *owner, int64_t now,
                                        char user_id[UUID_STR_LEN])
{
    user_id[0] = '\0';
    return DISPATCH(r, passkey_challenge_take(r->impl, hash, ceremony, owner,
                                              now, user_id));
}

enum as_err repo_passkey_insert(struct repo *r, const struct passkey *p,
                                unsigned max)
{
    return DISPATCH(r, passkey_insert(r->impl, p, max));
}

enum as_err repo_passkey_by_cred(struct repo *r, const char *cred_id,
                                 struct passkey *out, struct arena *a)
{
    return DISPATCH(r, passkey_by_cred(r->impl, cred_id, out, a));
}

enum as_err repo_passkey_list(struct repo *r, const char *user_id,
                              struct passkey **out, size_t *n,
                              struct arena *a)
{
    *out = NULL;
    *n = 0;
    return DISPATCH(r, passkey_list(r->impl, user_id, out, n, a));
}

enum as_err repo_passkey_delete(struct repo *r, const char *id,
                                const char *user_id, int64_t now)
{
    return DISPATCH(r, passkey_delete(r->impl, id, user_id, now));
}

enum as_err repo_passkey_use(struct repo *r, const char *id,
                             int64_t new_count, int64_t now)
{
    return DISPATCH(r, passkey_use(r->impl, id, new_count, now));
}
