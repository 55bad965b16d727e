#ifndef AUTH_ACCOUNTS_H          /* accounts.h: the rules of account changes */
#define AUTH_ACCOUNTS_H
#include <stdbool.h>
#include <stdint.h>
#include "arena.h"
#include "err.h"
#include "repo.h"

struct scache;

/* Who asks for a change of an account. */
enum account_actor {
    ACCOUNT_SELF,            /* the user itself (/api/v1/users/me) */
    ACCOUNT_ADMIN,           /* an admin, on another user */
};

/* Whether `who` may change the fields `fields` (enum user_field bits):
 * a user changes its own email and full_name, an admin also role and
 * is_active. AS_OK, or AS_ERR_FORBIDDEN naming none of them. */
enum as_err account_may_change(enum account_actor who, unsigned fields);
/* Whether `who` changing `fields` of a user whose email is `current` to
 * `p` must first prove the current password: a user changing its own
 * email to another one (a stolen access token alone must not take the
 * account over). */
bool account_needs_password(enum account_actor who, const char *current,
                            const struct user_patch *p);
/* Takes the email out of `p` when it equals `current`, the email the
 * check of account_needs_password() read: such a patch writes no email at
 * all, so a password-less "change" to the email read can never undo a
 * concurrent, password-checked change to another one. */
void account_skip_same_email(const char *current, struct user_patch *p);
/* Changes the fields `p` names of user `id` on behalf of `who`: refuses
 * fields `who` may not change (AS_ERR_FORBIDDEN, nothing written), then
 * writes only the named fields in one transaction (repo_user_patch: the
 * last-admin rule, sessions of a deactivated user revoked, a changed
 * email unverified, its links ended and an `email_changed` notice queued
 * to the old address, and its run of login failures carried to the new
 * one: the count from all addresses, and that of `ip`, the address of
 * the client making the change (NULL: none); README "Lockout"). Any
 * change then takes effect at once on this instance: the user's cached
 * session states and row in `c` are forgotten. `out` (may be NULL) gets
 * the user as written, its strings in `a`. Errors are the repository's
 * otherwise. */
enum as_err account_patch(struct repo *r, struct scache *c,
                          enum account_actor who, const char *id,
                          const struct user_patch *p, const char *ip,
                          int64_t now, struct user *out, struct arena *a);
/* Deletes user `id` at `now` (its sessions go with it) and forgets its
 * cached session states in `c`. AS_ERR_NOT_FOUND, AS_ERR_LAST_ADMIN, or
 * the repository's error (after which the account may be ended, not yet
 * deleted: repo_user_delete()). */
enum as_err account_delete(struct repo *r, struct scache *c, const char *id,
                           int64_t now);

#endif
