#ifndef AUTH_MAIL_H              /* mail.h: the outbox and its delivery */
#define AUTH_MAIL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "err.h"

struct cfg;
struct repo;

/* Kinds of mail; also the webhook event "type" and the outbox "kind".
 * Adding a kind: a MAIL_KIND_* name here, its subject and text in
 * mail_render() (and its link page in mail.c when it has a link), and
 * mail_queue() calls; the outbox takes any kind. */
#define MAIL_KIND_RESET "password_reset"
#define MAIL_KIND_VERIFY "email_verification"
/* To the previous address after an email change; it carries no link. */
#define MAIL_KIND_EMAIL_CHANGED "email_changed"
/* To the account's email when a passkey is added; no link. */
#define MAIL_KIND_PASSKEY_ADDED "passkey_added"

#define MAIL_RESET_TTL_MS INT64_C(3600000)        /* reset links: 1 hour */
#define MAIL_VERIFY_TTL_MS INT64_C(86400000)      /* verify links: 24 h */
#define MAIL_RETRY_BASE_MS INT64_C(5000)          /* first retry delay */
#define MAIL_RETRY_MAX_MS INT64_C(3600000)        /* longest retry delay */
#define MAIL_PAUSE_BASE_MS INT64_C(1000)   /* transport pause after a failure */
#define MAIL_PAUSE_MAX_MS INT64_C(60000)   /* longest transport pause */
/* An unsent mail is given up a day after it was queued: a request still
 * unresolved is not sent, a row still failing is dropped, and each new
 * request deletes a few such rows (so that without a transport they do
 * not pile up). */
#define MAIL_STALE_MS INT64_C(86400000)
/* Failed tries after which a mail is given up: with the backoff above,
 * 1.2 to 2.4 hours of retries, longer than a reset link lives. */
#define MAIL_MAX_ATTEMPTS 12
#define MAIL_MAX_LINK 900         /* bytes: one line of a mail (< 998) */
#define MAIL_HEX_SIG_LEN 64       /* hex of an HMAC-SHA256 */

/* One mail as delivery sees it. Strings are borrowed. `link` is a secret
 * (it carries the token): it never goes to a log. It is NULL for the
 * notices (mail_linkless()). */
struct mail_msg {
    const char *id;               /* outbox id, a UUID */
    const char *kind;             /* MAIL_KIND_* */
    const char *to;               /* the recipient address */
    const char *link;
    int64_t created_at;           /* Unix ms */
};

/* The delivery thread. Opaque; one per process. */
struct mailer;
struct sec_keys;

/* Queues a mail of `kind` to `recipient` at `now` (Unix ms), for user
 * `user_id` (NULL when the mail is asked for by email: the mailer finds
 * the account, or drops the mail when there is none). With `with_link` a
 * fresh seed is stored, from which the mailer makes the link's token at
 * delivery. One insert whatever the recipient; call mail_wake() after.
 * The cap per recipient, the user checks and the token are applied when
 * the mailer resolves the mail (repo_outbox_resolve()); a mail without a
 * link (a notice, `user_id` required) is counted against a cap of
 * notices of its own. Unsent mails queued over MAIL_STALE_MS before `now`
 * are deleted a few at a time as this one is queued. */
enum as_err mail_queue(struct repo *repo, const char *kind,
                       const char *user_id, const char *recipient,
                       bool with_link, int64_t now);

/* Starts delivering the outbox of `repo` with the transport of `cfg`
 * (SMTP or the webhook); links' tokens are derived with `keys`. Without
 * a transport, no thread runs: rows stay queued and one warning says so.
 * `cfg`, `repo` and `keys` must outlive the mailer. Returns NULL (after
 * logging why) when the thread cannot start; free with mail_stop(). */
struct mailer *mail_start(const struct cfg *cfg, struct repo *repo,
                          const struct sec_keys *keys);
/* Stops the thread promptly (a transfer in progress is aborted and the
 * mail retried later) and frees the mailer; NULL is a no-op. */
void mail_stop(struct mailer *m);
/* Tells the thread that a mail was queued, so it looks at once rather
 * than at its next poll. Thread-safe; NULL is a no-op. */
void mail_wake(struct mailer *m);

/* $AUTH_PUBLIC_URL/reset-password?token=T or /verify-email?token=T for
 * `kind` (a trailing slash of `public_url` is dropped) into `out`. False
 * when it does not fit or `kind` is unknown. The result is a secret. */
bool mail_link(const char *public_url, const char *kind, const char *token,
               char *out, size_t cap);
/* The whole RFC 5322 message of `m` from `from` ("addr" or
 * "Name <addr>"), dated `now_ms`: headers (Date, From, To, Subject,
 * Message-ID, MIME-Version, Content-Type text/plain; charset=utf-8) and a
 * plain-text body, every line ending in CRLF. NULL when an address or the
 * link could break the message (control characters, overlong) or out of
 * memory. Caller wipes (it holds the link) and frees with free(). */
char *mail_render(const struct mail_msg *m, const char *from,
                  int64_t now_ms);
/* The address inside `from` ("addr" or "Name <addr>") as "<addr>", for
 * the SMTP envelope, into `out`. False when it does not fit or is
 * malformed. */
bool mail_envelope(const char *from, char *out, size_t cap);
/* The webhook event of `m`: compact JSON {"type","to","link","id",
 * "created_at"}. Caller wipes and frees with free(); NULL on error. */
char *mail_event_json(const struct mail_msg *m);
/* Hex HMAC-SHA256 with `secret` over "<timestamp>.<body>", the value of
 * X-Auth-Signature after "sha256=". */
void mail_sign(const char *secret, int64_t timestamp, const char *body,
               size_t body_len, char out[MAIL_HEX_SIG_LEN + 1]);
/* Delay before a row's next try after `failures` failed tries (1 or
 * more): MAIL_RETRY_BASE_MS doubling each time, at most
 * MAIL_RETRY_MAX_MS, then jittered down to between half and all of that
 * by the random number `rnd`, so rows that failed together spread out. */
int64_t mail_backoff_ms(int64_t failures, uint32_t rnd);
/* How long the whole transport pauses after `failures` straight failed
 * deliveries (1 or more): MAIL_PAUSE_BASE_MS doubling, at most
 * MAIL_PAUSE_MAX_MS, jittered like mail_backoff_ms(). */
int64_t mail_pause_ms(int64_t failures, uint32_t rnd);
/* True when a mail queued at `created_at` (Unix ms) that failed
 * `attempts` times is given up at `now` rather than tried again: after
 * MAIL_MAX_ATTEMPTS failed tries, or MAIL_STALE_MS after it was queued. */
bool mail_give_up(int64_t attempts, int64_t created_at, int64_t now);
/* True when a webhook answer `status` refuses this one event rather than
 * saying the receiver cannot take events now: a 4xx other than 408
 * (Request Timeout) and 429 (Too Many Requests). Such a mail is dropped
 * and the transport does not pause. */
bool mail_webhook_refused(long status);
/* True for a kind of mail that carries no link (a notice). */
bool mail_linkless(const char *kind);
/* The longest address stored (v_email(): RFC 5321's path, 256 octets,
 * less its angle brackets). */
#define MAIL_ADDR_MAX 254
/* The mailbox `recipient` (stored lower-case) delivers to, which the
 * per-recipient cap of link mails counts (notices are counted per
 * address: src/repo/mail.c): the address without a subaddress (RFC 5233:
 * `a+tag@x` is `a@x`'s), else the per-address cap let one inbox get the
 * cap once per tag an attacker made up. Into `out` (`cap` bytes); false
 * when it does not fit. */
bool mail_cap_key(const char *recipient, char *out, size_t cap);
/* True when the host of `url` (scheme://[userinfo@]host[:port]...) is
 * loopback: localhost, 127.0.0.0/8 or ::1. */
bool mail_url_loopback(const char *url);

#endif
