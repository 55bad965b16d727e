/* mail.c: the mail area of the repository (single-use link tokens and
 * the outbox), written once for both backends over the driver
 * (driver.h): its statements and its flows. The rules they share live
 * here: the hourly counts per recipient and when they hold a mail back,
 * what a link token must match to be used, what a reset revokes. */
#include "flows.h"

#include <stdio.h>
#include <string.h>

#include "mail.h"
#include "repo_int.h"

/* A mail counts against the cap of its recipient for an hour from when
 * it was let through: counted per minute, in one row per recipient and
 * minute, and the minutes of the last 61 summed, so that no 60 minutes
 * hold more than the cap (a mail counts 60 to 61 minutes; a fixed clock
 * hour let twice the cap through across its end). */
#define HOUR_MS INT64_C(3600000)
#define MINUTE_MS INT64_C(60000)
#define WINDOW_MS (HOUR_MS + MINUTE_MS)
/* Mails without a link (notices) are counted apart from link mails, and
 * each kind of notice apart from the others, in the rows of the same
 * recipient whose window_start is the minute's plus the kind's slot: the
 * same table, a count no link mail raises (so a flood of reset requests
 * cannot silence a notice) and no other kind of notice raises (so five
 * passkeys added cannot silence the notice of an email change), pruned
 * with the others, and no change of the table's key that instances
 * still running the previous version would trip over. Window_start of
 * the slot itself (0 for link mails) is the row that one count of a
 * recipient and kind locks first. */
#define NOTICE_SLOT_MS INT64_C(1)          /* email_changed, and others */
#define PASSKEY_SLOT_MS INT64_C(2)         /* passkey_added */
/* A notice to a subaddress not verified when it was queued is counted
 * per mailbox (as link mails are) in a slot of its kind's own plus this,
 * so that it shares no count with the notices counted per address
 * (count_of()). */
#define UNPROVEN_SLOTS_MS INT64_C(2)
/* Unsent mails queued before the cutoff that one new mail deletes: more
 * than one, so that without a mailer (no transport) they cannot pile up
 * faster than they go, and few, so that a request stays cheap. */
#define ADD_PRUNE_BATCH "2"
#define FAILED_TEXT "delivery failed"    /* error text that cannot be kept */

/* Token hash $1 is unused and unexpired at $2. */
#define OTT_LIVE "used_at IS NULL AND expires_at > $2"
/* An unsent mail due at $1 whose lease ran out: one never tried before
 * ahead of any retry (so that rows that keep failing cannot keep a new
 * mail waiting), else the longest due. */
#define DUE_ROW                                                            \
    "SELECT id FROM outbox WHERE sent_at IS NULL "                         \
    "AND next_attempt_at <= $1 AND locked_until <= $1 "                    \
    "ORDER BY attempts > 0, next_attempt_at, id LIMIT 1"
/* A few unsent mails queued before $1 (next_attempt_at never precedes
 * created_at, so the index on it finds them) and not leased at $2. */
#define STALE_ROWS                                                         \
    "SELECT id FROM outbox WHERE sent_at IS NULL "                         \
    "AND next_attempt_at < $1 AND created_at < $1 AND locked_until <= $2 " \
    "LIMIT " ADD_PRUNE_BATCH
#define CLAIM(due)                                                         \
    "UPDATE outbox SET locked_until = $2 WHERE id = (" due ") "            \
    "RETURNING id, kind, recipient, user_id, seed, resolved, expires_at, " \
    "created_at, attempts, to_verified"

/* Rows the hourly sweep deletes a transaction. */
#define PRUNE_BATCH 512
#define PRUNE_ROWS "512"

enum {
    M_ADD, M_ADD_PRUNE, M_RESET_USER, M_VERIFY_USER, M_COUNT_LOCK,
    M_COUNT_SUM, M_COUNT, M_DROP, M_NOTICE_HELD, M_NOTICE_HELD_UNPROVEN,
    M_COUNT_OLDEST, M_DEFER,
    M_TOKEN_ADD, M_RESOLVED, M_NOTICE_READY, M_RESET_FIND, M_LOCK_USER,
    M_TOKEN_USE, M_SET_PW, M_DROP_PASSKEYS, M_DROP_MFA, M_DROP_CODES,
    M_REVOKE_ALL, M_RETIRE, M_LOCK_VERIFY, M_VERIFY_USE, M_SET_VERIFIED,
    M_CLAIM, M_SENT, M_FAILED, M_PRUNE_TOKENS, M_PRUNE_SENT,
    M_PRUNE_STALE, M_PRUNE_COUNTS, M_DROP_REQUESTS, M_DROP_VERIFY_REQUESTS,
    M_NSTMT
};

static struct db_stmt sql[M_NSTMT] = {
    [M_ADD] = DB_SQL("INSERT INTO outbox (id, user_id, kind, recipient, "
                     "seed, created_at, next_attempt_at) "
                     "VALUES ($1, $2, $3, $4, $5, $6, $6)"),
    /* PostgreSQL: rows another request is deleting are skipped. */
    [M_ADD_PRUNE] = DB_SPLIT("DELETE FROM outbox WHERE id IN ("
                             STALE_ROWS ")",
                             "DELETE FROM outbox WHERE id IN ("
                             STALE_ROWS " FOR UPDATE SKIP LOCKED)"),
    /* PostgreSQL: the user's row held against a password or email
     * change until the link is stored (SQLite: one writer), so that the
     * change either retires the link or finds the request still there
     * (db_links_end). */
    [M_RESET_USER] = DB_SPLIT("SELECT id FROM users WHERE email = $1 "
                              "AND is_active",
                              "SELECT id FROM users WHERE email = $1 "
                              "AND is_active FOR SHARE"),
    [M_VERIFY_USER] = DB_SPLIT("SELECT id FROM users WHERE id = $2 "
                               "AND email = $1 AND is_active "
                               "AND NOT is_verified",
                               "SELECT id FROM users WHERE id = $2 "
                               "AND email = $1 AND is_active "
                               "AND NOT is_verified FOR SHARE"),
    /* Counts of one recipient wait for each other here (PostgreSQL: the
     * row's lock until commit; SQLite: one writer), so that each sums
     * what the one before it added. */
    [M_COUNT_LOCK] = DB_SQL("INSERT INTO mail_counts (recipient, "
                            "window_start, n) VALUES ($1, $2, 0) "
                            "ON CONFLICT (recipient, window_start) "
                            "DO UPDATE SET n = 0"),
    [M_COUNT_SUM] = DB_SQL("SELECT COALESCE(SUM(n), 0) FROM mail_counts "
                           "WHERE recipient = $1 AND window_start > $2 "
                           "AND window_start % 60000 = $3"),
    [M_COUNT] = DB_SQL("INSERT INTO mail_counts (recipient, window_start, "
                       "n) VALUES ($1, $2, $3) ON CONFLICT (recipient, "
                       "window_start) DO UPDATE SET n = mail_counts.n + $3"),
    [M_DROP] = DB_SQL("DELETE FROM outbox WHERE id = $1 "
                      "AND sent_at IS NULL"),
    /* Another notice of kind $2 to $1 about account $4 held back past
     * the cap: notices are queued resolved, and one held is unresolved
     * until its count lets it through (notice_hold()). Another account's
     * stands for nothing: it goes with that account. */
    [M_NOTICE_HELD] = DB_SQL("SELECT 1 FROM outbox WHERE recipient = $1 "
                             "AND kind = $2 AND id <> $3 AND user_id = $4 "
                             "AND sent_at IS NULL AND NOT resolved LIMIT 1"),
    /* The same, to the subaddresses of one mailbox ($4: its local part
     * escaped for LIKE, then "+%@" and its domain escaped) that were not
     * verified (count_of()). */
    [M_NOTICE_HELD_UNPROVEN] = DB_SQL("SELECT 1 FROM outbox "
                                      "WHERE kind = $1 AND id <> $2 "
                                      "AND user_id = $3 AND NOT to_verified "
                                      "AND recipient LIKE $4 ESCAPE '!' "
                                      "AND sent_at IS NULL AND NOT resolved "
                                      "LIMIT 1"),
    /* The oldest minute of count $3 of $1 still within the hour. */
    [M_COUNT_OLDEST] = DB_SQL("SELECT MIN(window_start) FROM mail_counts "
                              "WHERE recipient = $1 AND window_start > $2 "
                              "AND window_start % 60000 = $3 AND n > 0"),
    [M_DEFER] = DB_SQL("UPDATE outbox SET next_attempt_at = $2, "
                       "resolved = false WHERE id = $1 AND sent_at IS NULL"),
    [M_TOKEN_ADD] = DB_SQL("INSERT INTO one_time_tokens (hash, user_id, "
                           "purpose, email, created_at, expires_at) "
                           "VALUES ($1, $2, $3, $4, $5, $6)"),
    [M_RESOLVED] = DB_SQL("UPDATE outbox SET resolved = true, "
                          "user_id = $2, expires_at = $3 WHERE id = $1 "
                          "AND NOT resolved AND sent_at IS NULL"),
    /* A notice may be queued resolved (with an email change): counted
     * at its first try instead. */
    [M_NOTICE_READY] = DB_SQL("UPDATE outbox SET resolved = true, "
                              "user_id = $2 WHERE id = $1 "
                              "AND sent_at IS NULL"),
    [M_RESET_FIND] = DB_SQL("SELECT " USER_COLS USER_MFA_COL " FROM users "
                            "WHERE is_active AND (id, email) IN "
                            "(SELECT user_id, email FROM one_time_tokens "
                            "WHERE hash = $1 AND purpose = 'reset' AND "
                            OTT_LIVE ")"),
    /* The user's row first (lock order: see src/repo/users.c). */
    [M_LOCK_USER] = DB_PG_ONLY("SELECT 1 FROM users WHERE id = $1 "
                               "FOR NO KEY UPDATE"),
    [M_TOKEN_USE] = DB_SQL("UPDATE one_time_tokens SET used_at = $2 "
                           "WHERE hash = $1 AND purpose = 'reset' "
                           "AND user_id = $3 AND " OTT_LIVE),
    /* The link proved the address as a verification link does: the
     * email is verified too (reset mails spend the cap that
     * verification mails share: README.md, "Mail"). */
    [M_SET_PW] = DB_SQL("UPDATE users SET password_hash = $2, "
                        "password_gen = password_gen + 1, "
                        "is_verified = true, "
                        "verified_at = coalesce(verified_at, $3), "
                        "updated_at = $3 WHERE id = $1 AND is_active "
                        "AND email = (SELECT email FROM one_time_tokens "
                        "WHERE hash = $4)"),
    /* The factors a reset drops when the core says so (core.h,
     * core_link_reset). */
    [M_DROP_PASSKEYS] = DB_SQL("DELETE FROM passkeys WHERE user_id = $1"),
    [M_DROP_MFA] = DB_SQL("DELETE FROM user_mfa WHERE user_id = $1"),
    [M_DROP_CODES] = DB_SQL("DELETE FROM mfa_recovery_codes "
                            "WHERE user_id = $1"),
    [M_REVOKE_ALL] = DB_SQL("UPDATE sessions SET revoked_at = $2 "
                            "WHERE user_id = $1 AND revoked_at IS NULL"),
    /* The user's other tokens of purpose $3 (NULL: of any). */
    [M_RETIRE] = DB_SQL("UPDATE one_time_tokens SET used_at = $2 "
                        "WHERE user_id = $1 AND ($3 IS NULL OR "
                        "purpose = $3) AND used_at IS NULL"),
    [M_LOCK_VERIFY] = DB_PG_ONLY("SELECT id FROM users WHERE id = "
                                 "(SELECT user_id FROM one_time_tokens "
                                 "WHERE hash = $1 AND purpose = 'verify') "
                                 "FOR NO KEY UPDATE"),
    [M_VERIFY_USE] = DB_SQL("UPDATE one_time_tokens SET used_at = $2 "
                            "WHERE hash = $1 AND purpose = 'verify' AND "
                            OTT_LIVE " RETURNING user_id"),
    [M_SET_VERIFIED] = DB_SQL("UPDATE users SET is_verified = true, "
                              "verified_at = coalesce(verified_at, $2), "
                              "updated_at = $2 WHERE id = $1 AND is_active "
                              "AND email = (SELECT email "
                              "FROM one_time_tokens WHERE hash = $3)"),
    /* SQLite: one claimer at a time (BEGIN IMMEDIATE); PostgreSQL:
     * claimers at once take different rows (SKIP LOCKED). The lease
     * keeps the row theirs until it is marked or released. */
    [M_CLAIM] = DB_SPLIT(CLAIM(DUE_ROW),
                         CLAIM(DUE_ROW " FOR UPDATE SKIP LOCKED")),
    [M_SENT] = DB_SQL("UPDATE outbox SET sent_at = $2, seed = NULL, "
                      "locked_until = 0, last_error = NULL "
                      "WHERE id = $1 AND sent_at IS NULL"),
    [M_FAILED] = DB_SQL("UPDATE outbox SET attempts = attempts + 1, "
                        "next_attempt_at = $2, locked_until = 0, "
                        "last_error = $3 WHERE id = $1 AND sent_at IS NULL"),
    /* The hourly sweep, PRUNE_ROWS rows a statement (db_mail_prune()).
     * PostgreSQL: rows another transaction holds are skipped. */
    [M_PRUNE_TOKENS] = DB_SPLIT(
        "DELETE FROM one_time_tokens WHERE hash IN (SELECT hash FROM "
        "one_time_tokens WHERE expires_at < $1 LIMIT " PRUNE_ROWS ")",
        "DELETE FROM one_time_tokens WHERE hash IN (SELECT hash FROM "
        "one_time_tokens WHERE expires_at < $1 LIMIT " PRUNE_ROWS
        " FOR UPDATE SKIP LOCKED)"),
    [M_PRUNE_SENT] = DB_SPLIT(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox "
        "WHERE sent_at < $1 LIMIT " PRUNE_ROWS ")",
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox "
        "WHERE sent_at < $1 LIMIT " PRUNE_ROWS " FOR UPDATE SKIP LOCKED)"),
    [M_PRUNE_STALE] = DB_SPLIT(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox "
        "WHERE NOT resolved AND sent_at IS NULL AND created_at < $1 "
        "LIMIT " PRUNE_ROWS ")",
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox "
        "WHERE NOT resolved AND sent_at IS NULL AND created_at < $1 "
        "LIMIT " PRUNE_ROWS " FOR UPDATE SKIP LOCKED)"),
    [M_PRUNE_COUNTS] = DB_SPLIT(
        "DELETE FROM mail_counts WHERE (recipient, window_start) IN "
        "(SELECT recipient, window_start FROM mail_counts "
        "WHERE window_start < $1 LIMIT " PRUNE_ROWS ")",
        "DELETE FROM mail_counts WHERE (recipient, window_start) IN "
        "(SELECT recipient, window_start FROM mail_counts "
        "WHERE window_start < $1 LIMIT " PRUNE_ROWS
        " FOR UPDATE SKIP LOCKED)"),
    /* To address $2, or when NULL the user's current one. */
    [M_DROP_REQUESTS] = DB_SQL("DELETE FROM outbox WHERE kind = '"
                               MAIL_KIND_RESET "' AND NOT resolved "
                               "AND sent_at IS NULL AND recipient = "
                               "COALESCE($2, (SELECT email FROM users "
                               "WHERE id = $1))"),
    /* A verification asked for before an email change or a deactivation
     * made a working link after X -> Y -> X, or after a reactivation:
     * the user's are dropped with the reset requests. */
    [M_DROP_VERIFY_REQUESTS] = DB_SQL("DELETE FROM outbox WHERE kind = '"
                                      MAIL_KIND_VERIFY "' AND NOT resolved "
                                      "AND sent_at IS NULL AND user_id = "
                                      "$1"),
};

/* Text PostgreSQL refuses to store (not UTF-8) was never stored: a
 * statement that names it finds nothing. */
static enum as_err none_if_invalid(enum as_err err, enum as_err none)
{
    return err == AS_ERR_VALIDATION ? none : err;
}

static struct db_val hash_arg(const uint8_t hash[REPO_HASH_LEN])
{
    return db_blob(hash, REPO_HASH_LEN);
}

/* Requires the last statement to have changed exactly one row. */
static void one_changed(struct db_tx *t, const struct db_rows *r)
{
    if (t->err == AS_OK && r->changed != 1)
        db_refuse(t, AS_ERR_NOT_FOUND);
}

enum as_err db_outbox_add(void *impl, const struct outbox_row *m,
                          int64_t stale_before)
{
    struct db_rows r;
    struct db_tx t;

    if (!m->kind || !m->recipient)
        return AS_ERR_BAD_REQUEST;
    db_open(&t, impl, "outbox_add", true, NULL);
    DB_RUN(&t, &sql[M_ADD], &r, db_text(m->id), db_text(m->user_id),
           db_text(m->kind), db_text(m->recipient),
           db_blob(m->seed, REPO_SEED_LEN), db_int(m->created_at));
    /* The same statement whatever the recipient, in the same
     * transaction: the outbox stays bounded with no mailer running. */
    DB_RUN(&t, &sql[M_ADD_PRUNE], &r, db_int(stale_before),
           db_int(m->created_at));
    return db_close(&t);
}

/* Whether the user token `k` of mail `m` is for exists (see
 * repo_outbox_resolve()); its id into `user_id`. */
static bool resolve_user(struct db_tx *t, const struct outbox_row *m,
                         const struct ott *k, char user_id[UUID_STR_LEN])
{
    struct db_rows r;

    if (k->purpose == OTT_VERIFY)
        DB_RUN(t, &sql[M_VERIFY_USER], &r, db_text(m->recipient),
               db_text(m->user_id));
    else
        DB_RUN(t, &sql[M_RESET_USER], &r, db_text(m->recipient));
    if (r.n != 1)
        return false;
    db_id(t, db_at(&r, 0, 0), user_id);
    return t->err == AS_OK;
}

/* The count that mail `m` (with link token `k`, or a notice) is held
 * to: its recipient's key, into `key` (MAIL_ADDR_MAX + 1 bytes), and
 * its slot (see NOTICE_SLOT_MS); false when the recipient has no key.
 * Link mails are counted per mailbox: a+1@x and a+2@x are a@x's inbox,
 * and anyone may register them. So are notices to a subaddress nobody
 * had verified: one account moving through a+1@x, a+2@x, ... sent a@x a
 * notice per tag. Other notices are counted per address as written, in
 * slots of their own: counted per mailbox with the others, five accounts
 * registered as a+k@x and moved held back the notice of a@x's own
 * account. Only a@x's owner can verify a+k@x, and while an account is
 * a@x no other can be. */
static bool count_of(const struct outbox_row *m, const struct ott *k,
                     char *key, int64_t *slot)
{
    bool keyed = mail_cap_key(m->recipient, key, MAIL_ADDR_MAX + 1);

    *slot = 0;
    if (k || !keyed)
        return keyed;
    *slot = m->kind && strcmp(m->kind, MAIL_KIND_PASSKEY_ADDED) == 0
                ? PASSKEY_SLOT_MS
                : NOTICE_SLOT_MS;
    if (!m->to_verified && strcmp(key, m->recipient) != 0)
        *slot += UNPROVEN_SLOTS_MS;
    else
        snprintf(key, MAIL_ADDR_MAX + 1, "%s", m->recipient);
    return true;
}

/* Appends `n` bytes of `s` to `out` (at *len, `cap` bytes) escaped for
 * LIKE ... ESCAPE '!' (a backslash reads as one only where PostgreSQL's
 * standard_conforming_strings is on); false when it does not fit. */
static bool like_escaped(char *out, size_t cap, size_t *len, const char *s,
                         size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (*len + 3 > cap)
            return false;
        if (s[i] == '!' || s[i] == '%' || s[i] == '_')
            out[(*len)++] = '!';
        out[(*len)++] = s[i];
    }
    out[*len] = '\0';
    return true;
}

/* Whether a notice of `m`'s kind about its account is held already to
 * its address, or (slot past UNPROVEN_SLOTS_MS) to a subaddress of its
 * mailbox `key` (count_of()). */
static bool held_already(struct db_tx *t, const struct outbox_row *m,
                         const char *key, int64_t slot)
{
    char like[2 * MAIL_ADDR_MAX + 8];
    const char *at = strrchr(key, '@');
    struct db_rows r;
    size_t len = 0;

    if (slot <= UNPROVEN_SLOTS_MS)
        return !DB_RUN(t, &sql[M_NOTICE_HELD], &r, db_text(m->recipient),
                       db_text(m->kind), db_text(m->id),
                       db_text(m->user_id)) ||
               r.n != 0;
    if (!at || !like_escaped(like, sizeof like, &len, key,
                             (size_t)(at - key)) ||
        !like_escaped(like, sizeof like, &len, "+", 1) ||
        len + 2 > sizeof like)
        return true;
    like[len++] = '%';
    like[len] = '\0';
    if (!like_escaped(like, sizeof like, &len, at, strlen(at)))
        return true;
    return !DB_RUN(t, &sql[M_NOTICE_HELD_UNPROVEN], &r, db_text(m->kind),
                   db_text(m->id), db_text(m->user_id), db_text(like)) ||
           r.n != 0;
}

/* Whether one more mail counted under `key` and `slot` (count_of()) at
 * `now` stays within `cap` in the last hour, counting it when it does
 * and `counts` (it goes out). Mails held back are not counted: requests
 * past the cap cannot keep an address shut for good; nor are mails to
 * no account (a reset asked for an address before its owner registers),
 * which would keep its owner's verification mail from going out. The
 * statements are the same. */
static bool within_cap(struct db_tx *t, const char *key, int64_t slot,
                       int64_t now, unsigned cap, bool counts)
{
    struct db_rows r;
    int64_t sent = 0;

    DB_RUN(t, &sql[M_COUNT_LOCK], &r, db_text(key), db_int(slot));
    if (DB_RUN(t, &sql[M_COUNT_SUM], &r, db_text(key),
               db_int(now - WINDOW_MS), db_int(slot)) && r.n == 1)
        sent = db_i64(db_at(&r, 0, 0));
    if (t->err != AS_OK || sent >= (int64_t)cap)
        return false;
    DB_RUN(t, &sql[M_COUNT], &r, db_text(key),
           db_int(now - now % MINUTE_MS + slot), db_int(counts ? 1 : 0));
    return t->err == AS_OK;
}

/* Holds notice `m`, past the cap of its kind (`slot`) at `now`, until
 * the oldest mail of that count leaves the hour, rather than dropping
 * it: dropped, it let whoever holds an access token add five throwaway
 * passkeys and then the one to keep, whose notice never went. Unless
 * another notice of its kind about the same account to the same address
 * (to an address not verified: mailbox) is held already: that one stands
 * for it (a notice says what happened, not when nor which), so a flood
 * holds one row per kind, account and address (or mailbox), and the
 * owner hears of every change, at most one mail past the cap. True when
 * held. */
static bool notice_hold(struct db_tx *t, const struct outbox_row *m,
                        const char *key, int64_t slot, int64_t now)
{
    struct db_rows r;
    int64_t oldest = 0;

    if (held_already(t, m, key, slot))
        return false;
    if (DB_RUN(t, &sql[M_COUNT_OLDEST], &r, db_text(key),
               db_int(now - WINDOW_MS), db_int(slot)) && r.n == 1)
        oldest = db_i64(db_at(&r, 0, 0));          /* NULL reads as 0 */
    if (t->err != AS_OK || oldest <= 0)
        return false;
    DB_RUN(t, &sql[M_DEFER], &r, db_text(m->id),
           db_int(oldest + WINDOW_MS));
    return t->err == AS_OK && r.changed == 1;
}

/* Stores token `k` (when there is one) of `user_id` and marks mail `m`
 * resolved; AS_ERR_NOT_FOUND when the mail went (or, with a link, was
 * resolved) meanwhile. */
static void resolve_store(struct db_tx *t, const struct outbox_row *m,
                          const struct ott *k, const char *user_id)
{
    struct db_rows r;

    if (k)
        DB_RUN(t, &sql[M_TOKEN_ADD], &r, hash_arg(k->hash),
               db_text(user_id),
               db_text(k->purpose == OTT_VERIFY ? "verify" : "reset"),
               db_text(m->recipient), db_int(k->created_at),
               db_int(k->expires_at));
    if (k)
        DB_RUN(t, &sql[M_RESOLVED], &r, db_text(m->id), db_text(user_id),
               db_int(k->expires_at));
    else
        DB_RUN(t, &sql[M_NOTICE_READY], &r, db_text(m->id),
               db_text(user_id));
    one_changed(t, &r);
}

enum as_err db_outbox_resolve(void *impl, const struct outbox_row *m,
                              const struct ott *k, unsigned cap,
                              int64_t now, enum outbox_fate *fate,
                              char user_id[UUID_STR_LEN])
{
    char key[MAIL_ADDR_MAX + 1];
    struct db_rows r;
    struct db_tx t;
    bool found, capped, keyed;
    int64_t slot;
    enum as_err err;

    user_id[0] = '\0';
    *fate = OUTBOX_NO_USER;
    if (!m->recipient || (!k && !m->user_id) ||
        (m->user_id && strlen(m->user_id) >= UUID_STR_LEN))
        return AS_ERR_BAD_REQUEST;
    keyed = count_of(m, k, key, &slot);
    db_open(&t, impl, "outbox_resolve", true, NULL);
    if (!k)
        snprintf(user_id, UUID_STR_LEN, "%s", m->user_id);
    /* The same statements whether or not the user exists: the lookup,
     * then the count, then the decision. A mail without a link (a
     * notice) has a count of its own, which link mails do not raise. */
    found = !k || resolve_user(&t, m, k, user_id);
    capped = !keyed || !within_cap(&t, key, slot, now, cap, found);
    if (t.err == AS_OK)
        *fate = !found ? OUTBOX_NO_USER
                       : capped ? OUTBOX_CAPPED : OUTBOX_READY;
    if (*fate == OUTBOX_CAPPED && !k && cap > 0 && keyed &&
        notice_hold(&t, m, key, slot, now))
        *fate = OUTBOX_HELD;
    if (*fate == OUTBOX_READY)
        resolve_store(&t, m, k, user_id);
    else if (*fate != OUTBOX_HELD)
        DB_RUN(&t, &sql[M_DROP], &r, db_text(m->id));
    err = none_if_invalid(db_close(&t), AS_ERR_BAD_REQUEST);
    if (err != AS_OK) {
        user_id[0] = '\0';
        *fate = OUTBOX_NO_USER;
    }
    return err;
}

enum as_err db_outbox_drop(void *impl, const char *id)
{
    struct db_rows r;
    struct db_tx t;

    if (!id)
        return AS_OK;
    db_open(&t, impl, "outbox_drop", true, NULL);
    DB_RUN(&t, &sql[M_DROP], &r, db_text(id));
    return none_if_invalid(db_close(&t), AS_OK);
}

enum as_err db_ott_reset_user(void *impl, const uint8_t hash[REPO_HASH_LEN],
                              int64_t now, struct user *out,
                              struct arena *a)
{
    struct db_rows r;
    struct db_tx t;

    db_open(&t, impl, "ott_reset_user", false, a);
    if (DB_RUN(&t, &sql[M_RESET_FIND], &r, hash_arg(hash), db_int(now)) &&
        r.n != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    if (t.err == AS_OK)              /* `out` untouched otherwise */
        db_read_user(&t, &r, 0, out);
    return db_close(&t);
}

/* Consumes the other unused tokens of `purpose` (NULL: all) of
 * `user_id`. */
static void retire(struct db_tx *t, const char *user_id, const char *purpose,
                   int64_t now)
{
    struct db_rows r;

    DB_RUN(t, &sql[M_RETIRE], &r, db_text(user_id), db_int(now),
           db_text(purpose));
}

void db_links_end(struct db_tx *t, const char *user_id, const char *purpose,
                  bool requests, const char *address, int64_t now)
{
    struct db_rows r;

    retire(t, user_id, purpose, now);
    if (requests)
        DB_RUN(t, &sql[M_DROP_REQUESTS], &r, db_text(user_id),
               db_text(address));
    if (requests && !purpose)
        DB_RUN(t, &sql[M_DROP_VERIFY_REQUESTS], &r, db_text(user_id));
}

enum as_err db_ott_reset(void *impl, const uint8_t hash[REPO_HASH_LEN],
                         const char *user_id, const char *pw_hash,
                         bool drop_factors, int64_t now)
{
    struct db_rows r;
    struct db_tx t;

    if (!user_id)
        return AS_ERR_NOT_FOUND;
    if (!pw_hash)
        return AS_ERR_BAD_REQUEST;
    db_open(&t, impl, "ott_reset", true, NULL);
    /* Concurrent resets of one user, whichever link they use, queue on
     * the user's row; the losers then find their link used (or retired)
     * and change nothing. */
    DB_RUN(&t, &sql[M_LOCK_USER], &r, db_text(user_id));
    DB_RUN(&t, &sql[M_TOKEN_USE], &r, hash_arg(hash), db_int(now),
           db_text(user_id));
    one_changed(&t, &r);
    DB_RUN(&t, &sql[M_SET_PW], &r, db_text(user_id), db_text(pw_hash),
           db_int(now), hash_arg(hash));
    one_changed(&t, &r);
    DB_RUN(&t, &sql[M_REVOKE_ALL], &r, db_text(user_id), db_int(now));
    if (drop_factors) {
        DB_RUN(&t, &sql[M_DROP_PASSKEYS], &r, db_text(user_id));
        DB_RUN(&t, &sql[M_DROP_MFA], &r, db_text(user_id));
        DB_RUN(&t, &sql[M_DROP_CODES], &r, db_text(user_id));
    }
    db_mfa_tokens_end(&t, user_id);
    db_links_end(&t, user_id, "reset", true, NULL, now);
    return none_if_invalid(db_close(&t), AS_ERR_NOT_FOUND);
}

enum as_err db_ott_verify(void *impl, const uint8_t hash[REPO_HASH_LEN],
                          int64_t now, char user_id[UUID_STR_LEN])
{
    struct db_rows r;
    struct db_tx t;
    enum as_err err;

    user_id[0] = '\0';
    db_open(&t, impl, "ott_verify", true, NULL);
    /* The user's row before the token's (lock order): concurrent uses of
     * the user's links queue there, and the losers find theirs retired. */
    DB_RUN(&t, &sql[M_LOCK_VERIFY], &r, hash_arg(hash));
    if (DB_RUN(&t, &sql[M_VERIFY_USE], &r, hash_arg(hash), db_int(now)) &&
        r.n != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    if (t.err == AS_OK)
        db_id(&t, db_at(&r, 0, 0), user_id);
    DB_RUN(&t, &sql[M_SET_VERIFIED], &r, db_text(user_id), db_int(now),
           hash_arg(hash));
    one_changed(&t, &r);
    retire(&t, user_id, "verify", now);
    err = db_close(&t);
    if (err != AS_OK)
        user_id[0] = '\0';
    return err;
}

enum as_err db_outbox_claim(void *impl, int64_t now, int64_t lease_until,
                            struct outbox_row *out, struct arena *a)
{
    const struct db_val *seed;
    struct db_rows r;
    struct db_tx t;

    memset(out, 0, sizeof *out);
    db_open(&t, impl, "outbox_claim", true, a);
    if (DB_RUN(&t, &sql[M_CLAIM], &r, db_int(now), db_int(lease_until)) &&
        r.n != 1)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    if (t.err == AS_OK) {
        db_id(&t, db_at(&r, 0, 0), out->id);
        out->kind = db_str(db_at(&r, 0, 1));
        out->recipient = db_str(db_at(&r, 0, 2));
        out->user_id = db_str(db_at(&r, 0, 3));
        seed = db_at(&r, 0, 4);
        if (!seed->null && seed->type == DB_BLOB &&
            seed->len == REPO_SEED_LEN)
            out->seed = seed->b;         /* otherwise: no link */
        out->resolved = db_flag(db_at(&r, 0, 5));
        out->expires_at = db_i64(db_at(&r, 0, 6));
        out->created_at = db_i64(db_at(&r, 0, 7));
        out->attempts = db_i64(db_at(&r, 0, 8));
        out->to_verified = db_flag(db_at(&r, 0, 9));
    }
    return db_close(&t);
}

enum as_err db_outbox_sent(void *impl, const char *id, int64_t now)
{
    struct db_rows r;
    struct db_tx t;

    if (!id)
        return AS_OK;
    db_open(&t, impl, "outbox_sent", true, NULL);
    DB_RUN(&t, &sql[M_SENT], &r, db_text(id), db_int(now));
    return none_if_invalid(db_close(&t), AS_OK);
}

/* One try of repo_outbox_failed() with error text `error`. */
static enum as_err mark_failed(void *impl, const char *id, int64_t next_at,
                               const char *error)
{
    struct db_rows r;
    struct db_tx t;

    db_open(&t, impl, "outbox_failed", true, NULL);
    DB_RUN(&t, &sql[M_FAILED], &r, db_text(id), db_int(next_at),
           db_text(error));
    return db_close(&t);
}

enum as_err db_outbox_failed(void *impl, const char *id, int64_t next_at,
                             const char *error)
{
    enum as_err err;

    if (!id)
        return AS_OK;
    err = mark_failed(impl, id, next_at, error ? error : FAILED_TEXT);
    /* A text PostgreSQL cannot store (not UTF-8, say from a mail server)
     * is kept as the plain one. */
    if (err == AS_ERR_VALIDATION)
        err = mark_failed(impl, id, next_at, FAILED_TEXT);
    return none_if_invalid(err, AS_OK);
}

enum as_err db_mail_prune(void *impl, int64_t tokens_before,
                          int64_t sent_before, int64_t stale_before)
{
    /* A batch a transaction: an hour's worth of mail (a burst of
     * registrations leaves it by the hundred thousand) deleted in one
     * held SQLite's write lock for seconds, and every other write
     * waited on it or answered 503. */
    static const int st[] = { M_PRUNE_TOKENS, M_PRUNE_SENT, M_PRUNE_STALE,
                              M_PRUNE_COUNTS };
    const int64_t before[] = { tokens_before, sent_before, stale_before,
                               stale_before };
    enum as_err err = AS_OK;
    size_t i;

    for (i = 0; err == AS_OK && i < sizeof st / sizeof st[0]; i++)
        err = db_run_batches(impl, "mail_prune", NULL, &sql[st[i]],
                             db_int(before[i]), PRUNE_BATCH);
    return err;
}
