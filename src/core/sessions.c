/* sessions.c: sessions and their tokens: a login's session, refresh
 * rotation and replay, logout, logout everywhere, a user's own sessions,
 * and which session a presented token belongs to. Each revocation makes
 * this instance's session cache forget what it revoked, here and only
 * here. No HTTP, no SQL. */
#include "core.h"

#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "netaddr.h"
#include "rotation.h"
#include "scache.h"

/* How long a session that expired or was revoked stays stored (README
 * "Tokens"): its refresh tokens then refuse as unknown rather than as
 * reused, which answers 401 alike. */
#define SESSION_KEEP_ENDED_MS (7 * 24 * 3600 * 1000LL)

/* A user keeps at most AUTH_MAX_SESSIONS_PER_USER live sessions (README
 * "Sessions"): a new one ends the least recently used beyond, so every
 * session the account has is in its GET /sessions list (nobody holding
 * its password can hide one behind a hundred others) and one account's
 * logins cannot grow the table without end. The cap is applied in the
 * new session's transaction: no session is stored beyond it. */
_Static_assert(REPO_SESSION_LIST_MAX >= 100,
               "GET /sessions lists every session AUTH_MAX_SESSIONS_PER_USER "
               "allows");

enum as_err core_session_start(const struct core *c, const char *user_id,
                               int64_t pw_gen,
                               const char *amr, const char *mfa_token,
                               const char *passkey_id,
                               const char *passed, const char *ip,
                               const char *user_agent, struct session *out,
                               char refresh[SEC_TOKEN_LEN + 1])
{
    const struct cfg *cfg = c->cfg;
    int64_t now = c->now_ms();
    uint8_t hash[REPO_HASH_LEN], mfa_hash[REPO_HASH_LEN];
    struct session_upkeep up;
    char key[NETADDR_KEY_LEN];
    enum as_err err;

    if (mfa_token && !sec_token_valid(mfa_token))
        return AS_ERR_INVALID_TOKEN;
    if (mfa_token)
        sec_token_hash(mfa_token, mfa_hash);

    /* amr NULL: the password alone, which must not outlive the second
     * factor being turned on while the login ran (README "Second
     * factor"). */
    *out = (struct session){ .created_at = now, .last_used_at = now,
                             .amr = amr, .ip = ip,
                             .user_agent = user_agent, .pw_gen = pw_gen,
                             .mfa_token = mfa_token ? mfa_hash : NULL,
                             .passkey_id = passkey_id,
                             .one_factor = amr == NULL };
    c->new_id(out->id);
    snprintf(out->user_id, sizeof out->user_id, "%s", user_id);
    /* The refresh token's life, never past the session's maximum. */
    out->expires_at = now + (int64_t)(cfg->refresh_ttl <
                                              cfg->session_max_seconds
                                          ? cfg->refresh_ttl
                                          : cfg->session_max_seconds) *
                                1000;
    c->new_token(refresh);
    sec_token_hash(refresh, hash);
    /* Each new session ends what is beyond the cap and the login's run
     * of failures in its own transaction (a login commits once after its
     * count, README "Lockout"), then prunes a few sessions that ended a
     * while ago, so the table stays bounded. */
    up = (struct session_upkeep){ .keep = cfg->max_sessions,
                                  .prune_before =
                                      now - SESSION_KEEP_ENDED_MS };
    if (passed) {
        netaddr_client_key(ip, key);
        up.passed_email = passed;
        up.passed_ip = key;
    }
    err = repo_session_create(c->repo, out, hash, &up);
    if (err == AS_OK && up.ended > 0 && c->scache)
        scache_forget_user(c->scache, user_id);
    /* The second factor turned on while the password was checked: the
     * login goes on to it, the right password only takes its attempt
     * back (README "Second factor"). A right code whose login token was
     * ended meanwhile (the factor turned off, every session logged out;
     * a password change refuses before, as a wrong password) takes its
     * attempt back too, as core_code_check() does for a token it finds
     * ended. */
    if ((err == AS_ERR_MFA_REQUIRED ||
         (err == AS_ERR_INVALID_TOKEN && mfa_token)) && passed)
        core_attempt_settle(c, passed, ip, false, NULL);
    return err;
}

/* Forgets session `sid` in this instance's cache (after its revocation
 * committed). */
static void forget(const struct core *c, const char *sid)
{
    if (c->scache)
        scache_forget(c->scache, sid);
}

/* Forgets every cached session and the cached row of `user_id`. */
static void forget_user(const struct core *c, const char *user_id)
{
    if (c->scache)
        scache_forget_user(c->scache, user_id);
}

enum as_err core_refresh(const struct core *c, const char *token,
                         char child[SEC_TOKEN_LEN + 1], struct session *s,
                         struct user *u, bool *reused, struct arena *a)
{
    const struct cfg *cfg = c->cfg;
    uint8_t ph[REPO_HASH_LEN], ch[REPO_HASH_LEN];
    enum rotate_result rr = ROTATE_INVALID;
    int64_t now = c->now_ms();
    enum as_err err;

    *reused = false;
    child[0] = '\0';
    if (!sec_token_valid(token))
        return AS_ERR_INVALID_TOKEN;
    sec_token_hash(token, ph);
    sec_token_child(c->keys, token, child);
    sec_token_hash(child, ch);
    err = repo_refresh_rotate(c->repo, ph, ch, now,
                              (int64_t)cfg->refresh_reuse_grace_seconds *
                                  1000,
                              now + (int64_t)cfg->refresh_ttl * 1000,
                              (int64_t)cfg->session_max_seconds * 1000, &rr,
                              s, a);
    if (err == AS_OK && rr == ROTATE_REUSED) {
        forget(c, s->id);               /* revoked by the replay */
        *reused = true;
    }
    if (err == AS_OK && rr != ROTATE_OK && rr != ROTATE_GRACE)
        err = AS_ERR_INVALID_TOKEN;
    if (err == AS_OK)
        err = repo_user_by_id(c->repo, s->user_id, u, a);
    if (err == AS_ERR_NOT_FOUND || (err == AS_OK && !u->is_active))
        err = AS_ERR_INVALID_TOKEN;
    if (err != AS_OK)
        memset(child, 0, SEC_TOKEN_LEN + 1);
    return err;
}

/* The rotated-out refresh tokens that still name their session at
 * `now`: those a refresh with them would still judge a grace retry or a
 * replay (rotation_kept()), so that a logout or a revocation with a
 * token kept no longer ends nothing either. */
static struct repo_kept still_kept(const struct core *c, int64_t now)
{
    return rotation_kept(now, (int64_t)c->cfg->refresh_ttl * 1000,
                         (int64_t)c->cfg->refresh_reuse_grace_seconds *
                             1000);
}

enum as_err core_logout(const struct core *c, const char *token,
                        struct session *s, struct arena *a)
{
    uint8_t h[REPO_HASH_LEN];
    int64_t now = c->now_ms();
    struct repo_kept k = still_kept(c, now);
    enum as_err err;

    if (!sec_token_valid(token))
        return AS_ERR_NOT_FOUND;
    sec_token_hash(token, h);
    err = repo_refresh_session(c->repo, h, now, &k, s, a);
    if (err == AS_OK)
        err = repo_session_revoke(c->repo, s->id, NULL, c->now_ms());
    if (err == AS_OK)
        forget(c, s->id);
    return err;
}

enum as_err core_logout_all(const struct core *c, const char *user_id)
{
    enum as_err err = repo_session_revoke_all(c->repo, user_id, NULL,
                                              c->now_ms());

    if (err == AS_OK)
        forget_user(c, user_id);
    return err;
}

enum as_err core_session_revoke(const struct core *c, const char *sid,
                                const char *user_id)
{
    enum as_err err = uuid_valid(sid)
                          ? repo_session_revoke(c->repo, sid, user_id,
                                                c->now_ms())
                          : AS_ERR_NOT_FOUND;

    if (err == AS_OK)
        forget(c, sid);
    return err;
}

enum as_err core_sessions_list(const struct core *c, const char *user_id,
                               struct session **out, size_t *n,
                               struct arena *a)
{
    return repo_session_list(c->repo, user_id, c->now_ms(), out, n, a);
}

enum as_err core_token_session(const struct core *c, const char *token,
                               bool rotated_too, struct session *s,
                               struct sec_claims *claims, enum role *role,
                               bool *is_access, struct arena *a)
{
    uint8_t h[REPO_HASH_LEN];
    struct session_state st;
    const char *email;
    enum as_err err;

    *is_access = false;
    if (sec_token_valid(token)) {
        int64_t now = c->now_ms();
        struct repo_kept k = still_kept(c, now);

        sec_token_hash(token, h);
        return repo_refresh_session(c->repo, h, now,
                                    rotated_too ? &k : NULL, s, a);
    }
    if (!c->keys || sec_jwt_verify(c->keys, c->cfg, token,
                                   c->now_ms() / 1000, claims, a) != AS_OK)
        return AS_ERR_NOT_FOUND;
    err = repo_session_state(c->repo, claims->sid, c->now_ms(), &st);
    if (err != AS_OK)
        return err;
    if (!st.live || strcmp(st.user_id, claims->sub) != 0)
        return AS_ERR_NOT_FOUND;              /* see authn.c, bearer() */
    *is_access = true;
    *role = st.role;                                /* the account's now */
    email = st.email[0] ? arena_strdup(a, st.email) : NULL;
    if (email)
        claims->email = email;
    snprintf(s->id, sizeof s->id, "%s", claims->sid);
    snprintf(s->user_id, sizeof s->user_id, "%s", claims->sub);
    return AS_OK;
}
