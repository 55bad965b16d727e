"""Passkey rules under concurrency and in the client data, driven with a
software authenticator (softauthn.py) over HTTP, on each backend:

- concurrent logins of one passkey with increasing counters end as some
  serial order of them would: the highest counter of a round is always
  accepted, a refusal (audited as a suspected clone) only ever loses to
  a higher counter, and the highest is what is stored;
- a login racing the deletion of its passkey is refused, or accepted and
  its session then ended by the deletion, and never audited as a
  suspected clone;
- deleting a passkey ends the sessions its logins started, and no other;
- a topOrigin in the client data is refused at registration and login
  (cross-origin ceremonies are refused, and topOrigin belongs to those);
- the per-user cap of 20 passkeys holds when many registrations whose
  options were all fetched below the cap finish at once;
- of the registrations a user began and did not finish, only the newest
  5 can still finish: asking for options in a loop stores no more."""
import threading

import pytest

from conftest import BACKENDS, Daemon, assert_problem, free_port
from softauthn import EDDSA, Authenticator, cbor

REG_OPT = "/api/v1/auth/passkeys/register/options"
REG = "/api/v1/auth/passkeys/register"
LOGIN_OPT = "/api/v1/auth/passkeys/login/options"
LOGIN = "/api/v1/auth/passkeys/login"
LIST = "/api/v1/auth/passkeys"
CAP = 20                            # README "Passkeys": per user
OPEN = 5                            # and unfinished registrations
ROUNDS = 20
RACERS = 7
CLONE = "passkey.clone_suspected"


@pytest.fixture(scope="module", params=BACKENDS)
def d(request):
    """One daemon per backend for the module: RP ID localhost, its own
    origin allowed, no rate limit (the rounds fail on purpose)."""
    port = free_port()
    origin = "http://localhost:%d" % port
    daemon = Daemon(request.param, env={
        "AUTH_PORT": str(port), "AUTH_PUBLIC_URL": origin,
        "AUTH_WEBAUTHN_RP_ID": "localhost",
        "AUTH_WEBAUTHN_ORIGINS": origin,
        "AUTH_RATE_LIMIT_PER_MINUTE": "0"}).start()
    daemon.origin = origin
    yield daemon
    assert daemon.stop() == 0, "\n".join(daemon.lines[-20:])


def at_once(calls):
    """Runs the callables together (released by one barrier); returns
    their results in order."""
    out = [None] * len(calls)
    go = threading.Barrier(len(calls))

    def run(i):
        go.wait(30)
        out[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,))
               for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in out), out
    return out


def clone_audits(d, passkey_ids):
    d.settled()
    return [e for e in d.logs
            if e.get("event") == "audit" and e.get("action") == CLONE and
            e.get("passkey_id") in passkey_ids]


def login_options(d):
    r = d.request("POST", LOGIN_OPT, {})
    assert r.status == 200, r
    return r.json


def enroll(d, token, auth, cd_extra=None):
    """Registers `auth` for the caller of `token`; the answer."""
    r = d.request("POST", REG_OPT, {}, token=token)
    assert r.status == 200, r
    return d.request("POST", REG, {"credential": auth.register(
        r.json, d.origin, cd_extra)}, token=token)


def login(d, cred):
    return d.request("POST", LOGIN, {"credential": cred})


def test_concurrent_increasing_counters_serialise(d):
    _, _, t = d.user()
    auth = Authenticator()
    r = enroll(d, t["access_token"], auth)
    assert r.status == 201, r
    assert r.header("Cache-Control") == "no-store"     # shows a passkey
    pid = r.json["id"]
    refused = 0
    for rnd in range(ROUNDS):
        base = auth.count
        creds = [auth.assertion(login_options(d), d.origin, count=base + i)
                 for i in range(1, RACERS + 1)]
        auth.count = base + RACERS
        got = at_once([lambda c=c: login(d, c) for c in creds])
        statuses = [g.status for g in got]
        assert set(statuses) <= {200, 401}, (rnd, got)
        # nothing stored before this round is as far ahead as its highest
        assert statuses[-1] == 200, (rnd, statuses)
        for g in got:
            if g.status == 401:
                assert g.json["code"] == "invalid_credential"
        refused += statuses.count(401)
    # each refusal lost to a higher counter stored first: a counter that
    # did not move forward, audited as such, never more often
    assert len(clone_audits(d, {pid})) == refused
    # the highest counter of the last round is the stored one
    again = auth.assertion(login_options(d), d.origin, count=auth.count)
    assert_problem(login(d, again), 401, "invalid_credential")
    assert len(clone_audits(d, {pid})) == refused + 1
    assert login(d, auth.assertion(login_options(d), d.origin)).status == 200


def test_login_racing_delete_is_no_clone(d):
    _, _, t = d.user()
    token = t["access_token"]
    pairs = 8                       # a narrow window: many tries
    ids = set()
    for rnd in range(ROUNDS):
        auths, calls = [], []
        for _ in range(pairs):
            auth = Authenticator()
            auth.count = 5
            r = enroll(d, token, auth)
            assert r.status == 201, r
            ids.add(r.json["id"])
            cred = auth.assertion(login_options(d), d.origin)
            auths.append(auth)
            calls.append(lambda p=r.json["id"]: d.request(
                "DELETE", LIST + "/" + p, token=token))
            calls.append(lambda c=cred: login(d, c))
        got = at_once(calls)
        for i in range(pairs):
            assert got[2 * i].status == 204, (rnd, got)
            assert got[2 * i + 1].status in (200, 401), (rnd, got)
            # accepted before the deletion: the deletion ended its session
            if got[2 * i + 1].status == 200:
                pair = got[2 * i + 1].json
                r = d.request("GET", "/api/v1/auth/verify",
                              token=pair["access_token"])
                assert_problem(r, 401, None)
                r = d.request("POST", "/api/v1/auth/refresh", {
                    "refresh_token": pair["refresh_token"]})
                assert_problem(r, 401, "invalid_token")
            after = login(d, auths[i].assertion(login_options(d), d.origin))
            assert_problem(after, 401, "invalid_credential")
    assert clone_audits(d, ids) == []
    r = d.request("GET", LIST, token=token)
    assert r.status == 200 and r.json == {"items": []}


def test_deleting_a_passkey_ends_its_sessions(d):
    """A passkey added with one access token (a stolen one, say) logs in
    with no password; once the owner deletes it, the sessions its logins
    started end at once (access and refresh tokens), and the owner's
    other sessions, and those of the owner's other passkey, go on."""
    _, _, t = d.user()
    token = t["access_token"]
    theirs, mine = Authenticator(), Authenticator()
    r = enroll(d, token, theirs)
    assert r.status == 201, r
    pid = r.json["id"]
    assert enroll(d, token, mine).status == 201
    taken = [login(d, theirs.assertion(login_options(d), d.origin)).json
             for _ in range(3)]
    kept = login(d, mine.assertion(login_options(d), d.origin)).json
    for pair in taken + [kept]:
        assert d.request("GET", "/api/v1/auth/verify",
                         token=pair["access_token"]).status == 200
    r = d.request("DELETE", LIST + "/" + pid, token=token)
    assert r.status == 204, r
    for pair in taken:
        r = d.request("GET", "/api/v1/auth/verify",
                      token=pair["access_token"])
        assert_problem(r, 401, None)
        r = d.request("POST", "/api/v1/auth/refresh",
                      {"refresh_token": pair["refresh_token"]})
        assert_problem(r, 401, "invalid_token")
    for pair in (t, kept):
        assert d.request("GET", "/api/v1/auth/verify",
                         token=pair["access_token"]).status == 200
        r = d.request("POST", "/api/v1/auth/refresh",
                      {"refresh_token": pair["refresh_token"]})
        assert r.status == 200, r
    r = d.request("GET", "/api/v1/auth/sessions",
                  token=kept["access_token"])
    assert r.status == 200 and len(r.json["items"]) == 2, r


@pytest.mark.parametrize("extra", [
    {"topOrigin": "http://evil.example"},
    {"crossOrigin": False, "topOrigin": "http://evil.example"},
    {"crossOrigin": False, "topOrigin": "SAME"},
], ids=["no-crossOrigin", "crossOrigin-false", "own-origin"])
def test_top_origin_refused(d, extra):
    _, _, t = d.user()
    token = t["access_token"]
    extra = {k: (d.origin if v == "SAME" else v) for k, v in extra.items()}
    r = enroll(d, token, Authenticator(), cd_extra=extra)
    assert_problem(r, 400, "invalid_credential")
    auth = Authenticator()
    assert enroll(d, token, auth).status == 201
    r = login(d, auth.assertion(login_options(d), d.origin, cd_extra=extra))
    assert_problem(r, 401, "invalid_credential")
    r = login(d, auth.assertion(login_options(d), d.origin))
    assert r.status == 200, r
    r = d.request("GET", LIST, token=token)
    assert len(r.json["items"]) == 1


@pytest.mark.parametrize("point", [bytes(32), b"\x01" + bytes(31)],
                         ids=["order-4", "identity"])
def test_a_small_order_ed25519_key_is_refused(d, point):
    """An Ed25519 public key of small order proves no possession: with
    the all-zero encoding a signature made without any private key (R the
    identity, S zero) logged in 5 of 20 times (a review). Registration
    refuses such a key, and nothing is stored."""
    _, _, t = d.user()
    token = t["access_token"]
    auth = Authenticator(alg=EDDSA)
    auth.cose = lambda: cbor({1: 1, 3: EDDSA, -1: 6, -2: point})
    assert_problem(enroll(d, token, auth), 400, "invalid_credential")
    assert enroll(d, token, Authenticator(alg=EDDSA)).status == 201
    r = d.request("GET", LIST, token=token)
    assert len(r.json["items"]) == 1


def test_cap_holds_when_registrations_finish_together(d):
    _, _, t = d.user()
    token = t["access_token"]
    held = CAP - 2                      # OPEN registrations, 2 places
    for _ in range(held):
        assert enroll(d, token, Authenticator()).status == 201
    bodies = []
    for _ in range(OPEN):
        r = d.request("POST", REG_OPT, {}, token=token)
        assert r.status == 200, r
        bodies.append({"credential": Authenticator().register(r.json,
                                                              d.origin)})
    got = at_once([lambda b=b: d.request("POST", REG, b, token=token)
                   for b in bodies])
    statuses = sorted(g.status for g in got)
    assert statuses == [201] * 2 + [409] * (OPEN - 2), statuses
    for g in got:
        if g.status == 409:
            assert_problem(g, 409, "conflict")
    r = d.request("GET", LIST, token=token)
    assert r.status == 200 and len(r.json["items"]) == CAP
    assert_problem(d.request("POST", REG_OPT, {}, token=token), 409,
                   "conflict")
    # a place freed is a place to fill, once
    d.request("DELETE", LIST + "/" + r.json["items"][0]["id"], token=token)
    assert enroll(d, token, Authenticator()).status == 201
    assert_problem(d.request("POST", REG_OPT, {}, token=token), 409,
                   "conflict")


def test_only_the_newest_unfinished_registrations_can_finish(d):
    _, _, t = d.user()
    token = t["access_token"]
    bodies = []
    for _ in range(OPEN + 3):
        r = d.request("POST", REG_OPT, {}, token=token)
        assert r.status == 200, r
        bodies.append({"credential": Authenticator().register(r.json,
                                                              d.origin)})
    got = [d.request("POST", REG, b, token=token) for b in bodies]
    for g in got[:3]:                   # their challenges were forgotten
        assert_problem(g, 400, "invalid_credential")
    assert [g.status for g in got[3:]] == [201] * OPEN


def test_another_users_response_leaves_the_challenge_to_its_owner(d):
    """A registration challenge is bound to its user: someone else who
    posts a response made with it is refused, and it stays usable by the
    user it was made for."""
    _, _, mine = d.user()
    _, _, theirs = d.user()
    auth = Authenticator()
    r = d.request("POST", REG_OPT, {}, token=mine["access_token"])
    assert r.status == 200, r
    cred = auth.register(r.json, d.origin)
    r = d.request("POST", REG, {"credential": cred},
                  token=theirs["access_token"])
    assert_problem(r, 400, "invalid_credential")
    r = d.request("POST", REG, {"credential": cred},
                  token=mine["access_token"])
    assert r.status == 201, r
    assert d.request("GET", LIST, token=theirs["access_token"]) \
        .json["items"] == []


@pytest.mark.parametrize("body", [{}, {"credential": "x"},
                                  {"credential": None},
                                  {"credential": ["x"]}])
def test_login_without_a_credential_object_is_422(d, body):
    r = d.request("POST", LOGIN, body)
    p = assert_problem(r, 422, "validation_error")
    assert [e["field"] for e in p["errors"]] == ["credential"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_origins_are_compared_as_a_browser_writes_them(backend):
    """A browser sends the origin serialised (RFC 6454 6.1): host in lower
    case, no default port. Settings spelt otherwise (`http://LOCALHOST:P`
    here, or `https://host:443`) started and then refused every ceremony
    with bad_origin; they are serialised the same way at start."""
    port = free_port()
    origin = "http://localhost:%d" % port
    daemon = Daemon(backend, env={
        "AUTH_PORT": str(port),
        "AUTH_PUBLIC_URL": "http://LocalHost:%d" % port,
        "AUTH_WEBAUTHN_ORIGINS": " http://LOCALHOST:%d " % port,
        "AUTH_RATE_LIMIT_PER_MINUTE": "0"}).start()
    daemon.origin = origin
    try:
        _, _, t = daemon.user()
        r = daemon.request("POST", REG_OPT, {}, token=t["access_token"])
        assert r.json["publicKey"]["rp"]["id"] == "localhost", r.json
        auth = Authenticator()
        r = enroll(daemon, t["access_token"], auth)
        assert r.status == 201, r
        r = login(daemon, auth.assertion(login_options(daemon), origin))
        assert r.status == 200, r
    finally:
        assert daemon.stop() == 0, "\n".join(daemon.lines[-20:])
