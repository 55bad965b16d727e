"""Passkeys in a real browser: headless Chromium with a virtual WebAuthn
authenticator (CTAP2, resident keys, user verification) driven over the
DevTools protocol by tests/passkeys/passkeys.mjs (puppeteer-core), on an
origin of the daemon itself (http://localhost:PORT is a secure context).
Register, log in without an email, a replayed assertion, a cloned
authenticator, the account's deletion taking its passkeys; on PostgreSQL
also ceremonies begun on one instance and finished on another.

Skipped only when Chromium or node is missing and CI is not set."""
import base64
import json
import os
import shutil
import sqlite3
import subprocess

import pytest

import conftest
from conftest import BACKENDS, PG_URL, ROOT, Daemon, assert_problem, \
    free_port, pg_database

TOOLS = os.path.join(ROOT, "tests", "passkeys")
CHROMIUM = os.environ.get("AUTH_E2E_CHROMIUM", "/usr/bin/chromium")

if not (os.path.exists(CHROMIUM) and shutil.which("node") and
        shutil.which("npm")) and not os.environ.get("CI"):
    pytest.skip("chromium or node is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def tools():
    """tests/passkeys/node_modules from its lock file (npm ci), once."""
    if not os.path.isdir(os.path.join(TOOLS, "node_modules",
                                      "puppeteer-core")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund",
                        "--ignore-scripts"], cwd=TOOLS, check=True,
                       timeout=600, stdout=subprocess.DEVNULL)
    return TOOLS


def passkey_env(ports):
    """Settings for instances on `ports`: RP ID localhost, every one's
    origin allowed (they serve one site behind a balancer)."""
    origins = ",".join("http://localhost:%d" % p for p in ports)
    return {"AUTH_WEBAUTHN_RP_ID": "localhost",
            "AUTH_WEBAUTHN_ORIGINS": origins,
            "AUTH_RATE_LIMIT_PER_MINUTE": "0",
            "AUTH_LOCKOUT_THRESHOLD": "3"}


def start(backend, port, env, **kw):
    full = dict(env)
    full["AUTH_PORT"] = str(port)
    full["AUTH_PUBLIC_URL"] = "http://localhost:%d" % port
    return Daemon(backend, env=full, **kw).start()


def run_browser(tools, a, token, password=None, b=None, email=None):
    env = dict(os.environ)
    env.update({"PK_BASE_A": "http://localhost:%d" % a.port,
                "PK_TOKEN": token, "PK_CHROMIUM": CHROMIUM})
    if b:
        env["PK_BASE_B"] = "http://localhost:%d" % b.port
    if password:
        env["PK_PASSWORD"] = password
    if email:
        env["PK_EMAIL"] = email
    p = subprocess.run(["node", os.path.join(tools, "passkeys.mjs")],
                       env=env, capture_output=True, timeout=180)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    return json.loads(p.stdout)


def claims(jwt):
    seg = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def audits(d, action):
    return [e for e in d.logs
            if e.get("event") == "audit" and e.get("action") == action]


def passkey_rows(d):
    url = d.env.get("AUTH_DATABASE_URL")
    if url and url.startswith("postgres"):
        out = subprocess.run(["psql", url, "-tAc",
                              "SELECT count(*) FROM passkeys"],
                             capture_output=True, check=True)
        return int(out.stdout)
    db = sqlite3.connect(os.path.join(d.data_dir, "auth.db"))
    try:
        return db.execute("SELECT count(*) FROM passkeys").fetchone()[0]
    finally:
        db.close()


@pytest.fixture(params=BACKENDS)
def one(request):
    port = free_port()
    d = start(request.param, port, passkey_env([port]))
    yield d
    assert d.stop() == 0, "\n".join(d.lines[-20:])


def test_register_login_replay_clone_delete(one, tools):
    email, password, t = one.user()
    out = run_browser(tools, one, t["access_token"], password, email=email)
    assert out["secureContext"] is True

    # registration: options as the contract says, then 201 passkey
    pk = out["reg"]["options"]["body"]["publicKey"]
    assert pk["rp"] == {"id": "localhost", "name": "auth-serve"}
    assert email not in pk["user"]["id"]
    assert [p["alg"] for p in pk["pubKeyCredParams"]] == [-7, -8, -257]
    assert pk["authenticatorSelection"]["residentKey"] == "required"
    assert pk["authenticatorSelection"]["userVerification"] == "required"
    assert pk["attestation"] == "none"
    assert len(base64.urlsafe_b64decode(pk["challenge"] + "==")) >= 16
    reg = out["reg"]["register"]
    assert reg["status"] == 201, reg
    assert reg["body"]["name"] == "Test laptop"
    assert reg["body"]["last_used_at"] is None
    assert "internal" in reg["body"]["transports"]
    assert out["list"]["body"]["items"][0]["id"] == reg["body"]["id"]
    assert out["credentials"][0]["isResidentCredential"] is True

    # login without an email: a complete login
    login = out["login"]
    assert login["options"]["publicKey"]["allowCredentials"] == []
    assert login["status"] == 200, login
    c = claims(login["body"]["access_token"])
    assert c["amr"] == ["hwk", "mfa"]
    assert c["email"] == email
    assert out["verify"]["status"] == 200
    assert out["verify"]["mfa"] == "true"

    # the same assertion again: its challenge is used up
    assert out["replay"]["status"] == 401
    assert out["replay"]["body"]["code"] == "invalid_credential"

    # one assertion sent 8 times at once, 5 rounds: one login each
    for statuses in out["race"]:
        assert sorted(statuses) == [200] + [401] * 7, out["race"]

    # a clone whose counter went back: refused and audited
    assert out["clone"]["status"] == 401, out["clone"]
    assert out["clone"]["body"]["code"] == "invalid_credential"
    one.settled()
    clones = audits(one, "passkey.clone_suspected")
    assert len(clones) == 1
    assert clones[0]["passkey_id"] == reg["body"]["id"]

    # the genuine authenticator, counter ahead: accepted again
    assert out["genuine"]["status"] == 200, out["genuine"]

    # 2 wrong passwords, the passkey login, 2 more: below the threshold
    # of 3, because the passkey login reset the count
    assert out["failedBefore"] == [401, 401]
    assert out["failedAfter"] == [401, 401]
    assert out["passwordLogin"] == 200

    assert len(audits(one, "passkey.registered")) == 1
    assert len(audits(one, "passkey.used")) == 2 + len(out["race"])

    # deleting the account deletes its passkeys
    assert out["deleteUser"] == 204
    assert out["afterDelete"]["status"] == 401
    assert passkey_rows(one) == 0


def test_options_and_refusals_over_http(one):
    """What needs no browser: the same options for any email, refusals of
    made-up credentials, list and delete."""
    email, _, t = one.user()
    for body in ({}, {"email": email}, {"email": "nobody@example.com"}):
        r = one.request("POST", "/api/v1/auth/passkeys/login/options", body)
        assert r.status == 200, r
        pk = r.json["publicKey"]
        assert sorted(pk) == ["allowCredentials", "challenge", "rpId",
                              "timeout", "userVerification"]
        assert pk["allowCredentials"] == []
        assert r.header("Cache-Control") == "no-store"
    r = one.request("POST", "/api/v1/auth/passkeys/login",
                    {"credential": {"id": "AAAA", "rawId": "AAAA",
                                    "type": "public-key",
                                    "response": {"clientDataJSON": "e30"}}})
    assert_problem(r, 401, "invalid_credential")
    r = one.request("POST", "/api/v1/auth/passkeys/login", {})
    assert_problem(r, 422, "validation_error")      # a wrong JSON type
    r = one.request("POST", "/api/v1/auth/passkeys/register",
                    {"credential": {"id": "AAAA", "rawId": "AAAA",
                                    "type": "public-key",
                                    "response": {"clientDataJSON": "e30"}}},
                    token=t["access_token"])
    assert_problem(r, 400, "invalid_credential")
    r = one.request("GET", "/api/v1/auth/passkeys", token=t["access_token"])
    assert r.status == 200 and r.json == {"items": []}
    r = one.request("DELETE", "/api/v1/auth/passkeys/"
                    "0190c1d2-7a3b-7c4d-8e5f-6a7b8c9d0e1f",
                    token=t["access_token"])
    assert_problem(r, 404, "not_found")
    r = one.request("POST", "/api/v1/auth/passkeys/register/options", {})
    assert r.status == 401


def test_login_options_rate_limited(backend):
    port = free_port()
    env = passkey_env([port])
    env["AUTH_RATE_LIMIT_PER_MINUTE"] = "3"
    d = start(backend, port, env)
    try:
        made_up = {"credential": {"id": "AAAA", "rawId": "AAAA",
                                  "type": "public-key",
                                  "response": {"clientDataJSON": "e30"}}}
        got = [d.request("POST", "/api/v1/auth/passkeys/login",
                         made_up).status for _ in range(5)]
        assert got[:3] == [401, 401, 401] and got[3:] == [429, 429], got
    finally:
        assert d.stop() == 0


@pytest.mark.skipif(not PG_URL or "postgres" not in BACKENDS,
                    reason="several instances need PostgreSQL")
def test_second_instance_finishes_ceremonies(tools):
    url = pg_database(PG_URL)
    shared = conftest.scratch("auth-pk-multi-")
    ports = [free_port(), free_port()]
    env = passkey_env(ports)
    a = start("postgres", ports[0], env, data_dir=shared, database_url=url)
    b = start("postgres", ports[1], env, data_dir=shared, database_url=url)
    try:
        _, _, t = a.user()
        out = run_browser(tools, a, t["access_token"], b=b)
        assert out["reg"]["register"]["status"] == 201
        assert out["crossLogin"]["status"] == 200, out["crossLogin"]
        assert claims(out["crossLogin"]["body"]["access_token"])["amr"] == \
            ["hwk", "mfa"]
        assert out["crossVerify"]["mfa"] == "true"
        assert out["crossRegister"]["status"] == 201, out["crossRegister"]
        assert len(out["listAfter"]["body"]["items"]) == 2
        for statuses in out["race"]:       # begun at one, raced at other
            assert sorted(statuses) == [200] + [401] * 7, out["race"]
    finally:
        assert a.stop() == 0
        assert b.stop() == 0
