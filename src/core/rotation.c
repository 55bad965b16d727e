/* rotation.c: the refresh rotation rule, once for every backend: which
 * presented token rotates, which is a retry within the grace, which is a
 * replay that revokes its session. No SQL: src/repo/sessions.c reads the
 * facts and applies the result in one transaction. */
#include "rotation.h"

/* now - ms without overflow (ms >= 0). */
static int64_t ago(int64_t now, int64_t ms)
{
    return now < INT64_MIN + ms ? INT64_MIN : now - ms;
}

enum rotate_result rotation_judge(const struct rotation_facts *f,
                                  int64_t now, int64_t grace_ms,
                                  int64_t life_ms)
{
    struct repo_kept k = rotation_kept(now, life_ms, grace_ms);

    if (!f->found || f->revoked || f->expires_at <= now || !f->user_active)
        return ROTATE_INVALID;
    if (!f->used)
        return ROTATE_OK;
    /* A retry within the grace of its rotation gets the child, however
     * old the token: it was live when rotated. With a constant lifetime
     * such a token is always kept (below); after AUTH_REFRESH_TOKEN_TTL
     * was lowered, one issued under the longer lifetime was refused
     * here 401 (a review). No grace: any second use is a replay, even
     * within the same millisecond as the rotation (a fast client on
     * loopback). */
    if (grace_ms > 0 && f->used_at >= k.used_from)
        return ROTATE_GRACE;
    /* Kept no longer: answered as when a rotation has pruned it
     * (src/repo/sessions.c, S_PRUNE_USED), whether it has yet or not.
     * Before, such a token was a grace retry or a replay until another
     * refresh of its session pruned it, then unknown (a review). */
    if (f->created_at < k.created_from)
        return ROTATE_INVALID;
    return ROTATE_REUSED;
}

struct repo_kept rotation_kept(int64_t now, int64_t life_ms,
                               int64_t grace_ms)
{
    return (struct repo_kept){
        .created_from = life_ms > 0 ? rotation_kept_from(now, life_ms,
                                                         grace_ms)
                                    : INT64_MIN,
        .used_from = grace_ms > 0 ? ago(now, grace_ms) : INT64_MAX,
    };
}

int64_t rotation_kept_from(int64_t now, int64_t life_ms, int64_t grace_ms)
{
    int64_t from = ago(now, life_ms > 0 ? life_ms : 0);

    return ago(from, grace_ms > 0 ? grace_ms : 0);
}

int64_t rotation_expiry(int64_t created_at, int64_t new_expires,
                        int64_t max_life_ms)
{
    int64_t cap;

    if (max_life_ms >= 0)
        cap = created_at > INT64_MAX - max_life_ms ? INT64_MAX
                                                   : created_at + max_life_ms;
    else
        cap = created_at < INT64_MIN - max_life_ms ? INT64_MIN
                                                   : created_at + max_life_ms;
    return new_expires < cap ? new_expires : cap;
}
