"""A password change revokes every other session (README "Tokens",
"Second factor"): also the session of a login that read the old password
just before the change and stores its session just after it. Such a
login is refused (401) or its session is revoked; none survives.
"""
import concurrent.futures
import threading

from conftest import assert_problem

LOGINS = 7          # with the change: 8, one client's share of the hash pool
ROUNDS = 20


def test_no_session_of_the_old_password_survives_a_change(make_daemon):
    d = make_daemon({"AUTH_LOCKOUT_THRESHOLD": "1000"}).start()
    pool = concurrent.futures.ThreadPoolExecutor(LOGINS + 1)
    survivors, raced = [], 0
    try:
        for rnd in range(ROUNDS):
            email, password, tokens = d.user()
            gate = threading.Barrier(LOGINS + 1)

            def login():
                gate.wait()
                return d.login(email, password)

            def change():
                gate.wait()
                return d.request("POST", "/api/v1/auth/password/change",
                                 {"current_password": password,
                                  "new_password": "changed pass %d" % rnd},
                                 token=tokens["access_token"])

            logins = [pool.submit(login) for _ in range(LOGINS)]
            changed = pool.submit(change).result(60)
            assert changed.status == 204, changed
            for f in logins:
                r = f.result(60)
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
