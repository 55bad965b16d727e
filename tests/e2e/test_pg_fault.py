"""Fault test: PostgreSQL dies (immediate mode) while clients register and
log in, then comes back. The daemon must answer 503 with Retry-After at
once, keep its database-free routes and the session cache working, never
crash or hang, recover by itself, and leave no half-written registration.

The test makes its own throwaway cluster (tests/pg-cluster.sh), so killing
it disturbs no other test. PostgreSQL only: skipped without
AUTH_E2E_PG_URL. The measured numbers are printed (pytest -s) and written
to pg-fault-numbers.json in the test's tmp folder.
"""
import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import threading
import time

import pytest

from conftest import BACKENDS, PG_URL, ROOT, Daemon, assert_problem, \
    pg_database, wait_until
from test_mail import WebhookSink

pytestmark = pytest.mark.skipif(
    not PG_URL or "postgres" not in BACKENDS,
    reason="PostgreSQL fault test: needs AUTH_E2E_PG_URL and the postgres "
           "backend")

CLUSTER = os.path.join(ROOT, "tests", "pg-cluster.sh")
CONNECT_TIMEOUT_S = 3.0      # libpq connect_timeout set by src/repo/pg.c
DB_TIMEOUT_MS = 1000         # AUTH_DB_TIMEOUT_MS for this daemon
CB_OPEN_SECONDS = 1          # AUTH_CB_OPEN_SECONDS for this daemon
CACHE_SECONDS = 1            # AUTH_SESSION_CACHE_SECONDS for this daemon
OPEN_BOUND_MS = 50.0         # an open circuit answers faster than this
# No request may take longer than the worst legitimate wait: a free pool
# slot (DB_TIMEOUT_MS), a connect (CONNECT_TIMEOUT_S) and a statement's
# client deadline (DB_TIMEOUT_MS + 2 s), with room for a loaded machine.
REQUEST_BOUND_S = CONNECT_TIMEOUT_S + 2 * DB_TIMEOUT_MS / 1000 + 2 + 5
RECOVERY_BOUND_S = 30.0      # from PostgreSQL ready to the daemon ready
CLIENTS = 3
MAX_OPS = 4000               # per client: bounds the test's traffic
# Each client's pace: at most one registration per PACE_S, so the load
# generator does not itself starve a 2-core machine (a daemon thread
# waiting for a CPU would show up as a slow 503). A rate, not a wait for
# anything: the test's waits all poll conditions under deadlines.
PACE_S = 0.01
CLIENT_DEADLINE_S = 180.0


def cluster(cmd, folder):
    r = subprocess.run(["bash", CLUSTER, cmd, folder], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, "pg-cluster.sh %s: %s" % (cmd, r.stderr)
    return r.stdout.strip()


@pytest.fixture
def own_cluster(tmp_path):
    folder = str(tmp_path / "pg")
    url = cluster("start", folder)
    try:
        yield folder, url
    finally:
        subprocess.run(["bash", CLUSTER, "stop", folder],
                       capture_output=True, timeout=180)


def post(port, path, doc, rid):
    """POSTs JSON with headers and body in one write, so that the daemon's
    own timing of the request holds no wait for a client thread's second
    write. Returns (status, Retry-After, body)."""
    body = json.dumps(doc).encode()
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n"
            "X-Request-ID: %s\r\nConnection: close\r\n\r\n"
            % (path, port, len(body), rid)).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head + body)
        r = http.client.HTTPResponse(s)
        r.begin()
        try:
            return r.status, r.getheader("Retry-After"), r.read()
        finally:
            r.close()


class Clients:
    """Threads that register fresh users and log them in, over and over,
    recording every answer with its client-side timing."""

    def __init__(self, d):
        self.d = d
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.records = []
        self.threads = [threading.Thread(target=self._run, args=(i,),
                                         daemon=True)
                        for i in range(CLIENTS)]

    def _call(self, tid, n, op, email, password):
        rid = "fault-%d-%d-%s" % (tid, n, op)
        t0 = time.monotonic()
        try:
            status, ra, body = post(self.d.port, "/api/v1/auth/" + op,
                                    {"email": email, "password": password},
                                    rid)
            code = json.loads(body).get("code") if status >= 400 else None
        except Exception as e:        # noqa: BLE001 -- recorded, asserted
            status, ra, code = None, None, repr(e)
        rec = {"op": op, "status": status, "t0": t0, "t1": time.monotonic(),
               "email": email, "password": password, "retry_after": ra,
               "code": code, "rid": rid}
        with self.lock:
            self.records.append(rec)
        return status

    def _run(self, tid):
        end = time.monotonic() + CLIENT_DEADLINE_S
        for n in range(MAX_OPS):
            if self.stop.wait(PACE_S) or time.monotonic() > end:
                return
            email = "fault-%s@example.com" % secrets.token_hex(6)
            password = "correct horse " + secrets.token_hex(6)
            if self._call(tid, n, "register", email, password) == 201:
                self._call(tid, n, "login", email, password)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), \
            "a client is stuck in a request"

    def snapshot(self):
        with self.lock:
            return list(self.records)


def circuit_state(d):
    """The state /metrics reports as current."""
    r = d.request("GET", "/metrics", timeout=10)
    assert r.status == 200, r
    for line in r.body.decode().splitlines():
        if line.startswith("auth_circuit_state{") and line.endswith(" 1"):
            return line.split('"')[1]
    return None


def db_errors(d):
    r = d.request("GET", "/metrics", timeout=10)
    for line in r.body.decode().splitlines():
        if line.startswith("auth_db_errors_total "):
            return int(line.split()[1])
    raise AssertionError("no auth_db_errors_total in /metrics")


def verify(d, token):
    return d.request("GET", "/api/v1/auth/verify", token=token, timeout=10)


def assert_unavailable(r):
    assert_problem(r, 503, "service_unavailable")
    ra = r.header("Retry-After")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, r.headers


def registered_emails(d):
    """Every email the users API lists (read with a fresh admin)."""
    email = "admin-%s@example.com" % secrets.token_hex(4)
    password = "admin passphrase " + secrets.token_hex(4)
    r = d.command("user", "create", "--email", email, "--admin",
                  stdin=(password + "\n").encode())
    assert r.returncode == 0, r.stderr
    t = d.login(email, password)
    assert t.status == 200, t
    seen, cursor = set(), None
    for _ in range(100000):
        q = "/api/v1/users?limit=100" + ("&cursor=" + cursor if cursor
                                          else "")
        r = d.request("GET", q, token=t.json["access_token"])
        assert r.status == 200, r
        seen.update(u["email"] for u in r.json["items"])
        cursor = r.json["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the user list does not end")


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def test_postgres_dies_and_comes_back(own_cluster, tmp_path):
    folder, url = own_cluster
    # pg-cluster.sh trades durability for speed (synchronous_commit off),
    # so a crash may forget the last commits; this test checks that a 201
    # survives one, so its sessions commit synchronously (passed through
    # the URL's options, which the daemon keeps).
    url += "?options=-c%20synchronous_commit%3Don"
    d = Daemon("postgres", database_url=url, env={
        "AUTH_DB_TIMEOUT_MS": str(DB_TIMEOUT_MS),
        "AUTH_CB_OPEN_SECONDS": str(CB_OPEN_SECONDS),
        "AUTH_CB_FAILURE_THRESHOLD": "3",
        "AUTH_SESSION_CACHE_SECONDS": str(CACHE_SECONDS),
        "AUTH_DB_POOL_SIZE": "4",
    }).start()
    clients = None
    try:
        # A session the daemon has checked (so cached), one it has not.
        _, _, seen = d.user()
        _, _, unseen = d.user()
        assert verify(d, seen["access_token"]).status == 200
        t_seen = time.monotonic()
        assert circuit_state(d) == "closed"
        errors_before = db_errors(d)

        clients = Clients(d).start()
        assert wait_until(lambda: sum(
            1 for x in clients.snapshot()
            if x["op"] == "register" and x["status"] == 201) >= 5,
            timeout=60), "no registrations before the fault"

        t_kill = time.monotonic()
        cluster("halt", folder)
        t_down = time.monotonic()

        def first_503():
            got = [x["t1"] for x in clients.snapshot() if x["status"] == 503]
            return min(got) if got else None
        t_first = wait_until(first_503, timeout=REQUEST_BOUND_S)
        assert t_first, "no 503 after the database died"
        first_503_s = t_first - t_kill

        assert wait_until(lambda: circuit_state(d) == "open", timeout=20), \
            "the circuit did not open"
        t_open = time.monotonic()

        # Database-free routes keep working; readiness says no.
        for path in ("/healthz", "/metrics", "/.well-known/jwks.json"):
            r = d.request("GET", path, timeout=10)
            assert r.status == 200, (path, r)
        assert_unavailable(d.request("GET", "/readyz", timeout=10))
        # The session seen before is vouched for from the cache only while
        # its entry is younger than AUTH_SESSION_CACHE_SECONDS: on
        # PostgreSQL other instances may revoke it meanwhile (a stale
        # answer of any age is SQLite's alone). Then 503, as for a
        # session never checked.
        until = time.monotonic() + CACHE_SECONDS + 1.0
        while time.monotonic() < until:
            r = verify(d, seen["access_token"])
            if r.status == 200:
                assert time.monotonic() - t_seen <= CACHE_SECONDS + 0.5, r
                assert r.header("X-Auth-User-Id") == r.json["sub"]
            else:
                assert_unavailable(r)
        for _ in range(3):
            assert_unavailable(verify(d, seen["access_token"]))
        # A session never checked cannot be vouched for.
        assert_unavailable(verify(d, unseen["access_token"]))
        assert circuit_state(d) in ("open", "half_open")
        assert db_errors(d) > errors_before

        # The clients stop before the restart: with no traffic but a load
        # balancer's /readyz polls, the daemon must still come back.
        clients.join()
        records = clients.snapshot()
        # All traffic between the circuit opening and the restart.
        outage = [x for x in records if x["t0"] >= t_open]
        cluster("resume", folder)
        t_up = time.monotonic()
        assert wait_until(
            lambda: d.request("GET", "/readyz", timeout=10).status == 200,
            timeout=RECOVERY_BOUND_S, interval=0.05), \
            "the daemon did not recover"
        recovery_s = time.monotonic() - t_up
        assert circuit_state(d) == "closed"
        r, email, password = d.register()
        assert r.status == 201, r
        assert d.login(email, password).status == 200
        assert verify(d, unseen["access_token"]).status == 200
        assert d.proc.poll() is None, "the daemon died"

        # -- every answer was an answer, in time ---------------------------
        broken = [x for x in records if x["status"] is None]
        assert not broken, broken[:5]
        slowest = max(x["t1"] - x["t0"] for x in records)
        assert slowest < REQUEST_BOUND_S, slowest
        allowed = {"register": {201, 503}, "login": {200, 503}}
        odd = [x for x in records if x["status"] not in allowed[x["op"]]]
        assert not odd, odd[:5]
        early = [x for x in records if x["t1"] < t_kill and
                 x["status"] == 503]
        assert not early, early[:5]
        unavailable = [x for x in records if x["status"] == 503]
        assert all(x["code"] == "service_unavailable" and
                   x["retry_after"] and x["retry_after"].isdigit() and
                   int(x["retry_after"]) >= 1 for x in unavailable), \
            [x for x in unavailable if not x["retry_after"]][:5]
        assert first_503_s <= CONNECT_TIMEOUT_S, first_503_s

        # -- an open circuit answers at once -------------------------------
        open_503 = [x for x in outage if x["status"] == 503]
        assert len(open_503) >= 10, len(open_503)
        assert not [x for x in outage if x["status"] != 503], \
            "a request succeeded while the database was down"
        client_ms = [1000 * (x["t1"] - x["t0"]) for x in open_503]
        served = {}

        def all_logged():         # access lines follow their answers
            served.update((ev.get("request_id"), ev.get("duration_ms"))
                          for ev in d.logs
                          if ev.get("event") == "http.access")
            return all(x["rid"] in served for x in open_503)
        assert wait_until(all_logged), "access log lines missing"
        server_ms = [served[x["rid"]] for x in open_503]
        slow = [(x["rid"], served[x["rid"]]) for x in open_503
                if served[x["rid"]] >= OPEN_BOUND_MS]
        assert not slow, slow[:10]
        assert statistics.median(client_ms) < OPEN_BOUND_MS, client_ms

        # -- nothing lost, nothing half-written ----------------------------
        stored = registered_emails(d)
        created = [x for x in records
                   if x["op"] == "register" and x["status"] == 201]
        for x in created:
            assert x["email"] in stored, x["email"]
            r = d.login(x["email"], x["password"])
            assert r.status == 200, (x["email"], r)
        # A 503 may come after the server committed (the connection died
        # between COMMIT and its answer), so a refused registration is
        # either entirely there, password included, or entirely absent.
        refused = [x for x in records
                   if x["op"] == "register" and x["status"] == 503]
        present = [x for x in refused if x["email"] in stored]
        for x in present:
            r = d.login(x["email"], x["password"])
            assert r.status == 200, (x["email"], r)
        # Absent ones can be registered now; the ones that may have reached
        # the database (before the circuit opened) are all tried.
        absent = [x for x in refused if x["email"] not in stored]
        for x in [x for x in absent if x["t0"] < t_open][:40]:
            r, _, _ = d.register(email=x["email"], password=x["password"])
            assert r.status == 201, (x["email"], r)

        # -- state changes were logged -------------------------------------
        def moves():
            return [(ev.get("from"), ev.get("to")) for ev in d.logs
                    if ev.get("event") == "repo.circuit"]
        assert wait_until(lambda: moves() and moves()[-1][1] == "closed"), \
            moves()
        assert ("closed", "open") in moves(), moves()

        numbers = {
            "first_503_after_kill_ms": round(first_503_s * 1000, 1),
            "pg_ctl_stop_ms": round((t_down - t_kill) * 1000, 1),
            "open_circuit_503_count": len(open_503),
            "open_circuit_503_client_p50_ms":
                round(statistics.median(client_ms), 2),
            "open_circuit_503_client_p99_ms": round(pct(client_ms, 99), 2),
            "open_circuit_503_client_max_ms": round(max(client_ms), 2),
            "open_circuit_503_server_p50_ms":
                round(statistics.median(server_ms), 3),
            "open_circuit_503_server_max_ms": round(max(server_ms), 3),
            "open_circuit_503_server_max_ms_by_route": {
                op: round(max([served[x["rid"]] for x in open_503
                               if x["op"] == op] or [0]), 3)
                for op in ("register", "login")},
            "recovery_after_pg_ready_ms": round(recovery_s * 1000, 1),
            "slowest_request_ms": round(slowest * 1000, 1),
            "requests": len(records),
            "registered": len(created),
            "refused_registrations": len(refused),
            "refused_but_committed": len(present),
        }
        text = json.dumps(numbers, indent=2, sort_keys=True)
        print("\npg fault numbers:\n" + text)
        (tmp_path / "pg-fault-numbers.json").write_text(text + "\n")
    finally:
        if clients:
            clients.stop.set()
        code = d.stop()
        (tmp_path / "daemon.log").write_text("\n".join(d.lines) + "\n")
    assert code == 0, "\n".join(d.lines[-30:])


def sent_at(url, row_id):
    r = subprocess.run(["psql", url, "-Atc",
                        "SELECT coalesce(sent_at, 0) FROM outbox "
                        "WHERE id = '%s'" % row_id],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip() or "-1")


@pytest.mark.parametrize("folder_made", [True, False])
def test_a_mail_sent_while_the_database_is_down_is_not_sent_again(
        own_cluster, tmp_path, folder_made):
    """README "Mail": a row once sent is never sent again. A delivery that
    succeeds while PostgreSQL is down cannot be recorded as sent; a
    restart then lost that (it lived in memory) and the row was sent
    again once its lease ran out (2/2 in a review). The stop keeps it in
    the data folder, and the next start records it first. On PostgreSQL
    nothing else makes the data folder: the stop makes it (before, the
    save failed there and the mail went out twice, 2/2 in a review)."""
    folder, url = own_cluster
    url += "?options=-c%20synchronous_commit%3Don"   # the row survives
    hook = WebhookSink(hold=threading.Event())
    env = {"AUTH_NOTIFY_WEBHOOK_URL":
           "http://127.0.0.1:%d/hook" % hook.port,
           "AUTH_NOTIFY_WEBHOOK_SECRET": "s" * 32,
           "AUTH_DB_TIMEOUT_MS": "500", "AUTH_CB_OPEN_SECONDS": "1"}
    run = str(tmp_path / "run")                  # the working directory
    os.makedirs(run)
    data = os.path.join(run, "data")
    if folder_made:
        os.makedirs(data)
    env["AUTH_DATA_DIR"] = data
    d = Daemon("postgres", database_url=url, data_dir=run, env=env).start()
    try:
        email, _, _ = d.user()
        r = d.request("POST", "/api/v1/auth/password/forgot",
                      {"email": email})
        assert r.status == 202, r
        assert wait_until(lambda: hook.requests, timeout=30), "no delivery"
        row = json.loads(hook.requests[0]["body"])["id"]
        cluster("halt", folder)                  # the delivery in flight
        hook.hold.set()
        assert d.events(lambda e: e.get("event") == "mail.sent" and
                        e.get("id") == row, timeout=30)
        # a link planted where the file is written: never followed
        victim = str(tmp_path / "victim")
        with open(victim, "w") as f:
            f.write("keep me\n")
        if folder_made:
            os.symlink(victim, os.path.join(data, "mail-unmarked.tmp"))
        assert d.stop() == 0
        with open(victim) as f:
            assert f.read() == "keep me\n"
        assert not os.path.islink(os.path.join(data, "mail-unmarked"))
        kept = [e for e in d.logs if e.get("event") == "mail.unmarked_kept"]
        assert kept and kept[0]["saved"] is True and kept[0]["count"] == 1, \
            kept
        assert os.path.exists(os.path.join(data, "mail-unmarked"))
    finally:
        if d.proc and d.proc.poll() is None:
            d.stop()
        cluster("resume", folder)
    d = Daemon("postgres", database_url=url, data_dir=run, env=env).start()
    try:
        assert d.events(lambda e: e.get("event") == "mail.unmarked_loaded")
        assert wait_until(lambda: sent_at(url, row) > 0, timeout=30), \
            "the sent row was not recorded"
        assert not os.path.exists(os.path.join(data, "mail-unmarked"))
        assert len(hook.requests) == 1, hook.requests
    finally:
        assert d.stop() == 0
        hook.close()


def _psql(url, sql):
    """Runs `sql` in a session that writes whatever the database's
    default: ALTER DATABASE is refused in a read-only transaction."""
    env = dict(os.environ, PGOPTIONS="-c default_transaction_read_only=off")
    r = subprocess.run(["psql", url, "-X", "-q", "-tA", "-v",
                        "ON_ERROR_STOP=1", "-c", sql], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _ready(d):
    return d.request("GET", "/readyz").status


@pytest.mark.parametrize("shape", ["one host", "any server",
                                   "two hosts"])
def test_a_database_that_takes_no_writes_is_unavailable_not_broken(shape):
    """A primary that turned read-only (demoted by a failover; here
    default_transaction_read_only set on the database and its sessions
    ended): every write was 500 internal_error, /readyz said 200 (its
    ping only read) and the circuit stayed closed, so a load balancer
    kept sending logins that all failed. Connections now ask for a server
    that takes writes (target_session_attrs=read-write unless the URL
    says otherwise: of several hosts the primary, after a failover too),
    so nothing connects while none writes: 503 with Retry-After for reads
    too. With target_session_attrs=any, a refused write (SQLSTATE 25006)
    is a 503 that does not open the circuit, and reads (a bearer check
    the cache cannot answer) go on. Either way the ping checks that its
    session writes, so /readyz says 503, and all recovers when the
    database writes again."""
    url = pg_database(PG_URL)
    db = url.rsplit("/", 1)[1].split("?")[0]
    if shape == "any server":
        url += ("&" if "?" in url else "?") + "target_session_attrs=any"
    elif shape == "two hosts":
        head, rest = url.split("@", 1)
        hostport, tail = rest.split("/", 1)
        url = "%s@%s,%s/%s" % (head, hostport, hostport, tail)
    d = Daemon("postgres", database_url=url,
               env={"AUTH_KEYS_SECRET": "e2e-keys-secret-" + "k" * 32,
                    "AUTH_CB_OPEN_SECONDS": "1",
                    "AUTH_SESSION_CACHE_SECONDS": "0"}).start()
    try:
        email, pw, tokens = d.user()
        _psql(url, "ALTER DATABASE %s SET default_transaction_read_only "
                   "= on" % db)
        _psql(url, "SELECT pg_terminate_backend(pid) FROM "
                   "pg_stat_activity WHERE datname = current_database() "
                   "AND pid <> pg_backend_pid()")
        assert wait_until(lambda: _ready(d) == 503, 15)
        reads = set()
        for i in range(8):
            for r in (d.login(email, pw),
                      d.register(email="ro%d-%s@example.com"
                                 % (i, secrets.token_hex(3)))[0]):
                assert_problem(r, 503, "service_unavailable")
                assert int(r.header("Retry-After")) >= 1, r
            reads.add(d.request("GET", "/api/v1/auth/verify",
                                token=tokens["access_token"]).status)
        assert _ready(d) == 503
        if shape != "any server":
            assert reads == {503}, reads
            assert d.events(lambda e: e.get("event") == "db.connect_failed"
                            and "read-only" in e.get("message", ""))
        else:
            assert reads == {200}, reads            # the circuit stays shut
            assert d.events(lambda e: e.get("event") == "db.read_only")
            assert len([e for e in d.logs
                        if e.get("event") == "db.read_only"]) == 1
        _psql(url, "ALTER DATABASE %s RESET default_transaction_read_only"
              % db)
        assert wait_until(lambda: _ready(d) == 200, 15)
        assert wait_until(lambda: d.login(email, pw).status == 200, 15)
    finally:
        _psql(url, "ALTER DATABASE %s RESET default_transaction_read_only"
              % db)
        assert d.stop() == 0


def test_readiness_says_no_right_after_a_call_found_the_database_gone(
        own_cluster):
    """/readyz answered its last ping's 200 for up to a second after
    requests got 503 from a stopped database (a review: two 503s, then
    200). A call that fails now makes it 503 at once, until a ping that
    began after the failure succeeds; the failure asks for that ping
    itself."""
    folder, url = own_cluster
    # the session must outlive the halts (pg-cluster.sh commits lazily)
    url += "?options=-c%20synchronous_commit%3Don"
    d = Daemon("postgres", database_url=url, env={
        "AUTH_CB_FAILURE_THRESHOLD": "1000",      # the circuit stays closed
        "AUTH_SESSION_CACHE_SECONDS": "0",        # /verify asks every time
    }).start()
    try:
        _, _, t = d.user()
        for _ in range(3):
            # a ping now: the next one the prober makes unasked is a
            # second away, longer than the steps below take (polled: on a
            # loaded host a ping may outlast the 1 s stall bound, and
            # /readyz is 503 while it runs; CI under ASan saw one)
            assert wait_until(lambda: _ready(d) == 200, timeout=30,
                              interval=0.05), "not ready before the halt"
            cluster("halt", folder)
            assert_unavailable(verify(d, t["access_token"]))
            assert_unavailable(d.request("GET", "/readyz"))
            cluster("resume", folder)
            assert wait_until(lambda: _ready(d) == 200, timeout=30,
                              interval=0.05), "not ready after the restart"
            assert verify(d, t["access_token"]).status == 200
    finally:
        d.stop()


def test_a_statement_the_database_refuses_leaves_readiness_alone():
    """Only a database not reached (a refused connect, a lost
    connection, no answer) makes /readyz 503 before the next ping: a
    review revoked INSERT on the outbox, and with every /password/forgot
    then failing, /readyz answered 503 on a third to three quarters of
    polls while everything else worked, so any client could keep a
    load balancer from using the instance."""
    # forty failures in a row would open the circuit (and /readyz with
    # it): what is measured here is the readiness alone
    d = Daemon("postgres",
               env={"AUTH_CB_FAILURE_THRESHOLD": "1000"}).start()
    url = d.env["AUTH_DATABASE_URL"]

    def sql(text):
        r = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qc",
                            text], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
    assert wait_until(lambda: _ready(d) == 200, timeout=30, interval=0.05)
    sql("REVOKE INSERT ON outbox FROM CURRENT_USER")
    try:
        statuses = []
        for i in range(40):
            r = d.request("POST", "/api/v1/auth/password/forgot",
                          {"email": "nobody-%d@example.com" % i})
            assert r.status == 500, r
            statuses.append(_ready(d))
        assert statuses == [200] * 40, statuses
    finally:
        sql("GRANT INSERT ON outbox TO CURRENT_USER")
    try:
        assert d.request("POST", "/api/v1/auth/password/forgot",
                         {"email": "nobody@example.com"}).status == 202
    finally:
        assert d.stop() == 0
