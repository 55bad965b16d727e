/* fake_repo.h: an in-memory repository for the core's unit tests. It
 * implements the repo_* calls of include/repo.h that src/core/ makes,
 * each atomic under one mutex, as repo.h documents them (conditional
 * updates, the last-admin refusal, rotation); tests link it instead of
 * src/repo/. */
#ifndef AUTH_FAKE_REPO_H
#define AUTH_FAKE_REPO_H
#include <stdbool.h>
#include <stdint.h>
#include "repo.h"

/* The one fake repository (state is global; fake_repo_reset() empties
 * it). Never NULL. */
struct repo *fake_repo(void);
/* Forgets every row and counter. */
void fake_repo_reset(void);
/* Adds user `u` as repo_user_insert() would, with its second factor on
 * when `mfa_on`. */
enum as_err fake_repo_add_user(const struct user *u, bool mfa_on);
/* The stored failure count of (email, ip) (ip "*": every address). */
int64_t fake_repo_failures(const char *email, const char *ip);
/* The count of (email, "*") when repo_user_by_email() last ran for
 * `email`, or -1 if it never ran; and how often it ran. */
int64_t fake_repo_failures_at_lookup(unsigned *lookups);
/* Whether session `sid` is stored unrevoked. */
bool fake_repo_session_unrevoked(const char *sid);
/* The stored password hash of user `id` (borrowed until the next call
 * that changes it), or NULL. */
const char *fake_repo_hash(const char *id);
/* When set, called by repo_user_rehash() before it looks at the stored
 * hash (a concurrent writer's turn); fake_repo_reset() clears it. */
extern void (*fake_repo_before_rehash)(const char *id);

/* A clock tests move: the core's now_ms. */
extern _Atomic int64_t fake_now;
int64_t fake_clock(void);

struct core;
struct cfg;
struct scache;
/* A core on the fake repository, the fake clock, ids counted up from 1
 * (fake_id) and the cheapest Argon2id; `cfg` (the caller's) gets test
 * lifetimes: refresh 1000 s, session at most 5000 s, grace 10 s, lockout
 * after 3 failures for at most 60 s. `sc` may be NULL. */
void fake_core(struct core *c, struct cfg *cfg, struct scache *sc);
/* The next id of fake_core()'s counter. */
void fake_id(char out[UUID_STR_LEN]);
/* Stores a user with password `pw` (hashed); its id into `id`. */
void fake_user(char id[UUID_STR_LEN], const char *email, enum role role,
               bool active, const char *pw, bool mfa_on);

#endif
