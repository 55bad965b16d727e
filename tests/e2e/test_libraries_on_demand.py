"""Libraries opened when used (README.md "Performance"): a start on SQLite
outside systemd maps neither libpq nor libsystemd (nor libcurl, see
test_mail_libcurl.py); a PostgreSQL URL opens libpq, a start by systemd
opens libsystemd; where a library that is needed cannot be opened, the
daemon says which and why in the log and exits non-zero."""
import json
import os
import shutil
import signal
import subprocess

import pytest

import conftest
from conftest import Daemon, mapped, wait_until, without_library
from test_systemd import ACTIVATE, Notifications, activated, get

LIBPQ = "libpq.so.5"
LIBSYSTEMD = "libsystemd.so.0"


def test_a_start_maps_only_what_its_backend_needs(backend, make_daemon):
    d = make_daemon().start()
    assert wait_until(lambda: d.request("GET", "/readyz").status == 200)
    assert mapped(d.proc.pid, "libpq.so") == (backend == "postgres")
    assert not mapped(d.proc.pid, "libsystemd")
    assert d.stop() == 0


@pytest.mark.skipif(not ACTIVATE, reason="systemd-socket-activate missing")
def test_a_start_by_systemd_opens_libsystemd(backend):
    notify = Notifications()
    proc = None
    try:
        proc, lines, (port,) = activated(backend, {}, 1, notify)
        assert wait_until(lambda: get(port, "/healthz")[0] == 200, 30)
        assert wait_until(lambda: notify.count("READY=1"), 30), lines
        assert mapped(proc.pid, "libsystemd")
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        notify.close()


def run_without(soname, backend, extra_env):
    """Runs the daemon where `soname` cannot be opened; returns (exit
    status, its JSON log lines)."""
    wrap_dir = conftest.scratch("auth-e2e-nolib-")
    try:
        wrapper = without_library(soname, wrap_dir)
        d = Daemon(backend)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update(d.env)
        env.update(extra_env)
        r = subprocess.run([wrapper], env=env, cwd=d.data_dir,
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(wrap_dir, ignore_errors=True)
    logs = []
    for line in r.stderr.decode("utf-8", "replace").splitlines():
        try:
            logs.append(json.loads(line))
        except ValueError:
            pass
    return r.returncode, logs


def test_postgres_without_libpq_says_so(backend):
    if backend != "postgres":
        pytest.skip("a PostgreSQL URL is what needs libpq")
    status, logs = run_without(LIBPQ, backend, {})
    assert status != 0
    ev = [e for e in logs if e.get("event") == "db.driver_missing"]
    assert ev and "libpq" in ev[0]["message"], logs


def test_systemd_without_libsystemd_says_so(backend, tmp_path):
    status, logs = run_without(LIBSYSTEMD, backend, {
        "NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert status != 0
    ev = [e for e in logs if e.get("event") == "systemd.unavailable"]
    assert ev and "libsystemd" in ev[0]["error"], logs
    assert not [e for e in logs if e.get("event") == "server.started"]
