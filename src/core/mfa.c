/* mfa.c: the second factor's rules: setup, confirmation, code checks
 * (TOTP once per step, recovery codes once each), login tokens. No HTTP,
 * no SQL: the repository stores, src/sec/totp.c computes. */
#include "mfa.h"

#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "crypto.h"
#include "lockout.h"
#include "qr.h"
#include "scache.h"

/* Percent-encodes every byte of `s` but RFC 3986 unreserved ones. */
static char *pct(struct arena *a, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s), o = 0, i;
    char *out = arena_alloc(a, 3 * n + 1);

    if (!out)
        return NULL;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
            (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
            ch == '_' || ch == '~') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
    return out;
}

const char *mfa_uri(struct arena *a, const char *issuer, const char *email,
                    const char *secret)
{
    const char *iss = pct(a, issuer), *who = pct(a, email);

    if (!iss || !who)
        return NULL;
    return arena_printf(a, "otpauth://totp/%s:%s?secret=%s&issuer=%s"
                           "&algorithm=SHA1&digits=%d&period=%d",
                        iss, who, secret, iss, TOTP_DIGITS, TOTP_STEP_S);
}

/* The clear secret of a stored factor. */
static enum as_err open_secret(const struct mfa_env *e, const char *user_id,
                               const struct mfa_state *st,
                               uint8_t secret[TOTP_SECRET_LEN])
{
    uint8_t key[TOTP_KEY_LEN];
    enum as_err err;

    totp_key(e->keys, key);
    err = totp_open(key, user_id, st->secret, secret);
    crypt_wipe(key, sizeof key);
    return err;
}

enum as_err mfa_setup_begin(const struct mfa_env *e, const struct user *u,
                            struct mfa_setup *out, struct arena *a)
{
    uint8_t secret[TOTP_SECRET_LEN], key[TOTP_KEY_LEN];
    char sealed[TOTP_SEALED_MAX];
    char *svg = NULL;
    enum as_err err = AS_OK;

    memset(out, 0, sizeof *out);
    if (u->mfa_enabled)
        return AS_ERR_CONFLICT;
    totp_secret_new(secret);
    totp_key(e->keys, key);
    totp_seal(key, u->id, secret, sealed);
    totp_base32(secret, sizeof secret, out->secret, sizeof out->secret);
    out->uri = mfa_uri(a, e->issuer, u->email, out->secret);
    if (out->uri)
        svg = qr_svg(out->uri);
    out->qr_svg = svg ? arena_strdup(a, svg) : NULL;
    if (!out->qr_svg)
        err = AS_ERR_NOMEM;
    if (err == AS_OK)
        err = repo_mfa_pending(e->repo, u->id, sealed, e->now_ms);
    if (err != AS_OK)
        crypt_wipe(out->secret, sizeof out->secret);
    free(svg);
    crypt_wipe(secret, sizeof secret);
    crypt_wipe(key, sizeof key);
    return err;
}

/* Ten fresh recovery codes into `out` and their hashes into `h`. */
static void codes_new(struct mfa_codes *out,
                      uint8_t h[TOTP_RECOVERY_COUNT][REPO_HASH_LEN])
{
    size_t i;

    for (i = 0; i < TOTP_RECOVERY_COUNT; i++) {
        totp_recovery_new(out->code[i]);
        totp_recovery_hash(out->code[i], h[i]);
    }
}

enum as_err mfa_pending(const struct mfa_env *e, const char *user_id,
                        bool *pending)
{
    struct mfa_state st;
    struct arena *a = arena_new();
    enum as_err err = a ? repo_mfa_get(e->repo, user_id, &st, a)
                        : AS_ERR_NOMEM;

    *pending = err == AS_OK && !st.enabled;
    arena_free(a);
    return err == AS_ERR_NOT_FOUND ? AS_OK : err;
}

enum as_err mfa_confirm(const struct mfa_env *e, const char *user_id,
                        const char *code, const char *keep_sid,
                        struct mfa_codes *out, bool *ok)
{
    uint8_t secret[TOTP_SECRET_LEN];
    uint8_t h[TOTP_RECOVERY_COUNT][REPO_HASH_LEN];
    struct mfa_state st;
    struct arena *a = arena_new();
    int64_t step = -1;
    enum as_err err = a ? repo_mfa_get(e->repo, user_id, &st, a)
                        : AS_ERR_NOMEM;

    *ok = false;
    memset(out, 0, sizeof *out);
    if (err == AS_OK && st.enabled)
        err = AS_ERR_NOT_FOUND;            /* nothing pending */
    if (err == AS_OK)
        err = open_secret(e, user_id, &st, secret);
    if (err == AS_OK &&
        totp_match(secret, code, e->now_ms / 1000, st.last_step, &step)) {
        codes_new(out, h);
        /* The codes' time when they are stored, not when the request
         * began (its lockout step takes a transaction before): a renewal
         * that arrived meanwhile is refused as concurrent and the codes
         * this confirm answers stand (a review: it went through, both
         * answered 200 and the confirm's codes were dead, 15 of 100). */
        err = repo_mfa_enable(e->repo, user_id, step, st.secret,
                              (const uint8_t(*)[REPO_HASH_LEN])h,
                              TOTP_RECOVERY_COUNT, keep_sid,
                              e->clock_us ? e->clock_us()
                                          : e->now_ms * 1000);
        *ok = err == AS_OK;
        /* Every other session ended and the row changed (mfa_enabled):
         * forgotten here after the commit. */
        if (*ok && e->cache)
            scache_forget_user(e->cache, user_id);
        if (err == AS_ERR_NOT_FOUND)       /* raced: step used, turned on */
            err = AS_OK;                   /* by a concurrent confirm, or a
                                              new setup replaced the secret */
    }
    if (!*ok)
        crypt_wipe(out, sizeof *out);
    crypt_wipe(secret, sizeof secret);
    arena_free(a);
    return err;
}

/* True when `user_id` has no second factor on (now). */
static bool factor_off(const struct mfa_env *e, const char *user_id)
{
    struct mfa_state st;
    struct arena *a = arena_new();
    enum as_err err = a ? repo_mfa_get(e->repo, user_id, &st, a)
                        : AS_ERR_NOMEM;
    bool off = err == AS_ERR_NOT_FOUND || (err == AS_OK && !st.enabled);

    arena_free(a);
    return off;
}

/* mfa_check_code(), and with `login` (NULL: none) its token used in the
 * same step. A code of a login whose factor is off, or was turned off
 * while the code was checked, is AS_ERR_INVALID_TOKEN: what turned it
 * off ended the login's token too (README "Second factor"), and the
 * login answers as for a token ended before it came, its attempt taken
 * back, not as a wrong code (counted) or a factor that is off (409). */
static enum as_err code_check(const struct mfa_env *e, const char *user_id,
                              const char *code,
                              const struct repo_mfa_login *login, bool *ok)
{
    uint8_t secret[TOTP_SECRET_LEN], h[REPO_HASH_LEN];
    struct mfa_state st;
    struct arena *a = arena_new();
    int64_t step = -1;
    enum as_err err = a ? repo_mfa_get(e->repo, user_id, &st, a)
                        : AS_ERR_NOMEM;

    *ok = false;
    memset(secret, 0, sizeof secret);
    if (err != AS_OK || !st.enabled) {
        arena_free(a);
        if (login && (err == AS_OK || err == AS_ERR_NOT_FOUND))
            return AS_ERR_INVALID_TOKEN;
        return err != AS_OK ? err : AS_ERR_NOT_FOUND;
    }
    if (totp_code_shape(code)) {
        err = open_secret(e, user_id, &st, secret);
        if (err == AS_OK &&
            totp_match(secret, code, e->now_ms / 1000, st.last_step, &step))
            err = repo_mfa_use_step(e->repo, user_id, step, login);
        else if (err == AS_OK)
            err = AS_ERR_NOT_FOUND;
        *ok = err == AS_OK;
    } else if (totp_recovery_hash(code, h)) {
        err = repo_mfa_use_recovery(e->repo, user_id, h, e->now_ms, login);
        *ok = err == AS_OK;
    } else {
        err = AS_ERR_NOT_FOUND;
    }
    if (err == AS_ERR_NOT_FOUND && login && factor_off(e, user_id))
        err = AS_ERR_INVALID_TOKEN;        /* turned off meanwhile */
    if (err == AS_ERR_NOT_FOUND)
        err = AS_OK;                       /* a wrong code, not an error */
    crypt_wipe(secret, sizeof secret);
    arena_free(a);
    return err;
}

enum as_err mfa_check_code(const struct mfa_env *e, const char *user_id,
                           const char *code, bool *ok)
{
    return code_check(e, user_id, code, NULL, ok);
}

enum as_err mfa_check_login_code(const struct mfa_env *e,
                                 const char *user_id, const char *code,
                                 const char *token, bool *ok)
{
    uint8_t h[REPO_HASH_LEN];
    struct repo_mfa_login login = { h, e->now_ms,
                                    MFA_TOKEN_MAX_FAILURES + 1 };

    *ok = false;
    if (!sec_token_valid(token))
        return AS_ERR_INVALID_TOKEN;
    sec_token_hash(token, h);
    /* +1: the caller's own attempt is among the counted ones (as for
     * mfa_token_use()). */
    return code_check(e, user_id, code, &login, ok);
}

/* The hash of `code` into `h` when it is a recovery code (a TOTP code
 * proves nothing a renewal retires); NULL otherwise. */
static const uint8_t *recovery_proof(const char *code,
                                     uint8_t h[REPO_HASH_LEN])
{
    if (!code || totp_code_shape(code) || !totp_recovery_hash(code, h))
        return NULL;
    return h;
}

enum as_err mfa_recovery_renew(const struct mfa_env *e, const char *user_id,
                               const char *code, int64_t since_us,
                               int64_t now_us, struct mfa_codes *out)
{
    uint8_t h[TOTP_RECOVERY_COUNT][REPO_HASH_LEN], ph[REPO_HASH_LEN];
    enum as_err err;

    codes_new(out, h);
    err = repo_mfa_recovery_set(e->repo, user_id, recovery_proof(code, ph),
                                since_us, (const uint8_t(*)[REPO_HASH_LEN])h,
                                TOTP_RECOVERY_COUNT, now_us);
    if (err != AS_OK)
        crypt_wipe(out, sizeof *out);
    return err;
}

enum as_err mfa_disable(const struct mfa_env *e, const char *user_id,
                        const char *code, bool *was_on)
{
    uint8_t ph[REPO_HASH_LEN];
    enum as_err err = repo_mfa_disable(e->repo, user_id,
                                       recovery_proof(code, ph), was_on);

    if (err == AS_OK && e->cache)        /* the cached row's mfa_enabled */
        scache_forget_user(e->cache, user_id);
    return err;
}

enum as_err mfa_token_issue(const struct mfa_env *e, const char *user_id,
                            int64_t pw_gen, char out[SEC_TOKEN_LEN + 1])
{
    uint8_t h[REPO_HASH_LEN];
    enum as_err err;

    sec_token_new(out);
    sec_token_hash(out, h);
    err = repo_mfa_token_create(e->repo, h, user_id, pw_gen, e->now_ms,
                                e->now_ms + MFA_TOKEN_TTL_MS);
    if (err != AS_OK)
        crypt_wipe(out, SEC_TOKEN_LEN + 1);
    return err;
}

enum as_err mfa_token_user(const struct mfa_env *e, const char *token,
                           char user_id[UUID_STR_LEN])
{
    uint8_t h[REPO_HASH_LEN];
    enum as_err err;

    user_id[0] = '\0';
    if (!sec_token_valid(token))
        return AS_ERR_INVALID_TOKEN;
    sec_token_hash(token, h);
    err = repo_mfa_token_user(e->repo, h, e->now_ms, MFA_TOKEN_MAX_FAILURES,
                              user_id);
    return err == AS_ERR_NOT_FOUND ? AS_ERR_INVALID_TOKEN : err;
}

enum as_err mfa_token_attempt(const struct mfa_env *e, const char *token)
{
    uint8_t h[REPO_HASH_LEN];
    enum as_err err;

    if (!sec_token_valid(token))
        return AS_ERR_INVALID_TOKEN;
    sec_token_hash(token, h);
    err = repo_mfa_token_attempt(e->repo, h, e->now_ms,
                                 MFA_TOKEN_MAX_FAILURES);
    return err == AS_ERR_NOT_FOUND ? AS_ERR_INVALID_TOKEN : err;
}

void mfa_token_refund(const struct mfa_env *e, const char *token)
{
    uint8_t h[REPO_HASH_LEN];

    if (sec_token_valid(token)) {
        sec_token_hash(token, h);
        (void)repo_mfa_token_refund(e->repo, h);
    }
}

enum as_err mfa_token_use(const struct mfa_env *e, const char *token)
{
    uint8_t h[REPO_HASH_LEN];
    enum as_err err;

    if (!sec_token_valid(token))
        return AS_ERR_INVALID_TOKEN;
    sec_token_hash(token, h);
    /* The caller's own attempt is among the counted ones: the last one
     * allowed still uses the token (no further one could be claimed). */
    err = repo_mfa_token_use(e->repo, h, e->now_ms,
                             MFA_TOKEN_MAX_FAILURES + 1);
    return err == AS_ERR_NOT_FOUND ? AS_ERR_INVALID_TOKEN : err;
}

enum as_err core_mfa_confirm(const struct core *c, const struct mfa_env *e,
                             const struct user *u, const char *code,
                             const char *keep_sid, const char *ip,
                             struct mfa_codes *out, int64_t *retry_s)
{
    bool pending = false, ok = false;
    struct lockout_ticket t = { 0 };
    enum as_err err = mfa_pending(e, u->id, &pending);

    *retry_s = 0;
    if (err == AS_OK && !pending)
        err = AS_ERR_NOT_FOUND;
    if (err == AS_OK)
        err = core_attempt_begin(c, u->email, ip, retry_s, &t);
    if (err == AS_OK)
        err = mfa_confirm(e, u->id, code, keep_sid, out, &ok);
    if (err == AS_ERR_NOT_FOUND && pending) /* gone meanwhile: no try */
        core_attempt_settle(c, u->email, ip, false, &t);
    if (err == AS_OK && !ok)
        err = AS_ERR_INVALID_CODE;
    if (err == AS_OK)
        core_attempt_settle(c, u->email, ip, true, NULL);
    return err;
}

enum as_err core_code_check(const struct core *c, const struct mfa_env *e,
                            const struct user *u, const char *code,
                            const char *mfa_token, bool complete,
                            const char *ip, int64_t *retry_s)
{
    bool ok = false, counted = false;
    struct lockout_ticket t = { 0 };
    enum as_err err = AS_OK;

    /* A login's token gives one of its tries first, before the attempt
     * is counted or the code looked at: concurrent wrong codes never get
     * more than its MFA_TOKEN_MAX_FAILURES, and those that find none
     * left count nothing (counted and taken back, they could arm the
     * lock meanwhile: a review). A caller the lockout refuses gets its
     * try back: a 429 checks no code (before, five used the token up: a
     * review). */
    if (mfa_token)
        err = mfa_token_attempt(e, mfa_token);
    if (err == AS_OK) {
        err = core_attempt_begin(c, u->email, ip, retry_s, &t);
        counted = err == AS_OK;
    }
    if (err == AS_ERR_RATE_LIMITED && mfa_token)
        mfa_token_refund(e, mfa_token);
    if (err == AS_OK)
        err = mfa_token
                  ? mfa_check_login_code(e, u->id, code, mfa_token, &ok)
                  : mfa_check_code(e, u->id, code, &ok);
    if (err == AS_ERR_INVALID_TOKEN && counted) /* the login went elsewhere */
        core_attempt_settle(c, u->email, ip, false, &t);
    if (err == AS_OK && !ok)
        err = AS_ERR_INVALID_CODE;
    if (err == AS_OK && complete)
        core_attempt_settle(c, u->email, ip, true, NULL);
    return err;
}
