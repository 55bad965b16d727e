"""Several instances on one PostgreSQL database, sharing keys through one
data folder: tokens cross instances, revocations reach the other instance
within AUTH_SESSION_CACHE_SECONDS, refresh rotation holds across them, key
rotation keeps old tokens everywhere, and instances starting together
migrate once. PostgreSQL only: skipped without AUTH_E2E_PG_URL."""
import os
import signal
import subprocess
import threading
import time

import pytest

import conftest
from conftest import BACKENDS, PG_URL, ROOT, Daemon, pg_database, \
    wait_until
from jwtutil import parts

pytestmark = pytest.mark.skipif(
    not PG_URL or "postgres" not in BACKENDS,
    reason="several instances need AUTH_E2E_PG_URL and the postgres backend")

CACHE_SECONDS = 2


@pytest.fixture
def make_pair():
    """Factory: two daemons (not started) on one fresh database and one
    shared data folder, so one set of keys. Both must stop cleanly."""
    made = []

    def make(env=None):
        url = pg_database(PG_URL)
        shared = conftest.scratch("auth-multi-")
        full = {"AUTH_SESSION_CACHE_SECONDS": str(CACHE_SECONDS),
                "AUTH_KEY_PUBLISH_SECONDS": "0"}  # rotation tests: at once
        full.update(env or {})
        pair = [Daemon("postgres", env=full, data_dir=shared,
                       database_url=url) for _ in range(2)]
        made.extend(pair)
        return pair[0], pair[1], url

    yield make
    codes = [(d.stop(), d) for d in made]
    for code, d in codes:
        assert code in (0, None), "\n".join(d.lines[-20:])


def started(make_pair, env=None):
    a, b, url = make_pair(env)
    return a.start(), b.start(), url


def verify(d, token):
    return d.request("GET", "/api/v1/auth/verify", token=token)


def refresh(d, rt):
    return d.request("POST", "/api/v1/auth/refresh", {"refresh_token": rt})


def psql(url, sql):
    r = subprocess.run(["psql", url, "-X", "-q", "-tA", "-v",
                        "ON_ERROR_STOP=1", "-c", sql], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split("|") for line in r.stdout.splitlines() if line]


def test_token_from_one_accepted_by_other(make_pair):
    a, b, _ = started(make_pair)
    email, _, t = a.user()
    r = verify(b, t["access_token"])
    assert r.status == 200, r
    assert r.header("X-Auth-Email") == email
    r = b.request("GET", "/api/v1/users/me", token=t["access_token"])
    assert r.status == 200, r
    assert r.json["email"] == email
    # and the other way round
    _, _, t2 = b.user()
    assert verify(a, t2["access_token"]).status == 200
    # a token that neither issued is still refused by both
    forged = t["access_token"][:-4] + ("AAAA" if not t["access_token"]
                                       .endswith("AAAA") else "BBBB")
    assert verify(a, forged).status == 401
    assert verify(b, forged).status == 401


def test_logout_at_one_seen_by_other_within_cache_time(make_pair):
    a, b, _ = started(make_pair)
    _, _, t = a.user()
    assert verify(a, t["access_token"]).status == 200    # A caches it
    t_logout = time.monotonic()
    r = b.request("POST", "/api/v1/auth/logout",
                  {"refresh_token": t["refresh_token"]})
    assert r.status == 204, r
    assert verify(b, t["access_token"]).status == 401    # B at once
    deadline = CACHE_SECONDS + 1.0
    assert wait_until(lambda: verify(a, t["access_token"]).status == 401,
                      timeout=deadline, interval=0.05), \
        "A still accepts the session %.1f s after the logout at B" % deadline
    seen_after = time.monotonic() - t_logout
    print("\nlogout at B seen at A after %.0f ms" % (seen_after * 1000))
    assert seen_after <= deadline + 0.5
    # and it stays refused
    assert verify(a, t["access_token"]).status == 401


def test_concurrent_refresh_across_instances_one_child(make_pair):
    a, b, _ = started(make_pair)
    _, _, t = a.user()
    n = 8
    barrier = threading.Barrier(n)
    out = [None] * n

    def one(i):
        barrier.wait(30)
        out[i] = refresh((a, b)[i % 2], t["refresh_token"])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert all(r is not None for r in out), "a refresh did not answer"
    ok = [r for r in out if r.status == 200]
    assert ok, out
    children = {r.json["refresh_token"] for r in ok}
    assert len(children) == 1, children
    # within the grace window every racer gets that child: nobody is
    # logged out by the race
    assert len(ok) == n, out
    child = children.pop()
    assert child != t["refresh_token"]
    sids = {parts(r.json["access_token"])[1]["sid"] for r in ok}
    assert sids == {parts(t["access_token"])[1]["sid"]}
    # the child rotates on at either instance; the session lives on
    r = refresh(b, child)
    assert r.status == 200, r
    assert verify(a, r.json["access_token"]).status == 200


def test_replay_after_grace_at_other_instance_kills_session(make_pair):
    grace = 1
    a, b, _ = started(make_pair,
                      {"AUTH_REFRESH_REUSE_GRACE_SECONDS": str(grace)})
    _, _, t = a.user()
    assert verify(a, t["access_token"]).status == 200    # A caches it
    assert verify(b, t["access_token"]).status == 200    # and B
    t_rotated = time.monotonic()        # the rotation happens after this
    r = refresh(a, t["refresh_token"])
    assert r.status == 200, r
    child = r.json
    # Replay the parent at B until the grace window is over: inside it
    # B hands out the same child, after it the replay is detected.
    answers = []

    def replayed():
        r = refresh(b, t["refresh_token"])
        answers.append(r)
        return r.status == 401
    assert wait_until(replayed, timeout=grace + 10, interval=0.05)
    # not before the window was over (0.1 s for the two clocks)
    assert time.monotonic() - t_rotated >= grace - 0.1
    early = answers[:-1]
    assert all(r.status == 200 and
               r.json["refresh_token"] == child["refresh_token"]
               for r in early), early
    assert wait_until(lambda: any(
        e.get("event") == "audit" and
        e.get("action") == "refresh_reuse_detected" for e in b.logs))
    # the session is dead everywhere: its access tokens (at once where the
    # replay was seen, within the cache time at the other) and its child
    assert verify(b, t["access_token"]).status == 401
    assert verify(b, child["access_token"]).status == 401
    assert wait_until(lambda: verify(a, child["access_token"]).status == 401
                      and verify(a, t["access_token"]).status == 401,
                      timeout=CACHE_SECONDS + 1.0, interval=0.05)
    assert refresh(a, child["refresh_token"]).status == 401
    assert refresh(b, child["refresh_token"]).status == 401


def test_key_rotation_across_instances(make_pair):
    a, b, _ = started(make_pair)
    email, password, t_old = a.user()
    kid_old = parts(t_old["access_token"])[0]["kid"]
    r = a.command("keys", "rotate")          # once, on the shared folder
    assert r.returncode == 0, r.stderr
    kid_new = r.stdout.decode().strip()
    assert kid_new and kid_new != kid_old
    for d in (a, b):
        d.proc.send_signal(signal.SIGHUP)
    for d in (a, b):
        assert wait_until(lambda: any(
            e.get("event") == "keys.reloaded" and e.get("kid") == kid_new
            for e in d.logs)), "no reload at %d" % d.port
    for d in (a, b):
        kids = {k["kid"] for k in d.request(
            "GET", "/.well-known/jwks.json").json["keys"]}
        assert {kid_old, kid_new} <= kids, kids
        # a token from before the rotation is still good everywhere
        assert verify(d, t_old["access_token"]).status == 200
    for signer, other in ((a, b), (b, a)):
        t_new = signer.login(email, password)
        assert t_new.status == 200, t_new
        assert parts(t_new.json["access_token"])[0]["kid"] == kid_new
        assert verify(other, t_new.json["access_token"]).status == 200


def test_instances_starting_together_migrate_once(make_pair):
    a, b, url = make_pair()
    barrier = threading.Barrier(2)
    errors = []

    def go(d):
        try:
            barrier.wait(30)
            d.start()
        except Exception as e:        # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(d,)) for d in (a, b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    for d in (a, b):                    # after the prober's first ping
        assert wait_until(lambda: d.request("GET", "/readyz").status == 200,
                          timeout=15)
    folder = os.path.join(ROOT, "migrations", "postgres")
    versions = sorted(int(f.split("_", 1)[0]) for f in os.listdir(folder)
                      if f.endswith(".sql"))
    assert versions
    migrated = sorted(e["version"] for d in (a, b) for e in d.logs
                      if e.get("event") == "db.migrated")
    assert migrated == versions, migrated
    rows = psql(url, "SELECT version, count(*) FROM schema_migrations "
                     "GROUP BY version ORDER BY version")
    assert [(int(v), int(c)) for v, c in rows] == \
        [(v, 1) for v in versions], rows
    # and they made the same keys, first writer winning
    _, _, t = a.user()
    assert verify(b, t["access_token"]).status == 200


def test_instances_of_two_argon2_costs_settle_on_the_dearer_hash(make_pair):
    """Two instances on one database with different Argon2 costs, as in a
    rolling change of AUTH_ARGON2_*: only a weaker hash is replaced
    (README "Argon2id"), so after the first upgrade the account's hash
    stays the dearer one and right passwords keep logging in on both.
    When each instance replaced any hash not of its own cost, they
    replaced each other's at every login, and a login whose checked hash
    had just been replaced was refused 401 (about one in six here)."""
    costs = ({"AUTH_ARGON2_MEMORY_KIB": "8192"},
             {"AUTH_ARGON2_MEMORY_KIB": "9216"})
    a, b, url = make_pair({"AUTH_ARGON2_ITERATIONS": "1",
                           "AUTH_MAX_CONNECTIONS_PER_IP": "0",
                           "AUTH_RATE_LIMIT_PER_MINUTE": "0"})
    a.env.update(costs[0])
    b.env.update(costs[1])
    a.start()
    b.start()
    r, email, pw = a.register()
    assert r.status == 201, r
    answers, lock = [], threading.Lock()

    def logins(d):
        for _ in range(25):
            st = d.login(email, pw).status
            with lock:
                answers.append(st)

    threads = [threading.Thread(target=logins, args=(d,))
               for d in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(answers) == 100
    # logins in flight when the first upgrade landed log in too (below)
    assert all(st == 200 for st in answers), answers
    stored = subprocess.run(
        ["psql", url, "-tAq", "-c", "SELECT password_hash FROM users "
         "WHERE email = '%s'" % email], check=True, capture_output=True,
        text=True).stdout
    assert "$m=9216,t=1,p=1$" in stored, stored
    assert a.login(email, pw).status == 200
    assert b.login(email, pw).status == 200


@pytest.mark.parametrize("factor", ["password", "totp"])
def test_a_login_whose_hash_another_instance_replaced_meanwhile(make_pair,
                                                                factor):
    """The first login of an old-cost account on the instance of the
    dearer cost replaces its hash while logins on the other instance,
    which checked the old one, are still hashing. A new hash of the same
    password is no change of password (password_gen, migration 0015), so
    they log in (200), or with a second factor on get their mfa_token
    (403). Comparing hashes, they were refused 401 and counted as
    failures: 10-16 of 100 password logins here, 7-8 of 100 with TOTP
    on (a login finished with a code or a passkey has no password to
    check once more either)."""
    from test_mfa import setup_mfa
    a, b, _ = make_pair({"AUTH_ARGON2_ITERATIONS": "1",
                         "AUTH_MAX_CONNECTIONS_PER_IP": "0",
                         "AUTH_RATE_LIMIT_PER_MINUTE": "0",
                         # one address's share of it: 16 hashing requests
                         "AUTH_HASH_QUEUE": "128"})
    a.env["AUTH_ARGON2_MEMORY_KIB"] = "8192"
    b.env["AUTH_ARGON2_MEMORY_KIB"] = "16384"
    a.start()
    b.start()
    want = 200 if factor == "password" else 403
    answers = []
    for _ in range(10):
        r, email, pw = a.register()
        assert r.status == 201, r
        if factor == "totp":          # set up on the cheaper instance
            t = a.login(email, pw)
            assert t.status == 200, t
            setup_mfa(a, email, pw, t.json["access_token"])
        got, lock, go = [], threading.Lock(), threading.Event()

        def login(d, delay):
            go.wait(10)
            time.sleep(delay)
            st = d.login(email, pw).status
            with lock:
                got.append((d is b, st))

        # the other instance's logins start over the upgrade's span: it
        # checks the old hash, then hashes at its own cost and stores
        threads = [threading.Thread(target=login, args=(b, 0))] + [
            threading.Thread(target=login, args=(a, i * 0.004))
            for i in range(9)]
        for t in threads:
            t.start()
        go.set()
        for t in threads:
            t.join(60)
        assert len(got) == 10
        answers += got
    assert all(st == want for _, st in answers), answers
