/* login.c: a password checked under the lockout, and the password step
 * of a login: what is counted when, what ends a run of failures, what
 * only takes an attempt back (README.md, "Lockout", "Second factor"). */
#include "core.h"

#include <string.h>

#include "crypto.h"
#include "lockout.h"

#define INVALID_KEY_LEN (8 + 32 + 1)

/* core_attempt_begin(), and with `read` the lookup of `email`. */
static enum as_err attempt_begin(const struct core *c, const char *email,
                                 const char *ip, int64_t *retry_s,
                                 struct repo_user_read *read,
                                 struct lockout_ticket *t)
{
    struct lockout_policy p;

    lockout_policy_init(&p, c->cfg);
    return lockout_begin(c->repo, &p, email, ip, c->now_ms(), retry_s,
                         read, t);
}

enum as_err core_attempt_begin(const struct core *c, const char *email,
                               const char *ip, int64_t *retry_s,
                               struct lockout_ticket *t)
{
    return attempt_begin(c, email, ip, retry_s, NULL, t);
}

void core_attempt_settle(const struct core *c, const char *email,
                         const char *ip, bool complete,
                         const struct lockout_ticket *t)
{
    struct lockout_policy p;

    lockout_policy_init(&p, c->cfg);
    if (complete)
        (void)lockout_passed(c->repo, email, ip);
    else
        (void)lockout_refund(c->repo, &p, email, ip, t);
}

enum as_err core_password_check(const struct core *c, const struct user *u,
                                const char *pw, const char *ip,
                                int64_t *retry_s)
{
    struct lockout_ticket t = { 0 };
    enum as_err err = core_attempt_begin(c, u->email, ip, retry_s, &t);

    if (err == AS_OK && pw_verify(u->password_hash, pw) != AS_OK)
        err = AS_ERR_BAD_CREDENTIALS;
    /* A right password of a signed-in caller (setup, password change,
     * account changes) is no login: its attempt is taken back, and the
     * run of failures (wrong codes among them) stands until a complete
     * login ends it (README "Second factor"). */
    if (err == AS_OK)
        core_attempt_settle(c, u->email, ip, false, &t);
    return err;
}

/* Replaces an old-cost hash of `u` by one of today's cost, only while
 * the stored hash is still the one checked. A login that lost that race
 * to another one of the same instant goes on: the hash the other stored
 * is of the same password, which leaves password_gen as the login read
 * it, and a password changed meanwhile counted it up, so the session is
 * refused (core_session_start). */
static void upgrade(const struct core *c, struct user *u, const char *pw,
                    struct arena *a)
{
    char fresh[PW_HASH_MAX] = "";

    if (pw_needs_rehash(u->password_hash, c->pw) &&
        pw_hash(pw, c->pw, fresh) == AS_OK &&
        repo_user_rehash(c->repo, u->id, u->password_hash, fresh) == AS_OK)
        u->password_hash = arena_strdup(a, fresh);
    crypt_wipe(fresh, sizeof fresh);
}

/* The lockout key of a login name that is not an email: "invalid:" and
 * a hash of it trimmed and in lower case (ASCII), so that its spellings
 * share one count, and any bytes make a short, valid key. */
static const char *invalid_key(const char *raw, char out[INVALID_KEY_LEN])
{
    struct crypt_blake2b st;
    uint8_t h[16];
    const char *b = raw ? raw : "", *e = b + strlen(b);

    while (b < e && (*b == ' ' || (*b >= '\t' && *b <= '\r')))
        b++;
    while (e > b && (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r')))
        e--;
    if (!crypt_blake2b_init(&st, sizeof h, NULL, 0))
        return NULL;
    for (; b < e; b++) {
        char ch = *b >= 'A' && *b <= 'Z' ? (char)(*b - 'A' + 'a') : *b;

        crypt_blake2b_update(&st, &ch, 1);
    }
    if (!crypt_blake2b_final(&st, h, sizeof h))
        return NULL;
    memcpy(out, "invalid:", 8);
    crypt_hex_encode(h, sizeof h, out + 8, INVALID_KEY_LEN - 8);
    return out;
}

enum as_err core_login(const struct core *c, const char *email,
                       const char *raw, const char *pw, const char *ip,
                       struct user *out, struct arena *a, int64_t *retry_s)
{
    char key[INVALID_KEY_LEN];
    const char *counted = email ? email : invalid_key(raw, key);
    struct repo_user_read read = { .out = out, .a = a };
    struct lockout_ticket t = { 0 };
    enum as_err err = AS_OK;

    *retry_s = 0;
    /* Counted first, atomically with the lock check: a locked (email,
     * address) is refused without hashing, known and unknown emails
     * alike, so the answer reveals nothing. A login name that is not an
     * email is counted and locked the same; no account has it, so it
     * costs no hash (what it reveals, the client wrote). The account is
     * read in the same step, once counted. */
    if (!counted)
        return AS_ERR_INTERNAL;
    err = attempt_begin(c, counted, ip, retry_s, email ? &read : NULL, &t);
    if (err != AS_OK)
        return err;
    if (!email)
        return AS_ERR_BAD_CREDENTIALS;
    if (!read.found) {
        pw_verify_dummy(pw);              /* same cost as a wrong password */
        return AS_ERR_BAD_CREDENTIALS;
    }
    /* A wrong password for a hash older than today's cost is answered
     * when an unknown email's would be (pw_verify_padded). */
    err = pw_verify_padded(out->password_hash, pw);
    if (err == AS_OK && !out->is_active)
        err = AS_ERR_DISABLED;            /* the attempt stays counted */
    if (err != AS_OK)
        return err;
    /* A login is complete once its session is stored, which ends the
     * run of failures in the same transaction (core_session_start). */
    if (out->mfa_enabled)
        core_attempt_settle(c, email, ip, false, &t);
    upgrade(c, out, pw, a);
    return AS_OK;
}
