/* test_repo_migrate_read.c: SQLite, a start on a database that has every
 * migration reads schema_migrations once and takes no write lock: it
 * neither waits for nor is refused by another process writing. */
#include "repo.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cfg.h"
#include "migrations.h"

#define DIR_MAX (PATH_MAX - 64)
#define ROUNDS 20

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int64_t raw_count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t n = -1;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* While another connection holds the write lock (BEGIN IMMEDIATE), opening
 * and migrating an up-to-date database succeeds at once, round after
 * round; once the lock is gone, nothing was applied twice. */
static void migrated_start_takes_no_write_lock(void **state)
{
    const char *base = getenv("AUTH_TEST_TMP");
    char dir[DIR_MAX], db[PATH_MAX], url[PATH_MAX + 16];
    struct cfg cfg;
    struct repo *r = NULL;
    sqlite3 *writer = NULL;
    size_t n = 0;
    int i;

    (void)state;
    if (!base || !*base)
        base = "/tmp";
    assert_true(mkdir(base, 0700) == 0 || errno == EEXIST);
    assert_true(snprintf(dir, sizeof dir, "%s/migrate-XXXXXX", base) <
                (int)sizeof dir);
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/auth.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", db);
    memset(&cfg, 0, sizeof cfg);
    cfg.database_url = url;
    cfg.cb_failure_threshold = 3;
    cfg.cb_open_seconds = 60;
    cfg.db_pool_size = 2;
    cfg.db_timeout_ms = 200;      /* a wait for the lock would fail */
    assert_int_equal(repo_open(&cfg, &r), AS_OK);
    assert_int_equal(repo_migrate(r), AS_OK);        /* applies them all */
    repo_close(r);
    migrations_for("sqlite", &n);
    assert_int_equal(sqlite3_open(db, &writer), SQLITE_OK);
    assert_int_equal(sqlite3_exec(writer, "BEGIN IMMEDIATE", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    for (i = 0; i < ROUNDS; i++) {
        r = NULL;
        assert_int_equal(repo_open(&cfg, &r), AS_OK);
        assert_int_equal(repo_migrate(r), AS_OK);
        assert_int_equal(repo_ping(r), AS_OK);
        repo_close(r);
    }
    assert_int_equal(sqlite3_exec(writer, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(raw_count(writer, "SELECT count(*) FROM "
                                       "schema_migrations"),
                     (int64_t)n);
    sqlite3_close(writer);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(migrated_start_takes_no_write_lock),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
