#ifndef AUTH_HX_H                /* hx.h: helpers shared by the handlers */
#define AUTH_HX_H
#include "core.h"
#include "handlers.h"
#include "repo.h"

#define HX_MAX_PASSWORD_BYTES 512   /* 128 code points of up to 4 bytes */

/* The core's context for this request (src/core/): the daemon's
 * repository, session cache, configuration, hash cost and keys, the real
 * clock and random sources. */
struct core hx_core(struct req_ctx *rc);
/* Whole seconds from `now_ms` until `ends_ms`, rounded up (0 once
 * ended): a session of a 30-day TTL started a few milliseconds ago
 * still has 2592000 s to run, as its refresh_expires_in says. */
int64_t hx_seconds_left(int64_t ends_ms, int64_t now_ms);
/* Answers 200 with the token pair (`TokenPair` in src/openapi.json): a new
 * access token for `u` in session `sid`, and `refresh` (a secret, not kept),
 * both valid at most until `ends_ms`, the Unix ms at which the session ends;
 * the session's login used the RFC 8176 methods `amr` (space-separated, as
 * stored on the session; NULL: "pwd"). */
enum as_err hx_token_pair(struct req_ctx *rc, const struct user *u,
                          const char *sid, const char *refresh,
                          int64_t ends_ms, const char *amr);
/* AS_OK when the signing keys were found current by a poll of the keys
 * table in the last few seconds (fleet.h; always, without other
 * instances), waiting a moment for one; else 503 with Retry-After. Called
 * first by every route that signs (a login, /login/mfa, a passkey login,
 * a refresh), before it stores or spends anything: a process that stood
 * still must not sign with a key the others may have dropped, and a
 * refusal after the session was stored, or the refresh token rotated,
 * would cost the client its session. */
enum as_err hx_keys_current(struct req_ctx *rc);
/* Creates a session for `u` (client IP and user agent recorded) and
 * answers its first token pair: a complete login, so the session's
 * storing ends the run of login failures of u's email from the client's
 * address (core_session_start). */
enum as_err hx_start_session(struct req_ctx *rc, const struct user *u);
/* The same, recording `amr` (see hx_token_pair) on the session; a login
 * finished with a code names its used login token `mfa_token` (else
 * NULL), and gets 401 invalid_token when that was ended meanwhile; a
 * passkey login names its passkey `passkey_id` (else NULL), whose
 * deletion ends the session. */
enum as_err hx_start_session_amr(struct req_ctx *rc, const struct user *u,
                                 const char *amr, const char *mfa_token,
                                 const char *passkey_id);
/* Creates a user from the JSON body {email, password, full_name?} (and
 * role? when `with_role`; otherwise the role is "user" and a body naming
 * role or is_active is refused with 403), answering 201 with Location,
 * 409 email_taken or 422; logs `action` as an audit. */
enum as_err hx_create_user(struct req_ctx *rc, bool with_role,
                           const char *action);
/* Loads the caller's user (rc->claims.sub); a vanished user is 401. */
enum as_err hx_caller(struct req_ctx *rc, struct user *out);
/* Verifies `pw` against `u` (AS_ERR_BAD_CREDENTIALS with a detail),
 * under the lockout of u->email from the client's address: a locked
 * caller gets AS_ERR_RATE_LIMITED (answered, with Retry-After) without
 * hashing; a wrong password counts as a failed login. A right one
 * ends the run of failures, except with the second factor on: then its
 * attempt is only taken back (a code must complete the action). */
enum as_err hx_check_password(struct req_ctx *rc, const struct user *u,
                              const char *pw);
/* Answers 429 with Retry-After `retry` seconds for a locked account. */
enum as_err hx_locked(struct req_ctx *rc, int64_t retry);
/* Answers 401 invalid_credentials, the one answer of a wrong password, an
 * unknown email, and a password changed while the login ran. */
enum as_err hx_bad_credentials(struct req_ctx *rc);
/* 403 account_disabled: "This account is disabled." (a login of an
 * account deactivated before or while it ran). */
enum as_err hx_disabled(struct req_ctx *rc);
/* Logs an audit event: `action` on user `target` by the caller (or
 * "anonymous"), with optional extra `fields` (stolen). */
void hx_audit(struct req_ctx *rc, const char *action, const char *target,
              json_t *fields);
/* Answers a right password of an account whose second factor is on:
 * 403 mfa_required with a fresh single-use `mfa_token` in the problem. */
enum as_err hx_mfa_challenge(struct req_ctx *rc, const struct user *u);
/* The client's request id, for handlers that log. */
#define HX_RID(rc) ((rc)->request_id)

#endif
