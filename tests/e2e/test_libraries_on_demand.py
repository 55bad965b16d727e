"""Libraries opened when used (README.md "Performance"): a start on SQLite
outside systemd maps neither libpq nor libsystemd (nor libcurl, see
test_mail_libcurl.py), and no start maps libqrencode or libcbor, nor
libjwt under ES256 (the default); a PostgreSQL URL opens libpq, a start
by systemd opens libsystemd, AUTH_JWT_ALG=HS256 libjwt, the first TOTP
setup libqrencode and the first passkey ceremony libcbor.
Where a library needed at start cannot be opened, the daemon says which
and why in the log and exits non-zero; where one needed by a request
cannot, that request is a 500 problem, the log says why, and the rest
is served."""
import contextlib
import json
import os
import shutil
import signal
import subprocess

import jwt as pyjwt
import pytest

import conftest
from conftest import (Daemon, assert_problem, free_port, mapped, wait_until,
                      without_library)
from softauthn import Authenticator
from test_systemd import ACTIVATE, Notifications, activated, get

LIBPQ = "libpq.so.5"
LIBSYSTEMD = "libsystemd.so.0"
LIBQRENCODE = "libqrencode.so.4"
LIBCBOR = "libcbor.so.0.8"
LIBJWT = "libjwt.so.0"
HS256 = {"AUTH_JWT_ALG": "HS256", "AUTH_JWT_SECRET": "h" * 48}
SETUP = "/api/v1/auth/mfa/totp/setup"
REG_OPT = "/api/v1/auth/passkeys/register/options"
REG = "/api/v1/auth/passkeys/register"


def test_a_start_maps_only_what_its_backend_needs(backend, make_daemon):
    d = make_daemon().start()
    assert wait_until(lambda: d.request("GET", "/readyz").status == 200)
    assert mapped(d.proc.pid, "libpq.so") == (backend == "postgres")
    assert not mapped(d.proc.pid, "libsystemd")
    assert not mapped(d.proc.pid, "libqrencode")
    assert not mapped(d.proc.pid, "libcbor")
    assert not mapped(d.proc.pid, "libjwt")
    assert d.stop() == 0


def test_hs256_opens_libjwt_and_its_tokens_verify(backend, make_daemon):
    """PyJWT checks a token libjwt signed; the daemon checks it too."""
    d = make_daemon(HS256).start()
    assert mapped(d.proc.pid, "libjwt")
    _, _, t = d.user()
    claims = pyjwt.decode(t["access_token"], HS256["AUTH_JWT_SECRET"],
                          algorithms=["HS256"], audience="auth-serve")
    assert claims["sub"]
    r = d.request("GET", "/api/v1/auth/verify",
                  headers={"Authorization": "Bearer " + t["access_token"]})
    assert r.status == 200, r
    assert d.stop() == 0


def test_hs256_without_libjwt_says_so(backend):
    status, logs = run_without(LIBJWT, backend, HS256)
    assert status != 0
    ev = [e for e in logs if e.get("event") == "keys.invalid"]
    assert ev and "libjwt" in ev[0]["message"], logs
    assert not [e for e in logs if e.get("event") == "server.started"]


@contextlib.contextmanager
def started_without(soname, d):
    """Daemon `d` started where `soname` cannot be opened; stopped (exit
    status 0) after the block."""
    wrap_dir = conftest.scratch("auth-e2e-nolib-")
    try:
        d.bin = without_library(soname, wrap_dir)
        yield d.start()
    finally:
        assert d.stop() == 0
        shutil.rmtree(wrap_dir, ignore_errors=True)


def test_es256_without_libjwt_serves(backend):
    with started_without(LIBJWT, Daemon(backend)) as d:
        _, _, t = d.user()
        r = d.request("GET", "/api/v1/users/me", token=t["access_token"])
        assert r.status == 200, r


def passkey_daemon(backend):
    """A daemon whose RP ID and origin a software authenticator uses."""
    port = free_port()
    d = Daemon(backend, env={
        "AUTH_PORT": str(port), "AUTH_WEBAUTHN_RP_ID": "localhost",
        "AUTH_WEBAUTHN_ORIGINS": "http://localhost:%d" % port,
        "AUTH_RATE_LIMIT_PER_MINUTE": "0"})
    d.origin = "http://localhost:%d" % port
    return d


def setup_totp(d, password, token):
    return d.request("POST", SETUP, {"current_password": password},
                     token=token)


def register_passkey(d, token):
    r = d.request("POST", REG_OPT, {}, token=token)
    assert r.status == 200, r
    return d.request("POST", REG, {"credential": Authenticator().register(
        r.json, d.origin)}, token=token)


def test_a_totp_setup_and_a_passkey_open_their_libraries(backend):
    d = passkey_daemon(backend).start()
    try:
        _, password, t = d.user()
        token = t["access_token"]
        assert not mapped(d.proc.pid, "libqrencode")
        r = setup_totp(d, password, token)
        assert r.status == 200, r
        assert r.json["qr_svg"].startswith("<svg")
        assert mapped(d.proc.pid, "libqrencode")
        assert not mapped(d.proc.pid, "libcbor")
        r = register_passkey(d, token)
        assert r.status == 201, r
        assert mapped(d.proc.pid, "libcbor")
    finally:
        assert d.stop() == 0


def test_without_libqrencode_or_libcbor_those_requests_fail_alone(backend):
    """The daemon starts and serves; a TOTP setup (without libqrencode)
    and a passkey registration (without libcbor) are 500 problems, each
    library's absence logged once with the loader's reason."""
    for soname, event in ((LIBQRENCODE, "mfa.qr_unavailable"),
                          (LIBCBOR, "passkeys.unavailable")):
        with started_without(soname, passkey_daemon(backend)) as d:
            _, password, t = d.user()
            token = t["access_token"]
            for _ in range(2):
                if soname == LIBQRENCODE:
                    r = setup_totp(d, password, token)
                else:
                    r = register_passkey(d, token)
                assert_problem(r, 500)
            ev = d.events(lambda e: e.get("event") == event)
            assert ev and soname.split(".")[0] in ev[0]["error"], d.lines
            r = d.request("GET", "/api/v1/users/me", token=token)
            assert r.status == 200, r


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


def test_gnutls_is_left_to_its_first_caller():
    """libmicrohttpd's GnuTLS is not initialised at start (README
    "Performance", "Start-up"): the dynamic loader's own account of a
    start binds GnuTLS's skip question and libmicrohttpd's init and deinit
    calls to the executable (src/gnutlsinit.c), not to GnuTLS."""
    env = dict(os.environ, LD_DEBUG="bindings")
    r = subprocess.run([conftest.BIN, "--help"], env=env, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    exe = os.path.realpath(conftest.BIN)
    bound = {}
    for line in r.stderr.splitlines():
        if "binding file " not in line or "normal symbol `" not in line:
            continue
        frm = line.split("binding file ", 1)[1].split(" [", 1)[0]
        to = line.split(" to ", 1)[1].split(" [", 1)[0]
        sym = line.split("normal symbol `", 1)[1].split("'", 1)[0]
        bound[(os.path.basename(frm).split(".so")[0], sym)] = \
            os.path.realpath(to)
    if not any(k[0] == "libgnutls" for k in bound):
        pytest.skip("this libmicrohttpd does not load GnuTLS")
    want = [("libgnutls", "_gnutls_global_init_skip"),
            ("libmicrohttpd", "gnutls_global_init"),
            ("libmicrohttpd", "gnutls_global_deinit")]
    assert all(bound.get(k) == exe for k in want), \
        {"%s -> %s" % k: bound.get(k) for k in want}
