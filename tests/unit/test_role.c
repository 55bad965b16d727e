/* test_role.c: one mapping between enum role and its name, and every
 * module that turns a role into text or back goes through it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "repo/repo_int.h"
#include "role.h"
#include "validate.h"

static void names_and_round_trip(void **state)
{
    enum role r = ROLE_USER;
    (void)state;

    assert_string_equal(role_name(ROLE_USER), "user");
    assert_string_equal(role_name(ROLE_ADMIN), "admin");
    assert_null(role_name((enum role)2));
    assert_null(role_name((enum role)-1));
    assert_true(role_parse("admin", &r));
    assert_int_equal(r, ROLE_ADMIN);
    assert_true(role_parse("user", &r));
    assert_int_equal(r, ROLE_USER);
}

static void parse_is_exact(void **state)
{
    static const char *const bad[] = {
        "", "Admin", "ADMIN", "admin ", " admin", "administrator", "adm",
        "users", "root", "admin\n",
    };
    size_t i;
    (void)state;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum role r = (enum role)7;

        assert_false(role_parse(bad[i], &r));
        assert_int_equal(r, 7);                   /* untouched */
        assert_int_equal(repo_role_parse(bad[i]), ROLE_USER);
    }
    assert_false(role_parse(NULL, &(enum role){ ROLE_USER }));
    assert_int_equal(repo_role_parse(NULL), ROLE_USER);
}

/* The handlers' and the repository's names are the same mapping. */
static void every_user_agrees(void **state)
{
    enum role all[] = { ROLE_USER, ROLE_ADMIN };
    size_t i;
    (void)state;

    for (i = 0; i < sizeof all / sizeof all[0]; i++) {
        enum role r = (enum role)7;

        assert_ptr_equal(repo_role_name(all[i]), role_name(all[i]));
        assert_true(role_parse(role_name(all[i]), &r));
        assert_int_equal(r, all[i]);
        assert_int_equal(repo_role_parse(role_name(all[i])), all[i]);
    }
    assert_null(repo_role_name((enum role)5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_and_round_trip),
        cmocka_unit_test(parse_is_exact),
        cmocka_unit_test(every_user_agrees),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
