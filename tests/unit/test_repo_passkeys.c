/* test_repo_passkeys.c: the passkey storage primitives (repo_passkey_*)
 * on both backends alike: a challenge is used up once, by its ceremony,
 * before it expires, and only for a user that exists; a credential id
 * registers once; a registration for a user that is gone is not found;
 * lookups of text PostgreSQL cannot hold find nothing; the counter only
 * moves forward of the stored one, so of concurrent takers or users with
 * one counter exactly one wins, and of concurrent users with increasing
 * counters the highest always does; a user holds at most the number
 * repo_passkey_insert() is given however many are inserted at once.
 * Runs on SQLite, and on PostgreSQL too when AUTH_TEST_PG_URL is set (in
 * a schema of its own, dropped at the end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "repo.h"
#include "uuid.h"

#define MOST 20                  /* passkeys a user may hold, here */

#define T0 INT64_C(1700000000000)
#define ROUNDS 20
#define RACERS 8

static char pg_base[1024];           /* AUTH_TEST_PG_URL, or "" */
static bool on_pg;
static unsigned seq;

struct fx {
    struct cfg cfg;
    struct repo *r;
    struct arena *a;
    char path[PATH_MAX];
    char url[PATH_MAX + 1200];
    char schema[48];
    struct user u, v;
};

/* Runs `sql` on the PostgreSQL of AUTH_TEST_PG_URL; 0 when it went. */
static int pg_side(const char *sql)
{
    PGconn *pc = PQconnectdb(pg_base);
    PGresult *r = PQexec(pc, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;

    PQclear(r);
    PQfinish(pc);
    return rc;
}

static void user_make(struct fx *f, struct user *u, const char *email)
{
    uuid_v7_new(u->id);
    u->email = email;
    u->password_hash = "$argon2id$v=19$m=8192,t=1,p=1$x$y";
    u->is_active = true;
    u->created_at = u->updated_at = T0;
    assert_int_equal(repo_user_insert(f->r, u), AS_OK);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("AUTH_TEST_TMP");
    char sql[256];

    *state = f;
    if (!f)
        return -1;
    if (!tmp || !*tmp)
        tmp = "/tmp";
    mkdir(tmp, 0700);
    if (on_pg) {
        snprintf(f->schema, sizeof f->schema, "pk%ld_%u", (long)getpid(),
                 ++seq);
        snprintf(sql, sizeof sql, "SET client_min_messages = warning; "
                 "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s",
                 f->schema, f->schema);
        if (pg_side(sql) != 0)
            return -1;
        snprintf(f->url, sizeof f->url,
                 "%s%soptions=-c%%20search_path%%3D%s", pg_base,
                 strchr(pg_base, '?') ? "&" : "?", f->schema);
    } else {
        snprintf(f->path, sizeof f->path, "%s/pk-XXXXXX", tmp);
        if (!mkdtemp(f->path))
            return -1;
        snprintf(f->url, sizeof f->url, "sqlite:%s/auth.db", f->path);
    }
    f->cfg.database_url = f->url;
    f->cfg.cb_failure_threshold = 1000;
    f->cfg.db_pool_size = RACERS + 2;
    f->cfg.db_timeout_ms = 5000;
    f->a = arena_new();
    if (!f->a || repo_open(&f->cfg, &f->r) != AS_OK ||
        repo_migrate(f->r) != AS_OK)
        return -1;
    user_make(f, &f->u, "ada@example.com");
    user_make(f, &f->v, "bob@example.com");
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char p[PATH_MAX + 16];

    if (!f)
        return 0;
    repo_close(f->r);
    arena_free(f->a);
    if (f->schema[0]) {
        snprintf(p, sizeof p, "DROP SCHEMA IF EXISTS %s CASCADE",
                 f->schema);
        pg_side(p);
    }
    if (f->path[0]) {
        snprintf(p, sizeof p, "%s/auth.db", f->path);
        unlink(p);
        snprintf(p, sizeof p, "%s/auth.db-wal", f->path);
        unlink(p);
        snprintf(p, sizeof p, "%s/auth.db-shm", f->path);
        unlink(p);
        rmdir(f->path);
    }
    free(f);
    return 0;
}

/* A challenge hash that differs by `n`. */
static void hash_of(unsigned n, uint8_t h[REPO_HASH_LEN])
{
    memset(h, 0xa5, REPO_HASH_LEN);
    h[0] = 0;                            /* bytes, not text */
    memcpy(h + 1, &n, sizeof n);
}

static void passkey_of(const struct user *u, const char *cred,
                       struct passkey *p)
{
    memset(p, 0, sizeof *p);
    uuid_v7_new(p->id);
    snprintf(p->user_id, sizeof p->user_id, "%s", u->id);
    p->cred_id = cred;
    p->public_key = "pQECAyYgASFYIA";
    p->sign_count = 0;
    p->transports = "[\"internal\",\"hybrid\"]";
    p->name = "Laptop";
    p->created_at = T0;
}

/* repo_passkey_challenge_take() without an owner. */
static enum as_err take(struct fx *f, const uint8_t *h,
                        enum passkey_ceremony ceremony, int64_t now,
                        char uid[UUID_STR_LEN])
{
    return repo_passkey_challenge_take(f->r, h, ceremony, NULL, now, uid);
}

static void challenge_is_used_once(void **state)
{
    struct fx *f = *state;
    uint8_t h[REPO_HASH_LEN];
    char uid[UUID_STR_LEN];

    hash_of(1, h);
    assert_int_equal(repo_passkey_challenge_put(f->r, h, PK_REGISTER,
                                                f->u.id, 0, T0, T0 + 1000),
                     AS_OK);
    assert_int_equal(take(f, h, PK_LOGIN, T0, uid), AS_ERR_NOT_FOUND);
    assert_int_equal(take(f, h, PK_REGISTER, T0, uid), AS_OK);
    assert_string_equal(uid, f->u.id);
    assert_int_equal(take(f, h, PK_REGISTER, T0, uid), AS_ERR_NOT_FOUND);

    hash_of(2, h);                       /* a login's: bound to nobody */
    assert_int_equal(repo_passkey_challenge_put(f->r, h, PK_LOGIN, NULL, 0,
                                                T0, T0 + 1000), AS_OK);
    assert_int_equal(take(f, h, PK_LOGIN, T0 + 999, uid), AS_OK);
    assert_string_equal(uid, "");

    hash_of(3, h);                       /* expired */
    assert_int_equal(repo_passkey_challenge_put(f->r, h, PK_LOGIN, NULL, 0,
                                                T0, T0 + 1000), AS_OK);
    assert_int_equal(take(f, h, PK_LOGIN, T0 + 1000, uid),
                     AS_ERR_NOT_FOUND);

    hash_of(4, h);                       /* for a user that is gone */
    assert_int_equal(repo_user_delete(f->r, f->v.id, 1000), AS_OK);
    assert_int_equal(repo_passkey_challenge_put(f->r, h, PK_REGISTER,
                                                f->v.id, 0, T0, T0 + 1000),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(take(f, h, PK_REGISTER, T0, uid), AS_ERR_NOT_FOUND);
}

/* With an owner, only that user's challenge is used up: another user
 * presenting it is refused and leaves it to its owner. */
static void a_challenge_is_used_up_by_its_owner_only(void **state)
{
    struct fx *f = *state;
    uint8_t h[REPO_HASH_LEN];
    char uid[UUID_STR_LEN];

    hash_of(7, h);
    assert_int_equal(repo_passkey_challenge_put(f->r, h, PK_REGISTER,
                                                f->u.id, 0, T0, T0 + 1000),
                     AS_OK);
    assert_int_equal(repo_passkey_challenge_take(f->r, h, PK_REGISTER,
                                                 f->v.id, T0, uid),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_passkey_challenge_take(f->r, h, PK_REGISTER,
                                                 f->u.id, T0, uid), AS_OK);
    assert_string_equal(uid, f->u.id);
    assert_int_equal(repo_passkey_challenge_take(f->r, h, PK_REGISTER,
                                                 f->u.id, T0, uid),
                     AS_ERR_NOT_FOUND);
    hash_of(8, h);                       /* a login's, bound to nobody */
    assert_int_equal(repo_passkey_challenge_put(f->r, h, PK_LOGIN, NULL, 0,
                                                T0, T0 + 1000), AS_OK);
    assert_int_equal(repo_passkey_challenge_take(f->r, h, PK_LOGIN, f->u.id,
                                                 T0, uid),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(take(f, h, PK_LOGIN, T0, uid), AS_OK);
}

/* With `keep`, a user's challenges of a ceremony but the newest `keep`
 * are forgotten as a new one is stored; another user's, and challenges
 * stored without `keep`, stay. */
static void a_user_keeps_the_newest_challenges(void **state)
{
    struct fx *f = *state;
    uint8_t h[REPO_HASH_LEN];
    char uid[UUID_STR_LEN];
    int i;

    hash_of(100, h);                      /* the other user's */
    assert_int_equal(repo_passkey_challenge_put(f->r, h, PK_REGISTER,
                                                f->v.id, 3, T0, T0 + 1000),
                     AS_OK);
    for (i = 0; i < 8; i++) {
        hash_of(10 + i, h);
        assert_int_equal(repo_passkey_challenge_put(f->r, h, PK_REGISTER,
                                                    f->u.id, 3, T0 + i,
                                                    T0 + 1000), AS_OK);
    }
    for (i = 0; i < 8; i++) {
        hash_of(10 + i, h);
        assert_int_equal(take(f, h, PK_REGISTER, T0, uid),
                         i < 5 ? AS_ERR_NOT_FOUND : AS_OK);
    }
    hash_of(100, h);
    assert_int_equal(take(f, h, PK_REGISTER, T0, uid), AS_OK);
    assert_string_equal(uid, f->v.id);
}

/* Newest is the order they were asked for, not the clock's: challenges
 * of one millisecond, or of a clock set back, are forgotten oldest first
 * (their hashes sort the other way round here). */
static void newest_is_the_order_asked(void **state)
{
    struct fx *f = *state;
    uint8_t h[REPO_HASH_LEN];
    char uid[UUID_STR_LEN];
    int i;

    for (i = 0; i < 8; i++) {
        hash_of(200 - (unsigned)i, h);
        assert_int_equal(repo_passkey_challenge_put(f->r, h, PK_REGISTER,
                                                    f->u.id, 3,
                                                    i < 4 ? T0 : T0 - i,
                                                    T0 + 1000), AS_OK);
    }
    for (i = 0; i < 8; i++) {
        hash_of(200 - (unsigned)i, h);
        assert_int_equal(take(f, h, PK_REGISTER, T0, uid),
                         i < 5 ? AS_ERR_NOT_FOUND : AS_OK);
    }
}

static void credential_registers_once(void **state)
{
    struct fx *f = *state;
    struct passkey p, q, got, *list = NULL;
    size_t n = 0;

    passkey_of(&f->u, "Y3JlZC1vbmU", &p);
    assert_int_equal(repo_passkey_insert(f->r, &p, MOST), AS_OK);
    passkey_of(&f->v, "Y3JlZC1vbmU", &q);    /* same credential id */
    assert_int_equal(repo_passkey_insert(f->r, &q, MOST), AS_ERR_CONFLICT);

    assert_int_equal(repo_passkey_by_cred(f->r, "Y3JlZC1vbmU", &got, f->a),
                     AS_OK);
    assert_string_equal(got.id, p.id);
    assert_string_equal(got.user_id, f->u.id);
    assert_string_equal(got.public_key, p.public_key);
    assert_string_equal(got.transports, p.transports);
    assert_string_equal(got.name, "Laptop");
    assert_int_equal(got.sign_count, 0);
    assert_int_equal(got.created_at, T0);
    assert_int_equal(got.last_used_at, 0);

    passkey_of(&f->u, "Y3JlZC10d28", &q);
    assert_int_equal(repo_passkey_insert(f->r, &q, MOST), AS_OK);
    assert_int_equal(repo_passkey_list(f->r, f->u.id, &list, &n, f->a),
                     AS_OK);
    assert_int_equal(n, 2);                  /* in id order */
    assert_true(strcmp(list[0].id, list[1].id) < 0);
    assert_true(strcmp(list[0].id, p.id) == 0 ||
                strcmp(list[1].id, p.id) == 0);
    assert_true(strcmp(list[0].id, q.id) == 0 ||
                strcmp(list[1].id, q.id) == 0);
    assert_int_equal(repo_passkey_list(f->r, f->v.id, &list, &n, f->a),
                     AS_OK);
    assert_int_equal(n, 0);

    assert_int_equal(repo_passkey_delete(f->r, q.id, f->v.id, T0 + 50),
                     AS_ERR_NOT_FOUND);      /* not bob's */
    assert_int_equal(repo_passkey_delete(f->r, q.id, f->u.id, T0 + 50), AS_OK);
    assert_int_equal(repo_passkey_delete(f->r, q.id, f->u.id, T0 + 50),
                     AS_ERR_NOT_FOUND);

    /* the user was deleted between its login and its registration */
    assert_int_equal(repo_user_delete(f->r, f->v.id, 1000), AS_OK);
    passkey_of(&f->v, "Y3JlZC10aHJlZQ", &q);
    assert_int_equal(repo_passkey_insert(f->r, &q, MOST), AS_ERR_NOT_FOUND);
}

/* Text that is not UTF-8 was never stored on either backend. */
static void lookups_of_bad_text_find_nothing(void **state)
{
    struct fx *f = *state;
    struct passkey got, *list = NULL;
    size_t n = 7;

    assert_int_equal(repo_passkey_by_cred(f->r, "\xff\xfe", &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_passkey_list(f->r, "\xc3(", &list, &n, f->a),
                     AS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(repo_passkey_delete(f->r, "\xff", f->u.id, T0 + 50),
                     AS_ERR_NOT_FOUND);
}

/* The stored counter decides, not the one the caller read: a counter
 * above it moves it, one at or below it does not, zero stays while both
 * are zero; a passkey that is gone is not found. */
static void counter_moves_forward_only(void **state)
{
    struct fx *f = *state;
    struct passkey p, got;

    passkey_of(&f->u, "Y291bnRlcg", &p);
    assert_int_equal(repo_passkey_insert(f->r, &p, MOST), AS_OK);
    assert_int_equal(repo_passkey_use(f->r, p.id, 0, T0 + 5), AS_OK);
    assert_int_equal(repo_passkey_use(f->r, p.id, 5, T0 + 10), AS_OK);
    /* read at 0, stored 5 meanwhile: 6 is still ahead */
    assert_int_equal(repo_passkey_use(f->r, p.id, 6, T0 + 20), AS_OK);
    assert_int_equal(repo_passkey_use(f->r, p.id, 6, T0 + 30),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_passkey_use(f->r, p.id, 3, T0 + 30),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_passkey_use(f->r, p.id, 0, T0 + 30),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_passkey_by_cred(f->r, "Y291bnRlcg", &got, f->a),
                     AS_OK);
    assert_int_equal(got.sign_count, 6);
    assert_int_equal(got.last_used_at, T0 + 20);

    assert_int_equal(repo_passkey_delete(f->r, p.id, f->u.id, T0 + 50), AS_OK);
    assert_int_equal(repo_passkey_use(f->r, p.id, 7, T0 + 40),
                     AS_ERR_NOT_FOUND);
}

/* A session of `u` started by a login with passkey `passkey_id` (NULL:
 * another kind of login), living an hour from T0. */
static enum as_err session_by(struct fx *f, struct session *s,
                              const struct user *u, const char *passkey_id)
{
    uint8_t h[REPO_HASH_LEN];

    memset(s, 0, sizeof *s);
    uuid_v7_new(s->id);
    snprintf(s->user_id, sizeof s->user_id, "%s", u->id);
    s->created_at = s->last_used_at = T0;
    s->expires_at = T0 + 3600 * 1000;
    s->pw_gen = -1;
    s->passkey_id = passkey_id;
    randombytes_buf(h, REPO_HASH_LEN);
    return repo_session_create(f->r, s, h, NULL);
}

static bool session_live(struct fx *f, const char *sid)
{
    struct session_state st = { .live = true };

    assert_int_equal(repo_session_state(f->r, sid, T0 + 100, &st), AS_OK);
    return st.live;
}

/* Deleting a passkey ends the sessions its logins started, and only
 * those (a passkey added with a stolen access token and deleted by the
 * owner kept them alive before); a login whose passkey was deleted
 * meanwhile stores no session. */
static void deleting_a_passkey_ends_its_sessions(void **state)
{
    struct fx *f = *state;
    struct passkey p, q;
    struct session s1, s2, s3, s4;

    passkey_of(&f->u, "ZW5kcw", &p);
    passkey_of(&f->u, "a2VlcHM", &q);
    assert_int_equal(repo_passkey_insert(f->r, &p, MOST), AS_OK);
    assert_int_equal(repo_passkey_insert(f->r, &q, MOST), AS_OK);
    assert_int_equal(session_by(f, &s1, &f->u, p.id), AS_OK);
    assert_int_equal(session_by(f, &s2, &f->u, q.id), AS_OK);
    assert_int_equal(session_by(f, &s3, &f->u, NULL), AS_OK);
    assert_int_equal(repo_passkey_delete(f->r, p.id, f->u.id, T0 + 50),
                     AS_OK);
    assert_false(session_live(f, s1.id));
    assert_true(session_live(f, s2.id));
    assert_true(session_live(f, s3.id));
    assert_int_equal(session_by(f, &s4, &f->u, p.id),
                     AS_ERR_BAD_CREDENTIALS);
}

enum race_op { TAKE, USE, INSERT, START, DELETE };

struct racer {
    struct fx *f;
    pthread_barrier_t *go;
    enum race_op op;
    const uint8_t *hash;                 /* TAKE this challenge */
    const char *id;                      /* USE this passkey */
    int64_t to;
    const struct passkey *p;             /* INSERT this one */
    struct session s;                    /* START: the session stored */
    enum as_err got;
};

static void *race(void *arg)
{
    struct racer *x = arg;
    char uid[UUID_STR_LEN];

    pthread_barrier_wait(x->go);
    if (x->op == TAKE)
        x->got = take(x->f, x->hash, PK_LOGIN, T0, uid);
    else if (x->op == USE)
        x->got = repo_passkey_use(x->f->r, x->id, x->to, T0);
    else if (x->op == START)
        x->got = session_by(x->f, &x->s, &x->f->u, x->id);
    else if (x->op == DELETE)
        x->got = repo_passkey_delete(x->f->r, x->id, x->f->u.id, T0 + 50);
    else
        x->got = repo_passkey_insert(x->f->r, x->p, MOST);
    return NULL;
}

/* Starts the RACERS of `x` at once and waits for them all. */
static void run_race(struct fx *f, struct racer x[RACERS])
{
    pthread_t th[RACERS];
    pthread_barrier_t go;
    int i;

    pthread_barrier_init(&go, NULL, RACERS);
    for (i = 0; i < RACERS; i++) {
        x[i].f = f;
        x[i].go = &go;
        assert_int_equal(pthread_create(&th[i], NULL, race, &x[i]), 0);
    }
    for (i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
}

/* RACERS threads at once, ROUNDS times: exactly one takes each challenge
 * and exactly one moves the counter from each value. */
static void concurrent_uses_have_one_winner(void **state)
{
    struct fx *f = *state;
    struct racer x[RACERS];
    uint8_t h[REPO_HASH_LEN];
    struct passkey p, got;
    int round, i, won;

    passkey_of(&f->u, "cmFjZQ", &p);
    assert_int_equal(repo_passkey_insert(f->r, &p, MOST), AS_OK);
    for (round = 0; round < 2 * ROUNDS; round++) {
        bool take = round % 2 == 0;

        hash_of(100u + (unsigned)round, h);
        if (take)
            assert_int_equal(repo_passkey_challenge_put(f->r, h, PK_LOGIN,
                                                        NULL, 0, T0, T0 + 1000),
                             AS_OK);
        for (i = 0; i < RACERS; i++)
            x[i] = (struct racer){ .op = take ? TAKE : USE, .hash = h,
                                   .id = p.id,
                                   .to = round / 2 + 1 };
        run_race(f, x);
        for (i = 0, won = 0; i < RACERS; i++) {
            assert_true(x[i].got == AS_OK || x[i].got == AS_ERR_NOT_FOUND);
            won += x[i].got == AS_OK;
        }
        assert_int_equal(won, 1);
    }
    assert_int_equal(repo_passkey_by_cred(f->r, "cmFjZQ", &got, f->a),
                     AS_OK);
    assert_int_equal(got.sign_count, ROUNDS);
}

/* Logins storing their sessions while the passkey they used is deleted,
 * ROUNDS times: each session is refused, or stored and then ended by
 * the deletion; none stays live. */
static void a_deletion_racing_logins_leaves_none_live(void **state)
{
    struct fx *f = *state;
    struct racer x[RACERS];
    struct passkey p;
    char cred[32];
    int round, i, stored = 0, refused = 0;

    for (round = 0; round < ROUNDS; round++) {
        snprintf(cred, sizeof cred, "cmFjZS0%04d", round);
        passkey_of(&f->u, cred, &p);
        assert_int_equal(repo_passkey_insert(f->r, &p, RACERS * ROUNDS),
                         AS_OK);
        for (i = 0; i < RACERS; i++)
            x[i] = (struct racer){ .op = i == RACERS / 2 ? DELETE : START,
                                   .id = p.id };
        run_race(f, x);
        for (i = 0; i < RACERS; i++) {
            if (x[i].op == DELETE) {
                assert_int_equal(x[i].got, AS_OK);
                continue;
            }
            assert_true(x[i].got == AS_OK ||
                        x[i].got == AS_ERR_BAD_CREDENTIALS);
            if (x[i].got == AS_OK)
                assert_false(session_live(f, x[i].s.id));
            stored += x[i].got == AS_OK;
            refused += x[i].got != AS_OK;
        }
    }
    print_message("%s: %d sessions stored then ended, %d refused\n",
                  on_pg ? "postgres" : "sqlite", stored, refused);
}

/* RACERS uses at once, all read at the same counter and each one ahead
 * of it (base + 1 .. base + RACERS), ROUNDS times: the highest always
 * wins and is what stays; every other one wins or loses as some serial
 * order of them would (it loses only to a higher one). */
static void increasing_uses_serialise(void **state)
{
    struct fx *f = *state;
    struct racer x[RACERS];
    struct passkey p, got;
    int64_t base = 0, top_won;
    int round, i;

    passkey_of(&f->u, "aW5jcmVhc2luZw", &p);
    assert_int_equal(repo_passkey_insert(f->r, &p, MOST), AS_OK);
    for (round = 0; round < ROUNDS; round++) {
        for (i = 0; i < RACERS; i++)
            x[i] = (struct racer){ .op = USE, .id = p.id,
                                   .to = base + 1 + i };
        run_race(f, x);
        for (i = 0, top_won = 0; i < RACERS; i++) {
            assert_true(x[i].got == AS_OK || x[i].got == AS_ERR_NOT_FOUND);
            if (x[i].got == AS_OK && x[i].to > top_won)
                top_won = x[i].to;
        }
        assert_int_equal(x[RACERS - 1].got, AS_OK);
        for (i = 0; i < RACERS; i++)
            assert_true(x[i].got == AS_OK || x[i].to < top_won);
        base += RACERS;
        assert_int_equal(repo_passkey_by_cred(f->r, "aW5jcmVhc2luZw", &got,
                                              f->a), AS_OK);
        assert_int_equal(got.sign_count, base);
    }
}

/* A user holds at most MOST passkeys: with a few places
 * left, RACERS inserts at once fill exactly those and the rest are
 * refused (AS_ERR_TOO_LARGE), then every further one is; another user is
 * not held up by it. */
static void cap_holds_at_insert(void **state)
{
    enum { LEFT = RACERS / 2 };
    struct fx *f = *state;
    struct racer x[RACERS];
    struct passkey p[MOST + RACERS], *list = NULL;
    char cred[MOST + RACERS + 1][16];
    size_t n = 0;
    int i, k = 0, won;

    for (i = 0; i < MOST - LEFT; i++, k++) {
        snprintf(cred[k], sizeof cred[k], "Y2FwLT%03d", k);
        passkey_of(&f->u, cred[k], &p[k]);
        assert_int_equal(repo_passkey_insert(f->r, &p[k], MOST), AS_OK);
    }
    for (i = 0; i < RACERS; i++, k++) {
        snprintf(cred[k], sizeof cred[k], "Y2FwLT%03d", k);
        passkey_of(&f->u, cred[k], &p[k]);
        x[i] = (struct racer){ .op = INSERT, .p = &p[k] };
    }
    run_race(f, x);
    for (i = 0, won = 0; i < RACERS; i++) {
        assert_true(x[i].got == AS_OK || x[i].got == AS_ERR_TOO_LARGE);
        won += x[i].got == AS_OK;
    }
    assert_int_equal(won, LEFT);
    assert_int_equal(repo_passkey_list(f->r, f->u.id, &list, &n, f->a),
                     AS_OK);
    assert_int_equal(n, MOST);

    snprintf(cred[k], sizeof cred[k], "Y2FwLT%03d", k);
    passkey_of(&f->u, cred[k], &p[0]);
    assert_int_equal(repo_passkey_insert(f->r, &p[0], MOST), AS_ERR_TOO_LARGE);
    passkey_of(&f->v, cred[k], &p[0]);
    assert_int_equal(repo_passkey_insert(f->r, &p[0], MOST), AS_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define CASE(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        CASE(challenge_is_used_once),
        CASE(a_challenge_is_used_up_by_its_owner_only),
        CASE(a_user_keeps_the_newest_challenges),
        CASE(newest_is_the_order_asked),
        CASE(credential_registers_once),
        CASE(lookups_of_bad_text_find_nothing),
        CASE(counter_moves_forward_only),
        CASE(concurrent_uses_have_one_winner),
        CASE(increasing_uses_serialise),
        CASE(cap_holds_at_insert),
        CASE(deleting_a_passkey_ends_its_sessions),
        CASE(a_deletion_racing_logins_leaves_none_live),
#undef CASE
    };
    const char *base = getenv("AUTH_TEST_PG_URL");
    int failed;

    failed = cmocka_run_group_tests_name("sqlite", tests, NULL, NULL);
    if (base && *base) {
        snprintf(pg_base, sizeof pg_base, "%s", base);
        on_pg = true;
        failed += cmocka_run_group_tests_name("postgres", tests, NULL, NULL);
    }
    return failed;
}
