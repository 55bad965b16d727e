"""The systemd service protocol and the unit files.

The daemon runs under `systemd-socket-activate` (which binds the port and
execs the daemon on the first connection, passing the socket as
LISTEN_FDS) with NOTIFY_SOCKET pointing at a datagram socket the test
reads, and WATCHDOG_USEC set. The unit files are checked with
`systemd-analyze verify` and `systemd-analyze security --offline`.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import conftest
from conftest import BIN, ROOT, Daemon, free_ports, wait_until

ACTIVATE = shutil.which("systemd-socket-activate")
ANALYZE = shutil.which("systemd-analyze")
WATCHDOG_USEC = 1000000                 # pings expected every 0.5 s
MAX_EXPOSURE = 2.0


class Notifications:
    """A NOTIFY_SOCKET: collects (time, message) datagrams."""

    def __init__(self):
        self.dir = conftest.scratch("auth-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.msgs = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            with self._lock:
                self.msgs.append((time.monotonic(), data.decode()))

    def lines(self, since=0.0):
        with self._lock:
            return [(t, line) for t, m in self.msgs if t >= since
                    for line in m.split("\n") if line]

    def count(self, line, since=0.0):
        return sum(1 for _, x in self.lines(since) if x == line)

    def close(self):
        self._stop = True
        self._thread.join()
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


ACTIVATE_DEADLINE = 60.0                # a loaded machine is slow to exec


def activated(backend, env, nports, notify, watchdog_usec=WATCHDOG_USEC,
              choose=free_ports):
    """Starts the daemon under systemd-socket-activate listening on
    `nports` free loopback ports; returns (Popen, stderr lines, ports).
    A port taken between choosing and binding it is chosen again, until
    a deadline; the ports are listening when this returns."""
    d = Daemon(backend, env=env)
    full = dict(d.env)
    full["NOTIFY_SOCKET"] = notify.path
    if watchdog_usec:
        full["WATCHDOG_USEC"] = str(watchdog_usec)
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            full[k] = os.environ[k]
    deadline = time.monotonic() + ACTIVATE_DEADLINE
    tried = []
    while time.monotonic() < deadline:
        ports = choose(nports)
        args = [ACTIVATE]
        for p in ports:
            args += ["-l", "127.0.0.1:%d" % p]
        for k, v in full.items():
            args += ["-E", "%s=%s" % (k, v)]
        proc = subprocess.Popen(args + [BIN], cwd=d.data_dir,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        lines = []

        def read(proc=proc, lines=lines):
            for raw in proc.stderr:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        # "Listening on ADDR as FD." once per socket, before any exec
        wait_until(lambda: proc.poll() is not None or sum(
            x.startswith("Listening on") for x in lines) == nports,
            max(deadline - time.monotonic(), 0.1))
        listening = sum(x.startswith("Listening on") for x in lines)
        if proc.poll() is None and listening == nports:
            return proc, lines, ports
        if proc.poll() is None:             # the deadline passed
            proc.kill()
        proc.wait()
        reader.join(10)                     # its last words, up to EOF
        tried.append("ports %s:\n%s" % (ports, "\n".join(lines)))
        if not any("Address already in use" in x for x in lines):
            break                           # not a race: do not hide it
    raise AssertionError("systemd-socket-activate did not listen:\n" +
                         "\n".join(tried))


def get(port, path, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.fixture
def notify():
    n = Notifications()
    yield n
    n.close()


@pytest.mark.skipif(not ACTIVATE, reason="systemd-socket-activate missing")
def test_socket_activation_notify_watchdog_stop(backend, notify):
    # AUTH_PORT names a port the test holds: the daemon would fail to
    # bind it, so serving proves it uses the passed socket instead.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    unused = blocker.getsockname()[1]
    # A per-address connection limit lets the test stop
    # the request threads from answering the watchdog's probe.
    proc, lines, (port,) = activated(
        backend, {"AUTH_PORT": str(unused),
                  "AUTH_MAX_CONNECTIONS_PER_IP": "4",
                  "AUTH_HEADER_TIMEOUT": "60"}, 1, notify)
    try:
        # The daemon is started by this very connection.
        assert wait_until(lambda: _connectable(port), 10)
        status, body = get(port, "/healthz", timeout=30)
        assert status == 200, body
        assert wait_until(lambda: notify.count("READY=1"), 30), \
            "\n".join(lines[-20:])
        got = notify.lines()
        ready_at = next(t for t, x in got if x == "READY=1")
        before = [x for t, x in got if t <= ready_at]
        assert "STATUS=Applying database migrations" in before, got
        assert any(x.startswith("STATUS=Serving on the passed socket")
                   for x in before), got
        # The log is read by another thread: wait for the lines, do not
        # assume they arrived before the notification did.
        assert wait_until(lambda: any('"systemd.socket_activated"' in x
                                      for x in lines), 10), lines
        assert wait_until(lambda: any('"server.started"' in x and
                                      '"port":%d,' % port in x
                                      for x in lines), 10), lines
        assert any(x == "STATUS=Serving on the passed socket, port %d" % port
                   for _, x in got), got
        status, _ = get(port, "/readyz")
        assert status == 200

        # Pinged every half WATCHDOG_USEC while it answers.
        t0 = time.monotonic()
        assert wait_until(lambda: notify.count("WATCHDOG=1", t0) >= 4, 10)
        assert time.monotonic() - t0 > 1.0          # not faster than 0.5 s

        # Hold every connection the address may open, each in the middle
        # of its headers (an idle one would be parked after 2 s and make
        # room for a new one): the probe (from 127.0.0.1 like them) is no
        # longer answered, so no pings.
        held = [socket.create_connection(("127.0.0.1", port), 5)
                for _ in range(4)]
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
        try:
            t1 = time.monotonic()
            assert wait_until(lambda: any(
                '"watchdog.not_answering"' in x for x in lines), 10), lines
            time.sleep(0.1)
            quiet = time.monotonic()
            wait_until(lambda: False, 2.0)          # 4 intervals
            assert notify.count("WATCHDOG=1", quiet) == 0, \
                notify.lines(t1)
        finally:
            for s in held:
                s.close()
        t2 = time.monotonic()
        assert wait_until(lambda: notify.count("WATCHDOG=1", t2) >= 2, 10)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, "\n".join(lines[-20:])
        stop_at = next(t for t, x in notify.lines() if x == "STOPPING=1")
        assert notify.count("WATCHDOG=1", stop_at + 0.001) == 0
    finally:
        blocker.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _connectable(port):
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ACTIVATE, reason="systemd-socket-activate missing")
def test_activation_rechooses_taken_ports(backend, notify):
    # A port another process takes between choosing and binding, many
    # times over (more than any fixed count of attempts): chosen again
    # until systemd-socket-activate listens.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    calls = []

    def choose(n):
        calls.append(n)
        if len(calls) <= 8:
            return [taken.getsockname()[1]] + free_ports(n - 1)
        return free_ports(n)

    proc, lines, ports = activated(backend, {}, 2, notify,
                                   watchdog_usec=None, choose=choose)
    try:
        assert len(calls) == 9 and len(set(ports)) == 2, (calls, ports)
        assert taken.getsockname()[1] not in ports
        assert sum(x.startswith("Listening on") for x in lines) == 2, lines
    finally:
        taken.close()
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not ACTIVATE, reason="systemd-socket-activate missing")
def test_two_passed_sockets_refused(backend, notify):
    proc, lines, (p, _) = activated(backend, {}, 2, notify,
                                    watchdog_usec=None)
    try:
        assert _connectable(p)              # starts the daemon
        assert proc.wait(30) == 2, lines
        assert any('"systemd.bad_sockets"' in x for x in lines), lines
        assert notify.count("READY=1") == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_no_notify_socket_serves_as_before(backend):
    d = Daemon(backend).start()
    try:
        assert d.request("GET", "/healthz").status == 200
        assert not any(e.get("event") == "watchdog.started" for e in d.logs)
    finally:
        assert d.stop() == 0


UNITS = ("auth-serve.service", "auth-serve.socket")


@pytest.mark.skipif(not ANALYZE, reason="systemd-analyze missing")
def test_units_verify_clean(tmp_path):
    # verify resolves ExecStart= and the targets inside --root: give it
    # the binary where the unit expects it and the system's own units.
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").mkdir()
    shutil.copy(BIN, root / "usr/bin/auth-serve")
    shutil.copy("/bin/kill", root / "bin/kill")
    shutil.copytree("/lib/systemd/system", root / "lib/systemd/system",
                    symlinks=True)
    for u in UNITS:
        shutil.copy(os.path.join(ROOT, "config", u),
                    root / "lib/systemd/system" / u)
    r = subprocess.run([ANALYZE, "verify", "--root=%s" % root] + list(UNITS),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", \
        r.stdout + r.stderr


@pytest.mark.skipif(not ANALYZE, reason="systemd-analyze missing")
def test_service_exposure_at_most_2():
    unit = os.path.join(ROOT, "config", "auth-serve.service")
    r = subprocess.run([ANALYZE, "security", "--offline=true",
                        "--threshold=20", unit],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for auth-serve\.service: "
                  r"([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert r.returncode == 0, r.stdout        # --threshold: 20 is 2.0
    assert float(m.group(1)) <= MAX_EXPOSURE, r.stdout
    text = open(unit).read()
    for want in ("Type=notify", "WatchdogSec=", "CapabilityBoundingSet=\n",
                 "SystemCallFilter=@system-service", "ProtectProc=invisible",
                 "ProtectClock=yes", "PrivateUsers=yes",
                 "RestrictRealtime=yes"):
        assert want in text, want


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (a proxy in front connecting there)."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def unix_request(path, method, target, body=None, headers=None):
    conn = UnixHTTPConnection(path)
    try:
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        conn.request(method, target, body=data, headers=h)
        r = conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None
    finally:
        conn.close()


@pytest.mark.skipif(not ACTIVATE, reason="systemd-socket-activate missing")
@pytest.mark.parametrize("trusted", [False, True])
def test_a_unix_socket_says_who_its_clients_are(backend, notify, trusted):
    """On a passed Unix socket every client's address was "unknown", one
    rate limit and one lockout for all, with no way to believe the proxy
    in front. The peer is "unix" now, AUTH_TRUSTED_PROXIES=unix believes
    its X-Forwarded-For, and without it the start says what is shared."""
    d = Daemon(backend, env={"AUTH_TRUSTED_PROXIES": "unix"}
               if trusted else {})
    path = os.path.join(d.data_dir, "auth.sock")
    full = dict(d.env)
    full["NOTIFY_SOCKET"] = notify.path
    args = [ACTIVATE, "-l", path]
    for k, v in full.items():
        args += ["-E", "%s=%s" % (k, v)]
    proc = subprocess.Popen(args + [BIN], cwd=d.data_dir,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = []

    def read():
        for raw in proc.stderr:
            lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
    threading.Thread(target=read, daemon=True).start()
    try:
        assert wait_until(lambda: any(x.startswith("Listening on")
                                      for x in lines), ACTIVATE_DEADLINE), \
            lines
        # the first connection starts the daemon
        status, _ = unix_request(path, "GET", "/healthz")
        assert status == 200
        assert wait_until(lambda: notify.count("READY=1"), 30), lines[-20:]
        email = "unix-%s@example.com" % os.urandom(4).hex()
        pw = "correct horse unix socket"
        xff = {"X-Forwarded-For": "203.0.113.77"}
        status, _ = unix_request(path, "POST", "/api/v1/auth/register",
                                 {"email": email, "password": pw}, xff)
        assert status == 201
        status, t = unix_request(path, "POST", "/api/v1/auth/login",
                                 {"email": email, "password": pw}, xff)
        assert status == 200, t
        status, s = unix_request(
            path, "GET", "/api/v1/auth/sessions",
            headers={"Authorization": "Bearer " + t["access_token"]})
        assert status == 200, s
        assert [x["ip"] for x in s["items"]] == \
            ["203.0.113.77" if trusted else "unix"], s
        warned = any('"listen.unix_clients_are_one"' in x for x in lines)
        assert warned is not trusted, lines[-20:]
        # A keep-alive connection idle past the 2 s after which a TCP one
        # is parked: a Unix one cannot be, and was closed then (a proxy's
        # next request on it got nothing). It keeps
        # AUTH_CONNECTION_TIMEOUT (15 s) instead.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(path)
        try:
            for i in range(2):
                if i:
                    time.sleep(3.0)     # idle past the 2 s, on purpose
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                while not got.endswith(b"}"):
                    chunk = s.recv(4096)
                    assert chunk, got
                    got += chunk
                assert got.startswith(b"HTTP/1.1 200 "), got
        finally:
            s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
