"""Lockout and the limits on every check of a password or secret: one
address never locks the owner out elsewhere, concurrent guesses stop at
the threshold, DELETE /users/me and introspection are limited, no client
holds the hash pool, admins lift a lockout (HTTP and command line).

Client addresses other than 127.0.0.1 are simulated with X-Forwarded-For
through AUTH_TRUSTED_PROXIES=127.0.0.1. Every loop is bounded in count and
in time."""
import secrets
import threading
import time

import pytest

from conftest import assert_problem, assert_rate_limited, wait_until

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/users/me"
INTROSPECT = "/api/v1/auth/introspect"
PROXIED = {"AUTH_TRUSTED_PROXIES": "127.0.0.1"}
REAL_COST = {"AUTH_ARGON2_MEMORY_KIB": "19456", "AUTH_ARGON2_ITERATIONS": "2"}


def login_from(d, ip, email, password, timeout=30):
    return d.request("POST", LOGIN, {"email": email, "password": password},
                     headers={"X-Forwarded-For": ip}, timeout=timeout)


def retry_after(r):
    v = r.header("Retry-After")
    assert v is not None and v.isdigit() and int(v) >= 1, r.headers
    return int(v)


def make_admin(d):
    email = "admin-%s@example.com" % secrets.token_hex(4)
    r = d.command("user", "create", "--email", email, "--admin",
                  stdin=b"admin passphrase 1\n")
    assert r.returncode == 0, r.stderr
    t = d.login(email, "admin passphrase 1")
    assert t.status == 200, t
    return t.json["access_token"]


def hammer(d, ips, email, rounds, seconds):
    """Wrong logins of `email` from `ips` in turn: at least `rounds` of
    them and for at least `seconds` (bounded at 3x both). Returns the
    statuses seen."""
    seen = []
    t0 = time.monotonic()
    i = 0
    while (i < rounds or time.monotonic() - t0 < seconds) and \
            i < 3 * rounds and time.monotonic() - t0 < 3 * seconds + 30:
        r = login_from(d, ips[i % len(ips)], email, "not the password 9")
        assert r.status in (401, 429), r
        seen.append(r.status)
        i += 1
        if r.status == 429:
            time.sleep(0.02)
    return seen


def test_one_address_never_locks_the_owner_out(make_daemon):
    # Threshold 3, so the email's total locks everyone only past 30; the
    # short maximum delay lets the attacker's attempts through again and
    # again over several seconds.
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="3",
               AUTH_LOCKOUT_MAX_SECONDS="1")
    d = make_daemon(env).start()
    r, email, pw = d.register()
    assert r.status == 201, r
    attacker, owner = "203.0.113.66", "198.51.100.20"
    total = 0
    for _ in range(3):
        # More attempts than 10 x the threshold each round, over seconds.
        seen = hammer(d, [attacker], email, rounds=40, seconds=2.5)
        total += len(seen)
        assert seen.count(429) > 0              # the attacker is locked
        r = login_from(d, owner, email, pw)
        assert r.status == 200, r               # the owner never is
    assert total >= 120
    # The attacker paces itself to its lock: each delay that runs out
    # gives it one more check, and still nobody else is locked.
    for _ in range(3):
        r = login_from(d, attacker, email, "not the password 9")
        if r.status == 429:
            time.sleep(retry_after(r) + 0.2)
            r = login_from(d, attacker, email, "not the password 9")
        assert r.status == 401, r
        assert login_from(d, owner, email, pw).status == 200
    assert d.stop() == 0


def test_a_right_password_does_not_rearm_the_delay(make_daemon):
    """README "Lockout": once a delay has run out, one more attempt is
    checked; a right password that completes no login (a password change
    here, the password step with a second factor on) only takes its own
    attempt back, so it neither arms a new delay nor doubles the next.
    Each round: the run's delay runs out, the password changes, and the
    login with the new password that follows at once gets in."""
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="3",
               AUTH_LOCKOUT_MAX_SECONDS="60")
    d = make_daemon(env).start()
    r, email, pw = d.register()
    assert r.status == 201, r
    ip = "203.0.113.77"
    tok = login_from(d, ip, email, pw).json["access_token"]
    for i in range(3):
        for _ in range(3):                      # a run: 1 s delay armed
            assert login_from(d, ip, email, "not the password 9").status \
                == 401
        time.sleep(1.2)                         # the delay runs out
        new = "another passphrase %d" % i
        r = d.request("POST", "/api/v1/auth/password/change",
                      {"current_password": pw, "new_password": new},
                      token=tok, headers={"X-Forwarded-For": ip})
        assert r.status == 204, r
        pw = new
        r = login_from(d, ip, email, pw)
        assert r.status == 200, r               # 429 when it re-armed
        tok = r.json["access_token"]
    assert d.stop() == 0


def test_the_email_wide_lock_bounds_every_address(make_daemon):
    """README "Lockout": past 10 times the threshold in all, the email is
    locked the same way for every address, each attempt doubling its
    delay. Eleven addresses fill the total (31 checked), then go on guessing
    for eight seconds, each as its Retry-After allows: before, each
    address past its own threshold got a check per delay of its own
    (about one every 4 s each here, and more addresses, more checks); now
    the email's delay holds them all."""
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="3",
               AUTH_LOCKOUT_MAX_SECONDS="4", AUTH_RATE_LIMIT_PER_MINUTE="0")
    d = make_daemon(env).start()
    r, email, pw = d.register()
    assert r.status == 201, r
    ips = ["198.51.100.%d" % (10 + i) for i in range(11)]
    for ip in ips[:10]:
        for _ in range(3):
            assert login_from(d, ip, email, "not the password 9").status \
                == 401
    assert login_from(d, ips[10], email, "not the password 9").status == 401
    # an address never seen is locked too, and is not told it is its own
    # doing ("from this address", as the detail said)
    r = login_from(d, "203.0.113.77", email, "not the password 9")
    p = assert_problem(r, 429, "too_many_attempts")
    assert "address" not in p["detail"], p
    # Each address paces itself to the Retry-After it is told, as a
    # patient attacker does: hammering only re-arms its own delay.
    checked, tries = 0, 0
    due = {ip: 0.0 for ip in ips}
    t0 = time.monotonic()
    while time.monotonic() - t0 < 8 and tries < 400:
        now = time.monotonic()
        ready = [ip for ip in ips if due[ip] <= now]
        if not ready:
            time.sleep(0.05)
            continue
        r = login_from(d, ready[0], email, "not the password 9")
        assert r.status in (401, 429), r
        checked += r.status == 401
        due[ready[0]] = now + (retry_after(r) if r.status == 429 else 0)
        tries += 1
    assert tries >= 10, tries
    assert checked <= 4, (checked, tries)
    # the owner waits out the longest delay, once the guessing stops
    r = login_from(d, "203.0.113.9", email, pw)
    if r.status == 429:
        time.sleep(retry_after(r) + 0.2)
        r = login_from(d, "203.0.113.9", email, pw)
    assert r.status == 200, r
    assert d.stop() == 0


def test_ten_addresses_at_their_threshold_lock_no_one_else(make_daemon):
    """API contract: failures from all addresses lock an email "only past
    10 times the threshold, where each address contributes at most the
    threshold". Ten addresses, each making its threshold of failures at
    once (and more, refused), bring the total to exactly ten times the
    threshold: the owner, from an eleventh address, logs in. Before, the
    total locked at ten times the threshold, and ten addresses locked the
    owner out everywhere. Four rounds, each on a fresh account; the hash
    queue is large enough that no attempt is turned away for its share
    of it (an eighth), so all 30 reach the lockout."""
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="3",
               AUTH_LOCKOUT_MAX_SECONDS="60", AUTH_RATE_LIMIT_PER_MINUTE="0",
               AUTH_HASH_QUEUE="512")
    d = make_daemon(env).start()
    for rnd in range(4):
        r, email, pw = d.register()
        assert r.status == 201, r
        ips = ["198.51.%d.%d" % (100 + rnd, 10 + i) for i in range(10)]
        # each address 5 times at the same instant: 3 checked, 2 refused
        seen = parallel(50, lambda i: login_from(
            d, ips[i % 10], email, "not the password 9").status)
        assert seen.count(401) == 30, seen
        assert seen.count(429) == 20, seen
        r = login_from(d, "203.0.%d.9" % (100 + rnd), email, pw)
        assert r.status == 200, (rnd, r)
    assert d.stop() == 0


def test_ten_addresses_guessing_during_the_owners_check_lock_no_one_else(
        make_daemon):
    """The owner's right password (a password change here, from an
    eleventh address) takes the email's total from ten addresses' worth
    to the limit while it is checked, and ten addresses past their
    threshold go on guessing meanwhile: refused, but counted, since the
    limit is reached. Its take-back takes theirs back too. Before, the
    total stayed past the limit and the owner's next login, from a
    twelfth address, got 429 (6 of 6 rounds on PostgreSQL, 4 of 5 on
    SQLite). Three rounds, each on a fresh account, with the real
    Argon2 cost so the check lasts."""
    env = dict(PROXIED, **REAL_COST, AUTH_LOCKOUT_THRESHOLD="3",
               AUTH_LOCKOUT_MAX_SECONDS="60", AUTH_RATE_LIMIT_PER_MINUTE="0",
               AUTH_HASH_QUEUE="512")
    d = make_daemon(env).start()
    for rnd in range(3):
        email, pw, tok = d.user()
        ips = ["198.18.%d.%d" % (rnd, 10 + i) for i in range(10)]
        seen = parallel(30, lambda i: login_from(
            d, ips[i % 10], email, "not the password 9").status)
        assert seen.count(401) == 30, seen
        stop = threading.Event()
        refused = []

        def hammer(ip):
            n = 0
            while not stop.is_set() and n < 500:
                r = login_from(d, ip, email, "not the password 9")
                refused.append(r.status)
                n += 1

        ts = [threading.Thread(target=hammer, args=(ip,)) for ip in ips]
        for t in ts:
            t.start()
        assert wait_until(lambda: len(refused) >= 20, 30)
        new = "brand new passphrase %d" % rnd
        r = d.request("POST", "/api/v1/auth/password/change",
                      {"current_password": pw, "new_password": new},
                      token=tok["access_token"],
                      headers={"X-Forwarded-For": "198.18.%d.50" % rnd})
        stop.set()
        for t in ts:
            t.join(60)
        assert r.status == 204, r
        assert set(refused) == {429}, set(refused)
        r = login_from(d, "198.18.%d.51" % rnd, email, new)
        assert r.status == 200, (rnd, r, len(refused))
    assert d.stop() == 0


@pytest.mark.parametrize("name", ["no-at-sign", "\u00c4dam@example.com",
                                  "two@@example.com"])
def test_a_name_that_is_no_email_is_locked_too(make_daemon, name):
    """Failed logins to a login name that is not an email count like an
    unknown email's (one count for its spellings), so one address does
    not get unlimited answers (or hashing) from it."""
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="3")
    d = make_daemon(env).start()
    attacker = "203.0.113.77"
    seen = [login_from(d, attacker, (" " + name.upper()) if i % 2 else name,
                       "not the password 9").status for i in range(6)]
    assert seen == [401, 401, 401, 429, 429, 429], seen
    r = login_from(d, "198.51.100.21", name, "not the password 9")
    assert r.status == 401, r                   # another address is not
    assert d.stop() == 0


def test_one_ipv6_64_is_one_address(make_daemon):
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="3",
               AUTH_LOCKOUT_MAX_SECONDS="1")
    d = make_daemon(env).start()
    r, email, pw = d.register()
    assert r.status == 201, r
    # 40 addresses of one /64, 3 wrong logins each: 120 failures that
    # would lock the email everywhere if each address counted apart.
    ips = ["2001:db8:aa:bb:%x::%x" % (i, i + 1) for i in range(40)]
    seen = hammer(d, [ip for ip in ips for _ in range(3)], email,
                  rounds=120, seconds=0)
    assert seen.count(401) == 3, seen           # locked as one address
    assert login_from(d, ips[0], email, pw).status == 429
    r = login_from(d, "2001:db8:aa:cc::1", email, pw)
    assert r.status == 200, r                   # the next /64 is not
    assert d.stop() == 0


def parallel(n, fn):
    go = threading.Barrier(n)
    out = [None] * n

    def one(i):
        go.wait(10)
        out[i] = fn(i)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert all(o is not None for o in out)
    return out


def test_concurrent_guesses_stop_at_the_threshold(make_daemon):
    # Eight hashing threads, so eight guesses are checked side by side
    # unless the count is taken before the hash.
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="3",
               AUTH_LOCKOUT_MAX_SECONDS="60", AUTH_HASH_WORKERS="8",
               AUTH_HASH_QUEUE="512", AUTH_LOG_LEVEL="info")
    d = make_daemon(env).start()
    for rnd in range(6):
        r, email, pw = d.register()
        assert r.status == 201, r
        ip = "192.0.2.%d" % (10 + rnd)
        res = parallel(16, lambda i: login_from(d, ip, email,
                                                "wrong guess %d" % i))
        statuses = sorted(x.status for x in res)
        assert set(statuses) <= {401, 429}, statuses
        assert statuses.count(401) <= 3, (rnd, statuses)
        for x in res:
            if x.status == 429:
                assert_problem(x, 429, "too_many_attempts")
                retry_after(x)
    assert d.stop() == 0, "\n".join(d.lines[-20:])


def test_delete_me_wrong_passwords_are_locked_out(make_daemon):
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="5",
               AUTH_LOCKOUT_MAX_SECONDS="60")
    d = make_daemon(env).start()
    email, pw, tok = d.user()
    statuses = []
    for i in range(100):
        r = d.request("DELETE", ME, {"password": "wrong one %d" % i},
                      token=tok["access_token"])
        statuses.append(r.status)
        if r.status == 429:
            assert_problem(r, 429, "too_many_attempts")
            retry_after(r)
    assert statuses[:5] == [401] * 5, statuses
    assert statuses[5:] == [429] * 95, statuses
    # Locked for this address even with the right password, and for a
    # login too: it is one count. The account is still there.
    r = d.request("DELETE", ME, {"password": pw}, token=tok["access_token"])
    assert r.status == 429, r
    assert d.login(email, pw).status == 429
    assert d.request("GET", ME, token=tok["access_token"]).status == 200
    # The wrong current password of a password change counts the same.
    other = "198.51.100.77"
    for i in range(6):
        r = d.request("POST", "/api/v1/auth/password/change",
                      {"current_password": "nope %d" % i,
                       "new_password": "a brand new passphrase"},
                      token=tok["access_token"],
                      headers={"X-Forwarded-For": other})
        assert r.status == (401 if i < 5 else 429), (i, r)
    assert d.stop() == 0


def test_delete_me_is_rate_limited(make_daemon):
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="1000",
               AUTH_RATE_LIMIT_PER_MINUTE="20")
    d = make_daemon(env).start()
    email, pw, tok = d.user()
    statuses = []
    t0 = time.monotonic()
    for i in range(100):
        r = d.request("DELETE", ME, {"password": "wrong one %d" % i},
                      token=tok["access_token"],
                      headers={"X-Forwarded-For": "203.0.113.40"})
        statuses.append(r.status)
    assert_rate_limited(statuses, time.monotonic() - t0, 20, 20)
    assert d.stop() == 0


def test_one_client_cannot_starve_the_hash_pool(make_daemon):
    # One hashing thread and room for 16: a client may have 2 in flight.
    env = dict(REAL_COST, **PROXIED, AUTH_HASH_WORKERS="1",
               AUTH_HASH_QUEUE="16", AUTH_LOCKOUT_THRESHOLD="1000",
               AUTH_LOG_LEVEL="info")
    d = make_daemon(env).start()
    _, _, flood_tok = d.user()
    r, owner, owner_pw = d.register()
    assert r.status == 201
    stop = threading.Event()
    flood = []

    def flooder():
        while not stop.is_set() and len(flood) < 5000:
            r = d.request("DELETE", ME, {"password": "wrong password 1"},
                          token=flood_tok["access_token"], timeout=60)
            flood.append(r.status)
            if r.status != 401:
                time.sleep(0.01)

    threads = [threading.Thread(target=flooder, daemon=True)
               for _ in range(24)]
    owner_statuses = []
    try:
        for t in threads:
            t.start()
        assert wait_until(lambda: len(flood) >= 40, timeout=30)
        for i in range(5):
            r = login_from(d, "198.51.100.%d" % (50 + i), owner, owner_pw,
                           timeout=60)
            owner_statuses.append(r.status)
    finally:
        stop.set()
        for t in threads:
            t.join(90)
    assert owner_statuses == [200] * 5, owner_statuses
    assert set(flood) <= {401, 429}, set(flood)
    assert d.stop() == 0


def test_introspection_secret_is_rate_limited(make_daemon):
    secret = "introspection-secret-" + secrets.token_hex(16)
    env = dict(PROXIED, AUTH_INTROSPECTION_TOKEN=secret,
               AUTH_RATE_LIMIT_PER_MINUTE="5")
    d = make_daemon(env).start()

    def introspect(caller, ip):
        return d.request("POST", INTROSPECT, body=b"token=x",
                         headers={"Content-Type":
                                  "application/x-www-form-urlencoded",
                                  "Authorization": "Bearer " + caller,
                                  "X-Forwarded-For": ip})

    # Right secrets cost nothing: many of them pass.
    for _ in range(8):
        r = introspect(secret, "192.0.2.30")
        assert r.status == 200 and r.json == {"active": False}, r
    # Wrong ones of any length cost a token each: 5, then 429.
    wrong = ["x", secret[:-1], secret + "x", "y" * 200, secret[::-1]]
    for w in wrong:
        assert_problem(introspect(w, "203.0.113.9"), 401, "unauthorized")
    r = introspect("z" * 40, "203.0.113.9")
    assert_problem(r, 429, "too_many_attempts")
    retry_after(r)
    # Once out of tokens, even the right secret is not compared.
    assert introspect(secret, "203.0.113.9").status == 429
    assert introspect(secret, "192.0.2.30").status == 200
    assert d.stop() == 0


def test_admin_lifts_a_lockout(make_daemon):
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="2",
               AUTH_LOCKOUT_MAX_SECONDS="600", AUTH_LOG_LEVEL="info")
    d = make_daemon(env).start()
    admin = make_admin(d)
    r, email, pw = d.register()
    assert r.status == 201
    uid = r.json["id"]
    ip = "203.0.113.77"
    hammer(d, [ip], email, rounds=5, seconds=0)
    r = login_from(d, ip, email, pw)
    assert_problem(r, 429, "too_many_attempts")
    assert retry_after(r) > 10
    path = "/api/v1/users/%s/lockout" % uid
    # Only admins; unknown users are 404.
    user_tok = login_from(d, "192.0.2.99", email, pw).json["access_token"]
    assert_problem(d.request("DELETE", path, token=user_tok), 403,
                   "forbidden")
    assert_problem(d.request("DELETE", path), 401)
    assert_problem(d.request("DELETE", "/api/v1/users/%s/lockout" %
                             "0190c1d2-0000-7000-8000-000000000000",
                             token=admin), 404, "not_found")
    assert_problem(d.request("DELETE", "/api/v1/users/nope/lockout",
                             token=admin), 404, "not_found")
    r = d.request("DELETE", path, token=admin)
    assert r.status == 204, r
    assert login_from(d, ip, email, pw).status == 200
    assert wait_until(lambda: any(
        e.get("event") == "audit" and e.get("action") == "user.unlocked" and
        e.get("user_id") == uid for e in d.logs))
    assert d.stop() == 0


def test_cli_lifts_a_lockout(make_daemon):
    env = dict(PROXIED, AUTH_LOCKOUT_THRESHOLD="2",
               AUTH_LOCKOUT_MAX_SECONDS="600")
    d = make_daemon(env).start()
    r, email, pw = d.register()
    assert r.status == 201
    ip = "203.0.113.78"
    hammer(d, [ip], email, rounds=5, seconds=0)
    assert login_from(d, ip, email, pw).status == 429
    c = d.command("user", "unlock", "--email", email.upper())
    assert c.returncode == 0, c.stderr
    assert b"user.unlocked" in c.stderr
    assert login_from(d, ip, email, pw).status == 200
    c = d.command("user", "unlock", "--email", "nobody@example.com")
    assert c.returncode == 2 and b"not_found" in c.stderr
    assert d.command("user", "unlock").returncode == 2
    assert d.command("user", "unlock", "--email", "not an email"
                     ).returncode == 2
    assert d.stop() == 0
