"""A password change revokes every other session (README "Mail",
"Second factor"): also the session of a login that read the old password
just before the change and stores its session just after it, and the
mfa_token such a login would get. Such a login is refused (401) or what
it got is ended by the change; nothing of the old password survives.
Each test fails on a build without its check (sessions: 3-8 rounds of
20 kept one; mfa_tokens: 8-11 rounds of 20).
"""
import concurrent.futures
import threading

from conftest import assert_problem

LOGINS = 7          # with the change: 8, one client's share of the hash pool
ROUNDS = 20


def race_a_change(d, pool, email, password, access_token, rnd):
    """LOGINS logins with `password` and one change of it, released
    together; returns the logins' answers once the change answered 204."""
    gate = threading.Barrier(LOGINS + 1)

    def login():
        gate.wait()
        return d.login(email, password)

    def change():
        gate.wait()
        return d.request("POST", "/api/v1/auth/password/change",
                         {"current_password": password,
                          "new_password": "changed pass %d" % rnd},
                         token=access_token)

    logins = [pool.submit(login) for _ in range(LOGINS)]
    changed = pool.submit(change).result(60)
    assert changed.status == 204, changed
    return [f.result(60) for f in logins]


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
