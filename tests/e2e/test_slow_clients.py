"""Slow clients: the header deadline (AUTH_HEADER_TIMEOUT, from a request's
first byte to its complete headers, trickling or not), the body deadline
(AUTH_BODY_TIMEOUT, from its complete headers to its complete body) and
connection limits sized so that slow connections from a handful of
addresses cannot keep another address from being answered."""
import resource
import selectors
import select
import socket
import time

import pytest

from conftest import BACKENDS, wait_until


@pytest.fixture(scope="module", params=BACKENDS[:1])
def backend(request):
    """One backend: what this module tests (deadlines and connection
    limits of requests still arriving) is the HTTP layer's, done before
    any storage is reached; on each backend it took a minute of every run
    for nothing more."""
    return request.param


SLOW_ADDRS = ["127.0.0.%d" % i for i in range(2, 10)]     # 8 addresses


def connect_from(src, port, timeout=5):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def answered_in(d, timeout=5.0):
    """Seconds a GET /healthz from 127.0.0.1 takes, None without answer."""
    t0 = time.monotonic()
    try:
        s = connect_from("127.0.0.1", d.port, timeout)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                c = s.recv(4096)
                if not c:
                    break
                data += c
        finally:
            s.close()
    except OSError:
        return None
    if not data.startswith(b"HTTP/1.1 200"):
        return None
    return time.monotonic() - t0


class Trickler:
    """Slow connections that send one header line every `interval` seconds
    and never end their headers; records when the server closed each."""

    FIRST = b"GET /healthz HTTP/1.1\r\n"       # the clock starts
    MORE = b"X-Slow: a\r\n"                    # and never ends

    def __init__(self, port, addrs, per_addr, interval=1.0):
        self.interval = interval
        self.sel = selectors.DefaultSelector()
        self.socks = []
        self.t0 = {}
        self.closed = {}
        for a in addrs:
            for _ in range(per_addr):
                s = connect_from(a, port)
                s.setblocking(False)
                self.socks.append(s)
        for s in self.socks:
            s.send(self.FIRST)
            self.t0[s] = time.monotonic()
            self.sel.register(s, selectors.EVENT_READ)
        self.next_line = time.monotonic() + interval

    def pump(self, seconds):
        """Trickles for `seconds` (or until all are closed)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and len(self.closed) < len(self.socks):
            now = time.monotonic()
            if now >= self.next_line:
                for s in self.socks:
                    if s not in self.closed:
                        try:
                            s.send(self.MORE)
                        except OSError:
                            self._close(s)
                self.next_line = now + self.interval
            for key, _ in self.sel.select(timeout=0.05):
                try:
                    if key.fileobj.recv(4096):
                        continue
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                self._close(key.fileobj)

    def _close(self, s):
        if s not in self.closed:
            self.closed[s] = time.monotonic() - self.t0[s]
            self.sel.unregister(s)

    def close(self):
        for s in self.socks:
            s.close()
        self.sel.close()


def closed_at_the_deadline(d, t):
    """Another address is answered at once while `t` trickles, and every
    trickling connection is closed 1.5-4.5 s in (a 2 s deadline)."""
    try:
        t.pump(0.5)
        took = [answered_in(d) for _ in range(3)]
        assert all(x is not None and x < 1.0 for x in took), took
        t.pump(8.0)                         # bounded: 2 s timeout + slack
        assert len(t.closed) == len(t.socks), \
            "%d of %d trickling connections still open" % (
                len(t.socks) - len(t.closed), len(t.socks))
        worst = max(t.closed.values())
        best = min(t.closed.values())
        assert 1.5 <= best and worst <= 4.5, (best, worst)
    finally:
        t.close()


def test_trickling_headers_are_closed_and_others_answered(make_daemon):
    per_ip = 6
    d = make_daemon({"AUTH_HEADER_TIMEOUT": "2",
                     "AUTH_CONNECTION_TIMEOUT": "30",
                     "AUTH_MAX_CONNECTIONS": "64",
                     "AUTH_MAX_CONNECTIONS_PER_IP": str(per_ip)}).start()
    t = Trickler(d.port, SLOW_ADDRS, per_ip)
    closed_at_the_deadline(d, t)
    assert wait_until(lambda: any(e.get("event") == "http.header_timeout"
                                  for e in d.logs), timeout=5)
    assert answered_in(d) is not None
    assert d.stop() == 0


class BodyTrickler(Trickler):
    """Complete headers of a login, then its body a byte at a time."""
    FIRST = (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
             b"Content-Type: application/json\r\n"
             b"Content-Length: 16000\r\n\r\n{")
    MORE = b" "


def test_trickling_bodies_are_closed_and_others_answered(make_daemon):
    """Without a body deadline, 16 addresses holding 64 such connections
    each took every connection slot for as long as they trickled."""
    per_ip = 6
    d = make_daemon({"AUTH_BODY_TIMEOUT": "2",
                     "AUTH_CONNECTION_TIMEOUT": "30",
                     "AUTH_MAX_CONNECTIONS": "64",
                     "AUTH_MAX_CONNECTIONS_PER_IP": str(per_ip)}).start()
    t = BodyTrickler(d.port, SLOW_ADDRS, per_ip, interval=0.5)
    closed_at_the_deadline(d, t)
    assert d.events(lambda e: e.get("event") == "http.body_timeout")
    # a body that comes whole in time is served, also after a pause
    s = connect_from("127.0.0.20", d.port)   # none of the trickling ones
    try:
        s.sendall(BodyTrickler.FIRST[:-1])
        time.sleep(1.0)
        s.sendall(b'{"email": "nobody@example.com", "password": "x"}'
                  .ljust(16000))
        got = s.recv(4096)
        assert got.startswith(b"HTTP/1.1 401"), got
    finally:
        s.close()
    assert answered_in(d) is not None
    assert d.stop() == 0


def test_keepalive_deadline_starts_at_the_next_request(make_daemon):
    """An idle keep-alive connection is governed by the idle timeout; the
    deadline of its next request starts at that request's first byte."""
    d = make_daemon({"AUTH_HEADER_TIMEOUT": "2",
                     "AUTH_CONNECTION_TIMEOUT": "30"}).start()
    s = connect_from("127.0.0.2", d.port, timeout=10)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(3.0)                     # idle longer than the deadline
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /healthz HTTP/1.1\r\n")     # then trickle
        t0 = time.monotonic()
        closed = None
        while time.monotonic() - t0 < 8:
            try:
                s.sendall(b"X-Slow: a\r\n")
            except OSError:
                closed = time.monotonic() - t0
                break
            s.settimeout(0.5)
            try:
                if not s.recv(4096):
                    closed = time.monotonic() - t0
                    break
            except socket.timeout:
                pass
            except OSError:
                closed = time.monotonic() - t0
                break
        assert closed is not None and 1.5 <= closed <= 4.5, closed
    finally:
        s.close()
    assert d.stop() == 0


def open_from(port, addr, n):
    """Opens `n` connections from `addr`, each with a request line sent;
    returns those the server still holds open a second later."""
    socks = []
    for _ in range(n):
        s = connect_from(addr, port)
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        s.setblocking(False)
        socks.append(s)
    time.sleep(1.0)
    held = []
    for s in socks:
        try:
            open_ = s.recv(4096) != b""
        except BlockingIOError:
            open_ = True
        except OSError:
            open_ = False
        if open_:
            held.append(s)
        else:
            s.close()
    return held


def test_default_limits_leave_room_for_a_ninth_address(make_daemon):
    """With the default connection limits, slow connections from 8
    addresses, each up to its per-address limit, leave room for others."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    d = make_daemon({"AUTH_HEADER_TIMEOUT": "60",
                     "AUTH_CONNECTION_TIMEOUT": "60"}).start()
    held = []
    try:
        for a in SLOW_ADDRS:
            mine = open_from(d.port, a, 160)   # more than any sane limit
            held.extend(mine)
            if a == SLOW_ADDRS[0]:
                assert 0 < len(mine) < 160, "no per-address limit"
        took = answered_in(d, timeout=3.0)
        assert took is not None and took < 1.0, (len(held), took)
    finally:
        for s in held:
            s.close()
    assert wait_until(lambda: answered_in(d) is not None, timeout=10)
    assert d.stop() == 0


def test_limits_that_leave_no_room_are_warned_about(make_daemon):
    d = make_daemon({"AUTH_MAX_CONNECTIONS": "64",
                     "AUTH_MAX_CONNECTIONS_PER_IP": "8"}).start()
    assert wait_until(lambda: any(
        e.get("event") == "server.connection_limits" for e in d.logs),
        timeout=5)
    assert d.stop() == 0
    d = make_daemon({"AUTH_MAX_CONNECTIONS": "64",
                     "AUTH_MAX_CONNECTIONS_PER_IP": "7"}).start()
    assert answered_in(d) is not None
    assert not any(e.get("event") == "server.connection_limits"
                   for e in d.logs)
    assert d.stop() == 0


def test_deadline_never_cuts_other_connections(make_daemon):
    """Rounds of trickling connections expire while other clients open
    fresh connections (their descriptors recycled) and keep one keep-alive
    connection busy for longer than the deadline: none of those is cut."""
    import http.client
    import threading

    d = make_daemon({"AUTH_HEADER_TIMEOUT": "2",
                     "AUTH_CONNECTION_TIMEOUT": "30",
                     "AUTH_MAX_CONNECTIONS": "128",
                     # room for a round's connections while the server
                     # still finishes closing the last round's
                     "AUTH_MAX_CONNECTIONS_PER_IP": "12"}).start()
    stop = threading.Event()
    fresh = {"ok": 0, "bad": 0}
    kept = {"ok": 0, "bad": []}

    def fresh_loop():
        while not stop.is_set():
            if answered_in(d, 5) is None:
                fresh["bad"] += 1
            else:
                fresh["ok"] += 1

    def keepalive_loop():
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5)
        c.connect()
        sock = c.sock
        while not stop.is_set():
            try:
                c.request("GET", "/healthz")
                r = c.getresponse()
                r.read()
                if r.status != 200 or c.sock is not sock:
                    kept["bad"].append(r.status)
                else:
                    kept["ok"] += 1
            except (OSError, http.client.HTTPException) as e:
                kept["bad"].append(repr(e))
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", d.port,
                                               timeout=5)
                c.connect()
                sock = c.sock
            stop.wait(0.05)
        c.close()

    threads = [threading.Thread(target=fresh_loop),
               threading.Thread(target=keepalive_loop)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):                  # 3 rounds of about 2.5 s
            t = Trickler(d.port, SLOW_ADDRS, 6)
            try:
                t.pump(6.0)
                assert len(t.closed) == len(t.socks)
                times = sorted(t.closed.values())
                assert 1.5 <= times[0] and times[-1] <= 4.5, times
            finally:
                t.close()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert fresh["bad"] == 0 and fresh["ok"] > 20, fresh
    assert kept["bad"] == [] and kept["ok"] > 20, kept
    assert d.stop() == 0


def test_ipv6_connections_are_counted(make_daemon):
    """The per-address limit holds for IPv6 peers (counted per /64)."""
    if not socket.has_ipv6:
        import pytest
        pytest.skip("no IPv6")
    # A long header deadline, so that only the per-address limit can close
    # the 4th connection within the (generous, load-proof) wait below.
    d = make_daemon({"AUTH_HOST": "::1", "AUTH_HEADER_TIMEOUT": "120",
                     "AUTH_MAX_CONNECTIONS_PER_IP": "3"}).start()
    socks = []
    try:
        for _ in range(4):
            s = socket.create_connection(("::1", d.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            socks.append(s)
        # One of the four is refused: usually the last, but the server may
        # register them in another order on a loaded machine.
        refused = None
        deadline = time.monotonic() + 20.0
        while refused is None and time.monotonic() < deadline:
            ready, _, _ = select.select(socks, [], [],
                                        deadline - time.monotonic())
            for s in ready:
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                if not data:
                    refused = s
                    break
        assert refused is not None, "a 4th connection from ::1 was kept"
        for s in socks:                     # the other three are served
            if s is refused:
                continue
            s.sendall(b"Host: x\r\n\r\n")
            s.settimeout(5.0)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for s in socks:
            s.close()
    assert d.stop() == 0


NOREAD_CONNS = 40


def test_clients_that_never_read_hold_no_copy_of_a_document(make_daemon):
    """Connections that ask for the 1.7 MB Swagger UI bundle (the same
    request pipelined again behind it) and read no further than the
    answer's head: the daemon sends the embedded file from where it is,
    so its anonymous memory does not grow by a copy per connection (it
    grew by 1.7 MB each, 111 MB for the 64 connections one address may
    hold)."""
    from test_parking import rss_kib
    d = make_daemon().start()
    req = b"GET /docs/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n"
    before = rss_kib(d.proc.pid)
    socks = []
    try:
        for _ in range(NOREAD_CONNS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(10)
            s.connect(("127.0.0.1", d.port))
            socks.append(s)
            s.sendall(req * 2)
            head = b""
            while b"\r\n\r\n" not in head:
                c = s.recv(512)
                assert c, head
                head += c
            assert head.startswith(b"HTTP/1.1 200"), head[:80]
        grown = rss_kib(d.proc.pid) - before
        # a copy each would be 40 x 1,692 KiB
        assert grown < 16 * 1024, "grew %d KiB" % grown
        assert answered_in(d) is not None
    finally:
        for s in socks:
            s.close()
    assert d.stop() == 0
