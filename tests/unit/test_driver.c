/* test_driver.c: the storage driver of each backend (src/repo/driver.h):
 * typed arguments and rows, $n placeholders, statements that run on one
 * backend only, transactions, statements sent ahead (db_send), and
 * (PostgreSQL) one prepare per statement and connection and the round
 * trips a transaction costs. PostgreSQL runs when AUTH_TEST_PG_URL is set. */
#include "repo/driver.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "repo.h"

enum {
    D_CREATE, D_INSERT, D_GET, D_FLIP, D_PG_ONLY, D_PREPARED, D_COUNT,
    D_PID, D_ABOVE, D_FORGOTTEN, D_NSTMT
};

static struct db_stmt sql[D_NSTMT] = {
    [D_CREATE] = DB_SPLIT("CREATE TEMP TABLE dt (id INTEGER PRIMARY KEY, "
                          "t TEXT, b BLOB, f BOOLEAN, twice INTEGER)",
                          "CREATE TEMP TABLE dt (id BIGINT PRIMARY KEY, "
                          "t TEXT, b BYTEA, f BOOLEAN, twice BIGINT)"),
    /* $1 twice, and out of order */
    [D_INSERT] = DB_SQL("INSERT INTO dt (b, id, t, f, twice) "
                        "VALUES ($3, $1, $2, $4, $1 * 2)"),
    [D_GET] = DB_SQL("SELECT id, t, b, f, twice, t IS NULL FROM dt "
                     "WHERE id = $1"),
    [D_FLIP] = DB_SQL("UPDATE dt SET f = NOT f WHERE id >= $1"),
    [D_PG_ONLY] = DB_PG_ONLY("SELECT 42"),
    [D_PREPARED] = DB_PG_ONLY("SELECT count(*) FROM pg_prepared_statements "
                              "WHERE name ~ '^s[0-9]+$'"),
    [D_COUNT] = DB_SQL("SELECT count(*) FROM dt"),
    [D_PID] = DB_PG_ONLY("SELECT pg_backend_pid()"),
    /* first used only behind a failure (a_sent_failure_is_the_flows) */
    [D_ABOVE] = DB_SQL("SELECT count(*) FROM dt WHERE id > $1"),
    /* D_FORGOTTEN: no entry, as an edit that lost a line leaves it */
};

struct fx {
    const struct repo_ops *ops;
    void *impl;
    bool pg;
};

/* One backend on a single connection, so the temp table is seen. */
static int open_backend(void **state, bool pg)
{
    static struct fx f;
    struct cfg c;
    const char *url = getenv("AUTH_TEST_PG_URL");
    struct db_rows r;
    struct db_tx t;

    memset(&c, 0, sizeof c);
    c.db_pool_size = 1;
    c.db_timeout_ms = 5000;
    memset(&f, 0, sizeof f);
    f.pg = pg;
    if (pg && !(url && *url)) {
        *state = NULL;
        return 0;
    }
    assert_int_equal(pg ? repo_pg_open(&c, url, &f.ops, &f.impl)
                        : repo_sqlite_open(&c, ":memory:", &f.ops, &f.impl),
                     AS_OK);
    db_open(&t, f.impl, "test", false, NULL);
    assert_true(db_run(&t, &sql[D_CREATE], NULL, 0, &r));
    assert_int_equal(db_close(&t), AS_OK);
    *state = &f;
    return 0;
}

static int setup_sqlite(void **state)
{
    return open_backend(state, false);
}

static int setup_pg(void **state)
{
    return open_backend(state, true);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    if (f)
        f->ops->close(f->impl);
    return 0;
}

#define NEED(f)                                                            \
    struct fx *f = *state;                                                 \
    if (!f)                                                                \
        skip()

static void typed_round_trip(void **state)
{
    NEED(f);
    static const uint8_t bytes[5] = { 1, 0, 255, 0, 7 };
    struct arena *a = arena_new();
    struct db_rows r;
    struct db_tx t;
    const struct db_val *v;

    db_open(&t, f->impl, "test", true, a);
    assert_true(DB_RUN(&t, &sql[D_INSERT], &r, db_int(INT64_C(1) << 40),
                       db_text("Zoë"), db_blob(bytes, sizeof bytes),
                       db_bool(true)));
    assert_int_equal(r.changed, 1);
    assert_true(DB_RUN(&t, &sql[D_INSERT], &r, db_int(-7), db_text(NULL),
                       db_blob(NULL, 0), db_bool(false)));
    assert_true(DB_RUN(&t, &sql[D_GET], &r, db_int(INT64_C(1) << 40)));
    assert_int_equal(r.n, 1);
    assert_int_equal(r.cols, 6);
    v = db_at(&r, 0, 0);
    assert_int_equal(v->type, DB_INT);
    assert_int_equal(db_i64(v), INT64_C(1) << 40);
    assert_string_equal(db_str(db_at(&r, 0, 1)), "Zoë");
    assert_int_equal(db_at(&r, 0, 1)->len, strlen("Zoë"));
    v = db_at(&r, 0, 2);
    assert_int_equal(v->type, DB_BLOB);
    assert_int_equal(v->len, sizeof bytes);
    assert_memory_equal(v->b, bytes, sizeof bytes);
    assert_true(db_flag(db_at(&r, 0, 3)));
    assert_int_equal(db_i64(db_at(&r, 0, 4)), INT64_C(1) << 41);
    assert_false(db_flag(db_at(&r, 0, 5)));
    assert_true(DB_RUN(&t, &sql[D_GET], &r, db_int(-7)));
    assert_int_equal(r.n, 1);
    assert_null(db_str(db_at(&r, 0, 1)));
    assert_true(db_at(&r, 0, 2)->null);
    assert_false(db_flag(db_at(&r, 0, 3)));
    assert_int_equal(db_i64(db_at(&r, 0, 4)), -14);
    assert_true(db_flag(db_at(&r, 0, 5)));
    assert_true(DB_RUN(&t, &sql[D_FLIP], &r, db_int(-100)));
    assert_int_equal(r.changed, 2);
    assert_int_equal(r.n, 0);
    assert_true(DB_RUN(&t, &sql[D_GET], &r, db_int(12345)));
    assert_int_equal(r.n, 0);
    assert_int_equal(db_close(&t), AS_OK);
    arena_free(a);
}

/* A statement of the other backend only runs nothing, successfully. */
static void one_backend_statements(void **state)
{
    NEED(f);
    struct db_rows r;
    struct db_tx t;

    db_open(&t, f->impl, "test", false, NULL);
    assert_true(db_run(&t, &sql[D_PG_ONLY], NULL, 0, &r));
    assert_int_equal(r.n, f->pg ? 1 : 0);
    if (f->pg)
        assert_int_equal(db_i64(db_at(&r, 0, 0)), 42);
    assert_int_equal(db_close(&t), AS_OK);
}

/* An index its table forgot (no text on either backend) runs nothing
 * and would answer "no rows", as a search that found none: the flow is
 * refused instead, and what it wrote before is rolled back. Run alone
 * and sent ahead alike. */
static void a_forgotten_statement_refuses_the_flow(void **state)
{
    NEED(f);
    struct db_rows r;
    struct db_tx t;

    for (int sent = 0; sent < 2; sent++) {
        db_open(&t, f->impl, "test", true, NULL);
        assert_true(DB_RUN(&t, &sql[D_INSERT], &r, db_int(600 + sent),
                           db_text("x"), db_blob(NULL, 0), db_bool(true)));
        if (sent)
            db_send(&t, &sql[D_FORGOTTEN], NULL, 0, NULL, false, NULL);
        else
            assert_false(db_run(&t, &sql[D_FORGOTTEN], NULL, 0, &r));
        assert_int_equal(db_close(&t), AS_ERR_INTERNAL);

        db_open(&t, f->impl, "test", false, NULL);
        assert_true(DB_RUN(&t, &sql[D_ABOVE], &r, db_int(599)));
        assert_int_equal(db_i64(db_at(&r, 0, 0)), 0);
        assert_int_equal(db_close(&t), AS_OK);
    }
}

/* A failed step stops the flow and rolls back what it wrote. */
static void failure_rolls_back(void **state)
{
    NEED(f);
    struct db_rows r;
    struct db_tx t;
    int64_t before;

    db_open(&t, f->impl, "test", false, NULL);
    assert_true(db_run(&t, &sql[D_COUNT], NULL, 0, &r));
    before = db_i64(db_at(&r, 0, 0));
    assert_int_equal(db_close(&t), AS_OK);

    db_open(&t, f->impl, "test", true, NULL);
    assert_true(DB_RUN(&t, &sql[D_INSERT], &r, db_int(500), db_text("x"),
                       db_blob(NULL, 0), db_bool(true)));
    db_refuse(&t, AS_ERR_CONFLICT);
    assert_false(db_run(&t, &sql[D_COUNT], NULL, 0, &r));   /* skipped */
    assert_int_equal(r.n, 0);
    assert_int_equal(db_close(&t), AS_ERR_CONFLICT);

    /* a duplicate key fails the statement, and the flow with it */
    db_open(&t, f->impl, "test", true, NULL);
    assert_true(DB_RUN(&t, &sql[D_INSERT], &r, db_int(501), db_text("y"),
                       db_blob(NULL, 0), db_bool(true)));
    assert_false(DB_RUN(&t, &sql[D_INSERT], &r, db_int(501), db_text("y"),
                        db_blob(NULL, 0), db_bool(true)));
    assert_int_equal(db_close(&t), AS_ERR_INTERNAL);

    db_open(&t, f->impl, "test", false, NULL);
    assert_true(db_run(&t, &sql[D_COUNT], NULL, 0, &r));
    assert_int_equal(db_i64(db_at(&r, 0, 0)), before);
    assert_int_equal(db_close(&t), AS_OK);
}

/* Text that is not UTF-8: PostgreSQL cannot hold it (and the flows read
 * that as "nothing stored"); SQLite stores bytes. */
static void text_not_utf8(void **state)
{
    NEED(f);
    struct db_rows r;
    struct db_tx t;

    db_open(&t, f->impl, "test", false, NULL);
    DB_RUN(&t, &sql[D_INSERT], &r, db_int(900), db_text("\xc3("),
           db_blob(NULL, 0), db_bool(true));
    assert_int_equal(db_close(&t), f->pg ? AS_ERR_VALIDATION : AS_OK);
}

/* Each statement is prepared once per connection, then only executed. */
static void prepared_once(void **state)
{
    NEED(f);
    struct db_rows r;
    struct db_tx t;
    int64_t n1, n2;
    int i;

    if (!f->pg)
        skip();
    db_open(&t, f->impl, "test", false, NULL);
    assert_true(db_run(&t, &sql[D_PREPARED], NULL, 0, &r));
    n1 = db_i64(db_at(&r, 0, 0));
    for (i = 0; i < 20; i++)
        assert_true(DB_RUN(&t, &sql[D_GET], &r, db_int(i)));
    assert_true(db_run(&t, &sql[D_PREPARED], NULL, 0, &r));
    n2 = db_i64(db_at(&r, 0, 0));
    assert_int_equal(db_close(&t), AS_OK);
    assert_true(n1 >= 1);
    assert_true(n2 <= n1 + 1);           /* D_GET at most, once */
}

/* The number of rows of dt with id in [lo, hi). */
static int64_t rows_between(struct fx *f, int64_t lo, int64_t hi)
{
    struct db_rows r;
    struct db_tx t;
    int64_t above_lo, above_hi;

    db_open(&t, f->impl, "test", false, NULL);
    assert_true(DB_RUN(&t, &sql[D_ABOVE], &r, db_int(lo - 1)));
    above_lo = db_i64(db_at(&r, 0, 0));
    assert_true(DB_RUN(&t, &sql[D_ABOVE], &r, db_int(hi - 1)));
    above_hi = db_i64(db_at(&r, 0, 0));
    assert_int_equal(db_close(&t), AS_OK);
    return above_lo - above_hi;
}

/* The server session the pool's one connection is (0 on SQLite). */
static int64_t backend_pid(struct fx *f)
{
    struct db_rows r;
    struct db_tx t;
    int64_t pid = 0;

    db_open(&t, f->impl, "test", false, NULL);
    assert_true(db_run(&t, &sql[D_PID], NULL, 0, &r));
    if (r.n == 1)
        pid = db_i64(db_at(&r, 0, 0));
    assert_int_equal(db_close(&t), AS_OK);
    return pid;
}

static void insert_sent(struct db_tx *t, int64_t id)
{
    DB_SEND(t, &sql[D_INSERT], db_int(id), db_text("sent"),
            db_blob(NULL, 0), db_bool(false));
}

/* Statements sent ahead go out together: on PostgreSQL a transaction of
 * sends costs one round trip with its COMMIT, a read among them one
 * more; what they wrote is committed on both backends. */
static void sent_statements_go_with_the_commit(void **state)
{
    NEED(f);
    struct db_rows r;
    struct db_tx t;
    uint64_t rt;

    (void)backend_pid(f);                    /* connected, prepared */
    rows_between(f, 0, 1);
    db_open(&t, f->impl, "test", true, NULL);
    insert_sent(&t, 600);
    db_close(&t);

    rt = db_pg_round_trips();
    db_open(&t, f->impl, "test", true, NULL);
    insert_sent(&t, 601);
    insert_sent(&t, 602);
    insert_sent(&t, 603);
    assert_int_equal(db_close(&t), AS_OK);
    assert_int_equal(db_pg_round_trips() - rt, f->pg ? 1 : 0);
    assert_int_equal(rows_between(f, 600, 604), 4);

    rt = db_pg_round_trips();
    db_open(&t, f->impl, "test", true, NULL);
    insert_sent(&t, 604);
    assert_true(DB_RUN(&t, &sql[D_ABOVE], &r, db_int(600)));
    assert_int_equal(db_i64(db_at(&r, 0, 0)), 4);     /* 604 seen */
    insert_sent(&t, 605);
    assert_int_equal(db_close(&t), AS_OK);
    assert_int_equal(db_pg_round_trips() - rt, f->pg ? 2 : 0);
    assert_int_equal(rows_between(f, 600, 606), 6);
}

/* A sent statement that fails fails the flow at its next step: nothing
 * of the transaction stays, sent before or after it, and the connection
 * goes on serving (a statement first prepared behind the failure, which
 * the server skipped, is prepared again). */
static void a_sent_failure_is_the_flows(void **state)
{
    NEED(f);
    struct db_rows r;
    struct db_tx t;
    int64_t pid = backend_pid(f);

    db_open(&t, f->impl, "test", true, NULL);
    insert_sent(&t, 700);
    insert_sent(&t, 700);                    /* duplicate key */
    insert_sent(&t, 701);
    assert_false(DB_RUN(&t, &sql[D_ABOVE], &r, db_int(0)));
    assert_int_equal(r.n, 0);
    assert_int_equal(db_close(&t), AS_ERR_INTERNAL);
    assert_int_equal(rows_between(f, 700, 702), 0);
    assert_int_equal(backend_pid(f), pid);

    /* failing with the COMMIT, no read before it */
    db_open(&t, f->impl, "test", true, NULL);
    insert_sent(&t, 702);
    insert_sent(&t, 702);
    assert_int_equal(db_close(&t), AS_ERR_INTERNAL);
    assert_int_equal(rows_between(f, 702, 703), 0);
    assert_int_equal(backend_pid(f), pid);
}

static void refuse_if_any(struct db_tx *t, const struct db_rows *r,
                          void *ctx)
{
    (void)ctx;
    if (db_i64(db_at(r, 0, 0)) > 0)
        db_refuse(t, AS_ERR_CONFLICT);
}

static void copy_changed(struct db_tx *t, const struct db_rows *r,
                         void *ctx)
{
    (void)t;
    *(int64_t *)ctx = r->changed;
}

/* A check is read before the COMMIT goes: its refusal undoes what was
 * sent after it too. A note may come with the COMMIT. */
static void a_check_gates_the_commit(void **state)
{
    NEED(f);
    struct db_tx t;
    int64_t pid = backend_pid(f), changed = -1;
    uint64_t rt;

    db_open(&t, f->impl, "test", true, NULL);
    insert_sent(&t, 800);
    assert_int_equal(db_close(&t), AS_OK);

    rt = db_pg_round_trips();
    db_open(&t, f->impl, "test", true, NULL);
    DB_CHECK(&t, &sql[D_ABOVE], refuse_if_any, NULL, db_int(799));
    insert_sent(&t, 801);
    assert_int_equal(db_close(&t), AS_ERR_CONFLICT);
    /* the checks and sends, then ROLLBACK with the sync */
    assert_int_equal(db_pg_round_trips() - rt, f->pg ? 2 : 0);
    assert_int_equal(rows_between(f, 800, 802), 1);
    assert_int_equal(backend_pid(f), pid);

    db_open(&t, f->impl, "test", true, NULL);
    DB_CHECK(&t, &sql[D_ABOVE], refuse_if_any, NULL, db_int(801));
    insert_sent(&t, 802);
    assert_int_equal(db_close(&t), AS_OK);
    assert_int_equal(rows_between(f, 800, 803), 2);

    rt = db_pg_round_trips();
    db_open(&t, f->impl, "test", true, NULL);
    DB_NOTE(&t, &sql[D_FLIP], copy_changed, &changed, db_int(800));
    assert_int_equal(db_close(&t), AS_OK);
    assert_int_equal(changed, 2);                   /* 800 and 802 */
    assert_int_equal(db_pg_round_trips() - rt, f->pg ? 1 : 0);
}

static void slots_are_stable_and_distinct(void **state)
{
    static struct db_stmt a = DB_SQL("SELECT 1"), b = DB_SQL("SELECT 2");
    unsigned sa = db_stmt_slot(&a), sb = db_stmt_slot(&b);

    (void)state;
    assert_true(sa < DB_STMT_MAX);
    assert_true(sb < DB_STMT_MAX);
    assert_int_not_equal(sa, sb);
    assert_int_equal(db_stmt_slot(&a), sa);
    assert_int_equal(db_stmt_slot(&b), sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slots_are_stable_and_distinct),
#define BOTH(fn)                                                           \
        cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown),      \
        cmocka_unit_test_setup_teardown(fn, setup_pg, teardown)
        BOTH(typed_round_trip),
        BOTH(one_backend_statements),
        BOTH(failure_rolls_back),
        BOTH(a_forgotten_statement_refuses_the_flow),
        BOTH(text_not_utf8),
        BOTH(prepared_once),
        BOTH(sent_statements_go_with_the_commit),
        BOTH(a_sent_failure_is_the_flows),
        BOTH(a_check_gates_the_commit),
#undef BOTH
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
