"""/api/v1/users/me answers from a user-row cache (README.md, "Session
cache staleness"): changes made on this instance are seen at once, also
while other requests keep the row cached, and the answer is the same
document a database read gives."""
import secrets
import threading

from test_users import make_admin


def test_me_sees_own_and_admin_changes_at_once(daemon):
    _, _, admin_token = make_admin(daemon)
    email, _, t = daemon.user()
    tok = t["access_token"]
    me = daemon.request("GET", "/api/v1/users/me", token=tok)
    assert me.status == 200, me
    uid = me.json["id"]
    stop = threading.Event()
    seen = []

    def reader():                      # keeps the row cached and hot
        while not stop.is_set():
            r = daemon.request("GET", "/api/v1/users/me", token=tok)
            seen.append(r.status)

    th = [threading.Thread(target=reader) for _ in range(3)]
    for x in th:
        x.start()
    try:
        for i in range(20):
            name = "Name %d %s" % (i, secrets.token_hex(3))
            r = daemon.request("PATCH", "/api/v1/users/me",
                               {"full_name": name}, token=tok)
            assert r.status == 200, r
            got = daemon.request("GET", "/api/v1/users/me", token=tok)
            assert got.status == 200 and got.json["full_name"] == name, got
            name = "Admin %d" % i
            r = daemon.request("PATCH", "/api/v1/users/" + uid,
                               {"full_name": name}, token=admin_token)
            assert r.status == 200, r
            got = daemon.request("GET", "/api/v1/users/me", token=tok)
            assert got.json["full_name"] == name, got
            assert got.json == r.json          # the same document
        r = daemon.request("PATCH", "/api/v1/users/" + uid,
                           {"is_active": False}, token=admin_token)
        assert r.status == 200, r
        got = daemon.request("GET", "/api/v1/users/me", token=tok)
        assert got.status == 401, got
    finally:
        stop.set()
        for x in th:
            x.join()
    assert seen and set(seen) <= {200, 401}
    assert email == me.json["email"]
