/* test_repo_backends.c: the backends a build has are those CMake chose
 * (option AUTH_POSTGRES): with it a postgres URL opens the PostgreSQL
 * backend; without it repo_open refuses one and the log says why. SQLite
 * is in every build. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cfg.h"
#include "log.h"
#include "repo.h"

/* repo_open() of `url` with stderr (the log) captured into `log`. */
static enum as_err open_logged(const char *url, struct repo **r, char *log,
                               size_t log_len)
{
    struct cfg cfg;
    FILE *tmp = tmpfile();
    int saved;
    size_t n;
    enum as_err err;

    assert_non_null(tmp);
    memset(&cfg, 0, sizeof cfg);
    cfg.database_url = (char *)url;
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    err = repo_open(&cfg, r);
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    rewind(tmp);
    n = fread(log, 1, log_len - 1, tmp);
    log[n] = '\0';
    fclose(tmp);
    return err;
}

static void sqlite_is_always_built(void **state)
{
    struct repo *r = NULL;
    char log[4096];
    (void)state;

    assert_int_equal(open_logged("sqlite::memory:", &r, log, sizeof log),
                     AS_OK);
    assert_string_equal(repo_backend(r), "sqlite");
    repo_close(r);
}

static void postgres_as_the_build_chose(void **state)
{
    struct repo *r = NULL;
    char log[4096];
    /* Nothing listens on port 1: the backend connects lazily, so opening
     * succeeds where it is built and no connection is ever made. */
    enum as_err err = open_logged("postgresql://u@127.0.0.1:1/db", &r, log,
                                  sizeof log);
    (void)state;

#ifdef AUTH_POSTGRES
    assert_int_equal(err, AS_OK);
    assert_string_equal(repo_backend(r), "postgres");
    assert_null(strstr(log, "not built"));
    repo_close(r);
#else
    assert_int_equal(err, AS_ERR_INTERNAL);
    assert_null(r);
    assert_non_null(strstr(log, "\"repo.open_failed\""));
    assert_non_null(strstr(log, "postgres backend not built"));
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sqlite_is_always_built),
        cmocka_unit_test(postgres_as_the_build_chose),
    };

    log_init(LOG_INFO, 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
