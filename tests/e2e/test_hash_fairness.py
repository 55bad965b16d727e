"""A few client addresses that keep the hash pool's queue full do not
lock everyone else out of logging in (README "Security"): the full queue
drops the newest waiting login of the address with the most waiting to
make room for an address with none, and the queue takes addresses by
turns. Before, ten loopback addresses within their shares kept the
queue full and every other client's login was answered 503."""
import http.client
import json
import threading
import time

from conftest import hash_jobs, wait_until

ATTACKERS = ["127.0.0.%d" % i for i in range(10, 20)]
PER_ATTACKER = 2         # AUTH_HASH_QUEUE 16 / 8: each address's share
QUEUE = 16
NEWCOMER_LOGINS = 8
DEADLINE = 120.0


def _login(conn, email, password):
    conn.request("POST", "/api/v1/auth/login",
                 body=json.dumps({"email": email,
                                  "password": password}).encode(),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    if r.getheader("Connection", "").lower() == "close":
        conn.close()
    return r.status


def _flood(port, source, email, password, stop, statuses, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                      source_address=(source, 0))
    try:
        while not stop.is_set():
            statuses.append(_login(conn, email, password))
    except Exception as e:                # reported by the test
        errors.append(repr(e))
    finally:
        conn.close()


def test_a_full_queue_still_takes_a_new_address(make_daemon):
    d = make_daemon(env={"AUTH_HASH_QUEUE": str(QUEUE),
                         "AUTH_HASH_WORKERS": "1",
                         "AUTH_ARGON2_ITERATIONS": "2",
                         "AUTH_MAX_CONNECTIONS_PER_IP": "0"}).start()
    accounts = [d.user()[:2] for _ in ATTACKERS]
    email, password, _ = d.user()
    stop = threading.Event()
    flood_statuses, errors = [], []
    threads = [threading.Thread(target=_flood,
                                args=(d.port, src, e, p, stop,
                                      flood_statuses, errors))
               for src, (e, p) in zip(ATTACKERS, accounts)
               for _ in range(PER_ATTACKER)]
    for t in threads:
        t.start()
    statuses, full_before = [], []
    try:
        assert wait_until(lambda: hash_jobs(d)[0] >= QUEUE - 1,
                          timeout=30.0), "the flood never filled the queue"
        for _ in range(NEWCOMER_LOGINS):
            # the flood refills the queue between two logins, unless a
            # loaded host held its threads back meanwhile: wait for it
            wait_until(lambda: hash_jobs(d)[0] >= QUEUE - 4, timeout=10.0)
            full_before.append(hash_jobs(d)[0])
            conn = http.client.HTTPConnection("127.0.0.1", d.port,
                                              timeout=30,
                                              source_address=("127.0.0.2",
                                                              0))
            try:
                statuses.append(_login(conn, email, password))
            finally:
                conn.close()
    finally:
        stop.set()
        deadline = time.monotonic() + DEADLINE
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "the flood did not end"
    assert not errors, errors
    # the queue was (nearly) full each time the newcomer came
    assert min(full_before) >= QUEUE - 4, full_before
    assert statuses == [200] * NEWCOMER_LOGINS, statuses
    # the flood itself was answered, and some of it dropped or refused
    assert flood_statuses and set(flood_statuses) <= {200, 429, 503}, \
        sorted(set(flood_statuses))
