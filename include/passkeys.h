#ifndef AUTH_PASSKEYS_H          /* passkeys.h: the rules of passkeys */
#define AUTH_PASSKEYS_H
#include <jansson.h>
#include <stdint.h>
#include "arena.h"
#include "err.h"
#include "repo.h"
#include "webauthn.h"

#define PASSKEY_CHALLENGE_TTL_MS (5 * 60 * 1000)  /* a ceremony's time */
#define PASSKEY_AMR "hwk mfa"         /* a session's amr after a passkey */
#define PASSKEY_MAX_PER_USER 20       /* registrations beyond: 409 */
/* Registrations a user may have begun and not finished: a newer one
 * forgets the oldest's challenge, so one account asking for options in a
 * loop stores no more than this (README "Passkeys"). */
#define PASSKEY_OPEN_REGISTRATIONS 5
#define PASSKEY_NAME_DEFAULT "Passkey"

/* What the rules need; everything borrowed. `now_ms` is the time the
 * rules decide at (injected, so tests can move it). */
struct scache;

struct passkey_env {
    struct repo *repo;
    struct scache *cache;         /* this instance's session cache, or NULL */
    struct wa_rp rp;              /* AUTH_WEBAUTHN_RP_ID, _ORIGINS */
    const char *rp_name;          /* AUTH_WEBAUTHN_RP_NAME */
    int64_t now_ms;
};

/* The outcome of a ceremony that was refused: what the authenticator or
 * client got wrong (for the log), and, when the passkey was found, its
 * stored row (for the audit of a suspected clone). */
struct passkey_refusal {
    enum wa_result why;           /* WA_OK: refused before the checks */
    const char *reason;           /* short text for logs, static */
    struct passkey found;         /* id[0] == '\0' when none */
};

/* The user handle of `user_id` (its 16 UUID bytes) in base64url, in `a`:
 * opaque, never the email. NULL for an id that is not a UUID. */
const char *passkey_user_handle(struct arena *a, const char *user_id);
/* Registration options for user `u`: a fresh challenge (stored bound to
 * `u`, single use, PASSKEY_CHALLENGE_TTL_MS) and the WebAuthn Level 3
 * PublicKeyCredentialCreationOptionsJSON with the user's passkeys
 * excluded. `*out` is a new reference. AS_ERR_CONFLICT when the user has
 * PASSKEY_MAX_PER_USER passkeys. */
enum as_err passkey_register_options(const struct passkey_env *e,
                                     const struct user *u, json_t **out,
                                     struct arena *a);
/* Finishes a registration of user `u` with a RegistrationResponseJSON
 * `cred` (borrowed): the challenge it signs is used up (it must be one
 * issued to `u`), every check of webauthn.h passes, the credential is
 * new; then it is stored as `out` (strings in `a`) named `name` (NULL:
 * PASSKEY_NAME_DEFAULT). AS_ERR_BAD_PASSKEY with `why` filled on any
 * refusal; AS_ERR_CONFLICT when the user holds PASSKEY_MAX_PER_USER
 * passkeys by the time it would be stored (as the options answer). */
enum as_err passkey_register_finish(const struct passkey_env *e,
                                    const struct user *u, const json_t *cred,
                                    const char *name, struct passkey *out,
                                    struct passkey_refusal *why,
                                    struct arena *a);
/* Login options: a fresh challenge (stored, single use) and the
 * PublicKeyCredentialRequestOptionsJSON with an empty allowCredentials
 * (passkeys are discoverable), the same whoever asks. New reference. */
enum as_err passkey_login_options(const struct passkey_env *e,
                                  json_t **out);
/* Finishes a login with an AuthenticationResponseJSON `cred`: its
 * challenge is used up, the passkey is found by credential id, the user
 * handle names its user, the assertion verifies and the counter moves
 * forward (compared with the stored one as it is stored, so concurrent
 * logins end as some serial order of them would). On AS_OK `out` is the
 * passkey and `user` its account (who logs in) as read before the
 * passkey was checked and used: store the session against that read
 * (its password hash), so that a reset or password change committed
 * meanwhile refuses it. AS_ERR_PASSKEY_REFUSED with `why` filled on any
 * refusal (why->why == WA_CLONED for a counter that did not move
 * forward; never for a passkey deleted meanwhile). */
enum as_err passkey_login_finish(const struct passkey_env *e,
                                 const json_t *cred, struct passkey *out,
                                 struct user *user,
                                 struct passkey_refusal *why,
                                 struct arena *a);
/* The passkeys of `user_id`, oldest first (an arena array). */
enum as_err passkey_list_own(const struct passkey_env *e,
                             const char *user_id, struct passkey **out,
                             size_t *n, struct arena *a);
/* Deletes passkey `id` of `user_id` and ends the sessions its logins
 * started (forgotten by this instance's cache at once, announced to the
 * others on PostgreSQL); AS_ERR_NOT_FOUND when that user has no such
 * passkey (or `id` is no UUID). */
enum as_err passkey_delete_own(const struct passkey_env *e, const char *id,
                               const char *user_id);
/* The API's passkey object {id, name, created_at, last_used_at,
 * transports}. New reference; NULL when out of memory. */
json_t *passkey_json(const struct passkey *p);

#endif
