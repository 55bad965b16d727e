/* test_keys_pg.c: signing keys stored in PostgreSQL: first key, rotation
 * with its publish delay (time injected), retirement when the next key
 * starts signing, pruning, the poll, the sealing secret, instances
 * loading at once on an empty table, and the stored rows themselves.
 *
 * Needs AUTH_TEST_PG_URL (tests/pg-cluster.sh start DIR prints one);
 * without it every case is skipped. Each case works in a schema of its
 * own, dropped at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "repo.h"
#include "sec.h"
#include "sec/sec_int.h"

#define SECRET_A "first-keys-secret-0123456789abcdef"
#define SECRET_B "other-keys-secret-0123456789abcdef"
#define RACERS 4
#define ROUNDS 6

static char issuer[] = "auth-serve", audience[] = "auth-serve";
static char secret_a[] = SECRET_A, secret_b[] = SECRET_B;
static unsigned seq;

struct fx {
    char schema[48];
    char url[2048];
    char dir[96];
    PGconn *side;
    struct cfg cfg;
    struct repo *r;
};

static const char *base_url(void)
{
    const char *u = getenv("AUTH_TEST_PG_URL");

    return u && u[0] ? u : NULL;
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static void side(struct fx *f, const char *sql)
{
    PGresult *r = PQexec(f->side, sql);

    if (PQresultStatus(r) != PGRES_COMMAND_OK &&
        PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(f->side));
    PQclear(r);
}

static long side_count(struct fx *f, const char *sql)
{
    PGresult *r = PQexec(f->side, sql);
    long n;

    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(f->side));
    n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

static int setup(void **state)
{
    struct fx *f;
    const char *b = base_url();
    char sql[256];

    *state = NULL;
    if (!b || sodium_init() < 0)
        return 0;
    f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->schema, sizeof f->schema, "k%ld_%u", (long)getpid(), ++seq);
    snprintf(f->url, sizeof f->url, "%s%soptions=-c%%20search_path%%3D%s",
             b, strchr(b, '?') ? "&" : "?", f->schema);
    snprintf(f->dir, sizeof f->dir, "/nonexistent/auth-%s", f->schema);
    f->side = PQconnectdb(b);
    assert_int_equal(PQstatus(f->side), CONNECTION_OK);
    PQsetNoticeProcessor(f->side, quiet, NULL);
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE "
             "SCHEMA %s; SET search_path TO %s", f->schema, f->schema,
             f->schema);
    side(f, sql);
    f->cfg.jwt_alg = CFG_ALG_ES256;
    f->cfg.jwt_issuer = issuer;
    f->cfg.jwt_audience = audience;
    f->cfg.access_ttl = 30;
    f->cfg.key_publish_seconds = 600;
    f->cfg.keys_secret = secret_a;
    f->cfg.database_url = f->url;
    f->cfg.data_dir = f->dir;           /* no keys folder to import */
    assert_int_equal(repo_open(&f->cfg, &f->r), AS_OK);
    assert_int_equal(repo_migrate(f->r), AS_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char sql[128];

    if (!f)
        return 0;
    repo_close(f->r);
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE",
             f->schema);
    side(f, sql);
    PQfinish(f->side);
    free(f);
    return 0;
}

#define NEED_PG(f)                                                         \
    do {                                                                   \
        if (!(f))                                                          \
            skip();                                                        \
    } while (0)

static struct sec_keys *open_at(struct fx *f, int64_t now_ms)
{
    struct sec_keys *k = NULL;
    char why[512] = "";

    if (sec_keys_open(&f->cfg, f->r, NULL, now_ms, &k, why, sizeof why) !=
        AS_OK)
        fail_msg("sec_keys_open: %s", why);
    return k;
}

static size_t jwks_len(const struct sec_keys *k)
{
    json_t *j = sec_jwks(k, time(NULL));
    size_t n = json_array_size(json_object_get(j, "keys"));

    json_decref(j);
    return n;
}

/* The new key is listed at once, signs only after the publish delay, and
 * the old one verifies for access TTL + 60 s after that, and 10 s more
 * (an instance switches up to a reload late), then is gone. */
static void rotation_publishes_then_signs_then_retires(void **state)
{
    struct fx *f = *state;
    int64_t t = (int64_t)time(NULL) * 1000;
    struct sec_keys *k1, *k2, *k3 = NULL, *k4, *same = NULL;
    char old[SEC_KID_MAX], c1[SEC_TOKEN_LEN + 1], c3[SEC_TOKEN_LEN + 1];
    char why[256];
    int64_t switch_at = t + 600 * 1000 + 2000;

    NEED_PG(f);
    k1 = open_at(f, t);
    snprintf(old, sizeof old, "%s", sec_keys_kid(k1));
    assert_int_equal(jwks_len(k1), 1);
    assert_int_equal(side_count(f, "SELECT count(*) FROM auth_keys"), 2);
    assert_int_equal(sec_keys_cli(&f->cfg, f->r, "rotate"), 0);

    k2 = open_at(f, t + 1000);
    assert_string_equal(sec_keys_kid(k2), old);       /* not yet */
    assert_int_equal(jwks_len(k2), 2);                /* but listed */
    assert_int_equal(sec_keys_poll(&f->cfg, f->r, k2, t + 2000, &same, NULL,
                                   why, sizeof why), AS_OK);
    assert_null(same);                                /* nothing new */
    assert_int_equal(sec_keys_poll(&f->cfg, f->r, k2, switch_at, &k3, NULL,
                                   why, sizeof why), AS_OK);
    assert_non_null(k3);
    assert_string_not_equal(sec_keys_kid(k3), old);   /* switched */
    assert_non_null(sec_keys_find(k3, old));          /* still verifies */
    sec_token_child(k1, "parent-token", c1);
    sec_token_child(k3, "parent-token", c3);
    assert_string_equal(c1, c3);                      /* one refresh key */

    k4 = open_at(f, switch_at + (30 + 60 + 5) * 1000);
    assert_non_null(sec_keys_find(k4, old));          /* a reload late */
    sec_keys_free(k4);
    k4 = open_at(f, switch_at + (30 + 60 + 11) * 1000);
    assert_null(sec_keys_find(k4, old));
    assert_int_equal(jwks_len(k4), 1);
    assert_int_equal(side_count(f, "SELECT count(*) FROM auth_keys"), 2);
    sec_keys_free(k1);
    sec_keys_free(k2);
    sec_keys_free(k3);
    sec_keys_free(k4);
}

/* `keys rotate` on an admin host set up with the database settings only
 * (the default token lifetime, 900 s) deletes no key: a key retired
 * 1,000 s ago still verifies on instances whose tokens live 1,800 s. */
static void a_rotation_elsewhere_deletes_no_key(void **state)
{
    struct fx *f = *state;
    int64_t t = (int64_t)time(NULL) * 1000;
    struct sec_keys *k1, *k2;
    struct cfg admin;
    char old[SEC_KID_MAX], sql[256];

    NEED_PG(f);
    f->cfg.access_ttl = 1800;
    k1 = open_at(f, t);
    snprintf(old, sizeof old, "%s", sec_keys_kid(k1));
    f->cfg.key_publish_seconds = 0;
    assert_int_equal(sec_keys_cli(&f->cfg, f->r, "rotate"), 0);
    /* the new key took over 1,000 s ago */
    snprintf(sql, sizeof sql, "UPDATE auth_keys SET signs_from = %lld "
             "WHERE kid NOT IN ('refresh', '%s')", (long long)(t - 1000000),
             old);
    side(f, sql);
    admin = f->cfg;
    admin.access_ttl = 900;
    admin.key_publish_seconds = 600;
    assert_int_equal(sec_keys_cli(&admin, f->r, "rotate"), 0);
    assert_int_equal(side_count(f, "SELECT count(*) FROM auth_keys"), 4);
    k2 = open_at(f, t + 1000);
    assert_non_null(sec_keys_find(k2, old));          /* still verifies */
    sec_keys_free(k1);
    sec_keys_free(k2);
}

static void another_secret_does_not_open(void **state)
{
    struct fx *f = *state;
    struct sec_keys *k;
    char why[512] = "";

    NEED_PG(f);
    k = open_at(f, (int64_t)time(NULL) * 1000);
    sec_keys_free(k);
    k = NULL;
    f->cfg.keys_secret = secret_b;
    assert_int_not_equal(sec_keys_open(&f->cfg, f->r, NULL,
                                       (int64_t)time(NULL) * 1000, &k, why,
                                       sizeof why), AS_OK);
    assert_null(k);
    assert_non_null(strstr(why, "AUTH_KEYS_SECRET"));
    assert_int_equal(sec_keys_cli(&f->cfg, f->r, "rotate"), 2);
    assert_int_equal(side_count(f, "SELECT count(*) FROM auth_keys"), 2);
    assert_int_equal(side_count(f, "SELECT count(*) FROM auth_keys WHERE "
                                   "position('PRIVATE KEY'::bytea in "
                                   "sealed) > 0"),
                     0);
}

struct racer {
    struct fx *f;
    pthread_barrier_t *go;
    char kid[SEC_KID_MAX];
    enum as_err err;
};

static void *race(void *arg)
{
    struct racer *x = arg;
    struct sec_keys *k = NULL;

    pthread_barrier_wait(x->go);
    x->err = sec_keys_open(&x->f->cfg, x->f->r, NULL,
                           (int64_t)time(NULL) * 1000, &k, NULL, 0);
    if (k)
        snprintf(x->kid, sizeof x->kid, "%s", sec_keys_kid(k));
    sec_keys_free(k);
    return NULL;
}

/* Loads racing on an empty table all end with the same single key. */
static void first_loads_at_once_settle_on_one_key(void **state)
{
    struct fx *f = *state;
    struct racer x[RACERS];
    pthread_t th[RACERS];
    pthread_barrier_t go;
    int round, i;

    NEED_PG(f);
    for (round = 0; round < ROUNDS; round++) {
        side(f, "DELETE FROM auth_keys");
        pthread_barrier_init(&go, NULL, RACERS);
        for (i = 0; i < RACERS; i++) {
            memset(&x[i], 0, sizeof x[i]);
            x[i].f = f;
            x[i].go = &go;
            assert_int_equal(pthread_create(&th[i], NULL, race, &x[i]), 0);
        }
        for (i = 0; i < RACERS; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        for (i = 0; i < RACERS; i++) {
            assert_int_equal(x[i].err, AS_OK);
            assert_string_equal(x[i].kid, x[0].kid);
        }
        assert_int_equal(side_count(f, "SELECT count(*) FROM auth_keys "
                                       "WHERE kid <> 'refresh'"), 1);
    }
}

struct adder {
    struct fx *f;
    pthread_barrier_t *go;
    struct key_row row;
    enum as_err err;
};

static void *add_one(void *arg)
{
    struct adder *x = arg;
    bool added = false;

    pthread_barrier_wait(x->go);
    x->err = repo_keys_add(x->f->r, &x->row, 1, false, &added);
    return NULL;
}

/* Rotations at once with one place left under the cap of keys the
 * instances read (REPO_KEYS_MAX): exactly one is stored, the others are
 * refused, ROUNDS times (each counted before the other's insert, two
 * were stored and the table held one more key than any instance loads). */
static void rotations_at_once_hold_the_cap(void **state)
{
    static const uint8_t bytes[] = { 0x01, 0x02 };
    struct fx *f = *state;
    struct adder x[RACERS];
    pthread_t th[RACERS];
    pthread_barrier_t go;
    char sql[200];
    int round, i, won;

    NEED_PG(f);
    for (round = 0; round < ROUNDS; round++) {
        side(f, "DELETE FROM auth_keys");
        snprintf(sql, sizeof sql, "INSERT INTO auth_keys (kid, sealed, "
                 "created_at, signs_from) SELECT 'k' || g, '\\x00', g, g "
                 "FROM generate_series(1, %d) g", REPO_KEYS_MAX - 1);
        side(f, sql);
        pthread_barrier_init(&go, NULL, RACERS);
        for (i = 0; i < RACERS; i++) {
            memset(&x[i], 0, sizeof x[i]);
            x[i].f = f;
            x[i].go = &go;
            x[i].row = (struct key_row){ .sealed = bytes,
                                         .sealed_len = sizeof bytes,
                                         .created_at = 1000,
                                         .signs_from = 1000 };
            snprintf(x[i].row.kid, sizeof x[i].row.kid, "new-%d-%d", round,
                     i);
            assert_int_equal(pthread_create(&th[i], NULL, add_one, &x[i]),
                             0);
        }
        for (i = 0; i < RACERS; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        for (i = 0, won = 0; i < RACERS; i++) {
            assert_true(x[i].err == AS_OK || x[i].err == AS_ERR_CONFLICT);
            won += x[i].err == AS_OK;
        }
        assert_int_equal(won, 1);
        assert_int_equal(side_count(f, "SELECT count(*) FROM auth_keys"),
                         REPO_KEYS_MAX);
    }
}

/* The storage primitives themselves: sealed bytes (NULs and all) come
 * back as stored, in signs_from order and no more than asked for; an
 * existing kid is left alone; with only_if_empty nothing is added once a
 * signing key exists; pruning keeps the refresh-derivation key. */
static void rows_round_trip_as_bytes(void **state)
{
    static const uint8_t a_bytes[] = { 0x00, 0xff, 0x00, 0x01, 0x80, 0x00 };
    static const uint8_t b_bytes[] = { 0x00 };
    static const uint8_t r_bytes[] = { 0x7f, 0x00, 0x00 };
    struct key_row in[3] = {
        { .kid = "kid-b", .sealed = b_bytes, .sealed_len = sizeof b_bytes,
          .created_at = 5, .signs_from = 2000 },
        { .kid = "kid-a", .sealed = a_bytes, .sealed_len = sizeof a_bytes,
          .created_at = 4, .signs_from = 1000 },
        { .kid = REPO_KEY_REFRESH, .sealed = r_bytes,
          .sealed_len = sizeof r_bytes, .created_at = 3, .signs_from = 0 },
    };
    struct key_row out[REPO_KEYS_MAX], again = in[1];
    struct fx *f = *state;
    struct arena *a;
    bool added = true;
    size_t n = 99;

    NEED_PG(f);
    a = arena_new();
    assert_non_null(a);
    assert_int_equal(repo_keys_list(f->r, out, REPO_KEYS_MAX, &n, a), AS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(repo_keys_add(f->r, in, 3, true, &added), AS_OK);
    assert_true(added);
    assert_int_equal(repo_keys_list(f->r, out, REPO_KEYS_MAX, &n, a), AS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(out[0].kid, REPO_KEY_REFRESH);
    assert_string_equal(out[1].kid, "kid-a");
    assert_string_equal(out[2].kid, "kid-b");
    assert_int_equal(out[1].sealed_len, sizeof a_bytes);
    assert_memory_equal(out[1].sealed, a_bytes, sizeof a_bytes);
    assert_int_equal(out[2].sealed_len, sizeof b_bytes);
    assert_memory_equal(out[2].sealed, b_bytes, sizeof b_bytes);
    assert_memory_equal(out[0].sealed, r_bytes, sizeof r_bytes);
    assert_int_equal(out[1].created_at, 4);
    assert_int_equal(out[1].signs_from, 1000);
    assert_int_equal(repo_keys_list(f->r, out, 2, &n, a), AS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[1].kid, "kid-a");

    again.sealed = b_bytes;                /* same kid: left alone */
    again.sealed_len = sizeof b_bytes;
    assert_int_equal(repo_keys_add(f->r, &again, 1, true, &added), AS_OK);
    assert_false(added);
    assert_int_equal(repo_keys_add(f->r, &again, 1, false, &added), AS_OK);
    assert_true(added);
    assert_int_equal(repo_keys_list(f->r, out, REPO_KEYS_MAX, &n, a), AS_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(out[1].sealed, a_bytes, sizeof a_bytes);

    /* kid-a's successor signs from 2000: kept while that is not before
     * `before` or has not come by `now` */
    assert_int_equal(repo_keys_prune(f->r, 1999, 5000), AS_OK);
    assert_int_equal(repo_keys_prune(f->r, 5000, 2000), AS_OK);
    assert_int_equal(side_count(f, "SELECT count(*) FROM auth_keys"), 3);
    assert_int_equal(repo_keys_prune(f->r, 5000, 2001), AS_OK);
    assert_int_equal(repo_keys_list(f->r, out, REPO_KEYS_MAX, &n, a), AS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].kid, REPO_KEY_REFRESH);
    assert_string_equal(out[1].kid, "kid-b");
    arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            rotation_publishes_then_signs_then_retires, setup, teardown),
        cmocka_unit_test_setup_teardown(a_rotation_elsewhere_deletes_no_key,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(another_secret_does_not_open,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            first_loads_at_once_settle_on_one_key, setup, teardown),
        cmocka_unit_test_setup_teardown(rows_round_trip_as_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rotations_at_once_hold_the_cap,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
