/* test_repo.c: the repository contract, run against SQLite and, when
 * AUTH_TEST_PG_URL names a disposable PostgreSQL database (its tables are
 * emptied before each case), against PostgreSQL with the same cases. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "breaker.h"
#include "cfg.h"
#include "clock.h"
#include "rotation.h"
#include "lockout.h"
#include "migrations.h"
#include "repo.h"
#include "repo/driver.h"
#include "repo/repo_int.h"

#define T0 INT64_C(1700000000000)        /* a fixed "now" in Unix ms */
#define DAY INT64_C(86400000)
#define GRACE INT64_C(10000)
#define LIFE (90 * DAY)                 /* AUTH_SESSION_MAX_SECONDS */
#define DIR_MAX 2048

/* The backend the current group runs on: NULL url means a fresh SQLite
 * file per case. */
/* Every rotated-out token names its session (repo_refresh_session()). */
static const struct repo_kept EVERY_KEPT = { INT64_MIN, INT64_MIN };

/* What src/core/sessions.c keeps at `now` for a lifetime of a day. */
static struct repo_kept kept_at(int64_t now)
{
    return (struct repo_kept){ rotation_kept_from(now, DAY, GRACE),
                               now - GRACE };
}

static const char *pg_url;
static bool on_pg;

struct fx {
    struct cfg cfg;
    struct repo *r;
    struct arena *a;
    char dir[DIR_MAX];           /* SQLite: the case's temp folder */
    char url[PATH_MAX + 32];
    char db[PATH_MAX];           /* SQLite: the database file */
    PGconn *side;                /* PostgreSQL: scalar()'s connection */
};

/* ---- fixture ----------------------------------------------------------- */

static void fill_cfg(struct cfg *c, char *url)
{
    memset(c, 0, sizeof *c);
    c->database_url = url;
    c->cb_failure_threshold = 3;
    c->cb_open_seconds = 60;
    c->db_pool_size = 4;
    c->db_timeout_ms = 5000;
}

/* A fresh folder under $AUTH_TEST_TMP (or /tmp) in `out`. */
static int make_tmp(char out[DIR_MAX])
{
    const char *base = getenv("AUTH_TEST_TMP");

    if (!base || !*base)
        base = "/tmp";
    if (mkdir(base, 0700) != 0 && errno != EEXIST)
        return -1;
    if (snprintf(out, DIR_MAX, "%s/repo-XXXXXX", base) >= DIR_MAX)
        return -1;
    return mkdtemp(out) ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir)
{
    if (dir[0])
        nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* Empties the PostgreSQL tables (users cascades to the rest). */
static int pg_wipe(const char *url)
{
    PGconn *pc = PQconnectdb(url);
    PGresult *res = NULL;
    int rc = -1;

    if (PQstatus(pc) == CONNECTION_OK)
        res = PQexec(pc, "SET client_min_messages = warning; "
                         "TRUNCATE users CASCADE");
    if (res && PQresultStatus(res) == PGRES_COMMAND_OK)
        rc = 0;
    else
        fprintf(stderr, "pg wipe: %s\n", PQerrorMessage(pc));
    PQclear(res);
    PQfinish(pc);
    return rc;
}

/* Opens the repository of the group (a new SQLite file, or the emptied
 * PostgreSQL database) without migrating. */
static int fx_open(struct fx *f)
{
    if (on_pg) {
        snprintf(f->url, sizeof f->url, "%s", pg_url);
    } else {
        if (make_tmp(f->dir) != 0)
            return -1;
        /* A folder that does not exist yet: repo_open makes it. */
        snprintf(f->db, sizeof f->db, "%s/data/auth.db", f->dir);
        snprintf(f->url, sizeof f->url, "sqlite:%s", f->db);
    }
    fill_cfg(&f->cfg, f->url);
    f->a = arena_new();
    if (!f->a || repo_open(&f->cfg, &f->r) != AS_OK)
        return -1;
    return 0;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    *state = f;
    if (!f || fx_open(f) != 0 || repo_migrate(f->r) != AS_OK)
        return -1;
    return on_pg ? pg_wipe(pg_url) : 0;
}

/* Same, but the database is left without its schema. */
static int setup_bare(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    *state = f;
    return f && fx_open(f) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    if (!f)
        return 0;
    repo_close(f->r);
    arena_free(f->a);
    rm_tree(f->dir);
    if (f->side)
        PQfinish(f->side);
    free(f);
    return 0;
}

/* ---- helpers ----------------------------------------------------------- */

static void new_user(struct fx *f, struct user *u, const char *email,
                     enum role role, bool active)
{
    memset(u, 0, sizeof *u);
    uuid_v7_new(u->id);
    u->email = arena_strdup(f->a, email);
    u->full_name = NULL;
    u->password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    u->role = role;
    u->is_active = active;
    u->is_verified = false;
    u->created_at = u->updated_at = T0;
    assert_int_equal(repo_user_insert(f->r, u), AS_OK);
}

/* A session of `uid` created at `created`, expiring at `expires`, with a
 * random first refresh hash in `h`, and the upkeep `up` (NULL: none) in
 * its transaction. */
static void new_session_up(struct fx *f, struct session *s, const char *uid,
                           int64_t created, int64_t expires,
                           uint8_t h[REPO_HASH_LEN],
                           struct session_upkeep *up)
{
    memset(s, 0, sizeof *s);
    uuid_v7_new(s->id);
    snprintf(s->user_id, sizeof s->user_id, "%s", uid);
    s->created_at = s->last_used_at = created;
    s->expires_at = expires;
    s->ip = "127.0.0.1";
    s->user_agent = "test/1.0 \"quoted\"";
    randombytes_buf(h, REPO_HASH_LEN);
    assert_int_equal(repo_session_create(f->r, s, h, up), AS_OK);
}

static void new_session(struct fx *f, struct session *s, const char *uid,
                        int64_t created, int64_t expires,
                        uint8_t h[REPO_HASH_LEN])
{
    new_session_up(f, s, uid, created, expires, h, NULL);
}

static bool live(struct fx *f, const char *sid, int64_t now)
{
    struct session_state st = { .live = true };

    assert_int_equal(repo_session_state(f->r, sid, now, &st), AS_OK);
    return st.live;
}

static int64_t revoked_at(struct fx *f, const char *sid)
{
    struct session s;

    assert_int_equal(repo_session_get(f->r, sid, &s, f->a), AS_OK);
    return s.revoked_at;
}

/* ---- users ------------------------------------------------------------- */

static void migrate_twice(void **state)
{
    struct fx *f = *state;
    struct user u, got;
    int64_t n = -1;

    new_user(f, &u, "kept@example.com", ROLE_USER, true);
    assert_int_equal(repo_migrate(f->r), AS_OK);
    assert_int_equal(repo_migrate(f->r), AS_OK);
    assert_int_equal(repo_user_count(f->r, false, &n), AS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_int_equal(repo_ping(f->r), AS_OK);
    assert_string_equal(repo_backend(f->r), on_pg ? "postgres" : "sqlite");
}

static void insert_and_get(void **state)
{
    struct fx *f = *state;
    struct user u, got;

    memset(&u, 0, sizeof u);
    uuid_v7_new(u.id);
    u.email = "ada@example.com";
    u.full_name = "Ada Lovelace";
    u.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    u.role = ROLE_ADMIN;
    u.is_active = true;
    u.is_verified = true;
    u.created_at = T0;
    u.updated_at = T0 + 5;
    assert_int_equal(repo_user_insert(f->r, &u), AS_OK);

    memset(&got, 0x5a, sizeof got);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.id, u.id);
    assert_string_equal(got.email, u.email);
    assert_string_equal(got.full_name, u.full_name);
    assert_string_equal(got.password_hash, u.password_hash);
    assert_int_equal(got.role, ROLE_ADMIN);
    assert_true(got.is_active);
    assert_true(got.is_verified);
    assert_int_equal(got.created_at, T0);
    assert_int_equal(got.updated_at, T0 + 5);
    assert_ptr_not_equal(got.email, u.email);       /* copied to arena */

    memset(&got, 0, sizeof got);
    assert_int_equal(repo_user_by_email(f->r, "ada@example.com", &got, f->a),
                     AS_OK);
    assert_string_equal(got.id, u.id);
    /* The caller normalises; the repository compares exactly. */
    assert_int_equal(repo_user_by_email(f->r, "Ada@example.com", &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_user_by_email(f->r, "bob@example.com", &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(
        repo_user_by_id(f->r, "00000000-0000-7000-8000-000000000000", &got,
                        f->a),
        AS_ERR_NOT_FOUND);

    new_user(f, &u, "noname@example.com", ROLE_USER, false);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_null(got.full_name);
    assert_int_equal(got.role, ROLE_USER);
    assert_false(got.is_active);
    assert_false(got.is_verified);
}

static void duplicate_email(void **state)
{
    struct fx *f = *state;
    struct user u, v;
    int64_t n = 0;

    new_user(f, &u, "dup@example.com", ROLE_USER, true);
    memcpy(&v, &u, sizeof v);
    uuid_v7_new(v.id);
    assert_int_equal(repo_user_insert(f->r, &v), AS_ERR_EMAIL_TAKEN);
    assert_int_equal(repo_user_count(f->r, false, &n), AS_OK);
    assert_int_equal(n, 1);
}

static void update_fields(void **state)
{
    struct fx *f = *state;
    struct user u, other, got;

    new_user(f, &u, "old@example.com", ROLE_USER, true);
    new_user(f, &other, "taken@example.com", ROLE_ADMIN, true);
    u.email = "new@example.com";
    u.full_name = "New Name";
    u.role = ROLE_ADMIN;
    u.is_verified = true;
    u.password_hash = "ignored by update";
    assert_int_equal(repo_user_update(f->r, &u, T0 + 100), AS_OK);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.email, "new@example.com");
    assert_string_equal(got.full_name, "New Name");
    assert_int_equal(got.role, ROLE_ADMIN);
    assert_true(got.is_verified);
    assert_true(got.is_active);
    assert_int_equal(got.created_at, T0);
    assert_int_equal(got.updated_at, T0 + 100);
    assert_string_not_equal(got.password_hash, "ignored by update");
    assert_int_equal(repo_user_by_email(f->r, "old@example.com", &got, f->a),
                     AS_ERR_NOT_FOUND);

    u.full_name = NULL;                              /* clears the name */
    assert_int_equal(repo_user_update(f->r, &u, T0 + 200), AS_OK);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_null(got.full_name);

    u.email = "taken@example.com";
    assert_int_equal(repo_user_update(f->r, &u, T0 + 300),
                     AS_ERR_EMAIL_TAKEN);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.email, "new@example.com");
    assert_int_equal(got.updated_at, T0 + 200);

    u.email = "ghost@example.com";
    uuid_v7_new(u.id);
    assert_int_equal(repo_user_update(f->r, &u, T0 + 400), AS_ERR_NOT_FOUND);
}

static void bulk(struct fx *f, const char *sid, int n, bool sessions);
static int64_t tokens_of(struct fx *f, const char *sid);

static void last_admin_is_kept(void **state)
{
    struct fx *f = *state;
    struct user a, b, idle, plain, got;
    struct session s;
    uint8_t h[REPO_HASH_LEN];
    int64_t n = -1;

    new_user(f, &a, "a@example.com", ROLE_ADMIN, true);
    new_user(f, &idle, "idle@example.com", ROLE_ADMIN, false);
    new_user(f, &plain, "plain@example.com", ROLE_USER, true);
    new_session(f, &s, a.id, T0, T0 + DAY, h);
    bulk(f, s.id, 30, false);               /* tokens it rotated out */
    assert_int_equal(repo_user_count(f->r, true, &n), AS_OK);
    assert_int_equal(n, 1);                 /* the inactive one is no help */

    a.role = ROLE_USER;
    assert_int_equal(repo_user_update(f->r, &a, T0 + 1), AS_ERR_LAST_ADMIN);
    a.role = ROLE_ADMIN;
    a.is_active = false;
    assert_int_equal(repo_user_update(f->r, &a, T0 + 1), AS_ERR_LAST_ADMIN);
    assert_int_equal(repo_user_delete(f->r, a.id, 1000), AS_ERR_LAST_ADMIN);
    /* Nothing changed, the session included. */
    assert_int_equal(repo_user_by_id(f->r, a.id, &got, f->a), AS_OK);
    assert_int_equal(got.role, ROLE_ADMIN);
    assert_true(got.is_active);
    assert_int_equal(got.updated_at, T0);
    assert_int_equal(revoked_at(f, s.id), 0);
    /* nor shed: a retry within the grace, or a replay, still finds its
     * rotated-out token */
    assert_int_equal(tokens_of(f, s.id), 31);
    /* Other changes to the last admin are fine. */
    a.is_active = true;
    a.full_name = "Still Admin";
    assert_int_equal(repo_user_update(f->r, &a, T0 + 2), AS_OK);
    /* Users other than admins are never held back. */
    assert_int_equal(repo_user_delete(f->r, plain.id, 1000), AS_OK);
    assert_int_equal(repo_user_delete(f->r, plain.id, 1000), AS_ERR_NOT_FOUND);
    assert_int_equal(repo_user_delete(f->r, idle.id, 1000), AS_OK);

    new_user(f, &b, "b@example.com", ROLE_ADMIN, true);
    a.role = ROLE_USER;
    assert_int_equal(repo_user_update(f->r, &a, T0 + 3), AS_OK);
    b.is_active = false;
    assert_int_equal(repo_user_update(f->r, &b, T0 + 4), AS_ERR_LAST_ADMIN);
    assert_int_equal(repo_user_delete(f->r, b.id, 1000), AS_ERR_LAST_ADMIN);
    a.role = ROLE_ADMIN;
    assert_int_equal(repo_user_update(f->r, &a, T0 + 5), AS_OK);
    assert_int_equal(repo_user_delete(f->r, b.id, 1000), AS_OK);
    assert_int_equal(repo_user_count(f->r, true, &n), AS_OK);
    assert_int_equal(n, 1);
}

static void deactivation_revokes_sessions(void **state)
{
    struct fx *f = *state;
    struct user u, admin;
    struct session s1, s2, other;
    uint8_t h1[REPO_HASH_LEN], h2[REPO_HASH_LEN], h3[REPO_HASH_LEN];
    const int64_t now = T0 + 1000;

    new_user(f, &admin, "root@example.com", ROLE_ADMIN, true);
    new_user(f, &u, "u@example.com", ROLE_USER, true);
    new_session(f, &s1, u.id, T0, T0 + DAY, h1);
    new_session(f, &s2, u.id, T0, T0 + DAY, h2);
    new_session(f, &other, admin.id, T0, T0 + DAY, h3);

    u.full_name = "Renamed";                 /* not a deactivation */
    assert_int_equal(repo_user_update(f->r, &u, now), AS_OK);
    assert_true(live(f, s1.id, now));

    u.is_active = false;
    assert_int_equal(repo_user_update(f->r, &u, now), AS_OK);
    assert_int_equal(revoked_at(f, s1.id), now);
    assert_int_equal(revoked_at(f, s2.id), now);
    assert_int_equal(revoked_at(f, other.id), 0);
    assert_true(live(f, other.id, now));

    u.is_active = true;                      /* revival does not undo it */
    assert_int_equal(repo_user_update(f->r, &u, now + 1), AS_OK);
    assert_false(live(f, s1.id, now + 1));
    assert_int_equal(revoked_at(f, s2.id), now);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(x, y);
}

static void list_pages(void **state)
{
    enum { N = 23, PAGE = 5 };
    struct fx *f = *state;
    char ids[N][UUID_STR_LEN], after[UUID_STR_LEN] = "";
    struct user u, page[PAGE];
    char email[64];
    size_t n, seen = 0, i;
    int guard = 0;

    for (i = 0; i < N; i++) {
        snprintf(email, sizeof email, "user%02zu@example.com", i);
        new_user(f, &u, email, ROLE_USER, true);
        memcpy(ids[i], u.id, UUID_STR_LEN);
    }
    qsort(ids, N, UUID_STR_LEN, cmp_str);
    do {
        assert_true(++guard <= N / PAGE + 2);
        n = 99;
        assert_int_equal(repo_user_list(f->r, NULL, after[0] ? after : NULL,
                                        PAGE, page, &n, f->a),
                         AS_OK);
        assert_true(n <= PAGE);
        for (i = 0; i < n; i++) {
            assert_true(seen < N);
            assert_string_equal(page[i].id, ids[seen]);   /* no gap, dup */
            assert_non_null(strstr(page[i].email, "@example.com"));
            seen++;
        }
        if (n)
            memcpy(after, page[n - 1].id, UUID_STR_LEN);
    } while (n == PAGE);
    assert_int_equal(seen, N);

    assert_int_equal(repo_user_list(f->r, NULL, NULL, 0, page, &n, f->a),
                     AS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(repo_user_list(f->r, NULL, ids[N - 1], PAGE, page, &n,
                                    f->a),
                     AS_OK);
    assert_int_equal(n, 0);
}

/* How many users match `q`; the first one's email in *first. */
static size_t count_q(struct fx *f, const char *q, const char **first)
{
    struct user out[16];
    size_t n = 99;

    assert_int_equal(repo_user_list(f->r, q, NULL, 16, out, &n, f->a),
                     AS_OK);
    if (first)
        *first = n ? out[0].email : NULL;
    return n;
}

static void list_query_is_literal(void **state)
{
    static const char *const emails[] = {
        "pct%sign@example.com", "pctxsign@example.com",
        "under_score@example.com", "underxscore@example.com",
        "o'brien@example.com", "back\\slash@example.com",
        "quote@example.com",
    };
    struct fx *f = *state;
    struct user u;
    const char *first;
    size_t i;

    for (i = 0; i < sizeof emails / sizeof emails[0]; i++) {
        new_user(f, &u, emails[i], ROLE_USER, true);
        if (strcmp(emails[i], "quote@example.com") == 0) {
            u.full_name = "Say \"Hi\" 100%";
            assert_int_equal(repo_user_update(f->r, &u, T0), AS_OK);
        }
    }
    assert_int_equal(count_q(f, "t%s", &first), 1);
    assert_string_equal(first, "pct%sign@example.com");
    assert_int_equal(count_q(f, "PCT%", &first), 1);       /* any case */
    assert_int_equal(count_q(f, "r_s", &first), 1);
    assert_string_equal(first, "under_score@example.com");
    assert_int_equal(count_q(f, "'", &first), 1);
    assert_string_equal(first, "o'brien@example.com");
    assert_int_equal(count_q(f, "\\", &first), 1);
    assert_string_equal(first, "back\\slash@example.com");
    assert_int_equal(count_q(f, "\"hi\"", &first), 1);     /* full_name */
    assert_string_equal(first, "quote@example.com");
    assert_int_equal(count_q(f, "0%", &first), 1);
    assert_int_equal(count_q(f, "%", NULL), 2);
    assert_int_equal(count_q(f, "_", NULL), 1);
    assert_int_equal(count_q(f, "EXAMPLE.COM", NULL), 7);
    assert_int_equal(count_q(f, "nobody", NULL), 0);
    assert_int_equal(count_q(f, NULL, NULL), 7);
}

static void password_set_and_rehash(void **state)
{
    struct fx *f = *state;
    struct user u, got;
    struct session s1, s2, s3;
    uint8_t h[3][REPO_HASH_LEN];
    const int64_t now = T0 + 50;

    new_user(f, &u, "pw@example.com", ROLE_USER, true);
    new_session(f, &s1, u.id, T0, T0 + DAY, h[0]);
    new_session(f, &s2, u.id, T0, T0 + DAY, h[1]);
    new_session(f, &s3, u.id, T0, T0 + DAY, h[2]);

    assert_int_equal(repo_user_set_password(f->r, u.id, "hash-2", s2.id, now),
                     AS_OK);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.password_hash, "hash-2");
    assert_int_equal(revoked_at(f, s1.id), now);
    assert_int_equal(revoked_at(f, s2.id), 0);
    assert_int_equal(revoked_at(f, s3.id), now);
    assert_true(live(f, s2.id, now));

    assert_int_equal(repo_user_set_password(f->r, u.id, "hash-3", NULL,
                                            now + 1),
                     AS_OK);
    assert_int_equal(revoked_at(f, s2.id), now + 1);
    assert_int_equal(revoked_at(f, s1.id), now);      /* not moved */

    uuid_v7_new(got.id);
    assert_int_equal(repo_user_set_password(f->r, got.id, "x", NULL, now),
                     AS_ERR_NOT_FOUND);

    /* Rehash only replaces the hash it was computed from. */
    assert_int_equal(repo_user_rehash(f->r, u.id, "hash-2", "hash-4"),
                     AS_ERR_CONFLICT);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.password_hash, "hash-3");
    assert_int_equal(repo_user_rehash(f->r, u.id, "hash-3", "hash-4"), AS_OK);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.password_hash, "hash-4");
    uuid_v7_new(got.id);                              /* nobody */
    assert_int_equal(repo_user_rehash(f->r, got.id, "hash-4", "hash-5"),
                     AS_ERR_CONFLICT);
}

static void delete_cascades(void **state)
{
    struct fx *f = *state;
    struct user admin, u;
    struct session s, got;
    uint8_t h[REPO_HASH_LEN];
    int64_t n = 0;

    new_user(f, &admin, "boss@example.com", ROLE_ADMIN, true);
    new_user(f, &u, "gone@example.com", ROLE_USER, true);
    new_session(f, &s, u.id, T0, T0 + DAY, h);
    assert_int_equal(repo_user_delete(f->r, u.id, 1000), AS_OK);
    assert_int_equal(repo_session_get(f->r, s.id, &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_refresh_session(f->r, h, T0, NULL, &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_user_count(f->r, false, &n), AS_OK);
    assert_int_equal(n, 1);
}

/* ---- sessions ---------------------------------------------------------- */

static void sessions_lifecycle(void **state)
{
    struct fx *f = *state;
    struct user u, v;
    struct session s1, s2, s3, old, dead, theirs, got, *list = NULL;
    uint8_t h[6][REPO_HASH_LEN];
    const int64_t now = T0 + 10000;
    size_t n = 99;

    new_user(f, &u, "s@example.com", ROLE_USER, true);
    new_user(f, &v, "v@example.com", ROLE_USER, true);
    new_session(f, &s1, u.id, T0 + 1000, now + DAY, h[0]);
    new_session(f, &s3, u.id, T0 + 3000, now + DAY, h[2]);
    new_session(f, &s2, u.id, T0 + 2000, now + DAY, h[1]);
    new_session(f, &old, u.id, T0, now, h[3]);             /* just expired */
    new_session(f, &dead, u.id, T0 + 4000, now + DAY, h[4]);
    new_session(f, &theirs, v.id, T0 + 5000, now + DAY, h[5]);
    assert_int_equal(repo_session_revoke(f->r, dead.id, NULL, now - 1),
                     AS_OK);

    assert_int_equal(repo_session_get(f->r, s1.id, &got, f->a), AS_OK);
    assert_string_equal(got.id, s1.id);
    assert_string_equal(got.user_id, u.id);
    assert_int_equal(got.created_at, T0 + 1000);
    assert_int_equal(got.last_used_at, T0 + 1000);
    assert_int_equal(got.expires_at, now + DAY);
    assert_int_equal(got.revoked_at, 0);
    assert_string_equal(got.ip, "127.0.0.1");
    assert_string_equal(got.user_agent, "test/1.0 \"quoted\"");
    uuid_v7_new(got.id);
    assert_int_equal(repo_session_get(f->r, got.id, &got, f->a),
                     AS_ERR_NOT_FOUND);

    assert_int_equal(repo_session_list(f->r, u.id, now, &list, &n, f->a),
                     AS_OK);
    assert_int_equal(n, 3);                               /* newest first */
    assert_string_equal(list[0].id, s3.id);
    assert_string_equal(list[1].id, s2.id);
    assert_string_equal(list[2].id, s1.id);
    assert_string_equal(list[2].user_agent, "test/1.0 \"quoted\"");

    /* Revoking someone else's session fails; one's own works once. */
    assert_int_equal(repo_session_revoke(f->r, s1.id, v.id, now),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_session_revoke(f->r, s1.id, u.id, now), AS_OK);
    assert_int_equal(repo_session_revoke(f->r, s1.id, u.id, now),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_session_revoke(f->r, old.id, NULL, now),
                     AS_ERR_NOT_FOUND);                   /* expired */
    assert_int_equal(revoked_at(f, s1.id), now);

    assert_int_equal(repo_session_revoke_all(f->r, u.id, s2.id, now + 1),
                     AS_OK);
    assert_int_equal(repo_session_list(f->r, u.id, now + 1, &list, &n, f->a),
                     AS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, s2.id);
    assert_int_equal(revoked_at(f, s3.id), now + 1);
    assert_int_equal(revoked_at(f, s1.id), now);            /* not moved */
    assert_true(live(f, theirs.id, now + 1));

    assert_int_equal(repo_session_revoke_all(f->r, u.id, NULL, now + 2),
                     AS_OK);
    assert_int_equal(repo_session_list(f->r, u.id, now + 2, &list, &n, f->a),
                     AS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(repo_session_list(f->r, v.id, now + 2, &list, &n, f->a),
                     AS_OK);
    assert_int_equal(n, 1);
}

/* Runs `sql` on the case's database behind the repository's back (a
 * row changed by hand, outside the daemon's flows). */
static void run_sql(struct fx *f, const char *sql)
{
    if (on_pg) {
        PGconn *pc = PQconnectdb(pg_url);
        PGresult *res = PQexec(pc, sql);

        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
        PQfinish(pc);
    } else {
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
    }
}

/* The number `sql` (a count) gives on the case's database. */
static int64_t scalar(struct fx *f, const char *sql)
{
    int64_t n = -1;

    if (on_pg) {
        PGresult *res;

        /* one connection for the case: a case may ask a thousand times */
        if (!f->side)
            f->side = PQconnectdb(pg_url);
        res = PQexec(f->side, sql);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
            n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
    } else {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;

        if (sqlite3_open(f->db, &db) == SQLITE_OK &&
            sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    return n;
}

/* Sessions that ended (expired, or revoked) before the cut-off are
 * deleted with their refresh tokens by a new session's transaction, 16
 * of each kind a session; live ones and those that ended after it
 * stay. */
static void ended_sessions_are_pruned(void **state)
{
    struct fx *f = *state;
    struct session_upkeep up = { .prune_before = T0 + 100 };
    struct user u;
    struct session s, on, recent, n[3];
    uint8_t h[REPO_HASH_LEN];
    int i;

    new_user(f, &u, "prune@example.com", ROLE_USER, true);
    for (i = 0; i < 20; i++)
        new_session(f, &s, u.id, T0, T0 + 10, h);          /* expired */
    for (i = 0; i < 20; i++) {
        new_session(f, &s, u.id, T0, T0 + DAY, h);
        assert_int_equal(repo_session_revoke(f->r, s.id, NULL, T0 + 20),
                         AS_OK);
    }
    new_session(f, &on, u.id, T0, T0 + DAY, h);
    new_session(f, &recent, u.id, T0, T0 + DAY, h);
    assert_int_equal(repo_session_revoke(f->r, recent.id, NULL, T0 + 200),
                     AS_OK);
    new_session(f, &s, u.id, T0 + 100, T0 + DAY, h);    /* no upkeep */
    assert_int_equal(scalar(f, "SELECT count(*) FROM sessions"), 43);
    new_session_up(f, &n[0], u.id, T0 + 100, T0 + DAY, h, &up);
    assert_int_equal(up.ended, 0);
    assert_int_equal(scalar(f, "SELECT count(*) FROM sessions"), 12);
    assert_int_equal(scalar(f, "SELECT count(*) FROM refresh_tokens"), 12);
    new_session_up(f, &n[1], u.id, T0 + 100, T0 + DAY, h, &up);
    new_session_up(f, &n[2], u.id, T0 + 100, T0 + DAY, h, &up);
    assert_int_equal(scalar(f, "SELECT count(*) FROM sessions"), 6);
    assert_int_equal(scalar(f, "SELECT count(*) FROM refresh_tokens"), 6);
    assert_true(live(f, on.id, T0 + 100));
    for (i = 0; i < 3; i++)
        assert_true(live(f, n[i].id, T0 + 100));
    assert_int_equal(revoked_at(f, recent.id), T0 + 200);
}

/* The refresh tokens of `sid`, counted. */
static int64_t tokens_of(struct fx *f, const char *sid)
{
    char q[160];

    snprintf(q, sizeof q,
             "SELECT count(*) FROM refresh_tokens WHERE session_id = '%s'",
             sid);
    return scalar(f, q);
}

/* A session that gathered more refresh tokens than one pruning deletes
 * goes over several, 512 tokens of each kind of ended session at a time,
 * and the session once none is left; a small ended session pruned in
 * the same pass still goes at once. Deleted with all its tokens at once,
 * a session refreshed for weeks held SQLite's write lock for as long, or
 * never finished within PostgreSQL's statement timeout. */
static void a_pruning_deletes_a_bounded_number_of_tokens(void **state)
{
    struct fx *f = *state;
    struct session_upkeep up = { .prune_before = T0 + 100 };
    struct user u;
    struct session big, small, on, s;
    uint8_t h[REPO_HASH_LEN];

    new_user(f, &u, "bounded@example.com", ROLE_USER, true);
    new_session(f, &big, u.id, T0, T0 + 10, h);             /* expired */
    new_session(f, &small, u.id, T0, T0 + DAY, h);
    assert_int_equal(repo_session_revoke(f->r, small.id, NULL, T0 + 20),
                     AS_OK);
    new_session(f, &on, u.id, T0, T0 + DAY, h);
    bulk(f, big.id, 1199, false);
    assert_int_equal(tokens_of(f, big.id), 1200);
    new_session_up(f, &s, u.id, T0 + 100, T0 + DAY, h, &up);
    assert_int_equal(tokens_of(f, big.id), 1200 - 512);
    assert_int_equal(tokens_of(f, small.id), 0);
    assert_int_equal(scalar(f, "SELECT count(*) FROM sessions"), 3);
    new_session_up(f, &s, u.id, T0 + 100, T0 + DAY, h, &up);
    assert_int_equal(tokens_of(f, big.id), 1200 - 1024);
    new_session_up(f, &s, u.id, T0 + 100, T0 + DAY, h, &up);
    assert_int_equal(tokens_of(f, big.id), 0);
    /* big is gone, the live ones and their tokens stay */
    assert_int_equal(scalar(f, "SELECT count(*) FROM sessions"), 4);
    assert_int_equal(scalar(f, "SELECT count(*) FROM refresh_tokens"), 4);
    assert_true(live(f, on.id, T0 + 100));
}

/* Adds `n` rows to session `sid`'s refresh tokens (rotated out) or,
 * with `sessions`, `n` revoked sessions to user `sid`. */
static void bulk(struct fx *f, const char *sid, int n, bool sessions)
{
    char q[512], series[160];

    snprintf(series, sizeof series, on_pg
             ? "SELECT generate_series(1, %d) AS n"
             : "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 "
               "FROM c WHERE n < %d) SELECT n FROM c", n);
    if (sessions)
        snprintf(q, sizeof q,
                 "INSERT INTO sessions (id, user_id, created_at, "
                 "last_used_at, expires_at, revoked_at) SELECT 'x-' || n "
                 "|| '%s', '%s', 1, 1, 2, 1 FROM (%s) AS s", sid, sid,
                 series);
    else if (on_pg)
        snprintf(q, sizeof q,
                 "INSERT INTO refresh_tokens (hash, session_id, "
                 "created_at, used_at) SELECT sha256(int4send(n) || "
                 "'%s'::bytea), '%s', 1, 2 FROM (%s) AS s", sid, sid,
                 series);
    else
        snprintf(q, sizeof q,
                 "INSERT INTO refresh_tokens (hash, session_id, "
                 "created_at, used_at) SELECT randomblob(32), '%s', 1, 2 "
                 "FROM (%s) AS s", sid, series);
    scalar(f, q);
}

/* An account's deletion sheds its rotated-out refresh tokens and its
 * ended sessions in batches before the row goes (README "Tokens"):
 * every one of them goes, and nothing of another account. */
static void deleting_an_account_sheds_only_its_own_rows(void **state)
{
    struct fx *f = *state;
    struct user u, other;
    struct session s, o;
    uint8_t h[REPO_HASH_LEN];
    char q[160];

    new_user(f, &u, "shed@example.com", ROLE_USER, true);
    new_user(f, &other, "kept@example.com", ROLE_USER, true);
    new_session(f, &s, u.id, T0, T0 + DAY, h);
    new_session(f, &o, other.id, T0, T0 + DAY, h);
    bulk(f, s.id, 1300, false);
    bulk(f, u.id, 1100, true);
    bulk(f, o.id, 700, false);
    bulk(f, other.id, 600, true);
    assert_int_equal(scalar(f, "SELECT count(*) FROM sessions"), 1702);
    assert_int_equal(scalar(f, "SELECT count(*) FROM refresh_tokens"),
                     2002);
    assert_int_equal(repo_user_delete(f->r, u.id, 1000), AS_OK);
    assert_int_equal(scalar(f, "SELECT count(*) FROM sessions"), 601);
    assert_int_equal(scalar(f, "SELECT count(*) FROM refresh_tokens"), 701);
    snprintf(q, sizeof q, "SELECT count(*) FROM sessions WHERE user_id = "
             "'%s'", other.id);
    assert_int_equal(scalar(f, q), 601);
    assert_true(live(f, o.id, T0));
    assert_int_equal(repo_user_delete(f->r, u.id, 1000), AS_ERR_NOT_FOUND);
}

/* An account whose live sessions hold more refresh tokens than one
 * transaction should delete (src/repo/users.c, CASCADE_MAX) is decided
 * and ended first, then shed: refused as the last admin it is left as it
 * was, tokens and all; deleted, every row of it goes. */
static void deleting_a_large_account_decides_first(void **state)
{
    struct fx *f = *state;
    struct user a, u;
    struct session sa, su;
    uint8_t h[REPO_HASH_LEN];
    struct user got;

    new_user(f, &a, "big-admin@example.com", ROLE_ADMIN, true);
    new_user(f, &u, "big@example.com", ROLE_USER, true);
    new_session(f, &sa, a.id, T0, T0 + DAY, h);
    new_session(f, &su, u.id, T0, T0 + DAY, h);
    bulk(f, sa.id, 20001, false);
    bulk(f, su.id, 20001, false);
    assert_int_equal(repo_user_delete(f->r, a.id, T0), AS_ERR_LAST_ADMIN);
    assert_int_equal(tokens_of(f, sa.id), 20002);
    assert_true(live(f, sa.id, T0));
    assert_int_equal(repo_user_by_id(f->r, a.id, &got, f->a), AS_OK);
    assert_true(got.is_active);
    assert_int_equal(repo_user_delete(f->r, u.id, T0), AS_OK);
    assert_int_equal(tokens_of(f, su.id), 0);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(scalar(f, "SELECT count(*) FROM refresh_tokens"),
                     20002);
}

/* `n` counts of `email`, from addresses `tag`-1 ... `tag`-n. */
static void failures(struct fx *f, const char *email, const char *tag, int n)
{
    char q[512], series[160];

    snprintf(series, sizeof series, on_pg
             ? "SELECT generate_series(1, %d) AS n"
             : "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 "
               "FROM c WHERE n < %d) SELECT n FROM c", n);
    snprintf(q, sizeof q,
             "INSERT INTO login_failures (email, ip, count, last_at) "
             "SELECT '%s', '%s-' || n, 1, %lld FROM (%s) AS s", email, tag,
             (long long)T0, series);
    scalar(f, q);
}

struct clearing {
    struct fx *f;
    const char *email;
};

static void *clear_thread(void *arg)
{
    struct clearing *c = arg;

    assert_int_equal(repo_login_failures_clear(c->f->r, c->email, NULL),
                     AS_OK);
    return NULL;
}

/* Lifting an email's lockout clears its counts from every address,
 * however many, and no other email's; 512 a transaction, so no other
 * write waits on a million of them (IPv6 /64s are cheap): a reader sees
 * them go a batch at a time, never all or nothing. */
static void clearing_an_emails_counts_goes_a_batch_at_a_time(void **state)
{
    struct fx *f = *state;
    struct clearing c = { f, "many@example.com" };
    const char *q = "SELECT count(*) FROM login_failures "
                    "WHERE email = 'many@example.com'";
    bool midway = false;
    pthread_t th;
    int attempt, i;

    failures(f, c.email, "a", 1300);
    failures(f, c.email, "*", 1);
    failures(f, "other@example.com", "b", 5);
    assert_int_equal(repo_login_failures_clear(f->r, c.email, NULL), AS_OK);
    assert_int_equal(scalar(f, q), 0);
    assert_int_equal(scalar(f, "SELECT count(*) FROM login_failures WHERE "
                               "email = 'other@example.com'"), 5);
    for (attempt = 0; attempt < 3 && !midway; attempt++) {
        int64_t n = -1;

        failures(f, c.email, attempt == 0 ? "x" : attempt == 1 ? "y" : "z",
                 20000);
        assert_int_equal(pthread_create(&th, NULL, clear_thread, &c), 0);
        for (i = 0; i < 100000 && n != 0; i++) {
            n = scalar(f, q);
            midway = midway || (n > 0 && n < 20000);
        }
        assert_int_equal(pthread_join(th, NULL), 0);
    }
    assert_true(midway);
    assert_int_equal(scalar(f, q), 0);
}

static int64_t prune_before(void *ctx, struct login_count *mine,
                            struct login_count *all)
{
    (void)mine;
    (void)all;
    return *(const int64_t *)ctx;
}

/* Pruning idle counts and clearing an email's counts take bounded steps
 * whatever the server's statistics say. Planned on statistics taken
 * before 20,000 rows came (an attacker's addresses come faster than
 * PostgreSQL's autovacuum analyses), "... IN (SELECT ... LIMIT n)" ran
 * as a nested loop that ran the subquery again for every row: a clear
 * took about 5 s a batch (past the statement timeout, so an unlock
 * failed) and a pruning deleted all 20,000 idle rows, not 16, in
 * about a minute, inside a login's count. */
static void batches_stay_bounded_on_stale_statistics(void **state)
{
    struct fx *f = *state;
    const char *q = "SELECT count(*) FROM login_failures";
    int64_t cutoff = T0 + 1;              /* failures() rows are idle */
    int64_t before;
    char sql[128];
    int i;

    scalar(f, "DELETE FROM login_failures");  /* not emptied with users */
    for (i = 0; i < 100; i++) {
        char e[64];

        snprintf(e, sizeof e, "few%d@example.com", i);
        failures(f, e, "a", 1);
    }
    /* the statistics: none of the rows idle, no "many@..." */
    snprintf(sql, sizeof sql, "UPDATE login_failures SET last_at = %lld",
             (long long)T0 + 100);
    scalar(f, sql);
    scalar(f, "ANALYZE login_failures");
    failures(f, "many@example.com", "b", 20000);
    before = scalar(f, q);
    assert_int_equal(before, 20100);
    assert_int_equal(repo_login_failures_update(f->r, "x@example.com",
                                                "10.0.0.1", prune_before,
                                                &cutoff),
                     AS_OK);
    assert_in_range(before - scalar(f, q), 1, 16);
    assert_int_equal(repo_login_failures_clear(f->r, "many@example.com",
                                               NULL),
                     AS_OK);
    assert_int_equal(scalar(f, "SELECT count(*) FROM login_failures "
                               "WHERE email = 'many@example.com'"), 0);
    scalar(f, "DELETE FROM login_failures");
}

/* A count of "x@example.com" that prunes counts idle before `cutoff`. */
static void count_pruning(struct fx *f, int64_t cutoff)
{
    assert_int_equal(repo_login_failures_update(f->r, "x@example.com",
                                                "10.0.0.1", prune_before,
                                                &cutoff),
                     AS_OK);
}

/* A pruning of idle counts that found none lets the next second's skip
 * theirs (by the cut-off's clock); after that second, or with the clock
 * set back past it, they prune again; one that found some leaves no
 * rest. */
static void idle_counts_pruning_rests_after_finding_nothing(void **state)
{
    struct fx *f = *state;
    const char *q = "SELECT count(*) FROM login_failures "
                    "WHERE email = 'idle@example.com'";

    scalar(f, "DELETE FROM login_failures");
    count_pruning(f, T0 - 10);                /* none idle: rests */
    failures(f, "idle@example.com", "a", 3);  /* idle from T0 + 1 */
    count_pruning(f, T0 + 900);               /* within the second */
    assert_int_equal(scalar(f, q), 3);
    count_pruning(f, T0 + 1000);              /* past it */
    assert_int_equal(scalar(f, q), 0);
    /* Having found some, the pruning at T0+1000 left no rest. */
    failures(f, "idle@example.com", "b", 2);
    count_pruning(f, T0 + 1001);
    assert_int_equal(scalar(f, q), 0);
    count_pruning(f, T0 + 1002);              /* none idle: rests */
    failures(f, "idle@example.com", "c", 1);
    count_pruning(f, T0 + 1500);
    assert_int_equal(scalar(f, q), 1);
    /* the clock set back: rows idle by that clock are pruned at once */
    scalar(f, "UPDATE login_failures SET last_at = 0");
    count_pruning(f, 1);
    assert_int_equal(scalar(f, q), 0);
}

/* An email change copies the run of failures to the new address in its
 * transaction: the count from all addresses, and the changing client's
 * (carry_ip), each field the higher of old and new; other addresses'
 * counts, and the old address's rows, stay where they were. */
static void an_email_change_carries_failure_counts(void **state)
{
    struct fx *f = *state;
    struct user_patch p = { .set = UF_EMAIL, .email = "carried@example.com",
                            .carry_ip = "10.0.0.1" };
    struct user u;
    char q[512];

    scalar(f, "DELETE FROM login_failures");
    new_user(f, &u, "carry@example.com", ROLE_USER, true);
    snprintf(q, sizeof q,
             "INSERT INTO login_failures (email, ip, count, last_at, "
             "locked_until) VALUES "
             "('carry@example.com', '10.0.0.1', 4, %lld, %lld), "
             "('carry@example.com', '10.0.0.2', 7, %lld, 0), "
             "('carry@example.com', '*', 9, %lld, %lld), "
             "('carried@example.com', '10.0.0.1', 6, %lld, 0), "
             "('carried@example.com', '*', 2, %lld, 0)",
             (long long)T0 + 10, (long long)T0 + 5000, (long long)T0 + 20,
             (long long)T0 + 30, (long long)T0 + 9000, (long long)T0 + 5,
             (long long)T0 + 40);
    scalar(f, q);
    assert_int_equal(repo_user_patch(f->r, u.id, &p, T0 + 100, NULL, NULL),
                     AS_OK);
#define COL(c, e, ip)                                                     \
    "SELECT " c " FROM login_failures WHERE email = '" e "' AND ip = '"   \
    ip "'"
    assert_int_equal(scalar(f, COL("count", "carried@example.com",
                                   "10.0.0.1")), 6);
    assert_int_equal(scalar(f, COL("last_at", "carried@example.com",
                                   "10.0.0.1")), T0 + 10);
    assert_int_equal(scalar(f, COL("locked_until", "carried@example.com",
                                   "10.0.0.1")), T0 + 5000);
    assert_int_equal(scalar(f, COL("count", "carried@example.com", "*")), 9);
    assert_int_equal(scalar(f, COL("last_at", "carried@example.com", "*")),
                     T0 + 40);
    assert_int_equal(scalar(f, COL("locked_until", "carried@example.com",
                                   "*")), T0 + 9000);
    assert_int_equal(scalar(f, "SELECT count(*) FROM login_failures WHERE "
                               "email = 'carried@example.com' AND "
                               "ip = '10.0.0.2'"), 0);
    assert_int_equal(scalar(f, "SELECT count(*) FROM login_failures WHERE "
                               "email = 'carry@example.com'"), 3);
    /* No client address: the count from all addresses only. */
    p.email = "third@example.com";
    p.carry_ip = NULL;
    assert_int_equal(repo_user_patch(f->r, u.id, &p, T0 + 200, NULL, NULL),
                     AS_OK);
    assert_int_equal(scalar(f, COL("count", "third@example.com", "*")), 9);
    assert_int_equal(scalar(f, "SELECT count(*) FROM login_failures WHERE "
                               "email = 'third@example.com'"), 1);
#undef COL
    scalar(f, "DELETE FROM login_failures");
}

/* A pruning that found nothing lets the next second's sessions skip
 * theirs (by the cut-off's clock); after that second, or with the clock
 * set back past it, they prune again. */
static void pruning_rests_after_finding_nothing(void **state)
{
    struct fx *f = *state;
    struct session_upkeep up = { .prune_before = T0 + 5 };
    struct user u;
    struct session s, ended[2];
    uint8_t h[REPO_HASH_LEN];

    new_user(f, &u, "rest@example.com", ROLE_USER, true);
    new_session(f, &ended[0], u.id, T0, T0 + 10, h);    /* ends T0+10 */
    new_session(f, &ended[1], u.id, T0, T0 + 10, h);
    new_session_up(f, &s, u.id, T0, T0 + DAY, h, &up);  /* none ended */
    up.prune_before = T0 + 900;                /* within the second */
    new_session_up(f, &s, u.id, T0, T0 + DAY, h, &up);
    assert_int_equal(scalar(f, "SELECT count(*) FROM sessions"), 4);
    up.prune_before = T0 + 1006;               /* past it */
    new_session_up(f, &s, u.id, T0, T0 + DAY, h, &up);
    assert_int_equal(scalar(f, "SELECT count(*) FROM sessions"), 3);
    assert_false(live(f, ended[0].id, T0));    /* (deleted) */
    /* Having found some, the pruning at T0+1006 left no rest. */
    new_session(f, &ended[0], u.id, T0, T0 + 10, h);
    new_session_up(f, &s, u.id, T0, T0 + DAY, h, &up);
    assert_int_equal(scalar(f, "SELECT count(*) FROM sessions"), 4);
    up.prune_before = T0 - 5000;               /* the clock set back */
    new_session(f, &ended[1], u.id, T0, T0 - 6000, h);
    new_session_up(f, &s, u.id, T0, T0 + DAY, h, &up);
    assert_int_equal(scalar(f, "SELECT count(*) FROM sessions"), 5);
}

/* A new session ends its user's live sessions beyond the cap, least
 * recently used first, in its own transaction. */
static void sessions_beyond_the_cap_end(void **state)
{
    struct fx *f = *state;
    struct session_upkeep up = { .keep = 4 };
    struct user u, other;
    struct session s[6], o, expired, n[3];
    uint8_t h[REPO_HASH_LEN];
    int i;

    new_user(f, &u, "cap@example.com", ROLE_USER, true);
    new_user(f, &other, "cap-other@example.com", ROLE_USER, true);
    new_session(f, &expired, u.id, T0, T0 + 10, h);     /* not counted */
    for (i = 0; i < 6; i++)                 /* used at T0+1000 .. +1005 */
        new_session(f, &s[i], u.id, T0 + 1000 + i, T0 + DAY, h);
    new_session(f, &o, other.id, T0, T0 + DAY, h);      /* another user */
    assert_int_equal(repo_session_revoke(f->r, s[4].id, NULL, T0 + 1500),
                     AS_OK);                 /* already ended: not counted */
    /* Live: s0 s1 s2 s3 s5 and the new one; four stay. */
    new_session_up(f, &n[0], u.id, T0 + 2000, T0 + DAY, h, &up);
    assert_int_equal(up.ended, 2);           /* s[0], s[1] */
    assert_false(live(f, s[0].id, T0 + 2000));
    assert_false(live(f, s[1].id, T0 + 2000));
    assert_true(live(f, s[2].id, T0 + 2000));
    assert_true(live(f, s[3].id, T0 + 2000));
    assert_true(live(f, s[5].id, T0 + 2000));
    assert_true(live(f, n[0].id, T0 + 2000));
    assert_true(live(f, o.id, T0 + 2000));
    assert_int_equal(revoked_at(f, s[4].id), T0 + 1500);
    assert_int_equal(revoked_at(f, s[0].id), T0 + 2000);
    up.keep = 5;
    new_session_up(f, &n[1], u.id, T0 + 2000, T0 + DAY, h, &up);
    assert_int_equal(up.ended, 0);           /* at the cap: nothing */
    up.keep = 1;
    new_session_up(f, &n[2], u.id, T0 + 2001, T0 + DAY, h, &up);
    assert_int_equal(up.ended, 5);
    assert_true(live(f, n[2].id, T0 + 2001));           /* the newest */
    assert_false(live(f, n[1].id, T0 + 2001));
    assert_false(live(f, s[5].id, T0 + 2001));
    assert_true(live(f, o.id, T0 + 2001));
}

/* A session that refreshes every hour for sixty days (token lifetime:
 * a day here) keeps its rotated tokens of the last day, for reuse
 * detection, and no more: each rotation deletes up to two older ones. */
static void rotated_tokens_past_their_lifetime_go(void **state)
{
    struct fx *f = *state;
    struct user u;
    struct session s, out;
    uint8_t tok[2][REPO_HASH_LEN], early[REPO_HASH_LEN];
    enum rotate_result res = ROTATE_INVALID;
    const int64_t hour = DAY / 24;
    int64_t now = T0, n;
    int i;

    new_user(f, &u, "long@example.com", ROLE_USER, true);
    new_session(f, &s, u.id, T0, T0 + DAY, tok[0]);
    memcpy(early, tok[0], sizeof early);
    for (i = 1; i <= 60 * 24; i++) {
        now = T0 + i * hour;
        randombytes_buf(tok[i % 2], REPO_HASH_LEN);
        assert_int_equal(repo_refresh_rotate(f->r, tok[(i + 1) % 2],
                                             tok[i % 2], now, GRACE,
                                             now + DAY, LIFE, &res, &out,
                                             f->a), AS_OK);
        assert_int_equal(res, ROTATE_OK);
        /* never more than a lifetime's worth, and the new one */
        n = scalar(f, "SELECT count(*) FROM refresh_tokens");
        assert_true(n <= 26);
    }
    /* the first token is gone: presented again it is refused, and no
     * longer ends the session */
    assert_int_equal(repo_refresh_rotate(f->r, early, tok[0], now + 1, GRACE,
                                         now + 1 + DAY, LIFE, &res, &out,
                                         f->a), AS_OK);
    assert_int_equal(res, ROTATE_INVALID);
    assert_true(live(f, s.id, now + 1));
    /* one rotated out within the last day still ends it */
    assert_int_equal(scalar(f, "SELECT count(*) FROM refresh_tokens "
                               "WHERE used_at IS NOT NULL AND created_at > "
                               "1705097600000"), 23);  /* T0 + 59 days */
    assert_int_equal(repo_refresh_rotate(f->r, tok[(60 * 24 + 1) % 2],
                                         early, now + GRACE + 1, GRACE,
                                         now + GRACE + 1 + DAY, LIFE, &res,
                                         &out, f->a), AS_OK);
    assert_int_equal(res, ROTATE_REUSED);
    assert_false(live(f, s.id, now + GRACE + 1));
}

/* A token rotated out just before its own lifetime ended: retried
 * within the grace it gets the child, whether its session refreshed
 * since or not; once kept no longer (its lifetime and the grace
 * passed) it is refused with nothing ended, whether another refresh of
 * its session pruned it already or not (before, the pruned one was
 * refused within the grace, and the unpruned one was a replay ending
 * its session after it; reviews). */
static void rotated_token_answers_alike_pruned_or_not(void **state)
{
    struct fx *f = *state;
    struct user u;
    struct session s[2], out;
    uint8_t p[2][REPO_HASH_LEN], c[2][REPO_HASH_LEN], d[REPO_HASH_LEN];
    enum rotate_result res = ROTATE_INVALID;
    int64_t now = T0 + DAY - 2000;
    struct repo_kept k;
    int i;

    new_user(f, &u, "edge@example.com", ROLE_USER, true);
    for (i = 0; i < 2; i++) {
        new_session(f, &s[i], u.id, T0, T0 + DAY, p[i]);
        randombytes_buf(c[i], REPO_HASH_LEN);
        assert_int_equal(repo_refresh_rotate(f->r, p[i], c[i], now, GRACE,
                                             now + DAY, LIFE, &res, &out,
                                             f->a), AS_OK);
        assert_int_equal(res, ROTATE_OK);
    }
    /* s[1] refreshes again past p's lifetime, then past its grace too */
    for (now = T0 + DAY + 1500; now < T0 + DAY + 2 * GRACE; now += GRACE) {
        randombytes_buf(d, REPO_HASH_LEN);
        assert_int_equal(repo_refresh_rotate(f->r, c[1], d, now, GRACE,
                                             now + DAY, LIFE, &res, &out,
                                             f->a), AS_OK);
        assert_int_equal(res, ROTATE_OK);
        memcpy(c[1], d, sizeof d);
        if (now == T0 + DAY + 1500)     /* within p's grace: the retry */
            for (i = 0; i < 2; i++) {
                uint8_t again[REPO_HASH_LEN];

                randombytes_buf(again, REPO_HASH_LEN);
                assert_int_equal(repo_refresh_rotate(f->r, p[i], again,
                                                     now + 1, GRACE,
                                                     now + 1 + DAY, LIFE,
                                                     &res, &out, f->a),
                                 AS_OK);
                assert_int_equal(res, ROTATE_GRACE);
                k = kept_at(now + 1);         /* and names it for a logout */
                assert_int_equal(repo_refresh_session(f->r, p[i], now + 1, &k,
                                                      &out, f->a), AS_OK);
            }
    }
    assert_int_equal(scalar(f, "SELECT count(*) FROM refresh_tokens "
                               "WHERE created_at = 1700000000000"), 1);
    for (now = T0 + DAY + GRACE + 3000; now < T0 + DAY + 4 * GRACE;
         now += GRACE)
        for (i = 0; i < 2; i++) {
            assert_int_equal(repo_refresh_rotate(f->r, p[i], d, now,
                                                 GRACE, now + DAY, LIFE,
                                                 &res, &out, f->a), AS_OK);
            assert_int_equal(res, ROTATE_INVALID);
            assert_true(live(f, s[i].id, now));
            /* nor does it name its session for a logout (before, the
             * unpruned one did, and the logout ended it) */
            k = kept_at(now);
            assert_int_equal(repo_refresh_session(f->r, p[i], now, &k, &out,
                                                  f->a), AS_ERR_NOT_FOUND);
        }
}

/* AUTH_REFRESH_TOKEN_TTL lowered (30 days to one) under a session that
 * still runs on the longer one: a token issued 2 days ago rotates, and a
 * retry of it within the grace gets the child, whatever its age, through
 * further refreshes of the session (their pruning keeps it); past the
 * grace it is kept no longer: refused, nothing ended, pruned or not.
 * Before, the retry was refused 401 (judged by the new lifetime: a
 * review). */
static void a_lowered_lifetime_keeps_the_grace(void **state)
{
    struct fx *f = *state;
    struct user u;
    struct session s, out;
    uint8_t p[REPO_HASH_LEN], c[REPO_HASH_LEN], d[REPO_HASH_LEN];
    enum rotate_result res = ROTATE_INVALID;
    const int64_t at = T0 + 2 * DAY;
    int64_t now;

    new_user(f, &u, "lowered@example.com", ROLE_USER, true);
    new_session(f, &s, u.id, T0, T0 + 30 * DAY, p);
    randombytes_buf(c, REPO_HASH_LEN);
    assert_int_equal(repo_refresh_rotate(f->r, p, c, at, GRACE, at + DAY,
                                         LIFE, &res, &out, f->a), AS_OK);
    assert_int_equal(res, ROTATE_OK);
    for (now = at + 1000; now < at + GRACE; now += 3000) {
        /* the child refreshes (and prunes), then p is retried */
        randombytes_buf(d, REPO_HASH_LEN);
        assert_int_equal(repo_refresh_rotate(f->r, c, d, now, GRACE,
                                             now + DAY, LIFE, &res, &out,
                                             f->a), AS_OK);
        assert_int_equal(res, ROTATE_OK);
        memcpy(c, d, sizeof d);
        randombytes_buf(d, REPO_HASH_LEN);
        assert_int_equal(repo_refresh_rotate(f->r, p, d, now + 1, GRACE,
                                             now + 1 + DAY, LIFE, &res, &out,
                                             f->a), AS_OK);
        assert_int_equal(res, ROTATE_GRACE);
    }
    /* past the grace: refused before and after a pruning, nothing ended */
    for (int i = 0; i < 2; i++) {
        now = at + GRACE + 1 + i * 1000;
        assert_int_equal(repo_refresh_rotate(f->r, p, d, now, GRACE,
                                             now + DAY, LIFE, &res, &out,
                                             f->a), AS_OK);
        assert_int_equal(res, ROTATE_INVALID);
        assert_true(live(f, s.id, now));
        randombytes_buf(d, REPO_HASH_LEN);
        assert_int_equal(repo_refresh_rotate(f->r, c, d, now + 1, GRACE,
                                             now + 1 + DAY, LIFE, &res, &out,
                                             f->a), AS_OK);
        assert_int_equal(res, ROTATE_OK);
        memcpy(c, d, sizeof d);
    }
    assert_int_equal(scalar(f, "SELECT count(*) FROM refresh_tokens "
                               "WHERE created_at = 1700000000000"), 0);
}

/* Sets is_active of `u` to false by hand: its sessions stay unrevoked. */
static void switch_off_by_hand(struct fx *f, const struct user *u)
{
    char sql[160];

    snprintf(sql, sizeof sql, "UPDATE users SET is_active = %s WHERE id = "
             "'%s'", on_pg ? "false" : "0", u->id);
    run_sql(f, sql);
}

static void session_state_cases(void **state)
{
    struct fx *f = *state;
    struct user admin, off;
    struct session s, r, e, o;
    struct session_state st;
    uint8_t h[4][REPO_HASH_LEN];
    const int64_t now = T0 + 100;

    new_user(f, &admin, "adm@example.com", ROLE_ADMIN, true);
    new_user(f, &off, "off@example.com", ROLE_USER, true);
    new_session(f, &s, admin.id, T0, T0 + DAY, h[0]);
    new_session(f, &r, admin.id, T0, T0 + DAY, h[1]);
    new_session(f, &e, admin.id, T0, now, h[2]);
    new_session(f, &o, off.id, T0, T0 + DAY, h[3]);
    switch_off_by_hand(f, &off);
    assert_int_equal(repo_session_revoke(f->r, r.id, NULL, now), AS_OK);

    memset(&st, 0, sizeof st);
    assert_int_equal(repo_session_state(f->r, s.id, now, &st), AS_OK);
    assert_true(st.live);
    assert_int_equal(st.role, ROLE_ADMIN);
    assert_false(live(f, r.id, now));                       /* revoked */
    assert_true(live(f, e.id, now - 1));
    assert_false(live(f, e.id, now));                       /* expired */
    assert_false(live(f, o.id, now));                 /* inactive user */
    assert_int_equal(revoked_at(f, o.id), 0);
    assert_false(live(f, "00000000-0000-7000-8000-000000000000", now));
}

/* ---- refresh tokens ---------------------------------------------------- */

static void rotate_ok_then_grace_then_reuse(void **state)
{
    struct fx *f = *state;
    struct user u;
    struct session s, out;
    uint8_t p[REPO_HASH_LEN], c1[REPO_HASH_LEN], c2[REPO_HASH_LEN];
    enum rotate_result res = ROTATE_INVALID;
    const int64_t t1 = T0 + 60000;

    new_user(f, &u, "rot@example.com", ROLE_USER, true);
    new_session(f, &s, u.id, T0, T0 + DAY, p);
    randombytes_buf(c1, sizeof c1);
    randombytes_buf(c2, sizeof c2);

    assert_int_equal(repo_refresh_session(f->r, p, T0, NULL, &out, f->a),
                     AS_OK);
    assert_string_equal(out.id, s.id);

    memset(&out, 0, sizeof out);
    assert_int_equal(repo_refresh_rotate(f->r, p, c1, t1, GRACE, t1 + DAY,
                                         LIFE, &res, &out, f->a),
                     AS_OK);
    assert_int_equal(res, ROTATE_OK);
    assert_string_equal(out.id, s.id);
    assert_string_equal(out.user_id, u.id);
    assert_int_equal(out.last_used_at, t1);
    assert_int_equal(out.expires_at, t1 + DAY);
    assert_int_equal(repo_refresh_session(f->r, p, t1, NULL, &out, f->a),
                     AS_ERR_NOT_FOUND);                     /* used */
    /* ... yet it still names its session for a logout or a revocation. */
    assert_int_equal(repo_refresh_session(f->r, p, t1, &EVERY_KEPT, &out,
                                          f->a), AS_OK);
    assert_string_equal(out.id, s.id);
    assert_int_equal(repo_refresh_session(f->r, c1, t1, NULL, &out, f->a),
                     AS_OK);
    assert_string_equal(out.id, s.id);

    /* Presented again within the grace: same session, nothing moves. */
    memset(&out, 0, sizeof out);
    assert_int_equal(repo_refresh_rotate(f->r, p, c1, t1 + GRACE, GRACE,
                                         t1 + GRACE + DAY, LIFE, &res, &out,
                                         f->a),
                     AS_OK);
    assert_int_equal(res, ROTATE_GRACE);
    assert_string_equal(out.id, s.id);
    assert_int_equal(out.expires_at, t1 + DAY);
    assert_true(live(f, s.id, t1 + GRACE));

    /* After the grace it is a replay: the whole session goes. */
    assert_int_equal(repo_refresh_rotate(f->r, p, c2, t1 + GRACE + 1, GRACE,
                                         t1 + DAY, LIFE, &res, &out, f->a),
                     AS_OK);
    assert_int_equal(res, ROTATE_REUSED);
    assert_int_equal(revoked_at(f, s.id), t1 + GRACE + 1);
    assert_false(live(f, s.id, t1 + GRACE + 1));
    assert_int_equal(repo_refresh_rotate(f->r, c1, c2, t1 + GRACE + 2, GRACE,
                                         t1 + DAY, LIFE, &res, &out, f->a),
                     AS_OK);
    assert_int_equal(res, ROTATE_INVALID);
    assert_int_equal(repo_refresh_session(f->r, c1, t1 + GRACE + 2, NULL,
                                          &out, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_refresh_session(f->r, p, t1 + GRACE + 2, &EVERY_KEPT,
                                          &out, f->a),
                     AS_ERR_NOT_FOUND);                  /* session ended */
}

/* A login stores its session (or its second-factor token) only while
 * the account is as the login read it: still there, the password it
 * checked still the account's, active, and for a password-only session
 * with the second factor off. */
static void login_stores_only_while_the_account_allows_it(void **state)
{
    struct fx *f = *state;
    struct user u;
    struct session s;
    uint8_t h[REPO_HASH_LEN], codes[1][REPO_HASH_LEN];
    bool one = true;

    new_user(f, &u, "still@example.com", ROLE_USER, true);
#define CREATE(uid, pw, want)                                              \
    do {                                                                   \
        memset(&s, 0, sizeof s);                                           \
        s.one_factor = one;                                                \
        uuid_v7_new(s.id);                                                 \
        snprintf(s.user_id, sizeof s.user_id, "%s", uid);                  \
        s.created_at = s.last_used_at = T0;                                \
        s.expires_at = T0 + DAY;                                           \
        s.pw_gen = pw;                                                     \
        randombytes_buf(h, sizeof h);                                      \
        assert_int_equal(repo_session_create(f->r, &s, h, NULL), want);    \
        randombytes_buf(h, sizeof h);                                      \
        assert_int_equal(repo_mfa_token_create(f->r, h, uid, pw, T0,       \
                                               T0 + DAY), want);           \
    } while (0)
    CREATE(u.id, u.password_gen, AS_OK);
    CREATE(u.id, -1, AS_OK);
    CREATE(u.id, u.password_gen + 1, AS_ERR_BAD_CREDENTIALS);
    CREATE("00000000-0000-7000-8000-000000000000", -1, AS_ERR_NOT_FOUND);
    /* a new hash of the same password (a login's upgrade, here or on
     * another instance) is no change; another password is */
    assert_int_equal(repo_user_rehash(f->r, u.id, u.password_hash,
                                      "$argon2id$v=19$m=19456,t=2,p=1$"
                                      "bmV3$bmV3"),
                     AS_OK);
    CREATE(u.id, u.password_gen, AS_OK);
    assert_int_equal(repo_user_set_password(f->r, u.id,
                                            "$argon2id$v=19$m=19456,t=2,"
                                            "p=1$b3RoZXI$b3RoZXI",
                                            NULL, T0),
                     AS_OK);
    CREATE(u.id, u.password_gen, AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(repo_user_by_id(f->r, u.id, &u, f->a), AS_OK);
    assert_int_equal(u.password_gen, 1);
    CREATE(u.id, u.password_gen, AS_OK);
    /* the second factor on: a password-only session no longer; one that
     * passed the factor (and the second-factor token) still */
    randombytes_buf(codes[0], REPO_HASH_LEN);
    /* a confirm of a secret that a new setup replaced meanwhile: refused */
    assert_int_equal(repo_mfa_pending(f->r, u.id, "replaced", T0), AS_OK);
    assert_int_equal(repo_mfa_pending(f->r, u.id, "sealed", T0), AS_OK);
    assert_int_equal(repo_mfa_enable(f->r, u.id, 1, "replaced", codes, 1,
                                     NULL, T0 * 1000),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(repo_mfa_pending(f->r, u.id, "sealed", T0), AS_OK);
    assert_int_equal(repo_mfa_enable(f->r, u.id, 1, "sealed", codes, 1, NULL,
                                     T0 * 1000),
                     AS_OK);
    memset(&s, 0, sizeof s);
    uuid_v7_new(s.id);
    snprintf(s.user_id, sizeof s.user_id, "%s", u.id);
    s.created_at = s.last_used_at = T0;
    s.expires_at = T0 + DAY;
    s.one_factor = true;
    s.pw_gen = -1;
    randombytes_buf(h, sizeof h);
    assert_int_equal(repo_session_create(f->r, &s, h, NULL),
                     AS_ERR_MFA_REQUIRED);
    one = false;
    CREATE(u.id, u.password_gen, AS_OK);
    switch_off_by_hand(f, &u);
    CREATE(u.id, u.password_gen, AS_ERR_DISABLED);
    CREATE(u.id, -1, AS_ERR_DISABLED);
#undef CREATE
}

static void rotate_invalid_cases(void **state)
{
    struct fx *f = *state;
    struct user u, off;
    struct session s, rv, ex, of, out;
    uint8_t hs[REPO_HASH_LEN], hr[REPO_HASH_LEN], he[REPO_HASH_LEN];
    uint8_t ho[REPO_HASH_LEN], unknown[REPO_HASH_LEN], c[REPO_HASH_LEN];
    enum rotate_result res = ROTATE_OK;
    const int64_t now = T0 + 500;

    new_user(f, &u, "inv@example.com", ROLE_USER, true);
    new_user(f, &off, "offline@example.com", ROLE_USER, true);
    new_session(f, &s, u.id, T0, T0 + DAY, hs);
    new_session(f, &rv, u.id, T0, T0 + DAY, hr);
    new_session(f, &ex, u.id, T0, now, he);
    new_session(f, &of, off.id, T0, T0 + DAY, ho);
    switch_off_by_hand(f, &off);
    assert_int_equal(repo_session_revoke(f->r, rv.id, NULL, now), AS_OK);
    randombytes_buf(unknown, sizeof unknown);

#define INVALID(h)                                                         \
    do {                                                                   \
        randombytes_buf(c, sizeof c);                                      \
        res = ROTATE_OK;                                                   \
        assert_int_equal(repo_refresh_rotate(f->r, h, c, now, GRACE,       \
                                             now + DAY, LIFE, &res, &out,  \
                                             f->a),                        \
                         AS_OK);                                           \
        assert_int_equal(res, ROTATE_INVALID);                             \
        assert_int_equal(repo_refresh_session(f->r, h, now, NULL, &out,  \
                                              f->a),                       \
                         AS_ERR_NOT_FOUND);                                \
        assert_int_equal(repo_refresh_session(f->r, h, now, &EVERY_KEPT,  \
                                              &out, f->a),                 \
                         AS_ERR_NOT_FOUND);                                \
    } while (0)
    INVALID(unknown);
    INVALID(hr);                                  /* revoked session */
    INVALID(he);                                  /* expired session */
    INVALID(ho);                                  /* inactive user */
#undef INVALID
    /* None of that touched the good session. */
    assert_int_equal(repo_refresh_session(f->r, hs, now, NULL, &out, f->a),
                     AS_OK);
    assert_int_equal(revoked_at(f, ex.id), 0);
}

struct racer {
    struct repo *r;
    pthread_barrier_t *go;
    const uint8_t *parent, *child;
    int64_t now;
    enum as_err err;
    enum rotate_result res;
    char sid[UUID_STR_LEN];
};

static void *race(void *arg)
{
    struct racer *x = arg;
    struct arena *a = arena_new();
    struct session out;

    memset(&out, 0, sizeof out);
    pthread_barrier_wait(x->go);
    x->err = a ? repo_refresh_rotate(x->r, x->parent, x->child, x->now,
                                     GRACE, x->now + DAY, LIFE, &x->res,
                                     &out, a)
               : AS_ERR_NOMEM;
    memcpy(x->sid, out.id, UUID_STR_LEN);
    arena_free(a);
    return NULL;
}

static void rotate_races_have_one_winner(void **state)
{
    enum { ROUNDS = 20 };
    struct fx *f = *state;
    struct user u;
    struct session s;
    uint8_t p[REPO_HASH_LEN], c[REPO_HASH_LEN];
    pthread_barrier_t go;
    pthread_t t[2];
    struct racer x[2];
    int round, i, ok, grace;

    new_user(f, &u, "race@example.com", ROLE_USER, true);
    for (round = 0; round < ROUNDS; round++) {
        new_session(f, &s, u.id, T0, T0 + DAY, p);
        randombytes_buf(c, sizeof c);
        assert_int_equal(pthread_barrier_init(&go, NULL, 2), 0);
        for (i = 0; i < 2; i++) {
            memset(&x[i], 0, sizeof x[i]);
            x[i].r = f->r;
            x[i].go = &go;
            x[i].parent = p;
            x[i].child = c;
            x[i].now = T0 + 1000;
            x[i].res = ROTATE_INVALID;
            assert_int_equal(pthread_create(&t[i], NULL, race, &x[i]), 0);
        }
        ok = grace = 0;
        for (i = 0; i < 2; i++) {
            pthread_join(t[i], NULL);
            assert_int_equal(x[i].err, AS_OK);
            assert_string_equal(x[i].sid, s.id);
            ok += x[i].res == ROTATE_OK;
            grace += x[i].res == ROTATE_GRACE;
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(ok, 1);
        assert_int_equal(grace, 1);
        assert_true(live(f, s.id, T0 + 1000));
    }
}

/* ---- breaker ----------------------------------------------------------- */

static int fake_calls;

static enum as_err fake_ping(void *impl)
{
    (void)impl;
    fake_calls++;
    return AS_ERR_UNAVAILABLE;
}

static enum as_err fake_count(void *impl, bool admins_only, int64_t *out)
{
    (void)impl;
    (void)admins_only;
    fake_calls++;
    *out = 7;
    return AS_ERR_NOT_FOUND;             /* not infra: never opens it */
}

static void fake_close(void *impl)
{
    (void)impl;
}

static void breaker_guards_backend(void **state)
{
    static const struct repo_ops fake = {
        .name = "fake",
        .ping = fake_ping,
        .user_count = fake_count,
        .close = fake_close,
    };
    struct cfg cfg;
    struct repo *r = NULL;
    int64_t n = 0;
    int i;

    (void)state;
    fill_cfg(&cfg, NULL);
    fake_calls = 0;
    assert_int_equal(repo_wrap(&cfg, &fake, NULL, &r), AS_OK);
    assert_string_equal(repo_backend(r), "fake");
    for (i = 0; i < 10; i++)
        assert_int_equal(repo_user_count(r, false, &n), AS_ERR_NOT_FOUND);
    assert_int_equal(n, 7);
    assert_int_equal(repo_ping(r), AS_ERR_UNAVAILABLE);
    assert_int_equal(repo_ping(r), AS_ERR_UNAVAILABLE);
    assert_int_equal(fake_calls, 12);
    assert_int_equal(repo_user_count(r, false, &n), AS_ERR_NOT_FOUND);
    /* That reset the streak: three more failures in a row open it. */
    for (i = 0; i < 3; i++)
        assert_int_equal(repo_ping(r), AS_ERR_UNAVAILABLE);
    assert_int_equal(fake_calls, 16);
    assert_int_equal(breaker_state(repo_breaker(r), clock_mono_ms()),
                     BREAKER_OPEN);
    n = 0;
    assert_int_equal(repo_user_count(r, false, &n), AS_ERR_UNAVAILABLE);
    assert_int_equal(repo_ping(r), AS_ERR_UNAVAILABLE);
    assert_int_equal(fake_calls, 16);                 /* never reached */
    assert_int_equal(n, 0);
    repo_close(r);
}

/* ---- retries of lock conflicts ------------------------------------------ */

static int conflicts_left;               /* fake_conflict: how many more */

static enum as_err fake_conflict(void *impl, bool admins_only, int64_t *out)
{
    (void)impl;
    (void)admins_only;
    fake_calls++;
    *out = fake_calls;                   /* no state kept between attempts */
    if (conflicts_left > 0) {
        conflicts_left--;
        return AS_ERR_LOCK_CONFLICT;
    }
    return AS_OK;
}

/* A call that hits a deadlock is run again, whole, after a short jittered
 * backoff: a success after retries is a success for the breaker, and when
 * the retries run out the answer is 503, not 500, and still no breaker
 * failure (the database answered). */
static void lock_conflicts_are_retried(void **state)
{
    static const struct repo_ops fake = {
        .name = "fake",
        .user_count = fake_conflict,
        .close = fake_close,
    };
    struct cfg cfg;
    struct repo *r = NULL;
    int64_t n = 0;
    uint64_t t;
    int i;

    (void)state;
    fill_cfg(&cfg, NULL);
    assert_int_equal(repo_wrap(&cfg, &fake, NULL, &r), AS_OK);
    fake_calls = 0;
    conflicts_left = 2;
    assert_int_equal(repo_user_count(r, false, &n), AS_OK);
    assert_int_equal(fake_calls, 3);
    assert_int_equal(n, 3);
    for (i = 0; i < 6; i++) {            /* more than the threshold (5) */
        fake_calls = 0;
        conflicts_left = 1000;
        t = clock_mono_ms();
        assert_int_equal(repo_user_count(r, false, &n), AS_ERR_UNAVAILABLE);
        t = clock_mono_ms() - t;
        assert_int_equal(fake_calls, 5);
        assert_true(t >= 2 + 4 + 8 + 16);    /* the backoffs' lower bound */
        assert_true(t < 2000);
    }
    assert_int_equal(breaker_state(repo_breaker(r), clock_mono_ms()),
                     BREAKER_CLOSED);
    assert_int_equal(repo_error_count(r), 0);
    conflicts_left = 0;
    assert_int_equal(repo_user_count(r, false, &n), AS_OK);
    assert_false(as_err_is_infra(AS_ERR_LOCK_CONFLICT));
    assert_int_equal(as_err_http_status(AS_ERR_LOCK_CONFLICT), 503);
    repo_close(r);
}

static enum as_err fake_unreachable(void *impl, bool admins_only,
                                    int64_t *out)
{
    (void)impl;
    (void)admins_only;
    (void)out;
    fake_calls++;
    return AS_ERR_DB_UNREACHABLE;
}

/* A server that did not answer in time: the caller gets 503's code, the
 * circuit opens on that one call, and the next call is refused without
 * reaching the backend (it would wait the same timeout). */
static void an_unreachable_server_opens_the_circuit(void **state)
{
    static const struct repo_ops fake = {
        .name = "fake",
        .user_count = fake_unreachable,
        .close = fake_close,
    };
    struct cfg cfg;
    struct repo *r = NULL;
    int64_t n = 0;

    (void)state;
    fill_cfg(&cfg, NULL);
    assert_int_equal(repo_wrap(&cfg, &fake, NULL, &r), AS_OK);
    fake_calls = 0;
    assert_int_equal(repo_user_count(r, false, &n), AS_ERR_UNAVAILABLE);
    assert_int_equal(fake_calls, 1);
    assert_int_equal(breaker_state(repo_breaker(r), clock_mono_ms()),
                     BREAKER_OPEN);
    assert_int_equal(repo_user_count(r, false, &n), AS_ERR_UNAVAILABLE);
    assert_int_equal(fake_calls, 1);
    assert_int_equal(repo_error_count(r), 2);
    repo_close(r);
}

static void retry_delay_is_jittered_and_doubles(void **state)
{
    unsigned a, lo, hi;

    (void)state;
    for (a = 0; a < 4; a++) {
        lo = repo_retry_delay_ms(a, 0);
        hi = repo_retry_delay_ms(a, UINT32_MAX);
        assert_int_equal(lo, (4u << a) / 2);
        assert_true(hi <= 4u << a);
        assert_true(repo_retry_delay_ms(a, 1) == lo + 1);
        assert_true(repo_retry_delay_ms(a, (4u << a) / 2) == 4u << a);
    }
    assert_true(repo_retry_delay_ms(1000, UINT32_MAX) <= 4u << 8);
}

/* SQLite: a database without its schema fails every call; the breaker
 * opens and then answers without asking the backend. */
static void breaker_opens_on_real_failures(void **state)
{
    struct fx *f = *state;
    struct repo *other = NULL;
    struct user got;
    int i;

    for (i = 0; i < 3; i++)
        assert_int_equal(repo_user_by_email(f->r, "x@example.com", &got,
                                            f->a),
                         AS_ERR_INTERNAL);
    /* Mend the database behind its back: only the breaker answers now. */
    assert_int_equal(repo_open(&f->cfg, &other), AS_OK);
    assert_int_equal(repo_migrate(other), AS_OK);
    assert_int_equal(repo_user_by_email(other, "x@example.com", &got, f->a),
                     AS_ERR_NOT_FOUND);
    repo_close(other);
    assert_int_equal(repo_user_by_email(f->r, "x@example.com", &got, f->a),
                     AS_ERR_UNAVAILABLE);
    assert_int_equal(repo_ping(f->r), AS_ERR_UNAVAILABLE);
    assert_int_equal(repo_migrate(f->r), AS_ERR_UNAVAILABLE);
}

/* ---- SQLite only ------------------------------------------------------- */

/* Two processes opening a new database file at the same moment (two
 * daemons, a daemon and a `user` command): both open and migrate it.
 * Turning on write-ahead logging needs the new file to itself, and the
 * second opener got "database is locked" at once, busy timeout or not. */
struct opener {
    struct cfg cfg;
    pthread_barrier_t *go;
    enum as_err err;
};

static void *open_new(void *arg)
{
    struct opener *o = arg;
    struct repo *r = NULL;

    pthread_barrier_wait(o->go);
    o->err = repo_open(&o->cfg, &r);
    if (o->err == AS_OK)
        o->err = repo_migrate(r);
    repo_close(r);
    return NULL;
}

static void two_opens_of_a_new_file_at_once(void **state)
{
    char dir[DIR_MAX], url[DIR_MAX + 32];
    pthread_barrier_t go;
    int bad = 0;

    (void)state;
    for (int round = 0; round < 200; round++) {
        struct opener o[2];
        pthread_t t[2];

        assert_int_equal(make_tmp(dir), 0);
        snprintf(url, sizeof url, "sqlite:%s/auth.db", dir);
        pthread_barrier_init(&go, NULL, 2);
        for (int i = 0; i < 2; i++) {
            fill_cfg(&o[i].cfg, url);
            o[i].go = &go;
            pthread_create(&t[i], NULL, open_new, &o[i]);
        }
        for (int i = 0; i < 2; i++) {
            pthread_join(t[i], NULL);
            bad += o[i].err != AS_OK;
        }
        pthread_barrier_destroy(&go);
        rm_tree(dir);
    }
    assert_int_equal(bad, 0);
}

static sqlite3 *raw_open(struct fx *f)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    return db;
}

static int64_t raw_count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t n = -1;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* While another connection holds the write lock (BEGIN IMMEDIATE), opening
 * and migrating an up-to-date database succeeds at once, round after
 * round, and the readiness ping answers (it only reads); once the lock
 * is gone, nothing was applied twice. */
static void migrated_start_takes_no_write_lock(void **state)
{
    struct fx *f = *state;
    sqlite3 *writer = raw_open(f);
    struct repo *r;
    size_t n = 0;
    int i;

    f->cfg.db_timeout_ms = 200;         /* a wait for the lock would fail */
    migrations_for("sqlite", &n);
    assert_int_equal(sqlite3_exec(writer, "BEGIN IMMEDIATE", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    for (i = 0; i < 20; i++) {
        r = NULL;
        assert_int_equal(repo_open(&f->cfg, &r), AS_OK);
        assert_int_equal(repo_migrate(r), AS_OK);
        assert_int_equal(repo_ping(r), AS_OK);
        repo_close(r);
    }
    assert_int_equal(sqlite3_exec(writer, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(raw_count(writer, "SELECT count(*) FROM "
                                       "schema_migrations"),
                     (int64_t)n);
    sqlite3_close(writer);
}

struct blocked_insert {
    struct repo *r;
    struct user u;
    enum as_err err;
};

static void *insert_in_thread(void *arg)
{
    struct blocked_insert *b = arg;

    b->err = repo_user_insert(b->r, &b->u);
    return NULL;
}

/* The readiness ping has a connection of its own: with the pool's only
 * connection held by a write that waits for a lock another connection
 * holds, the ping still answers at once (it would otherwise wait for the
 * pool, and the readiness prober would call the database stalled). */
static void ping_answers_while_the_pool_is_taken(void **state)
{
    struct fx *f = *state;
    sqlite3 *writer = raw_open(f);
    struct blocked_insert b = { .err = AS_ERR_INTERNAL };
    pthread_t t;
    uint64_t t0;

    f->cfg.db_pool_size = 1;
    f->cfg.db_timeout_ms = 3000;
    assert_int_equal(repo_open(&f->cfg, &b.r), AS_OK);
    assert_int_equal(repo_migrate(b.r), AS_OK);
    memset(&b.u, 0, sizeof b.u);
    uuid_v7_new(b.u.id);
    b.u.email = "waits@example.com";
    b.u.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    b.u.role = ROLE_USER;
    b.u.is_active = true;
    b.u.created_at = b.u.updated_at = T0;
    assert_int_equal(sqlite3_exec(writer, "BEGIN IMMEDIATE", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    assert_int_equal(pthread_create(&t, NULL, insert_in_thread, &b), 0);
    nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL);
    t0 = clock_mono_ms();
    assert_int_equal(repo_ping(b.r), AS_OK);
    assert_true(clock_mono_ms() - t0 < 1000);
    assert_int_equal(sqlite3_exec(writer, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    pthread_join(t, NULL);
    assert_int_equal(b.err, AS_OK);
    sqlite3_close(writer);
    repo_close(b.r);
}

/* Descriptors of this process open on `path`. */
static unsigned fds_on(const char *path)
{
    char link[64], target[PATH_MAX];
    unsigned n = 0;
    int fd;

    for (fd = 0; fd < 1024; fd++) {
        ssize_t len;

        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        len = readlink(link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        n += strcmp(target, path) == 0;
    }
    return n;
}

/* The first ping, at start, runs on the connection the migrations left
 * idle: no connection is opened on the way to the first answer of
 * /readyz. The ping's own connection (the test above) opens at the next
 * ping, and stays. */
static void the_first_ping_opens_no_connection(void **state)
{
    struct fx *f = *state;
    char real[PATH_MAX];
    unsigned before;

    assert_non_null(realpath(f->db, real));
    before = fds_on(real);
    assert_true(before >= 1);                /* the migrations' connection */
    assert_int_equal(repo_ping(f->r), AS_OK);
    assert_int_equal(fds_on(real), before);
    assert_int_equal(repo_ping(f->r), AS_OK);
    assert_int_equal(fds_on(real), before + 1);
    assert_int_equal(repo_ping(f->r), AS_OK);
    assert_int_equal(fds_on(real), before + 1);
}

/* The file deleted, replaced by another, reached through a symbolic link
 * pointed elsewhere, or its WAL deleted, under a running daemon: writes
 * and pings are refused (they would land where the next start does not
 * look), and a connection opened after that (here the ping's own, at the
 * second ping) neither makes a new file nor opens the other one. */
static void a_file_gone_after_start_gets_no_new_connection(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX + 16], other[PATH_MAX + 32];
    int how;

    for (how = 0; how < 4; how++) {
        struct stat st;
        struct user u;
        struct repo *r;
        FILE *fp;

        /* how 2: the path is a link to a/real.db, pointed at b/real.db */
        snprintf(path, sizeof path, "%s%s", f->db, how == 2 ? ".link" : "");
        if (how == 2) {
            snprintf(other, sizeof other, "%s.a", f->db);
            assert_int_equal(symlink(other, path), 0);
        }
        snprintf(f->url, sizeof f->url, "sqlite:%s", path);
        f->cfg.database_url = f->url;
        f->cfg.cb_failure_threshold = 100;  /* the answers, not the breaker */
        assert_int_equal(repo_open(&f->cfg, &r), AS_OK);
        assert_int_equal(repo_migrate(r), AS_OK);
        if (how == 0) {                     /* deleted, with its WAL */
            assert_int_equal(unlink(path), 0);
        } else if (how == 1) {              /* replaced by an empty file */
            snprintf(other, sizeof other, "%s.other", path);
            fp = fopen(other, "wb");
            assert_non_null(fp);
            fclose(fp);
            assert_int_equal(rename(other, path), 0);
        } else if (how == 2) {              /* the link pointed elsewhere */
            snprintf(other, sizeof other, "%s.b", f->db);
            fp = fopen(other, "wb");
            assert_non_null(fp);
            fclose(fp);
            assert_int_equal(unlink(path), 0);
            assert_int_equal(symlink(other, path), 0);
        } else {                            /* its WAL and shm deleted */
            snprintf(other, sizeof other, "%s-wal", path);
            assert_int_equal(unlink(other), 0);
            snprintf(other, sizeof other, "%s-shm", path);
            assert_int_equal(unlink(other), 0);
        }
        memset(&u, 0, sizeof u);
        uuid_v7_new(u.id);
        u.email = "gone@example.com";
        u.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
        u.role = ROLE_USER;
        u.created_at = u.updated_at = T0;
        assert_int_equal(repo_user_insert(r, &u), AS_ERR_UNAVAILABLE);
        assert_int_equal(repo_ping(r), AS_ERR_UNAVAILABLE);   /* borrowed */
        assert_int_equal(repo_ping(r), AS_ERR_UNAVAILABLE);   /* its own */
        if (how == 0)
            assert_int_not_equal(stat(path, &st), 0);         /* not made */
        else if (how != 3)
            assert_true(stat(path, &st) == 0 && st.st_size == 0);
        repo_close(r);
        unlink(path);
        snprintf(other, sizeof other, "%s-wal", path);
        unlink(other);
        snprintf(other, sizeof other, "%s-shm", path);
        unlink(other);
    }
}

/* A symbolic link to a file not there yet: the file is made readable by
 * its owner only, as at a plain path (file_is_private), and so are its
 * WAL and shared memory. */
static void a_link_to_no_file_makes_a_private_one(void **state)
{
    struct fx *f = *state;
    char link[PATH_MAX + 16], target[PATH_MAX + 16], side[PATH_MAX + 24];
    const char *suffix[] = { "", "-wal", "-shm" };
    struct repo *r;
    size_t i;

    snprintf(link, sizeof link, "%s.link", f->db);
    snprintf(target, sizeof target, "%s.target", f->db);
    assert_int_equal(symlink(target, link), 0);
    snprintf(f->url, sizeof f->url, "sqlite:%s", link);
    f->cfg.database_url = f->url;
    assert_int_equal(repo_open(&f->cfg, &r), AS_OK);
    assert_int_equal(repo_migrate(r), AS_OK);
    for (i = 0; i < 3; i++) {
        struct stat st;

        snprintf(side, sizeof side, "%s%s", target, suffix[i]);
        assert_int_equal(stat(side, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }
    repo_close(r);
}

/* Another connection holds the write lock past the busy timeout: the
 * first write waits it out, the next ones are refused at once, reads and
 * the breaker are untouched, the ping says "not ready" without waiting;
 * with the lock free, the ping and the writes go through again. */
static void a_write_lock_held_elsewhere_refuses_writes_at_once(void **state)
{
    struct fx *f = *state;
    sqlite3 *writer = raw_open(f);
    struct repo *r = NULL;
    struct user u, got;
    uint64_t t0;

    f->cfg.db_timeout_ms = 300;
    f->cfg.cb_failure_threshold = 1;    /* one counted wait would open it */
    assert_int_equal(repo_open(&f->cfg, &r), AS_OK);
    assert_int_equal(repo_migrate(r), AS_OK);
    memset(&u, 0, sizeof u);
    uuid_v7_new(u.id);
    u.email = "held@example.com";
    u.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    u.role = ROLE_USER;
    u.is_active = true;
    u.created_at = u.updated_at = T0;
    assert_int_equal(sqlite3_exec(writer, "BEGIN IMMEDIATE", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    t0 = clock_mono_ms();
    assert_int_equal(repo_user_insert(r, &u), AS_ERR_UNAVAILABLE);
    assert_true(clock_mono_ms() - t0 >= 300);
    for (int i = 0; i < 5; i++) {
        t0 = clock_mono_ms();
        assert_int_equal(repo_user_insert(r, &u), AS_ERR_UNAVAILABLE);
        assert_true(clock_mono_ms() - t0 < 250);
        assert_int_equal(repo_user_by_email(r, "held@example.com", &got,
                                            f->a),
                         AS_ERR_NOT_FOUND);
        t0 = clock_mono_ms();
        assert_int_equal(repo_ping(r), AS_ERR_UNAVAILABLE);
        assert_true(clock_mono_ms() - t0 < 250);
    }
    assert_int_equal(breaker_state(repo_breaker(r), clock_mono_ms()),
                     BREAKER_CLOSED);
    assert_int_equal(sqlite3_exec(writer, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(repo_ping(r), AS_OK);
    assert_int_equal(repo_user_insert(r, &u), AS_OK);
    sqlite3_close(writer);
    repo_close(r);
}

static unsigned gate_asked;

static bool gate_closed(void *arg, uint64_t now_ms)
{
    (void)now_ms;
    gate_asked++;
    return *(bool *)arg;
}

/* A gate that says the database hangs refuses every call at once, as an
 * open breaker does, without counting against the breaker; the calls go
 * through again once it says otherwise. */
static void a_closed_gate_refuses_calls_at_once(void **state)
{
    struct fx *f = *state;
    struct repo *r = NULL;
    bool hangs = false;

    assert_int_equal(repo_open(&f->cfg, &r), AS_OK);
    assert_int_equal(repo_migrate(r), AS_OK);
    repo_set_gate(r, gate_closed, NULL, &hangs);
    gate_asked = 0;
    assert_int_equal(repo_ping(r), AS_OK);
    assert_int_equal(gate_asked, 1);
    hangs = true;
    for (int i = 0; i < 20; i++)
        assert_int_equal(repo_ping(r), AS_ERR_UNAVAILABLE);
    assert_int_equal(breaker_state(repo_breaker(r), clock_mono_ms()),
                     BREAKER_CLOSED);
    assert_true(repo_error_count(r) >= 20);
    hangs = false;
    assert_int_equal(repo_ping(r), AS_OK);
    repo_set_gate(r, NULL, NULL, NULL);
    assert_int_equal(repo_ping(r), AS_OK);
    assert_int_equal(gate_asked, 22);
    repo_close(r);
}

static void failed_migration_changes_nothing(void **state)
{
    struct fx *f = *state;
    sqlite3 *db = raw_open(f);
    size_t n = 0;

    migrations_for("sqlite", &n);
    assert_true(n >= 1);
    /* 0001 creates login_failures last: make that step fail. */
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE login_failures (x)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(repo_migrate(f->r), AS_ERR_INTERNAL);
    assert_int_equal(raw_count(db, "SELECT count(*) FROM sqlite_master "
                                   "WHERE name IN ('users', 'sessions')"),
                     0);
    assert_int_equal(raw_count(db, "SELECT count(*) FROM schema_migrations"),
                     0);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE login_failures", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    assert_int_equal(repo_migrate(f->r), AS_OK);
    assert_int_equal(repo_migrate(f->r), AS_OK);
    assert_int_equal(raw_count(db, "SELECT count(*) FROM schema_migrations"),
                     (int64_t)n);
    assert_int_equal(raw_count(db, "SELECT journal_mode = 'wal' "
                                   "FROM pragma_journal_mode"),
                     1);
    sqlite3_close(db);
}

static void file_is_private(void **state)
{
    struct fx *f = *state;
    struct stat st;
    char parent[PATH_MAX];

    assert_int_equal(stat(f->db, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(parent, sizeof parent, "%s/data", f->dir);
    assert_int_equal(stat(parent, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

static void open_errors(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX + 64];
    struct cfg cfg;
    struct repo *r = (struct repo *)&cfg;
    FILE *fp;

    fill_cfg(&cfg, "mysql://localhost/db");
    assert_int_equal(repo_open(&cfg, &r), AS_ERR_INTERNAL);
    assert_null(r);
    fill_cfg(&cfg, "sqlite:");
    assert_int_equal(repo_open(&cfg, &r), AS_ERR_INTERNAL);
    /* A regular file where a folder should be. */
    snprintf(path, sizeof path, "%s/plain", f->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("not a folder", fp);
    fclose(fp);
    snprintf(path, sizeof path, "sqlite:%s/plain/sub/auth.db", f->dir);
    fill_cfg(&cfg, path);
    assert_int_not_equal(repo_open(&cfg, &r), AS_OK);
    assert_null(r);
    /* A file that is not a database. */
    snprintf(path, sizeof path, "sqlite:%s/plain", f->dir);
    fill_cfg(&cfg, path);
    assert_int_equal(repo_open(&cfg, &r), AS_ERR_INTERNAL);
    assert_null(r);
}

static void memory_database_works(void **state)
{
    struct cfg cfg;
    struct repo *r = NULL;
    int64_t n = -1;

    (void)state;
    fill_cfg(&cfg, "sqlite::memory:");
    assert_int_equal(repo_open(&cfg, &r), AS_OK);
    assert_int_equal(repo_migrate(r), AS_OK);
    assert_int_equal(repo_user_count(r, false, &n), AS_OK);
    assert_int_equal(n, 0);
    repo_close(r);
}

static void pg_skipped(void **state)
{
    (void)state;
    print_message("AUTH_TEST_PG_URL is not set: PostgreSQL cases skipped\n");
    skip();
}


/* ---- login failures (lockout) ------------------------------------------ */

#define LOCK_MAX INT64_C(8000)

/* A fresh email for this case: the PostgreSQL group shares one table of
 * login failures between cases. */
static const char *lock_email(struct fx *f, const char *tag)
{
    char id[UUID_STR_LEN];

    uuid_v7_new(id);
    return arena_printf(f->a, "%s-%s@example.com", tag, id);
}

/* The lockout rules (src/lockout.c) on the real storage of both
 * backends: threshold 3 per address, so 30 from everywhere. */
static const struct lockout_policy lock_policy = { 3, LOCK_MAX };

/* One attempt: 0 when it may be checked, else the Retry-After seconds. */
static int64_t try_at(struct fx *f, const char *email, const char *ip,
                      int64_t now)
{
    int64_t retry = -1;
    enum as_err err = lockout_begin(f->r, &lock_policy, email, ip, now,
                                    &retry, NULL, NULL);

    assert_true(err == AS_OK || err == AS_ERR_RATE_LIMITED);
    assert_true(err == AS_OK ? retry == 0 : retry >= 1);
    return retry;
}

struct counts_seen {
    struct login_count mine, all;
};

static int64_t copy_counts(void *ctx, struct login_count *mine,
                           struct login_count *all)
{
    struct counts_seen *c = ctx;

    c->mine = *mine;
    c->all = *all;
    return 0;
}

/* The stored counts of (email, address key) and of the email. */
static void counts_of(struct fx *f, const char *email, const char *key,
                      int64_t *mine, int64_t *all, int64_t *until)
{
    struct counts_seen c;

    assert_int_equal(repo_login_failures_update(f->r, email, key,
                                                copy_counts, &c),
                     AS_OK);
    *mine = c.mine.count;
    *all = c.all.count;
    *until = c.mine.locked_until > c.all.locked_until ? c.mine.locked_until
                                                      : c.all.locked_until;
}

static void lockout_delays_double_and_cap(void **state)
{
    struct fx *f = *state;
    const char *e = lock_email(f, "lock");
    int64_t mine = -1, all = -1, until = -1;

    counts_of(f, e, "10.0.0.1", &mine, &all, &until);
    assert_true(mine == 0 && all == 0 && until == 0);
    /* Three attempts are checked; the third locks for 1 s at once. */
    assert_int_equal(try_at(f, e, "10.0.0.1", T0), 0);
    assert_int_equal(try_at(f, e, "10.0.0.1", T0 + 1), 0);
    assert_int_equal(try_at(f, e, "10.0.0.1", T0 + 10), 0);
    counts_of(f, e, "10.0.0.1", &mine, &all, &until);
    assert_true(mine == 3 && all == 3 && until == T0 + 1010);
    /* Attempts during the delay are refused and double it, up to 8 s. */
    assert_int_equal(try_at(f, e, "10.0.0.1", T0 + 20), 2);
    assert_int_equal(try_at(f, e, "10.0.0.1", T0 + 30), 4);
    assert_int_equal(try_at(f, e, "10.0.0.1", T0 + 40), 8);
    assert_int_equal(try_at(f, e, "10.0.0.1", T0 + 50), 8);
    counts_of(f, e, "10.0.0.1", &mine, &all, &until);
    assert_true(mine == 7 && all == 3 && until == T0 + 8050);
    /* After the delay one attempt is checked again. */
    assert_int_equal(try_at(f, e, "10.0.0.1", T0 + 8051), 0);
    /* Another address is not locked; nor the address on another email. */
    assert_int_equal(try_at(f, e, "10.0.0.2", T0 + 8052), 0);
    assert_int_equal(try_at(f, lock_email(f, "other"), "10.0.0.1",
                            T0 + 8053), 0);
    /* A complete login forgets the address's and the total count. */
    assert_int_equal(lockout_passed(f->r, e, "10.0.0.1"), AS_OK);
    counts_of(f, e, "10.0.0.1", &mine, &all, &until);
    assert_true(mine == 0 && all == 0 && until == 0);
    assert_int_equal(try_at(f, e, "10.0.0.1", T0 + 8060), 0);
}

static void lockout_one_address_never_locks_others(void **state)
{
    struct fx *f = *state;
    const char *e = lock_email(f, "capped");
    int64_t mine, all, until, t = T0;
    int i;

    /* 500 attempts from one address, each after its delay ran out. */
    for (i = 0; i < 500; i++) {
        try_at(f, e, "203.0.113.7", t);
        t += LOCK_MAX + 1;
    }
    counts_of(f, e, "203.0.113.7", &mine, &all, &until);
    assert_int_equal(mine, 500);
    assert_int_equal(all, 3);              /* its share: the threshold */
    assert_int_equal(try_at(f, e, "203.0.113.8", t), 0);
    /* Its whole /64 is one IPv6 address: the other /64 is not locked. */
    for (i = 0; i < 3; i++)
        assert_int_equal(try_at(f, e, i ? "2001:db8:1:2::9"
                                        : "2001:db8:1:2::1", t + i), 0);
    assert_true(try_at(f, e, "2001:db8:1:2:ffff::5", t + 5) > 0);
    assert_int_equal(try_at(f, e, "2001:db8:1:3::1", t + 6), 0);
    counts_of(f, e, "2001:db8:1:2::/64", &mine, &all, &until);
    assert_int_equal(mine, 4);
}

static void lockout_from_everywhere_past_the_total(void **state)
{
    struct fx *f = *state;
    const char *e = lock_email(f, "spread");
    int64_t mine = -1, all = -1, until = -1;
    char ip[32];
    int i;

    /* 3 failures from each of 10 addresses reach 10 times the
     * threshold, which locks no one else; the 31st, from an eleventh
     * address, goes past it and locks the email. */
    for (i = 0; i < 31; i++) {
        snprintf(ip, sizeof ip, "192.0.2.%d", i / 3);
        assert_int_equal(try_at(f, e, ip, T0 + i), 0);
        counts_of(f, e, "192.0.2.200", &mine, &all, &until);
        assert_true(mine == 0 && all == i + 1 &&
                    until == (i < 30 ? 0 : T0 + 30 + 1000));
    }
    /* A fresh address is refused too, and its attempt doubles it. */
    assert_int_equal(try_at(f, e, "192.0.2.201", T0 + 40), 2);
    counts_of(f, e, "192.0.2.0", &mine, &all, &until);
    assert_true(mine == 3 && all == 32 && until == T0 + 2040);
    /* A complete login clears the total and its own address only. */
    assert_int_equal(lockout_passed(f->r, e, "192.0.2.1"), AS_OK);
    counts_of(f, e, "192.0.2.0", &mine, &all, &until);
    assert_true(mine == 3 && all == 0);
    counts_of(f, e, "192.0.2.1", &mine, &all, &until);
    assert_true(mine == 0 && all == 0 && until == 0);
    /* An admin's unlock forgets every count of the email. */
    assert_int_equal(lockout_unlock(f->r, e), AS_OK);
    counts_of(f, e, "192.0.2.0", &mine, &all, &until);
    assert_true(mine == 0 && all == 0 && until == 0);
}

/* A session stored for a complete login ends its run of failures as
 * lockout_passed() does (the total and its own address), in the
 * session's transaction; "*" is no client's address. */
static void a_complete_logins_session_ends_the_run(void **state)
{
    struct fx *f = *state;
    struct session_upkeep up = { .passed_ip = "192.0.2.1" };
    int64_t mine = -1, all = -1, until = -1;
    struct session s;
    struct user u;
    uint8_t h[REPO_HASH_LEN];

    new_user(f, &u, lock_email(f, "passed"), ROLE_USER, true);
    up.passed_email = u.email;
    assert_int_equal(try_at(f, u.email, "192.0.2.1", T0), 0);
    assert_int_equal(try_at(f, u.email, "192.0.2.2", T0 + 1), 0);
    new_session(f, &s, u.id, T0 + 5, T0 + DAY, h);
    counts_of(f, u.email, "192.0.2.1", &mine, &all, &until);
    assert_true(mine == 1 && all == 2);       /* no login named: kept */
    new_session_up(f, &s, u.id, T0 + 10, T0 + DAY, h, &up);
    counts_of(f, u.email, "192.0.2.2", &mine, &all, &until);
    assert_true(mine == 1 && all == 0);
    counts_of(f, u.email, "192.0.2.1", &mine, &all, &until);
    assert_true(mine == 0 && all == 0 && until == 0);
    up.passed_ip = "*";
    uuid_v7_new(s.id);
    assert_int_equal(repo_session_create(f->r, &s, h, &up),
                     AS_ERR_BAD_REQUEST);
    assert_false(live(f, s.id, T0 + 10));
}

/* fn() of a count that also decides whether the user is read. */
struct count_read {
    struct counts_seen seen;
    struct repo_user_read *read;
    bool refuse;
};

static int64_t count_then_read(void *ctx, struct login_count *mine,
                               struct login_count *all)
{
    struct count_read *x = ctx;

    mine->count++;
    all->count++;
    mine->last_at = all->last_at = T0;
    x->seen.mine = *mine;
    x->read->wanted = !x->refuse;
    return 0;
}

/* A login's count and its lookup are one step: the user is read with
 * the counts' writes (no round trip of its own on PostgreSQL), only
 * when fn() wants it, and the counts are written either way. */
static void lockout_count_reads_the_user(void **state)
{
    struct fx *f = *state;
    const char *e = lock_email(f, "reader");
    struct user u, got;
    struct repo_user_read read = { .out = &got, .a = f->a };
    struct count_read x = { .read = &read };
    int64_t mine, all, until;
    uint64_t rt;

    new_user(f, &u, e, ROLE_USER, true);
    rt = db_pg_round_trips();
    assert_int_equal(repo_login_failures_read(f->r, e, "192.0.2.1",
                                              count_then_read, &x, &read),
                     AS_OK);
    /* BEGIN, lock and read; then writes, lookup and COMMIT */
    assert_int_equal(db_pg_round_trips() - rt, on_pg ? 2 : 0);
    assert_true(read.found);
    assert_string_equal(got.id, u.id);
    assert_string_equal(got.email, e);
    assert_string_equal(got.password_hash, u.password_hash);
    assert_true(got.is_active);
    counts_of(f, e, "192.0.2.1", &mine, &all, &until);
    assert_true(mine == 1 && all == 1);

    x.refuse = true;                      /* the rule wants no lookup */
    memset(&got, 0, sizeof got);
    assert_int_equal(repo_login_failures_read(f->r, e, "192.0.2.1",
                                              count_then_read, &x, &read),
                     AS_OK);
    assert_false(read.found);
    assert_true(got.email == NULL);
    counts_of(f, e, "192.0.2.1", &mine, &all, &until);
    assert_true(mine == 2 && all == 2);

    x.refuse = false;                     /* nobody has this email */
    e = lock_email(f, "nobody");
    assert_int_equal(repo_login_failures_read(f->r, e, "192.0.2.1",
                                              count_then_read, &x, &read),
                     AS_OK);
    assert_false(read.found);
    assert_int_equal(x.seen.mine.count, 1);
    assert_int_equal(repo_login_failures_read(f->r, e, "192.0.2.1",
                                              count_then_read, &x, NULL),
                     AS_ERR_BAD_REQUEST);
}

static void lockout_bad_keys(void **state)
{
    struct fx *f = *state;
    const char *e = lock_email(f, "bad");
    struct counts_seen c;
    int64_t mine, all, until;

    /* "*" is the total's row: no client may use it. */
    assert_int_equal(repo_login_failures_update(f->r, e, "*", copy_counts,
                                                &c),
                     AS_ERR_BAD_REQUEST);
    assert_int_equal(repo_login_failures_update(f->r, NULL, "::1",
                                                copy_counts, &c),
                     AS_ERR_BAD_REQUEST);
    assert_int_equal(repo_login_failures_update(f->r, e, "::1", NULL, &c),
                     AS_ERR_BAD_REQUEST);
    assert_int_equal(repo_login_failures_clear(f->r, NULL, "::1"),
                     AS_ERR_BAD_REQUEST);
    assert_int_equal(repo_login_failures_clear(f->r, e, "*"),
                     AS_ERR_BAD_REQUEST);
    /* Text that looks like SQL is just text. */
    try_at(f, "x'); DELETE FROM login_failures; --@a.b", "' OR 1=1 --", T0);
    try_at(f, e, "::1", T0);
    try_at(f, e, "::1", T0);
    counts_of(f, e, "::/64", &mine, &all, &until);
    assert_true(mine == 2 && all == 2 && until == 0);
}

static void lockout_counts_restart_after_a_quiet_day(void **state)
{
    struct fx *f = *state;
    const char *e = lock_email(f, "quiet"), *gone = lock_email(f, "gone");
    int64_t mine = -1, all = -1, until = -1;
    int i;

    for (i = 0; i < 5; i++)
        try_at(f, e, "10.9.9.9", T0);
    try_at(f, gone, "10.9.9.9", T0);
    /* An attempt a day and a bit later counts from one again. */
    assert_int_equal(try_at(f, e, "10.9.9.9", T0 + DAY + 1), 0);
    counts_of(f, e, "10.9.9.9", &mine, &all, &until);
    assert_true(mine == 1 && all == 1 && until == 0);
    /* Idle rows are pruned, a few with each new run of failures. */
    for (i = 0; i < 50; i++) {
        char ip[32];

        counts_of(f, gone, "10.9.9.9", &mine, &all, &until);
        if (mine == 0 && all == 0)
            break;
        snprintf(ip, sizeof ip, "10.8.0.%d", i);
        try_at(f, e, ip, T0 + DAY + 2);
    }
    assert_true(mine == 0 && all == 0 && until == 0);
}

struct lock_racer {
    struct repo *r;
    pthread_barrier_t *go;
    const struct lockout_policy *p;
    const char *email;
    char ip[32];
    int rounds, admitted;
    enum as_err err;
};

static void *lock_race(void *arg)
{
    struct lock_racer *x = arg;
    int64_t retry;
    enum as_err err;
    int i;

    pthread_barrier_wait(x->go);
    for (i = 0; i < x->rounds && x->err == AS_OK; i++) {
        err = lockout_begin(x->r, x->p, x->email, x->ip, T0 + i, &retry,
                            NULL, NULL);
        if (err == AS_OK)
            x->admitted++;
        else if (err != AS_ERR_RATE_LIMITED)
            x->err = err;
    }
    return NULL;
}

/* N threads, two on each address, `rounds` attempts each; returns how
 * many were let through to a check. */
static int lock_threads(struct fx *f, const char *e,
                        const struct lockout_policy *p, int rounds)
{
    enum { N = 4 };
    struct lock_racer x[N];
    pthread_barrier_t go;
    pthread_t t[N];
    int i, admitted = 0;

    assert_int_equal(pthread_barrier_init(&go, NULL, N), 0);
    for (i = 0; i < N; i++) {
        x[i] = (struct lock_racer){ .r = f->r, .go = &go, .p = p,
                                    .email = e, .rounds = rounds };
        snprintf(x[i].ip, sizeof x[i].ip, "198.51.100.%d", i / 2);
        assert_int_equal(pthread_create(&t[i], NULL, lock_race, &x[i]), 0);
    }
    for (i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(x[i].err, AS_OK);
        admitted += x[i].admitted;
    }
    pthread_barrier_destroy(&go);
    return admitted;
}

static void lockout_counts_every_concurrent_failure(void **state)
{
    struct fx *f = *state;
    const struct lockout_policy big = { 1000, LOCK_MAX };
    const char *e = lock_email(f, "many");
    int64_t mine, all, until;

    assert_int_equal(lock_threads(f, e, &big, 25), 100);
    counts_of(f, e, "198.51.100.0", &mine, &all, &until);
    assert_int_equal(mine, 50);
    assert_int_equal(all, 100);
    counts_of(f, e, "198.51.100.1", &mine, &all, &until);
    assert_int_equal(mine, 50);
}

/* ---- patches, session lifetime, the account behind a session --------- */

static int64_t outbox_rows(struct fx *f, const char *kind, const char *to)
{
    char sql[512];

    snprintf(sql, sizeof sql, "SELECT count(*) FROM outbox WHERE kind = '%s' "
             "AND recipient = '%s' AND seed IS NULL", kind, to);
    return scalar(f, sql);
}

/* A patch writes the fields it names and nothing else, even when the
 * caller's view of the row is stale (the lost update of a full-row
 * write); a changed email is unverified and mails the old address. */
static void patch_writes_only_named_fields(void **state)
{
    struct fx *f = *state;
    struct user admin, u, got;
    struct session s;
    uint8_t h[REPO_HASH_LEN];
    struct outbox_row notice = { .kind = "email_changed",
                                 .created_at = T0 + 5 };
    struct user_patch name = { .set = UF_FULL_NAME, .full_name = "Ada" };
    struct user_patch off = { .set = UF_ACTIVE | UF_ROLE,
                              .is_active = false, .role = ROLE_USER };
    struct user_patch mail = { .set = UF_EMAIL, .email = "new@example.com",
                               .email_notice = &notice };
    struct user_patch verified = { .set = UF_VERIFIED, .is_verified = true };

    new_user(f, &admin, "root@example.com", ROLE_ADMIN, true);
    new_user(f, &u, "old@example.com", ROLE_ADMIN, true);
    new_session(f, &s, u.id, T0, T0 + DAY, h);
    assert_int_equal(repo_user_patch(f->r, u.id, &off, T0 + 1, NULL, NULL),
                     AS_OK);
    assert_false(live(f, s.id, T0 + 1));     /* deactivation revoked it */
    /* A name change written after the deactivation keeps it. */
    assert_int_equal(repo_user_patch(f->r, u.id, &name, T0 + 2, &got, f->a),
                     AS_OK);
    assert_string_equal(got.full_name, "Ada");
    assert_false(got.is_active);
    assert_int_equal(got.role, ROLE_USER);
    assert_int_equal(got.updated_at, T0 + 2);
    assert_int_equal(got.verified_at, 0);            /* never verified */
    assert_int_equal(repo_user_patch(f->r, u.id, &verified, T0 + 3, NULL,
                                     NULL), AS_OK);
    uuid_v7_new(notice.id);
    assert_int_equal(repo_user_patch(f->r, u.id, &mail, T0 + 4, &got, f->a),
                     AS_OK);
    assert_string_equal(got.email, "new@example.com");
    assert_false(got.is_verified);
    /* a new email is not verified, but the account was (migration
     * 0016): a reset keeps its factors */
    assert_int_equal(got.verified_at, T0 + 3);
    assert_string_equal(got.full_name, "Ada");
    assert_int_equal(outbox_rows(f, "email_changed", "old@example.com"), 1);
    /* The same email again: nothing changes, nothing is mailed. */
    assert_int_equal(repo_user_patch(f->r, u.id, &verified, T0 + 5, NULL,
                                     NULL), AS_OK);
    uuid_v7_new(notice.id);
    assert_int_equal(repo_user_patch(f->r, u.id, &mail, T0 + 6, &got, f->a),
                     AS_OK);
    assert_true(got.is_verified);
    assert_int_equal(got.verified_at, T0 + 3);       /* the first time */
    assert_int_equal(outbox_rows(f, "email_changed", "new@example.com"), 0);
    /* The last admin rule holds inside the patch. */
    assert_int_equal(repo_user_patch(f->r, admin.id, &off, T0 + 7, NULL,
                                     NULL), AS_ERR_LAST_ADMIN);
    assert_int_equal(repo_user_by_id(f->r, admin.id, &got, f->a), AS_OK);
    assert_true(got.is_active);
    assert_int_equal(got.role, ROLE_ADMIN);
    uuid_v7_new(u.id);
    assert_int_equal(repo_user_patch(f->r, u.id, &name, T0 + 8, NULL, NULL),
                     AS_ERR_NOT_FOUND);
}

/* A session ends max_life_ms after its creation however often it is
 * refreshed; the state of a session carries its user's email now. */
static void session_ends_at_its_max_life(void **state)
{
    struct fx *f = *state;
    struct user u;
    struct session s, out;
    struct session_state st;
    uint8_t p[REPO_HASH_LEN], c1[REPO_HASH_LEN], c2[REPO_HASH_LEN];
    enum rotate_result res = ROTATE_INVALID;
    struct user_patch mail = { .set = UF_EMAIL, .email = "now@example.com" };
    const int64_t life = 60000;

    new_user(f, &u, "then@example.com", ROLE_USER, true);
    new_session(f, &s, u.id, T0, T0 + life, p);
    randombytes_buf(c1, sizeof c1);
    randombytes_buf(c2, sizeof c2);
    /* Refreshed near the end: the new expiry stops at the end. */
    assert_int_equal(repo_refresh_rotate(f->r, p, c1, T0 + 50000, GRACE,
                                         T0 + 50000 + DAY, life, &res, &out,
                                         f->a), AS_OK);
    assert_int_equal(res, ROTATE_OK);
    assert_int_equal(out.expires_at, T0 + life);
    assert_true(live(f, s.id, T0 + life - 1));
    /* Past the end: refused, and the access check agrees. */
    assert_int_equal(repo_refresh_rotate(f->r, c1, c2, T0 + life, GRACE,
                                         T0 + life + DAY, life, &res, &out,
                                         f->a), AS_OK);
    assert_int_equal(res, ROTATE_INVALID);
    assert_false(live(f, s.id, T0 + life));

    assert_int_equal(repo_session_state(f->r, s.id, T0, &st), AS_OK);
    assert_string_equal(st.email, "then@example.com");
    assert_int_equal(repo_user_patch(f->r, u.id, &mail, T0 + 1, NULL, NULL),
                     AS_OK);
    assert_int_equal(repo_session_state(f->r, s.id, T0, &st), AS_OK);
    assert_string_equal(st.email, "now@example.com");
}

/* A write made for a signed-in caller (repo_act_as) lands only while
 * that caller may still make it: its session unrevoked, its account
 * active, and, acting as an admin, still an admin; one-statement writes
 * included. Writes for nobody in particular are not checked. */
static void writes_land_only_while_the_caller_may_write(void **state)
{
    struct fx *f = *state;
    struct user u, admin, other, got;
    struct session s, sa;
    uint8_t h[REPO_HASH_LEN];
    struct user_patch name = { .set = UF_FULL_NAME, .full_name = "Eve" };
    struct user_patch promote = { .set = UF_ROLE, .role = ROLE_ADMIN };
    struct user_patch demote = { .set = UF_ROLE, .role = ROLE_USER };
    struct repo_actor me, boss;

    new_user(f, &u, "actor@example.com", ROLE_USER, true);
    new_user(f, &admin, "boss@example.com", ROLE_ADMIN, true);
    new_user(f, &other, "other@example.com", ROLE_USER, true);
    new_user(f, &got, "keep@example.com", ROLE_ADMIN, true); /* 2nd admin */
    new_session(f, &s, u.id, T0, T0 + DAY, h);
    new_session(f, &sa, admin.id, T0, T0 + DAY, h);
    me = (struct repo_actor){ .sid = s.id, .user_id = u.id };
    boss = (struct repo_actor){ .sid = sa.id, .user_id = admin.id,
                                .admin = true };

    repo_act_as(&me);
    assert_int_equal(repo_user_patch(f->r, u.id, &name, T0 + 1, NULL, NULL),
                     AS_OK);
    /* Another user's session is no licence. */
    me.sid = sa.id;
    assert_int_equal(repo_session_revoke_all(f->r, u.id, NULL, T0 + 2),
                     AS_ERR_INVALID_TOKEN);
    me.sid = s.id;
    repo_act_as(NULL);
    assert_int_equal(repo_session_revoke(f->r, s.id, NULL, T0 + 3), AS_OK);

    repo_act_as(&me);                              /* its session ended */
    name.full_name = "Mallory";
    assert_int_equal(repo_user_patch(f->r, u.id, &name, T0 + 4, NULL, NULL),
                     AS_ERR_INVALID_TOKEN);
    assert_int_equal(repo_session_revoke_all(f->r, u.id, NULL, T0 + 4),
                     AS_ERR_INVALID_TOKEN);             /* one statement */
    repo_act_as(NULL);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.full_name, "Eve");

    /* An admin's write, then the same after a demotion, then after a
     * deactivation (whose revocation of the session is undone by hand:
     * the account's state alone must refuse it). */
    repo_act_as(&boss);
    assert_int_equal(repo_user_patch(f->r, other.id, &promote, T0 + 5, NULL,
                                     NULL), AS_OK);
    assert_int_equal(repo_user_patch(f->r, other.id, &demote, T0 + 6, NULL,
                                     NULL), AS_OK);
    repo_act_as(NULL);
    assert_int_equal(repo_user_patch(f->r, admin.id, &demote, T0 + 7, NULL,
                                     NULL), AS_OK);
    repo_act_as(&boss);
    assert_int_equal(repo_user_patch(f->r, other.id, &promote, T0 + 8, NULL,
                                     NULL), AS_ERR_FORBIDDEN);
    boss.admin = false;                 /* as itself it may still write */
    assert_int_equal(repo_user_patch(f->r, admin.id, &name, T0 + 8, NULL,
                                     NULL), AS_OK);
    repo_act_as(NULL);
    switch_off_by_hand(f, &admin);
    repo_act_as(&boss);
    assert_int_equal(repo_user_patch(f->r, admin.id, &name, T0 + 9, NULL,
                                     NULL), AS_ERR_INVALID_TOKEN);
    repo_act_as(NULL);
    assert_int_equal(repo_user_by_id(f->r, other.id, &got, f->a), AS_OK);
    assert_int_equal(got.role, ROLE_USER);
    /* Reads are not writes: the ended caller still reads. */
    repo_act_as(&me);
    assert_int_equal(repo_user_by_id(f->r, u.id, &got, f->a), AS_OK);
    repo_act_as(NULL);
}

static void lockout_concurrent_guesses_stop_at_the_threshold(void **state)
{
    struct fx *f = *state;
    int round;

    /* Many rounds: each lets exactly 3 attempts from each address
     * through (the times stay inside the first delay). */
    for (round = 0; round < 10; round++)
        assert_int_equal(lock_threads(f, lock_email(f, "race"),
                                      &lock_policy, 10), 6);
}

#define CASE(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define BARE(fn) cmocka_unit_test_setup_teardown(fn, setup_bare, teardown)

int main(void)
{
    const struct CMUnitTest common[] = {
        CASE(migrate_twice),
        CASE(insert_and_get),
        CASE(duplicate_email),
        CASE(update_fields),
        CASE(last_admin_is_kept),
        CASE(deactivation_revokes_sessions),
        CASE(list_pages),
        CASE(list_query_is_literal),
        CASE(password_set_and_rehash),
        CASE(delete_cascades),
        CASE(sessions_lifecycle),
        CASE(session_state_cases),
        CASE(rotate_ok_then_grace_then_reuse),
        CASE(rotate_invalid_cases),
        CASE(login_stores_only_while_the_account_allows_it),
        CASE(ended_sessions_are_pruned),
        CASE(idle_counts_pruning_rests_after_finding_nothing),
        CASE(pruning_rests_after_finding_nothing),
        CASE(a_pruning_deletes_a_bounded_number_of_tokens),
        CASE(deleting_an_account_sheds_only_its_own_rows),
        CASE(deleting_a_large_account_decides_first),
        CASE(clearing_an_emails_counts_goes_a_batch_at_a_time),
        CASE(batches_stay_bounded_on_stale_statistics),
        CASE(an_email_change_carries_failure_counts),
        CASE(sessions_beyond_the_cap_end),
        CASE(rotated_tokens_past_their_lifetime_go),
        CASE(rotated_token_answers_alike_pruned_or_not),
        CASE(a_lowered_lifetime_keeps_the_grace),
        CASE(rotate_races_have_one_winner),
        CASE(lockout_delays_double_and_cap),
        CASE(lockout_one_address_never_locks_others),
        CASE(lockout_from_everywhere_past_the_total),
        CASE(a_complete_logins_session_ends_the_run),
        CASE(lockout_count_reads_the_user),
        CASE(lockout_bad_keys),
        CASE(lockout_counts_restart_after_a_quiet_day),
        CASE(lockout_counts_every_concurrent_failure),
        CASE(patch_writes_only_named_fields),
        CASE(session_ends_at_its_max_life),
        CASE(lockout_concurrent_guesses_stop_at_the_threshold),
        CASE(writes_land_only_while_the_caller_may_write),
    };
    const struct CMUnitTest sqlite_only[] = {
        cmocka_unit_test(breaker_guards_backend),
        cmocka_unit_test(lock_conflicts_are_retried),
        cmocka_unit_test(an_unreachable_server_opens_the_circuit),
        cmocka_unit_test(retry_delay_is_jittered_and_doubles),
        BARE(breaker_opens_on_real_failures),
        BARE(failed_migration_changes_nothing),
        CASE(migrated_start_takes_no_write_lock),
        CASE(a_closed_gate_refuses_calls_at_once),
        CASE(ping_answers_while_the_pool_is_taken),
        CASE(the_first_ping_opens_no_connection),
        CASE(a_file_gone_after_start_gets_no_new_connection),
        CASE(a_link_to_no_file_makes_a_private_one),
        CASE(a_write_lock_held_elsewhere_refuses_writes_at_once),
        CASE(file_is_private),
        CASE(open_errors),
        cmocka_unit_test(memory_database_works),
        cmocka_unit_test(two_opens_of_a_new_file_at_once),
    };
    const struct CMUnitTest pg_off[] = {
        cmocka_unit_test(pg_skipped),
    };
    int failed = 0;

    if (sodium_init() < 0)
        return 1;
    failed += cmocka_run_group_tests_name("sqlite", common, NULL, NULL);
    failed += cmocka_run_group_tests_name("sqlite_only", sqlite_only, NULL,
                                          NULL);
    pg_url = getenv("AUTH_TEST_PG_URL");
    if (pg_url && *pg_url) {
        on_pg = true;
        failed += cmocka_run_group_tests_name("postgres", common, NULL, NULL);
    } else {
        failed += cmocka_run_group_tests_name("postgres", pg_off, NULL,
                                              NULL);
    }
    return failed ? 1 : 0;
}
