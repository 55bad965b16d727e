"""Many keep-alive connections ready at the same instant are all served
at once. libmicrohttpd (0.9.75, and its 0.9 line since) drains its epoll
set in batches of 128 events and, after a full batch, waits again with
the whole idle timeout: when exactly a multiple of 128 connections were
ready, it slept until some other event arrived (README "Connections").
The daemon's epoll_wait never sleeps right after a full batch
(src/server.c)."""
import selectors
import socket
import time

import pytest

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
DEADLINE = 5.0           # the stall lasted the idle timeout (15 s)
ROUNDS = 5


def _open(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    return socks


def _round(socks):
    """Sends one request on every connection at once; the seconds until
    the last full answer, or None past the deadline."""
    sel = selectors.DefaultSelector()
    got = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        got[s] = b""
    t0 = time.monotonic()
    for s in socks:
        s.sendall(REQUEST)
    left = set(socks)
    while left:
        remaining = DEADLINE - (time.monotonic() - t0)
        if remaining <= 0:
            break
        for key, _ in sel.select(remaining):
            s = key.fileobj
            chunk = s.recv(65536)
            assert chunk, "the daemon closed a keep-alive connection"
            got[s] += chunk
            if got[s].endswith(b'{"status":"ok"}'):
                sel.unregister(s)
                left.discard(s)
                got[s] = b""
    sel.close()
    return None if left else time.monotonic() - t0


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("conns", [128, 256, 512])
def test_ready_connections_are_served_together(make_daemon, threads, conns):
    d = make_daemon(env={"AUTH_THREADS": threads,
                         "AUTH_MAX_CONNECTIONS_PER_IP": "0",
                         "AUTH_RATE_LIMIT_PER_MINUTE": "0"}).start()
    socks = _open(d.port, conns)
    try:
        for i in range(ROUNDS):
            took = _round(socks)
            assert took is not None, (
                f"round {i}: {conns} connections not all answered within "
                f"{DEADLINE} s")
    finally:
        for s in socks:
            s.close()
