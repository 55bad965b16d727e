/* test_repo_mail.c: the repository side of mailed links, on SQLite and,
 * when AUTH_TEST_PG_URL is set, on PostgreSQL (each case in a schema of
 * its own): single-use tokens bound to the user's email, the outbox
 * lease, retries, marking sent, pruning, and races between callers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "cfg.h"
#include "repo.h"
#include "uuid.h"

#define T0 INT64_C(1700000000000)
#define HOUR INT64_C(3600000)
#define MINUTE INT64_C(60000)
#define LEASE INT64_C(60000)
#define DIR_MAX 2048
#define RACERS 8

static const char *pg_url;        /* NULL: the group runs on SQLite */
static unsigned seq;

struct fx {
    struct cfg cfg;
    struct repo *r;
    struct arena *a;
    char dir[DIR_MAX];            /* SQLite: the case's folder */
    char url[4096];
    char schema[48];              /* PostgreSQL: the case's schema */
    PGconn *side;                 /* PostgreSQL: our own view */
    sqlite3 *raw;                 /* SQLite: our own view */
};

/* ---- fixture ----------------------------------------------------------- */

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int open_sqlite(struct fx *f)
{
    const char *base = getenv("AUTH_TEST_TMP");
    char db[DIR_MAX + 16];

    if (!base || !*base)
        base = "/tmp";
    if ((mkdir(base, 0700) != 0 && errno != EEXIST) ||
        snprintf(f->dir, sizeof f->dir, "%s/mail-XXXXXX", base) >= DIR_MAX ||
        !mkdtemp(f->dir))
        return -1;
    snprintf(db, sizeof db, "%s/auth.db", f->dir);
    snprintf(f->url, sizeof f->url, "sqlite:%s", db);
    f->cfg.database_url = f->url;
    if (repo_open(&f->cfg, &f->r) != AS_OK || repo_migrate(f->r) != AS_OK)
        return -1;
    return sqlite3_open(db, &f->raw) == SQLITE_OK ? 0 : -1;
}

static int open_pg(struct fx *f)
{
    char sql[256];
    PGresult *res;
    bool ok;

    snprintf(f->schema, sizeof f->schema, "mail%ld_%u", (long)getpid(),
             ++seq);
    f->side = PQconnectdb(pg_url);
    if (PQstatus(f->side) != CONNECTION_OK)
        return -1;
    PQsetNoticeProcessor(f->side, quiet, NULL);
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; "
             "CREATE SCHEMA %s; SET search_path TO %s", f->schema,
             f->schema, f->schema);
    res = PQexec(f->side, sql);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    snprintf(f->url, sizeof f->url, "%s%soptions=-c%%20search_path%%3D%s",
             pg_url, strchr(pg_url, '?') ? "&" : "?", f->schema);
    f->cfg.database_url = f->url;
    if (!ok || repo_open(&f->cfg, &f->r) != AS_OK ||
        repo_migrate(f->r) != AS_OK)
        return -1;
    return 0;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    *state = f;
    if (!f)
        return -1;
    f->cfg.cb_failure_threshold = 1000;
    f->cfg.cb_open_seconds = 1;
    f->cfg.db_pool_size = RACERS + 2;
    f->cfg.db_timeout_ms = 10000;
    f->a = arena_new();
    if (!f->a)
        return -1;
    return pg_url ? open_pg(f) : open_sqlite(f);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char sql[128];

    if (!f)
        return 0;
    repo_close(f->r);
    if (f->side) {
        snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE",
                 f->schema);
        PQclear(PQexec(f->side, sql));
        PQfinish(f->side);
    }
    sqlite3_close(f->raw);
    if (f->dir[0])
        nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    arena_free(f->a);
    free(f);
    return 0;
}

/* The one integer `sql` (our own text, no outside values) returns. */
static int64_t count(struct fx *f, const char *sql)
{
    int64_t n = -1;

    if (f->side) {
        PGresult *r = PQexec(f->side, sql);

        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        else
            fail_msg("%s: %s", sql, PQerrorMessage(f->side));
        PQclear(r);
    } else {
        sqlite3_stmt *st = NULL;

        assert_int_equal(sqlite3_prepare_v2(f->raw, sql, -1, &st, NULL),
                         SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    return n;
}

/* Text column `col` of outbox row `id` (our own values), in the arena;
 * NULL for SQL NULL. */
static const char *row_text(struct fx *f, const char *col, const char *id)
{
    char sql[200];
    const char *out = NULL;

    snprintf(sql, sizeof sql, "SELECT %s FROM outbox WHERE id = '%s'", col,
             id);
    if (f->side) {
        PGresult *r = PQexec(f->side, sql);

        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
            fail_msg("%s: %s", sql, PQerrorMessage(f->side));
        if (!PQgetisnull(r, 0, 0))
            out = arena_strdup(f->a, PQgetvalue(r, 0, 0));
        PQclear(r);
    } else {
        sqlite3_stmt *st = NULL;

        assert_int_equal(sqlite3_prepare_v2(f->raw, sql, -1, &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        if (sqlite3_column_type(st, 0) != SQLITE_NULL)
            out = arena_strdup(f->a,
                               (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    return out;
}

/* ---- data -------------------------------------------------------------- */

static void new_user(struct fx *f, struct user *u, const char *email)
{
    memset(u, 0, sizeof *u);
    uuid_v7_new(u->id);
    u->email = arena_strdup(f->a, email);
    u->password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$b2xk";
    u->role = ROLE_USER;
    u->is_active = true;
    u->created_at = u->updated_at = T0;
    assert_int_equal(repo_user_insert(f->r, u), AS_OK);
}

static void new_session(struct fx *f, struct session *s, const char *uid)
{
    uint8_t h[REPO_HASH_LEN];

    memset(s, 0, sizeof *s);
    uuid_v7_new(s->id);
    snprintf(s->user_id, sizeof s->user_id, "%s", uid);
    s->created_at = s->last_used_at = T0;
    s->expires_at = T0 + 24 * HOUR;
    randombytes_buf(h, sizeof h);
    assert_int_equal(repo_session_create(f->r, s, h, NULL), AS_OK);
}

/* Queues a mail with a link for `key` (OTT_RESET: an email, as
 * /password/forgot does; OTT_VERIFY: a user id, whose current email is
 * the recipient) at `now`, with id `id` when not NULL. */
static void queue(struct fx *f, enum ott_purpose purpose, const char *key,
                  int64_t now, char *id)
{
    static const uint8_t seed[REPO_SEED_LEN] = { 1, 2, 3 };
    struct outbox_row m = { .created_at = now, .seed = seed };
    struct user u;

    uuid_v7_new(m.id);
    if (id)
        snprintf(id, UUID_STR_LEN, "%s", m.id);
    if (purpose == OTT_RESET) {
        m.kind = "password_reset";
        m.recipient = key;
    } else {
        m.kind = "email_verification";
        m.user_id = key;
        m.recipient = repo_user_by_id(f->r, key, &u, f->a) == AS_OK
                          ? u.email : "nobody@example.com";
    }
    assert_int_equal(repo_outbox_add(f->r, &m, 0), AS_OK);
}

/* Resolves queued mail `id` as the mailer does, with a token of
 * `purpose` (hash random, into `hash` when not NULL) and cap `cap`:
 * AS_OK when it is ready to send, AS_ERR_NOT_FOUND when there is no such
 * user, AS_ERR_RATE_LIMITED past the cap. */
static enum as_err resolve_cap(struct fx *f, const char *id,
                               enum ott_purpose purpose, int64_t now,
                               unsigned cap, uint8_t hash[REPO_HASH_LEN],
                               char *uid)
{
    struct ott t = { .purpose = purpose, .created_at = now,
                     .expires_at = now + HOUR };
    struct outbox_row m;
    char ignored[UUID_STR_LEN];
    enum outbox_fate fate;
    enum as_err err;

    /* the row as a claim would return it */
    memset(&m, 0, sizeof m);
    snprintf(m.id, sizeof m.id, "%s", id);
    m.kind = purpose == OTT_RESET ? "password_reset" : "email_verification";
    m.recipient = row_text(f, "recipient", id);
    m.user_id = row_text(f, "user_id", id);
    randombytes_buf(t.hash, sizeof t.hash);
    if (hash)
        memcpy(hash, t.hash, REPO_HASH_LEN);
    err = repo_outbox_resolve(f->r, &m, &t, cap, now, &fate,
                              uid ? uid : ignored);
    if (err != AS_OK)
        return err;
    return fate == OUTBOX_READY ? AS_OK
           : fate == OUTBOX_CAPPED ? AS_ERR_RATE_LIMITED : AS_ERR_NOT_FOUND;
}

/* Queues and resolves a mail for `key` at `now` (no cap in the way):
 * what one request did before the request and its resolution were
 * split. */
static enum as_err issue(struct fx *f, enum ott_purpose purpose,
                         const char *key, int64_t now,
                         uint8_t hash[REPO_HASH_LEN], char *uid)
{
    char id[UUID_STR_LEN];

    queue(f, purpose, key, now, id);
    return resolve_cap(f, id, purpose, now, 1000, hash, uid);
}

/* ---- tokens ------------------------------------------------------------ */

static void reset_works_once_and_revokes(void **state)
{
    struct fx *f = *state;
    struct user u, got;
    struct session s1, s2;
    struct session_state st;
    uint8_t h[REPO_HASH_LEN], other[REPO_HASH_LEN];
    char uid[UUID_STR_LEN];

    new_user(f, &u, "ada@example.com");
    new_session(f, &s1, u.id);
    new_session(f, &s2, u.id);
    assert_int_equal(issue(f, OTT_RESET, "ada@example.com", T0, h, uid),
                     AS_OK);
    assert_string_equal(uid, u.id);
    assert_int_equal(issue(f, OTT_RESET, "ada@example.com", T0, other, NULL),
                     AS_OK);
    assert_int_equal(issue(f, OTT_RESET, "nobody@example.com", T0, NULL,
                           uid), AS_ERR_NOT_FOUND);
    assert_string_equal(uid, "");
    assert_int_equal(count(f, "SELECT count(*) FROM outbox"), 2);
    assert_int_equal(count(f, "SELECT count(*) FROM one_time_tokens"), 2);

    assert_int_equal(repo_ott_reset_user(f->r, h, T0 + 1, &got, f->a),
                     AS_OK);
    assert_string_equal(got.id, u.id);
    assert_string_equal(got.email, "ada@example.com");
    assert_int_equal(repo_ott_reset(f->r, h, u.id, "$argon2id$new", false,
                                    T0 + 2), AS_OK);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.password_hash, "$argon2id$new");
    assert_int_equal(repo_session_state(f->r, s1.id, T0 + 3, &st), AS_OK);
    assert_false(st.live);
    assert_int_equal(repo_session_state(f->r, s2.id, T0 + 3, &st), AS_OK);
    assert_false(st.live);
    /* used, and the other reset token of the user went with it */
    assert_int_equal(repo_ott_reset(f->r, h, u.id, "$argon2id$x", false,
                                    T0 + 4), AS_ERR_NOT_FOUND);
    assert_int_equal(repo_ott_reset_user(f->r, h, T0 + 4, &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_ott_reset_user(f->r, other, T0 + 4, &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.password_hash, "$argon2id$new");
}

static void reset_token_limits(void **state)
{
    struct fx *f = *state;
    struct user u, v, got;
    uint8_t h[REPO_HASH_LEN], h2[REPO_HASH_LEN];

    new_user(f, &u, "bob@example.com");
    new_user(f, &v, "eve@example.com");
    assert_int_equal(issue(f, OTT_RESET, "bob@example.com", T0, h, NULL),
                     AS_OK);
    /* expired */
    assert_int_equal(repo_ott_reset_user(f->r, h, T0 + HOUR, &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_ott_reset(f->r, h, u.id, "$x", false, T0 + HOUR),
                     AS_ERR_NOT_FOUND);
    /* another user's id */
    assert_int_equal(repo_ott_reset(f->r, h, v.id, "$x", false, T0 + 1),
                     AS_ERR_NOT_FOUND);
    /* the email moved on since the link was mailed */
    got = u;
    got.email = "bob2@example.com";
    assert_int_equal(repo_user_update(f->r, &got, T0 + 1), AS_OK);
    assert_int_equal(repo_ott_reset_user(f->r, h, T0 + 2, &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_ott_reset(f->r, h, u.id, "$x", false, T0 + 2),
                     AS_ERR_NOT_FOUND);
    /* the email back: the change ended the link for good, and a link
     * mailed after works */
    got.email = "bob@example.com";
    assert_int_equal(repo_user_update(f->r, &got, T0 + 3), AS_OK);
    assert_int_equal(repo_ott_reset_user(f->r, h, T0 + 4, &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_ott_reset(f->r, h, u.id, "$x", false, T0 + 4),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(issue(f, OTT_RESET, "bob@example.com", T0 + 4, h2,
                           NULL), AS_OK);
    assert_int_equal(repo_ott_reset(f->r, h2, u.id, "$ok", false, T0 + 5),
                     AS_OK);
    /* inactive users get no token */
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    got.is_active = false;
    assert_int_equal(repo_user_update(f->r, &got, T0 + 6), AS_OK);
    assert_int_equal(issue(f, OTT_RESET, "bob@example.com", T0, h2, NULL),
                     AS_ERR_NOT_FOUND);
}

static void verify_binds_the_email(void **state)
{
    struct fx *f = *state;
    struct user u, got;
    uint8_t h[REPO_HASH_LEN], h2[REPO_HASH_LEN];
    char uid[UUID_STR_LEN];

    new_user(f, &u, "cy@example.com");
    assert_int_equal(issue(f, OTT_VERIFY, u.id, T0, h, uid), AS_OK);
    assert_string_equal(uid, u.id);
    assert_int_equal(issue(f, OTT_VERIFY, u.id, T0, h2, NULL), AS_OK);
    /* a reset token is no verification token */
    assert_int_equal(repo_ott_reset_user(f->r, h, T0 + 1, &got, f->a),
                     AS_ERR_NOT_FOUND);
    got = u;
    got.email = "cy2@example.com";
    assert_int_equal(repo_user_update(f->r, &got, T0 + 1), AS_OK);
    assert_int_equal(repo_ott_verify(f->r, h, T0 + 2, uid),
                     AS_ERR_NOT_FOUND);
    assert_string_equal(uid, "");
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_false(got.is_verified);
    /* the email back: both links stay dead, one mailed after works */
    got.email = "cy@example.com";
    assert_int_equal(repo_user_update(f->r, &got, T0 + 3), AS_OK);
    assert_int_equal(repo_ott_verify(f->r, h, T0 + 4, uid),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_ott_verify(f->r, h2, T0 + 4, uid),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(issue(f, OTT_VERIFY, u.id, T0 + 4, h, NULL), AS_OK);
    assert_int_equal(repo_ott_verify(f->r, h, T0 + 4, uid), AS_OK);
    assert_string_equal(uid, u.id);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_true(got.is_verified);
    assert_int_equal(repo_ott_verify(f->r, h, T0 + 5, uid),
                     AS_ERR_NOT_FOUND);
    /* verified: no more verification tokens */
    assert_int_equal(issue(f, OTT_VERIFY, u.id, T0 + 6, NULL, NULL),
                     AS_ERR_NOT_FOUND);
}

/* ---- the outbox -------------------------------------------------------- */

static void outbox_lease_retry_and_sent(void **state)
{
    struct fx *f = *state;
    struct user u;
    struct outbox_row a, b, again;

    new_user(f, &u, "dee@example.com");
    assert_int_equal(issue(f, OTT_RESET, u.email, T0, NULL, NULL), AS_OK);
    assert_int_equal(issue(f, OTT_VERIFY, u.id, T0 + 1, NULL, NULL), AS_OK);
    /* not due yet */
    assert_int_equal(repo_outbox_claim(f->r, T0 - 1, T0 + LEASE, &a, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_outbox_claim(f->r, T0 + 1, T0 + 1 + LEASE, &a,
                                       f->a), AS_OK);
    assert_string_equal(a.kind, "password_reset");
    assert_string_equal(a.recipient, "dee@example.com");
    assert_string_equal(a.user_id, u.id);
    assert_true(a.resolved);
    assert_int_equal(a.expires_at, T0 + HOUR);
    assert_non_null(a.seed);
    assert_int_equal(a.seed[0], 1);
    assert_int_equal(a.seed[1], 2);
    assert_int_equal(a.seed[2], 3);
    assert_int_equal(a.seed[31], 0);
    assert_int_equal(a.created_at, T0);
    assert_int_equal(a.attempts, 0);
    assert_int_equal(repo_outbox_claim(f->r, T0 + 1, T0 + 1 + LEASE, &b,
                                       f->a), AS_OK);
    assert_string_equal(b.kind, "email_verification");
    assert_string_not_equal(a.id, b.id);
    /* both leased */
    assert_int_equal(repo_outbox_claim(f->r, T0 + 2, T0 + 2 + LEASE, &again,
                                       f->a), AS_ERR_NOT_FOUND);
    assert_int_equal(repo_outbox_failed(f->r, a.id, T0 + 5000,
                                        "smtp: refused"), AS_OK);
    assert_int_equal(repo_outbox_claim(f->r, T0 + 4999, T0 + LEASE, &again,
                                       f->a), AS_ERR_NOT_FOUND);
    assert_int_equal(repo_outbox_claim(f->r, T0 + 5000, T0 + 5000 + LEASE,
                                       &again, f->a), AS_OK);
    assert_string_equal(again.id, a.id);
    assert_int_equal(again.attempts, 1);
    assert_int_equal(repo_outbox_sent(f->r, a.id, T0 + 5001), AS_OK);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox WHERE sent_at "
                              "IS NOT NULL AND seed IS NULL AND "
                              "last_error IS NULL"), 1);
    /* b's lease runs out: claimable again; a never again */
    assert_int_equal(repo_outbox_claim(f->r, T0 + 1 + LEASE, T0 + 2 * LEASE,
                                       &again, f->a), AS_OK);
    assert_string_equal(again.id, b.id);
    assert_int_equal(repo_outbox_sent(f->r, b.id, T0 + 2 * LEASE), AS_OK);
    assert_int_equal(repo_outbox_sent(f->r, b.id, T0 + 2 * LEASE), AS_OK);
    assert_int_equal(repo_outbox_failed(f->r, b.id, T0, "late"), AS_OK);
    assert_int_equal(repo_outbox_claim(f->r, T0 + 1000 * HOUR,
                                       T0 + 1001 * HOUR, &again, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox WHERE seed IS "
                              "NULL AND sent_at IS NOT NULL"), 2);
}

static void prune_and_cascade(void **state)
{
    struct fx *f = *state;
    struct user u, v;
    struct outbox_row a;

    new_user(f, &u, "old@example.com");
    new_user(f, &v, "gone@example.com");
    assert_int_equal(issue(f, OTT_RESET, u.email, T0, NULL, NULL), AS_OK);
    assert_int_equal(issue(f, OTT_RESET, u.email, T0 + HOUR, NULL, NULL),
                     AS_OK);
    /* one tick later, so the claim at T0 can only take u's first mail */
    assert_int_equal(issue(f, OTT_RESET, v.email, T0 + 1, NULL, NULL),
                     AS_OK);
    assert_int_equal(repo_outbox_claim(f->r, T0, T0 + LEASE, &a, f->a),
                     AS_OK);
    assert_int_equal(repo_outbox_sent(f->r, a.id, T0 + 1), AS_OK);
    /* two tokens expire at T0 + HOUR, and the mail was sent at T0 + 1:
     * "before" is strict */
    assert_int_equal(repo_mail_prune(f->r, T0 + HOUR, T0 + 1, T0 - HOUR),
                     AS_OK);
    assert_int_equal(count(f, "SELECT count(*) FROM one_time_tokens"), 3);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox"), 3);
    assert_int_equal(repo_mail_prune(f->r, T0 + HOUR + 1, T0 + 2,
                                     T0 - HOUR), AS_OK);
    assert_int_equal(count(f, "SELECT count(*) FROM one_time_tokens"), 2);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox"), 2);
    /* a deleted user takes its tokens and pending mails along */
    assert_int_equal(repo_user_delete(f->r, v.id, 1000), AS_OK);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox"), 1);
    assert_int_equal(count(f, "SELECT count(*) FROM one_time_tokens"), 1);
}

/* ---- the cap per recipient, requests, expiry ---------------------------- */

/* Runs `sql` (our own text) for its effect. */
static void exec(struct fx *f, const char *sql)
{
    if (f->side) {
        PGresult *r = PQexec(f->side, sql);

        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fail_msg("%s: %s", sql, PQerrorMessage(f->side));
        PQclear(r);
    } else {
        char *err = NULL;

        if (sqlite3_exec(f->raw, sql, NULL, NULL, &err) != SQLITE_OK)
            fail_msg("%s: %s", sql, err ? err : "?");
        sqlite3_free(err);
    }
}

/* Adds `n` rows of each kind the sweep deletes, of user `uid`, their
 * times at `at`: expired one-time tokens (`tag` told apart), sent and
 * stale mails, and per-recipient counts. */
static void heap(struct fx *f, const char *uid, const char *tag, int n,
                 int64_t at)
{
    char series[200], hash[80], q[1024];

    snprintf(series, sizeof series, f->side
             ? "SELECT generate_series(1, %d) AS n"
             : "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 "
               "FROM c WHERE n < %d) SELECT n FROM c", n);
    if (f->side)
        snprintf(hash, sizeof hash, "sha256(convert_to('%s-' || n, 'UTF8'))",
                 tag);
    else
        snprintf(hash, sizeof hash, "randomblob(32)");
    snprintf(q, sizeof q,
             "INSERT INTO one_time_tokens (hash, user_id, purpose, email, "
             "created_at, expires_at) SELECT %s, '%s', 'reset', "
             "'heap@example.com', %lld, %lld FROM (%s) AS s", hash, uid,
             (long long)at, (long long)at, series);
    exec(f, q);
    snprintf(q, sizeof q,
             "INSERT INTO outbox (id, kind, recipient, created_at, "
             "next_attempt_at, sent_at, resolved) SELECT '%s-sent-' || n, "
             "'x', 'heap@example.com', %lld, %lld, %lld, 1 = 1 "
             "FROM (%s) AS s",
             tag, (long long)at, (long long)at, (long long)at, series);
    exec(f, q);
    snprintf(q, sizeof q,
             "INSERT INTO outbox (id, kind, recipient, created_at, "
             "next_attempt_at, resolved) SELECT '%s-stale-' || n, 'x', "
             "'heap@example.com', %lld, %lld, 1 = 0 FROM (%s) AS s",
             tag, (long long)at, (long long)at, series);
    exec(f, q);
    snprintf(q, sizeof q,
             "INSERT INTO mail_counts (recipient, window_start, n) SELECT "
             "'%s-' || n || '@example.com', %lld, 1 FROM (%s) AS s",
             tag, (long long)at, series);
    exec(f, q);
}

static void *sweep_thread(void *arg)
{
    struct fx *f = arg;

    assert_int_equal(repo_mail_prune(f->r, T0, T0, T0), AS_OK);
    return NULL;
}

/* The hourly sweep deletes everything past its cut-offs however much
 * there is, and nothing younger; it goes a batch of 512 rows a
 * transaction, so others' writes never wait on the whole sweep (an
 * hour's mail in one transaction held SQLite's write lock for seconds):
 * a reader sees the rows go a batch at a time, never all or nothing. */
static void the_sweep_goes_a_batch_at_a_time(void **state)
{
    struct fx *f = *state;
    struct user u;
    pthread_t th;
    int attempt, i;
    bool midway = false;

    new_user(f, &u, "heap@example.com");
    heap(f, u.id, "old", 1300, T0 - 10);
    heap(f, u.id, "new", 3, T0 + 10);
    assert_int_equal(repo_mail_prune(f->r, T0, T0, T0), AS_OK);
    assert_int_equal(count(f, "SELECT count(*) FROM one_time_tokens"), 3);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox"), 6);
    assert_int_equal(count(f, "SELECT count(*) FROM mail_counts"), 3);
    for (attempt = 0; attempt < 3 && !midway; attempt++) {
        char tag[16];
        int64_t n = 0;

        snprintf(tag, sizeof tag, "big%d", attempt);
        heap(f, u.id, tag, 20000, T0 - 10);
        assert_int_equal(pthread_create(&th, NULL, sweep_thread, f), 0);
        for (i = 0; i < 100000 && n != 3; i++) {
            n = count(f, "SELECT count(*) FROM one_time_tokens");
            midway = midway || (n > 3 && n < 20003);
        }
        assert_int_equal(pthread_join(th, NULL), 0);
    }
    assert_true(midway);
    assert_int_equal(count(f, "SELECT count(*) FROM one_time_tokens"), 3);
    assert_int_equal(count(f, "SELECT count(*) FROM mail_counts"), 3);
}

static void cap_per_recipient_per_hour(void **state)
{
    struct fx *f = *state;
    struct user u;
    struct outbox_row notice;
    enum outbox_fate fate;
    char id[UUID_STR_LEN], uid[UUID_STR_LEN];
    int i, ready = 0, capped = 0;
    enum as_err err;

    new_user(f, &u, "victim@example.com");
    for (i = 0; i < 8; i++) {
        queue(f, OTT_RESET, u.email, T0 + i, id);
        err = resolve_cap(f, id, OTT_RESET, T0 + i, 5, NULL, NULL);
        ready += err == AS_OK;
        capped += err == AS_ERR_RATE_LIMITED;
    }
    assert_int_equal(ready, 5);
    assert_int_equal(capped, 3);
    /* the capped mails are gone, and made no token */
    assert_int_equal(count(f, "SELECT count(*) FROM outbox"), 5);
    assert_int_equal(count(f, "SELECT count(*) FROM one_time_tokens"), 5);
    /* verification mails to the address count too */
    queue(f, OTT_VERIFY, u.id, T0 + 9, id);
    assert_int_equal(resolve_cap(f, id, OTT_VERIFY, T0 + 9, 5, NULL, NULL),
                     AS_ERR_RATE_LIMITED);
    /* a mail without a link (a security notice) has a count of its own:
     * a flood of reset requests cannot silence it */
    memset(&notice, 0, sizeof notice);
    uuid_v7_new(notice.id);
    notice.kind = "security_notice";
    notice.user_id = u.id;
    notice.recipient = u.email;
    notice.created_at = T0 + 10;
    assert_int_equal(repo_outbox_add(f->r, &notice, 0), AS_OK);
    assert_int_equal(repo_outbox_resolve(f->r, &notice, NULL, 5, T0 + 10,
                                         &fate, uid), AS_OK);
    assert_int_equal(fate, OUTBOX_READY);
    assert_string_equal(uid, u.id);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox WHERE "
                              "seed IS NULL AND resolved"), 1);
    assert_int_equal(count(f, "SELECT count(*) FROM one_time_tokens"), 5);
    /* the hour is the last 60 minutes, not the clock's: past the clock
     * hour's end (T0 is 13:20 into one) the five still count, and
     * nothing was counted for the mails held back */
    queue(f, OTT_RESET, u.email, T0 + 47 * MINUTE, id);
    assert_int_equal(resolve_cap(f, id, OTT_RESET, T0 + 47 * MINUTE, 5,
                                 NULL, NULL), AS_ERR_RATE_LIMITED);
    queue(f, OTT_RESET, u.email, T0 + HOUR - 1, id);
    assert_int_equal(resolve_cap(f, id, OTT_RESET, T0 + HOUR - 1, 5, NULL,
                                 NULL), AS_ERR_RATE_LIMITED);
    assert_int_equal(count(f, "SELECT COALESCE(SUM(n), 0) FROM "
                              "mail_counts"), 6);
    /* an hour and a minute later they no longer count; counts of past
     * hours are pruned */
    queue(f, OTT_RESET, u.email, T0 + HOUR + MINUTE, id);
    assert_int_equal(resolve_cap(f, id, OTT_RESET, T0 + HOUR + MINUTE, 5,
                                 NULL, NULL), AS_OK);
    assert_int_equal(repo_mail_prune(f->r, T0, T0, T0), AS_OK);
    assert_int_equal(count(f, "SELECT count(*) FROM mail_counts"), 1);
}

/* One inbox, many subaddresses (RFC 5233): accounts registered as
 * victim+1@, victim+2@, ... each had a cap of their own, so one client
 * could send the inbox the cap once per tag it made up. They share the
 * mailbox's count now; another mailbox, or another domain, does not. */
static void subaddresses_share_their_mailboxs_cap(void **state)
{
    struct fx *f = *state;
    struct user u;
    char id[UUID_STR_LEN], email[64];
    int i, ready = 0;

    for (i = 0; i < 12; i++) {
        snprintf(email, sizeof email, "victim+%d@example.com", i);
        new_user(f, &u, email);
        queue(f, OTT_VERIFY, u.id, T0 + i, id);
        ready += resolve_cap(f, id, OTT_VERIFY, T0 + i, 5, NULL, NULL) ==
                 AS_OK;
    }
    assert_int_equal(ready, 5);
    new_user(f, &u, "victim@example.com");          /* the inbox itself */
    queue(f, OTT_VERIFY, u.id, T0 + 20, id);
    assert_int_equal(resolve_cap(f, id, OTT_VERIFY, T0 + 20, 5, NULL, NULL),
                     AS_ERR_RATE_LIMITED);
    new_user(f, &u, "victim2+1@example.com");       /* another mailbox */
    queue(f, OTT_VERIFY, u.id, T0 + 21, id);
    assert_int_equal(resolve_cap(f, id, OTT_VERIFY, T0 + 21, 5, NULL, NULL),
                     AS_OK);
    new_user(f, &u, "victim+1@example.org");        /* another domain */
    queue(f, OTT_VERIFY, u.id, T0 + 22, id);
    assert_int_equal(resolve_cap(f, id, OTT_VERIFY, T0 + 22, 5, NULL, NULL),
                     AS_OK);
}

/* Mails let through at a steady pace: never more than the cap in any 60
 * minutes, and as many as the cap allows (one every 12 minutes at 5 an
 * hour, give or take the minute they are counted in). */
static void cap_is_a_sliding_hour(void **state)
{
    struct fx *f = *state;
    struct user u;
    char id[UUID_STR_LEN];
    int64_t sent[64];
    int nsent = 0, i, j;

    new_user(f, &u, "steady@example.com");
    for (i = 0; i < 40; i++) {             /* one request every 7 minutes */
        int64_t now = T0 + i * 7 * MINUTE;

        queue(f, OTT_RESET, u.email, now, id);
        if (resolve_cap(f, id, OTT_RESET, now, 5, NULL, NULL) == AS_OK)
            sent[nsent++] = now;
    }
    for (i = 0; i < nsent; i++) {
        int in_hour = 0;

        for (j = i; j < nsent && sent[j] < sent[i] + HOUR; j++)
            in_hour++;
        assert_true(in_hour <= 5);
    }
    /* 280 minutes: at least four full hours' worth */
    assert_true(nsent >= 20);
}

/* Column `col` of outbox row `id`, a boolean. */
static bool flag(struct fx *f, const char *col, const char *id)
{
    const char *v = row_text(f, col, id);

    return v && (strcmp(v, "t") == 0 || strcmp(v, "1") == 0);
}

static void set_verified(struct fx *f, const char *uid)
{
    char q[160];

    snprintf(q, sizeof q, "UPDATE users SET is_verified = true "
             "WHERE id = '%s'", uid);
    exec(f, q);
}

/* Resolves notice `n` under `cap` at `now` as the mailer does at its
 * first try: AS_OK when it is to be sent, AS_ERR_RATE_LIMITED past the
 * cap, AS_ERR_UNAVAILABLE when held. */
static enum as_err resolve_notice(struct fx *f, const struct outbox_row *n,
                                  unsigned cap, int64_t now)
{
    char back[UUID_STR_LEN];
    enum outbox_fate fate;
    enum as_err err = repo_outbox_resolve(f->r, n, NULL, cap, now, &fate,
                                          back);

    if (err != AS_OK)
        return err;
    if (fate == OUTBOX_READY)
        assert_string_equal(back, n->user_id);
    return fate == OUTBOX_READY ? AS_OK
           : fate == OUTBOX_CAPPED ? AS_ERR_RATE_LIMITED
           : fate == OUTBOX_HELD ? AS_ERR_UNAVAILABLE : AS_ERR_NOT_FOUND;
}

/* Queues notice `n` to `to` for user `uid` at `now` as an email change
 * does (resolved already), and resolves it as the mailer does at its
 * first try: AS_OK when it is to be sent, AS_ERR_RATE_LIMITED past the
 * cap of notices. */
static enum as_err notice_cap(struct fx *f, const char *uid, const char *to,
                              int64_t now, unsigned cap)
{
    struct outbox_row n;
    struct user_patch p = { .set = UF_EMAIL, .email = "moved@example.com",
                            .email_notice = &n };
    struct user got;

    memset(&n, 0, sizeof n);
    uuid_v7_new(n.id);
    n.kind = "email_changed";
    n.created_at = now;
    /* to "moved@", then back to `to`: the notice of the first change
     * goes to `to` */
    assert_int_equal(repo_user_patch(f->r, uid, &p, now, &got, f->a), AS_OK);
    p.email = to;
    p.email_notice = NULL;
    assert_int_equal(repo_user_patch(f->r, uid, &p, now, &got, f->a), AS_OK);
    assert_string_equal(row_text(f, "resolved", n.id),
                        f->side ? "t" : "1");
    n.user_id = uid;
    n.recipient = to;
    n.to_verified = flag(f, "to_verified", n.id);  /* as a claim reads it */
    if (n.to_verified)            /* back where it was, verified as it was */
        set_verified(f, uid);
    return resolve_notice(f, &n, cap, now);
}

static void notices_have_a_cap_of_their_own(void **state)
{
    struct fx *f = *state;
    struct user u;
    char id[UUID_STR_LEN];
    int i, ready = 0, held = 0, capped = 0;
    /* the minute of the first notice's count (its slot is 1), an hour
     * and a minute on */
    int64_t due = (T0 + 10) - (T0 + 10) % MINUTE + 1 + HOUR + MINUTE;
    struct outbox_row row;
    enum outbox_fate fate;
    char q[256], back[UUID_STR_LEN];

    new_user(f, &u, "x@example.com");
    set_verified(f, u.id);
    /* link mails to the address use up their cap... */
    for (i = 0; i < 6; i++) {
        queue(f, OTT_RESET, u.email, T0 + i, id);
        resolve_cap(f, id, OTT_RESET, T0 + i, 3, NULL, NULL);
    }
    /* ...which does not hold a notice back; notices have their own */
    for (i = 0; i < 5; i++) {
        enum as_err err = notice_cap(f, u.id, u.email, T0 + 10 + i, 3);

        ready += err == AS_OK;
        held += err == AS_ERR_UNAVAILABLE;
        capped += err == AS_ERR_RATE_LIMITED;
    }
    assert_int_equal(ready, 3);
    assert_int_equal(held, 1);
    assert_int_equal(capped, 1);
    /* the first past the cap stays, due when the first counted leaves
     * the hour; the next one went, the one held stands for it */
    assert_int_equal(count(f, "SELECT count(*) FROM outbox WHERE "
                              "kind = 'email_changed'"), 4);
    snprintf(q, sizeof q, "SELECT count(*) FROM outbox WHERE kind = "
             "'email_changed' AND NOT resolved AND next_attempt_at = %lld",
             (long long)due);
    assert_int_equal(count(f, q), 1);
    /* held until then: claimed and resolved again, it goes */
    exec(f, "UPDATE outbox SET sent_at = 1 WHERE resolved");
    assert_int_equal(repo_outbox_claim(f->r, due - 1, due + MINUTE, &row,
                                       f->a), AS_ERR_NOT_FOUND);
    assert_int_equal(repo_outbox_claim(f->r, due, due + MINUTE, &row,
                                       f->a), AS_OK);
    assert_int_equal(repo_outbox_resolve(f->r, &row, NULL, 3, due, &fate,
                                         back), AS_OK);
    assert_int_equal(fate, OUTBOX_READY);
    /* ready, it stands for no later notice: the next one past the cap
     * is held in turn */
    assert_int_equal(notice_cap(f, u.id, u.email, due, 1),
                     AS_ERR_UNAVAILABLE);
    exec(f, "DELETE FROM outbox WHERE NOT resolved");
    /* and notices do not spend the cap of link mails of a later hour */
    assert_int_equal(notice_cap(f, u.id, u.email, T0 + HOUR + MINUTE, 3),
                     AS_OK);
    queue(f, OTT_RESET, u.email, T0 + HOUR + MINUTE, id);
    assert_int_equal(resolve_cap(f, id, OTT_RESET, T0 + HOUR + MINUTE, 1,
                                 NULL, NULL), AS_OK);
    /* an hour later it starts over */
    assert_int_equal(notice_cap(f, u.id, u.email, T0 + 2 * (HOUR + MINUTE),
                                1), AS_OK);
    assert_int_equal(notice_cap(f, u.id, u.email, T0 + 2 * (HOUR + MINUTE),
                                1), AS_ERR_UNAVAILABLE);
    assert_int_equal(notice_cap(f, u.id, u.email, T0 + 2 * (HOUR + MINUTE),
                                1), AS_ERR_RATE_LIMITED);
}

/* A mail that never failed is claimed before retries that are due
 * longer, so rows that keep failing cannot keep it waiting. */
/* Queues a passkey_added notice about `uid` to `to` as the passkey's
 * transaction does, and resolves it at `now` under `cap`. */
static enum outbox_fate notice_about(struct fx *f, const char *uid,
                                     const char *to, int64_t now,
                                     unsigned cap)
{
    struct outbox_row n;
    char q[512], back[UUID_STR_LEN];
    enum outbox_fate fate;

    memset(&n, 0, sizeof n);
    uuid_v7_new(n.id);
    snprintf(q, sizeof q, "INSERT INTO outbox (id, user_id, kind, "
             "recipient, resolved, created_at, next_attempt_at) VALUES "
             "('%s', '%s', 'passkey_added', '%s', true, %lld, %lld)", n.id,
             uid, to, (long long)now, (long long)now);
    exec(f, q);
    n.kind = "passkey_added";
    n.user_id = uid;
    n.recipient = to;
    n.to_verified = flag(f, "to_verified", n.id);
    n.created_at = now;
    assert_int_equal(repo_outbox_resolve(f->r, &n, NULL, cap, now, &fate,
                                         back), AS_OK);
    return fate;
}

/* Notices to a verified address, or to one without a subaddress, are
 * counted per address, apart from those to subaddresses nobody verified:
 * five accounts registered as v+k@ and moved each sent v+k@ a notice,
 * and counted as v@'s mailbox with them they held back the notice of
 * v@'s own account (a review: an hour late, 2 of 2). Only v@'s owner can
 * verify v+k@, and while an account is v@ no other can be. An owner at a
 * subaddress it never verified shares the mailbox's count with them: its
 * notice is held, not dropped. */
static void subaddresses_hold_back_no_notice(void **state)
{
    struct fx *f = *state;
    struct user u, w;
    char email[64];
    int i;

    for (i = 0; i < 5; i++) {
        snprintf(email, sizeof email, "v+%d@example.com", i);
        new_user(f, &u, email);
        assert_int_equal(notice_cap(f, u.id, u.email, T0 + i, 5), AS_OK);
    }
    new_user(f, &u, "v@example.com");              /* never verified */
    assert_int_equal(notice_cap(f, u.id, u.email, T0 + 10, 5), AS_OK);
    new_user(f, &u, "v+work@example.com");
    set_verified(f, u.id);
    assert_int_equal(notice_cap(f, u.id, u.email, T0 + 11, 5), AS_OK);
    new_user(f, &w, "v+home@example.com");         /* never verified */
    assert_int_equal(notice_cap(f, w.id, w.email, T0 + 12, 5),
                     AS_ERR_UNAVAILABLE);
}

/* Moves user `uid` from `from` to `to` at `now` as an email change does
 * (the notice to `from`), and resolves the notice under `cap` as the
 * mailer would: as notice_cap(). */
static enum as_err move_notice(struct fx *f, const char *uid,
                               const char *from, const char *to,
                               int64_t now, unsigned cap)
{
    struct outbox_row n;
    struct user_patch p = { .set = UF_EMAIL, .email = to,
                            .email_notice = &n };
    struct user got;

    memset(&n, 0, sizeof n);
    uuid_v7_new(n.id);
    n.kind = "email_changed";
    n.created_at = now;
    assert_int_equal(repo_user_patch(f->r, uid, &p, now, &got, f->a), AS_OK);
    n.user_id = uid;
    n.recipient = row_text(f, "recipient", n.id);
    assert_string_equal(n.recipient, from);
    n.to_verified = flag(f, "to_verified", n.id);
    return resolve_notice(f, &n, cap, now);
}

/* One account moving its email through v+1@, v+2@, ... sent v@'s inbox
 * one notice per tag (a review: 20 changes, 20 notices): notices to
 * subaddresses nobody verified are counted per mailbox. One held stands for
 * the rest of that mailbox's; another mailbox has its own count. A
 * notice to a verified address is counted apart. */
static void one_account_through_many_tags_is_one_mailbox(void **state)
{
    struct fx *f = *state;
    struct user u;
    char from[64], to[64];
    int i, ready = 0, held = 0, capped = 0;

    new_user(f, &u, "v+0@example.com");
    for (i = 0; i < 20; i++) {
        enum as_err err;

        snprintf(from, sizeof from, "v+%d@example.com", i);
        snprintf(to, sizeof to, "v+%d@example.com", i + 1);
        err = move_notice(f, u.id, from, to, T0 + i, 5);
        ready += err == AS_OK;
        held += err == AS_ERR_UNAVAILABLE;
        capped += err == AS_ERR_RATE_LIMITED;
    }
    assert_int_equal(ready, 5);
    assert_int_equal(held, 1);
    assert_int_equal(capped, 14);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox WHERE "
                              "NOT to_verified"), 6);
    /* another mailbox: a count of its own, and a row held of its own */
    assert_int_equal(move_notice(f, u.id, "v+20@example.com",
                                 "w+1@example.com", T0 + 30, 5),
                     AS_ERR_RATE_LIMITED);
    for (i = 1; i < 7; i++) {
        snprintf(from, sizeof from, "w+%d@example.com", i);
        snprintf(to, sizeof to, "w+%d@example.com", i + 1);
        assert_int_equal(move_notice(f, u.id, from, to, T0 + 30 + i, 5),
                         i <= 5 ? AS_OK
                         : i == 6 ? AS_ERR_UNAVAILABLE
                                  : AS_ERR_RATE_LIMITED);
    }
    /* the address verified, its notice counts per address */
    set_verified(f, u.id);
    assert_int_equal(move_notice(f, u.id, "w+7@example.com",
                                 "w+8@example.com", T0 + 40, 5), AS_OK);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox WHERE "
                              "to_verified"), 1);
}

/* One row held per account, kind and mailbox however many mailboxes the
 * account holds rows for (a review: past 64 of them, every further
 * change to a capped mailbox held one row more), and a mailbox's name
 * read as written, not as a LIKE pattern ('_'). */
static void held_notices_stay_one_per_mailbox(void **state)
{
    struct fx *f = *state;
    struct user u;
    char from[64], to[64];
    int i, j;

    new_user(f, &u, "m0+0@example.com");
    snprintf(from, sizeof from, "%s", u.email);
    for (i = 0; i < 70; i++)              /* 1 sent and 1 held in each */
        for (j = 0; j < 2; j++) {
            snprintf(to, sizeof to, "m%d+%d@example.com", j ? i + 1 : i,
                     j ? 0 : 1);
            assert_int_equal(move_notice(f, u.id, from, to, T0 + i, 1),
                             j ? AS_ERR_UNAVAILABLE : AS_OK);
            snprintf(from, sizeof from, "%s", to);
        }
    assert_int_equal(count(f, "SELECT count(*) FROM outbox "
                              "WHERE NOT resolved"), 70);
    for (i = 0; i < 6; i++) {             /* m70@: 1 sent, 1 held, capped */
        snprintf(to, sizeof to, "m70+%d@example.com", i + 1);
        assert_int_equal(move_notice(f, u.id, from, to, T0 + 80 + i, 1),
                         i == 0 ? AS_OK
                         : i == 1 ? AS_ERR_UNAVAILABLE
                                  : AS_ERR_RATE_LIMITED);
        snprintf(from, sizeof from, "%s", to);
    }
    assert_int_equal(count(f, "SELECT count(*) FROM outbox "
                              "WHERE NOT resolved"), 71);
    /* aXb@'s row held stands for none of a_b@'s: the notice goes to the
     * address an account leaves */
    assert_int_equal(move_notice(f, u.id, from, "axb+1@example.com",
                                 T0 + 90, 1), AS_ERR_RATE_LIMITED);
    assert_int_equal(move_notice(f, u.id, "axb+1@example.com",
                                 "axb+2@example.com", T0 + 91, 1), AS_OK);
    assert_int_equal(move_notice(f, u.id, "axb+2@example.com",
                                 "a_b+1@example.com", T0 + 92, 1),
                     AS_ERR_UNAVAILABLE);
    assert_int_equal(move_notice(f, u.id, "a_b+1@example.com",
                                 "a_b+2@example.com", T0 + 93, 1), AS_OK);
    assert_int_equal(move_notice(f, u.id, "a_b+2@example.com",
                                 "z@example.com", T0 + 94, 1),
                     AS_ERR_UNAVAILABLE);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox "
                              "WHERE NOT resolved"), 73);
}

static void a_held_notice_stands_only_for_its_account(void **state)
{
    struct fx *f = *state;
    struct user a, b;

    new_user(f, &a, "a@example.com");
    new_user(f, &b, "b@example.com");
    assert_int_equal(notice_about(f, a.id, "x@example.com", T0, 1),
                     OUTBOX_READY);
    assert_int_equal(notice_about(f, a.id, "x@example.com", T0 + 1, 1),
                     OUTBOX_HELD);
    assert_int_equal(notice_about(f, a.id, "x@example.com", T0 + 2, 1),
                     OUTBOX_CAPPED);
    /* another account's notice to the address is not stood for by a
     * row that goes with the first account */
    assert_int_equal(notice_about(f, b.id, "x@example.com", T0 + 3, 1),
                     OUTBOX_HELD);
    assert_int_equal(notice_about(f, b.id, "x@example.com", T0 + 4, 1),
                     OUTBOX_CAPPED);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox WHERE "
                              "NOT resolved"), 2);
}

static void fresh_mail_ahead_of_retries(void **state)
{
    struct fx *f = *state;
    struct outbox_row a, b, got;
    char fresh[UUID_STR_LEN];
    int i;

    for (i = 0; i < 3; i++) {
        queue(f, OTT_RESET, "bounce@example.com", T0 + i, NULL);
        assert_int_equal(repo_outbox_claim(f->r, T0 + i, T0 + i + LEASE,
                                           &a, f->a), AS_OK);
        assert_int_equal(repo_outbox_failed(f->r, a.id, T0 + 10 + i,
                                            "webhook: answered HTTP 500"),
                         AS_OK);
    }
    queue(f, OTT_RESET, "ada@example.com", T0 + 100, fresh);
    assert_int_equal(repo_outbox_claim(f->r, T0 + 200, T0 + 200 + LEASE,
                                       &b, f->a), AS_OK);
    assert_string_equal(b.id, fresh);
    assert_int_equal(b.attempts, 0);
    /* then the retries, the longest due first */
    assert_int_equal(repo_outbox_claim(f->r, T0 + 200, T0 + 200 + LEASE,
                                       &got, f->a), AS_OK);
    assert_int_equal(got.attempts, 1);
    assert_int_equal(got.created_at, T0);
}

/* Queuing a mail deletes a few unsent mails queued before the cutoff, so
 * the outbox stays bounded with no mailer running. */
static void queuing_prunes_a_few_stale_mails(void **state)
{
    static const uint8_t seed[REPO_SEED_LEN] = { 7 };
    struct fx *f = *state;
    struct outbox_row m = { .kind = "password_reset", .seed = seed },
                      leased;
    int i;

    m.recipient = "anyone@example.com";
    for (i = 0; i < 5; i++) {
        uuid_v7_new(m.id);
        m.created_at = T0 + i;
        assert_int_equal(repo_outbox_add(f->r, &m, 0), AS_OK);
    }
    /* the last one is being sent: its lease keeps it */
    assert_int_equal(repo_outbox_claim(f->r, T0 + 4, T0 + 2 * HOUR, &leased,
                                       f->a), AS_OK);
    assert_int_equal(leased.created_at, T0);
    m.created_at = T0 + HOUR;
    for (i = 0; i < 3; i++) {
        uuid_v7_new(m.id);
        assert_int_equal(repo_outbox_add(f->r, &m, T0 + 10), AS_OK);
    }
    /* two a time: the four old ones not leased are gone */
    assert_int_equal(count(f, "SELECT count(*) FROM outbox WHERE "
                              "created_at < 1700000000010"), 1);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox"), 4);
    /* nothing newer than the cutoff goes */
    uuid_v7_new(m.id);
    assert_int_equal(repo_outbox_add(f->r, &m, T0 + HOUR), AS_OK);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox"), 5);
}

static void unknown_and_stale_requests_are_dropped(void **state)
{
    struct fx *f = *state;
    struct user u;
    char id[UUID_STR_LEN], uid[UUID_STR_LEN];

    new_user(f, &u, "real@example.com");
    /* a request is the same row whether or not the account exists */
    queue(f, OTT_RESET, "ghost@example.com", T0, id);
    assert_null(row_text(f, "user_id", id));
    assert_int_equal(resolve_cap(f, id, OTT_RESET, T0, 5, NULL, uid),
                     AS_ERR_NOT_FOUND);
    assert_string_equal(uid, "");
    assert_int_equal(count(f, "SELECT count(*) FROM outbox"), 0);
    assert_int_equal(count(f, "SELECT count(*) FROM one_time_tokens"), 0);
    /* the same statements (the minute's row is written) but a count of
     * none: a mail to no account must not use up its future owner's */
    assert_int_equal(count(f, "SELECT count(*) FROM mail_counts "
                              "WHERE window_start > 0"), 1);
    assert_int_equal(count(f, "SELECT SUM(n) FROM mail_counts"), 0);
    /* unresolved requests older than the stale limit are pruned */
    queue(f, OTT_RESET, u.email, T0, id);
    queue(f, OTT_RESET, u.email, T0 + 10, NULL);
    assert_int_equal(repo_mail_prune(f->r, T0, T0, T0 + 1), AS_OK);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox"), 1);
    /* an expired link's mail is dropped, sent ones are kept */
    assert_int_equal(repo_outbox_drop(f->r, id), AS_OK);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox"), 1);
}

static void password_change_retires_reset_tokens(void **state)
{
    struct fx *f = *state;
    struct user u, got;
    uint8_t h[REPO_HASH_LEN], v[REPO_HASH_LEN];
    char uid[UUID_STR_LEN];

    new_user(f, &u, "change@example.com");
    assert_int_equal(issue(f, OTT_RESET, u.email, T0, h, NULL), AS_OK);
    assert_int_equal(issue(f, OTT_VERIFY, u.id, T0, v, NULL), AS_OK);
    assert_int_equal(repo_user_set_password(f->r, u.id, "$argon2id$chg",
                                            NULL, T0 + 1), AS_OK);
    assert_int_equal(repo_ott_reset_user(f->r, h, T0 + 2, &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_ott_reset(f->r, h, u.id, "$argon2id$x", false,
                                    T0 + 2), AS_ERR_NOT_FOUND);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.password_hash, "$argon2id$chg");
    /* a verification link is no reset link: it still works */
    assert_int_equal(repo_ott_verify(f->r, v, T0 + 3, uid), AS_OK);
}

/* ---- races ------------------------------------------------------------- */

struct racer {
    struct repo *r;
    pthread_barrier_t *go;
    const uint8_t *hash;
    const char *uid;
    int claimed;                  /* outbox rows this racer claimed */
    char ids[RACERS * 2][UUID_STR_LEN];
    enum as_err err;
};

static void *claim_race(void *arg)
{
    struct racer *x = arg;
    struct arena *a = arena_new();
    struct outbox_row row;

    pthread_barrier_wait(x->go);
    while (a && repo_outbox_claim(x->r, T0 + 10, T0 + LEASE, &row, a) ==
                    AS_OK)
        snprintf(x->ids[x->claimed++], UUID_STR_LEN, "%s", row.id);
    arena_free(a);
    return NULL;
}

static void *reset_race(void *arg)
{
    struct racer *x = arg;

    pthread_barrier_wait(x->go);
    x->err = repo_ott_reset(x->r, x->hash, x->uid, "$argon2id$race", false,
                            T0 + 10);
    return NULL;
}

/* Runs RACERS threads of `fn` from one barrier. */
static void run_race(struct fx *f, void *(*fn)(void *), struct racer *x,
                     const uint8_t *hash, const char *uid)
{
    pthread_barrier_t go;
    pthread_t t[RACERS];
    int i;

    assert_int_equal(pthread_barrier_init(&go, NULL, RACERS), 0);
    for (i = 0; i < RACERS; i++) {
        memset(&x[i], 0, sizeof x[i]);
        x[i].r = f->r;
        x[i].go = &go;
        x[i].hash = hash;
        x[i].uid = uid;
        assert_int_equal(pthread_create(&t[i], NULL, fn, &x[i]), 0);
    }
    for (i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
}

static void concurrent_claims_take_each_row_once(void **state)
{
    struct fx *f = *state;
    struct racer x[RACERS];
    struct user u;
    char seen[RACERS * 2][UUID_STR_LEN];
    int i, j, k, total = 0;

    new_user(f, &u, "many@example.com");
    for (i = 0; i < RACERS * 2; i++)
        assert_int_equal(issue(f, OTT_RESET, u.email, T0, NULL, NULL),
                         AS_OK);
    run_race(f, claim_race, x, NULL, NULL);
    for (i = 0; i < RACERS; i++)
        for (j = 0; j < x[i].claimed; j++) {
            for (k = 0; k < total; k++)
                assert_string_not_equal(seen[k], x[i].ids[j]);
            snprintf(seen[total++], UUID_STR_LEN, "%s", x[i].ids[j]);
        }
    assert_int_equal(total, RACERS * 2);
}

static void concurrent_resets_have_one_winner(void **state)
{
    struct fx *f = *state;
    struct racer x[RACERS];
    struct user u;
    uint8_t h[REPO_HASH_LEN];
    int i, ok = 0, lost = 0;

    new_user(f, &u, "race@example.com");
    assert_int_equal(issue(f, OTT_RESET, u.email, T0, h, NULL), AS_OK);
    run_race(f, reset_race, x, h, u.id);
    for (i = 0; i < RACERS; i++) {
        ok += x[i].err == AS_OK;
        lost += x[i].err == AS_ERR_NOT_FOUND;
    }
    assert_int_equal(ok, 1);
    assert_int_equal(lost, RACERS - 1);
}

struct change_racer {
    struct fx *f;
    pthread_barrier_t *go;
    const char *id, *user_id;      /* the queued request; its user */
    const char *email;             /* the request's recipient */
    uint8_t hash[REPO_HASH_LEN];
    int64_t now;
    enum as_err err;
};

static void *resolve_racer(void *arg)
{
    struct change_racer *x = arg;
    struct ott t = { .purpose = OTT_RESET, .created_at = x->now,
                     .expires_at = x->now + HOUR };
    struct outbox_row m = { .kind = "password_reset" };
    enum outbox_fate fate;
    char uid[UUID_STR_LEN];

    snprintf(m.id, sizeof m.id, "%s", x->id);
    m.recipient = x->email;
    randombytes_buf(t.hash, sizeof t.hash);
    memcpy(x->hash, t.hash, sizeof x->hash);
    pthread_barrier_wait(x->go);
    x->err = repo_outbox_resolve(x->f->r, &m, &t, 1000, x->now, &fate, uid);
    if (x->err == AS_OK && fate != OUTBOX_READY)
        x->err = AS_ERR_NOT_FOUND;
    return NULL;
}

static void *change_racer(void *arg)
{
    struct change_racer *x = arg;

    pthread_barrier_wait(x->go);
    x->err = repo_user_set_password(x->f->r, x->user_id, "$argon2id$new",
                                    NULL, x->now);
    return NULL;
}

/* A reset request resolved (its link made) at the instant the password
 * changes: the change either deletes the request first or retires the
 * link after it is stored, never leaves a live link (PostgreSQL: the
 * resolution holds the user's row). Many rounds. */
static void a_password_change_racing_a_resolution_ends_its_link(void **state)
{
    struct fx *f = *state;
    struct change_racer a, b;
    pthread_barrier_t go;
    pthread_t ta, tb;
    struct user u, got;
    char email[64], id[UUID_STR_LEN];
    int round, made = 0;

    for (round = 0; round < 40; round++) {
        snprintf(email, sizeof email, "changer%d@example.com", round);
        new_user(f, &u, email);
        queue(f, OTT_RESET, u.email, T0, id);
        assert_int_equal(pthread_barrier_init(&go, NULL, 2), 0);
        memset(&a, 0, sizeof a);
        a.f = f;
        a.go = &go;
        a.id = id;
        a.user_id = u.id;
        a.email = u.email;
        a.now = T0 + 1;
        b = a;
        assert_int_equal(pthread_create(&ta, NULL, resolve_racer, &a), 0);
        assert_int_equal(pthread_create(&tb, NULL, change_racer, &b), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        assert_int_equal(b.err, AS_OK);
        assert_true(a.err == AS_OK || a.err == AS_ERR_NOT_FOUND);
        made += a.err == AS_OK;
        assert_int_equal(repo_ott_reset_user(f->r, a.hash, T0 + 2, &got,
                                             f->a), AS_ERR_NOT_FOUND);
    }
    print_message("links made in %d of 40 rounds, none live\n", made);
}

struct cap_racer {
    struct fx *f;
    pthread_barrier_t *go;
    const char *to;                 /* the recipient */
    int64_t now;
    char ids[2][UUID_STR_LEN];
    int ready;
};

static void *cap_race(void *arg)
{
    struct cap_racer *x = arg;
    struct outbox_row m;
    struct ott t = { .purpose = OTT_RESET, .created_at = x->now,
                     .expires_at = x->now + HOUR };
    enum outbox_fate fate;
    char uid[UUID_STR_LEN];
    int i;

    pthread_barrier_wait(x->go);
    for (i = 0; i < 2; i++) {
        memset(&m, 0, sizeof m);
        snprintf(m.id, sizeof m.id, "%s", x->ids[i]);
        m.kind = "password_reset";
        m.recipient = x->to;
        randombytes_buf(t.hash, sizeof t.hash);
        if (repo_outbox_resolve(x->f->r, &m, &t, 5, x->now, &fate, uid) ==
                AS_OK && fate == OUTBOX_READY)
            x->ready++;
    }
    return NULL;
}

/* One round: RACERS threads from one barrier, each resolving two mails
 * it queued to `to`, racer i at `now - (i % 2) * odd_shift`; returns how
 * many mails were let through. */
static int cap_round(struct fx *f, const char *to, int64_t now,
                     int64_t odd_shift)
{
    struct cap_racer x[RACERS];
    pthread_barrier_t go;
    pthread_t t[RACERS];
    int i, ready = 0;

    assert_int_equal(pthread_barrier_init(&go, NULL, RACERS), 0);
    for (i = 0; i < RACERS; i++) {
        memset(&x[i], 0, sizeof x[i]);
        x[i].f = f;
        x[i].go = &go;
        x[i].to = to;
        x[i].now = now - (i % 2) * odd_shift;
        queue(f, OTT_RESET, to, x[i].now, x[i].ids[0]);
        queue(f, OTT_RESET, to, x[i].now, x[i].ids[1]);
    }
    for (i = 0; i < RACERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, cap_race, &x[i]), 0);
    for (i = 0; i < RACERS; i++) {
        pthread_join(t[i], NULL);
        ready += x[i].ready;
    }
    pthread_barrier_destroy(&go);
    return ready;
}

/* Many instances resolving mails to one address at once never pass the
 * cap: counts of one address wait for each other. Several rounds. */
static void concurrent_resolves_keep_the_cap(void **state)
{
    struct fx *f = *state;
    struct user u;
    int round;

    new_user(f, &u, "crowd@example.com");
    for (round = 0; round < 4; round++) {
        assert_int_equal(cap_round(f, u.email, T0, 0), round == 0 ? 5 : 0);
        assert_int_equal(count(f, "SELECT count(*) FROM one_time_tokens"),
                         5);
        assert_int_equal(count(f, "SELECT count(*) FROM outbox"), 5);
    }
}

/* The same across the end of a minute, where the racers count in
 * different rows: they still wait for each other (the row each count
 * locks first), so none sums without the others' mails. Rounds of fresh
 * recipients. */
static void concurrent_resolves_across_a_minute_keep_the_cap(void **state)
{
    struct fx *f = *state;
    struct user u;
    char email[64];
    int round;

    for (round = 0; round < 12; round++) {
        /* a minute's first millisecond and the last one before it */
        int64_t edge = T0 + round * 2 * HOUR;

        edge += MINUTE - edge % MINUTE;
        snprintf(email, sizeof email, "edge%d@example.com", round);
        new_user(f, &u, email);
        assert_int_equal(cap_round(f, u.email, edge, 1), 5);
    }
}

/* Values no caller sends but a bug or a mail server could: the calls
 * that only record an outcome still record it, the others refuse the
 * same way on both backends, and nothing half-done stays behind. */
static void hostile_values_fail_the_same_way(void **state)
{
    struct fx *f = *state;
    static const char bad[] = "550 \xff\xfe not UTF-8";
    char long_id[2 * UUID_STR_LEN];
    char id[UUID_STR_LEN], uid[UUID_STR_LEN];
    struct outbox_row m, got;
    enum outbox_fate fate;
    struct ott t = { .purpose = OTT_RESET, .created_at = T0,
                     .expires_at = T0 + HOUR, .hash = { 9 } };
    struct user u;
    uint8_t h[REPO_HASH_LEN] = { 7 };

    new_user(f, &u, "hal@example.com");
    assert_int_equal(issue(f, OTT_RESET, u.email, T0, NULL, NULL), AS_OK);
    assert_int_equal(repo_outbox_claim(f->r, T0, T0 + LEASE, &got, f->a),
                     AS_OK);
    /* a mail server's reply that is not UTF-8 still counts the try */
    assert_int_equal(repo_outbox_failed(f->r, got.id, T0 + 10, bad), AS_OK);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox WHERE "
                              "attempts = 1 AND locked_until = 0 AND "
                              "next_attempt_at = 1700000000010 AND "
                              "last_error IS NOT NULL"), 1);
    /* ids that cannot be stored match nothing, and are no error */
    assert_int_equal(repo_outbox_sent(f->r, "\xff", T0), AS_OK);
    assert_int_equal(repo_outbox_failed(f->r, "\xff", T0, "x"), AS_OK);
    assert_int_equal(repo_outbox_drop(f->r, "\xff"), AS_OK);
    assert_int_equal(repo_outbox_sent(f->r, NULL, T0), AS_OK);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox WHERE "
                              "sent_at IS NULL AND attempts = 1"), 1);
    /* a reset without a user to bind to */
    assert_int_equal(repo_ott_reset(f->r, h, NULL, "$x", false, T0),
                     AS_ERR_NOT_FOUND);
    /* a notice for a user id no id can be: refused, the row kept */
    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    memset(&m, 0, sizeof m);
    uuid_v7_new(m.id);
    m.kind = "security_notice";
    m.user_id = u.id;
    m.recipient = u.email;
    m.created_at = T0;
    assert_int_equal(repo_outbox_add(f->r, &m, 0), AS_OK);
    m.user_id = long_id;
    assert_int_equal(repo_outbox_resolve(f->r, &m, NULL, 5, T0, &fate, uid),
                     AS_ERR_BAD_REQUEST);
    assert_int_equal(fate, OUTBOX_NO_USER);
    assert_string_equal(uid, "");
    assert_string_equal(row_text(f, "user_id", m.id), u.id);
    /* a mail that went before it was resolved: nothing stored, nothing
     * counted */
    queue(f, OTT_RESET, u.email, T0, id);
    m.user_id = u.id;
    snprintf(m.id, sizeof m.id, "%s", id);
    m.kind = "password_reset";
    assert_int_equal(repo_outbox_drop(f->r, id), AS_OK);
    assert_int_equal(count(f, "SELECT coalesce(sum(n), 0) FROM mail_counts"),
                     1);
    assert_int_equal(repo_outbox_resolve(f->r, &m, &t, 5, T0, &fate, uid),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(fate, OUTBOX_NO_USER);
    assert_string_equal(uid, "");
    assert_int_equal(count(f, "SELECT count(*) FROM one_time_tokens"), 1);
    assert_int_equal(count(f, "SELECT coalesce(sum(n), 0) FROM mail_counts"),
                     1);
}

static void pg_skipped(void **state)
{
    (void)state;
    print_message("AUTH_TEST_PG_URL is not set: PostgreSQL cases skipped\n");
    skip();
}

#define CASE(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest cases[] = {
        CASE(reset_works_once_and_revokes),
        CASE(reset_token_limits),
        CASE(verify_binds_the_email),
        CASE(outbox_lease_retry_and_sent),
        CASE(prune_and_cascade),
        CASE(the_sweep_goes_a_batch_at_a_time),
        CASE(concurrent_claims_take_each_row_once),
        CASE(concurrent_resets_have_one_winner),
        CASE(a_password_change_racing_a_resolution_ends_its_link),
        CASE(cap_per_recipient_per_hour),
        CASE(subaddresses_share_their_mailboxs_cap),
        CASE(subaddresses_hold_back_no_notice),
        CASE(one_account_through_many_tags_is_one_mailbox),
        CASE(held_notices_stay_one_per_mailbox),
        CASE(cap_is_a_sliding_hour),
        CASE(notices_have_a_cap_of_their_own),
        CASE(a_held_notice_stands_only_for_its_account),
        CASE(fresh_mail_ahead_of_retries),
        CASE(queuing_prunes_a_few_stale_mails),
        CASE(unknown_and_stale_requests_are_dropped),
        CASE(password_change_retires_reset_tokens),
        CASE(concurrent_resolves_keep_the_cap),
        CASE(concurrent_resolves_across_a_minute_keep_the_cap),
        CASE(hostile_values_fail_the_same_way),
    };
    const struct CMUnitTest pg_off[] = {
        cmocka_unit_test(pg_skipped),
    };
    const char *url = getenv("AUTH_TEST_PG_URL");
    int failed = 0;

    if (sodium_init() < 0)
        return 1;
    failed += cmocka_run_group_tests_name("sqlite", cases, NULL, NULL);
    if (url && *url && strstr(url, "://")) {
        pg_url = url;
        failed += cmocka_run_group_tests_name("postgres", cases, NULL, NULL);
    } else {
        failed += cmocka_run_group_tests_name("postgres", pg_off, NULL,
                                              NULL);
    }
    return failed;
}
