"""Idle keep-alive connections (README.md "Connections" and "Performance"):
after 2 s without a request a connection leaves libmicrohttpd, whose pool
keeps 16 KiB resident per connection, for the connection guard, which
holds it on a few dozen bytes until its next request's first bytes come.
None of that may be visible to a client: no request lost at the moment a
connection is parked, the same limits and idle timeout as before."""
import os
import random
import resource
import signal
import socket
import threading
import time

import pytest

from conftest import BACKENDS, closed_within, wait_until


@pytest.fixture(scope="module", params=BACKENDS[:1])
def backend(request):
    """One backend: what this module tests (keep-alive connections parked
    and given back around GET /healthz) is the HTTP layer's, done before
    any storage is reached; on each backend it took a minute of every run
    for nothing more."""
    return request.param


REQ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid):
    """The daemon's anonymous resident memory: what a connection costs,
    without the pages of its libraries' code that happen to be read in
    meanwhile (they count in VmRSS too)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def answer(s):
    """Sends one GET /healthz on `s` and reads its whole answer; the
    status code, or None when the server closed the connection."""
    try:
        s.sendall(REQ)
        data = b""
        while b"\r\n\r\n" not in data:
            c = s.recv(4096)
            if not c:
                return None
            data += c
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            c = s.recv(4096)
            if not c:
                return None
            body += c
        return int(head.split(b" ")[1])
    except (ConnectionResetError, BrokenPipeError):
        return None


def connect(port, src="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


@pytest.mark.skipif(bool(os.environ.get("AUTH_E2E_SANITIZED")),
                    reason="the sanitizers' allocator keeps freed memory")
def test_an_idle_keep_alive_connection_costs_under_4_kib(make_daemon):
    """1,000 connections answered once then idle: the daemon's memory
    grows by less than 4 KiB for each once they are parked (16.5 KiB
    while libmicrohttpd held them), and each is answered again on the
    same connection afterwards."""
    raise_fd_limit()
    n = 1000
    d = make_daemon({"AUTH_MAX_CONNECTIONS": "2000",
                     "AUTH_MAX_CONNECTIONS_PER_IP": "0",
                     "AUTH_CONNECTION_TIMEOUT": "120"}).start()
    socks = []
    try:
        assert wait_until(lambda: d.request("GET", "/readyz").status == 200)
        for _ in range(50):                 # the threads' first allocations
            s = connect(d.port)
            assert answer(s) == 200
            socks.append(s)
        before = rss_kib(d.proc.pid)
        for _ in range(n):
            s = connect(d.port)
            socks.append(s)
            assert answer(s) == 200
        held = (rss_kib(d.proc.pid) - before) / n
        per = wait_until(
            lambda: (lambda k: k if k < 4 else None)(
                (rss_kib(d.proc.pid) - before) / n), timeout=20,
            interval=0.25)
        assert per is not None, "%.1f KiB per idle connection (%.1f held)" % (
            (rss_kib(d.proc.pid) - before) / n, held)
        answers = [answer(s) for s in socks]
        assert answers.count(200) == len(socks), \
            "%d of %d idle connections not answered again" % (
                len(socks) - answers.count(200), len(socks))
    finally:
        for s in socks:
            s.close()
    assert d.stop() == 0


def test_no_request_is_lost_when_a_connection_is_parked(make_daemon):
    """24 keep-alive clients, each idle 1.6-2.6 s between requests (the
    moment of parking is 2 s; a request may arrive just as the server
    gives its connection up, or while it is parked, or just after it was
    given back): every request is answered, on the client's one
    connection, over 6 rounds each."""
    d = make_daemon({"AUTH_CONNECTION_TIMEOUT": "30"}).start()
    failures = []
    answered = [0]
    lock = threading.Lock()

    def client(seed):
        rng = random.Random(seed)
        s = connect(d.port)
        try:
            for i in range(7):
                if i:
                    time.sleep(rng.uniform(1.6, 2.6))
                code = answer(s)
                with lock:
                    if code == 200:
                        answered[0] += 1
                    else:
                        failures.append((seed, i, code))
                if code != 200:
                    return
        finally:
            s.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == [], failures
    assert answered[0] == 24 * 7
    assert d.stop() == 0
    assert not [e for e in d.logs if e.get("event") == "http.server"]


def test_parked_connections_make_room_at_the_limits(make_daemon):
    """Parked, a connection still counts under the per-address limit and
    the total one; a new connection past either takes the place of the
    longest idle parked one (nginx's way with idle keep-alive
    connections), and a connection in use is never closed for it."""
    d = make_daemon({"AUTH_MAX_CONNECTIONS": "8",
                     "AUTH_MAX_CONNECTIONS_PER_IP": "4",
                     "AUTH_CONNECTION_TIMEOUT": "60"}).start()
    mine, others = [], []
    try:
        for _ in range(4):
            s = connect(d.port, "127.0.0.2")
            mine.append(s)
            assert answer(s) == 200
            time.sleep(0.1)                 # an order of idleness
        time.sleep(3)                       # idle past 2 s: parked
        extra = connect(d.port, "127.0.0.2")
        mine.append(extra)
        assert answer(extra) == 200         # a fifth from the address
        assert closed_within(mine[0], 5) is not None   # the idlest
        for k in range(4):                  # the total: 8
            s = connect(d.port, "127.0.0.%d" % (3 + k))
            others.append(s)
            assert answer(s) == 200
        assert [answer(s) for s in mine[1:] + others] == [200] * 8
        time.sleep(3)                       # all 8 parked again
        extra = connect(d.port, "127.0.0.9")
        others.append(extra)
        assert answer(extra) == 200         # a ninth in all
        gone = [s for s in mine[1:] + others[:-1]
                if closed_within(s, 0.5) is not None]
        assert len(gone) == 1, len(gone)
        # in use, not parked: nothing makes room. Five from one address,
        # each with headers under way: one of them is closed at once
        # (usually the last; the server's threads may register them in
        # another order) and the other four stay open.
        five = [connect(d.port, "127.0.0.10") for _ in range(5)]
        others += five
        for s in five:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
        gone = [s for s in five if closed_within(s, 0.5) is not None]
        assert len(gone) == 1, len(gone)
    finally:
        for s in mine + others:
            s.close()
    assert d.stop() == 0


def test_a_parked_connection_closes_at_the_idle_timeout(make_daemon):
    """AUTH_CONNECTION_TIMEOUT counts from the last answer (or from the
    connection's opening), parked or not: 4 s here, not the 2 s after
    which it was parked."""
    d = make_daemon({"AUTH_CONNECTION_TIMEOUT": "4"}).start()
    used, fresh = connect(d.port), connect(d.port)
    try:
        assert answer(used) == 200
        took = [closed_within(used, 10), closed_within(fresh, 10)]
        assert all(t is not None for t in took), took
        assert 3.0 <= took[0] <= 6.0 and took[1] <= 6.0, took
    finally:
        used.close()
        fresh.close()
    assert d.stop() == 0


def test_a_stop_closes_parked_connections(make_daemon):
    d = make_daemon({"AUTH_CONNECTION_TIMEOUT": "60"}).start()
    socks = [connect(d.port) for _ in range(8)]
    try:
        for s in socks:
            assert answer(s) == 200
        time.sleep(3)
        t0 = time.monotonic()
        assert d.stop(signal.SIGTERM, timeout=15) == 0
        assert time.monotonic() - t0 < 10
        assert all(closed_within(s, 5) is not None for s in socks)
    finally:
        for s in socks:
            s.close()


def test_connections_given_back_at_the_limits_never_stall_a_thread(
        make_daemon):
    """Six addresses at their limit send their next requests around the
    moment of parking while opening more connections past the limits, on
    4 HTTP threads. libmicrohttpd 0.9.75 divides its own connection limit
    among its threads, and a thread at its share when it takes in a
    connection given back by the guard kept a mutex locked and stalled
    for good (its connections never served, a stop never ending): its
    limit is now kept out of reach and the guard's limits decide, so it
    never says it reached it. Afterwards every slot is free again and
    SIGTERM stops the daemon."""
    d = make_daemon({"AUTH_MAX_CONNECTIONS": "8",
                     "AUTH_MAX_CONNECTIONS_PER_IP": "4",
                     "AUTH_THREADS": "4",
                     "AUTH_CONNECTION_TIMEOUT": "60",
                     "AUTH_LOG_LEVEL": "info"}).start()
    stop = time.monotonic() + 12.0

    def worker(a):
        rng = random.Random(a)
        src = "127.0.90.%d" % (a + 1)
        conns = []
        try:
            while time.monotonic() < stop:
                while len(conns) < 6:
                    try:
                        conns.append(connect(d.port, src))
                    except OSError:
                        break
                time.sleep(rng.uniform(1.9, 2.2))
                for s in list(conns):
                    try:
                        s.sendall(REQ)
                    except OSError:
                        conns.remove(s)
                        s.close()
                extra = []
                for _ in range(2):
                    try:
                        extra.append(connect(d.port, src))
                    except OSError:
                        pass
                for s in list(conns):
                    s.settimeout(3)
                    try:
                        data = s.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        conns.remove(s)
                        s.close()
                conns += extra
        finally:
            for s in conns:
                s.close()

    threads = [threading.Thread(target=worker, args=(a,)) for a in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    limit = [e for e in d.logs if e.get("event") == "http.server" and
             "connection limit" in e.get("message", "")]
    assert limit == [], limit[:3]

    def all_served():
        socks = []
        try:
            for k in range(8):
                socks.append(connect(d.port, "127.0.95.%d" % (k + 1)))
            return all(answer(s) == 200 and answer(s) == 200
                       for s in socks)
        except OSError:
            return False
        finally:
            for s in socks:
                s.close()

    assert wait_until(all_served, timeout=20, interval=0.5)
    assert d.stop(timeout=20) == 0


def test_connections_given_back_together_are_all_served(make_daemon):
    """Eight parked connections whose next requests come at once, on 2
    HTTP threads with AUTH_MAX_CONNECTIONS=8: libmicrohttpd picks a
    thread for each connection given back by its descriptor, counting
    only those it has taken in, so more than its share of 8 can queue for
    one thread; with its own limit at the guard's, that thread stalled
    for good (libmicrohttpd 0.9.75 keeps a mutex locked when the limit
    refuses a queued connection) and those requests were never
    answered."""
    d = make_daemon({"AUTH_MAX_CONNECTIONS": "8",
                     "AUTH_MAX_CONNECTIONS_PER_IP": "0",
                     "AUTH_THREADS": "2",
                     "AUTH_CONNECTION_TIMEOUT": "60"}).start()
    socks = [connect(d.port) for _ in range(8)]
    try:
        for rnd in range(3):
            assert [answer(s) for s in socks] == [200] * 8, rnd
            time.sleep(3)                   # all parked
            for s in socks:
                s.sendall(REQ)
            got = []
            for s in socks:
                s.settimeout(5)
                try:
                    got.append(s.recv(4096)[:12])
                except OSError as e:
                    got.append(repr(e))
            assert got == [b"HTTP/1.1 200"] * 8, (rnd, got)
    finally:
        for s in socks:
            s.close()
    assert d.stop(timeout=20) == 0
