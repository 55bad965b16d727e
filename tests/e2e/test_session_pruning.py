"""Sessions that ended a while ago are not kept for ever (README
"Tokens"): each login deletes a few sessions that expired or were
revoked more than 7 days before, with their refresh tokens, a bounded
number at a time (within a
second of a pruning that found none, the logins skip it), so one
account logging in again and again does not grow the tables without
bound. Rows are aged by hand in the database, as time would."""
import os
import sqlite3
import subprocess
import threading
import time

from conftest import assert_problem
from jwtutil import parts

DAY_MS = 24 * 3600 * 1000


def sql(d, statement):
    """Runs `statement` on the daemon's database; the first column of the
    first row, if any."""
    if d.backend == "sqlite":
        db = sqlite3.connect(os.path.join(d.data_dir, "auth.db"))
        try:
            row = db.execute(statement).fetchone()
            db.commit()
            return row[0] if row else None
        finally:
            db.close()
    out = subprocess.run(["psql", d.env["AUTH_DATABASE_URL"], "-tAq", "-v",
                          "ON_ERROR_STOP=1", "-c", statement], check=True,
                         capture_output=True, text=True).stdout.strip()
    return out.splitlines()[-1] if out else None


def add_tokens(d, sid, n, used_at=None):
    """Gives session `sid` `n` more refresh tokens (rotated out at
    `used_at`, when given), as a long life of refreshes would."""
    used = "NULL" if used_at is None else str(int(used_at))
    if d.backend == "sqlite":
        sql(d, "INSERT INTO refresh_tokens (hash, session_id, created_at, "
            "used_at) WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT "
            "n + 1 FROM c WHERE n < %d) SELECT randomblob(32), '%s', 1, %s "
            "FROM c" % (n, sid, used))
    else:
        sql(d, "INSERT INTO refresh_tokens (hash, session_id, created_at, "
            "used_at) SELECT sha256(int4send(n) || '%s'::bytea), '%s', 1, "
            "%s::bigint FROM generate_series(1, %d) AS n"
            % (sid, sid, used, n))


def counts(d):
    return (int(sql(d, "SELECT count(*) FROM sessions")),
            int(sql(d, "SELECT count(*) FROM refresh_tokens")))


def test_ended_sessions_are_pruned_as_logins_come(daemon):
    email, password, first = daemon.user()
    tokens = [daemon.login(email, password).json for _ in range(9)]
    old = tokens[0]["refresh_token"]
    r = daemon.request("POST", "/api/v1/auth/refresh", {"refresh_token": old})
    assert r.status == 200, r
    r = daemon.request("POST", "/api/v1/auth/logout-all",
                       token=first["access_token"])
    assert r.status == 204, r
    uid = sql(daemon, "SELECT id FROM users WHERE email = '%s'" % email)
    # this account's 10 sessions (11 refresh tokens): revoked 8 days ago
    sql(daemon, "UPDATE sessions SET revoked_at = revoked_at - %d "
        "WHERE user_id = '%s'" % (8 * DAY_MS, uid))
    before = counts(daemon)
    # The logins above pruned and found nothing, so those of the next
    # second may skip it; the first login after that prunes. Up to 16 of
    # each kind a login: all ten go at once, the new ones stay.
    deadline, logins = time.monotonic() + 10, 0
    while True:
        fresh = daemon.login(email, password)
        assert fresh.status == 200, fresh
        logins += 1
        ended = int(sql(daemon, "SELECT count(*) FROM sessions WHERE "
                        "user_id = '%s' AND revoked_at IS NOT NULL" % uid))
        if ended == 0 or time.monotonic() > deadline:
            break
        assert ended == 10, ended          # none, or all ten, go
        time.sleep(0.05)
    assert ended == 0, (before, counts(daemon))
    after = counts(daemon)
    assert after[0] <= before[0] - 10 + logins, (before, after, logins)
    assert after[1] <= before[1] - 11 + logins, (before, after, logins)
    assert sql(daemon, "SELECT count(*) FROM sessions WHERE user_id = '%s'"
               % uid) in (logins, str(logins))
    # a pruned session's refresh token is refused like any unknown one
    assert_problem(daemon.request("POST", "/api/v1/auth/refresh",
                                  {"refresh_token": old}), 401)
    # the new session is untouched
    r = daemon.request("POST", "/api/v1/auth/refresh",
                       {"refresh_token": fresh.json["refresh_token"]})
    assert r.status == 200, r


def test_a_session_with_many_tokens_goes_over_several_logins(make_daemon):
    """A pruning deletes at most 512 refresh tokens of each kind of ended
    session, then the sessions left without any: a session refreshed for
    weeks goes a few milliseconds at a time, not in one delete holding
    the database (README "Tokens"). A daemon of its own: the plan test
    below must not see these rows."""
    daemon = make_daemon().start()
    email, password, _ = daemon.user()
    keep = daemon.login(email, password)
    assert keep.status == 200, keep
    sid = sql(daemon, "SELECT session_id FROM refresh_tokens t JOIN "
              "sessions s ON s.id = t.session_id JOIN users u ON "
              "u.id = s.user_id WHERE u.email = '%s' ORDER BY "
              "s.created_at, s.id LIMIT 1" % email)
    many = 3000
    add_tokens(daemon, sid, many)
    sql(daemon, "UPDATE sessions SET revoked_at = %d WHERE id = '%s'"
        % (int(time.time() * 1000) - 8 * DAY_MS, sid))

    def left():
        return int(sql(daemon, "SELECT count(*) FROM refresh_tokens "
                       "WHERE session_id = '%s'" % sid))
    seen, deadline = [left()], time.monotonic() + 20
    assert seen[0] == many + 1, seen
    while seen[-1] > 0 and time.monotonic() < deadline:
        r = daemon.login(email, password)
        assert r.status == 200, r
        n = left()
        if n != seen[-1]:
            seen.append(n)
        time.sleep(0.05)
    assert seen[-1] == 0, seen
    # 512 at a time (another session's tokens may share a pruning)
    assert all(a - b <= 512 for a, b in zip(seen, seen[1:])), seen
    assert len(seen) >= 1 + (many + 1 + 511) // 512, seen
    assert sql(daemon, "SELECT count(*) FROM sessions WHERE id = '%s'"
               % sid) in (0, "0")
    # the session kept is untouched
    r = daemon.request("POST", "/api/v1/auth/refresh",
                       {"refresh_token": keep.json["refresh_token"]})
    assert r.status == 200, r


def test_an_account_that_gathered_many_rows_is_deleted_in_batches(
        make_daemon):
    """An account's deletion sheds the refresh tokens its sessions
    rotated out, then its ended sessions, 512 rows a transaction, before
    the row itself goes (README "Tokens"): a cascade of a million in one
    statement held SQLite's write lock 7 s (others' writes answered 503)
    and could outlast PostgreSQL's statement timeout for ever. Seen from
    outside: while the deletion runs, other connections read the
    account's rows going a batch at a time, never all or nothing."""
    daemon = make_daemon().start()
    many = 20000 if daemon.backend == "sqlite" else 200000
    for attempt in range(3):
        email, password, me = daemon.user()
        uid = sql(daemon, "SELECT id FROM users WHERE email = '%s'" % email)
        sid = sql(daemon, "SELECT id FROM sessions WHERE user_id = '%s'"
                  % uid)
        add_tokens(daemon, sid, many, used_at=2)
        query = ("SELECT count(*) FROM refresh_tokens WHERE session_id = "
                 "'%s'" % sid)
        assert int(sql(daemon, query)) == many + 1
        done = []
        th = threading.Thread(target=lambda: done.append(daemon.request(
            "DELETE", "/api/v1/users/me", {"password": password},
            token=me["access_token"], timeout=120)))
        th.start()
        seen = set()
        while th.is_alive():
            seen.add(int(sql(daemon, query)))
        th.join()
        assert done[0].status == 204, done[0]
        assert int(sql(daemon, query)) == 0
        assert sql(daemon, "SELECT count(*) FROM users WHERE id = '%s'"
                   % uid) in (0, "0")
        if any(0 < n < many + 1 for n in seen):
            return
    raise AssertionError("the deletion was never seen midway: %s" % seen)


def test_a_large_deletion_never_removes_the_last_admin(make_daemon):
    """An account whose live sessions hold more refresh tokens than one
    transaction should delete is ended first, then shed, then deleted
    (README "Tokens"). Reactivated while it is shed, made the only admin
    (it demotes the one who deleted it), it stays: the deletion answers
    409 `conflict`. Its last step deleted it whatever it had become, and
    left no active admin (a review: 3 of 3, both backends)."""
    from test_users import make_admin
    d = make_daemon().start()
    many = 60000 if d.backend == "sqlite" else 200000
    caught = 0
    for _ in range(3):
        _, _, a_tok = make_admin(d)
        b_email, b_pw, b_tok = make_admin(d)
        b_id = sql(d, "SELECT id FROM users WHERE email = '%s'" % b_email)
        a_id = sql(d, "SELECT u.id FROM users u JOIN sessions s ON "
                   "s.user_id = u.id WHERE u.email <> '%s' ORDER BY "
                   "s.created_at DESC LIMIT 1" % b_email)
        sid = sql(d, "SELECT id FROM sessions WHERE user_id = '%s'" % b_id)
        add_tokens(d, sid, many, used_at=2)
        done = []
        th = threading.Thread(target=lambda: done.append(d.request(
            "DELETE", "/api/v1/users/" + b_id, token=a_tok, timeout=120)))
        th.start()
        active = "SELECT is_active FROM users WHERE id = '%s'" % b_id
        while th.is_alive() and sql(d, active) in (1, "t"):
            pass                        # (the API's answer may be cached)
        r = d.request("PATCH", "/api/v1/users/" + b_id, {"is_active": True},
                      token=a_tok)
        if r.status == 200:
            b = d.login(b_email, b_pw)
            assert b.status == 200, b
            r = d.request("PATCH", "/api/v1/users/" + a_id,
                          {"role": "user"}, token=b.json["access_token"])
            assert r.status == 200, r
        th.join()
        admins = int(sql(d, "SELECT count(*) FROM users WHERE role = "
                        "'admin' AND is_active"))
        assert admins >= 1, (done[0], admins)
        if done[0].status == 409:
            assert_problem(done[0], 409, "conflict")
            # it was ended before it was kept: a change, audited
            assert d.events(lambda e: e.get("event") == "audit" and
                            e.get("action") == "user.updated" and
                            e.get("user_id") == b_id and
                            "deletion" in e.get("reason", ""))
            caught += 1
        else:
            assert done[0].status == 204, done[0]
        if caught:
            return
    raise AssertionError("the reactivation never came while it was shed")


def test_a_token_kept_no_longer_names_no_session(daemon):
    """A rotated-out refresh token past its keeping (its lifetime and the
    grace: README "Tokens") ends nothing by a refresh, and now neither
    by a logout nor an RFC 7009 revocation (before, both ended its
    session while no rotation had pruned it yet: a review); one still
    kept does."""
    for kept in (False, True):
        _, _, first = daemon.user()
        r = daemon.request("POST", "/api/v1/auth/refresh",
                           {"refresh_token": first["refresh_token"]})
        assert r.status == 200, r
        child = r.json
        if not kept:    # made and rotated out 31 days ago (the TTL is 30)
            sql(daemon, "UPDATE refresh_tokens SET created_at = created_at"
                " - %d, used_at = used_at - %d WHERE used_at IS NOT NULL AND"
                " session_id = '%s'" % (31 * DAY_MS, 31 * DAY_MS,
                                        parts(child["access_token"])[1]
                                        ["sid"]))
        old = {"refresh_token": first["refresh_token"]}
        r = daemon.request("POST", "/api/v1/auth/logout", old)
        if kept:
            assert r.status == 204, r
        else:
            assert_problem(r, 401, "invalid_token")
        r = daemon.request("POST", "/api/v1/auth/revoke",
                           {"token": first["refresh_token"]})
        assert r.status == 200, r
        r = daemon.request("POST", "/api/v1/auth/refresh",
                           {"refresh_token": child["refresh_token"]})
        assert r.status == (401 if kept else 200), r


def test_recently_ended_sessions_are_kept(daemon):
    email, password, first = daemon.user()
    uid = sql(daemon, "SELECT id FROM users WHERE email = '%s'" % email)
    r = daemon.request("POST", "/api/v1/auth/logout-all",
                       token=first["access_token"])
    assert r.status == 204, r
    # one revoked 6 days ago, one that expired 6 days ago: both kept
    sql(daemon, "UPDATE sessions SET revoked_at = revoked_at - %d "
        "WHERE user_id = '%s'" % (6 * DAY_MS, uid))
    second = daemon.login(email, password)
    assert second.status == 200, second
    now_ms = int(time.time() * 1000)
    sql(daemon, "UPDATE sessions SET expires_at = %d WHERE user_id = '%s' "
        "AND revoked_at IS NULL" % (now_ms - 6 * DAY_MS, uid))
    assert_problem(daemon.request("POST", "/api/v1/auth/refresh",
                                  {"refresh_token":
                                   second.json["refresh_token"]}), 401)
    for _ in range(3):
        assert daemon.login(email, password).status == 200
    assert int(sql(daemon, "SELECT count(*) FROM sessions WHERE user_id = "
                   "'%s'" % uid)) == 5


# The session cap's read (src/repo/sessions.c S_CAP), shape for shape.
CAP_READ = ("SELECT id FROM sessions WHERE user_id = '{uid}' "
            "AND revoked_at IS NULL AND expires_at > {now} "
            "ORDER BY last_used_at DESC, id DESC")


def plan(d, query):
    """The database's plan for `query`, as one text."""
    if d.backend == "sqlite":
        db = sqlite3.connect(os.path.join(d.data_dir, "auth.db"))
        try:
            db.execute("ANALYZE")
            return " | ".join(r[3] for r in
                              db.execute("EXPLAIN QUERY PLAN " + query))
        finally:
            db.close()
    out = subprocess.run(["psql", d.env["AUTH_DATABASE_URL"], "-tAq", "-v",
                          "ON_ERROR_STOP=1", "-c", "ANALYZE sessions",
                          "-c", "EXPLAIN " + query],
                         check=True, capture_output=True, text=True).stdout
    return " | ".join(out.split("\n"))


def test_a_users_live_sessions_are_read_apart_from_ended_ones(daemon):
    """Every login caps the account's live sessions: that read finds them
    in an index of live sessions (migration 0014), without reading the
    sessions that ended this week, which are kept, or sorting. Through
    the index on user_id alone, an account that had logged in 2,000 times
    this week read 2,000 rows at each login, under SQLite's write lock."""
    email, password, _ = daemon.user()
    uid = sql(daemon, "SELECT id FROM users WHERE email = '%s'" % email)
    now_ms = int(time.time() * 1000)
    rows = ("SELECT 'ended-' || n, '{uid}', {t}, {t}, {e}, {t} FROM "
            .format(uid=uid, t=now_ms - DAY_MS, e=now_ms + DAY_MS))
    if daemon.backend == "sqlite":
        sql(daemon, "INSERT INTO sessions (id, user_id, created_at, "
            "last_used_at, expires_at, revoked_at) WITH RECURSIVE "
            "c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c "
            "WHERE n < 2000) " + rows + "c")
    else:
        sql(daemon, "INSERT INTO sessions (id, user_id, created_at, "
            "last_used_at, expires_at, revoked_at) " + rows +
            "generate_series(1, 2000) AS n")
    p = plan(daemon, CAP_READ.format(uid=uid, now=now_ms))
    assert "sessions_live_by_user" in p, p
    assert "TEMP B-TREE" not in p and "Sort" not in p, p
    # the cap itself still ends the oldest live session past the limit
    assert daemon.login(email, password).status == 200
    assert int(sql(daemon, "SELECT count(*) FROM sessions WHERE user_id = "
                   "'%s' AND revoked_at IS NULL" % uid)) == 2
