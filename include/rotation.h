#ifndef AUTH_ROTATION_H         /* rotation.h: the refresh rotation rule */
#define AUTH_ROTATION_H
#include <stdbool.h>
#include <stdint.h>
#include "repo.h"

/* What the database holds about a presented refresh token and its
 * session, read in the transaction that rotates it (src/repo/sessions.c).
 * Times are Unix ms. */
struct rotation_facts {
    bool found;                  /* the token is known */
    bool used;                   /* consumed already, at used_at */
    int64_t used_at;
    int64_t created_at;          /* the token's */
    bool revoked;                /* the session was revoked */
    int64_t expires_at;          /* the session's */
    bool user_active;
};

/* The fate of a rotation at `now` (see enum rotate_result in repo.h): a
 * token of a session that is revoked, expired (expires_at <= now) or
 * whose user is inactive is ROTATE_INVALID, as is an unknown one; an
 * unused token is ROTATE_OK; a used one used at or after now - grace_ms
 * is ROTATE_GRACE (grace_ms <= 0: never); an earlier used one is
 * ROTATE_INVALID when kept no longer (created before
 * rotation_kept_from(): what a rotation prunes, so that a pruned token
 * and one not yet pruned get the same answer), else ROTATE_REUSED.
 * Pure; no overflow for any input. */
enum rotate_result rotation_judge(const struct rotation_facts *f,
                                  int64_t now, int64_t grace_ms,
                                  int64_t life_ms);

/* The oldest creation time of a rotated-out refresh token that is still
 * kept at `now`: its own lifetime `life_ms` (the refresh token lifetime)
 * and the grace after it (a token can be rotated out in its lifetime's
 * last millisecond, and retried for the grace after that); 0 or less
 * for either: none. Saturates instead of overflowing. */
int64_t rotation_kept_from(int64_t now, int64_t life_ms, int64_t grace_ms);

/* The rotated-out tokens still kept at `now`, as rotation_judge() keeps
 * them: rotated out within the grace (none when grace_ms <= 0), or made
 * since rotation_kept_from() (all when life_ms <= 0: no lifetime given).
 * What a logout or a revocation may still name (repo_refresh_session()). */
struct repo_kept rotation_kept(int64_t now, int64_t life_ms,
                               int64_t grace_ms);

/* The expiry a rotation gives a session created at `created_at`:
 * `new_expires`, but never past created_at + max_life_ms (the session
 * ends then); saturates instead of overflowing. */
int64_t rotation_expiry(int64_t created_at, int64_t new_expires,
                        int64_t max_life_ms);

#endif
