"""Abuse resistance: lockout, rate limits, enumeration timing, overload,
slow and malformed clients, hostile passwords and emails.

Every test is bounded in time and in count and speaks to loopback only.
Client addresses other than 127.0.0.1 are simulated with X-Forwarded-For
through AUTH_TRUSTED_PROXIES=127.0.0.1."""
import json
import os
import random
import secrets
import select
import socket
import statistics
import subprocess
import sys
import threading
import time

import pytest

from conftest import assert_problem, assert_rate_limited, closed_within, \
    hash_jobs, \
    wait_until

LOGIN = "/api/v1/auth/login"
REGISTER = "/api/v1/auth/register"
PROXIED = {"AUTH_TRUSTED_PROXIES": "127.0.0.1"}
# Argon2id at the documented default cost (the conftest default is cheap).
REAL_COST = {"AUTH_ARGON2_MEMORY_KIB": "19456", "AUTH_ARGON2_ITERATIONS": "2"}


def login_from(d, ip, email, password, timeout=30):
    return d.request("POST", LOGIN, {"email": email, "password": password},
                     headers={"X-Forwarded-For": ip}, timeout=timeout)


def retry_after(r):
    v = r.header("Retry-After")
    assert v is not None and v.isdigit(), r.headers
    return int(v)


def wait_out(seconds):
    """Lets a lock the server announced (Retry-After) run out. The server
    computed it before answering, so this much later it is over."""
    deadline = time.monotonic() + seconds + 0.2
    while time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def unknown_email():
    return "nobody-%s@example.com" % secrets.token_hex(6)


# ---- lockout -----------------------------------------------------------

def test_lockout_delays_retry_after_and_reset(make_daemon):
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="3",
               AUTH_LOCKOUT_MAX_SECONDS="4")
    d = make_daemon(env).start()
    r, email, pw = d.register()
    assert r.status == 201, r
    a, b = "203.0.113.5", "203.0.113.6"

    for _ in range(3):
        assert_problem(login_from(d, a, email, "wrong password 1"), 401,
                       "invalid_credentials")
    # The third failure locked (email, a) for 1 s; every attempt during a
    # lock counts and doubles it, capped at 4 s. (Should this machine be
    # slower than the first lock, the 4th attempt is a failure and the
    # 5th the first refused one.)
    attempts, first = 3, None
    while first is None and attempts < 6:
        r = login_from(d, a, email, "wrong password 1")
        attempts += 1
        if r.status == 429:
            first = r
        else:
            assert_problem(r, 401, "invalid_credentials")
    assert first is not None, "no lockout after %d failures" % attempts
    assert_problem(first, 429, "too_many_attempts")
    assert retry_after(first) == min(2 ** (attempts - 3), 4)
    # The right password is refused too while locked, and counts.
    r = login_from(d, a, email, pw)
    assert_problem(r, 429, "too_many_attempts")
    assert retry_after(r) == min(2 ** (attempts + 1 - 3), 4)
    r = login_from(d, a, email, pw)
    assert_problem(r, 429, "too_many_attempts")
    assert retry_after(r) == 4                          # the cap
    assert "access_token" not in r.json
    # Another address is not locked out of the account.
    assert login_from(d, b, email, pw).status == 200
    r = login_from(d, a, email, pw)
    assert_problem(r, 429, "too_many_attempts")
    # Once the delay is over, the right password works and resets.
    wait_out(retry_after(r))
    assert login_from(d, a, email, pw).status == 200
    for _ in range(2):
        assert_problem(login_from(d, a, email, "wrong password 2"), 401)
    assert login_from(d, a, email, pw).status == 200
    assert_problem(login_from(d, a, email, "wrong password 3"), 401)
    d.settled()
    events = [e for e in d.logs if e.get("event") == "auth.login_failed"]
    assert any(e["refused_locked"] for e in events)
    assert all(e["ip"] in (a, b) for e in events)
    assert not any(pw in line for line in d.lines)
    assert d.stop() == 0


def test_unknown_email_locks_the_same_way(make_daemon):
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="2",
               AUTH_LOCKOUT_MAX_SECONDS="60")
    d = make_daemon(env).start()
    r, known, _ = d.register()
    assert r.status == 201
    unknown = unknown_email()
    answers = {}
    for email in (known, unknown):
        seq = []
        for _ in range(5):
            r = login_from(d, "198.51.100.9", email, "not the password 1")
            seq.append((r.status, r.json["code"], r.header("Retry-After")))
            if r.status == 429:
                break
        answers[email] = seq
    # Same statuses, codes and delays: the lockout tells nothing about
    # whether the account exists.
    assert answers[known] == answers[unknown], answers
    assert answers[known][-1][0] == 429
    assert d.stop() == 0


def test_lockout_from_everywhere_past_ten_times(make_daemon):
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="2",
               AUTH_LOCKOUT_MAX_SECONDS="2")
    d = make_daemon(env).start()
    r, email, pw = d.register()
    assert r.status == 201
    # One failure from each of many addresses: no address reaches 2, the
    # email's total reaches 20 (10 x 2) on the 20th and locks it.
    first = None
    for i in range(1, 26):
        r = login_from(d, "192.0.2.%d" % i, email, "wrong password 1")
        if r.status == 429:
            first = i
            break
        assert_problem(r, 401, "invalid_credentials")
    assert first is not None and 21 <= first <= 23, first
    # Now locked from everywhere, even a new address with the password.
    r = login_from(d, "192.0.2.200", email, pw)
    assert_problem(r, 429, "too_many_attempts")
    assert 1 <= retry_after(r) <= 2
    wait_out(retry_after(r))
    assert login_from(d, "192.0.2.201", email, pw).status == 200
    assert d.stop() == 0


# ---- per-IP rate limit ------------------------------------------------

def test_rate_limit_per_client_address(make_daemon):
    d = make_daemon(dict(PROXIED, AUTH_RATE_LIMIT_PER_MINUTE="5")).start()
    a, b = "203.0.113.50", "203.0.113.51"
    t0 = time.monotonic()
    for _ in range(5):
        assert_problem(login_from(d, a, unknown_email(), "whatever pw 1"),
                       401)
    started = time.monotonic()
    r = login_from(d, a, unknown_email(), "whatever pw 1")
    took = time.monotonic() - started
    if time.monotonic() - t0 < 12:         # no token came back meanwhile
        assert_problem(r, 429, "too_many_attempts")
        assert 1 <= retry_after(r) <= 12
        assert took < 2.0                   # refused before any hashing
    # The bucket is per address and shared by the credential routes; it
    # is checked before authentication.
    h = {"X-Forwarded-For": a}
    r = d.request("POST", REGISTER, {"email": unknown_email(),
                                     "password": "a fine passphrase"},
                  headers=h)
    assert_problem(r, 429, "too_many_attempts")
    r = d.request("POST", "/api/v1/auth/refresh", {"refresh_token": "x"},
                  headers=h)
    assert_problem(r, 429, "too_many_attempts")
    r = d.request("POST", "/api/v1/auth/password/change",
                  {"current_password": "x", "new_password": "y"}, headers=h)
    assert_problem(r, 429, "too_many_attempts")
    assert retry_after(r) >= 1
    # So do the password-reset and email-verification routes, and logout
    # (it checks a refresh token).
    for path, body in (
            ("/api/v1/auth/logout", {"refresh_token": "x"}),
            ("/api/v1/auth/password/forgot", {"email": unknown_email()}),
            ("/api/v1/auth/password/reset", {"token": "x",
                                             "new_password": "a fine one"}),
            ("/api/v1/auth/email/verify-request", None),
            ("/api/v1/auth/email/verify", {"token": "x"})):
        r = d.request("POST", path, body, headers=h)
        if r.status != 404:                 # where the route exists
            assert_problem(r, 429, "too_many_attempts")
    # Other routes and other addresses are not limited.
    assert d.request("GET", "/healthz", headers=h).status == 200
    assert_problem(d.request("GET", "/api/v1/auth/verify", headers=h), 401)
    assert_problem(login_from(d, b, unknown_email(), "whatever pw 1"), 401)
    assert d.stop() == 0


# Every route the router counts as a credential route (src/router.c, CR).
CREDENTIAL_ROUTES = [
    ("POST", "/api/v1/auth/register"), ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"), ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/password/change"),
    ("POST", "/api/v1/auth/password/forgot"),
    ("POST", "/api/v1/auth/password/reset"),
    ("POST", "/api/v1/auth/email/verify-request"),
    ("POST", "/api/v1/auth/email/verify"),
    ("POST", "/api/v1/auth/mfa/totp/setup"),
    ("POST", "/api/v1/auth/mfa/totp/confirm"),
    ("DELETE", "/api/v1/auth/mfa/totp"),
    ("POST", "/api/v1/auth/mfa/recovery-codes"),
    ("POST", "/api/v1/auth/login/mfa"),
    ("POST", "/api/v1/auth/passkeys/register"),
    ("POST", "/api/v1/auth/passkeys/login/options"),
    ("POST", "/api/v1/auth/passkeys/login"),
    ("PATCH", "/api/v1/users/me"), ("DELETE", "/api/v1/users/me"),
]


def test_every_limited_route_documents_its_429(make_daemon):
    """A client generated from the OpenAPI document knows every status a
    route answers: each credential route, answered 429 once the address's
    bucket is empty, lists 429 (PATCH /users/me did not)."""
    d = make_daemon(dict(PROXIED, AUTH_RATE_LIMIT_PER_MINUTE="1")).start()
    doc = d.request("GET", "/openapi.json").json
    h = {"X-Forwarded-For": "203.0.113.60"}
    login_from(d, "203.0.113.60", unknown_email(), "whatever pw 1")
    t0 = time.monotonic()
    for method, path in CREDENTIAL_ROUTES:
        r = d.request(method, path, {}, headers=h)
        if time.monotonic() - t0 > 50:
            break                           # a token may have come back
        assert_problem(r, 429, "too_many_attempts")
        op = doc["paths"][path][method.lower()]
        assert "429" in op["responses"], (method, path)
    assert d.stop() == 0


def test_rate_limit_is_on_by_default(make_daemon):
    d = make_daemon(dict(PROXIED))
    del d.env["AUTH_RATE_LIMIT_PER_MINUTE"]       # the harness turns it off
    d.start()
    t0 = time.monotonic()
    statuses = [login_from(d, "203.0.113.77", unknown_email(),
                           "whatever pw 1").status for _ in range(40)]
    assert_rate_limited(statuses, time.monotonic() - t0, 30, 30)
    assert d.stop() == 0


# ---- enumeration timing ------------------------------------------------

def wrong_and_unknown_ms(d, email):
    """Medians (s) of wrong-password logins of `email` and of logins of
    unknown emails, interleaved in pairs (drift cancels out), from the
    first round of 15 pairs whose medians are within 15% of each other,
    or from the last of eight. A loaded machine blurs a round: CI once
    saw two rounds in a row at 32 against 25 ms and then one that agreed,
    which a median over all 45 pairs still failed; under ASan on
    PostgreSQL, beside another test, four rounds in a row missed, two one
    way and two the other (16/23, 19/13, 13/25, 30/19 ms). A round is measured
    afresh instead: a real difference (0.4 of the time before the
    padding) misses in every round, so a retry never hides one."""
    unknown = unknown_email()

    def timed(e):
        t = time.perf_counter()
        r = d.login(e, "definitely wrong 1")
        dt = time.perf_counter() - t
        assert_problem(r, 401, "invalid_credentials")
        return dt

    for _ in range(2):                    # warm caches and connections
        timed(email)
        timed(unknown)
    for attempt in range(8):
        wrong, missing = [], []
        for i in range(15):
            first, second = (email, unknown) if i % 2 else (unknown, email)
            a, b = timed(first), timed(second)
            (wrong if first == email else missing).append(a)
            (wrong if second == email else missing).append(b)
        mw, mm = statistics.median(wrong), statistics.median(missing)
        print("round %d, %d pairs: median wrong password %.1f ms, "
              "unknown email %.1f ms" % (attempt + 1, len(wrong), mw * 1e3,
                                         mm * 1e3))
        if abs(mm - mw) <= 0.15 * mw:
            break
    return mw, mm


def test_unknown_email_costs_a_wrong_password(make_daemon):
    env = dict(REAL_COST, AUTH_LOCKOUT_THRESHOLD="1000",
               AUTH_LOG_LEVEL="info")
    d = make_daemon(env).start()
    r, email, _ = d.register()
    assert r.status == 201
    mw, mm = wrong_and_unknown_ms(d, email)
    assert abs(mm - mw) <= 0.15 * mw, (mw, mm)
    assert d.stop() == 0


def test_an_account_of_the_old_cost_answers_like_an_unknown_email(
        make_daemon):
    """After AUTH_ARGON2_* is raised, an account that has not logged in
    since still has a hash of the old cost, a quarter of today's work
    here. A wrong password for it was answered in about 0.4 of the time
    an unknown email took (7.2 against 17.3 ms; the dummy is at today's
    cost), which told which emails have accounts; it now waits out the
    difference (README "Argon2id")."""
    env = dict(AUTH_ARGON2_MEMORY_KIB="9728", AUTH_ARGON2_ITERATIONS="1",
               AUTH_LOCKOUT_THRESHOLD="1000", AUTH_LOG_LEVEL="info")
    d = make_daemon(env).start()
    r, email, _ = d.register()
    assert r.status == 201
    assert d.stop() == 0
    d.env.update(REAL_COST)
    d.start()
    mw, mm = wrong_and_unknown_ms(d, email)
    assert abs(mm - mw) <= 0.15 * mw, (mw, mm)
    assert d.stop() == 0


# ---- overload ----------------------------------------------------------

def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


# Token checks, one after the other on one keep-alive connection, timed
# in a process of their own so the storm's threads cannot delay them.
PROBE = r"""
import http.client, json, sys, time
port, seconds, cap = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
token = sys.stdin.readline().strip()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
lat, statuses = [], set()
deadline = time.monotonic() + seconds
while time.monotonic() < deadline and len(lat) < cap:
    t = time.perf_counter()
    conn.request("GET", "/api/v1/auth/verify",
                 headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    r.read()
    lat.append(time.perf_counter() - t)
    statuses.add(r.status)
print(json.dumps({"lat": lat, "statuses": sorted(statuses)}))
"""


def test_login_storm_keeps_verify_fast(make_daemon):
    d = make_daemon(dict(REAL_COST, AUTH_LOG_LEVEL="info")).start()
    users = []
    for _ in range(6):
        r, email, pw = d.register()
        assert r.status == 201, r
        users.append((email, pw))
    token = d.login(*users[0]).json["access_token"]
    stop = threading.Event()
    done = []
    failures = []
    odd = []                                # non-200 answers, for the report

    def storm(email, pw):
        while not stop.is_set():
            try:
                r = d.login(email, pw, timeout=30)
                done.append(r.status)
                if r.status != 200:
                    odd.append((time.monotonic(), r.status, r.body[:300]))
            except OSError as e:            # recorded, asserted below
                failures.append(repr(e))

    threads = [threading.Thread(target=storm, args=u, daemon=True)
               for u in users]
    try:
        for t in threads:
            t.start()
        # Let the hash queue fill before measuring.
        assert wait_until(lambda: len(done) >= 4, timeout=30)
        probe = subprocess.run(
            [sys.executable, "-c", PROBE, str(d.port), "4", "20000"],
            input=(token + "\n").encode(), capture_output=True, timeout=60)
        during = len(done)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert probe.returncode == 0, probe.stderr.decode()[-2000:]
    out = json.loads(probe.stdout)
    lat = out["lat"]
    assert out["statuses"] == [200], out["statuses"]
    assert not failures, failures[:3]
    assert set(done) == {200}, (set(done), odd[:3])
    assert len(lat) >= 100
    assert len(done) > during > 4           # the storm went on throughout
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    print("login storm: %d logins, %d verifies, verify p50 %.2f ms, "
          "p99 %.2f ms, max %.2f ms" % (len(done), len(lat), p50 * 1e3,
                                        p99 * 1e3, max(lat) * 1e3))
    # The bound is the product's (release build); a sanitizer build runs
    # every instruction several times slower, so it gets three times it.
    bound = 0.060 if os.environ.get("AUTH_E2E_SANITIZED") else 0.020
    assert p99 < bound, "verify p99 %.1f ms during the storm" % (p99 * 1e3)
    assert d.stop() == 0


def test_full_hash_queue_answers_503_at_once(make_daemon):
    """Twelve logins at once on one hash worker with a queue of one: the
    ones that find it full are 503 at once. A burst that a loaded host
    spread out so that no login found the queue full proves nothing
    either way, and is sent again (at most five bursts)."""
    env = dict(REAL_COST, AUTH_HASH_WORKERS="1", AUTH_HASH_QUEUE="1",
               AUTH_LOG_LEVEL="info")
    d = make_daemon(env).start()
    n = 12
    lock = threading.Lock()

    def burst():
        go = threading.Barrier(n)
        results = []

        def one():
            go.wait(10)
            t = time.perf_counter()
            r = d.login(unknown_email(), "some password 1", timeout=60)
            with lock:
                results.append((r, time.perf_counter() - t))

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(results) == n
        return results

    for _ in range(5):
        results = burst()
        busy = [(r, dt) for r, dt in results if r.status == 503]
        slow = [(r, dt) for r, dt in results if r.status == 401]
        assert len(busy) + len(slow) == n, [r for r, _ in results]
        assert slow, [r for r, _ in results]
        for r, dt in busy:
            assert_problem(r, 503, "overloaded")
            assert retry_after(r) >= 1
            assert dt < 1.0, dt             # at once, not after the queue
        if busy:
            break
        assert wait_until(lambda: hash_jobs(d) == (0, 0), 30)
    assert busy, "no burst found the queue full"
    # The daemon recovers once the burst is over.
    assert_problem(d.login(unknown_email(), "some password 1"), 401)
    assert d.stop() == 0


# ---- slow and malformed clients ----------------------------------------

def open_partial(port, n):
    """n sockets, each with a request line and an unfinished header."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        socks.append(s)
    return socks


def test_slow_header_connections_do_not_block(daemon):
    socks = open_partial(daemon.port, 40)
    stop = threading.Event()

    def trickle():                          # one byte each, now and then
        while not stop.is_set():
            for s in socks:
                try:
                    s.sendall(b"a")
                except OSError:
                    pass
            stop.wait(0.2)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        for _ in range(5):
            started = time.monotonic()
            r = daemon.request("GET", "/healthz", timeout=5)
            assert r.status == 200
            assert time.monotonic() - started < 1.0
    finally:
        stop.set()
        t.join(5)
        for s in socks:
            s.close()


def test_idle_connection_times_out(make_daemon):
    d = make_daemon({"AUTH_CONNECTION_TIMEOUT": "2"}).start()
    s = open_partial(d.port, 1)[0]
    try:
        took = closed_within(s, 15)
    finally:
        s.close()
    assert took is not None, "a stalled client held its connection"
    assert 1.0 <= took <= 10, took
    assert d.stop() == 0


def healthy(d):
    try:
        return d.request("GET", "/healthz", timeout=5).status == 200
    except OSError:
        return False


def test_connections_per_address_are_limited(make_daemon):
    d = make_daemon({"AUTH_MAX_CONNECTIONS_PER_IP": "5"}).start()
    socks = open_partial(d.port, 5)
    try:
        extra = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        socks.append(extra)
        try:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        except OSError:
            pass
        # Six connections from one address, limit five: one of them is
        # closed at once. Usually the last; on a loaded machine the server
        # may register them in another order, and then the extra request
        # is answered while an earlier connection is the one refused.
        took = first_closed(socks, 5)
        assert took is not None and took < 2.0, took
    finally:
        for s in socks:
            s.close()
    # Once the server has seen those close, the address may connect again.
    assert wait_until(lambda: healthy(d), timeout=10)
    assert d.stop() == 0


def first_closed(socks, seconds):
    """Seconds until the server closed one of `socks`, or None."""
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select(socks, [], [], deadline - time.monotonic())
        for s in ready:
            try:
                data = s.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                return time.monotonic() - started
    return None


def test_random_bytes_on_the_socket(daemon):
    rnd = random.Random(20261128)
    payloads = [bytes(rnd.getrandbits(8) for _ in range(n))
                for n in (1, 7, 100, 1000, 4096, 30000)]
    payloads += [
        b"\x00" * 512,
        b"GET / HTTP/9.9\r\n\r\n",
        b"\r\n\r\n\r\n",
        b"POST " + b"/" * 5000 + b" HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 3000 + b"\r\n",
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: a\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
        b"\r\nzz\r\n" + os.urandom(64),
    ]
    for p in payloads:
        out = daemon.raw(p, timeout=1.5)
        if out:                 # else the server just closed: fine too
            status = out.split(b"\r\n", 1)[0].split(b" ")
            assert status[0] in (b"HTTP/1.0", b"HTTP/1.1"), (p[:40], out)
            assert status[1][:1] == b"4" or status[1] == b"505", \
                (p[:40], out[:80])
    assert daemon.proc.poll() is None
    assert daemon.request("GET", "/healthz").status == 200


def test_200_kb_header(daemon):
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    head = (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " +
            b"a" * 200 * 1024 + b"\r\n\r\n")
    out = b""
    try:
        try:
            s.sendall(head)
        except OSError:                     # the server may stop reading
            pass
        while True:
            c = s.recv(65536)
            if not c:
                break
            out += c
    except (socket.timeout, ConnectionResetError):
        pass
    finally:
        s.close()
    if out:
        status = out.split(b"\r\n", 1)[0]
        assert status.split()[1] in (b"431", b"400"), status
    assert daemon.proc.poll() is None
    assert daemon.request("GET", "/healthz").status == 200


# ---- hostile input -----------------------------------------------------

def test_weak_and_over_long_passwords(daemon):
    def register(password, email=None):
        email = email or "pw-%s@example.com" % secrets.token_hex(5)
        return daemon.request("POST", REGISTER, {"email": email,
                                                 "password": password})

    for bad in ("short", "1234567", "password", "PassWord1", "123456789",
                "qwertyuiop", "x" * 129, "é" * 129, "🔑" * 129,
                "x" * 5000):
        p = assert_problem(register(bad), 422, "validation_error")
        assert any(e["field"] == "password" for e in p["errors"]), p
    # A NUL inside: refused by the JSON parser or by the policy.
    assert register("abc\u0000defghijk").status in (400, 422)
    p = assert_problem(register("xx-paulwonder-xx",
                                "paulwonder@example.com"), 422)
    assert p["errors"][0]["field"] == "password"
    # Long and unusual but fine: no composition rules, no truncation.
    for good in ("é" * 128, "correct horse battery staple",
                 "🔑 spaces and emoji 🔑", "x" * 128):
        r = register(good)
        assert r.status == 201, (good[:20], r)
    r, email, pw = daemon.register(password="y" * 128)
    assert r.status == 201
    assert daemon.login(email, "y" * 128).status == 200
    assert_problem(daemon.login(email, "y" * 127), 401)
    assert_problem(daemon.login(email, "y" * 129), 401)
    # A huge password is refused before it reaches Argon2.
    started = time.monotonic()
    r = daemon.login(email, "y" * 12000)
    assert r.status in (401, 422), r
    assert time.monotonic() - started < 5.0


INJECTIONS = [
    "' OR '1'='1",
    "' OR 1=1 --@example.com",
    "admin'--@example.com",
    "a@example.com'; DROP TABLE users; --",
    "x\"; SELECT pg_sleep(10); --@example.com",
    "%27%20OR%201%3D1@example.com",
    "a@example.com\u0000",
    "a@example.com\r\nX-Injected: 1",
    "../../../../etc/passwd",
    "<script>alert(1)</script>@example.com",
    "${jndi:ldap://127.0.0.1/a}@example.com",
    "\\x00\\x1a@example.com",
    "a@[127.0.0.1]",
    "ädmin@exämple.com",
    "a" * 5000 + "@example.com",
    "*",
    "%",
    "_@example.com",
]


def test_injection_shaped_emails(daemon):
    r, email, pw = daemon.register()
    assert r.status == 201
    for bad in INJECTIONS:
        # 400: the JSON parser refuses a NUL inside a string.
        r = daemon.request("POST", REGISTER, {"email": bad,
                                              "password": "fine passphrase"})
        assert r.status in (201, 400, 422), (bad[:40], r)
        if r.status != 201:
            assert_problem(r, r.status)
        r = daemon.login(bad, "fine passphrase x")
        assert r.status in (400, 401, 422), (bad[:40], r)
        assert_problem(r, r.status)
        r = daemon.request("POST", LOGIN,
                           body=("grant_type=password&username=%s&password=x"
                                 % bad.replace("&", "%26")).encode(),
                           headers={"Content-Type":
                                    "application/x-www-form-urlencoded"})
        assert r.status in (400, 401, 422), (bad[:40], r)
    # Everything is still there and working.
    assert daemon.login(email, pw).status == 200
    assert daemon.request("GET", "/readyz").status == 200
    assert not any(e.get("level") == "error" for e in daemon.logs
                   if e.get("event", "").startswith(("db.", "repo."))), \
        [e for e in daemon.logs if e.get("level") == "error"][:3]


@pytest.mark.parametrize("raw, says", [
    (b'{"email": "a@example.com", "password": "x", "n": '
     b'12345678901234567890}', "out of range"),
    (b'{"email": "a@example.com", "password": "x", "n": 1e309}',
     "out of range"),
    (b'{"email": "a@example.com", "password": "x", "n": -1e309}',
     "out of range"),
    (b'{"email": "a@example.com", "email": "b@example.com", '
     b'"password": "x"}', "twice"),
    (b'{"email": "a@example.com", "password": "x",', "valid JSON object"),
])
def test_json_over_what_is_read_is_named(daemon, raw, says):
    """Valid JSON that the reader refuses (a number beyond a 64-bit
    integer or a double, in a member that would be ignored; a member
    named twice) is 400 malformed_json whose detail says which, not that
    the JSON is invalid; numbers within range in an unknown member are
    ignored."""
    r = daemon.request("POST", "/api/v1/auth/login", body=raw,
                       headers={"Content-Type": "application/json"})
    p = assert_problem(r, 400, "malformed_json")
    assert says in p["detail"], p
    ok = daemon.request("POST", "/api/v1/auth/login", body=b'{"email": '
                        b'"a@example.com", "password": "x", "n": 1e308, '
                        b'"m": 9223372036854775807}',
                        headers={"Content-Type": "application/json"})
    assert_problem(ok, 401, "invalid_credentials")
