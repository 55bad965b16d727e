/* Session cache: freshness, forgetting, and answers while the database
 * is down; plus the work pool it shares the request path with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfg.h"
#include "repo/repo_int.h"
#include "scache.h"
#include "workpool.h"

static int calls;
static enum as_err next_err;
static bool next_live;
static struct scache *forget_during;   /* a revocation heard mid-query */

static enum as_err fake_state(void *impl, const char *sid, int64_t now,
                              struct session_state *out)
{
    (void)impl;
    (void)sid;
    (void)now;
    calls++;
    if (forget_during)
        scache_forget(forget_during, sid);
    if (next_err != AS_OK)
        return next_err;
    out->live = next_live;
    out->role = ROLE_USER;
    return AS_OK;
}

static void fake_close(void *impl)
{
    (void)impl;
}

static const struct repo_ops fake = {
    .name = "fake", .session_state = fake_state, .close = fake_close,
};

static struct repo *fake_repo(void)
{
    struct cfg c = { .cb_failure_threshold = 1000, .cb_open_seconds = 1 };
    struct repo *r = NULL;

    assert_int_equal(repo_wrap(&c, &fake, NULL, &r), AS_OK);
    return r;
}

static const char *S1 = "0190c1d2-0000-7000-8000-000000000001";
static const char *S2 = "0190c1d2-0000-7000-8000-000000000002";
static const char *U1 = "0190c1d2-0000-7000-8000-0000000000aa";

static void test_fresh_answers_are_cached(void **state)
{
    struct repo *r = fake_repo();
    struct scache *c = scache_new(128, 60000);
    struct session_state st;

    (void)state;
    calls = 0;
    next_err = AS_OK;
    next_live = true;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_true(st.live);
    next_live = false;                  /* revoked elsewhere */
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_true(st.live);               /* still within the ttl */
    assert_int_equal(calls, 1);
    scache_forget(c, S1);               /* revoked here: seen at once */
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_false(st.live);
    assert_int_equal(calls, 2);
    scache_free(c);
    repo_close(r);
}

static void test_ttl_zero_always_asks(void **state)
{
    struct repo *r = fake_repo();
    struct scache *c = scache_new(128, 0);
    struct session_state st;

    (void)state;
    calls = 0;
    next_err = AS_OK;
    next_live = true;
    scache_check(c, r, S1, U1, &st);
    scache_check(c, r, S1, U1, &st);
    assert_int_equal(calls, 2);
    scache_free(c);
    repo_close(r);
}

static void test_forget_user_and_database_down(void **state)
{
    struct repo *r = fake_repo();
    struct scache *c = scache_new(128, 0);
    struct session_state st;

    (void)state;
    next_err = AS_OK;
    next_live = true;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    next_err = AS_ERR_UNAVAILABLE;
    /* seen before: answered from the cache whatever its age */
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_true(st.live);
    /* never seen: the database's error */
    assert_int_equal(scache_check(c, r, S2, U1, &st), AS_ERR_UNAVAILABLE);
    scache_forget_user(c, U1);
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_ERR_UNAVAILABLE);
    /* a client error is not an outage: no stale answer */
    next_err = AS_OK;
    scache_check(c, r, S1, U1, &st);
    next_err = AS_ERR_NOT_FOUND;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_ERR_NOT_FOUND);
    assert_int_equal(scache_check(c, r, "x", U1, &st), AS_ERR_NOT_FOUND);
    scache_free(c);
    repo_close(r);
}

/* A revocation heard while the database was being asked may postdate
 * the answer: the answer is used once but not kept. */
static void test_forget_overtaking_a_query_wins(void **state)
{
    struct repo *r = fake_repo();
    struct scache *c = scache_new(64, 60000);
    struct session_state st;

    (void)state;
    calls = 0;
    next_err = AS_OK;
    next_live = true;
    forget_during = c;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_true(st.live);
    forget_during = NULL;
    assert_false(scache_peek(c, S1, &st));        /* not kept */
    next_live = false;
    assert_int_equal(scache_check(c, r, S1, U1, &st), AS_OK);
    assert_int_equal(calls, 2);
    assert_false(st.live);
    assert_true(scache_peek(c, S1, &st));         /* this one is kept */
    scache_forget_all(c);
    assert_false(scache_peek(c, S1, &st));
    scache_free(c);
    repo_close(r);
}

static int ran;

static void job(void *arg)
{
    __atomic_add_fetch(&ran, 1, __ATOMIC_SEQ_CST);
    if (arg)
        usleep(20000);
}

static void test_workpool_bounds(void **state)
{
    struct workpool *p = workpool_new(1, 2);
    int accepted = 0, i;

    (void)state;
    ran = 0;
    for (i = 0; i < 50; i++)
        accepted += workpool_submit(p, job, &ran);
    /* one running and two queued at most while the first sleeps */
    assert_true(accepted >= 2 && accepted < 50);
    workpool_free(p);                   /* runs what was queued */
    assert_int_equal(ran, accepted);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_answers_are_cached),
        cmocka_unit_test(test_ttl_zero_always_asks),
        cmocka_unit_test(test_forget_user_and_database_down),
        cmocka_unit_test(test_forget_overtaking_a_query_wins),
        cmocka_unit_test(test_workpool_bounds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
