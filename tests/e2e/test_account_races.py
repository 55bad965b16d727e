"""Account rules under concurrency and abuse: a profile edit never undoes
an admin's change, a role or is_active change takes effect at once on the
instance that made it, fields a caller may not set are refused, an email
change needs the password and tells the old address, /verify reports the
account's email, and a session ends AUTH_SESSION_MAX_SECONDS after login
however often it is refreshed."""
import base64
import json
import threading
import time

import pytest

from conftest import assert_problem, wait_until
from test_mail import SmtpSink, parse, smtp_env, wait_mails
from test_users import make_admin

ROUNDS = 40                     # per kind of admin change
WRITERS = 4                     # threads editing the profile meanwhile
WRITES_MAX = 300                # per writer and round, a bound on the load
INTROSPECTION = "introspection-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def admin(daemon):
    return make_admin(daemon)


def user_id(d, tok):
    r = d.request("GET", "/api/v1/users/me", token=tok)
    assert r.status == 200, r
    return r.json["id"]


def race(d, admin_tok, user_tok, uid, change):
    """Runs WRITERS threads that PATCH /users/me full_name in a loop while
    the admin applies `change` to the user; returns once all stopped."""
    stop = threading.Event()
    done = [0] * WRITERS

    def writer(i):
        while not stop.is_set() and done[i] < WRITES_MAX:
            r = d.request("PATCH", "/api/v1/users/me",
                          {"full_name": "w%d %d" % (i, done[i])},
                          token=user_tok)
            done[i] += 1
            if r.status != 200:
                assert r.status == 401, r       # deactivated meanwhile
                return

    threads = [threading.Thread(target=writer, args=(i,))
               for i in range(WRITERS)]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: sum(done) >= 2 * WRITERS, timeout=30)
        r = d.request("PATCH", "/api/v1/users/" + uid, change,
                      token=admin_tok)
        assert r.status == 200, r
        # Writers that were already past authentication finish now.
        target = sum(done) + 2 * WRITERS
        wait_until(lambda: sum(done) >= target or
                   not any(t.is_alive() for t in threads), timeout=30)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    return d.request("GET", "/api/v1/users/" + uid, token=admin_tok).json


def deadlocks(d, since):
    """Deadlocks the database broke (and the daemon retried) in d's log
    lines from `since` on: each one held its requests a second."""
    d.settled()
    return [e for e in d.logs[since:] if e.get("sqlstate") == "40P01"]


def test_profile_edits_never_undo_a_deactivation(daemon, admin):
    undone = logged_in = 0
    since = len(daemon.logs)
    for _ in range(ROUNDS):
        email, pw, t = daemon.user()
        uid = user_id(daemon, t["access_token"])
        after = race(daemon, admin[2], t["access_token"], uid,
                     {"is_active": False})
        login = daemon.login(email, pw)
        undone += after["is_active"] is not False
        logged_in += login.status != 403
    assert (undone, logged_in) == (0, 0), \
        "%d of %d deactivations undone, %d logged in after" % (
            undone, ROUNDS, logged_in)
    assert_problem(login, 403, "account_disabled")
    assert deadlocks(daemon, since) == []


def test_profile_edits_never_undo_a_demotion(daemon, admin):
    undone = still_admin = 0
    since = len(daemon.logs)
    for _ in range(ROUNDS):
        _, _, t = daemon.user()
        uid = user_id(daemon, t["access_token"])
        r = daemon.request("PATCH", "/api/v1/users/" + uid,
                           {"role": "admin"}, token=admin[2])
        assert r.status == 200 and r.json["role"] == "admin", r
        after = race(daemon, admin[2], t["access_token"], uid,
                     {"role": "user"})
        listed = daemon.request("GET", "/api/v1/users",
                                token=t["access_token"])
        undone += after["role"] != "user"
        still_admin += listed.status != 403
    assert (undone, still_admin) == (0, 0), \
        "%d of %d demotions undone, %d still served as admin" % (
            undone, ROUNDS, still_admin)
    assert_problem(listed, 403, "forbidden")
    # Requests of the demoted admin's session that saw the demotion and
    # ones that did not take their locks in one order (src/repo/driver.c)
    assert deadlocks(daemon, since) == []


def test_role_and_active_changes_take_effect_at_once(make_daemon):
    d = make_daemon({"AUTH_SESSION_CACHE_SECONDS": "60"}).start()
    _, _, root = make_admin(d)
    for _ in range(10):
        _, _, t = d.user()
        tok = t["access_token"]
        uid = user_id(d, tok)
        r = d.request("PATCH", "/api/v1/users/" + uid, {"role": "admin"},
                      token=root)
        assert r.status == 200, r
        # The session is now cached as an admin's.
        assert d.request("GET", "/api/v1/users", token=tok).status == 200
        assert d.request("GET", "/api/v1/auth/verify",
                         token=tok).header("X-Auth-Role") == "admin"
        r = d.request("PATCH", "/api/v1/users/" + uid, {"role": "user"},
                      token=root)
        assert r.status == 200, r
        assert_problem(d.request("GET", "/api/v1/users", token=tok), 403,
                       "forbidden")
        assert d.request("GET", "/api/v1/auth/verify",
                         token=tok).header("X-Auth-Role") == "user"
        r = d.request("PATCH", "/api/v1/users/" + uid, {"is_active": False},
                      token=root)
        assert r.status == 200, r
        assert_problem(d.request("GET", "/api/v1/auth/verify", token=tok),
                       401)
    # A deletion too.
    _, _, t = d.user()
    tok = t["access_token"]
    uid = user_id(d, tok)
    assert d.request("GET", "/api/v1/auth/verify", token=tok).status == 200
    assert d.request("DELETE", "/api/v1/users/" + uid,
                     token=root).status == 204
    assert_problem(d.request("GET", "/api/v1/auth/verify", token=tok), 401)


def test_register_refuses_what_only_others_set(daemon):
    for extra in ({"role": "admin"}, {"role": "user"}, {"is_active": False},
                  {"is_active": True}, {"is_verified": True},
                  {"mfa_enabled": True}, {"mfa_enabled": False}):
        r, email, pw = daemon.register(**extra)
        assert_problem(r, 403, "forbidden")
        assert_problem(daemon.login(email, pw), 401)   # nothing created
        r, _, _ = daemon.register(email=email, password=pw)
        assert r.status == 201, r
        assert r.json["role"] == "user" and r.json["is_active"] is True
        assert r.json["is_verified"] is False
    _, _, t = daemon.user()
    for body in ({"role": "admin"}, {"is_active": False},
                 {"role": "user", "full_name": "x"}):
        assert_problem(daemon.request("PATCH", "/api/v1/users/me", body,
                                      token=t["access_token"]), 403,
                       "forbidden")


@pytest.fixture(scope="module")
def sink():
    s = SmtpSink()
    yield s
    s.close()


def test_email_change_needs_the_password_and_tells_the_old_address(
        make_daemon, sink):
    d = make_daemon(dict(smtp_env(sink.port),
                         AUTH_SESSION_CACHE_SECONDS="60",
                         AUTH_INTROSPECTION_TOKEN=INTROSPECTION)).start()
    old, pw, t = d.user()
    tok = t["access_token"]
    new = "moved-" + old
    # /verify caches the session with the email of the account now.
    assert d.request("GET", "/api/v1/auth/verify",
                     token=tok).header("X-Auth-Email") == old
    for body in ({"email": new}, {"email": new, "current_password": pw + "x"},
                 {"email": new, "current_password": ""}):
        assert_problem(d.request("PATCH", "/api/v1/users/me", body,
                                 token=tok), 401, "invalid_credentials")
    assert d.request("GET", "/api/v1/users/me", token=tok).json["email"] == old
    # The same email again is no change: no password needed.
    r = d.request("PATCH", "/api/v1/users/me", {"email": old.upper()},
                  token=tok)
    assert r.status == 200 and r.json["email"] == old, r
    r = d.request("PATCH", "/api/v1/users/me",
                  {"email": new, "current_password": pw}, token=tok)
    assert r.status == 200, r
    assert r.json["email"] == new and r.json["is_verified"] is False
    # /verify answers the account's email at once, not the token's.
    r = d.request("GET", "/api/v1/auth/verify", token=tok)
    assert r.status == 200 and r.header("X-Auth-Email") == new, r
    assert r.json["email"] == new
    r = d.request("POST", "/api/v1/auth/introspect",
                  body=("token=" + tok).encode(),
                  headers={"Content-Type":
                           "application/x-www-form-urlencoded",
                           "Authorization": "Bearer " + INTROSPECTION})
    assert r.status == 200 and r.json["active"] is True, r
    assert r.json["email"] == new
    # The old address is told, with no link in the mail.
    msg = parse(wait_mails(sink, old)[0])
    assert msg["Subject"] == "Your email address was changed"
    assert msg["To"] == old
    text = msg.get_content()
    assert "http" not in text and "token" not in text, text
    assert not sink.to(new)
    assert d.login(new, pw).status == 200
    assert_problem(d.login(old, pw), 401)


def claims(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload)
                                                                % 4)))


def test_refresh_never_extends_a_session_past_its_maximum(make_daemon):
    d = make_daemon({"AUTH_SESSION_MAX_SECONDS": "60"}).start()
    email, pw, t = d.user()
    start = claims(t["access_token"])["iat"]
    assert 0 < t["refresh_expires_in"] <= 60, t
    assert 0 < t["expires_in"] <= 60, t       # capped too (TTL is 900)
    assert claims(t["access_token"])["exp"] <= start + 60
    tok = t["refresh_token"]
    last = t["refresh_expires_in"]
    for _ in range(3):
        t0 = time.monotonic()
        wait_until(lambda: time.monotonic() - t0 > 1.1, timeout=5)
        r = d.request("POST", "/api/v1/auth/refresh", {"refresh_token": tok})
        assert r.status == 200, r
        # The end does not move: what is left only shrinks.
        assert r.json["refresh_expires_in"] < last, r.json
        assert claims(r.json["access_token"])["exp"] <= start + 60
        last = r.json["refresh_expires_in"]
        tok = r.json["refresh_token"]
    # A new login starts a new session with its own maximum.
    assert d.login(email, pw).json["refresh_expires_in"] > last


def test_a_removed_admin_is_refused_not_told_who_is_last(make_daemon):
    """Two admins, the only active ones, remove each other at the same
    instant: A deactivates, demotes or deletes B while B deletes A. One
    of them goes first, and the other is then refused as a caller who may
    no longer do it (401, 403). A deletion's last-admin check ran before
    the check of its caller (src/repo/users.c), so a removed admin was
    answered 409 last_admin, told who was now the last one: in 31 of 75
    rounds on SQLite and 2 of 75 on PostgreSQL before the fix."""
    d = make_daemon().start()
    changes = [("PATCH", {"is_active": False}), ("PATCH", {"role": "user"}),
               ("DELETE", None)]
    statuses = {}
    survivor = None
    for i in range(25 * len(changes)):
        a = make_admin(d)
        b = make_admin(d)
        ida, idb = user_id(d, a[2]), user_id(d, b[2])
        if survivor:                    # A and B the only active admins
            r = d.request("PATCH", "/api/v1/users/" + survivor,
                          {"is_active": False}, token=a[2])
            assert r.status == 200, r
        method, body = changes[i % len(changes)]
        gate = threading.Barrier(2)
        got = {}

        def send(who, m, path, payload, tok):
            gate.wait(10)
            got[who] = d.request(m, path, payload, token=tok)

        ta = threading.Thread(target=send, args=(
            "A", method, "/api/v1/users/" + idb, body, a[2]))
        tb = threading.Thread(target=send, args=(
            "B", "DELETE", "/api/v1/users/" + ida, None, b[2]))
        ta.start()
        tb.start()
        ta.join(60)
        tb.join(60)
        key = (method, "role" if body and "role" in body else "",
               got["A"].status, got["B"].status)
        statuses[key] = statuses.get(key, 0) + 1
        won = [w for w, ok in (("A", got["A"].status in (200, 204)),
                               ("B", got["B"].status == 204)) if ok]
        assert len(won) == 1, (key, got["A"], got["B"])
        survivor = ida if won == ["A"] else idb
        # the survivor is the one active admin left, and serves as one
        tok = a[2] if won == ["A"] else b[2]
        r = d.request("GET", "/api/v1/users/" + survivor, token=tok)
        assert r.status == 200 and r.json["role"] == "admin" and \
            r.json["is_active"], r
    print("(method, change, A's status, B's status): rounds", statuses)
    assert not [k for k in statuses if 409 in k[2:]], statuses
    assert d.stop() == 0


def test_a_refused_deletion_keeps_the_accounts_rotated_out_tokens(
        make_daemon):
    """Admin X deletes V at the instant X is demoted. When the deletion is
    refused (403: X may no longer), V is as it was: its rotated-out
    refresh token, presented again within the grace, gets the same child
    (and after the grace it would still be told as a replay). The
    deletion shed V's rotated-out tokens in transactions of their own
    before the one that could refuse it: 28 of 183 refused deletions on
    PostgreSQL then answered the retry 401 (a review; none on SQLite,
    whose writes are serial)."""
    d = make_daemon().start()
    root = make_admin(d)[2]
    refused = broken = 0
    t0 = time.monotonic()
    for _ in range(80):
        if refused >= 20 or time.monotonic() - t0 > 90:
            break
        x = make_admin(d)
        xid = user_id(d, x[2])
        _, _, v = d.user()
        vid = user_id(d, v["access_token"])
        r = d.request("POST", "/api/v1/auth/refresh",
                      {"refresh_token": v["refresh_token"]})
        assert r.status == 200, r
        child = r.json
        gate = threading.Barrier(2)
        got = {}

        def send(who, method, path, body, tok):
            gate.wait(10)
            got[who] = d.request(method, path, body, token=tok)

        ts = [threading.Thread(target=send, args=(
                  "delete", "DELETE", "/api/v1/users/" + vid, None, x[2])),
              threading.Thread(target=send, args=(
                  "demote", "PATCH", "/api/v1/users/" + xid,
                  {"role": "user"}, root))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert got["demote"].status == 200, got["demote"]
        if got["delete"].status == 204:
            continue
        assert got["delete"].status == 403, got["delete"]
        refused += 1
        r = d.request("POST", "/api/v1/auth/refresh",
                      {"refresh_token": v["refresh_token"]})
        if r.status != 200 or \
                r.json["refresh_token"] != child["refresh_token"]:
            broken += 1
        r = d.request("GET", "/api/v1/users/me",
                      token=child["access_token"])
        assert r.status == 200, r
    print("refused deletions", refused, "with the retry broken", broken)
    assert refused > 0, "no deletion was refused: the race never ran"
    assert broken == 0, (broken, refused)
    assert d.stop() == 0
