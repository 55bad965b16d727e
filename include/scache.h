#ifndef AUTH_SCACHE_H            /* scache.h: session-revocation cache */
#define AUTH_SCACHE_H
#include <stdbool.h>
#include <stdint.h>
#include "err.h"
#include "repo.h"

/* A bounded, 8-way set-associative cache of repo_session_state() answers
 * (the oldest of a set replaced), at most
 * `ttl_ms` old (0: always ask the database). While the database is
 * unavailable, answers for sessions seen before are served from it
 * whatever their age. Thread-safe. */
struct scache;

/* NULL when out of memory. Free with scache_free(); NULL is a no-op. */
struct scache *scache_new(unsigned slots, uint64_t ttl_ms);
void scache_free(struct scache *c);
/* With `sole` (the daemon is the only writer of its database: SQLite),
 * while the database is unavailable scache_check() answers a session
 * seen before from its entry whatever its age; without it (the default:
 * PostgreSQL, which other instances and commands share) never from an
 * entry older than the time to live. With a time to live of 0 nothing is
 * cached and nothing is answered without the database. */
void scache_set_sole_writer(struct scache *c, bool sole);
/* Replaces the monotonic clock (milliseconds) the cache ages entries by;
 * NULL restores clock_mono_ms(). For tests; call before any other use. */
void scache_set_clock(struct scache *c, uint64_t (*now_ms)(void));
/* The state of session `sid` of user `user_id` (the token's sub), from
 * the cache or the repository. Errors
 * are the repository's (AS_ERR_UNAVAILABLE when the database is down
 * and the session was never seen). */
enum as_err scache_check(struct scache *c, struct repo *r, const char *sid,
                         const char *user_id, struct session_state *out);
/* The state of `sid` when the cache holds a fresh enough answer (true),
 * else false; never asks the repository, so it never waits on the
 * database (the HTTP threads' fast path). */
bool scache_peek(struct scache *c, const char *sid,
                 struct session_state *out);
/* scache_peek(), and sets *refresh when the answer is in the last quarter
 * of its time to live and this caller is the one to have it read again:
 * it then calls scache_refresh() off the HTTP thread (the others keep
 * being answered from the cache meanwhile). */
bool scache_peek_refresh(struct scache *c, const char *sid,
                         struct session_state *out, bool *refresh);
/* Reads the state of `sid` (of user `user_id`) from the repository and
 * keeps it, as scache_check() does on a miss; on an error nothing
 * changes (another caller will be asked to refresh later). */
void scache_refresh(struct scache *c, struct repo *r, const char *sid,
                    const char *user_id);
/* Forgets `sid` (after this instance revoked it), and the row of its user
 * (scache_user). An answer that a concurrent scache_check() or
 * scache_user() read from the database before this call is not stored
 * after it. */
void scache_forget(struct scache *c, const char *sid);
/* Forgets every cached session of `user_id` and its cached row (after a
 * change to the user: revocation, any profile field, password, second
 * factor, verification, deletion), with the same guarantee. */
void scache_forget_user(struct scache *c, const char *user_id);
/* Forgets everything (revocations may have been missed). An answer from
 * the repository that a forget overtook is returned but not kept. */
void scache_forget_all(struct scache *c);
/* Announcements of other instances (src/fleet.c). While a listener is
 * connected it calls scache_heard() whenever it has applied every
 * announcement received before `mark` (a scache_mark() taken before it
 * read them), at least every FLEET_HEARD_EVERY_MS; an entry then answers
 * only while that mark is at most SCACHE_HEARD_SLACK_MS old. So after
 * this process stood still (stopped, throttled by a CPU quota, on a
 * paused machine), a request read before the listener has caught up goes
 * to the database instead of being answered from an entry whose
 * revocation is waiting unread in the listener's socket (README "Several
 * instances": seen within 100 ms). scache_heard(c, 0) (no connection)
 * lifts this: the time to live alone bounds entries then. */
#define SCACHE_HEARD_SLACK_MS 75
uint64_t scache_mark(struct scache *c);
void scache_heard(struct scache *c, uint64_t mark);
/* User `id` as repo_user_by_id() reads it, but without its password hash
 * (NULL), from the cache when read at most the cache's ttl ago, else from
 * the repository (then cached). Strings go into `a`. Errors are the
 * repository's. */
enum as_err scache_user(struct scache *c, struct repo *r, const char *id,
                        struct user *out, struct arena *a);
/* User `id` from the cache only (true), as scache_user; never waits on
 * the database (the HTTP threads' fast path). */
bool scache_user_peek(struct scache *c, const char *id, struct user *out,
                      struct arena *a);

#endif
