"""PATCH /users/me: an email "change" to the current email needs no
password, so it must write nothing: raced against the owner's
password-checked change to a new email, it never puts the old one back.
"""
import concurrent.futures
import secrets
import threading

ME = "/api/v1/users/me"
ROUNDS = 40
THIEVES = 3


def test_same_email_without_password_never_undoes_a_change(daemon):
    email, password, tokens = daemon.user()
    owner = tokens["access_token"]
    stolen = daemon.login(email, password).json["access_token"]
    cur = email
    with concurrent.futures.ThreadPoolExecutor(1 + THIEVES) as ex:
        for k in range(ROUNDS):
            new = "moved%d-%s@example.com" % (k, secrets.token_hex(3))
            go = threading.Barrier(1 + THIEVES)

            def change():
                go.wait()
                return daemon.request("PATCH", ME, {
                    "email": new, "current_password": password},
                    token=owner)

            def put_back(old=cur):
                go.wait()
                return daemon.request("PATCH", ME, {"email": old},
                                      token=stolen)

            fo = ex.submit(change)
            fs = [ex.submit(put_back) for _ in range(THIEVES)]
            ro, rs = fo.result(), [f.result() for f in fs]
            assert ro.status == 200, ro
            # the thief either wrote nothing (200, read the old email)
            # or was asked for the password (401, read the new one)
            assert all(r.status in (200, 401) for r in rs), rs
            now = daemon.request("GET", ME, token=owner).json["email"]
            assert now == new, (k, now, new, [r.status for r in rs])
            cur = now
