/* test_core_accounts.c: account changes through the core on the fake
 * repository: the last active admin (demote, deactivate, delete refused
 * and mapped to 409 last_admin; a second admin allows it), and what each
 * change makes the session cache forget: exactly the changed user's
 * cached sessions and row, nobody else's, and nothing on a refusal; an
 * email change carries the run of login failures. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "accounts.h"
#include "cfg.h"
#include "clock.h"
#include "core.h"
#include "fake_repo.h"
#include "scache.h"

#define PW "correct horse battery"

struct fx {
    struct cfg cfg;
    struct core core;
    struct scache *sc;
    struct arena *a;
    char admin[UUID_STR_LEN], other[UUID_STR_LEN];
    struct session s1, s2, o1;          /* two of admin's, one of other's */
};

static void start(struct fx *f, const char *uid, struct session *s)
{
    char refresh[SEC_TOKEN_LEN + 1];

    assert_int_equal(core_session_start(&f->core, uid, -1, NULL, NULL,
                                        NULL, NULL, "192.0.2.1", NULL, s,
                                        refresh), AS_OK);
}

static int setup(void **state)
{
    static struct fx f;

    f = (struct fx){ 0 };
    fake_repo_reset();
    fake_now = clock_ms();              /* scache asks at the real time */
    f.sc = scache_new(256, 3600 * 1000);
    fake_core(&f.core, &f.cfg, f.sc);
    fake_user(f.admin, "root@example.com", ROLE_ADMIN, true, PW, false);
    fake_user(f.other, "ada@example.com", ROLE_USER, true, PW, false);
    start(&f, f.admin, &f.s1);
    start(&f, f.admin, &f.s2);
    start(&f, f.other, &f.o1);
    f.a = arena_new();
    *state = &f;
    return f.a && f.sc ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    scache_free(f->sc);
    arena_free(f->a);
    return 0;
}

/* Fills the cache with every session and both users' rows. */
static void warm(struct fx *f)
{
    struct session_state st;
    struct user u;

    assert_int_equal(scache_check(f->sc, f->core.repo, f->s1.id, f->admin,
                                  &st), AS_OK);
    assert_true(st.live);
    assert_int_equal(scache_check(f->sc, f->core.repo, f->s2.id, f->admin,
                                  &st), AS_OK);
    assert_int_equal(scache_check(f->sc, f->core.repo, f->o1.id, f->other,
                                  &st), AS_OK);
    assert_int_equal(scache_user(f->sc, f->core.repo, f->admin, &u, f->a),
                     AS_OK);
    assert_int_equal(scache_user(f->sc, f->core.repo, f->other, &u, f->a),
                     AS_OK);
}

/* What the cache still holds: bit 0 s1, 1 s2, 2 o1, 3 admin's row, 4
 * other's row. */
static unsigned cached(struct fx *f)
{
    struct session_state st;
    struct user u;

    return (scache_peek(f->sc, f->s1.id, &st) ? 1u : 0u) |
           (scache_peek(f->sc, f->s2.id, &st) ? 2u : 0u) |
           (scache_peek(f->sc, f->o1.id, &st) ? 4u : 0u) |
           (scache_user_peek(f->sc, f->admin, &u, f->a) ? 8u : 0u) |
           (scache_user_peek(f->sc, f->other, &u, f->a) ? 16u : 0u);
}

#define ALL 31u
#define OTHERS (4u | 16u)

static enum as_err admin_patch(struct fx *f, const char *id,
                               struct user_patch *p)
{
    return account_patch(f->core.repo, f->sc, ACCOUNT_ADMIN, id, p,
                         NULL, fake_now, NULL, f->a);
}

static void last_admin_refused_and_mapped(void **state)
{
    struct fx *f = *state;
    struct user_patch demote = { .set = UF_ROLE, .role = ROLE_USER };
    struct user_patch off = { .set = UF_ACTIVE, .is_active = false };
    struct user u;

    warm(f);
    assert_int_equal(admin_patch(f, f->admin, &demote), AS_ERR_LAST_ADMIN);
    assert_int_equal(admin_patch(f, f->admin, &off), AS_ERR_LAST_ADMIN);
    assert_int_equal(account_delete(f->core.repo, f->sc, f->admin, 1000),
                     AS_ERR_LAST_ADMIN);
    assert_int_equal(as_err_http_status(AS_ERR_LAST_ADMIN), 409);
    assert_string_equal(as_err_code(AS_ERR_LAST_ADMIN), "last_admin");
    /* Nothing changed, nothing forgotten. */
    assert_int_equal(cached(f), ALL);
    assert_int_equal(core_user_get(&f->core, f->admin, &u, f->a), AS_OK);
    assert_int_equal(u.role, ROLE_ADMIN);
    assert_true(u.is_active);
    assert_true(fake_repo_session_unrevoked(f->s1.id));
}

static void second_admin_allows_it(void **state)
{
    struct fx *f = *state;
    struct user_patch promote = { .set = UF_ROLE, .role = ROLE_ADMIN };
    struct user_patch demote = { .set = UF_ROLE, .role = ROLE_USER };
    struct user u;

    assert_int_equal(admin_patch(f, f->other, &promote), AS_OK);
    assert_int_equal(admin_patch(f, f->admin, &demote), AS_OK);
    assert_int_equal(core_user_get(&f->core, f->admin, &u, f->a), AS_OK);
    assert_int_equal(u.role, ROLE_USER);
    /* Now `other` is the last one: refused again. */
    assert_int_equal(account_delete(f->core.repo, f->sc, f->other, 1000),
                     AS_ERR_LAST_ADMIN);
    assert_int_equal(admin_patch(f, f->admin, &promote), AS_OK);
    assert_int_equal(account_delete(f->core.repo, f->sc, f->other, 1000),
                     AS_OK);
    assert_int_equal(core_user_get(&f->core, f->other, &u, f->a),
                     AS_ERR_NOT_FOUND);
}

/* Deactivation ends the user's sessions; the cache forgets them and its
 * row at once, and keeps everyone else's. */
static void deactivation_forgets_the_user(void **state)
{
    struct fx *f = *state;
    struct user_patch off = { .set = UF_ACTIVE, .is_active = false };
    struct session_state st;

    warm(f);
    assert_int_equal(admin_patch(f, f->other, &off), AS_OK);
    assert_int_equal(cached(f), ALL & ~OTHERS);
    assert_int_equal(scache_check(f->sc, f->core.repo, f->o1.id, f->other,
                                  &st), AS_OK);
    assert_false(st.live);
    assert_false(fake_repo_session_unrevoked(f->o1.id));
}

/* A demotion changes the role every bearer check answers: forgotten. */
static void demotion_forgets_the_user(void **state)
{
    struct fx *f = *state;
    struct user_patch promote = { .set = UF_ROLE, .role = ROLE_ADMIN };
    struct user_patch demote = { .set = UF_ROLE, .role = ROLE_USER };
    struct session_state st;

    assert_int_equal(admin_patch(f, f->other, &promote), AS_OK);
    warm(f);
    assert_int_equal(admin_patch(f, f->admin, &demote), AS_OK);
    assert_int_equal(cached(f), OTHERS);
    assert_int_equal(scache_check(f->sc, f->core.repo, f->s1.id, f->admin,
                                  &st), AS_OK);
    assert_true(st.live);
    assert_int_equal(st.role, ROLE_USER);
}

/* A password change keeps the changing session, ends the others, and
 * the cache forgets the user's entries (the kept one is read again). */
static void password_change_forgets_the_user(void **state)
{
    struct fx *f = *state;
    struct session_state st;
    struct user u;

    warm(f);
    assert_int_equal(core_user_set_password(&f->core, f->admin,
                                            "another good one", f->s1.id),
                     AS_OK);
    assert_int_equal(cached(f), OTHERS);
    assert_int_equal(scache_check(f->sc, f->core.repo, f->s1.id, f->admin,
                                  &st), AS_OK);
    assert_true(st.live);
    assert_int_equal(scache_check(f->sc, f->core.repo, f->s2.id, f->admin,
                                  &st), AS_OK);
    assert_false(st.live);
    assert_int_equal(core_user_get(&f->core, f->admin, &u, f->a), AS_OK);
    assert_int_equal(pw_verify(u.password_hash, "another good one"), AS_OK);
    /* A user that is gone: nothing to forget, NOT_FOUND. */
    warm(f);
    assert_int_equal(core_user_set_password(&f->core,
                                            "00000000-0000-7000-8000-"
                                            "999999999999",
                                            "another good one", NULL),
                     AS_ERR_NOT_FOUND);
    assert_int_equal(cached(f), ALL);
}

/* A deletion forgets the user (its sessions went with it). */
static void deletion_forgets_the_user(void **state)
{
    struct fx *f = *state;
    struct session_state st;

    warm(f);
    assert_int_equal(account_delete(f->core.repo, f->sc, f->other, 1000),
                     AS_OK);
    assert_int_equal(cached(f), ALL & ~OTHERS);
    assert_int_equal(scache_check(f->sc, f->core.repo, f->o1.id, f->other,
                                  &st), AS_OK);
    assert_false(st.live);
}

/* A change of email carries the run of failures (wrong passwords or
 * codes) to the new address: the count from all addresses, and the
 * changing client's, the higher of old and new; other addresses' counts
 * stay behind. Without it each change started the run afresh: free
 * guesses at the second factor (README "Lockout"). */
static void an_email_change_carries_the_run(void **state)
{
    struct fx *f = *state;
    struct user_patch p = { .set = UF_EMAIL, .email = "ada2@example.com" };
    struct user u;
    int64_t retry = 0;
    int i;

    assert_int_equal(core_user_get(&f->core, f->other, &u, f->a), AS_OK);
    for (i = 0; i < 2; i++)             /* threshold 3: one more locks */
        assert_int_equal(core_password_check(&f->core, &u, "nope nope",
                                             "192.0.2.7", &retry),
                         AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(core_password_check(&f->core, &u, "nope nope",
                                         "198.51.100.9", &retry),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(account_patch(f->core.repo, f->sc, ACCOUNT_SELF,
                                   f->other, &p, "192.0.2.7", fake_now, &u,
                                   f->a), AS_OK);
    assert_string_equal(u.email, "ada2@example.com");
    assert_int_equal(fake_repo_failures("ada2@example.com", "192.0.2.7"), 2);
    assert_int_equal(fake_repo_failures("ada2@example.com", "*"), 3);
    assert_int_equal(fake_repo_failures("ada2@example.com", "198.51.100.9"),
                     0);
    /* The run goes on where it was: the next failure locks. */
    assert_int_equal(core_password_check(&f->core, &u, "nope nope",
                                         "192.0.2.7", &retry),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(core_password_check(&f->core, &u, PW, "192.0.2.7",
                                         &retry), AS_ERR_RATE_LIMITED);
    /* Back again: the higher counts are kept, never lowered. */
    p.email = "ada@example.com";
    assert_int_equal(account_patch(f->core.repo, f->sc, ACCOUNT_SELF,
                                   f->other, &p, "192.0.2.7", fake_now, &u,
                                   f->a), AS_OK);
    assert_int_equal(fake_repo_failures("ada@example.com", "192.0.2.7"), 4);
    assert_int_equal(core_password_check(&f->core, &u, PW, "192.0.2.7",
                                         &retry), AS_ERR_RATE_LIMITED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(last_admin_refused_and_mapped,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(second_admin_allows_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(deactivation_forgets_the_user,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(demotion_forgets_the_user, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(password_change_forgets_the_user,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(deletion_forgets_the_user, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(an_email_change_carries_the_run,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
