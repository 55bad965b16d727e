"""Logins that meet an old-cost password hash at the same instant all
succeed (README "Argon2id": the hash is replaced on a successful login).
Each of them checked the password against the old hash; the first one
to store today's hash changes it under the others, whose sessions are
stored only while the account's hash is the one their login checked.
A login that finds its replacement beaten checks the password once more
against the hash now stored, and goes on with it if it still holds (a
password change meanwhile still refuses it). Before, every such login
but the first was answered 401 and counted as a failure (10 of the 40
logins here, on both backends, with two hashing threads).
"""
import concurrent.futures
import threading

OLD = {"AUTH_ARGON2_MEMORY_KIB": "8192", "AUTH_ARGON2_ITERATIONS": "1"}
NEW = {"AUTH_ARGON2_MEMORY_KIB": "9216", "AUTH_ARGON2_ITERATIONS": "1"}
ROUNDS = 10
LOGINS = 4


def test_concurrent_logins_meeting_an_old_hash_all_succeed(make_daemon):
    d = make_daemon(dict(OLD, AUTH_HASH_WORKERS="2",
                         AUTH_MAX_CONNECTIONS_PER_IP="0")).start()
    users = []
    for _ in range(ROUNDS):
        r, email, pw = d.register()
        assert r.status == 201, r
        users.append((email, pw))
    assert d.stop() == 0
    d.env.update(NEW)
    d.start()

    refused = []
    with concurrent.futures.ThreadPoolExecutor(LOGINS) as pool:
        for email, pw in users:
            gate = threading.Barrier(LOGINS)

            def login(email=email, pw=pw, gate=gate):
                gate.wait(30)
                return d.login(email, pw)

            answers = [f.result(60) for f in
                       [pool.submit(login) for _ in range(LOGINS)]]
            refused += [(email, a.status) for a in answers
                        if a.status != 200]
            # the account is not left with a run of failures either
            assert d.login(email, pw).status == 200
    assert refused == [], refused
    # a wrong password against the replaced hash is still wrong
    email, pw = users[0]
    assert d.login(email, pw + "x").status == 401
