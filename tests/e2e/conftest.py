"""End-to-end harness: starts the real auth-serve on a free loopback port
with a fresh data folder, and speaks HTTP to it.

Environment:
  AUTH_E2E_BIN       the daemon binary (default: build/auth-serve)
  AUTH_E2E_BACKENDS  comma-separated: sqlite, postgres (default: sqlite)
  AUTH_E2E_PG_URL    admin URL of a throwaway PostgreSQL (for postgres)
"""
import collections
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import weakref

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BIN = os.environ.get("AUTH_E2E_BIN", os.path.join(ROOT, "build",
                                                  "auth-serve"))
BACKENDS = [b for b in os.environ.get("AUTH_E2E_BACKENDS",
                                      "sqlite").split(",") if b]
PG_URL = os.environ.get("AUTH_E2E_PG_URL")
START_DEADLINE = 30.0

# Every folder a test makes (data folders, wrappers, shared key folders)
# goes under one folder per pytest run, removed when the run passes and
# kept (its path printed) when it fails, so that a run leaves nothing in
# /tmp behind but what explains a failure.
# Under pytest-xdist (tests/run.sh) each worker's folder is inside the
# controller's, which names the whole run's.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
_PARENT = os.environ.get("AUTH_E2E_RUN_TMP") if _WORKER else None
if _PARENT:
    RUN_TMP = tempfile.mkdtemp(prefix=_WORKER + "-", dir=_PARENT)
else:
    RUN_TMP = tempfile.mkdtemp(prefix="auth-e2e-run-")
    os.environ["AUTH_E2E_RUN_TMP"] = RUN_TMP


def scratch(prefix):
    """A new folder under this run's folder (removed when the run passes)."""
    return tempfile.mkdtemp(prefix=prefix, dir=RUN_TMP)


# Every daemon started in this process, so that a failed test's report
# carries the last log lines of those it used (a 503's cause is in them).
_STARTED = weakref.WeakSet()
LOG_TAIL = 40


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    t0 = getattr(item, "_auth_t0", None)
    for d in list(_STARTED):
        if d.proc is None or (t0 is not None and d.proc.poll() is not None
                              and d.started_at < t0):
            continue                  # ended before this test began
        with d._lock:
            tail = d.lines[-LOG_TAIL:]
        rep.sections.append(("auth-serve on port %s, last %d log lines"
                             % (d.port, len(tail)), "\n".join(tail)))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item._auth_t0 = time.monotonic()


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0:
        shutil.rmtree(RUN_TMP, ignore_errors=True)
    elif not _PARENT:
        print("\ne2e data folders kept in %s" % RUN_TMP)


# Cheap hashing for speed; tests that measure hashing set their own.
FAST = {
    "AUTH_ARGON2_MEMORY_KIB": "8192",
    "AUTH_ARGON2_ITERATIONS": "1",
    "AUTH_RATE_LIMIT_PER_MINUTE": "0",
    "AUTH_LOG_LEVEL": "debug",
}


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


class _Psql:
    """One psql session on the test cluster for the whole run: a fresh
    database per daemon cost a psql start and a WAL-logged copy of
    template1 (about 165 ms, some 220 times a run); through one session
    and as a file copy (PostgreSQL 15; the cluster runs without fsync)
    it costs about 20 ms."""

    def __init__(self, url):
        self.proc = subprocess.Popen(
            ["psql", url, "-qXAt", "-v", "ON_ERROR_STOP=1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lock = threading.Lock()
        self.n = 0
        version = int(self.run("SHOW server_version_num")[0])
        self.strategy = " STRATEGY FILE_COPY" if version >= 150000 else ""

    def run(self, sql):
        """Runs `sql`; its output lines (a dead session raises)."""
        with self.lock:
            self.n += 1
            mark = "psql-done-%d" % self.n
            self.proc.stdin.write("%s;\n\\echo %s\n" % (sql, mark))
            self.proc.stdin.flush()
            out = []
            for line in self.proc.stdout:
                if line.strip() == mark:
                    return out
                out.append(line.strip())
            raise RuntimeError("psql ended: %r" % out)


_psql = None


def pg_database(admin_url):
    """Creates a fresh database on the test cluster; returns its URL."""
    global _psql
    name = "t_" + secrets.token_hex(6)
    if _psql is None or _psql.proc.poll() is not None:
        _psql = _Psql(admin_url)
    _psql.run("CREATE DATABASE %s%s" % (name, _psql.strategy))
    u = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name,
                                    u.query, ""))


class Daemon:
    """One auth-serve process. Its stderr (JSON logs) is kept in .logs."""

    def __init__(self, backend="sqlite", env=None, data_dir=None,
                 database_url=None):
        self.backend = backend
        self.data_dir = data_dir or scratch("auth-e2e-")
        self.env = dict(FAST)
        self.env.update({"AUTH_HOST": "127.0.0.1", "AUTH_PORT": "0",
                         "AUTH_DATA_DIR": self.data_dir})
        if database_url:
            self.env["AUTH_DATABASE_URL"] = database_url
        elif backend == "postgres":
            if not PG_URL:
                pytest.skip("AUTH_E2E_PG_URL is not set")
            self.env["AUTH_DATABASE_URL"] = pg_database(PG_URL)
        if self.env.get("AUTH_DATABASE_URL", "").startswith("postgres"):
            # keys live in the database, sealed with this (README.md)
            self.env["AUTH_KEYS_SECRET"] = "e2e-keys-secret-" + "k" * 32
        self.env.update(env or {})
        self.bin = BIN                  # or a wrapper (without_library)
        self.proc = None
        self._thread = None
        self.port = None
        self.started_at = 0.0
        self.lines = []
        self._lock = threading.Lock()

    @property
    def logs(self):
        with self._lock:
            out = []
            for line in self.lines:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    out.append({"raw": line})
            return out

    def events(self, match, timeout=10.0):
        """The logged events for which match(event) is true, once there is
        at least one (or the deadline has passed): the log is read by
        another thread, and may lag the answer that followed a line."""
        def found():
            return [e for e in self.logs if match(e)]
        return wait_until(found, timeout)

    def settled(self, timeout=10.0):
        """Returns once every line logged before the call has been read:
        a /healthz request's access line is written after it, and the
        log is one pipe, read in order. For counts of events."""
        rid = "settled-" + secrets.token_hex(6)
        r = self.request("GET", "/healthz", headers={"X-Request-ID": rid})
        assert r.status == 200, r
        assert wait_until(lambda: any(e.get("request_id") == rid
                                      for e in self.logs), timeout), rid

    def _reader(self, proc, started):
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.lines.append(line)
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "server.started":
                self.port = ev["port"]
                started.set()
        started.set()

    def command(self, *args, stdin=None, env=None):
        """Runs `auth-serve ARGS` with this daemon's configuration."""
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        full.update(self.env)
        full.update(env or {})
        return subprocess.run([BIN] + list(args), input=stdin, env=full,
                              cwd=self.data_dir, capture_output=True,
                              timeout=120)

    def start(self):
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                full[k] = os.environ[k]
        full.update(self.env)
        self.lines = []
        self.port = None
        self.started_at = time.monotonic()
        _STARTED.add(self)
        started = threading.Event()     # this start's own: no stale reader
        self.proc = subprocess.Popen([self.bin], env=full, cwd=self.data_dir,
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self._thread = threading.Thread(target=self._reader,
                                        args=(self.proc, started),
                                        daemon=True)
        self._thread.start()
        if not started.wait(START_DEADLINE) or self.port is None:
            self.proc.kill()
            raise RuntimeError("daemon did not start:\n" +
                               "\n".join(self.lines[-20:]))
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if not self.proc:
            return None
        if self.proc.poll() is not None:          # it ended on its own
            if self.proc.returncode != 0:
                self._print_tail("ended by itself with %d"
                                 % self.proc.returncode)
            return self.proc.returncode
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._print_tail("did not stop")
            raise
        if self._thread:
            self._thread.join(5)            # its last lines, read
        if rc != 0:
            self._print_tail("exited %d" % rc)
        return rc

    def _print_tail(self, what):
        """The daemon's last log lines, for pytest's report of a failure
        (a sanitizer's or libmicrohttpd's last word is among them)."""
        if self._thread:
            self._thread.join(5)            # the reader takes the rest
        with self._lock:
            tail = self.lines[-60:]
        print("--- daemon %s; its last %d log lines:" % (what, len(tail)))
        print("\n".join(tail))

    def request(self, method, path, json_body=None, body=None,
                headers=None, token=None, timeout=30):
        h = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            h.setdefault("Content-Type", "application/json")
        if token:
            h["Authorization"] = "Bearer " + token
        conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def raw(self, data, timeout=10):
        """Sends raw bytes; returns everything the server sent until it
        closed the connection or `timeout` seconds of silence."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout)
        chunks = []
        try:
            s.sendall(data)
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            pass
        finally:
            s.close()
        return b"".join(chunks)

    # -- conveniences over the API --

    def register(self, email=None, password=None, **extra):
        email = email or "u%s@example.com" % secrets.token_hex(5)
        password = password or "correct horse " + secrets.token_hex(4)
        body = {"email": email, "password": password}
        body.update(extra)
        r = self.request("POST", "/api/v1/auth/register", body)
        return r, email, password

    def login(self, email, password, **headers):
        return self.request("POST", "/api/v1/auth/login",
                            {"email": email, "password": password},
                            headers=headers)

    def user(self, **extra):
        """A registered, logged-in user: (email, password, tokens)."""
        r, email, password = self.register(**extra)
        assert r.status == 201, r
        t = self.login(email, password)
        assert t.status == 200, t
        return email, password, t.json


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    return request.param


def assert_no_unchecked_writes(d):
    """No flow changed rows for a signed-in caller outside a checked
    write transaction (README "Security", "Writes in flight"): the
    repository refuses such a change and says so in the log, which a
    flow that ignores the refusal would otherwise hide. Nor ran a
    statement its table forgot (no text on either backend: src/repo/
    driver.c), which would have answered "no rows"."""
    bad = [e for e in d.logs if e.get("event") in
           ("repo.unchecked_write", "repo.statement_missing")]
    assert not bad, bad[:3]


@pytest.fixture(scope="module")
def daemon(backend):
    d = Daemon(backend).start()
    yield d
    assert d.stop() == 0, "\n".join(d.lines[-20:])
    assert_no_unchecked_writes(d)


@pytest.fixture
def make_daemon(backend):
    """Factory for tests that need their own daemon (own settings)."""
    made = []

    def make(env=None, **kw):
        d = Daemon(backend, env=env, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
    for d in made:
        assert_no_unchecked_writes(d)


def assert_problem(r, status, code=None):
    """Asserts an RFC 9457 problem document with `status` and `code`."""
    assert r.status == status, r
    assert r.header("Content-Type").startswith("application/problem+json"), \
        r.headers
    p = r.json
    assert p["status"] == status
    assert p["type"] == "about:blank"
    assert isinstance(p["title"], str) and p["title"]
    assert isinstance(p["detail"], str) and p["detail"]
    assert p["request_id"] == r.header("X-Request-ID")
    if code:
        assert p["code"] == code, p
    return p


def assert_rate_limited(statuses, elapsed, burst, per_minute, ok=401):
    """`statuses` of requests from one address sent one after another over
    `elapsed` seconds, against a limit of `per_minute` with a bucket of
    `burst`: the first `burst` pass, and past them no more pass than the
    bucket refilled meanwhile (one per 60 / per_minute s; a loaded machine
    stretches the run, never the limit); the rest are 429."""
    assert statuses[:burst] == [ok] * burst, statuses
    refilled = int(elapsed * per_minute / 60.0) + 1
    passed = statuses.count(ok)
    assert passed <= burst + refilled, (passed, elapsed, statuses)
    assert statuses.count(429) == len(statuses) - passed, statuses


def free_ports(n):
    """`n` distinct loopback ports that nothing listens on now, for a
    server a test starts on a port it must know beforehand. They come from
    below the kernel's ephemeral range: a port bind(0) finds free is in
    that range, which outgoing connections draw from too, so while a test
    in the other worker holds thousands of connections it can be taken
    before the server binds it (seen with tests/pg-cluster.sh in a CI
    run). All are held at once while choosing, so none comes twice."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            top = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        top = 32768
    held = []
    try:
        for _ in range(200 * n):
            if len(held) == n:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1",
                        random.randrange(10000, top) if top > 11000 else 0))
            except OSError:
                s.close()
                continue
            held.append(s)
        assert len(held) == n, "no free loopback port"
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def free_port():
    """One port of free_ports()."""
    return free_ports(1)[0]


def wait_until(fn, timeout=10.0, interval=0.02):
    """Polls fn() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def hash_jobs(d):
    """(waiting, running) requests of the hash workers, from /metrics."""
    r = d.request("GET", "/metrics")
    assert r.status == 200, r
    got = {}
    for line in r.body.decode().splitlines():
        name, _, value = line.partition(" ")
        if name in ("auth_hash_queue_depth", "auth_hash_jobs_running"):
            got[name] = int(float(value))
    assert len(got) == 2, "no hash gauges in /metrics"
    return got["auth_hash_queue_depth"], got["auth_hash_jobs_running"]


def closed_within(s, seconds):
    """Seconds until the server closed socket `s` (its end of file, or a
    reset), or None when it was still open `seconds` on."""
    started = time.monotonic()
    s.settimeout(seconds)
    try:
        while s.recv(4096):
            pass
    except socket.timeout:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def preload_library(source, prefix):
    """Compiles the C `source` into a library to preload in the daemon
    (LD_PRELOAD), in a new scratch folder; (its path, that folder).
    Skips without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler for the test library")
    work = scratch(prefix)
    lib = os.path.join(work, "shim.so")
    with open(os.path.join(work, "shim.c"), "w") as f:
        f.write(source)
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", lib,
                    os.path.join(work, "shim.c"), "-ldl"], check=True)
    return lib, work


def preload_env(lib):
    """The daemon's environment entries that preload `lib`: the test
    library comes before a sanitizer's runtime, which then must not
    insist on being first."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    return {"LD_PRELOAD": lib,
            "ASAN_OPTIONS": (asan + ":" if asan else "") +
                            "verify_asan_link_order=0"}


def mapped(pid, name):
    """True when process `pid` has a file whose path holds `name` mapped
    (a shared library the loader or dlopen() opened)."""
    with open("/proc/%d/maps" % pid) as f:
        return name in f.read()


def library_path(soname):
    """The file the dynamic loader opens for `soname`; skips without it."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        if line.strip().startswith(soname + " ") and "x86-64" in line:
            return os.path.realpath(line.split("=>")[-1].strip())
    pytest.skip("no %s on this host" % soname)


def without_library(soname, tmp_dir):
    """A wrapper script that runs BIN in a mount namespace where the file
    of `soname` is empty (/dev/null bind-mounted on it), as on a host
    without that library; skips where unshare -m and mount are refused
    (not root)."""
    lib = library_path(soname)
    unshare = shutil.which("unshare")
    if not unshare or subprocess.run(
            [unshare, "-m", "mount", "--bind", "/dev/null", lib],
            capture_output=True).returncode != 0:
        pytest.skip("needs unshare -m and mount (root)")
    wrapper = os.path.join(tmp_dir, "auth-serve-without-" + soname)
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec %s -m sh -c 'mount --bind /dev/null "
                "\"$0\" && exec \"$@\"' %s %s \"$@\"\n"
                % (unshare, lib, BIN))
    os.chmod(wrapper, 0o755)
    return wrapper


def reads_while_held(d, hold, writer_token, victim_token, writers=12):
    """Runs hold() (which returns once it has held a lock on the database
    for a while) as `writers` threads write for writer_token's account
    (DELETE of a session id that does not exist: it takes the account's
    lock) and one thread, another account, reads its sessions. Returns
    Counters of (victim, writer) statuses: a lock elsewhere may delay
    those writes, never refuse the other account (README.md "Circuit
    breaker")."""
    victim, writes = collections.Counter(), collections.Counter()
    done = threading.Event()
    path = "/api/v1/auth/sessions/01a24d8c-f2d0-72f6-bac0-2051f18a85fb"

    def write():
        while not done.is_set():
            r = d.request("DELETE", path, token=writer_token, timeout=60)
            writes[r.status] += 1

    def read():
        while not done.is_set():
            r = d.request("GET", "/api/v1/auth/sessions",
                          token=victim_token, timeout=60)
            victim[r.status] += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    try:
        hold()
    finally:
        done.set()
        for t in threads:
            t.join()
    return victim, writes


def assert_lock_refuses_nothing(d, hold, writer_token, victim_token, label):
    """reads_while_held(), then what it is for: the other account's reads
    all 200, no write 503, and neither the stall gate nor the breaker
    engaged. Prints the counts under `label` (pytest -s)."""
    reads, writes = reads_while_held(d, hold, writer_token, victim_token)
    print("\n%s: other account %s, writes %s"
          % (label, dict(reads), dict(writes)))
    assert set(reads) == {200}, reads
    assert 503 not in writes, writes
    d.settled()
    assert not d.events(lambda e: e.get("event") in
                        ("db.stalled", "repo.circuit"), timeout=0)
