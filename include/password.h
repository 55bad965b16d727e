#ifndef AUTH_PASSWORD_H          /* password.h: Argon2id and the policy */
#define AUTH_PASSWORD_H
#include <stdbool.h>
#include <stddef.h>
#include "err.h"

#define PW_HASH_MAX 128          /* crypto_pwhash_STRBYTES (checked) */
#define PW_MAX_CHARS 128         /* code points */

struct pw_params {
    unsigned long long opslimit; /* AUTH_ARGON2_ITERATIONS */
    size_t memlimit;             /* AUTH_ARGON2_MEMORY_KIB * 1024 */
};

/* Argon2id PHC string of `pw` into `out`. AS_ERR_NOMEM when libsodium
 * cannot get the memory. */
enum as_err pw_hash(const char *pw, const struct pw_params *p,
                    char out[PW_HASH_MAX]);
/* AS_OK when `pw` matches `hash`, AS_ERR_BAD_CREDENTIALS otherwise
 * (a malformed hash included). */
enum as_err pw_verify(const char *hash, const char *pw);
/* True when `hash` was made with other parameters than `p`. */
bool pw_needs_rehash(const char *hash, const struct pw_params *p);
/* pw_verify() for a login, whose answer must not tell an account from
 * an unknown email: when `pw` is wrong for a hash at another cost than
 * pw_dummy_init()'s, and that hash took less time than verifications at
 * that cost took lately (their median), the caller waits out the
 * difference (before any such verification ran, it runs
 * pw_verify_dummy() instead). */
enum as_err pw_verify_padded(const char *hash, const char *pw);
/* Makes the dummy hash that pw_verify_dummy() uses, and sets today's cost
 * for pw_verify_padded(); call once at start. */
enum as_err pw_dummy_init(const struct pw_params *p);
/* Verifies `pw` against the dummy hash and discards the answer, so that an
 * unknown email costs what a wrong password costs. */
void pw_verify_dummy(const char *pw);

/* Starts `threads` (at least 1) hashing threads at the lowest CPU
 * priority (SCHED_IDLE, or nice 19 where that is refused): from then on
 * every Argon2 computation of pw_hash(), pw_verify() and
 * pw_verify_dummy() runs on one of them while the calling thread sleeps,
 * so a thread serving requests never waits for a core behind a hash, and
 * the caller's database work before and after the hash keeps its normal
 * priority. Without it (the command line, tests) hashes run on the calling
 * thread. Call once at start, before any hash; false when no thread could
 * be started (hashes then stay on the callers). */
bool pw_hashers_start(unsigned threads);
/* Joins the hashing threads; call when no hash can be running any more
 * (after the pools that call pw_hash() and pw_verify() are freed). */
void pw_hashers_stop(void);
/* Runs fn(arg) on a hashing thread and returns once it has returned (on
 * the calling thread when none are started). fn must not call back into
 * this function. */
void pw_on_hasher(void (*fn)(void *arg), void *arg);

/* The password policy (README "Security"). Returns NULL when `pw` is acceptable
 * for `email` (normalised), else a static message for the 422 "errors" entry:
 * shorter than `min_chars` code points, longer than PW_MAX_CHARS, not valid
 * UTF-8 or containing NUL, in the common-password list (case-insensitively), or
 * equal to / containing the email's local part when that has 3 characters or
 * more. */
const char *pw_policy_check(const char *pw, const char *email,
                            unsigned min_chars);
/* Number of entries in the embedded common-password list (loaded lazily,
 * once, thread-safely). */
size_t pw_common_count(void);
/* True when `pw` is in the common list, case-insensitively. */
bool pw_is_common(const char *pw);

#endif
