/* The user-row cache beside the session cache (/api/v1/users/me): rows
 * are served within the ttl, and every change made on this instance
 * (account_patch of any field, account_delete, scache_forget_user, a
 * revoked session's scache_forget) is seen at once, including a change
 * landing while a read is under way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "accounts.h"
#include "cfg.h"
#include "repo/repo_int.h"
#include "scache.h"

static const char *U1 = "0190c1d2-0000-7000-8000-0000000000aa";
static const char *S1 = "0190c1d2-0000-7000-8000-000000000001";

static int reads;
static char name[64] = "Ada";
static bool active = true;
static struct scache *cache;
/* Runs inside the database read, after the row was taken. */
static void (*during_read)(void);

static void fill(struct user *out, const char *id)
{
    memset(out, 0, sizeof *out);
    strcpy(out->id, id);
    out->email = "ada@example.com";
    out->full_name = name;
    out->password_hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA";
    out->role = ROLE_USER;
    out->is_active = active;
    out->created_at = 1000;
    out->updated_at = 2000;
}

static enum as_err fake_user(void *impl, const char *id, struct user *out,
                             struct arena *a)
{
    (void)impl;
    (void)a;
    reads++;
    fill(out, id);
    if (during_read)
        during_read();
    return AS_OK;
}

static enum as_err fake_patch(void *impl, const char *id,
                              const struct user_patch *p, int64_t now,
                              struct user *out, struct arena *a)
{
    (void)impl;
    (void)now;
    (void)a;
    if (p->set & UF_FULL_NAME)
        snprintf(name, sizeof name, "%s", p->full_name);
    if (p->set & UF_ACTIVE)
        active = p->is_active;
    if (out)
        fill(out, id);
    return AS_OK;
}

static enum as_err fake_delete(void *impl, const char *id, int64_t now)
{
    (void)impl;
    (void)id;
    (void)now;
    return AS_OK;
}

static enum as_err fake_state(void *impl, const char *sid, int64_t now,
                              struct session_state *out)
{
    (void)impl;
    (void)sid;
    (void)now;
    memset(out, 0, sizeof *out);
    out->live = true;
    return AS_OK;
}

static void fake_close(void *impl)
{
    (void)impl;
}

static const struct repo_ops fake = {
    .name = "fake", .user_by_id = fake_user, .user_patch = fake_patch,
    .user_delete = fake_delete, .session_state = fake_state,
    .close = fake_close,
};

static struct repo *fake_repo(void)
{
    struct cfg c = { .cb_failure_threshold = 1000, .cb_open_seconds = 1 };
    struct repo *r = NULL;

    assert_int_equal(repo_wrap(&c, &fake, NULL, &r), AS_OK);
    return r;
}

static int setup(void **state)
{
    (void)state;
    reads = 0;
    strcpy(name, "Ada");
    active = true;
    during_read = NULL;
    cache = scache_new(1024, 60000);
    return cache ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    scache_free(cache);
    return 0;
}

/* The name the cache (or, on a miss, the repository) gives now. */
static const char *name_now(struct repo *r, struct arena *a)
{
    struct user u;

    assert_int_equal(scache_user(cache, r, U1, &u, a), AS_OK);
    assert_null(u.password_hash);         /* never kept, never handed out */
    return u.full_name;
}

static void test_rows_cached_within_ttl(void **state)
{
    struct repo *r = fake_repo();
    struct arena *a = arena_new();
    struct user u;

    (void)state;
    assert_false(scache_user_peek(cache, U1, &u, a));
    assert_string_equal(name_now(r, a), "Ada");
    strcpy(name, "Changed elsewhere");    /* another instance wrote it */
    assert_string_equal(name_now(r, a), "Ada");
    assert_int_equal(reads, 1);
    assert_true(scache_user_peek(cache, U1, &u, a));
    assert_string_equal(u.email, "ada@example.com");
    assert_string_equal(u.id, U1);
    assert_int_equal(u.updated_at, 2000);
    arena_free(a);
    repo_close(r);
}

/* A change of any field through account_patch, here the full name
 * alone, is seen at once; so is a deletion. */
static void test_account_changes_seen_at_once(void **state)
{
    struct repo *r = fake_repo();
    struct arena *a = arena_new();
    struct user_patch p = { .set = UF_FULL_NAME, .full_name = "Lovelace" };
    struct user u;

    (void)state;
    assert_string_equal(name_now(r, a), "Ada");
    assert_int_equal(account_patch(r, cache, ACCOUNT_SELF, U1, &p, NULL, 5000,
                                   NULL, a), AS_OK);
    assert_false(scache_user_peek(cache, U1, &u, a));
    assert_string_equal(name_now(r, a), "Lovelace");
    assert_int_equal(account_delete(r, cache, U1, 1000), AS_OK);
    assert_false(scache_user_peek(cache, U1, &u, a));
    arena_free(a);
    repo_close(r);
}

/* scache_forget_user drops the row; so does forgetting a cached session
 * of the user. */
static void test_forgets_drop_the_row(void **state)
{
    struct repo *r = fake_repo();
    struct arena *a = arena_new();
    struct session_state st;
    struct user u;

    (void)state;
    assert_string_equal(name_now(r, a), "Ada");
    scache_forget_user(cache, U1);
    assert_false(scache_user_peek(cache, U1, &u, a));
    assert_string_equal(name_now(r, a), "Ada");
    assert_int_equal(scache_check(cache, r, S1, U1, &st), AS_OK);
    scache_forget(cache, S1);
    assert_false(scache_user_peek(cache, U1, &u, a));
    assert_int_equal(reads, 2);
    arena_free(a);
    repo_close(r);
}

static struct repo *race_repo;

static void deactivate_now(void)
{
    struct user_patch p = { .set = UF_ACTIVE, .is_active = false };
    struct arena *a = arena_new();

    during_read = NULL;
    assert_int_equal(account_patch(race_repo, cache, ACCOUNT_ADMIN, U1, &p,
                                   NULL, 6000, NULL, a), AS_OK);
    arena_free(a);
}

/* A row read before a change and stored after it would be stale: it is
 * not stored, and the next read sees the change. Many rounds. */
static void test_change_during_read_not_cached(void **state)
{
    struct arena *a = arena_new();
    struct user u;
    int round;

    (void)state;
    race_repo = fake_repo();
    for (round = 0; round < 200; round++) {
        active = true;
        scache_forget_user(cache, U1);
        during_read = deactivate_now;
        assert_int_equal(scache_user(cache, race_repo, U1, &u, a), AS_OK);
        assert_true(u.is_active);         /* the read predates the change */
        assert_false(scache_user_peek(cache, U1, &u, a));
        assert_int_equal(scache_user(cache, race_repo, U1, &u, a), AS_OK);
        assert_false(u.is_active);
    }
    arena_free(a);
    repo_close(race_repo);
}

static void test_ttl_zero_never_caches(void **state)
{
    struct repo *r = fake_repo();
    struct arena *a = arena_new();
    struct scache *c = scache_new(1024, 0);
    struct user u;

    (void)state;
    assert_int_equal(scache_user(c, r, U1, &u, a), AS_OK);
    assert_int_equal(scache_user(c, r, U1, &u, a), AS_OK);
    assert_false(scache_user_peek(c, U1, &u, a));
    assert_int_equal(reads, 2);
    scache_free(c);
    arena_free(a);
    repo_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rows_cached_within_ttl, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_account_changes_seen_at_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_forgets_drop_the_row, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_change_during_read_not_cached,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_zero_never_caches, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
