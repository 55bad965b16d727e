"""The SQLite file's disk failing under the daemon (full, an I/O error,
the file deleted or replaced):
503 with Retry-After, as for a PostgreSQL server that is down, never 500;
and served again once the disk is back (README.md "Operations")."""
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import Daemon, assert_problem, preload_env, preload_library, \
    assert_lock_refuses_nothing, wait_until

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
    elif how == "WAL only":
        # the writes went on into the deleted WAL; a kill -9 lost them
        for suffix in ("-wal", "-shm"):
            os.unlink(db + suffix)
    else:                               # replaced by another file
        other = os.path.join(data_dir, "other.db")
        with open(other, "wb") as f:
            f.write(b"")
        os.rename(other, db)


@pytest.mark.parametrize("how", ["deleted", "main file only", "WAL only",
                                 "replaced"])
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
    db = sqlite3.connect(os.path.join(data_dir, "auth.db"), timeout=5,
                         isolation_level=None, check_same_thread=False)
    db.execute("BEGIN EXCLUSIVE")
    return db


def _timed_register(d):
    t0 = time.monotonic()
    r = d.register()[0]
    return r, time.monotonic() - t0


LOCK_ENV = {"AUTH_DB_TIMEOUT_MS": "1000", "AUTH_CB_OPEN_SECONDS": "1"}


def test_a_write_lock_held_elsewhere_refuses_no_read():
    """Another process holds the write lock for 3 s, within
    AUTH_DB_TIMEOUT_MS (5 s): the writes wait and then go through, and
    another account's reads are never refused, although the waiting
    writes hold every pooled connection (the readiness ping has its own;
    when it waited for the pool, the prober called the database stalled
    and every request got 503)."""
    d = Daemon(env={"AUTH_DB_TIMEOUT_MS": "5000"}).start()
    try:
        _, _, writer = d.user()
        _, _, victim = d.user()

        def hold():
            holder = _hold_write_lock(d.data_dir)
            time.sleep(3.0)      # the lock's duration: what is tested
            holder.rollback()
            holder.close()
            time.sleep(0.3)      # the writes that waited get through

        assert_lock_refuses_nothing(d, hold, writer["access_token"],
                                    victim["access_token"],
                                    "sqlite lock 3 s")
    finally:
        assert d.stop() == 0


def test_a_write_lock_held_past_the_timeout_refuses_writes_at_once():
    """Another process holds the write lock past AUTH_DB_TIMEOUT_MS (1 s
    here): the writes that meet it wait the second for their 503, and the
    writes after them are 503 at once (README.md "Circuit breaker": not after a
    timeout), while reads go on and the circuit stays closed; /readyz is
    503 until the lock is free, and then everything is served again by
    itself. Before, every write waited its second and /readyz said 200."""
    d = Daemon(env=LOCK_ENV).start()
    try:
        _, _, reader = d.user()
        holder = _hold_write_lock(d.data_dir)
        try:
            # Six writes meet it at once (more than the breaker's
            # threshold of 5; a session's deletion, which hashes nothing
            # first): each waits the second, and those waits must not
            # open the circuit for everyone.
            met = []

            def delete():
                t0 = time.monotonic()
                r = d.request("DELETE", "/api/v1/auth/sessions/"
                              "01a24d8c-f2d0-72f6-bac0-2051f18a85fb",
                              token=reader["access_token"])
                met.append((r, time.monotonic() - t0))

            ts = [threading.Thread(target=delete) for _ in range(6)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            for r, _ in met:
                assert_problem(r, 503, "service_unavailable")
            first = max(t for _, t in met)
            assert first >= 0.9, first
            took = []
            for _ in range(10):
                r, t = _timed_register(d)
                assert_problem(r, 503, "service_unavailable")
                assert r.header("Retry-After"), r
                took.append(round(t, 3))
                rr = d.request("GET", "/api/v1/auth/sessions",
                               token=reader["access_token"])
                assert rr.status == 200, rr
            print("\nsqlite lock: first write %.3f s, then %s s"
                  % (first, took))
            assert max(took) < 0.5, took
            assert wait_until(
                lambda: d.request("GET", "/readyz").status == 503,
                timeout=10)
        finally:
            holder.rollback()
            holder.close()
        assert wait_until(lambda: d.request("GET", "/readyz").status == 200,
                          timeout=10)
        r = d.register()[0]
        assert r.status == 201, r
        d.settled()
        names = [e.get("event") for e in d.logs]
        assert names.count("repo.write_lock_held") == 1, names
        assert names.count("repo.write_lock_free") == 1, names
        assert "repo.circuit" not in names
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


def refused_as_second(where, env, holder):
    """Runs a daemon in `where` with `env` and asserts it exits 1 with
    db.in_use naming `holder`, without serving."""
    second = Daemon("sqlite", data_dir=where, env=env)
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            full[k] = os.environ[k]
    full.update(second.env)
    r = subprocess.run([second.bin], env=full, cwd=where,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 1, r.stderr[-2000:]
    lines = [json.loads(x) for x in r.stderr.decode().splitlines()
             if x.startswith("{")]
    refused = [e for e in lines if e.get("event") == "db.in_use"]
    assert refused and refused[0]["pid"] == holder, lines[-5:]
    assert not any(e.get("event") in ("server.started", "repo.migrated")
                   for e in lines), lines


def test_a_second_daemon_on_one_database_is_refused():
    """One SQLite database takes one daemon (README "Running on
    PostgreSQL and several instances"): a second one would answer from
    its own session cache, for up to AUTH_SESSION_CACHE_SECONDS, a
    session the first had ended. It exits 1 naming the first, by
    whatever name it reaches the file (a link to its folder, a hard
    link, a link to a file the first made); the lock goes with the
    process that held it, even killed, so the next start needs no
    cleaning."""
    a = Daemon("sqlite", env={"AUTH_SESSION_CACHE_SECONDS": "60"}).start()
    _, _, t = a.user()
    alias = a.data_dir.rstrip("/") + "-alias"
    os.symlink(a.data_dir, alias)
    os.link(os.path.join(a.data_dir, "auth.db"),
            os.path.join(a.data_dir, "other.db"))
    for where, env in ((a.data_dir, None), (alias, None),
                       (a.data_dir, {"AUTH_DATABASE_URL": "sqlite:" +
                                     os.path.join(a.data_dir, "other.db")})):
        refused_as_second(where, env, a.proc.pid)
    r = a.request("GET", "/api/v1/auth/verify", token=t["access_token"])
    assert r.status == 200, r               # the first serves on
    a.proc.kill()                           # no clean exit: no cleanup
    a.proc.wait()
    b = Daemon("sqlite", data_dir=a.data_dir).start()
    r = b.request("GET", "/api/v1/auth/verify", token=t["access_token"])
    assert r.status == 200, r
    assert b.stop() == 0
    # a link to a file that does not exist yet: the first start makes it
    # through the link, and a second start on the same link is refused
    c_dir = tempfile.mkdtemp(prefix="link-", dir=os.path.dirname(a.data_dir))
    link = os.path.join(c_dir, "link.db")
    os.symlink(os.path.join(c_dir, "real.db"), link)
    env = {"AUTH_DATABASE_URL": "sqlite:" + link}
    c = Daemon("sqlite", data_dir=c_dir, env=env).start()
    refused_as_second(c_dir, env, c.proc.pid)
    assert c.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another user")
def test_a_database_the_daemons_user_may_not_write_is_named():
    """A database made by root (`user create` run as root before the
    first start) where the service's user runs the daemon: the start
    exits 1 saying which file or folder, whose it is and whose the daemon
    is, where it said only SQLite's "unable to open database file"."""
    top = tempfile.mkdtemp(prefix="perm-", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        data = os.path.join(top, "data")
        os.mkdir(data, 0o755)
        d = Daemon("sqlite", data_dir=data)
        r = d.command("migrate")
        assert r.returncode == 0, r.stderr
        db = os.path.join(data, "auth.db")
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        full.update(d.env)
        for owned, named in ((data, db), (db, data)):
            os.chown(data, 0, 0)
            os.chown(db, 0, 0)
            os.chown(owned, 65534, 65534)   # the other: root's
            try:
                r = subprocess.run([d.bin], env=full, cwd=data,
                                   stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, timeout=60,
                                   user=65534, group=65534)
            except PermissionError:
                pytest.skip("the binary is not reachable by uid 65534")
            assert r.returncode == 1, r.stderr[-2000:]
            lines = [json.loads(x) for x in r.stderr.decode().splitlines()
                     if x.startswith("{")]
            said = [e for e in lines if e.get("event") == "repo.open_failed"
                    and e.get("path") == named]
            assert said and said[0]["owner_uid"] == 0 and \
                said[0]["daemon_uid"] == 65534 and said[0]["hint"], lines
    finally:
        shutil.rmtree(top, ignore_errors=True)
