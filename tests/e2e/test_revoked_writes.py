"""A write made with a session's access token lands only while that
session may still write (README "Tokens"): a request that passed its
bearer check and then spends a password hash before writing, while the
session is revoked (logout, logout everywhere) or the account
deactivated, is refused (401) and changes nothing, instead of landing
after the revocation had answered. The hash is made slow (64 MiB, 3
passes) so that the revocation ends well inside it; a round counts only
when it did end inside the first half of a hash (measured here), where a
write that started with it cannot have reached the database yet.
Fails on a build without the check: every counted round applied the
write.
"""
import concurrent.futures
import secrets
import time

import pytest

from conftest import assert_problem, hash_jobs, wait_until
from test_users import make_admin

SLOW = {"AUTH_ARGON2_MEMORY_KIB": "65536", "AUTH_ARGON2_ITERATIONS": "3",
        "AUTH_RATE_LIMIT_PER_MINUTE": "0"}
ROUNDS = 5
ENDED = "The session ended while this request was in progress."


def hash_seconds(d, email, password):
    """The shortest of three logins: at most one hash and a little more."""
    best = None
    for _ in range(3):
        t0 = time.monotonic()
        assert d.login(email, password).status == 200
        took = time.monotonic() - t0
        best = took if best is None else min(best, took)
    return best


def write(d, kind, token, password, rnd):
    if kind == "email":
        return d.request("PATCH", "/api/v1/users/me",
                         {"email": "moved%d-%s@example.net"
                                   % (rnd, secrets.token_hex(3)),
                          "current_password": password}, token=token)
    if kind == "password":
        return d.request("POST", "/api/v1/auth/password/change",
                         {"current_password": password,
                          "new_password": "changed pass %d" % rnd},
                         token=token)
    return d.request("DELETE", "/api/v1/users/me", {"password": password},
                     token=token)


def revoke(d, kind, victim, other, admin, uid):
    if kind == "logout":
        r = d.request("POST", "/api/v1/auth/logout",
                      {"refresh_token": victim["refresh_token"]})
    elif kind == "logout-all":
        r = d.request("POST", "/api/v1/auth/logout-all",
                      token=other["access_token"])
    else:
        r = d.request("PATCH", "/api/v1/users/" + uid, {"is_active": False},
                      token=admin)
    assert r.status in (200, 204), r


def unchanged(d, kind, admin, uid, email, rnd):
    r = d.request("GET", "/api/v1/users/" + uid, token=admin)
    if kind == "delete":
        return r.status == 200
    assert r.status == 200, r
    if kind == "email":
        return r.json["email"] == email
    # the new password opens nothing (a deactivated account answers 403
    # to its right password, 401 to a wrong one)
    return d.login(email, "changed pass %d" % rnd).status == 401


@pytest.mark.parametrize("kind,how", [("email", "logout-all"),
                                      ("password", "logout"),
                                      ("delete", "deactivate"),
                                      ("email", "deactivate")])
def test_a_write_in_flight_does_not_outlive_its_session(make_daemon, kind,
                                                        how):
    d = make_daemon(SLOW).start()
    admin = make_admin(d)[2]
    pool = concurrent.futures.ThreadPoolExecutor(1)
    counted, landed = 0, []
    half = hash_seconds(d, *d.user()[:2]) / 2
    try:
        for rnd in range(ROUNDS):
            email, password, victim = d.user()
            other = d.login(email, password).json
            uid = d.request("GET", "/api/v1/users/me",
                            token=victim["access_token"]).json["id"]
            t0 = time.monotonic()
            w = pool.submit(write, d, kind, victim["access_token"],
                            password, rnd)
            revoke(d, how, victim, other, admin, uid)
            assert_problem(d.request("GET", "/api/v1/auth/verify",
                                     token=victim["access_token"]), 401)
            inside = time.monotonic() - t0 < half
            r = w.result(60)
            if not inside:
                continue            # too slow to say which came first
            counted += 1
            if r.status != 401 or not unchanged(d, kind, admin, uid, email,
                                                rnd):
                landed.append((rnd, r.status))
            else:
                assert_problem(r, 401, "invalid_token")
    finally:
        pool.shutdown()
    assert not landed, "writes that landed after the revocation: %r" % \
        landed
    assert counted >= 1, "no round ended inside a hash"


def test_a_refused_write_says_why(make_daemon):
    """A write that passed its bearer check and was refused when it
    reached the database says so. With the one hash worker running
    another login (seen in /metrics: one running, none waiting), the
    write waits in the hash queue, past its bearer check, when the
    revocation comes (seen as one waiting). A round where the other login
    ended before the write queued does not count."""
    d = make_daemon(dict(SLOW, AUTH_HASH_WORKERS="1")).start()
    pool = concurrent.futures.ThreadPoolExecutor(2)
    counted = 0
    try:
        blocker = d.user()[:2]
        for rnd in range(8):
            email, password, victim = d.user()
            other = d.login(email, password).json
            # a worker counts its job as running until after the answer
            # went out: (0, 1) below must be the blocker's, not this one's
            assert wait_until(lambda: hash_jobs(d) == (0, 0), 30)
            busy = pool.submit(d.login, *blocker)
            assert wait_until(lambda: busy.done() or hash_jobs(d) == (0, 1),
                              30), "the other login never ran"
            if busy.done():
                assert busy.result().status == 200
                continue        # its hash ended between two looks
            w = pool.submit(write, d, "email", victim["access_token"],
                            password, rnd)
            seen = []

            def queued_or_done():
                if hash_jobs(d)[0] >= 1:
                    seen.append(True)       # the write, behind the login
                return seen or busy.done()
            assert wait_until(queued_or_done, 30), \
                "the write never queued for its hash"
            queued = bool(seen)
            revoke(d, "logout-all", victim, other, None, None)
            r = w.result(60)
            assert busy.result(60).status == 200
            assert_problem(r, 401, "invalid_token")
            assert d.request("GET", "/api/v1/users/me",
                             token=other["access_token"]).status == 401
            if not queued:
                continue        # it may have been refused at its bearer check
            counted += 1
            assert r.json["detail"] == ENDED, r.json
            if counted == 3:
                break
    finally:
        pool.shutdown()
    assert counted >= 1, "the write never waited behind the other login"
