"""A contract test generated from src/openapi.json by Portman and run by
newman against the real daemon: each operation in a working order
(register, log in with the document's own examples, then use the bearer
token), checking the documented status, content type, headers and the
response schema. Operations that need a mail or an authenticator (email and
password tokens, passkey registration and login) get their documented
refusal. Tools and versions: tests/browser/package.json."""
import base64
import json
import os
import secrets
import subprocess

import pytest

from conftest import ROOT, Daemon

TOOLS = os.path.join(ROOT, "tests", "browser")
BINS = os.path.join(TOOLS, "node_modules", ".bin")
PASSWORD = "correct horse battery"      # the document's example password
ORIGIN = "https://app.example.com"      # the page the fake passkeys name
OPERATIONS = 42
EXTRA_REQUESTS = 1      # the password half of the MFA login, in a script


def make_user(d, email, admin=False):
    args = ["user", "create", "--email", email] + (["--admin"] if admin
                                                    else [])
    r = d.command(*args, stdin=(PASSWORD + "\n").encode())
    assert r.returncode == 0, r.stderr


def login(d, email):
    r = d.login(email, PASSWORD)
    assert r.status == 200, r
    return r.json


def claim(token, name):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))[name]


@pytest.mark.skipif(not os.path.isdir(BINS),
                    reason="run `npm ci` in tests/browser")
def test_generated_contract(backend, tmp_path):
    introspection = secrets.token_urlsafe(32)
    d = Daemon(backend, env={"AUTH_INTROSPECTION_TOKEN": introspection,
                             "AUTH_WEBAUTHN_RP_ID": "example.com",
                             "AUTH_WEBAUTHN_ORIGINS": ORIGIN})
    d.start()
    try:
        make_user(d, "root@example.com", admin=True)
        make_user(d, "bob@example.com")
        make_user(d, "carol@example.com")
        make_user(d, "dave@example.com")    # turns a second factor on, off
        env = {"adminToken": login(d, "root@example.com")["access_token"],
               "carolToken": login(d, "carol@example.com")["access_token"],
               "daveToken": login(d, "dave@example.com")["access_token"],
               "introspectionToken": introspection,
               "passkeyOrigin": ORIGIN}
        for i in range(1, 4):               # one session per destructive op
            t = login(d, "bob@example.com")
            env["bobToken%d" % i] = t["access_token"]
            env["bobRefresh%d" % i] = t["refresh_token"]
            env["bobSession%d" % i] = claim(t["access_token"], "sid")
        env["bobId"] = claim(env["bobToken1"], "sub")
        coll = tmp_path / "collection.json"
        r = subprocess.run(
            [os.path.join(BINS, "portman"), "-l",
             os.path.join(ROOT, "src", "openapi.json"),
             "-b", "http://127.0.0.1:%d" % d.port,
             "-c", "contract/portman-config.json",
             "-s", "contract/postman-config.json",
             "-o", str(coll), "--runNewman", "false"],
            cwd=TOOLS, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0 and coll.exists(), r.stdout + r.stderr
        report = tmp_path / "newman.json"
        args = [os.path.join(BINS, "newman"), "run", str(coll),
                "--reporters", "cli,json",
                "--reporter-json-export", str(report)]
        for k, v in env.items():
            args += ["--env-var", "%s=%s" % (k, v)]
        r = subprocess.run(args, cwd=TOOLS, capture_output=True, text=True,
                           timeout=300)
        run = json.load(open(report))["run"]
        failures = [(f["source"]["name"], f["error"]["message"])
                    for f in run["failures"]]
        assert r.returncode == 0 and not failures, \
            "\n".join("%s: %s" % f for f in failures) + r.stdout[-3000:]
        stats = run["stats"]
        assert stats["requests"]["total"] == OPERATIONS + EXTRA_REQUESTS, \
            stats
        assert stats["assertions"]["total"] >= 4 * OPERATIONS, stats
        # the fake passkeys carried the challenges the options answered and
        # the allowed origin: refused for what no authenticator made
        d.settled()
        why = {e["event"]: e["reason"] for e in d.logs
               if e.get("event", "").startswith("auth.passkey_")}
        assert why.get("auth.passkey_register_refused") in (
            "bad_format", "bad_attestation"), why
        assert why.get("auth.passkey_login_refused") == \
            "unknown credential", why
    finally:
        d.stop()
