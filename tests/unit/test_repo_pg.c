/* test_repo_pg.c: the PostgreSQL backend through its vtable: semantics,
 * pool limits, reconnection, timeouts and races between connections.
 *
 * Needs AUTH_TEST_PG_URL (tests/pg-cluster.sh start DIR prints one);
 * without it the server cases are skipped. Each case works in a schema of
 * its own (search_path set through the URL), dropped at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "breaker.h"
#include "cfg.h"
#include "clock.h"
#include "migrations.h"
#include "repo.h"
#include "repo/driver.h"
#include "repo/repo_int.h"
#include "uuid.h"

#define T0 INT64_C(1700000000000)
#define HOUR INT64_C(3600000)
#define MIGRATION_LOCK "7022344802737369718"
#define LIFE (90 * 24 * HOUR)         /* AUTH_SESSION_MAX_SECONDS */

/* The backend's patch of every field of `u` (what repo_user_update does
 * above the backends). */
static enum as_err full_update(const struct repo_ops *ops, void *impl,
                               const struct user *u, int64_t now)
{
    struct user_patch p = {
        .set = UF_EMAIL | UF_FULL_NAME | UF_ROLE | UF_ACTIVE | UF_VERIFIED,
        .email = u->email, .full_name = u->full_name, .role = u->role,
        .is_active = u->is_active, .is_verified = u->is_verified,
    };

    return ops->user_patch(impl, u->id, &p, now, NULL, NULL);
}

struct fx {
    char schema[48];
    PGconn *side;                   /* the test's own view of the schema */
    const struct repo_ops *ops;     /* default pool, migrated */
    void *impl;
    struct arena *a;
};

/* A second instance on the same schema with its own pool and settings. */
struct inst {
    char app[64];
    const struct repo_ops *ops;
    void *impl;
};

static unsigned seq;

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static const char *base_url(void)
{
    const char *u = getenv("AUTH_TEST_PG_URL");

    return u && *u ? u : NULL;
}

static void pause_ms(long ms)       /* poll interval, never a wait-for */
{
    struct timespec ts = { 0, ms * 1000000L };

    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ side SQL */

static PGresult *side_q(struct fx *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Runs our own test SQL (identifiers only, never outside values). */
static PGresult *side_q(struct fx *f, const char *fmt, ...)
{
    char sql[1024];
    PGresult *r;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    r = PQexec(f->side, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK &&
        PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("side SQL failed: %s: %s", sql, PQerrorMessage(f->side));
    return r;
}

static int64_t side_int(struct fx *f, const char *sql)
{
    PGresult *r;
    int64_t v;

    /* pg_stat_activity is otherwise frozen for a whole transaction */
    PQclear(side_q(f, "SELECT pg_stat_clear_snapshot()"));
    r = side_q(f, "%s", sql);
    assert_int_equal(PQntuples(r), 1);
    v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static void side_ok(struct fx *f, const char *sql)
{
    PQclear(side_q(f, "%s", sql));
}

/* --------------------------------------------------------- instances */

static void make_url(const struct fx *f, const char *app, char *out,
                     size_t cap)
{
    const char *b = base_url();

    if (strstr(b, "://"))
        snprintf(out, cap, "%s%soptions=-c%%20search_path%%3D%s"
                 "&application_name=%s", b, strchr(b, '?') ? "&" : "?",
                 f->schema, app);
    else
        snprintf(out, cap, "%s options='-c search_path=%s' "
                 "application_name=%s", b, f->schema, app);
}

static void inst_open(struct fx *f, struct inst *in, const char *suffix,
                      unsigned pool, unsigned timeout_ms)
{
    struct cfg cfg;
    char url[2048];

    memset(&cfg, 0, sizeof cfg);
    cfg.db_pool_size = pool;
    cfg.db_timeout_ms = timeout_ms;
    snprintf(in->app, sizeof in->app, "%s_%s", f->schema, suffix);
    make_url(f, in->app, url, sizeof url);
    assert_int_equal(repo_pg_open(&cfg, url, &in->ops, &in->impl), AS_OK);
    assert_string_equal(in->ops->name, "postgres");
}

static void inst_close(struct inst *in)
{
    if (in->ops)
        in->ops->close(in->impl);
    in->ops = NULL;
}

static int fx_setup_common(void **state, bool migrate)
{
    struct fx *f;
    struct inst in;

    *state = NULL;
    if (!base_url())
        return 0;                   /* every case then skips */
    f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->schema, sizeof f->schema, "t%ld_%u", (long)getpid(), ++seq);
    f->side = PQconnectdb(base_url());
    if (PQstatus(f->side) != CONNECTION_OK)
        fail_msg("cannot reach AUTH_TEST_PG_URL: %s",
                 PQerrorMessage(f->side));
    PQsetNoticeProcessor(f->side, quiet, NULL);
    PQclear(side_q(f, "DROP SCHEMA IF EXISTS %s CASCADE", f->schema));
    PQclear(side_q(f, "CREATE SCHEMA %s", f->schema));
    PQclear(side_q(f, "SET search_path TO %s", f->schema));
    inst_open(f, &in, "main", 0, 0);
    f->ops = in.ops;
    f->impl = in.impl;
    f->a = arena_new();
    assert_non_null(f->a);
    if (migrate)
        assert_int_equal(f->ops->migrate(f->impl), AS_OK);
    *state = f;
    return 0;
}

static int fx_setup(void **state)
{
    return fx_setup_common(state, true);
}

static int fx_setup_bare(void **state)
{
    return fx_setup_common(state, false);
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;

    if (!f)
        return 0;
    if (f->ops)
        f->ops->close(f->impl);
    PQclear(PQexec(f->side, "ROLLBACK"));
    PQclear(side_q(f, "DROP SCHEMA IF EXISTS %s CASCADE", f->schema));
    PQfinish(f->side);
    arena_free(f->a);
    free(f);
    return 0;
}

#define NEED_SERVER(f)                                                     \
    struct fx *f = *state;                                                 \
    if (!f) {                                                              \
        skip();                                                            \
        return;                                                            \
    }

/* --------------------------------------------------------------- data */

static void mk_user(struct user *u, unsigned n, const char *email,
                    const char *name, enum role role)
{
    uint8_t rnd[10];

    memset(u, 0, sizeof *u);
    memset(rnd, (int)n, sizeof rnd);
    uuid_v7_format(T0 + (int64_t)n * 1000, rnd, u->id);
    u->email = email;
    u->full_name = name;
    u->password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    u->role = role;
    u->is_active = true;
    u->is_verified = false;
    u->created_at = u->updated_at = T0;
}

static void mk_session(struct session *s, unsigned n, const char *user_id,
                       int64_t created, int64_t expires)
{
    uint8_t rnd[10];

    memset(s, 0, sizeof *s);
    memset(rnd, (int)(n + 100), sizeof rnd);
    uuid_v7_format(created, rnd, s->id);
    snprintf(s->user_id, sizeof s->user_id, "%s", user_id);
    s->created_at = s->last_used_at = created;
    s->expires_at = expires;
    s->ip = "127.0.0.1";
    s->user_agent = "test/1.0";
}

static void mk_hash(uint8_t h[REPO_HASH_LEN], unsigned tag)
{
    unsigned i;

    for (i = 0; i < REPO_HASH_LEN; i++)
        h[i] = (uint8_t)(tag * 31u + i);
}

/* ---------------------------------------------------------- migrations */

static void test_migrate_twice(void **state)
{
    NEED_SERVER(f);
    size_t n = 0;
    const struct migration *m = migrations_for("postgres", &n);

    assert_non_null(m);
    assert_true(n >= 1);
    assert_int_equal(f->ops->migrate(f->impl), AS_OK);
    assert_int_equal(f->ops->migrate(f->impl), AS_OK);
    assert_int_equal(side_int(f, "SELECT count(*) FROM schema_migrations"),
                     (int64_t)n);
    assert_int_equal(side_int(f, "SELECT max(version) FROM schema_migrations"),
                     (int64_t)m[n - 1].version);
    assert_int_equal(side_int(f, "SELECT count(*) FROM users"), 0);
}

struct migrate_arg {
    struct inst *in;
    pthread_barrier_t *go;
    enum as_err res;
};

static void *migrate_thread(void *p)
{
    struct migrate_arg *m = p;

    pthread_barrier_wait(m->go);
    m->res = m->in->ops->migrate(m->in->impl);
    return NULL;
}

static void test_migrate_concurrent(void **state)
{
    NEED_SERVER(f);
    struct inst in[4];
    struct migrate_arg args[4];
    pthread_t th[4];
    pthread_barrier_t go;
    size_t n = 0;
    int i;

    migrations_for("postgres", &n);
    assert_int_equal(side_int(f, "SELECT count(*) FROM pg_tables "
                                 "WHERE tablename = 'schema_migrations' "
                                 "AND schemaname = current_schema()"), 0);
    pthread_barrier_init(&go, NULL, 4);
    for (i = 0; i < 4; i++) {
        char name[16];

        snprintf(name, sizeof name, "m%d", i);
        inst_open(f, &in[i], name, 1, 0);
        args[i].in = &in[i];
        args[i].go = &go;
        args[i].res = AS_ERR_INTERNAL;
        assert_int_equal(pthread_create(&th[i], NULL, migrate_thread,
                                        &args[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].res, AS_OK);
        inst_close(&in[i]);
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(side_int(f, "SELECT count(*) FROM schema_migrations"),
                     (int64_t)n);
    assert_int_equal(side_int(f, "SELECT count(*) FROM users"), 0);
}

/* -------------------------------------------------------------- users */

static void test_user_crud(void **state)
{
    NEED_SERVER(f);
    struct user u, v, got;
    int64_t cnt;

    mk_user(&u, 1, "ada@example.com", "Ada Lovelace", ROLE_USER);
    mk_user(&v, 2, "bob@example.com", NULL, ROLE_ADMIN);
    assert_int_equal(f->ops->user_insert(f->impl, &u), AS_OK);
    assert_int_equal(f->ops->user_insert(f->impl, &v), AS_OK);
    v.email = "ada@example.com";
    v.id[35] = v.id[35] == 'a' ? 'b' : 'a';
    assert_int_equal(f->ops->user_insert(f->impl, &v), AS_ERR_EMAIL_TAKEN);
    mk_user(&v, 2, "bob@example.com", NULL, ROLE_ADMIN);

    assert_int_equal(f->ops->user_by_id(f->impl, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.id, u.id);
    assert_string_equal(got.email, "ada@example.com");
    assert_string_equal(got.full_name, "Ada Lovelace");
    assert_string_equal(got.password_hash, u.password_hash);
    assert_int_equal(got.role, ROLE_USER);
    assert_true(got.is_active);
    assert_false(got.is_verified);
    assert_int_equal(got.created_at, T0);
    assert_int_equal(f->ops->user_by_email(f->impl, "bob@example.com", &got,
                                           f->a), AS_OK);
    assert_string_equal(got.id, v.id);
    assert_null(got.full_name);
    assert_int_equal(got.role, ROLE_ADMIN);
    assert_int_equal(f->ops->user_by_email(f->impl, "nobody@example.com",
                                           &got, f->a), AS_ERR_NOT_FOUND);
    assert_int_equal(f->ops->user_by_id(f->impl, "not-an-id", &got, f->a),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(f->ops->user_by_email(f->impl, "\xff\xfe@x", &got,
                                           f->a), AS_ERR_NOT_FOUND);

    u.email = "bob@example.com";                 /* taken by another */
    assert_int_equal(full_update(f->ops, f->impl, &u, T0 + 5),
                     AS_ERR_EMAIL_TAKEN);
    u.email = "ada@lovelace.org";
    u.full_name = NULL;
    u.is_verified = true;
    assert_int_equal(full_update(f->ops, f->impl, &u, T0 + 5), AS_OK);
    assert_int_equal(f->ops->user_by_id(f->impl, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.email, "ada@lovelace.org");
    assert_null(got.full_name);
    assert_true(got.is_verified);
    assert_int_equal(got.updated_at, T0 + 5);
    mk_user(&got, 9, "ghost@example.com", NULL, ROLE_USER);
    assert_int_equal(full_update(f->ops, f->impl, &got, T0),
                     AS_ERR_NOT_FOUND);

    /* rehash only while the old hash is still there */
    assert_int_equal(f->ops->user_rehash(f->impl, u.id, "stale", "new1"),
                     AS_ERR_CONFLICT);
    assert_int_equal(f->ops->user_by_id(f->impl, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.password_hash, u.password_hash);
    assert_int_equal(f->ops->user_rehash(f->impl, u.id, u.password_hash,
                                         "new2"), AS_OK);
    assert_int_equal(f->ops->user_by_id(f->impl, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.password_hash, "new2");

    assert_int_equal(f->ops->user_count(f->impl, false, &cnt), AS_OK);
    assert_int_equal(cnt, 2);
    assert_int_equal(f->ops->user_count(f->impl, true, &cnt), AS_OK);
    assert_int_equal(cnt, 1);

    assert_int_equal(f->ops->user_delete(f->impl, u.id, 1000), AS_OK);
    assert_int_equal(f->ops->user_delete(f->impl, u.id, 1000), AS_ERR_NOT_FOUND);
    assert_int_equal(f->ops->user_by_id(f->impl, u.id, &got, f->a),
                     AS_ERR_NOT_FOUND);
}

static void test_user_list(void **state)
{
    NEED_SERVER(f);
    static const char *const emails[] = {
        "a1@example.com", "b2@example.com", "c3@example.org",
        "d4@example.org", "e5@example.net",
    };
    static const char *const names[] = {
        "Zoë Ünal", NULL, "100% _real_", "Carl", "ÅSA",
    };
    struct user u[5], out[5];
    size_t n = 0, i;

    for (i = 0; i < 5; i++) {
        mk_user(&u[i], (unsigned)(i + 1), emails[i], names[i], ROLE_USER);
        assert_int_equal(f->ops->user_insert(f->impl, &u[i]), AS_OK);
    }
    assert_int_equal(f->ops->user_list(f->impl, NULL, NULL, 5, out, &n,
                                       f->a), AS_OK);
    assert_int_equal(n, 5);
    for (i = 0; i < 5; i++)
        assert_string_equal(out[i].id, u[i].id);        /* id order */

    /* keyset pages of two */
    assert_int_equal(f->ops->user_list(f->impl, NULL, NULL, 2, out, &n,
                                       f->a), AS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[1].id, u[1].id);
    assert_int_equal(f->ops->user_list(f->impl, NULL, u[1].id, 2, out, &n,
                                       f->a), AS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].id, u[2].id);
    assert_string_equal(out[1].id, u[3].id);
    assert_int_equal(f->ops->user_list(f->impl, NULL, u[3].id, 2, out, &n,
                                       f->a), AS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].id, u[4].id);
    assert_int_equal(f->ops->user_list(f->impl, NULL, u[4].id, 2, out, &n,
                                       f->a), AS_OK);
    assert_int_equal(n, 0);

    /* substring, literal and case-insensitive, on email or name */
    assert_int_equal(f->ops->user_list(f->impl, "EXAMPLE.ORG", NULL, 5, out,
                                       &n, f->a), AS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].id, u[2].id);
    assert_int_equal(f->ops->user_list(f->impl, "%", NULL, 5, out, &n, f->a),
                     AS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].id, u[2].id);
    assert_int_equal(f->ops->user_list(f->impl, "_", NULL, 5, out, &n, f->a),
                     AS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(f->ops->user_list(f->impl, "carl", NULL, 5, out, &n,
                                       f->a), AS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].id, u[3].id);
    assert_int_equal(f->ops->user_list(f->impl, "zoë", NULL, 5, out, &n,
                                       f->a), AS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].full_name, "Zoë Ünal");
    assert_int_equal(f->ops->user_list(f->impl, "b2", u[0].id, 5, out, &n,
                                       f->a), AS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(f->ops->user_list(f->impl, "nothing", NULL, 5, out, &n,
                                       f->a), AS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(f->ops->user_list(f->impl, "\xc3(", NULL, 5, out, &n,
                                       f->a), AS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(f->ops->user_list(f->impl, "", NULL, 0, out, &n, f->a),
                     AS_OK);
    assert_int_equal(n, 0);
}

static void test_last_admin_rules(void **state)
{
    NEED_SERVER(f);
    struct user a, b, u, got;
    struct session s;
    struct session_state st;
    uint8_t h[REPO_HASH_LEN];
    int64_t cnt;

    mk_user(&a, 1, "a@example.com", NULL, ROLE_ADMIN);
    mk_user(&b, 2, "b@example.com", NULL, ROLE_ADMIN);
    mk_user(&u, 3, "u@example.com", NULL, ROLE_USER);
    assert_int_equal(f->ops->user_insert(f->impl, &a), AS_OK);
    assert_int_equal(f->ops->user_insert(f->impl, &b), AS_OK);
    assert_int_equal(f->ops->user_insert(f->impl, &u), AS_OK);

    b.is_active = false;                    /* fine: a remains */
    assert_int_equal(full_update(f->ops, f->impl, &b, T0 + 1), AS_OK);
    a.role = ROLE_USER;                     /* the last active admin */
    assert_int_equal(full_update(f->ops, f->impl, &a, T0 + 2),
                     AS_ERR_LAST_ADMIN);
    a.role = ROLE_ADMIN;
    a.is_active = false;
    assert_int_equal(full_update(f->ops, f->impl, &a, T0 + 2),
                     AS_ERR_LAST_ADMIN);
    assert_int_equal(f->ops->user_delete(f->impl, a.id, 1000), AS_ERR_LAST_ADMIN);
    assert_int_equal(f->ops->user_by_id(f->impl, a.id, &got, f->a), AS_OK);
    assert_true(got.is_active);             /* nothing changed */
    assert_int_equal(got.role, ROLE_ADMIN);
    assert_int_equal(got.updated_at, T0);
    a.is_active = true;
    a.full_name = "Still Admin";            /* no demotion: allowed */
    assert_int_equal(full_update(f->ops, f->impl, &a, T0 + 3), AS_OK);
    assert_int_equal(f->ops->user_delete(f->impl, b.id, 1000), AS_OK);
    assert_int_equal(f->ops->user_delete(f->impl, u.id, 1000), AS_OK);
    assert_int_equal(f->ops->user_count(f->impl, true, &cnt), AS_OK);
    assert_int_equal(cnt, 1);

    /* deactivating a user revokes its sessions in the same step */
    mk_user(&u, 4, "v@example.com", NULL, ROLE_USER);
    assert_int_equal(f->ops->user_insert(f->impl, &u), AS_OK);
    mk_session(&s, 1, u.id, T0, T0 + HOUR);
    mk_hash(h, 1);
    assert_int_equal(f->ops->session_create(f->impl, &s, h, NULL), AS_OK);
    u.is_active = false;
    assert_int_equal(full_update(f->ops, f->impl, &u, T0 + 10), AS_OK);
    assert_int_equal(f->ops->session_state(f->impl, s.id, T0 + 20, &st),
                     AS_OK);
    assert_false(st.live);
    u.is_active = true;                     /* coming back: still revoked */
    assert_int_equal(full_update(f->ops, f->impl, &u, T0 + 30), AS_OK);
    assert_int_equal(f->ops->session_get(f->impl, s.id, &s, f->a), AS_OK);
    assert_int_equal(s.revoked_at, T0 + 10);
}

/* ----------------------------------------------------------- sessions */

static void test_sessions(void **state)
{
    NEED_SERVER(f);
    struct user u, w;
    struct session s1, s2, s3, got, *list;
    struct session_state st;
    uint8_t h[REPO_HASH_LEN];
    size_t n;

    mk_user(&u, 1, "u@example.com", NULL, ROLE_ADMIN);
    mk_user(&w, 2, "w@example.com", NULL, ROLE_USER);
    assert_int_equal(f->ops->user_insert(f->impl, &u), AS_OK);
    assert_int_equal(f->ops->user_insert(f->impl, &w), AS_OK);
    mk_session(&s1, 1, u.id, T0, T0 + HOUR);
    mk_session(&s2, 2, u.id, T0 + 1000, T0 + HOUR);
    mk_session(&s3, 3, u.id, T0 + 2000, T0 + 3000);     /* expires soon */
    s2.ip = NULL;
    s2.user_agent = NULL;
    mk_hash(h, 1);
    assert_int_equal(f->ops->session_create(f->impl, &s1, h, NULL), AS_OK);
    mk_hash(h, 2);
    assert_int_equal(f->ops->session_create(f->impl, &s2, h, NULL), AS_OK);
    mk_hash(h, 3);
    assert_int_equal(f->ops->session_create(f->impl, &s3, h, NULL), AS_OK);
    /* a duplicate refresh hash fails the whole step: no session left */
    mk_session(&got, 4, u.id, T0 + 4000, T0 + HOUR);
    assert_int_equal(f->ops->session_create(f->impl, &got, h, NULL),
                     AS_ERR_INTERNAL);
    assert_int_equal(f->ops->session_get(f->impl, got.id, &got, f->a),
                     AS_ERR_NOT_FOUND);

    assert_int_equal(f->ops->session_get(f->impl, s1.id, &got, f->a), AS_OK);
    assert_string_equal(got.user_id, u.id);
    assert_string_equal(got.ip, "127.0.0.1");
    assert_string_equal(got.user_agent, "test/1.0");
    assert_int_equal(got.expires_at, T0 + HOUR);
    assert_int_equal(got.revoked_at, 0);
    assert_int_equal(f->ops->session_get(f->impl, s2.id, &got, f->a), AS_OK);
    assert_null(got.ip);
    assert_null(got.user_agent);

    assert_int_equal(f->ops->session_state(f->impl, s1.id, T0 + 10, &st),
                     AS_OK);
    assert_true(st.live);
    assert_int_equal(st.role, ROLE_ADMIN);
    assert_int_equal(f->ops->session_state(f->impl, "unknown", T0, &st),
                     AS_OK);
    assert_false(st.live);
    assert_int_equal(f->ops->session_state(f->impl, s3.id, T0 + 3000, &st),
                     AS_OK);
    assert_false(st.live);                  /* expired */

    assert_int_equal(f->ops->session_list(f->impl, u.id, T0 + 2500, &list,
                                          &n, f->a), AS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].id, s3.id);     /* newest first */
    assert_string_equal(list[2].id, s1.id);
    assert_int_equal(f->ops->session_list(f->impl, u.id, T0 + 3000, &list,
                                          &n, f->a), AS_OK);
    assert_int_equal(n, 2);

    assert_int_equal(f->ops->session_revoke(f->impl, s1.id, w.id, T0 + 50),
                     AS_ERR_NOT_FOUND);     /* not w's session */
    assert_int_equal(f->ops->session_revoke(f->impl, s1.id, u.id, T0 + 50),
                     AS_OK);
    assert_int_equal(f->ops->session_revoke(f->impl, s1.id, NULL, T0 + 60),
                     AS_ERR_NOT_FOUND);     /* no longer live */
    assert_int_equal(f->ops->session_get(f->impl, s1.id, &got, f->a), AS_OK);
    assert_int_equal(got.revoked_at, T0 + 50);

    assert_int_equal(f->ops->session_revoke_all(f->impl, u.id, s2.id,
                                                T0 + 70), AS_OK);
    assert_int_equal(f->ops->session_list(f->impl, u.id, T0 + 80, &list, &n,
                                          f->a), AS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, s2.id);
    assert_int_equal(f->ops->user_set_password(f->impl, u.id, "h2", NULL,
                                               T0 + 90), AS_OK);
    assert_int_equal(f->ops->session_list(f->impl, u.id, T0 + 95, &list, &n,
                                          f->a), AS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(f->ops->user_set_password(f->impl, "nobody", "h", NULL,
                                               T0), AS_ERR_NOT_FOUND);

    /* deleting the user takes its sessions along */
    assert_int_equal(f->ops->user_delete(f->impl, w.id, 1000), AS_OK);
    mk_session(&s1, 5, w.id, T0, T0 + HOUR);
    mk_hash(h, 5);
    assert_int_equal(f->ops->session_create(f->impl, &s1, h, NULL),
                     AS_ERR_NOT_FOUND);     /* no such user any more */
}

static void test_session_set_password_keeps_one(void **state)
{
    NEED_SERVER(f);
    struct user u, got;
    struct session s1, s2, *list;
    uint8_t h[REPO_HASH_LEN];
    size_t n;

    mk_user(&u, 1, "u@example.com", NULL, ROLE_USER);
    assert_int_equal(f->ops->user_insert(f->impl, &u), AS_OK);
    mk_session(&s1, 1, u.id, T0, T0 + HOUR);
    mk_session(&s2, 2, u.id, T0 + 1, T0 + HOUR);
    mk_hash(h, 1);
    assert_int_equal(f->ops->session_create(f->impl, &s1, h, NULL), AS_OK);
    mk_hash(h, 2);
    assert_int_equal(f->ops->session_create(f->impl, &s2, h, NULL), AS_OK);
    assert_int_equal(f->ops->user_set_password(f->impl, u.id, "newhash",
                                               s2.id, T0 + 10), AS_OK);
    assert_int_equal(f->ops->user_by_id(f->impl, u.id, &got, f->a), AS_OK);
    assert_string_equal(got.password_hash, "newhash");
    assert_int_equal(f->ops->session_list(f->impl, u.id, T0 + 20, &list, &n,
                                          f->a), AS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, s2.id);
}

/* ------------------------------------------------------ refresh tokens */

static void test_rotate_sequence(void **state)
{
    NEED_SERVER(f);
    struct user u;
    struct session s, got;
    struct session_state st;
    uint8_t p[REPO_HASH_LEN], c1[REPO_HASH_LEN], c2[REPO_HASH_LEN];
    uint8_t x[REPO_HASH_LEN];
    enum rotate_result res;
    const int64_t grace = 10000;

    mk_user(&u, 1, "u@example.com", NULL, ROLE_USER);
    assert_int_equal(f->ops->user_insert(f->impl, &u), AS_OK);
    mk_session(&s, 1, u.id, T0, T0 + HOUR);
    mk_hash(p, 1);
    mk_hash(c1, 2);
    mk_hash(c2, 3);
    mk_hash(x, 4);
    assert_int_equal(f->ops->session_create(f->impl, &s, p, NULL), AS_OK);
    assert_int_equal(f->ops->refresh_session(f->impl, p, T0 + 1, NULL,
                                             &got, f->a), AS_OK);
    assert_string_equal(got.id, s.id);

    assert_int_equal(f->ops->refresh_rotate(f->impl, p, c1, T0 + 100, grace,
                                            T0 + 2 * HOUR, LIFE, &res, &got,
                                            f->a), AS_OK);
    assert_int_equal(res, ROTATE_OK);
    assert_string_equal(got.id, s.id);
    assert_int_equal(got.last_used_at, T0 + 100);
    assert_int_equal(got.expires_at, T0 + 2 * HOUR);
    assert_int_equal(f->ops->refresh_session(f->impl, p, T0 + 101, NULL,
                                             &got, f->a), AS_ERR_NOT_FOUND);
    assert_int_equal(f->ops->refresh_session(f->impl, c1, T0 + 101, NULL,
                                             &got, f->a), AS_OK);

    /* the parent again within the grace: same child, nothing moves */
    memset(&got, 0, sizeof got);
    assert_int_equal(f->ops->refresh_rotate(f->impl, p, c1, T0 + 100 + grace,
                                            grace, T0 + 3 * HOUR, LIFE, &res,
                                            &got,
                                            f->a), AS_OK);
    assert_int_equal(res, ROTATE_GRACE);
    assert_string_equal(got.id, s.id);
    assert_int_equal(got.expires_at, T0 + 2 * HOUR);

    /* the child rotates normally */
    assert_int_equal(f->ops->refresh_rotate(f->impl, c1, c2, T0 + 200, grace,
                                            T0 + 2 * HOUR, LIFE, &res, &got,
                                            f->a), AS_OK);
    assert_int_equal(res, ROTATE_OK);

    /* unknown token */
    assert_int_equal(f->ops->refresh_rotate(f->impl, x, c2, T0 + 300, grace,
                                            T0 + 2 * HOUR, LIFE, &res, &got,
                                            f->a), AS_OK);
    assert_int_equal(res, ROTATE_INVALID);

    /* the parent after the grace: replay, the session goes */
    assert_int_equal(f->ops->refresh_rotate(f->impl, p, c1,
                                            T0 + 101 + grace, grace,
                                            T0 + 2 * HOUR, LIFE, &res, &got,
                                            f->a), AS_OK);
    assert_int_equal(res, ROTATE_REUSED);
    assert_int_equal(f->ops->session_state(f->impl, s.id, T0 + 400, &st),
                     AS_OK);
    assert_false(st.live);
    assert_int_equal(f->ops->refresh_session(f->impl, c2, T0 + 400, NULL,
                                             &got, f->a), AS_ERR_NOT_FOUND);
    /* once revoked, even the live child is invalid */
    assert_int_equal(f->ops->refresh_rotate(f->impl, c2, x, T0 + 500, grace,
                                            T0 + 2 * HOUR, LIFE, &res, &got,
                                            f->a), AS_OK);
    assert_int_equal(res, ROTATE_INVALID);
}

static void test_rotate_inactive_or_expired(void **state)
{
    NEED_SERVER(f);
    struct user u;
    struct session s1, s2, got;
    uint8_t p1[REPO_HASH_LEN], p2[REPO_HASH_LEN], c[REPO_HASH_LEN];
    enum rotate_result res;

    mk_user(&u, 1, "u@example.com", NULL, ROLE_USER);
    assert_int_equal(f->ops->user_insert(f->impl, &u), AS_OK);
    mk_session(&s1, 1, u.id, T0, T0 + 1000);
    mk_session(&s2, 2, u.id, T0, T0 + HOUR);
    mk_hash(p1, 1);
    mk_hash(p2, 2);
    mk_hash(c, 3);
    assert_int_equal(f->ops->session_create(f->impl, &s1, p1, NULL), AS_OK);
    assert_int_equal(f->ops->session_create(f->impl, &s2, p2, NULL), AS_OK);
    assert_int_equal(f->ops->refresh_rotate(f->impl, p1, c, T0 + 1000, 10,
                                            T0 + HOUR, LIFE, &res, &got, f->a),
                     AS_OK);
    assert_int_equal(res, ROTATE_INVALID);          /* expired session */
    /* an inactive user: checked live, without going through user_update */
    PQclear(side_q(f, "UPDATE users SET is_active = false"));
    assert_int_equal(f->ops->refresh_rotate(f->impl, p2, c, T0 + 10, 10,
                                            T0 + HOUR, LIFE, &res, &got, f->a),
                     AS_OK);
    assert_int_equal(res, ROTATE_INVALID);
    assert_int_equal(f->ops->refresh_session(f->impl, p2, T0 + 10, NULL,
                                             &got, f->a), AS_ERR_NOT_FOUND);
}

struct rotate_arg {
    struct fx *f;
    pthread_barrier_t *go;
    const uint8_t *parent, *child;
    enum as_err err;
    enum rotate_result res;
    struct session out;
    struct arena *a;
};

static void *rotate_thread(void *p)
{
    struct rotate_arg *r = p;

    pthread_barrier_wait(r->go);
    r->err = r->f->ops->refresh_rotate(r->f->impl, r->parent, r->child,
                                       T0 + 500, 10000, T0 + 5 * HOUR, LIFE,
                                       &r->res, &r->out, r->a);
    return NULL;
}

static void test_rotate_concurrent(void **state)
{
    NEED_SERVER(f);
    enum { N = 8 };
    struct rotate_arg args[N];
    pthread_t th[N];
    pthread_barrier_t go;
    struct user u;
    struct session s, got;
    uint8_t p[REPO_HASH_LEN], c[REPO_HASH_LEN];
    int i, round, ok, grace;

    mk_user(&u, 1, "u@example.com", NULL, ROLE_USER);
    assert_int_equal(f->ops->user_insert(f->impl, &u), AS_OK);
    for (round = 0; round < 3; round++) {
        mk_session(&s, (unsigned)round, u.id, T0 + round, T0 + HOUR);
        mk_hash(p, (unsigned)(10 + round));
        mk_hash(c, (unsigned)(20 + round));
        assert_int_equal(f->ops->session_create(f->impl, &s, p, NULL), AS_OK);
        pthread_barrier_init(&go, NULL, N);
        for (i = 0; i < N; i++) {
            memset(&args[i], 0, sizeof args[i]);
            args[i].f = f;
            args[i].go = &go;
            args[i].parent = p;
            args[i].child = c;
            args[i].err = AS_ERR_INTERNAL;
            args[i].a = arena_new();
            assert_non_null(args[i].a);
            assert_int_equal(pthread_create(&th[i], NULL, rotate_thread,
                                            &args[i]), 0);
        }
        ok = grace = 0;
        for (i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            assert_int_equal(args[i].err, AS_OK);
            ok += args[i].res == ROTATE_OK;
            grace += args[i].res == ROTATE_GRACE;
            assert_string_equal(args[i].out.id, s.id);
            assert_int_equal(args[i].out.expires_at, T0 + 5 * HOUR);
            arena_free(args[i].a);
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(ok, 1);
        assert_int_equal(grace, N - 1);
        assert_int_equal(f->ops->refresh_session(f->impl, c, T0 + 600, NULL,
                                                 &got, f->a), AS_OK);
        assert_string_equal(got.id, s.id);
    }
}

/* ---------------------------------------------------- last admin race */

struct demote_arg {
    struct fx *f;
    pthread_barrier_t *go;
    struct user u;
    bool delete;
    enum as_err err;
};

static void *demote_thread(void *p)
{
    struct demote_arg *d = p;

    pthread_barrier_wait(d->go);
    d->err = d->delete ? d->f->ops->user_delete(d->f->impl, d->u.id, 1000)
                       : full_update(d->f->ops, d->f->impl, &d->u, T0 + 9);
    return NULL;
}

static void race_two(struct fx *f, struct demote_arg d[2])
{
    pthread_barrier_t go;
    pthread_t th[2];
    int64_t cnt = -1;
    int i, ok = 0, last = 0;

    pthread_barrier_init(&go, NULL, 2);
    for (i = 0; i < 2; i++) {
        d[i].f = f;
        d[i].go = &go;
        d[i].err = AS_ERR_INTERNAL;
        assert_int_equal(pthread_create(&th[i], NULL, demote_thread, &d[i]),
                         0);
    }
    for (i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        ok += d[i].err == AS_OK;
        last += d[i].err == AS_ERR_LAST_ADMIN;
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(ok, 1);
    assert_int_equal(last, 1);
    assert_int_equal(f->ops->user_count(f->impl, true, &cnt), AS_OK);
    assert_int_equal(cnt, 1);
}

static void test_last_admin_concurrent(void **state)
{
    NEED_SERVER(f);
    struct demote_arg d[2];
    struct user a, b;
    int round;

    mk_user(&a, 1, "a@example.com", NULL, ROLE_ADMIN);
    mk_user(&b, 2, "b@example.com", NULL, ROLE_ADMIN);
    assert_int_equal(f->ops->user_insert(f->impl, &a), AS_OK);
    assert_int_equal(f->ops->user_insert(f->impl, &b), AS_OK);
    for (round = 0; round < 12; round++) {
        memset(d, 0, sizeof d);
        d[0].u = a;
        d[1].u = b;
        if (round % 3 == 1) {              /* deactivations */
            d[0].u.is_active = d[1].u.is_active = false;
        } else if (round % 3 == 2) {       /* one of each */
            d[0].u.role = ROLE_USER;
            d[1].u.is_active = false;
        } else {                           /* demotions */
            d[0].u.role = d[1].u.role = ROLE_USER;
        }
        race_two(f, d);
        /* restore both as active admins */
        assert_int_equal(full_update(f->ops, f->impl, &a, T0 + 10), AS_OK);
        assert_int_equal(full_update(f->ops, f->impl, &b, T0 + 10), AS_OK);
    }
    /* two deletions at once: one stays */
    memset(d, 0, sizeof d);
    d[0].u = a;
    d[1].u = b;
    d[0].delete = d[1].delete = true;
    race_two(f, d);
}

/* ------------------------------------------------- pool and failures */

struct op_arg {
    struct inst *in;
    const char *id;
    int kind;                       /* 0 migrate, 1 user_count */
    enum as_err err;
    bool unreached;                 /* db_take_unreached() after it */
};

static void *op_thread(void *p)
{
    struct op_arg *o = p;
    int64_t cnt;

    (void)db_take_unreached();
    o->err = o->kind == 0 ? o->in->ops->migrate(o->in->impl)
                          : o->in->ops->user_count(o->in->impl, false, &cnt);
    o->unreached = db_take_unreached();
    return NULL;
}

/* Polls until a backend of `app` waits on a lock of `locktype`. */
static void wait_blocked(struct fx *f, const char *app, const char *locktype)
{
    uint64_t deadline = clock_mono_ms() + 20000;
    char sql[512];

    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a "
             "USING (pid) WHERE NOT l.granted AND l.locktype = '%s' "
             "AND a.application_name = '%s'", locktype, app);
    while (side_int(f, sql) < 1) {
        if (clock_mono_ms() > deadline)
            fail_msg("no backend of %s waits on a %s lock", app, locktype);
        pause_ms(10);
    }
}

static void test_pool_timeout(void **state)
{
    NEED_SERVER(f);
    struct inst in = { 0 };
    struct op_arg arg = { 0 };
    pthread_t th;
    uint64_t t;

    inst_open(f, &in, "pool", 1, 300);
    assert_int_equal(in.ops->ping(in.impl), AS_OK);
    /* The single connection waits for the migration lock held here. */
    side_ok(f, "SELECT pg_advisory_lock(" MIGRATION_LOCK ")");
    arg.in = &in;
    arg.kind = 0;
    arg.err = AS_ERR_INTERNAL;
    assert_int_equal(pthread_create(&th, NULL, op_thread, &arg), 0);
    wait_blocked(f, in.app, "advisory");
    t = clock_mono_ms();
    {
        int64_t cnt;

        assert_int_equal(in.ops->user_count(in.impl, false, &cnt),
                         AS_ERR_UNAVAILABLE);
    }
    t = clock_mono_ms() - t;
    assert_true(t >= 280);
    assert_true(t < 3000);
    /* The readiness ping has a connection of its own: it answers while
     * the pool's only one is taken (README.md "Circuit breaker"). */
    t = clock_mono_ms();
    assert_int_equal(in.ops->ping(in.impl), AS_OK);
    assert_true(clock_mono_ms() - t < 280);
    side_ok(f, "SELECT pg_advisory_unlock(" MIGRATION_LOCK ")");
    pthread_join(th, NULL);
    assert_int_equal(arg.err, AS_OK);
    assert_int_equal(in.ops->ping(in.impl), AS_OK);
    inst_close(&in);
}

/* The readiness ping's own connection cannot be made because the pool
 * took what the database allows (CONNECTION LIMIT 1 here; the server's
 * max_connections in production): the ping answers on the pool's
 * connection, instead of calling a working database not ready. */
static void test_ping_when_the_connection_limit_is_reached(void **state)
{
    NEED_SERVER(f);
    const char *b = base_url();
    const char *host = strstr(b, "://");
    const char *path = host ? strchr(host + 3, '/') : NULL;
    const char *query = path ? strchr(path, '?') : NULL;
    struct cfg cfg;
    const struct repo_ops *ops = NULL;
    void *impl = NULL;
    char db[96], sql[256], url[2048];
    int64_t cnt;
    int tries;

    if (!path) {
        skip();                  /* a key=value URL: not rewritten here */
        return;
    }
    snprintf(db, sizeof db, "%s_limit", f->schema);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s CONNECTION LIMIT 1", db);
    side_ok(f, sql);
    snprintf(url, sizeof url, "%.*s/%s%s", (int)(path - b), b, db,
             query ? query : "");
    memset(&cfg, 0, sizeof cfg);
    cfg.db_pool_size = 1;
    cfg.db_timeout_ms = 2000;
    assert_int_equal(repo_pg_open(&cfg, url, &ops, &impl), AS_OK);
    /* The pool's connection (the call itself fails: no tables here). */
    (void)ops->user_count(impl, false, &cnt);
    assert_int_equal(ops->ping(impl), AS_OK);
    assert_int_equal(ops->ping(impl), AS_OK);
    ops->close(impl);
    /* FORCE may not end an autovacuum worker that has just come to the
     * new database (another role's process): tried again for up to 5 s */
    snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", db);
    for (tries = 0; tries < 50; tries++) {
        PGresult *r = PQexec(f->side, sql);
        bool done = PQresultStatus(r) == PGRES_COMMAND_OK;

        PQclear(r);
        if (done)
            break;
        pause_ms(100);
    }
    assert_true(tries < 50);
}

static void test_statement_timeout(void **state)
{
    NEED_SERVER(f);
    struct inst in = { 0 };
    struct user u, got;
    uint64_t t;

    mk_user(&u, 1, "u@example.com", NULL, ROLE_ADMIN);
    mk_user(&got, 2, "v@example.com", NULL, ROLE_ADMIN);
    assert_int_equal(f->ops->user_insert(f->impl, &u), AS_OK);
    assert_int_equal(f->ops->user_insert(f->impl, &got), AS_OK);
    inst_open(f, &in, "stmt", 1, 300);
    assert_int_equal(in.ops->ping(in.impl), AS_OK);
    side_ok(f, "BEGIN");
    side_ok(f, "LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
    t = clock_mono_ms();
    (void)db_take_unreached();
    assert_int_equal(in.ops->user_by_id(in.impl, u.id, &got, f->a),
                     AS_ERR_UNAVAILABLE);
    /* a statement the server cancelled: the database was reached, and
     * /readyz is not told (driver.h db_unreached()) */
    assert_false(db_take_unreached());
    t = clock_mono_ms() - t;
    assert_true(t >= 250);
    assert_true(t < 2000);          /* the server's timeout, not ours */
    u.role = ROLE_USER;             /* a transaction: rolled back */
    assert_int_equal(full_update(in.ops, in.impl, &u, T0 + 1),
                     AS_ERR_UNAVAILABLE);
    side_ok(f, "ROLLBACK");
    assert_int_equal(in.ops->user_by_id(in.impl, u.id, &got, f->a), AS_OK);
    assert_int_equal(got.role, ROLE_ADMIN);
    assert_int_equal(full_update(in.ops, in.impl, &u, T0 + 1), AS_OK);
    inst_close(&in);
}

static int64_t backend_pid(struct fx *f, const char *app)
{
    char sql[256];
    PGresult *r;
    int64_t pid = 0;

    snprintf(sql, sizeof sql, "SELECT pid FROM pg_stat_activity "
             "WHERE application_name = '%s'", app);
    PQclear(side_q(f, "SELECT pg_stat_clear_snapshot()"));
    r = side_q(f, "%s", sql);
    if (PQntuples(r) == 1)
        pid = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return pid;
}

static void terminate(struct fx *f, int64_t pid)
{
    uint64_t deadline = clock_mono_ms() + 20000;
    char sql[160];

    PQclear(side_q(f, "SELECT pg_terminate_backend(%lld)", (long long)pid));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity "
             "WHERE pid = %lld", (long long)pid);
    while (side_int(f, sql) != 0) {
        if (clock_mono_ms() > deadline)
            fail_msg("backend %lld did not go away", (long long)pid);
        pause_ms(10);
    }
}

static void test_reconnect_idle(void **state)
{
    NEED_SERVER(f);
    struct inst in = { 0 };
    int64_t cnt, pid1, pid2;
    enum as_err e;

    inst_open(f, &in, "idle", 1, 2000);
    assert_int_equal(in.ops->user_count(in.impl, false, &cnt), AS_OK);
    pid1 = backend_pid(f, in.app);
    assert_true(pid1 > 0);
    terminate(f, pid1);
    e = in.ops->user_count(in.impl, false, &cnt);
    assert_true(e == AS_OK || e == AS_ERR_UNAVAILABLE);
    assert_int_equal(in.ops->user_count(in.impl, false, &cnt), AS_OK);
    assert_int_equal(cnt, 0);
    pid2 = backend_pid(f, in.app);
    assert_true(pid2 > 0);
    assert_true(pid2 != pid1);
    inst_close(&in);
}

/* A ping on a connection the server ended a moment before it was taken
 * (its backend terminated, not waited for): the lost connection can
 * still look idle, and the ping answered "not ready" for a database that
 * answers (3 of 30 backend kills). It tries once more on a new one. */
static void test_ping_after_its_backend_ended(void **state)
{
    NEED_SERVER(f);
    struct inst in = { 0 };
    int64_t pid;
    int round;

    inst_open(f, &in, "pingkill", 1, 2000);
    for (round = 0; round < 30; round++) {
        assert_int_equal(in.ops->ping(in.impl), AS_OK);
        pid = backend_pid(f, in.app);       /* the ping's connection only */
        assert_true(pid > 0);
        PQclear(side_q(f, "SELECT pg_terminate_backend(%lld)",
                       (long long)pid));
        assert_int_equal(in.ops->ping(in.impl), AS_OK);
    }
    inst_close(&in);
}

static void test_reconnect_mid_query(void **state)
{
    NEED_SERVER(f);
    struct inst in = { 0 };
    struct op_arg arg = { 0 };
    pthread_t th;
    int64_t cnt, pid;

    inst_open(f, &in, "midq", 1, 10000);
    assert_int_equal(in.ops->user_count(in.impl, false, &cnt), AS_OK);
    side_ok(f, "BEGIN");
    side_ok(f, "LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
    arg.in = &in;
    arg.kind = 1;
    arg.err = AS_ERR_INTERNAL;
    assert_int_equal(pthread_create(&th, NULL, op_thread, &arg), 0);
    wait_blocked(f, in.app, "relation");
    pid = backend_pid(f, in.app);
    assert_true(pid > 0);
    terminate(f, pid);
    pthread_join(th, NULL);
    assert_int_equal(arg.err, AS_ERR_UNAVAILABLE);
    assert_true(arg.unreached);         /* its connection was lost */
    side_ok(f, "ROLLBACK");
    assert_int_equal(in.ops->user_count(in.impl, false, &cnt), AS_OK);
    inst_close(&in);
}

/* --------------------------------------------- no server needed at all */

/* ------------------------------------------------- deadlock retries */

struct del_arg {
    struct repo *r;
    const char *id;
    enum as_err err;
};

static void *delete_thread(void *p)
{
    struct del_arg *d = p;

    d->err = repo_user_delete(d->r, d->id, 1000);
    return NULL;
}

/* One round of a real deadlock between a user delete (through the
 * dispatcher) and this test's own transaction, which holds the user's row
 * and then asks for the admin row the delete holds. The delete waited
 * first, so its backend's deadlock check runs first and aborts it (40P01);
 * true when that happened, and then the side transaction got its lock. */
static bool deadlock_round(struct fx *f, struct repo *r, const char *app,
                           const struct user *victim,
                           const struct user *admin, enum as_err *err)
{
    struct del_arg arg = { .r = r, .id = victim->id,
                           .err = AS_ERR_INTERNAL };
    char sql[256];
    PGresult *res;
    bool side_won;
    pthread_t th;

    side_ok(f, "BEGIN");
    PQclear(side_q(f, "SELECT 1 FROM users WHERE id = '%s' FOR UPDATE",
                   victim->id));
    assert_int_equal(pthread_create(&th, NULL, delete_thread, &arg), 0);
    /* the delete holds the admin rows and waits for the victim's */
    wait_blocked(f, app, "transactionid");
    snprintf(sql, sizeof sql,
             "SELECT 1 FROM users WHERE id = '%s' FOR UPDATE", admin->id);
    assert_int_equal(PQsendQuery(f->side, sql), 1);
    res = PQgetResult(f->side);         /* blocks until one side aborts */
    side_won = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    while ((res = PQgetResult(f->side)) != NULL)
        PQclear(res);
    side_ok(f, "ROLLBACK");             /* lets the retried delete go on */
    pthread_join(th, NULL);
    *err = arg.err;
    return side_won;
}

/* A transaction aborted by a deadlock is retried, whole, by the
 * dispatcher: the delete succeeds instead of answering 500, and the
 * breaker does not count it. */
static void test_deadlock_is_retried(void **state)
{
    NEED_SERVER(f);
    struct inst in = { 0 };
    struct user admin, victim, got;
    struct repo *r = NULL;
    struct cfg cfg;
    enum as_err err = AS_ERR_INTERNAL;
    unsigned round;
    bool aborted = false;

    mk_user(&admin, 1, "root@example.com", NULL, ROLE_ADMIN);
    assert_int_equal(f->ops->user_insert(f->impl, &admin), AS_OK);
    inst_open(f, &in, "dl", 2, 5000);
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(repo_wrap(&cfg, in.ops, in.impl, &r), AS_OK);
    in.ops = NULL;                      /* the repository owns it now */
    /* A loaded machine may let the side wait first: then it is the
     * victim, nothing is proven, and the round is played again. */
    for (round = 0; round < 3 && !aborted; round++) {
        mk_user(&victim, 10 + round, round == 0 ? "v0@example.com"
                                     : round == 1 ? "v1@example.com"
                                                  : "v2@example.com",
                NULL, ROLE_USER);
        assert_int_equal(f->ops->user_insert(f->impl, &victim), AS_OK);
        aborted = deadlock_round(f, r, in.app, &victim, &admin, &err);
        assert_int_equal(err, AS_OK);
        assert_int_equal(f->ops->user_by_id(f->impl, victim.id, &got, f->a),
                         AS_ERR_NOT_FOUND);
    }
    assert_true(aborted);
    assert_int_equal(repo_error_count(r), 0);
    assert_int_equal(breaker_state(repo_breaker(r), clock_mono_ms()),
                     BREAKER_CLOSED);
    assert_int_equal(f->ops->user_by_id(f->impl, admin.id, &got, f->a),
                     AS_OK);
    repo_close(r);
}

static void test_unreachable_and_bad_url(void **state)
{
    const struct repo_ops *ops = NULL;
    void *impl = NULL;
    struct cfg cfg;
    uint64_t t;

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    cfg.db_pool_size = 2;
    cfg.db_timeout_ms = 500;
    /* the configuration's error (exit 2 at start), not the database's */
    assert_int_equal(repo_pg_open(&cfg, "postgresql://u:secret@h/db?"
                                  "no_such_option=1", &ops, &impl),
                     AS_ERR_BAD_REQUEST);
    assert_null(ops);
    assert_null(impl);
    assert_int_equal(repo_pg_open(&cfg, "postgresql://u:secret@h:65536/db",
                                  &ops, &impl),
                     AS_ERR_BAD_REQUEST);
    assert_int_equal(repo_pg_open(&cfg, "postgresql://u:secret@h1:5432,"
                                  "h2:0/db", &ops, &impl),
                     AS_ERR_BAD_REQUEST);
    assert_int_equal(repo_pg_url_check("postgresql://u:secret@h1:5432,"
                                       "h2:5433/db"), AS_OK);
    assert_int_equal(repo_pg_url_check("postgresql://u:secret@h:/db"),
                     AS_OK);             /* empty: the default port */
    /* nothing listens on port 1 of loopback: refused at once */
    assert_int_equal(repo_pg_open(&cfg, "postgresql://u:secret@127.0.0.1:1/"
                                  "db", &ops, &impl), AS_OK);
    t = clock_mono_ms();
    (void)db_take_unreached();
    assert_int_equal(ops->ping(impl), AS_ERR_UNAVAILABLE);
    assert_true(db_take_unreached());       /* a refused connect */
    assert_int_equal(ops->migrate(impl), AS_ERR_UNAVAILABLE);
    assert_true(db_take_unreached());
    assert_false(db_take_unreached());      /* taken: cleared */
    assert_true(clock_mono_ms() - t < 8000);
    ops->close(impl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unreachable_and_bad_url),
        cmocka_unit_test_setup_teardown(test_migrate_twice, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_concurrent,
                                        fx_setup_bare, fx_teardown),
        cmocka_unit_test_setup_teardown(test_user_crud, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_user_list, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_last_admin_rules, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_sessions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_session_set_password_keeps_one,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_sequence, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_inactive_or_expired,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_concurrent, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_last_admin_concurrent, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_deadlock_is_retried, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_pool_timeout, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_ping_when_the_connection_limit_is_reached, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_ping_after_its_backend_ended,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_statement_timeout, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_idle, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_mid_query, fx_setup,
                                        fx_teardown),
    };

    if (!base_url())
        fprintf(stderr, "AUTH_TEST_PG_URL is unset: PostgreSQL cases "
                "skip (tests/pg-cluster.sh start DIR gives one)\n");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
