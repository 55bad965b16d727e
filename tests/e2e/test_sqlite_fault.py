"""The SQLite file's disk failing under the daemon (full, an I/O error,
the file deleted or replaced):
503 with Retry-After, as for a PostgreSQL server that is down, never 500;
and served again once the disk is back (README.md "Operations")."""
import os
import sqlite3
import threading
import time

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


def _hold_write_lock(data_dir):
    """Another process's open write transaction on the daemon's file, as
    the sqlite3 shell's BEGIN EXCLUSIVE leaves it (in WAL mode readers go
    on; every writer waits)."""
    db = sqlite3.connect(os.path.join(data_dir, "auth.db"), timeout=0,
                         isolation_level=None, check_same_thread=False)
    db.execute("BEGIN EXCLUSIVE")
    return db


def _timed_register(d):
    t0 = time.monotonic()
    r = d.register()[0]
    return r, time.monotonic() - t0


LOCK_ENV = {"AUTH_DB_TIMEOUT_MS": "1000", "AUTH_CB_OPEN_SECONDS": "1"}


def test_a_write_lock_held_by_another_process_opens_the_circuit():
    """README.md "Circuit breaker": a database that cannot take writes is
    503 at once, not after a timeout. Another process holds the write lock:
    /readyz turns 503 by itself (its ping takes the write lock), a write
    that waited the whole AUTH_DB_TIMEOUT_MS opens the circuit, so the
    writes after it are answered at once, except the one probe per open
    period; and the daemon serves again by itself once the lock is freed.
    Before, every write waited the timeout and /readyz said 200."""
    d = Daemon(env=LOCK_ENV).start()
    try:
        assert d.register()[0].status == 201
        assert d.request("GET", "/readyz").status == 200
        holder = _hold_write_lock(d.data_dir)
        try:
            assert wait_until(
                lambda: d.request("GET", "/readyz").status == 503,
                timeout=10)
            took = []
            end = time.monotonic() + 3.5
            while time.monotonic() < end or len(took) < 12:
                r, t = _timed_register(d)
                assert_problem(r, 503, "service_unavailable")
                assert r.header("Retry-After"), r
                took.append(t)
            # Three and a half open periods of 1 s: in each, at most the
            # one probe waits its 1 s timeout (before: every write did).
            slow = [round(t, 3) for t in took if t >= 0.5]
            assert len(slow) <= 4, (len(took), slow)
            assert d.events(lambda e: e.get("event") == "repo.circuit" and
                            e.get("to") == "open")
        finally:
            holder.rollback()
            holder.close()
        assert wait_until(lambda: d.register()[0].status == 201, timeout=30)
        assert wait_until(lambda: d.request("GET", "/readyz").status == 200,
                          timeout=30)
    finally:
        assert d.stop() == 0


def test_short_lock_waits_do_not_open_the_circuit():
    """A write lock held for less than AUTH_DB_TIMEOUT_MS (a CLI command,
    a short tool) is waited out: 20 rounds of a 150 ms hold while writes
    run, every write 201 and the circuit never opens."""
    d = Daemon(env=LOCK_ENV).start()
    try:
        for _ in range(20):
            holder = _hold_write_lock(d.data_dir)
            release = threading.Timer(0.15, holder.rollback)
            release.start()
            try:
                for _ in range(2):
                    r, t = _timed_register(d)
                    assert r.status == 201, r
            finally:
                release.join()
                holder.close()
        assert d.request("GET", "/readyz").status == 200
        d.settled()
        assert not [e for e in d.logs if e.get("event") == "repo.circuit"]
    finally:
        assert d.stop() == 0
