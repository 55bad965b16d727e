"""A client's share of the hash pool (README "Security") is one eighth of
AUTH_HASH_QUEUE. It counts requests queued or running, so a client with
that many keep-alive connections, each waiting for its answer before it
sends the next login, never exceeds it and must never get 429."""
import http.client
import json
import os
import threading

import pytest

CONNECTIONS = 8          # AUTH_HASH_QUEUE 64 / 8: exactly the share
LOGINS = 30              # per connection, sequential
DEADLINE = 120.0


def _logins(port, email, password, statuses, errors, start):
    body = json.dumps({"email": email, "password": password}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        start.wait(DEADLINE)
        for _ in range(LOGINS):
            conn.request("POST", "/api/v1/auth/login", body=body,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
    except Exception as e:                # reported by the test
        errors.append(repr(e))
    finally:
        conn.close()


def test_one_client_within_its_share_is_never_refused(make_daemon):
    # The daemon on one CPU, as in bench/run.sh: the worker that finished
    # a login competes with the HTTP thread that serves the next one.
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs to pin the daemon apart")
    os.sched_setaffinity(0, {cpus[0]})
    try:
        d = make_daemon(env={"AUTH_HASH_QUEUE": "64"}).start()
    finally:
        os.sched_setaffinity(0, set(cpus))
    users = [d.user() for _ in range(CONNECTIONS)]
    statuses, errors = [], []
    start = threading.Event()
    threads = [threading.Thread(target=_logins,
                                args=(d.port, email, password, statuses,
                                      errors, start))
               for email, password, _ in users]
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join(DEADLINE)
    assert not any(t.is_alive() for t in threads), "logins did not finish"
    assert not errors, errors
    assert len(statuses) == CONNECTIONS * LOGINS
    refused = [s for s in statuses if s != 200]
    assert not refused, "%d of %d logins refused: %s" % (
        len(refused), len(statuses), sorted(set(refused)))
