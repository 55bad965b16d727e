"""The SQLite file's disk failing under the daemon (full, an I/O error,
the file deleted or replaced):
503 with Retry-After, as for a PostgreSQL server that is down, never 500;
and served again once the disk is back (README.md "Operations")."""
import os

import pytest

from conftest import Daemon, assert_problem, preload_env, preload_library, \
    wait_until

# While the file SHIM_FULL names exists, every statement that writes
# fails as SQLite fails on a full disk.
FULL_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct sqlite3_stmt sqlite3_stmt;
const char *sqlite3_sql(sqlite3_stmt *);
int sqlite3_stmt_readonly(sqlite3_stmt *);

int sqlite3_step(sqlite3_stmt *st)
{
    int (*real)(sqlite3_stmt *) =
        (int (*)(sqlite3_stmt *))dlsym(RTLD_NEXT, "sqlite3_step");
    const char *sql = sqlite3_sql(st), *flag = getenv("SHIM_FULL");

    if (flag && access(flag, F_OK) == 0 && !sqlite3_stmt_readonly(st) &&
        sql && strncmp(sql, "BEGIN", 5) != 0 &&
        strncmp(sql, "COMMIT", 6) != 0 && strncmp(sql, "ROLLBACK", 8) != 0)
        return 13;                                  /* SQLITE_FULL */
    return real(st);
}
"""


def test_a_full_disk_is_503_not_500():
    lib, work = preload_library(FULL_SHIM, "full-shim-")
    flag = os.path.join(work, "full")
    d = Daemon(env=dict(preload_env(lib), SHIM_FULL=flag)).start()
    try:
        assert d.register()[0].status == 201
        open(flag, "w").close()
        for _ in range(3):
            r = d.register()[0]
            assert_problem(r, 503, "service_unavailable")
            assert r.header("Retry-After"), r
        assert any(e.get("event") == "repo.db_error" and e.get("code") == 13
                   for e in d.logs)
        os.unlink(flag)
        assert wait_until(lambda: d.register()[0].status == 201, timeout=30)
    finally:
        assert d.stop() == 0


def _remove(data_dir, how):
    db = os.path.join(data_dir, "auth.db")
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.unlink(db + suffix)
    elif how == "main file only":
        os.unlink(db)
    else:                               # replaced by another file
        other = os.path.join(data_dir, "other.db")
        with open(other, "wb") as f:
            f.write(b"")
        os.rename(other, db)


@pytest.mark.parametrize("how", ["deleted", "main file only", "replaced"])
def test_a_database_file_gone_under_the_daemon_is_503(how):
    """The file deleted or replaced while the daemon runs: writes would
    land on the old inode, lost at the next start, while every answer
    said 201. They are 503 with Retry-After instead, /readyz is 503, and
    one repo.db_error line says why."""
    d = Daemon().start()
    try:
        assert d.register()[0].status == 201
        _remove(d.data_dir, how)
        r = d.register()[0]
        assert_problem(r, 503, "service_unavailable")
        assert r.header("Retry-After"), r
        assert wait_until(lambda: d.request("GET", "/readyz").status == 503,
                          timeout=10)
        assert d.events(lambda e: e.get("event") == "repo.db_error" and
                        "deleted or replaced" in e.get("message", ""))
    finally:
        assert d.stop() == 0
