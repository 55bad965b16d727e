"""READY=1 and /readyz at start-up (README.md "Operations"): READY=1 is
sent once the readiness prober's first database ping has ended, so a
/readyz sent right after it answers 200; the wait for that ping neither
hangs start-up nor holds up a stop that arrives during it."""
import http.client
import time

from conftest import Daemon
from test_systemd import Notifications

ROUNDS = 8


def readyz(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status
    finally:
        conn.close()


def test_readyz_agrees_with_ready_at_once(backend):
    n = Notifications()
    try:
        for i in range(ROUNDS):
            d = Daemon(backend, env={"NOTIFY_SOCKET": n.path})
            t0 = time.monotonic()
            d.start()
            try:
                deadline = time.monotonic() + 30
                while not n.count("READY=1", t0):
                    assert time.monotonic() < deadline, d.lines[-20:]
                    time.sleep(0.002)
                assert readyz(d.port) == 200, (i, d.lines[-20:])
            finally:
                assert d.stop() == 0
    finally:
        n.close()


def test_a_stop_during_the_wait_for_the_first_ping_ends_promptly(backend):
    """SIGTERM as soon as the server listens, while READY=1 may still
    wait on the first ping: the daemon exits 0 within seconds (10 s: the
    sanitizers on a busy machine; a hang meets the 15 s stop timeout)."""
    n = Notifications()
    try:
        for i in range(ROUNDS):
            d = Daemon(backend, env={"NOTIFY_SOCKET": n.path}).start()
            t0 = time.monotonic()
            assert d.stop(timeout=15) == 0, i
            assert time.monotonic() - t0 < 10, (i, d.lines[-20:])
    finally:
        n.close()
