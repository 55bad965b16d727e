"""Three instances on three data folders and one PostgreSQL database,
sharing nothing else: tokens accepted everywhere, revocations announced
with NOTIFY and seen at the others at once (the session cache is set to a
minute, so only the announcement explains it), the LISTEN connection
killed and made again, key rotation published and switched without a
signal, keys sealed in the database, and a simultaneous first start.
PostgreSQL only: skipped without AUTH_E2E_PG_URL.

Run with -s to see the revocation latencies (median and maximum)."""
import base64
import glob
import os
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import BACKENDS, PG_URL, Daemon, pg_database, wait_until
from jwtutil import parts

pytestmark = pytest.mark.skipif(
    not PG_URL or "postgres" not in BACKENDS,
    reason="several instances need AUTH_E2E_PG_URL and the postgres backend")

CACHE_SECONDS = 60        # longer than any bound below: NOTIFY or nothing
SEEN_WITHIN = 2.0         # generous: the figure printed is what counts
TRIALS = 30
PUBLISH_SECONDS = 4
LISTENER = "auth-serve-listen"


def psql(url, sql):
    r = subprocess.run(["psql", url, "-X", "-q", "-tA", "-v",
                        "ON_ERROR_STOP=1", "-c", sql], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split("|") for line in r.stdout.splitlines() if line]


def pg_bin(name):
    """A PostgreSQL client program of the cluster's own version."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name))
    path = found[-1] if found else shutil.which(name)
    if not path:
        pytest.skip("%s not found" % name)
    return path


@pytest.fixture
def make_trio():
    """Factory: three daemons (not started) on one fresh database, each
    with its own data folder. All must stop cleanly."""
    made = []

    def make(env=None, data_dirs=None):
        url = pg_database(PG_URL)
        full = {"AUTH_SESSION_CACHE_SECONDS": str(CACHE_SECONDS),
                "AUTH_KEY_PUBLISH_SECONDS": str(PUBLISH_SECONDS)}
        full.update(env or {})
        trio = [Daemon("postgres", env=full, database_url=url,
                       data_dir=(data_dirs or [None] * 3)[i])
                for i in range(3)]
        made.extend(trio)
        return trio, url

    yield make
    codes = [(d.stop(), d) for d in made]
    for code, d in codes:
        assert code in (0, None), "\n".join(d.lines[-20:])


def trio_started(make_trio, env=None):
    trio, url = make_trio(env)
    for d in trio:
        d.start()
    for d in trio:            # each one listens before the test begins
        assert wait_until(lambda: listening(d) >= 1), d.lines[-20:]
    return trio, url


def listening(d):
    return sum(1 for e in d.logs if e.get("event") == "fleet.listening")


def stand_still(pid, timeout=10.0):
    """Stops process `pid` (SIGSTOP) and returns once every thread of it
    has stopped. kill(2) returns before they do: each thread stops when
    it next runs, and on a loaded host a thread of the daemon may first
    serve a request that came meanwhile. A test of what happens while the
    process stands still must not send it anything before then (a request
    served before the stop is within the revocation's usual delay)."""
    os.kill(pid, signal.SIGSTOP)

    def stopped():
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except FileNotFoundError:
            return True                       # ended: nothing runs
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    state = f.read().rpartition(")")[2].split()[0]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue                      # that thread ended
            if state not in ("T", "t", "Z", "X"):   # stopped, or gone
                return False
        return True

    assert wait_until(stopped, timeout=timeout, interval=0.001), \
        "process %d did not stop within %ss" % (pid, timeout)


def verify(d, token):
    return d.request("GET", "/api/v1/auth/verify", token=token)


def admin(d):
    """An admin made with the CLI and logged in at `d`: (email, token)."""
    email = "admin-%s@example.com" % os.urandom(4).hex()
    pw = "correct horse admin " + os.urandom(4).hex()
    r = d.command("user", "create", "--email", email, "--admin",
                  stdin=pw.encode())
    assert r.returncode == 0, r.stderr
    t = d.login(email, pw)
    assert t.status == 200, t
    return email, pw, t.json["access_token"]


def seen(others, check, bound=SEEN_WITHIN):
    """Seconds until check(d) holds at every instance of `others` (polled
    without pause), or None past `bound`."""
    t0 = time.monotonic()
    pending = list(others)
    while pending:
        pending = [d for d in pending if not check(d)]
        if time.monotonic() - t0 > bound:
            return None
    return time.monotonic() - t0


def report(name, lat):
    ms = sorted(x * 1000 for x in lat)
    print("\n%s at the other instances: n=%d median %.1f ms, max %.1f ms"
          % (name, len(ms), statistics.median(ms), ms[-1]))


def test_tokens_accepted_everywhere(make_trio):
    (a, b, c), _ = trio_started(make_trio)
    for signer in (a, b, c):
        _, _, t = signer.user()
        for d in (a, b, c):
            r = verify(d, t["access_token"])
            assert r.status == 200, (signer.port, d.port, r)
    kids = [frozenset(k["kid"] for k in d.request(
        "GET", "/.well-known/jwks.json").json["keys"]) for d in (a, b, c)]
    assert kids[0] == kids[1] == kids[2] and len(kids[0]) == 1
    # one refresh-derivation key: a retry at another instance within the
    # grace gets the same child
    rt = t["refresh_token"]
    got = [d.request("POST", "/api/v1/auth/refresh", {"refresh_token": rt})
           for d in (b, c, a)]
    assert [r.status for r in got] == [200] * 3, got
    assert len({r.json["refresh_token"] for r in got}) == 1


def test_logout_seen_everywhere_at_once(make_trio):
    (a, b, c), _ = trio_started(make_trio)
    email, pw, _ = a.user()
    lat = []
    for _ in range(TRIALS):
        t = a.login(email, pw).json
        for d in (b, c):                     # cached there as live
            assert verify(d, t["access_token"]).status == 200
        r = a.request("POST", "/api/v1/auth/logout",
                      {"refresh_token": t["refresh_token"]},
                      token=t["access_token"])
        assert r.status in (200, 204), r
        s = seen((b, c), lambda d: verify(d, t["access_token"]).status
                 == 401)
        assert s is not None, "logout not seen within %ss" % SEEN_WITHIN
        lat.append(s)
    report("logout", lat)


def test_an_instance_that_stood_still_answers_no_revoked_session(make_trio):
    """An instance whose process stands still (SIGSTOP here; a CPU quota's
    throttle or a paused machine alike) while another revokes a session
    it has cached: a /verify that reached it during the stop is answered
    after it, when the revocation's announcement may still wait unread in
    its listener's socket. It must not be answered 200 from the cache
    (README "Several instances"). Before, 4-9 of 20 such rounds were
    (stops of 0.2-0.5 s); each round is one logout."""
    (a, b, _), _ = trio_started(make_trio)
    email, pw, _ = a.user()
    answers = []
    for rnd in range(10):
        t = a.login(email, pw).json
        assert verify(b, t["access_token"]).status == 200   # cached at b
        out = {}
        try:
            stand_still(b.proc.pid)
            r = a.request("POST", "/api/v1/auth/logout",
                          {"refresh_token": t["refresh_token"]})
            assert r.status == 204, r
            th = threading.Thread(target=lambda: out.update(
                r=verify(b, t["access_token"])))
            th.start()
            time.sleep(0.2 + 0.03 * rnd)     # the stop itself, 0.2-0.47 s
        finally:
            b.proc.send_signal(signal.SIGCONT)
        th.join(60)
        answers.append(out["r"].status)
    assert answers == [401] * 10, answers


def test_a_stood_still_instance_whose_listener_was_lost_answers_none(
        make_trio):
    """As above, and the stopped instance's LISTEN connection is ended
    meanwhile (pg_terminate_backend), so the announcement of the
    revocation (a logout-all) is lost with it. On resume the listener
    finds the connection gone: the entries must not answer until a new
    connection has emptied the cache. Before, the loss lifted the check
    and 28-29 of 29 queued requests were answered 200 (8 of 8 rounds).
    Three rounds of 12 sessions."""
    (a, b, _), url = trio_started(make_trio)
    for rnd in range(3):
        email, pw, _ = a.user()
        toks = [a.login(email, pw).json["access_token"] for _ in range(12)]
        for t in toks:
            assert verify(b, t).status == 200              # cached at b
        out = []
        try:
            stand_still(b.proc.pid)
            rows = psql(url, "SELECT pg_terminate_backend(pid) FROM "
                             "pg_stat_activity WHERE application_name = "
                             "'%s' AND datname = current_database()"
                        % LISTENER)
            assert len(rows) == 3, rows
            r = a.request("POST", "/api/v1/auth/logout-all", token=toks[0])
            assert r.status == 204, r
            ths = [threading.Thread(target=lambda t=t: out.append(
                verify(b, t).status)) for t in toks[1:]]
            for th in ths:
                th.start()
            time.sleep(0.3)                       # the stop itself
        finally:
            b.proc.send_signal(signal.SIGCONT)
        for th in ths:
            th.join(60)
        assert out == [401] * 11, (rnd, out)
        for d in (a, b):                          # listening again
            assert wait_until(lambda: listening(d) >= rnd + 2, 30)


def test_an_instance_whose_listener_went_silent_answers_no_revoked_session(
        make_trio):
    """The server process of every LISTEN connection stands still
    (SIGSTOP: a stuck backend, or a network that drops the packets,
    alike): the connections stay open and silent. Before, b read nothing
    from its connection, took itself for up to date and answered the
    session logged out at a from its cache for as long as the cache kept
    it (a review: 45 s, the cache set to a minute). The listener pings
    its connection now, and one that leaves a ping unanswered a second
    (`fleet.listen_stalled`) no longer vouches for the cache: checks go to
    the database until it answers again (`fleet.listen_answering`). Three
    rounds."""
    (a, b, _), url = trio_started(make_trio)
    email, pw, _ = a.user()
    took = []
    for rnd in range(3):
        t = a.login(email, pw).json
        assert verify(b, t["access_token"]).status == 200   # cached at b
        pids = [int(r[0]) for r in psql(
            url, "SELECT pid FROM pg_stat_activity WHERE application_name "
                 "= '%s' AND datname = current_database()" % LISTENER)]
        assert len(pids) == 3, pids
        stopped = []
        try:
            for pid in pids:
                stopped.append(pid)
                stand_still(pid)
            r = a.request("POST", "/api/v1/auth/logout",
                          {"refresh_token": t["refresh_token"]})
            assert r.status == 204, r
            t0 = time.monotonic()
            assert wait_until(lambda: verify(b, t["access_token"]).status
                              == 401, timeout=15, interval=0.02), rnd
            took.append(time.monotonic() - t0)
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        # every stall ends answering again (a, whose ping may have gone
        # after the stop, may not have stalled before SIGCONT; b, which
        # answered from the database, did)
        for d in (a, b):
            assert wait_until(lambda: len(events(
                d, "fleet.listen_answering")) == len(events(
                    d, "fleet.listen_stalled")), 30)
        assert verify(b, a.login(email, pw).json["access_token"]).status \
            == 200
    print("\nsilent listener: revocation seen after %s s"
          % ", ".join("%.2f" % x for x in took))
    assert max(took) < 5, took                  # a second's ping, and more
    assert len(events(b, "fleet.listen_stalled")) == 3
    assert not events(b, "fleet.listen_lost")   # the cache kept


def events(d, name):
    return [e for e in d.logs if e.get("event") == name]


def test_deactivation_and_demotion_seen_everywhere(make_trio):
    (a, b, c), _ = trio_started(make_trio)
    _, _, boss = admin(a)
    off, down = [], []
    for _ in range(TRIALS // 2):
        _, _, t = a.user()
        uid = parts(t["access_token"])[1]["sub"]
        for d in (b, c):
            assert verify(d, t["access_token"]).status == 200
        r = a.request("PATCH", "/api/v1/users/" + uid,
                      {"is_active": False}, token=boss)
        assert r.status == 200, r
        s = seen((b, c), lambda d: verify(d, t["access_token"]).status
                 == 401)
        assert s is not None, "deactivation not seen in %ss" % SEEN_WITHIN
        off.append(s)
    for _ in range(TRIALS // 2):
        _, _, t = admin(a)
        uid = parts(t)[1]["sub"]
        for d in (b, c):
            r = verify(d, t)
            assert r.status == 200 and r.header("X-Auth-Role") == "admin"
        r = a.request("PATCH", "/api/v1/users/" + uid, {"role": "user"},
                      token=boss)
        assert r.status == 200, r
        s = seen((b, c), lambda d: verify(d, t).header("X-Auth-Role")
                 == "user")
        assert s is not None, "demotion not seen in %ss" % SEEN_WITHIN
        down.append(s)
        assert b.request("GET", "/api/v1/users", token=t).status == 403
    report("deactivation", off)
    report("demotion", down)


def test_profile_changes_seen_everywhere(make_trio):
    """A change of name, email or second factor made at one instance is
    announced (migration 0017) and reaches the others' cached user rows
    at once: GET /users/me and /verify's X-Auth-Email there show it, not
    only when their entries age out (AUTH_SESSION_CACHE_SECONDS, 60
    here). Before, only what revokes was announced."""
    import pyotp
    (a, b, c), _ = trio_started(make_trio)
    email, pw, t = a.user()
    tok = t["access_token"]

    def me(d):
        r = d.request("GET", "/api/v1/users/me", token=tok)
        assert r.status == 200, r
        return r.json

    for d in (b, c):                  # cached there now
        assert me(d)["full_name"] != "Name 0"
        assert verify(d, tok).header("X-Auth-Email") == email
    lat = []
    for i in range(TRIALS // 6):
        name = "Name %d" % i
        r = a.request("PATCH", "/api/v1/users/me", {"full_name": name},
                      token=tok)
        assert r.status == 200, r
        s = seen((b, c), lambda d: me(d)["full_name"] == name)
        assert s is not None, "name not seen in %ss" % SEEN_WITHIN
        lat.append(s)
    new = "moved-" + email
    r = a.request("PATCH", "/api/v1/users/me",
                  {"email": new, "current_password": pw}, token=tok)
    assert r.status == 200, r
    s = seen((b, c), lambda d: me(d)["email"] == new and
             verify(d, tok).header("X-Auth-Email") == new)
    assert s is not None, "email not seen in %ss" % SEEN_WITHIN
    lat.append(s)
    r = a.request("POST", "/api/v1/auth/mfa/totp/setup",
                  {"current_password": pw}, token=tok)
    assert r.status == 200, r
    otp = pyotp.parse_uri(r.json["otpauth_uri"])
    assert not any(me(d)["mfa_enabled"] for d in (b, c))
    r = a.request("POST", "/api/v1/auth/mfa/totp/confirm",
                  {"code": otp.now()}, token=tok)
    assert r.status == 200, r
    s = seen((b, c), lambda d: me(d)["mfa_enabled"] is True)
    assert s is not None, "second factor not seen in %ss" % SEEN_WITHIN
    lat.append(s)
    # a password change: the caller's own session stays, and its row's
    # updated_at moves
    before = me(a)["updated_at"]
    time.sleep(max(0.0, 1.05 - time.time() % 1))   # a new second to show
    r = a.request("POST", "/api/v1/auth/password/change",
                  {"current_password": pw,
                   "new_password": "another passphrase " + email[:4]},
                  token=tok)
    assert r.status == 204, r
    after = me(a)["updated_at"]
    assert after != before, (before, after)
    s = seen((b, c), lambda d: me(d)["updated_at"] == after)
    assert s is not None, "password change not seen in %ss" % SEEN_WITHIN
    lat.append(s)
    report("profile change", lat)


def test_listen_connection_killed_and_recovered(make_trio):
    (a, b, c), url = trio_started(make_trio)
    email, pw, _ = a.user()
    before = [listening(d) for d in (a, b, c)]
    rows = psql(url, "SELECT pg_terminate_backend(pid) FROM "
                     "pg_stat_activity WHERE application_name = '%s' AND "
                     "datname = current_database()" % LISTENER)
    assert len(rows) == 3, rows               # one each, outside the pool
    for d, n in zip((a, b, c), before):
        assert wait_until(lambda: listening(d) > n, timeout=15), \
            d.lines[-20:]
        assert any(e.get("event") == "fleet.listen_lost" for e in d.logs)
    assert wait_until(lambda: len(psql(
        url, "SELECT 1 FROM pg_stat_activity WHERE application_name = "
             "'%s' AND datname = current_database()" % LISTENER)) == 3)
    t = a.login(email, pw).json
    for d in (b, c):
        assert verify(d, t["access_token"]).status == 200
    r = a.request("POST", "/api/v1/auth/logout-all", token=t["access_token"])
    assert r.status in (200, 204), r
    assert seen((b, c), lambda d: verify(d, t["access_token"]).status
                == 401) is not None


class Relay:
    """A TCP relay on 127.0.0.1 to `dst`; cut() ends every connection
    through it and refuses new ones (a network partition of whoever
    connects through it), heal() lets them through again."""

    def __init__(self, dst):
        self.dst, self.up, self.lock, self.socks = dst, True, \
            threading.Lock(), []
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return                          # closed
            if not self.up:
                c.close()
                continue
            try:
                u = socket.create_connection(self.dst, timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.socks += [c, u]
            for x, y in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(x, y),
                                 daemon=True).start()

    def _pipe(self, x, y):
        try:
            while self.up:
                data = x.recv(65536)
                if not data:
                    break
                y.sendall(data)
        except OSError:
            pass
        for z in (x, y):
            try:
                z.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.up = False
        with self.lock:
            socks, self.socks = self.socks, []
        for z in socks:
            try:
                z.shutdown(socket.SHUT_RDWR)
                z.close()
            except OSError:
                pass

    def heal(self):
        self.up = True

    def close(self):
        self.cut()
        self.ls.close()


@pytest.mark.parametrize("cache_seconds", [2, 0])
def test_an_instance_cut_off_from_the_database_stops_vouching(
        make_trio, cache_seconds):
    """B reaches PostgreSQL through a relay, A directly. The relay is cut:
    B misses A's announcements and cannot ask the database, while A
    revokes a session and deactivates a user. B must not vouch for either
    past AUTH_SESSION_CACHE_SECONDS after it last checked them (0: not at
    all): 503 (it cannot know), never 200; and 401 once it reaches the
    database again. A stale answer of any age is for a sole writer
    (SQLite) only: here other instances go on revoking."""
    (a, b, _), url = make_trio({
        "AUTH_SESSION_CACHE_SECONDS": str(cache_seconds),
        "AUTH_DB_TIMEOUT_MS": "1000", "AUTH_CB_OPEN_SECONDS": "1"})
    u = urllib.parse.urlsplit(url)
    relay = Relay((u.hostname, u.port))
    try:
        creds = u.netloc.rsplit("@", 1)[0]
        b.env["AUTH_DATABASE_URL"] = urllib.parse.urlunsplit(
            (u.scheme, "%s@127.0.0.1:%d" % (creds, relay.port), u.path,
             u.query, ""))
        for d in (a, b):
            d.start()
            assert wait_until(lambda: listening(d) >= 1), d.lines[-20:]
        _, _, boss = admin(a)
        _, _, t1 = a.user()
        _, _, t2 = a.user()
        toks = (t1["access_token"], t2["access_token"])
        for tok in toks:
            assert verify(b, tok).status == 200     # checked (cached) at B
        t_checked = time.monotonic()
        relay.cut()
        assert a.request("POST", "/api/v1/auth/logout-all",
                         token=toks[0]).status == 204
        sub = parts(toks[1])[1]["sub"]
        assert a.request("PATCH", "/api/v1/users/" + sub,
                         {"is_active": False}, token=boss).status == 200
        for tok in toks:
            assert verify(a, tok).status == 401
        # B, cut off: 200 only while its answer is younger than the cache
        # lifetime (plus scheduling slack); then 503, for several seconds
        bound = cache_seconds + 0.5
        late_200, statuses = [], set()
        until = time.monotonic() + cache_seconds + 4.0
        while time.monotonic() < until:
            for tok in toks:
                r = b.request("GET", "/api/v1/auth/verify", token=tok,
                              timeout=10)
                age = time.monotonic() - t_checked
                statuses.add(r.status)
                if r.status == 200 and age > bound:
                    late_200.append(round(age, 2))
            time.sleep(0.05)
        assert not late_200, "B vouched for revoked sessions %s s after " \
            "it last checked them (cache %s s)" % (late_200[:6], cache_seconds)
        assert statuses <= {200, 503}, statuses
        assert 503 in statuses
        relay.heal()
        assert wait_until(lambda: all(verify(b, tok).status == 401
                                      for tok in toks), timeout=30), \
            b.lines[-20:]
    finally:
        relay.close()


def test_rotation_stops_at_the_keys_the_instances_read(make_trio):
    """The instances read at most 64 keys, oldest first: `keys rotate`
    refuses a key past that (it would be a signer none of them ever
    loads) until retired keys are deleted, and every key it stored is
    one the instances list."""
    (a, _, _), url = make_trio({"AUTH_KEY_PUBLISH_SECONDS": "0"})
    a.start()
    count = lambda: int(psql(url, "SELECT count(*) FROM auth_keys")[0][0])
    added = []
    while count() < 64:
        r = a.command("keys", "rotate")
        assert r.returncode == 0, r.stderr
        added.append(r.stdout.decode().strip())
        assert len(added) <= 64
    r = a.command("keys", "rotate")
    assert r.returncode == 2, r
    assert b"64 keys" in r.stderr, r.stderr
    assert count() == 64
    a.proc.send_signal(signal.SIGHUP)            # read the keys again
    assert wait_until(lambda: added[-1] in jwks_kids(a), timeout=15), \
        a.lines[-20:]
    assert a.user()[2]["access_token"]


def jwks_kids(d):
    return {k["kid"] for k in d.request("GET", "/.well-known/jwks.json")
            .json["keys"]}


def test_rotation_published_then_signing_without_signal(make_trio):
    (a, b, c), url = trio_started(make_trio)
    email, pw, t_old = a.user()
    kid_old = parts(t_old["access_token"])[0]["kid"]
    r = b.command("keys", "rotate")
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    kid_new = r.stdout.decode().strip()
    assert kid_new and kid_new != kid_old
    for d in (a, b, c):
        assert wait_until(lambda: kid_new in jwks_kids(d), timeout=10,
                          interval=0.05), "not published at %d" % d.port
    published = time.monotonic() - t0
    print("\nrotation listed by all three after %.2f s" % published)
    if published < PUBLISH_SECONDS - 1:       # still the old key signs
        t = c.login(email, pw).json
        assert parts(t["access_token"])[0]["kid"] == kid_old
    for d in (a, b, c):
        assert wait_until(lambda: parts(d.login(email, pw).json[
            "access_token"])[0]["kid"] == kid_new,
            timeout=PUBLISH_SECONDS + 10, interval=0.2), d.port
    assert time.monotonic() - t0 >= PUBLISH_SECONDS - 0.5
    for d in (a, b, c):                       # old tokens still good
        assert verify(d, t_old["access_token"]).status == 200
        assert {kid_old, kid_new} <= jwks_kids(d)
        assert not any(e.get("event") == "keys.reloaded" and
                       e.get("cause") != "database" for e in d.logs)


@pytest.mark.parametrize("poll", ["slow", "prompt"])
def test_an_instance_that_stood_still_signs_with_no_stale_key(make_trio,
                                                             poll):
    """A process that stands still (SIGSTOP here; a stalled host) past its
    next key's switch signed with the old key on resuming, until its poll
    read the table: with the database slow to answer that poll (here the
    keys table held locked), every token it gave was of a key the other
    instances may have dropped already (they keep one until its
    successor's signs_from + the token lifetime + 70 s). A route that
    signs now first waits a moment for a poll, then answers 503 with
    Retry-After, before it stores or spends anything: no session is left
    behind, and the refresh token it was given still works. With the
    database prompt, the poll made on waking comes within that moment,
    and every token is the new key's (0 of 4 refused, 5 runs)."""
    (a, _, _), url = make_trio({"AUTH_KEY_PUBLISH_SECONDS": "600"})
    a.start()
    assert wait_until(lambda: listening(a) >= 1), a.lines[-20:]
    email, pw, t_old = a.user()
    kid_old = parts(t_old["access_token"])[0]["kid"]
    r = a.command("keys", "rotate", env={"AUTH_KEY_PUBLISH_SECONDS": "4"})
    assert r.returncode == 0, r.stderr
    kid_new = r.stdout.decode().strip()
    assert wait_until(lambda: kid_new in jwks_kids(a), timeout=10,
                      interval=0.05)
    held = a.login(email, pw).json                # held, not signing yet
    assert parts(held["access_token"])[0]["kid"] == kid_old
    locker = None
    try:
        stand_still(a.proc.pid)
        stopped = time.monotonic()
        # past the new key's signs_from, and past 5 s without a poll
        assert wait_until(lambda: time.monotonic() - stopped > 6.5,
                          timeout=20, interval=0.1)
        if poll == "slow":
            locker = subprocess.Popen(
                ["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                 "BEGIN; LOCK TABLE auth_keys IN ACCESS EXCLUSIVE MODE; "
                 "SELECT pg_sleep(2); COMMIT;"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            assert wait_until(lambda: psql(
                url, "SELECT count(*) FROM pg_locks l JOIN pg_class c "
                "ON c.oid = l.relation WHERE c.relname = 'auth_keys' "
                "AND l.granted AND l.mode = 'AccessExclusiveLock'")[0][0]
                == "1", timeout=10, interval=0.05)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    logins, refreshed = [], []
    threads = [threading.Thread(target=lambda: logins.append(
        a.login(email, pw))) for _ in range(3)]
    threads.append(threading.Thread(target=lambda: refreshed.append(
        a.request("POST", "/api/v1/auth/refresh",
                  {"refresh_token": held["refresh_token"]}))))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if locker:
        assert locker.wait(30) == 0, locker.stderr.read()
    assert len(logins) == 3 and len(refreshed) == 1
    # (with the database prompt all four were 200 here every time; a
    # slow host, a sanitized build, can make the poll miss the wait)
    for r in logins + refreshed:
        assert r.status in (200, 503), r
        if r.status == 503:
            assert r.header("Retry-After") == "1", r.headers
        else:
            assert parts(r.json["access_token"])[0]["kid"] == kid_new, r.json
    print("\n%d of 4 answered 503 while the keys' poll waited"
          % sum(r.status == 503 for r in logins + refreshed))
    # what the 503s refused stored nothing and spent nothing
    t = a.login(email, pw)
    assert t.status == 200, t
    assert parts(t.json["access_token"])[0]["kid"] == kid_new
    r = a.request("POST", "/api/v1/auth/refresh",
                  {"refresh_token": held["refresh_token"]})
    assert r.status == 200, r          # a first rotation, or its resend
    r = a.request("GET", "/api/v1/auth/sessions",
                  token=t.json["access_token"])
    assert r.status == 200, r
    # t_old's, held's, t's, and one per login answered 200
    assert len(r.json["items"]) == 3 + sum(x.status == 200 for x in logins)


def test_a_key_that_does_not_open_stops_no_login(make_trio):
    """A key in the table that this instance cannot open (sealed under
    another AUTH_KEYS_SECRET, say) fails every poll. The database still
    answered them: the keys in force stay current and sign, past the 5 s
    that a poll's freshness lasts, and each poll says what failed."""
    (a, _, _), url = make_trio()
    a.start()
    assert wait_until(lambda: listening(a) >= 1), a.lines[-20:]
    email, pw, t_old = a.user()
    kid_old = parts(t_old["access_token"])[0]["kid"]
    psql(url, "INSERT INTO auth_keys (kid, sealed, created_at, signs_from) "
         "VALUES ('not-a-key-of-ours', '\\x00112233', 0, "
         "(extract(epoch FROM now()) * 1000)::bigint + 3600000)")
    assert a.events(lambda e: e.get("event") == "keys.poll_failed")
    polled = len(a.events(lambda e: e.get("event") == "keys.poll_failed"))
    assert wait_until(lambda: len([e for e in a.logs if e.get("event") ==
                                   "keys.poll_failed"]) >= polled + 3,
                      timeout=20, interval=0.1)  # three polls: over 5 s
    r = a.login(email, pw)
    assert r.status == 200, r
    assert parts(r.json["access_token"])[0]["kid"] == kid_old
    assert verify(a, r.json["access_token"]).status == 200
    psql(url, "DELETE FROM auth_keys WHERE kid = 'not-a-key-of-ours'")


def test_rotation_moment_is_the_commands(make_trio):
    """`keys rotate` stores its own AUTH_KEY_PUBLISH_SECONDS with the key
    (README, "Rotating keys across instances"): instances that would wait
    600 s switch together at the command's moment, here at once."""
    (a, b, c), url = trio_started(make_trio,
                                  {"AUTH_KEY_PUBLISH_SECONDS": "600"})
    email, pw, t_old = a.user()
    r = b.command("keys", "rotate", env={"AUTH_KEY_PUBLISH_SECONDS": "0"})
    assert r.returncode == 0, r.stderr
    kid_new = r.stdout.decode().strip()
    for d in (a, b, c):
        assert wait_until(lambda: parts(d.login(email, pw).json[
            "access_token"])[0]["kid"] == kid_new, timeout=10,
            interval=0.1), d.port
        assert verify(d, t_old["access_token"]).status == 200


def test_keys_sealed_in_database(make_trio, tmp_path):
    # An existing data folder (the single-host layout) is imported.
    folder = str(tmp_path / "data")
    os.makedirs(folder)
    gen = Daemon("sqlite", data_dir=folder).command("keys", "generate")
    assert gen.returncode == 0, gen.stderr
    kid = gen.stdout.decode().strip()
    with open(os.path.join(folder, "keys", kid + ".pem"), "rb") as f:
        pem = f.read()
    with open(os.path.join(folder, "keys", "refresh.key"), "rb") as f:
        refresh_key = f.read()
    (a, b, c), url = make_trio(data_dirs=[folder, None, None])
    for d in (a, b, c):
        d.start()
    _, _, t = b.user()
    assert parts(t["access_token"])[0]["kid"] == kid    # imported
    dump = subprocess.run([pg_bin("pg_dump"), "--data-only", url],
                          capture_output=True, timeout=120)
    assert dump.returncode == 0, dump.stderr
    text = dump.stdout
    assert b"auth_keys" in text and kid.encode() in text
    assert b"PRIVATE KEY" not in text
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(pem, None)
    d = key.private_numbers().private_value.to_bytes(32, "big")
    der = key.private_bytes(serialization.Encoding.DER,
                            serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    body = b"".join(pem.split(b"\n")[1:-2])
    lower = text.lower()
    for secret in (d, der, refresh_key, pem):
        assert secret.hex().encode() not in lower
        assert base64.b64encode(secret) not in text
    assert body[:40] not in text


def test_simultaneous_first_start_one_key(make_trio):
    for _ in range(3):
        trio, url = make_trio()
        barrier = threading.Barrier(3)
        errors = []

        def go(d):
            try:
                barrier.wait(30)
                d.start()
            except Exception as e:        # noqa: BLE001 -- reported below
                errors.append(e)

        threads = [threading.Thread(target=go, args=(d,)) for d in trio]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        assert not errors, errors
        rows = psql(url, "SELECT count(*) FROM auth_keys WHERE kid <> "
                         "'refresh'")
        assert rows == [["1"]], rows
        kids = [jwks_kids(d) for d in trio]
        assert kids[0] == kids[1] == kids[2] and len(kids[0]) == 1
        _, _, t = trio[0].user()
        for d in trio:
            assert verify(d, t["access_token"]).status == 200
        for d in trio:
            assert d.stop() == 0


def test_keys_secret_required_and_checked(make_trio):
    (a, _, _), url = make_trio()
    env = dict(a.env)
    del env["AUTH_KEYS_SECRET"]
    bare = Daemon("postgres", env=env, database_url=url)
    bare.env.pop("AUTH_KEYS_SECRET", None)
    r = bare.command("config", "check")
    assert r.returncode == 2 and b"AUTH_KEYS_SECRET" in r.stderr, r
    a.start()
    # the same database opened with another secret: refused, exit 2
    wrong = Daemon("postgres", database_url=url,
                   env={"AUTH_KEYS_SECRET": "another-secret-" + "x" * 32})
    r = wrong.command("keys", "generate")
    assert r.returncode == 2 and b"AUTH_KEYS_SECRET" in r.stderr, r
    with pytest.raises(RuntimeError):
        wrong.start()
    assert wrong.proc.wait(30) == 2
    assert any("AUTH_KEYS_SECRET" in str(e.get("message"))
               for e in wrong.logs)
