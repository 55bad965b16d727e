"""Lock conflicts: ordinary requests that touch the same rows at the same
moment (several reset or verification links of one user used at once, an
admin deleting a user while it refreshes, logs out or changes its
password) must each get one of their documented answers, never 500.

Every round starts its requests together (a barrier after connecting),
and the rounds are bounded in number and in time."""
import http.client
import json
import secrets
import threading
import time

import pytest

from conftest import Daemon, wait_until
from test_mail import SmtpSink, parse, smtp_env, token_in

ROUNDS = 30
LINKS = 8                   # links of one user used at once
SESSIONS = 20               # sessions refreshing while the user is deleted
BUDGET = 150.0              # seconds for all rounds of one test
MAIL_DEADLINE = 60.0


class Call:
    """One request, connected ahead so that the barrier releases only the
    sending; `status` and `body` once run."""

    def __init__(self, d, method, path, body=None, token=None):
        self.d, self.method, self.path = d, method, path
        self.body = None if body is None else json.dumps(body).encode()
        self.headers = {"Content-Type": "application/json"} if body else {}
        if token:
            self.headers["Authorization"] = "Bearer " + token
        self.status, self.data = None, b""

    def run(self, barrier):
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port,
                                          timeout=60)
        try:
            conn.connect()
            barrier.wait(30)
            conn.request(self.method, self.path, body=self.body,
                         headers=self.headers)
            r = conn.getresponse()
            self.status, self.data = r.status, r.read()
        finally:
            conn.close()

    @property
    def code(self):
        try:
            return json.loads(self.data).get("code")
        except ValueError:
            return None

    def __repr__(self):
        return "<%s %s: %s %s>" % (self.method, self.path, self.status,
                                   self.code)


def together(calls):
    """Runs `calls` at the same moment; returns them once all answered."""
    barrier = threading.Barrier(len(calls))
    threads = [threading.Thread(target=c.run, args=(barrier,))
               for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert all(c.status is not None for c in calls), calls
    return calls


def rounds():
    """Round numbers, stopping early when the time budget is spent."""
    deadline = time.monotonic() + BUDGET
    for i in range(ROUNDS):
        if i >= 5 and time.monotonic() > deadline:
            return
        yield i


class Tally:
    """Every answer of a test's rounds, and the rounds whose outcome was
    not a documented one; checked once all rounds ran, so that a failure
    reports how often it happened."""

    def __init__(self, d):
        self.d, self.calls, self.wrong, self.rounds = d, [], [], 0

    def add(self, calls):
        self.rounds += 1
        self.calls += calls

    def expect(self, ok, what):
        if not ok:
            self.wrong.append(what)

    def check(self):
        bad = [c for c in self.calls if c.status >= 500]
        # Nor may these flows deadlock at all: the lock order prevents it
        # (a retry would hide one, at the price of a second's wait).
        errors = [e for e in self.d.logs if e.get("event") == "db.error"
                  and (e.get("level") == "error" or
                       e.get("sqlstate") in ("40P01", "40001"))]
        assert not bad and not errors and not self.wrong, (
            "%d of %d requests in %d rounds answered 5xx (%d of them 500), "
            "%d rounds had another outcome, %d db.error lines; first: "
            "%r %r %r" % (
                len(bad), len(self.calls), self.rounds,
                len([c for c in bad if c.status == 500]), len(self.wrong),
                len(errors), bad[:1], self.wrong[:1], errors[:1]))
        assert self.rounds >= 5


@pytest.fixture(scope="module")
def sink():
    s = SmtpSink()
    yield s
    s.close()


@pytest.fixture(scope="module")
def ld(backend, sink):
    env = smtp_env(sink.port)
    # Links that lost a race are wrong tokens, counted by the lockout like
    # any failed secret; these rounds test lock conflicts, not the lockout
    # (tests/e2e/test_lockout.py), so its threshold is out of their way.
    env.update({"AUTH_MAIL_PER_RECIPIENT_PER_HOUR": "1000",
                "AUTH_LOCKOUT_THRESHOLD": "1000",
                "AUTH_THREADS": "16", "AUTH_DB_POOL_SIZE": "16"})
    d = Daemon(backend, env=env).start()
    yield d
    assert d.stop() == 0, "\n".join(d.lines[-20:])


def links(d, sink, addr, page, n):
    """The tokens of the first `n` mails to `addr` (links to `page`)."""
    got = wait_until(lambda: len(sink.to(addr)) >= n and sink.to(addr),
                     timeout=MAIL_DEADLINE)
    assert got and len(got) >= n, "mails for %s: %d" % (addr, len(got or []))
    return [token_in(parse(m).get_content(), page) for m in got[:n]]


def make_admin(d):
    email = "admin-%s@example.com" % secrets.token_hex(4)
    password = "admin passphrase 1"
    r = d.command("user", "create", "--email", email, "--admin", "--name",
                  "Root", stdin=(password + "\n").encode())
    assert r.returncode == 0, r.stderr
    t = d.login(email, password)
    assert t.status == 200, t
    return t.json["access_token"]


def test_reset_links_of_one_user_used_at_once(ld, sink):
    users = [ld.user()[:2] for _ in range(ROUNDS)]
    for addr, _ in users:
        for _ in range(LINKS):
            r = ld.request("POST", "/api/v1/auth/password/forgot",
                           {"email": addr})
            assert r.status == 202, r
    tally = Tally(ld)
    for i in rounds():
        addr, _ = users[i]
        tokens = links(ld, sink, addr, "/reset-password", LINKS)
        calls = together([
            Call(ld, "POST", "/api/v1/auth/password/reset",
                 {"token": t, "new_password": "racing password %d" % k})
            for k, t in enumerate(tokens)])
        tally.add(calls)
        # The first to lock the user wins and retires the other links.
        won = [k for k, c in enumerate(calls) if c.status == 204]
        tally.expect(len(won) == 1 and all(
            c.status == 400 and c.code == "invalid_token"
            for c in calls if c.status != 204), calls)
        if len(won) == 1:
            r = ld.login(addr, "racing password %d" % won[0])
            tally.expect(r.status == 200, r)
    tally.check()


def test_verification_links_of_one_user_used_at_once(ld, sink):
    users = [ld.user() for _ in range(ROUNDS)]
    for addr, _, t in users:
        for _ in range(LINKS):
            r = ld.request("POST", "/api/v1/auth/email/verify-request",
                           token=t["access_token"])
            assert r.status == 202, r
    tally = Tally(ld)
    for i in rounds():
        addr, _, t = users[i]
        tokens = links(ld, sink, addr, "/verify-email", LINKS)
        calls = together([
            Call(ld, "POST", "/api/v1/auth/email/verify", {"token": tok})
            for tok in tokens])
        tally.add(calls)
        # One link verifies; it retires the others.
        tally.expect(sorted(c.status for c in calls) ==
                     [204] + [400] * (LINKS - 1) and
                     all(c.code == "invalid_token" for c in calls
                         if c.status == 400), calls)
        me = ld.request("GET", "/api/v1/users/me", token=t["access_token"])
        tally.expect(me.status == 200 and me.json["is_verified"] is True, me)
    tally.check()


def test_admin_deletes_a_user_while_it_uses_its_sessions(ld):
    """Refreshes, logins, a logout, a logout-all and a password change of
    one user, all at the moment an admin deletes it."""
    admin = make_admin(ld)
    tally = Tally(ld)
    for _ in rounds():
        r, addr, pw = ld.register()
        assert r.status == 201, r
        uid = r.json["id"]
        pairs = []
        for _ in range(SESSIONS + 3):
            t = ld.login(addr, pw)
            assert t.status == 200, t
            pairs.append(t.json)
        refreshes = [Call(ld, "POST", "/api/v1/auth/refresh",
                          {"refresh_token": p["refresh_token"]})
                     for p in pairs[:SESSIONS]]
        logout = Call(ld, "POST", "/api/v1/auth/logout",
                      {"refresh_token": pairs[SESSIONS]["refresh_token"]})
        change = Call(ld, "POST", "/api/v1/auth/password/change",
                      {"current_password": pw,
                       "new_password": "changed passphrase 9"},
                      token=pairs[SESSIONS + 1]["access_token"])
        logout_all = Call(ld, "POST", "/api/v1/auth/logout-all",
                          token=pairs[SESSIONS + 2]["access_token"])
        logins = [Call(ld, "POST", "/api/v1/auth/login",
                       {"email": addr, "password": pw}) for _ in range(2)]
        logins.append(Call(ld, "POST", "/api/v1/auth/password/forgot",
                           {"email": addr}))
        delete = Call(ld, "DELETE", "/api/v1/users/" + uid, token=admin)
        calls = together(refreshes + logins +
                         [logout, change, logout_all, delete])
        tally.add(calls)
        tally.expect(delete.status == 204, delete)
        tally.expect(all(c.status in (200, 401) for c in refreshes),
                     refreshes)
        tally.expect(all(c.status in (200, 401) for c in logins[:2]) and
                     logins[2].status == 202, logins)
        tally.expect(logout.status in (204, 401), logout)
        tally.expect(change.status in (204, 401), change)
        tally.expect(logout_all.status in (204, 401), logout_all)
        # Whoever came first, the user is gone with all its sessions.
        tally.expect(ld.login(addr, pw).status == 401, "login works")
        for c in refreshes:
            if c.status == 200:
                r = ld.request("POST", "/api/v1/auth/refresh",
                               {"refresh_token":
                                json.loads(c.data)["refresh_token"]})
                tally.expect(r.status == 401, r)
    tally.check()


def test_admin_deactivates_a_user_while_it_uses_its_links(ld, sink):
    """Refreshes, reset links and verification links of one user, all at
    the moment an admin deactivates it."""
    admin = make_admin(ld)
    users = []
    for _ in range(ROUNDS):
        addr, pw, t = ld.user()
        for path in ("/api/v1/auth/password/forgot",) * 2:
            assert ld.request("POST", path, {"email": addr}).status == 202
        for _ in range(2):
            r = ld.request("POST", "/api/v1/auth/email/verify-request",
                           token=t["access_token"])
            assert r.status == 202, r
        users.append((addr, pw, t))
    tally = Tally(ld)
    for i in rounds():
        addr, pw, t = users[i]
        uid = ld.request("GET", "/api/v1/users/me",
                         token=t["access_token"]).json["id"]
        mails = wait_until(lambda: len(sink.to(addr)) >= 4 and sink.to(addr),
                           timeout=MAIL_DEADLINE)
        assert mails, addr
        resets, verifies = [], []
        for m in mails[:4]:
            text = parse(m).get_content()
            if "/reset-password?" in text:
                resets.append(Call(ld, "POST", "/api/v1/auth/password/reset",
                                   {"token": token_in(text, "/reset-password"),
                                    "new_password": "reset passphrase %d"
                                    % len(resets)}))
            else:
                verifies.append(Call(ld, "POST", "/api/v1/auth/email/verify",
                                     {"token": token_in(text,
                                                        "/verify-email")}))
        pairs = [t] + [ld.login(addr, pw).json for _ in range(SESSIONS // 2)]
        refreshes = [Call(ld, "POST", "/api/v1/auth/refresh",
                          {"refresh_token": p["refresh_token"]})
                     for p in pairs]
        off = Call(ld, "PATCH", "/api/v1/users/" + uid, {"is_active": False},
                   token=admin)
        calls = together(refreshes + resets + verifies + [off])
        tally.add(calls)
        tally.expect(off.status == 200, off)
        tally.expect(len(resets) == 2 and len(verifies) == 2, mails)
        tally.expect(all(c.status in (200, 401) for c in refreshes),
                     refreshes)
        tally.expect(sorted(c.status for c in resets) in
                     ([204, 400], [400, 400]), resets)
        tally.expect(sorted(c.status for c in verifies) in
                     ([204, 400], [400, 400]), verifies)
        # Deactivated, whoever came first: no session survives it.
        for c in refreshes:
            if c.status == 200:
                r = ld.request("POST", "/api/v1/auth/refresh",
                               {"refresh_token":
                                json.loads(c.data)["refresh_token"]})
                tally.expect(r.status == 401, r)
        won = [k for k, c in enumerate(resets) if c.status == 204]
        r = ld.login(addr, "reset passphrase %d" % won[0] if won else pw)
        tally.expect(r.status == 403, r)
    tally.check()


def test_admins_write_while_one_deletes_itself(ld):
    """An admin deleting its own account (DELETE /users/me) while an
    older admin changes a user and lifts a lockout, and a third deletes
    itself too: the self-deletions take the admins' rows first, as every
    admin write does (README "Security", "Writes in flight"), so nothing
    waits on a deadlock. Fails when a self-deletion first takes its own
    row (PostgreSQL: 4 deadlocks in 30 rounds)."""
    older = make_admin(ld)
    tally = Tally(ld)
    for i in rounds():
        _, _, t = ld.user()
        uid = ld.request("GET", "/api/v1/users/me",
                         token=t["access_token"]).json["id"]
        going = [make_admin(ld) for _ in range(2)]
        calls = together(
            [Call(ld, "DELETE", "/api/v1/users/me",
                  {"password": "admin passphrase 1"}, token=tok)
             for tok in going] +
            [Call(ld, "PATCH", "/api/v1/users/" + uid,
                  {"full_name": "round %d.%d" % (i, k)}, token=older)
             for k in range(4)] +
            [Call(ld, "DELETE", "/api/v1/users/%s/lockout" % uid,
                  token=older) for _ in range(4)])
        tally.add(calls)
        tally.expect([c.status for c in calls] ==
                     [204] * 2 + [200] * 4 + [204] * 4, calls)
    tally.check()
