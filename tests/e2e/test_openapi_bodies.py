"""Bodies that only a second factor or a passkey reaches, checked against
the schemas of src/openapi.json by Ajv (tests/browser/validate.mjs, JSON
Schema 2020-12 as OpenAPI 3.1 has it): the generated contract test takes
the document's own examples and gets the refusals of these routes. A
client generated from the document refused both bodies here: `amr` had
no passkey values, and a `mfa_required` problem matched both branches of
a `oneOf`."""
import json
import os
import subprocess

import pytest

from conftest import ROOT, Daemon

TOOLS = os.path.join(ROOT, "tests", "browser")
pytestmark = pytest.mark.skipif(
    not os.path.isdir(os.path.join(TOOLS, "node_modules", "ajv")),
    reason="run `npm ci` in tests/browser")


def schema(path, method, status, ctype="application/json"):
    """The JSON pointer of a response's schema in the document."""
    def esc(s):
        return s.replace("~", "~0").replace("/", "~1")
    return "/paths/%s/%s/responses/%s/content/%s/schema" % (
        esc(path), method, status, esc(ctype))


def assert_valid(tmp_path, pointer, body):
    f = tmp_path / ("body-%d.json" % len(list(tmp_path.iterdir())))
    f.write_text(json.dumps(body))
    r = subprocess.run(["node", "validate.mjs", pointer, str(f)], cwd=TOOLS,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (body, r.stdout, r.stderr)


@pytest.fixture(scope="module")
def kd(backend):
    """A daemon whose passkeys a software authenticator can use."""
    from conftest import free_port
    port = free_port()
    origin = "http://localhost:%d" % port
    d = Daemon(backend, env=dict(AUTH_PORT=str(port), AUTH_PUBLIC_URL=origin,
                                 AUTH_WEBAUTHN_RP_ID="localhost",
                                 AUTH_WEBAUTHN_ORIGINS=origin)).start()
    d.origin = origin
    yield d
    assert d.stop() == 0


def test_a_passkey_session_matches_the_document(kd, tmp_path):
    from softauthn import Authenticator
    from test_passkey_rules import LOGIN, enroll, login_options
    _, _, t = kd.user()
    auth = Authenticator()
    r = enroll(kd, t["access_token"], auth)
    assert r.status == 201, r
    assert r.header("Location") == "/api/v1/auth/passkeys"
    r = kd.request("POST", LOGIN, {"credential": auth.assertion(
        login_options(kd), kd.origin)})
    assert r.status == 200, r
    assert_valid(tmp_path, schema(LOGIN, "post", 200), r.json)
    v = kd.request("GET", "/api/v1/auth/verify",
                   token=r.json["access_token"])
    assert v.status == 200 and v.json["amr"] == ["hwk", "mfa"], v
    assert_valid(tmp_path, schema("/api/v1/auth/verify", "get", 200),
                 v.json)


def test_the_second_factor_asked_matches_the_document(kd, tmp_path):
    from test_mfa import mfa_user
    email, pw, codes, _ = mfa_user(kd)
    r = kd.login(email, pw)
    assert r.status == 403 and r.json["code"] == "mfa_required", r
    assert_valid(tmp_path, schema("/api/v1/auth/login", "post", 403,
                                  "application/problem+json"), r.json)
    r = kd.request("POST", "/api/v1/auth/login/mfa",
                   {"mfa_token": r.json["mfa_token"], "code": codes.next()})
    assert r.status == 200, r
    v = kd.request("GET", "/api/v1/auth/verify",
                   token=r.json["access_token"])
    assert v.status == 200 and v.json["amr"] == ["pwd", "otp"], v
    assert_valid(tmp_path, schema("/api/v1/auth/verify", "get", 200),
                 v.json)
