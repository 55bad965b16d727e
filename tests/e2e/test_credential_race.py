"""A password change revokes every other session (README "Mail",
"Second factor"): also the session of a login that read the old password
just before the change and stores its session just after it, and the
mfa_token such a login would get. Such a login is refused (401) or what
it got is ended by the change; nothing of the old password survives.
A deactivation likewise revokes every session (README "Users API"): a
login that read the account while active and stores its session after
the deactivation is refused (403) or its session revoked, so that a
reactivation brings back none of them. Turning the second factor on
revokes every other session (README "Second factor"): a password-only
login that read the account before it is answered mfa_required or its
session revoked.
Each test fails on a build without its check (sessions: 3-8 rounds of
20 kept one; mfa_tokens: 8-11 rounds of 20; deactivation: 18 of 20;
the second factor: see its test).
"""
import concurrent.futures
import threading

from conftest import assert_problem

LOGINS = 7          # with the change: 8, one client's share of the hash pool
ROUNDS = 20


def race(d, pool, email, password, change):
    """LOGINS logins with `password` and `change()`, released together;
    returns the logins' answers once the change answered."""
    gate = threading.Barrier(LOGINS + 1)

    def login():
        gate.wait()
        return d.login(email, password)

    def changing():
        gate.wait()
        return change()

    logins = [pool.submit(login) for _ in range(LOGINS)]
    pool.submit(changing).result(60)
    return [f.result(60) for f in logins]


def race_a_change(d, pool, email, password, access_token, rnd):
    """race() with a change of the password (204)."""
    def change():
        r = d.request("POST", "/api/v1/auth/password/change",
                      {"current_password": password,
                       "new_password": "changed pass %d" % rnd},
                      token=access_token)
        assert r.status == 204, r

    return race(d, pool, email, password, change)


def race_a_deactivation(d, pool, email, password, access_token, admin):
    """race() with an admin's deactivation of the account, which is then
    reactivated: what a login got must not come back with it."""
    uid = d.request("GET", "/api/v1/users/me", token=access_token).json["id"]

    def active(on):
        r = d.request("PATCH", "/api/v1/users/" + uid, {"is_active": on},
                      token=admin)
        assert r.status == 200, r

    answers = race(d, pool, email, password, lambda: active(False))
    active(True)
    return answers


def test_no_session_of_the_old_password_survives_a_change(make_daemon):
    d = make_daemon({"AUTH_LOCKOUT_THRESHOLD": "1000"}).start()
    pool = concurrent.futures.ThreadPoolExecutor(LOGINS + 1)
    survivors, raced = [], 0
    try:
        for rnd in range(ROUNDS):
            email, password, tokens = d.user()
            for r in race_a_change(d, pool, email, password,
                                   tokens["access_token"], rnd):
                if r.status == 401:         # the old password, refused
                    raced += 1
                    continue
                assert r.status == 200, r
                refreshed = d.request("POST", "/api/v1/auth/refresh",
                                      {"refresh_token":
                                       r.json["refresh_token"]})
                if refreshed.status != 401:
                    survivors.append((rnd, refreshed.status))
                else:
                    assert_problem(refreshed, 401, "invalid_token")
    finally:
        pool.shutdown()
    print("%d rounds: %d old-password logins refused, surviving sessions %s"
          % (ROUNDS, raced, survivors))
    assert survivors == []
    assert d.stop() == 0


def test_no_pending_second_factor_of_the_old_password_survives(make_daemon):
    # The same race for an account with a second factor: a login that
    # checked the old password gets no mfa_token stored after the change
    # ended the pending ones (README "Second factor").
    from test_mfa import LOGIN_MFA, setup_mfa
    d = make_daemon({"AUTH_LOCKOUT_THRESHOLD": "1000"}).start()
    pool = concurrent.futures.ThreadPoolExecutor(LOGINS + 1)
    survivors, pending = [], 0
    try:
        for rnd in range(ROUNDS):
            email, password, tokens = d.user()
            _, recovery = setup_mfa(d, email, password,
                                    tokens["access_token"])
            for i, r in enumerate(race_a_change(d, pool, email, password,
                                                tokens["access_token"],
                                                rnd)):
                if r.status == 401:
                    continue
                tok = assert_problem(r, 403, "mfa_required")["mfa_token"]
                pending += 1
                done = d.request("POST", LOGIN_MFA, {"mfa_token": tok,
                                                     "code": recovery[i]})
                if done.status != 401:
                    survivors.append((rnd, done.status))
    finally:
        pool.shutdown()
    print("%d rounds: %d mfa_tokens handed out, completed after the "
          "change: %s" % (ROUNDS, pending, survivors))
    assert survivors == []
    assert d.stop() == 0


def test_no_session_survives_a_deactivation(make_daemon):
    from test_users import make_admin
    d = make_daemon({"AUTH_LOCKOUT_THRESHOLD": "1000"}).start()
    admin = make_admin(d)[2]
    pool = concurrent.futures.ThreadPoolExecutor(LOGINS + 1)
    survivors, refused = [], 0
    try:
        for rnd in range(ROUNDS):
            email, password, tokens = d.user()
            for r in race_a_deactivation(d, pool, email, password,
                                         tokens["access_token"], admin):
                if r.status == 403:             # read the account disabled
                    assert_problem(r, 403, "account_disabled")
                    refused += 1
                    continue
                assert r.status == 200, r
                refreshed = d.request("POST", "/api/v1/auth/refresh",
                                      {"refresh_token":
                                       r.json["refresh_token"]})
                if refreshed.status != 401:
                    survivors.append((rnd, refreshed.status))
    finally:
        pool.shutdown()
    print("%d rounds: %d logins refused as disabled, sessions back after "
          "the reactivation %s" % (ROUNDS, refused, survivors))
    assert survivors == []
    assert d.stop() == 0


def test_no_pending_second_factor_survives_a_deactivation(make_daemon):
    from test_mfa import LOGIN_MFA, setup_mfa
    from test_users import make_admin
    d = make_daemon({"AUTH_LOCKOUT_THRESHOLD": "1000"}).start()
    admin = make_admin(d)[2]
    pool = concurrent.futures.ThreadPoolExecutor(LOGINS + 1)
    survivors, pending = [], 0
    try:
        for rnd in range(ROUNDS):
            email, password, tokens = d.user()
            _, recovery = setup_mfa(d, email, password,
                                    tokens["access_token"])
            for i, r in enumerate(race_a_deactivation(
                    d, pool, email, password, tokens["access_token"],
                    admin)):
                if r.status == 403 and \
                        r.json.get("code") == "account_disabled":
                    continue
                tok = assert_problem(r, 403, "mfa_required")["mfa_token"]
                pending += 1
                done = d.request("POST", LOGIN_MFA, {"mfa_token": tok,
                                                     "code": recovery[i]})
                if done.status != 401:
                    survivors.append((rnd, done.status))
    finally:
        pool.shutdown()
    print("%d rounds: %d mfa_tokens handed out, completed after the "
          "reactivation: %s" % (ROUNDS, pending, survivors))
    assert survivors == []
    assert d.stop() == 0


def test_no_password_only_session_survives_the_second_factor(make_daemon):
    import pyotp
    from test_mfa import CONFIRM, SETUP, Codes
    d = make_daemon({"AUTH_LOCKOUT_THRESHOLD": "1000"}).start()
    pool = concurrent.futures.ThreadPoolExecutor(LOGINS + 1)
    survivors, challenged = [], 0
    try:
        for rnd in range(ROUNDS):
            email, password, tokens = d.user()
            tok = tokens["access_token"]
            r = d.request("POST", SETUP, {"current_password": password},
                          token=tok)
            assert r.status == 200, r
            code = Codes(pyotp.parse_uri(r.json["otpauth_uri"]).secret).next()

            def confirm():
                c = d.request("POST", CONFIRM, {"code": code}, token=tok)
                assert c.status == 200, c

            for r in race(d, pool, email, password, confirm):
                if r.status == 403:             # read the factor on
                    assert_problem(r, 403, "mfa_required")
                    challenged += 1
                    continue
                assert r.status == 200, r
                refreshed = d.request("POST", "/api/v1/auth/refresh",
                                      {"refresh_token":
                                       r.json["refresh_token"]})
                if refreshed.status != 401:
                    survivors.append((rnd, refreshed.status))
    finally:
        pool.shutdown()
    print("%d rounds: %d logins asked for the second factor, password-only "
          "sessions kept %s" % (ROUNDS, challenged, survivors))
    assert survivors == []
    assert d.stop() == 0
