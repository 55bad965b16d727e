#ifndef AUTH_MFA_H               /* mfa.h: the rules of the second factor */
#define AUTH_MFA_H
#include <stdbool.h>
#include <stdint.h>
#include "arena.h"
#include "err.h"
#include "repo.h"
#include "sec.h"
#include "totp.h"

struct scache;

#define MFA_TOKEN_TTL_MS (5 * 60 * 1000)  /* a login waits 5 min for a code */
#define MFA_TOKEN_MAX_FAILURES 5u         /* wrong codes before it dies */
#define MFA_AMR_OTP "pwd otp"             /* a session's amr after a code */

/* What the rules need; everything borrowed. `now_ms` is the time the
 * rules decide at (injected, so tests can move it). */
struct mfa_env {
    struct repo *repo;
    struct scache *cache;        /* forgets the user on a change; NULL:
                                    none (the CLI) */
    const struct sec_keys *keys;
    const char *issuer;          /* AUTH_JWT_ISSUER */
    int64_t now_ms;
    /* The Unix microsecond, read when a change is stored (a set of
     * recovery codes' time); NULL: now_ms's. */
    int64_t (*clock_us)(void);
};

/* What setup hands the user: the secret in base32, the otpauth:// URI and
 * that URI as an SVG QR code (both strings in the arena given). */
struct mfa_setup {
    char secret[TOTP_B32_LEN + 1];
    const char *uri;
    const char *qr_svg;
};

/* The recovery codes given out once, in clear. */
struct mfa_codes {
    char code[TOTP_RECOVERY_COUNT][TOTP_RECOVERY_LEN + 1];
};

/* The otpauth:// URI (Google Authenticator "Key Uri Format") of a base32
 * `secret` for `email` under `issuer`, label and issuer percent-encoded.
 * In `a`; NULL when out of memory. */
const char *mfa_uri(struct arena *a, const char *issuer, const char *email,
                    const char *secret);
/* Starts (or restarts) the setup of user `u`: a fresh 160-bit secret is
 * stored sealed and pending. AS_ERR_CONFLICT when the factor is on. */
enum as_err mfa_setup_begin(const struct mfa_env *e, const struct user *u,
                            struct mfa_setup *out, struct arena *a);
/* *pending: a setup of `user_id` waits for its confirm (read before a
 * confirm is counted: one with nothing pending counts nothing). */
enum as_err mfa_pending(const struct mfa_env *e, const char *user_id,
                        bool *pending);
/* Confirms the pending factor of `user_id` with its first `code`: on
 * success the factor is on, `out` holds the recovery codes (stored only
 * as hashes), every session but `keep_sid` is revoked and e->cache
 * forgets the user. *ok is false
 * (and nothing changed) for a wrong code; AS_ERR_NOT_FOUND when nothing
 * is pending. Caller wipes `out`. */
enum as_err mfa_confirm(const struct mfa_env *e, const char *user_id,
                        const char *code, const char *keep_sid,
                        struct mfa_codes *out, bool *ok);
/* Checks `code`, a TOTP code (each step accepted once: compare-and-set in
 * the database) or an unused recovery code (used up by this call), for
 * user `user_id` whose factor is on. *ok false for a wrong, replayed or
 * malformed code; AS_ERR_NOT_FOUND when the factor is off. */
enum as_err mfa_check_code(const struct mfa_env *e, const char *user_id,
                           const char *code, bool *ok);
/* mfa_check_code() for a login with `token` (its mfa_token): a right
 * code and the token are used together, so that of two right codes sent
 * with one token at once the one that loses keeps its code unused;
 * AS_ERR_INVALID_TOKEN (and *ok false, nothing used) when the token is
 * not live any more. */
enum as_err mfa_check_login_code(const struct mfa_env *e,
                                 const char *user_id, const char *code,
                                 const char *token, bool *ok);
/* Replaces the recovery codes of `user_id` by ten fresh ones in `out`.
 * `code` (NULL: none) is the code the caller proved the factor with, just
 * checked by mfa_check_code(): when it is a recovery code that a
 * concurrent renewal replaced meanwhile, AS_ERR_INVALID_CODE and nothing
 * changes; likewise when codes were set after `since_us` (> 0: the Unix
 * microsecond the caller began proving the factor), so of concurrent
 * renewals only the first happens. The new codes are made at `now_us`
 * (later than `since_us`). Caller wipes `out`. */
enum as_err mfa_recovery_renew(const struct mfa_env *e, const char *user_id,
                               const char *code, int64_t since_us,
                               int64_t now_us, struct mfa_codes *out);
/* Turns the factor of `user_id` off (also a pending one) and makes
 * e->cache forget the user's cached row; *was_on tells whether it was
 * on. `code` as for mfa_recovery_renew() (NULL: an admin's reset). */
enum as_err mfa_disable(const struct mfa_env *e, const char *user_id,
                        const char *code, bool *was_on);
/* A new login token for `user_id` (single use, MFA_TOKEN_TTL_MS, dead after
 * MFA_TOKEN_MAX_FAILURES wrong codes); only its hash is stored. With
 * `pw_gen` >= 0 (the password_gen the login read; -1: none) it is stored
 * only while that is still the account's: AS_ERR_BAD_CREDENTIALS when a
 * password change or reset went first (which ends the pending tokens),
 * not when another login replaced the hash of the same password. */
enum as_err mfa_token_issue(const struct mfa_env *e, const char *user_id,
                            int64_t pw_gen, char out[SEC_TOKEN_LEN + 1]);
/* The user of a live login token; AS_ERR_INVALID_TOKEN when it is
 * malformed, unknown, expired, used or dead. */
enum as_err mfa_token_user(const struct mfa_env *e, const char *token,
                           char user_id[UUID_STR_LEN]);
/* Claims one code attempt on login token `token`, before the code is
 * looked at: atomically, so however many arrive at once, at most
 * MFA_TOKEN_MAX_FAILURES are claimed; AS_ERR_INVALID_TOKEN when none is
 * left (or the token is malformed, unknown, expired or used). */
enum as_err mfa_token_attempt(const struct mfa_env *e, const char *token);
/* Gives back an attempt mfa_token_attempt() claimed on `token` whose code
 * was never looked at (the caller was locked out first). */
void mfa_token_refund(const struct mfa_env *e, const char *token);
/* Uses up login token `token` after a right code on an attempt claimed by
 * mfa_token_attempt() (so also on the last one); AS_ERR_INVALID_TOKEN
 * when it is no longer live (a concurrent use won). */
enum as_err mfa_token_use(const struct mfa_env *e, const char *token);

#endif
