/* users.c: the users area of the repository, written once for both
 * backends over the driver (driver.h): its statements and its flows
 * (what runs in which transaction, what a result means). The last-admin
 * rule lives here. */
#include "flows.h"

#include <stdio.h>
#include <string.h>

#include "repo_int.h"

/* Before a change: whether user $1 is an active admin, whether active,
 * and its email. */
#define USER_FLAGS                                                         \
    "SELECT role = 'admin' AND is_active, is_active, email, is_verified "  \
    "FROM users WHERE id = $1"
#define LIST_WHERE "WHERE ($1 IS NULL OR id > $1) AND ($2 IS NULL "

/* Rows of an account an account's deletion sheds a transaction. */
#define SHED_BATCH 512
#define SHED_ROWS "512"
/* An account whose live sessions hold more refresh tokens than this is
 * ended before it is shed (db_user_delete()); fewer go in one
 * transaction with the account (SQLite: about 0.15 s of its write lock
 * at most). */
#define CASCADE_MAX 20000
#define CASCADE_ROWS "20001"

enum {
    U_INSERT, U_BY_ID, U_BY_EMAIL, U_LOCK_ADMINS, U_BEFORE_PATCH,
    U_BEFORE_DELETE, U_PATCH, U_NOTICE, U_SET_PW,
    U_REHASH, U_DELETE, U_DELETE_ENDED, U_END, U_LIST, U_COUNT,
    U_ADMIN_COUNT, U_SHED_SESSIONS, U_SHED_ENDED_TOKENS, U_CASCADE_ROWS,
    U_NSTMT
};

_Static_assert(UF_EMAIL == 1 && UF_FULL_NAME == 2 && UF_ROLE == 4 &&
                   UF_ACTIVE == 8 && UF_VERIFIED == 16,
               "the bits tested in the SQL of U_PATCH");

static struct db_stmt sql[U_NSTMT] = {
    [U_INSERT] = DB_SQL("INSERT INTO users (" USER_COLS ") "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, "
                        "CASE WHEN $7 THEN $8 END)"),
    [U_BY_ID] = DB_SQL("SELECT " USER_COLS USER_MFA_COL " FROM users "
                       "WHERE id = $1"),
    [U_BY_EMAIL] = DB_SQL("SELECT " USER_COLS USER_MFA_COL " FROM users "
                          "WHERE email = $1"),
    /* Lock order. Every PostgreSQL transaction takes its row locks in
     * this order, and may skip a step: (1) the active admin rows, in id
     * order, where the last admin is at stake; (2) the user's row; (3)
     * its sessions; (4) the refresh tokens of a session, the user's
     * one-time tokens and outbox rows. A transaction that starts from a
     * token locks the row above it first, so two requests on one user
     * queue on one row instead of each holding a token the other needs.
     * A write for a signed-in caller begins with (1), or (2) of the
     * caller, then the caller's session (src/repo/driver.c).
     * What still deadlocks is retried by src/repo/repo.c, as a whole.
     * NO KEY UPDATE serialises every change to admins yet lets logins
     * (foreign-key KEY SHARE) pass; a demotion that commits first drops
     * its row from the set (READ COMMITTED rechecks it). */
    [U_LOCK_ADMINS] = DB_LOCK_ADMINS,
    [U_BEFORE_PATCH] = DB_SPLIT(USER_FLAGS,
                                USER_FLAGS " FOR NO KEY UPDATE"),
    [U_BEFORE_DELETE] = DB_SPLIT(USER_FLAGS, USER_FLAGS " FOR UPDATE"),
    /* Every column is written only when $2 names it (enum user_field
     * bits), from the row as it is now, never from an earlier read. */
    [U_PATCH] = DB_SQL(
        "UPDATE users SET "
        "email = CASE WHEN $2 & 1 <> 0 THEN $3 ELSE email END, "
        "full_name = CASE WHEN $2 & 2 <> 0 THEN $4 ELSE full_name END, "
        "role = CASE WHEN $2 & 4 <> 0 THEN $5 ELSE role END, "
        "is_active = CASE WHEN $2 & 8 <> 0 THEN $6 ELSE is_active END, "
        "is_verified = CASE WHEN $2 & 16 <> 0 THEN $7 "
        "WHEN $2 & 1 <> 0 AND $3 <> email THEN false "
        "ELSE is_verified END, "
        "verified_at = CASE WHEN $2 & 16 <> 0 AND $7 "
        "THEN coalesce(verified_at, $8) ELSE verified_at END, "
        "updated_at = $8 WHERE id = $1 RETURNING " USER_COLS USER_MFA_COL),
    /* $6: whether the address it leaves was verified (migration 0019). */
    [U_NOTICE] = DB_SQL("INSERT INTO outbox (id, user_id, kind, recipient, "
                        "resolved, created_at, next_attempt_at, "
                        "to_verified) "
                        "VALUES ($1, $2, $3, $4, true, $5, $5, $6)"),
    /* Another password counts password_gen up (migration 0015); a new
     * hash of the same password leaves it. */
    [U_SET_PW] = DB_SQL("UPDATE users SET password_hash = $2, "
                        "password_gen = password_gen + 1, "
                        "updated_at = $3 WHERE id = $1"),
    [U_REHASH] = DB_SQL("UPDATE users SET password_hash = $3 "
                        "WHERE id = $1 AND password_hash = $2"),
    [U_DELETE] = DB_SQL("DELETE FROM users WHERE id = $1"),
    /* The last step of a deletion decided before (end_account()): only
     * while the account is still ended. Reactivated meanwhile (and
     * perhaps made an admin), it is a later decision's, and stays. */
    [U_DELETE_ENDED] = DB_SQL("DELETE FROM users WHERE id = $1 "
                              "AND NOT is_active"),
    /* A deletion's decision: the account can no longer sign in. */
    [U_END] = DB_SQL("UPDATE users SET is_active = $3, updated_at = $2 "
                     "WHERE id = $1"),
    /* Before the decision, only what answers alike whether it is there
     * or not: the tokens of ended sessions (a refresh or a replay of one
     * is refused 401 and ends nothing either way). */
    [U_SHED_ENDED_TOKENS] = DB_SPLIT(
        "DELETE FROM refresh_tokens WHERE hash IN (SELECT t.hash FROM "
        "sessions s JOIN refresh_tokens t ON t.session_id = s.id "
        "WHERE s.user_id = $1 AND s.revoked_at IS NOT NULL "
        "LIMIT " SHED_ROWS ")",
        "DELETE FROM refresh_tokens WHERE hash IN (SELECT t.hash FROM "
        "sessions s JOIN refresh_tokens t ON t.session_id = s.id "
        "WHERE s.user_id = $1 AND s.revoked_at IS NOT NULL "
        "LIMIT " SHED_ROWS " FOR UPDATE OF t SKIP LOCKED)"),
    /* What the deletion's cascade would still take, up to CASCADE_MAX + 1 */
    [U_CASCADE_ROWS] = DB_SQL(
        "SELECT count(*) FROM (SELECT 1 FROM sessions s JOIN refresh_tokens "
        "t ON t.session_id = s.id WHERE s.user_id = $1 LIMIT " CASCADE_ROWS
        ") x"),
    /* What an account's deletion sheds, SHED_ROWS rows a transaction,
     * after the tokens its ended sessions hold (U_SHED_ENDED_TOKENS):
     * those sessions. On PostgreSQL rows another transaction holds are
     * skipped: the deletion takes them. */
    [U_SHED_SESSIONS] = DB_SPLIT(
        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions "
        "WHERE user_id = $1 AND revoked_at IS NOT NULL "
        "LIMIT " SHED_ROWS ")",
        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions "
        "WHERE user_id = $1 AND revoked_at IS NOT NULL "
        "LIMIT " SHED_ROWS " FOR UPDATE SKIP LOCKED)"),
    [U_LIST] = DB_SPLIT(
        "SELECT " USER_COLS USER_MFA_COL " FROM users " LIST_WHERE
        "OR instr(lower(email), lower($2)) > 0 "
        "OR instr(lower(full_name), lower($2)) > 0) ORDER BY id LIMIT $3",
        "SELECT " USER_COLS USER_MFA_COL " FROM users " LIST_WHERE
        "OR strpos(lower(email), lower($2)) > 0 "
        "OR strpos(lower(coalesce(full_name, '')), lower($2)) > 0) "
        "ORDER BY id LIMIT $3"),
    [U_COUNT] = DB_SQL("SELECT count(*) FROM users"),
    [U_ADMIN_COUNT] = DB_SQL("SELECT count(*) FROM users "
                             "WHERE role = 'admin' AND is_active"),
};

void db_read_user(struct db_tx *t, const struct db_rows *r, size_t i,
                  struct user *u)
{
    memset(u, 0, sizeof *u);
    db_id(t, db_at(r, i, 0), u->id);
    u->email = db_str(db_at(r, i, 1));
    u->full_name = db_str(db_at(r, i, 2));
    u->password_hash = db_str(db_at(r, i, 3));
    u->role = repo_role_parse(db_str(db_at(r, i, 4)));
    u->is_active = db_flag(db_at(r, i, 5));
    u->is_verified = db_flag(db_at(r, i, 6));
    u->created_at = db_i64(db_at(r, i, 7));
    u->updated_at = db_i64(db_at(r, i, 8));
    u->password_gen = db_i64(db_at(r, i, 9));
    u->verified_at = db_i64(db_at(r, i, 10));   /* NULL reads as 0 */
    if (r->cols > USER_NCOLS)
        u->mfa_enabled = db_flag(db_at(r, i, USER_NCOLS));
}

/* Text PostgreSQL refuses to store (not UTF-8) was never stored: a
 * lookup of it finds nothing. */
static enum as_err none_if_invalid(enum as_err err, enum as_err none)
{
    return err == AS_ERR_VALIDATION ? none : err;
}

/* AS_ERR_LAST_ADMIN unless an active admin remains. */
static void keep_an_admin(struct db_tx *t)
{
    struct db_rows r;

    if (db_run(t, &sql[U_ADMIN_COUNT], NULL, 0, &r) &&
        db_i64(db_at(&r, 0, 0)) == 0)
        db_refuse(t, AS_ERR_LAST_ADMIN);
}

enum as_err db_user_insert(void *impl, const struct user *u)
{
    const char *role = role_name(u->role);
    struct db_rows r;
    struct db_tx t;

    if (!role || !u->email || !u->password_hash)
        return AS_ERR_BAD_REQUEST;
    db_open(&t, impl, "user_insert", true, NULL);
    DB_RUN(&t, &sql[U_INSERT], &r, db_text(u->id), db_text(u->email),
           db_text(u->full_name), db_text(u->password_hash), db_text(role),
           db_bool(u->is_active), db_bool(u->is_verified),
           db_int(u->created_at), db_int(u->updated_at));
    return db_close(&t);
}

static void found_user(struct db_tx *t, const struct db_rows *r, void *ctx)
{
    struct repo_user_read *read = ctx;

    if (r->n > 0) {
        db_read_user(t, r, 0, read->out);
        read->found = true;
    }
}

void db_user_note_by_email(struct db_tx *t, const char *email,
                           struct repo_user_read *read)
{
    read->found = false;
    DB_NOTE(t, &sql[U_BY_EMAIL], found_user, read, db_text(email));
}

/* The one user that statement `st` (bound to `key`) finds. */
static enum as_err user_get(void *impl, int st, const char *key,
                            const char *op, struct user *out,
                            struct arena *a)
{
    struct db_rows r;
    struct db_tx t;

    if (!key)
        return AS_ERR_NOT_FOUND;
    db_open(&t, impl, op, false, a);
    if (DB_RUN(&t, &sql[st], &r, db_text(key)) && r.n == 0)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    if (r.n > 0)
        db_read_user(&t, &r, 0, out);
    return none_if_invalid(db_close(&t), AS_ERR_NOT_FOUND);
}

enum as_err db_user_by_id(void *impl, const char *id, struct user *out,
                          struct arena *a)
{
    return user_get(impl, U_BY_ID, id, "user_by_id", out, a);
}

enum as_err db_user_by_email(void *impl, const char *email,
                             struct user *out, struct arena *a)
{
    return user_get(impl, U_BY_EMAIL, email, "user_by_email", out, a);
}

enum as_err db_user_patch(void *impl, const char *id,
                          const struct user_patch *p, int64_t now,
                          struct user *out, struct arena *a)
{
    const char *role = role_name(p->role);
    bool demotes = ((p->set & UF_ROLE) && p->role != ROLE_ADMIN) ||
                   ((p->set & UF_ACTIVE) && !p->is_active);
    char old_email[REPO_EMAIL_MAX + 1] = "";
    bool was_admin = false, was_active = false, was_verified = false;
    bool is_active, is_admin;
    const char *email;
    struct db_rows b, r;
    struct db_tx t;

    if (!id)
        return AS_ERR_NOT_FOUND;
    if (((p->set & UF_ROLE) && !role) || ((p->set & UF_EMAIL) && !p->email)
        || (out && !a))
        return AS_ERR_BAD_REQUEST;
    db_open(&t, impl, "user_patch", true, a);
    if (demotes)
        db_run(&t, &sql[U_LOCK_ADMINS], NULL, 0, &r);
    if (DB_RUN(&t, &sql[U_BEFORE_PATCH], &b, db_text(id)) && b.n == 0)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    if (t.err == AS_OK) {
        was_admin = db_flag(db_at(&b, 0, 0));
        was_active = db_flag(db_at(&b, 0, 1));
        was_verified = db_flag(db_at(&b, 0, 3));
        snprintf(old_email, sizeof old_email, "%s",
                 db_str(db_at(&b, 0, 2)) ? db_str(db_at(&b, 0, 2)) : "");
    }
    if (DB_RUN(&t, &sql[U_PATCH], &r, db_text(id), db_int((int64_t)p->set),
               db_text(p->email), db_text(p->full_name),
               db_text(role ? role : "user"), db_bool(p->is_active),
               db_bool(p->is_verified), db_int(now)) && r.n == 0)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    if (t.err == AS_OK) {
        is_active = db_flag(db_at(&r, 0, 5));
        is_admin = is_active &&
                   repo_role_parse(db_str(db_at(&r, 0, 4))) == ROLE_ADMIN;
        email = db_str(db_at(&r, 0, 1));
        if (was_admin && !is_admin)
            keep_an_admin(&t);
        if (was_active && !is_active) {
            /* nothing of before comes back with a reactivation */
            db_revoke_sessions(&t, id, NULL, now);
            db_links_end(&t, id, NULL, true, NULL, now);
        }
        if (email && strcmp(email, old_email) != 0) {
            if (p->email_notice)
                DB_RUN(&t, &sql[U_NOTICE], &b,
                       db_text(p->email_notice->id), db_text(id),
                       db_text(p->email_notice->kind), db_text(old_email),
                       db_int(p->email_notice->created_at),
                       db_bool(was_verified));
            /* Links checked the address only: after X -> Y -> X, X's old
             * links, and a request to X queued before, worked again. */
            db_links_end(&t, id, NULL, true, old_email, now);
            db_login_failures_carry(&t, old_email, email, p->carry_ip);
        }
        if (p->set & UF_MFA_OFF)
            db_mfa_end(&t, id, p->mfa_was_on);
        if (out)
            db_read_user(&t, &r, 0, out);
        if (out && (p->set & UF_MFA_OFF))
            out->mfa_enabled = false;       /* read before the end */
    }
    return none_if_invalid(db_close(&t), AS_ERR_VALIDATION);
}

enum as_err db_user_set_password(void *impl, const char *id,
                                 const char *hash, const char *keep_sid,
                                 int64_t now)
{
    struct db_rows r;
    struct db_tx t;

    if (!id)
        return AS_ERR_NOT_FOUND;
    if (!hash)
        return AS_ERR_BAD_REQUEST;
    /* In the one lock order: the user row, its sessions, then its mail
     * tokens (earlier reset links retire). */
    db_open(&t, impl, "user_set_password", true, NULL);
    if (DB_RUN(&t, &sql[U_SET_PW], &r, db_text(id), db_text(hash),
               db_int(now)) && r.changed == 0)
        db_refuse(&t, AS_ERR_NOT_FOUND);
    db_revoke_sessions(&t, id, keep_sid, now);
    db_links_end(&t, id, "reset", true, NULL, now);
    return db_close(&t);
}

enum as_err db_user_rehash(void *impl, const char *id, const char *old,
                           const char *hash)
{
    struct db_rows r;
    struct db_tx t;

    if (!old || !hash)
        return AS_ERR_BAD_REQUEST;
    db_open(&t, impl, "user_rehash", true, NULL);
    if (DB_RUN(&t, &sql[U_REHASH], &r, db_text(id), db_text(old),
               db_text(hash)) && r.changed == 0)
        db_refuse(&t, AS_ERR_CONFLICT);
    return none_if_invalid(db_close(&t), AS_ERR_CONFLICT);
}

/* Opens `t`, a deletion's checked transaction (as any write of the
 * caller), with the active admins and user `id` locked in the lock
 * order; true when `id` is an active admin (the last-admin rule's). */
static bool deletion_open(struct db_tx *t, void *impl, const char *id)
{
    struct db_rows r;

    db_open(t, impl, "user_delete", true, NULL);
    db_run(t, &sql[U_LOCK_ADMINS], NULL, 0, &r);
    if (DB_RUN(t, &sql[U_BEFORE_DELETE], &r, db_text(id)) && r.n == 0)
        db_refuse(t, AS_ERR_NOT_FOUND);
    return t->err == AS_OK && db_flag(db_at(&r, 0, 0));
}

/* Deletes user `id` in one transaction, checked as any write of the
 * caller: sessions and refresh tokens go by cascade. */
static enum as_err delete_at_once(void *impl, const char *id)
{
    struct db_rows r;
    struct db_tx t;
    bool was_admin = deletion_open(&t, impl, id);

    DB_RUN(&t, &sql[U_DELETE], &r, db_text(id));
    if (was_admin)
        keep_an_admin(&t);
    return none_if_invalid(db_close(&t), AS_ERR_NOT_FOUND);
}

/* Ends user `id` at `now` (deactivated, every session revoked and every
 * link ended, each announced to the other instances as such), checked as
 * any write of the caller, with the last-admin rule: the decision of a
 * deletion too large for one transaction. */
static enum as_err end_account(void *impl, const char *id, int64_t now)
{
    struct db_rows r;
    struct db_tx t;
    bool was_admin = deletion_open(&t, impl, id);

    DB_RUN(&t, &sql[U_END], &r, db_text(id), db_int(now), db_bool(false));
    if (was_admin)
        keep_an_admin(&t);
    db_revoke_sessions(&t, id, NULL, now);
    db_links_end(&t, id, NULL, true, NULL, now);
    return none_if_invalid(db_close(&t), AS_ERR_NOT_FOUND);
}

/* Deletes what user `id`'s ended sessions hold, then those sessions,
 * SHED_BATCH rows a transaction. */
static enum as_err shed_ended(void *impl, const char *id)
{
    enum as_err err = db_run_batches(impl, "user_delete_shed", NULL,
                                     &sql[U_SHED_ENDED_TOKENS], db_text(id),
                                     SHED_BATCH);

    if (err == AS_OK)
        err = db_run_batches(impl, "user_delete_shed", NULL,
                             &sql[U_SHED_SESSIONS], db_text(id),
                             SHED_BATCH);
    return err;
}

enum as_err db_user_delete(void *impl, const char *id, int64_t now)
{
    const struct repo_actor *who;
    struct db_rows r;
    struct db_tx t;
    int64_t rows = 0;
    enum as_err err;

    if (!id)
        return AS_ERR_NOT_FOUND;
    /* What the cascade would delete in one statement, however much an
     * account gathered (a million rotated-out tokens held SQLite's write
     * lock 7 s, and can outlast PostgreSQL's statement timeout, so the
     * account could never be deleted), goes in bounded batches. Before
     * the decision only what no answer tells from gone: the tokens of
     * its ended sessions, then those sessions. Shedding the rotated-out
     * tokens of live sessions first cost a refused deletion (the caller
     * demoted, the target become the last admin meanwhile) the account's
     * grace retries and replay detection (a review: 28 of 183 refused
     * deletions on PostgreSQL). */
    err = shed_ended(impl, id);
    if (err == AS_OK) {
        db_open(&t, impl, "user_delete_count", false, NULL);
        if (DB_RUN(&t, &sql[U_CASCADE_ROWS], &r, db_text(id)) && r.n == 1)
            rows = db_i64(db_at(&r, 0, 0));
        err = db_close(&t);
    }
    if (err != AS_OK)
        return err;
    /* The usual account: decided and deleted in one transaction, nothing
     * in between to be left by a failure. */
    if (rows <= CASCADE_MAX)
        return delete_at_once(impl, id);
    /* One whose live sessions hold more: decided first, and ended (its
     * sessions revoked), so that nothing shed below can matter any more;
     * then shed (what its ended sessions hold: sessions made after a
     * reactivation meanwhile are not) and deleted as the caller's
     * committed decision, checked against no caller (one that deleted
     * itself has no session left) but only while the account is still
     * ended: reactivated meanwhile, and perhaps made an admin, it stays
     * (AS_ERR_CONFLICT; a review removed the last active admin so when
     * the delete did not look). A failure on the way (503) leaves the
     * account ended, not deleted: an admin's retry finishes it. */
    err = end_account(impl, id, now);
    if (err != AS_OK)
        return err;
    who = db_actor();
    repo_act_as(NULL);
    err = shed_ended(impl, id);
    if (err == AS_OK) {
        /* sessions and refresh tokens left go by cascade */
        db_open(&t, impl, "user_delete", true, NULL);
        if (DB_RUN(&t, &sql[U_DELETE_ENDED], &r, db_text(id)) &&
            r.changed == 0 &&
            DB_RUN(&t, &sql[U_BEFORE_DELETE], &r, db_text(id)))
            db_refuse(&t, r.n ? AS_ERR_CONFLICT : AS_ERR_NOT_FOUND);
        err = none_if_invalid(db_close(&t), AS_ERR_NOT_FOUND);
    }
    repo_act_as(who);
    return err;
}

enum as_err db_user_list(void *impl, const char *q, const char *after,
                         unsigned limit, struct user *out, size_t *n,
                         struct arena *a)
{
    struct db_rows r;
    struct db_tx t;
    size_t i;
    enum as_err err;

    *n = 0;
    if (limit == 0)
        return AS_OK;
    db_open(&t, impl, "user_list", false, a);
    if (DB_RUN(&t, &sql[U_LIST], &r, db_text(after), db_text(q),
               db_int(limit)) && r.n > limit)
        db_refuse(&t, AS_ERR_INTERNAL);
    for (i = 0; t.err == AS_OK && i < r.n; i++)
        db_read_user(&t, &r, i, &out[i]);
    err = db_close(&t);
    if (err == AS_OK)
        *n = r.n;
    return none_if_invalid(err, AS_OK);
}

enum as_err db_user_count(void *impl, bool admins_only, int64_t *out)
{
    struct db_rows r;
    struct db_tx t;

    *out = 0;
    db_open(&t, impl, "user_count", false, NULL);
    if (db_run(&t, &sql[admins_only ? U_ADMIN_COUNT : U_COUNT], NULL, 0, &r)
        && r.n == 1)
        *out = db_i64(db_at(&r, 0, 0));
    return db_close(&t);
}
