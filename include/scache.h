#ifndef AUTH_SCACHE_H            /* scache.h: session-revocation cache */
#define AUTH_SCACHE_H
#include <stdbool.h>
#include <stdint.h>
#include "err.h"
#include "repo.h"

/* A bounded, direct-mapped cache of repo_session_state() answers, at most
 * `ttl_ms` old (0: always ask the database). While the database is
 * unavailable, answers for sessions seen before are served from it
 * whatever their age. Thread-safe. */
struct scache;

/* NULL when out of memory. Free with scache_free(); NULL is a no-op. */
struct scache *scache_new(unsigned slots, uint64_t ttl_ms);
void scache_free(struct scache *c);
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
