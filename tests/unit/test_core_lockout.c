/* test_core_lockout.c: the lockout as the core applies it to logins and
 * password checks (src/core/login.c over src/core/lockout.c), on the fake
 * repository and a fake clock: what is counted before the hash, what a
 * locked caller is refused, what ends a run and what is only refunded. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "cfg.h"
#include "core.h"
#include "fake_repo.h"
#include "password.h"

#define T0 INT64_C(1700000000000)
#define IP "192.0.2.7"
#define PW "correct horse battery"

struct fx {
    struct cfg cfg;
    struct core core;
    struct arena *a;
    char id[UUID_STR_LEN], mfa_id[UUID_STR_LEN], off_id[UUID_STR_LEN];
};

static int setup(void **state)
{
    static struct fx f;

    f = (struct fx){ 0 };
    fake_repo_reset();
    fake_now = T0;
    fake_core(&f.core, &f.cfg, NULL);
    fake_user(f.id, "ada@example.com", ROLE_USER, true, PW, false);
    fake_user(f.mfa_id, "mfa@example.com", ROLE_USER, true, PW, true);
    fake_user(f.off_id, "off@example.com", ROLE_USER, false, PW, false);
    f.a = arena_new();
    *state = &f;
    return f.a ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    arena_free(f->a);
    return 0;
}

static enum as_err login(struct fx *f, const char *email, const char *pw,
                         int64_t *retry)
{
    struct user u;

    return core_login(&f->core, email, email, pw, IP, &u, f->a, retry);
}

/* A password login's session (the second factor off, as the login read
 * it) for `uid`, ending the run of `passed` (NULL: none). */
static enum as_err start(struct fx *f, const char *uid, const char *passed)
{
    struct session s;
    char refresh[SEC_TOKEN_LEN + 1];

    return core_session_start(&f->core, uid, -1, NULL, NULL, NULL, passed, IP,
                              "test", &s, refresh);
}

/* Today's cost, above fake_core()'s: every fake_user() hash is old. */
static const struct pw_params today = { 2, 8192 };
static char *racing_uid;
static const char *racing_pw;

/* Another login of the same instant (`racing_pw` the same password: a
 * new hash of it, as its upgrade stores) or a password change (another
 * password) stores its hash between this login's check and its
 * replacement. */
static void store_theirs(const char *id)
{
    char hash[PW_HASH_MAX];

    fake_repo_before_rehash = NULL;           /* once, and not re-entered */
    if (strcmp(id, racing_uid) != 0 ||
        pw_hash(racing_pw, &today, hash) != AS_OK)
        return;
    if (strcmp(racing_pw, PW) == 0)
        (void)repo_user_rehash(fake_repo(), id, fake_repo_hash(id), hash);
    else
        (void)repo_user_set_password(fake_repo(), id, hash, NULL, fake_now);
}

static enum as_err login_racing(struct fx *f, const char *pw_meanwhile,
                                struct user *u)
{
    int64_t retry = 0;
    struct session s;
    char refresh[SEC_TOKEN_LEN + 1];
    enum as_err err;

    f->core.pw = &today;
    racing_uid = f->id;
    racing_pw = pw_meanwhile;
    fake_repo_before_rehash = store_theirs;
    err = core_login(&f->core, "ada@example.com", "ada@example.com", PW,
                     IP, u, f->a, &retry);
    assert_int_equal(err, AS_OK);
    return core_session_start(&f->core, u->id, u->password_gen, NULL,
                              NULL, NULL, "ada@example.com", IP, "test", &s,
                              refresh);
}

/* A login that checked an old-cost hash and lost its replacement to
 * another login of the same password goes on: the account still has
 * the password it checked (password_gen), and its session ends the
 * run. */
static void lost_rehash_race_still_logs_in(void **state)
{
    struct fx *f = *state;
    struct user u;
    int64_t retry = 0;

    assert_int_equal(login(f, "ada@example.com", "wrong password", &retry),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(login_racing(f, PW, &u), AS_OK);
    assert_false(pw_needs_rehash(fake_repo_hash(f->id), &today));
    assert_int_equal(fake_repo_failures("ada@example.com", IP), 0);
}

/* A password changed meanwhile still refuses the session, and the
 * attempt stays counted. */
static void password_changed_meanwhile_refused(void **state)
{
    struct fx *f = *state;
    struct user u;

    assert_int_equal(login_racing(f, "another password", &u),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(fake_repo_failures("ada@example.com", IP), 1);
}

/* Another instance, at a dearer cost, replaces the hash this login
 * checked (which this instance's cost leaves alone) before the session
 * is stored: a new hash of the same password is no change, and the
 * session ends the run. Comparing hashes refused it 401 and counted it;
 * so too a login finished with a code or a passkey, which has no
 * password to check again. */
static void hash_replaced_elsewhere_still_logs_in(void **state)
{
    struct fx *f = *state;
    struct user u;
    struct session s;
    char refresh[SEC_TOKEN_LEN + 1];
    const char *checked;
    int64_t retry = 0;

    assert_int_equal(core_login(&f->core, "ada@example.com",
                                "ada@example.com", PW, IP, &u, f->a,
                                &retry),
                     AS_OK);
    checked = u.password_hash;
    assert_string_equal(checked, fake_repo_hash(f->id));  /* not replaced */
    racing_uid = f->id;
    racing_pw = PW;
    store_theirs(f->id);                     /* the other instance's */
    assert_string_not_equal(fake_repo_hash(f->id), checked);
    assert_int_equal(core_session_start(&f->core, u.id, u.password_gen,
                                        NULL, NULL, NULL, "ada@example.com",
                                        IP,
                                        "test", &s, refresh),
                     AS_OK);
    assert_int_equal(fake_repo_failures("ada@example.com", IP), 0);
}

/* Each attempt is counted before the user is read and the hash checked:
 * the count the lookup sees already includes it. */
static void counted_before_the_hash(void **state)
{
    struct fx *f = *state;
    unsigned n = 0;
    int64_t retry = -1;

    assert_int_equal(login(f, "ada@example.com", "wrong password", &retry),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(fake_repo_failures_at_lookup(&n), 1);
    assert_int_equal(n, 1);
    assert_int_equal(fake_repo_failures("ada@example.com", IP), 1);
    assert_int_equal(login(f, "ada@example.com", "wrong again", &retry),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(fake_repo_failures_at_lookup(&n), 2);
    /* An unknown email is counted the same way. */
    assert_int_equal(login(f, "nobody@example.com", PW, &retry),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(fake_repo_failures("nobody@example.com", IP), 1);
}

/* Past the threshold a locked caller is refused without a lookup or a
 * check, even with the right password, until the delay has run out;
 * then a right password ends the run. */
static void locked_refused_unchecked_then_released(void **state)
{
    struct fx *f = *state;
    unsigned before = 0, after = 0;
    int64_t retry = 0;
    int i;

    for (i = 0; i < 3; i++)
        assert_int_equal(login(f, "ada@example.com", "wrong password",
                               &retry), AS_ERR_BAD_CREDENTIALS);
    (void)fake_repo_failures_at_lookup(&before);
    assert_int_equal(login(f, "ada@example.com", PW, &retry),
                     AS_ERR_RATE_LIMITED);
    (void)fake_repo_failures_at_lookup(&after);
    assert_int_equal(after, before);            /* nothing was checked */
    assert_true(retry >= 1);
    assert_int_equal(fake_repo_failures("ada@example.com", IP), 4);
    fake_now = T0 + retry * 1000 + 1;
    assert_int_equal(login(f, "ada@example.com", PW, &retry), AS_OK);
    assert_int_equal(start(f, f->id, "ada@example.com"), AS_OK);
    assert_int_equal(fake_repo_failures("ada@example.com", IP), 0);
    assert_int_equal(fake_repo_failures("ada@example.com", "*"), 0);
}

/* A right password leaves its attempt counted until the login's session
 * is stored, which ends the run of failures (in the session's
 * transaction); a session that names no login ends nothing. */
static void the_session_ends_the_run(void **state)
{
    struct fx *f = *state;
    int64_t retry = 0;

    assert_int_equal(login(f, "ada@example.com", "wrong password", &retry),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(login(f, "ada@example.com", "wrong again", &retry),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(login(f, "ada@example.com", PW, &retry), AS_OK);
    assert_int_equal(fake_repo_failures("ada@example.com", IP), 3);
    assert_int_equal(start(f, f->id, NULL), AS_OK);
    assert_int_equal(fake_repo_failures("ada@example.com", IP), 3);
    assert_int_equal(start(f, f->id, "ada@example.com"), AS_OK);
    assert_int_equal(fake_repo_failures("ada@example.com", IP), 0);
    assert_int_equal(fake_repo_failures("ada@example.com", "*"), 0);
}

/* A login whose session finds the second factor turned on since its
 * password was checked goes on to the factor: the right password only
 * takes its attempt back, the run of failures stands. */
static void second_factor_on_meanwhile_refunds(void **state)
{
    struct fx *f = *state;
    int64_t retry = 0;

    assert_int_equal(login(f, "mfa@example.com", "wrong password", &retry),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(login(f, "mfa@example.com", "wrong again", &retry),
                     AS_ERR_BAD_CREDENTIALS);
    /* The login's count, as core_login() took it while the factor was
     * still off; then its session. */
    assert_int_equal(core_attempt_begin(&f->core, "mfa@example.com", IP,
                                        &retry, NULL), AS_OK);
    assert_int_equal(fake_repo_failures("mfa@example.com", IP), 3);
    assert_int_equal(start(f, f->mfa_id, "mfa@example.com"),
                     AS_ERR_MFA_REQUIRED);
    assert_int_equal(fake_repo_failures("mfa@example.com", IP), 2);
    assert_int_equal(fake_repo_failures("mfa@example.com", "*"), 2);
}

/* Past the threshold, once the delay has run out, the right password of
 * an account with the second factor on is checked and taken back with
 * the delay it armed: the code that follows at once is checked too, and
 * so is a password check right after (no 429, no doubling). */
static void a_right_password_leaves_no_delay(void **state)
{
    struct fx *f = *state;
    struct user u;
    int64_t retry = 0;
    int i;

    for (i = 0; i < 3; i++)
        assert_int_equal(login(f, "mfa@example.com", "wrong", &retry),
                         AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(login(f, "mfa@example.com", PW, &retry),
                     AS_ERR_RATE_LIMITED);       /* 2 s now (4 counted) */
    fake_now += 2000;
    assert_int_equal(core_login(&f->core, "mfa@example.com", NULL, PW, IP,
                                &u, f->a, &retry), AS_OK);
    assert_int_equal(fake_repo_failures("mfa@example.com", IP), 4);
    assert_int_equal(core_password_check(&f->core, &u, PW, IP, &retry),
                     AS_OK);
    assert_int_equal(core_password_check(&f->core, &u, PW, IP, &retry),
                     AS_OK);
    assert_int_equal(fake_repo_failures("mfa@example.com", IP), 4);
    /* A wrong one now is checked, and arms the next delay (4 s), which
     * the attempt it refuses doubles, as it counts too (8 s). */
    assert_int_equal(core_password_check(&f->core, &u, "wrong", IP, &retry),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(core_password_check(&f->core, &u, PW, IP, &retry),
                     AS_ERR_RATE_LIMITED);
    assert_int_equal(retry, 8);
}

/* A right password of an account with the second factor on is no
 * complete login: its attempt is refunded, the run of failures stands. */
static void second_factor_refunds_only(void **state)
{
    struct fx *f = *state;
    struct user u;
    int64_t retry = 0;

    assert_int_equal(login(f, "mfa@example.com", "wrong password", &retry),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(login(f, "mfa@example.com", "wrong password", &retry),
                     AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(core_login(&f->core, "mfa@example.com", NULL, PW, IP,
                                &u, f->a, &retry), AS_OK);
    assert_true(u.mfa_enabled);
    assert_int_equal(fake_repo_failures("mfa@example.com", IP), 2);
    assert_int_equal(fake_repo_failures("mfa@example.com", "*"), 2);
    /* The same through a password check (a /users/me change). */
    assert_int_equal(core_password_check(&f->core, &u, PW, IP, &retry),
                     AS_OK);
    assert_int_equal(fake_repo_failures("mfa@example.com", IP), 2);
}

/* A disabled account's right password is refused and stays counted. */
static void disabled_stays_counted(void **state)
{
    struct fx *f = *state;
    int64_t retry = 0;

    assert_int_equal(login(f, "off@example.com", PW, &retry),
                     AS_ERR_DISABLED);
    assert_int_equal(fake_repo_failures("off@example.com", IP), 1);
}

/* core_password_check: counted first, a wrong one stays, locked ones are
 * refused without a check, a right one ends the run. */
static void password_check_counts(void **state)
{
    struct fx *f = *state;
    struct user u;
    int64_t retry = 0;

    assert_int_equal(core_user_get(&f->core, f->id, &u, f->a), AS_OK);
    assert_int_equal(core_password_check(&f->core, &u, "nope nope", IP,
                                         &retry), AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(fake_repo_failures(u.email, IP), 1);
    /* A right password takes its own attempt back, the run stands (the
     * second factor off as well: README "Second factor"). */
    assert_int_equal(core_password_check(&f->core, &u, PW, IP, &retry),
                     AS_OK);
    assert_int_equal(fake_repo_failures(u.email, IP), 1);
    assert_int_equal(core_password_check(&f->core, &u, "nope 1", IP,
                                         &retry), AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(core_password_check(&f->core, &u, "nope 2", IP,
                                         &retry), AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(core_password_check(&f->core, &u, PW, IP, &retry),
                     AS_ERR_RATE_LIMITED);
    assert_int_equal(fake_repo_failures(u.email, IP), 4);
    /* An admin's unlock lifts it at once. */
    assert_int_equal(core_user_unlock(&f->core, f->id, &u, f->a), AS_OK);
    assert_int_equal(core_password_check(&f->core, &u, PW, IP, &retry),
                     AS_OK);
}

/* A login name that is not an email is counted and locked like an
 * unknown email, under one key for its spellings (trimmed, ASCII in
 * lower case), and costs no lookup and no hash: no account has it. */
static void not_an_email_is_locked_unhashed(void **state)
{
    struct fx *f = *state;
    static const char *const spellings[] = { " Ädam@Example", "Ädam@EXAMPLE",
                                             "ädam@example", "Ädam@example\t" };
    struct user u;
    unsigned lookups = 0;
    int64_t retry = 0;
    int i;

    for (i = 0; i < 4; i++)      /* 0, 1 and 3 are one name; 2 is not */
        if (i != 2)
            assert_int_equal(core_login(&f->core, NULL, spellings[i], PW,
                                        IP, &u, f->a, &retry),
                             AS_ERR_BAD_CREDENTIALS);
    /* "ä" is not "Ä" (not ASCII): a key of its own, not yet locked */
    assert_int_equal(core_login(&f->core, NULL, spellings[2], PW, IP, &u,
                                f->a, &retry), AS_ERR_BAD_CREDENTIALS);
    assert_int_equal(core_login(&f->core, NULL, spellings[0], PW, IP, &u,
                                f->a, &retry), AS_ERR_RATE_LIMITED);
    assert_true(retry >= 1);
    assert_int_equal(fake_repo_failures_at_lookup(&lookups), -1);
    assert_int_equal(lookups, 0);                 /* never looked up */
    /* another address is not locked by it */
    assert_int_equal(core_login(&f->core, NULL, spellings[0], PW,
                                "198.51.100.9", &u, f->a, &retry),
                     AS_ERR_BAD_CREDENTIALS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(lost_rehash_race_still_logs_in,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(password_changed_meanwhile_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            hash_replaced_elsewhere_still_logs_in, setup, teardown),
        cmocka_unit_test_setup_teardown(counted_before_the_hash, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            locked_refused_unchecked_then_released, setup, teardown),
        cmocka_unit_test_setup_teardown(the_session_ends_the_run, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(second_factor_on_meanwhile_refunds,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_right_password_leaves_no_delay,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(second_factor_refunds_only, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(disabled_stays_counted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(password_check_counts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(not_an_email_is_locked_unhashed,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
