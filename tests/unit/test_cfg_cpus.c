/* test_cfg_cpus.c: AUTH_THREADS and AUTH_HASH_WORKERS default to the CPUs
 * the process may run on (its affinity mask), not every online core. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sched.h>
#include <unistd.h>

#include "cfg.h"

static char why[512];

static void defaults_follow_the_affinity_mask(void **state)
{
    char *env[] = { NULL };
    cpu_set_t all, one;
    struct cfg c;
    int first = -1, i;

    (void)state;
    assert_int_equal(sched_getaffinity(0, sizeof all, &all), 0);
    assert_true(cfg_load_from(&c, NULL, env, why, sizeof why));
    assert_int_equal(c.threads, (unsigned)CPU_COUNT(&all));
    assert_int_equal(c.hash_workers, (unsigned)CPU_COUNT(&all));
    cfg_cleanup(&c);
    /* Pinned to one CPU (as by taskset), whatever the machine has. */
    for (i = 0; i < CPU_SETSIZE && first < 0; i++)
        if (CPU_ISSET(i, &all))
            first = i;
    assert_true(first >= 0);
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    assert_true(cfg_load_from(&c, NULL, env, why, sizeof why));
    assert_int_equal(c.threads, 1);
    assert_int_equal(c.hash_workers, 1);
    cfg_cleanup(&c);
    /* Set explicitly, the values stand. */
    {
        char *set[] = { "AUTH_THREADS=3", "AUTH_HASH_WORKERS=5", NULL };

        assert_true(cfg_load_from(&c, NULL, set, why, sizeof why));
        assert_int_equal(c.threads, 3);
        assert_int_equal(c.hash_workers, 5);
        cfg_cleanup(&c);
    }
    assert_int_equal(sched_setaffinity(0, sizeof all, &all), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_follow_the_affinity_mask),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
