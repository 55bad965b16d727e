"""The daemon end to end: HTTP core, register, login, /users/me."""
import json
import os
import re
import stat
import time

import pytest

from conftest import Daemon, assert_problem, wait_until
from jwtutil import b64e, parts

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}"
                  r"-[0-9a-f]{12}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_healthz_and_request_id(daemon):
    r = daemon.request("GET", "/healthz")
    assert r.status == 200 and r.json == {"status": "ok"}
    assert UUID.match(r.header("X-Request-ID"))
    r = daemon.request("GET", "/healthz", headers={"X-Request-ID": "abc.D-1_"})
    assert r.header("X-Request-ID") == "abc.D-1_"
    for bad in ("has space", "x" * 129, "semi;colon", ""):
        r = daemon.request("GET", "/healthz", headers={"X-Request-ID": bad})
        assert r.header("X-Request-ID") != bad
        assert UUID.match(r.header("X-Request-ID"))
    ok = "y" * 128
    assert daemon.request("GET", "/healthz", headers={
        "X-Request-ID": ok}).header("X-Request-ID") == ok


def test_request_id_in_every_log_line_of_the_request(daemon):
    rid = "trace-" + os.urandom(4).hex()
    daemon.request("POST", "/api/v1/auth/login",
                   {"email": "nobody@example.com", "password": "whatever1"},
                   headers={"X-Request-ID": rid})
    def mine():
        return [e for e in daemon.logs if e.get("request_id") == rid]

    # the access line is written once the response has gone out
    assert wait_until(lambda: any(e["event"] == "http.access"
                                  for e in mine()))
    lines = mine()
    events = {e["event"] for e in lines}
    assert "http.access" in events and "auth.login_failed" in events
    access = [e for e in lines if e["event"] == "http.access"][0]
    assert access["method"] == "POST"
    assert access["route"] == "/api/v1/auth/login"
    assert access["status"] == 401
    assert access["duration_ms"] >= 0


def test_request_id_in_the_lines_of_an_answer_that_could_not_be_sent(
        daemon):
    """A client that resets its connection before the answer: the
    libmicrohttpd message about the failed send ("Failed to send the
    response headers for the request for `/api/v1/auth/login'") was a line
    without the request's id; it is now the `error` of that request's
    access line. Logins reset as soon as they are sent (a login takes a
    hash's time, so its answer meets the reset; a reset that comes first
    discards the request unread), until three answers met the reset (at
    most 40)."""
    import socket
    import struct
    body = json.dumps({"email": "nobody@example.com",
                       "password": "whatever1"}).encode()
    rids, failed = [], []
    while len(rids) < 40 and len(failed) < 3:
        rid = "reset-%d-%s" % (len(rids), os.urandom(3).hex())
        rids.append(rid)
        s = socket.create_connection(("127.0.0.1", daemon.port))
        s.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                  b"X-Request-ID: " + rid.encode() + b"\r\n"
                  b"Content-Type: application/json\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\n\r\n" + body)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        s.close()                               # RST, at once
        line = daemon.events(lambda e: e.get("event") == "http.access" and
                             e.get("request_id") == rid, timeout=2)
        failed += [e for e in line or [] if "error" in e]
    daemon.settled()
    loose = [e for e in daemon.logs if "request for" in json.dumps(e) and
             e.get("request_id") not in rids]
    assert not loose, loose
    assert failed, "no answer met the reset in %d tries" % len(rids)
    for e in failed:
        assert e["completed"] is False and "/api/v1/auth/login" in \
            e["error"], e


def test_access_line_of_every_method_is_json(daemon):
    """The access line is written by hand (no jansson tree): a method that
    is not an RFC 9110 token, or not UTF-8, shows as "(invalid)", one
    longer than any registered (a made-up one of kilobytes) as "(too
    long)", and the line stays one JSON object with every field."""
    sent = {b"GET": "GET", b"M-SEARCH": "M-SEARCH", b"G\xffT": "(invalid)",
            b'FO"O': "(invalid)", b"P\\ST": "(invalid)",
            b"UPDATEREDIRECTREF": "UPDATEREDIRECTREF",
            b"X" * 3000: "(too long)"}
    rids = {}
    for method, shown in sent.items():
        rid = "method-" + os.urandom(4).hex()
        rids[rid] = shown
        daemon.raw(method + b" /healthz HTTP/1.1\r\nHost: x\r\n"
                   b"X-Request-ID: " + rid.encode() +
                   b"\r\nConnection: close\r\n\r\n")
    lines = daemon.events(lambda e: e.get("event") == "http.access" and
                          e.get("request_id") in rids and
                          len([x for x in daemon.logs
                               if x.get("request_id") in rids]) == len(rids))
    assert len(lines) == len(rids)
    for e in lines:
        assert e["method"] == rids[e["request_id"]], e
        assert e["status"] in (200, 400, 405) and e["ip"] == "127.0.0.1"
        assert isinstance(e["duration_ms"], float) and e["completed"] is True
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$",
                        e["ts"])


def test_readyz(daemon):
    # 503 until the database has answered the daemon's first ping, which
    # on a busy host may end after this module's daemon logged its start
    def ready():
        r = daemon.request("GET", "/readyz")
        return r if r.status == 200 else None
    r = wait_until(ready, 10)
    assert r and r.json["status"] == "ready", \
        daemon.request("GET", "/readyz")


def test_unknown_route_and_wrong_method(daemon):
    assert_problem(daemon.request("GET", "/nope"), 404, "not_found")
    assert_problem(daemon.request("GET", "/api/v1/users/me/"), 404)
    r = daemon.request("DELETE", "/api/v1/auth/login")
    assert_problem(r, 405, "method_not_allowed")
    # OPTIONS is answered on every known path (204), so Allow lists it,
    # and a 405 says what OPTIONS says (RFC 9110 10.2.1)
    assert r.header("Allow") == "POST, OPTIONS"
    r = daemon.request("OPTIONS", "/api/v1/auth/login")
    assert r.status == 204 and r.header("Allow") == "POST, OPTIONS", r
    r = daemon.request("POST", "/healthz")
    assert_problem(r, 405)
    assert r.header("Allow") == "GET, HEAD, OPTIONS"


def test_register_created(daemon):
    r, email, _ = daemon.register(email="  Ada.Lovelace@Example.COM ",
                                  full_name="Ada Lovelace")
    assert r.status == 201, r
    u = r.json
    assert r.header("Location") == "/api/v1/users/" + u["id"]
    assert UUID.match(u["id"])
    assert u["email"] == "ada.lovelace@example.com"
    assert u["full_name"] == "Ada Lovelace"
    assert u["role"] == "user" and u["is_active"] is True
    assert u["is_verified"] is False
    assert RFC3339.match(u["created_at"]) and RFC3339.match(u["updated_at"])
    assert set(u) == {"id", "email", "full_name", "role", "is_active",
                      "is_verified", "mfa_enabled", "created_at",
                      "updated_at"}
    assert u["mfa_enabled"] is False
    r2, _, _ = daemon.register(email="ADA.lovelace@example.com")
    assert_problem(r2, 409, "email_taken")


def test_register_without_name_has_null_full_name(daemon):
    r, _, _ = daemon.register()
    assert r.status == 201 and r.json["full_name"] is None


@pytest.mark.parametrize("body,field", [
    ({"password": "a long passphrase"}, "email"),
    ({"email": "x@example.com"}, "password"),
    ({"email": 5, "password": "a long passphrase"}, "email"),
    ({"email": "x@example.com", "password": ["a"]}, "password"),
    ({"email": "not-an-email", "password": "a long passphrase"}, "email"),
    ({"email": "a@b", "password": "a long passphrase"}, "email"),
    # a relay reading a dotted number as an address would go there
    ({"email": "p@10.0.0.5", "password": "a long passphrase"}, "email"),
    ({"email": "p@999.999.999.999", "password": "a long passphrase"},
     "email"),
    ({"email": "p@1.0x7f", "password": "a long passphrase"}, "email"),
    ({"email": "a b@example.com", "password": "a long passphrase"}, "email"),
    ({"email": "x@example.com", "password": "short"}, "password"),
    ({"email": "x@example.com", "password": "p" * 129}, "password"),
    ({"email": "x@example.com", "password": "password"}, "password"),
    ({"email": "x@example.com", "password": "Qwerty123"}, "password"),
    ({"email": "marianne@example.com", "password": "xxMARIANNExx"},
     "password"),
    ({"email": "x@example.com", "password": "a long passphrase",
      "full_name": 42}, "full_name"),
    ({"email": "x@example.com", "password": "a long passphrase",
      "full_name": ""}, "full_name"),
])
def test_register_validation(daemon, body, field):
    r = daemon.request("POST", "/api/v1/auth/register", body)
    p = assert_problem(r, 422, "validation_error")
    assert field in [e["field"] for e in p["errors"]], p
    assert all(isinstance(e["message"], str) for e in p["errors"])


def test_register_password_edges(daemon):
    r, _, _ = daemon.register(password="\U0001F600" * 128)  # 128 emoji
    assert r.status == 201, r
    r, _, _ = daemon.register(password="a b c d e f")       # spaces ok
    assert r.status == 201, r


@pytest.mark.parametrize("body", [b"{", b"[1,2]", b'"str"', b"",
                                  b'{"email":"a@example.com","email":"b"}',
                                  b"\xff\xfe{}"])
def test_register_malformed(daemon, body):
    r = daemon.request("POST", "/api/v1/auth/register", body=body,
                       headers={"Content-Type": "application/json"})
    assert_problem(r, 400)


def test_register_media_type(daemon):
    r = daemon.request("POST", "/api/v1/auth/register", body=b"email=x",
                       headers={"Content-Type":
                                "application/x-www-form-urlencoded"})
    assert_problem(r, 415, "unsupported_media_type")
    r = daemon.request("POST", "/api/v1/auth/register", body=b"{}",
                       headers={"Content-Type": "text/plain"})
    assert_problem(r, 415)
    r = daemon.request("POST", "/api/v1/auth/register", body=b"{}")
    assert_problem(r, 415)
    r = daemon.request("POST", "/api/v1/auth/register",
                       body=b'{"email":"a"}',
                       headers={"Content-Type":
                                "application/json; charset=utf-8"})
    assert_problem(r, 422)


# RFC 9110 s8.3.1: type "/" subtype, then *( OWS ";" OWS parameter ),
# OWS being spaces and tabs; type and subtype in any case.
@pytest.mark.parametrize("ctype,status", [
    ("application/json", 422),
    ("Application/JSON", 422),
    ("application/json;charset=utf-8", 422),
    ("application/json\t;charset=utf-8", 422),
    ("application/json \t ; charset=utf-8", 422),
    ("application/json\t", 422),
    ("application/json x", 415),
    ("application/json\tx", 415),
    ("application/jsonx", 415),
    ("application/json-patch+json", 415),
    ("application/x-www-form-urlencoded\t;charset=utf-8", 415),
])
def test_media_type_grammar(daemon, ctype, status):
    r = daemon.request("POST", "/api/v1/auth/register",
                       body=b'{"email":"a"}', headers={"Content-Type": ctype})
    assert_problem(r, status)
    if ctype.startswith("application/x-www-form-urlencoded"):
        r = daemon.request("POST", "/api/v1/auth/login", body=b"email=a",
                           headers={"Content-Type": ctype})
        assert_problem(r, 422)          # a form where forms are read


def test_body_cap(daemon):
    big = json.dumps({"email": "x@example.com",
                      "password": "p" * 20000}).encode()
    r = daemon.request("POST", "/api/v1/auth/register", body=big,
                       headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "payload_too_large")
    # Content-Length announced over the cap: refused before the body.
    raw = daemon.raw(b"POST /api/v1/auth/register HTTP/1.1\r\n"
                     b"Host: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 999999999\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 413"), raw[:200]
    # Chunked bodies are counted as they arrive.
    chunk = b"a" * 4000
    data = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6))
    raw = daemon.raw(b"POST /api/v1/auth/register HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
                     b"\r\n" + data + b"0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 413"), raw[:200]


def test_framing_ambiguity_refused(daemon):
    raw = daemon.raw(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
    raw = daemon.raw(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Transfer-Encoding: gzip\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]


def test_login_token_pair(daemon):
    r, email, pw = daemon.register()
    uid = r.json["id"]
    t = daemon.login(email.upper(), pw)
    assert t.status == 200, t
    assert t.header("Cache-Control") == "no-store"
    body = t.json
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["refresh_expires_in"] == 2592000
    assert len(body["refresh_token"]) >= 43
    assert re.match(r"^[A-Za-z0-9_-]+$", body["refresh_token"])
    hdr, claims, _ = parts(body["access_token"])
    assert hdr["alg"] == "ES256" and hdr["kid"]
    assert claims["sub"] == uid and claims["email"] == email
    assert claims["role"] == "user"
    assert claims["iss"] == "auth-serve" and claims["aud"] == "auth-serve"
    assert UUID.match(claims["sid"]) and UUID.match(claims["jti"])
    now = time.time()
    assert abs(claims["iat"] - now) < 60 and claims["nbf"] <= claims["iat"]
    assert claims["exp"] == claims["iat"] + 900


def test_login_form(daemon):
    _, email, pw = daemon.register()[0:3]
    from urllib.parse import urlencode
    form = urlencode({"grant_type": "password", "username": email,
                      "password": pw, "client_id": "web", "scope": "x y"})
    r = daemon.request("POST", "/api/v1/auth/login", body=form.encode(),
                       headers={"Content-Type":
                                "application/x-www-form-urlencoded"})
    assert r.status == 200, r
    assert r.json["token_type"] == "Bearer"
    form = urlencode({"grant_type": "client_credentials", "username": email,
                      "password": pw})
    r = daemon.request("POST", "/api/v1/auth/login", body=form.encode(),
                       headers={"Content-Type":
                                "application/x-www-form-urlencoded"})
    assert_problem(r, 400, "invalid_request")
    r = daemon.request("POST", "/api/v1/auth/login", body=b"username=%zz",
                       headers={"Content-Type":
                                "application/x-www-form-urlencoded"})
    assert_problem(r, 400)


def test_nul_in_a_form_value_is_a_field_error(daemon):
    # %00 decodes to U+0000: refused naming the field, as in a JSON string
    # (never cut short to the password before it); in a name, malformed
    from urllib.parse import quote
    _, email, pw = daemon.register()
    form = "grant_type=password&username=%s&password=%s" % (
        quote(email), quote(pw))
    for body, status, field in (
            (form + "%00x", 422, "password"),
            ("grant_type=password&username=%s%%00&password=%s"
             % (quote(email), quote(pw)), 422,
             "username"),
            (form + "&sco%00pe=x", 400, None)):
        r = daemon.request("POST", "/api/v1/auth/login", body=body.encode(),
                           headers={"Content-Type":
                                    "application/x-www-form-urlencoded"})
        p = assert_problem(r, status)
        if field:
            assert p["code"] == "validation_error", p
            assert [e["field"] for e in p["errors"]] == [field], p
    r = daemon.request("POST", "/api/v1/auth/login", body=form.encode(),
                       headers={"Content-Type":
                                "application/x-www-form-urlencoded"})
    assert r.status == 200, r


def test_login_failures_look_the_same(daemon):
    _, email, pw = daemon.register()
    wrong = daemon.login(email, pw + "x")
    unknown = daemon.login("nobody-" + email, pw)
    for r in (wrong, unknown):
        p = assert_problem(r, 401, "invalid_credentials")
        assert r.header("WWW-Authenticate").startswith("Bearer")
    a, b = wrong.json, unknown.json
    del a["request_id"], b["request_id"]
    assert a == b
    assert wrong.headers and sorted(
        k for k, _ in wrong.headers if k not in ("Date", "X-Request-ID")) == \
        sorted(k for k, _ in unknown.headers
               if k not in ("Date", "X-Request-ID"))
    r = daemon.request("POST", "/api/v1/auth/login", {"email": email})
    assert_problem(r, 422, "validation_error")


def test_me(daemon):
    email, _, tokens = daemon.user(full_name="Grace Hopper")
    r = daemon.request("GET", "/api/v1/users/me",
                       token=tokens["access_token"])
    assert r.status == 200, r
    assert r.json["email"] == email and r.json["full_name"] == "Grace Hopper"
    assert "password_hash" not in r.json


def test_me_unauthorized(daemon):
    r = daemon.request("GET", "/api/v1/users/me")
    assert_problem(r, 401, "unauthorized")
    assert r.header("WWW-Authenticate").startswith("Bearer")
    for bad in ("garbage", "a.b.c", "x" * 9000):
        r = daemon.request("GET", "/api/v1/users/me", token=bad)
        assert_problem(r, 401, "invalid_token")
        assert 'error="invalid_token"' in r.header("WWW-Authenticate")
    r = daemon.request("GET", "/api/v1/users/me",
                       headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_problem(r, 401, "unauthorized")


def test_bearer_with_trailing_blanks(daemon):
    """A field value ends without whitespace (RFC 9110 s5.5): blanks the
    client sent after the token are not part of it (they made it
    invalid)."""
    _, _, t = daemon.user()
    tok = t["access_token"]
    for tail in (" ", "\t", " \t  "):
        raw = daemon.raw(("GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\n"
                          "Authorization: Bearer %s%s\r\n"
                          "Connection: close\r\n\r\n" % (tok, tail)).encode())
        assert raw.startswith(b"HTTP/1.1 200 "), (tail, raw[:300])
    r = daemon.request("GET", "/api/v1/auth/verify",
                       headers={"Authorization": "Bearer %s " % tok})
    assert r.status == 200, r


def test_me_tampered_token(daemon):
    _, _, tokens = daemon.user()
    h, p, s = tokens["access_token"].split(".")
    claims = parts(tokens["access_token"])[1]
    claims["role"] = "admin"
    forged = ".".join([h, b64e(json.dumps(claims).encode()), s])
    assert_problem(daemon.request("GET", "/api/v1/users/me", token=forged),
                   401, "invalid_token")
    none = ".".join([b64e(b'{"alg":"none","typ":"JWT"}'),
                     b64e(json.dumps(claims).encode()), ""])
    assert_problem(daemon.request("GET", "/api/v1/users/me", token=none),
                   401, "invalid_token")


def test_secrets_never_logged(daemon):
    r, email, pw = daemon.register(password="Zebra-Umbrella-%s" %
                                   os.urandom(3).hex())
    t = daemon.login(email, pw).json
    daemon.request("GET", "/api/v1/users/me", token=t["access_token"])
    daemon.login(email, pw + "-wrong")
    text = "\n".join(daemon.lines)
    assert pw not in text
    assert t["access_token"] not in text
    assert t["access_token"].split(".")[2] not in text
    assert t["refresh_token"] not in text
    assert "$argon2" not in text


def test_restart_keeps_users_and_key(backend):
    d = Daemon(backend).start()
    try:
        _, email, pw = d.register()
        tok = d.login(email, pw).json["access_token"]
        keys = os.path.join(d.data_dir, "keys")
        # on PostgreSQL the keys live in the database, sealed
        assert os.path.isdir(keys) == (backend == "sqlite")
        pems = [f for f in os.listdir(keys) if f.endswith(".pem")] \
            if backend == "sqlite" else ["database"]
        assert pems
        for f in os.listdir(keys) if backend == "sqlite" else []:
            mode = stat.S_IMODE(os.stat(os.path.join(keys, f)).st_mode)
            assert mode & 0o077 == 0, (f, oct(mode))
        assert d.stop() == 0
        d.start()
        assert d.request("GET", "/api/v1/users/me", token=tok).status == 200
        assert d.login(email, pw).status == 200
    finally:
        d.stop()


def test_login_upgrades_an_old_hash_cost(backend):
    """A hash made with an older (cheaper) Argon2 cost is replaced with
    one at the configured cost on the next successful login."""
    if backend != "sqlite":
        pytest.skip("reads the SQLite file directly")
    import sqlite3
    d = Daemon(backend, env={"AUTH_ARGON2_MEMORY_KIB": "8192",
                             "AUTH_ARGON2_ITERATIONS": "1"}).start()
    try:
        _, email, pw = d.register()
        db = os.path.join(d.data_dir, "auth.db")

        def stored():
            with sqlite3.connect(db) as c:
                return c.execute("SELECT password_hash FROM users WHERE "
                                 "email = ?", (email,)).fetchone()[0]

        assert "m=8192,t=1" in stored()
        assert d.stop() == 0
        d.env.update({"AUTH_ARGON2_MEMORY_KIB": "19456",
                      "AUTH_ARGON2_ITERATIONS": "2"})
        d.start()
        assert d.login(email, pw + "x").status == 401
        assert "m=8192,t=1" in stored()            # a failure changes nothing
        assert d.login(email, pw).status == 200
        assert "m=19456,t=2" in stored()
        assert d.login(email, pw).status == 200     # and the new hash works
    finally:
        d.stop()


def test_cors(make_daemon):
    d = make_daemon({"AUTH_CORS_ORIGINS": "https://app.example.com, "
                                          "https://admin.example.com"}).start()
    ok = {"Origin": "https://app.example.com"}
    r = d.request("GET", "/healthz", headers=ok)
    assert r.header("Access-Control-Allow-Origin") == "https://app.example.com"
    assert "X-Request-ID" in r.header("Access-Control-Expose-Headers")
    assert r.header("Vary") == "Origin"
    r = d.request("OPTIONS", "/api/v1/auth/login", headers=dict(
        ok, **{"Access-Control-Request-Method": "POST"}))
    assert r.status == 204
    assert "POST" in r.header("Access-Control-Allow-Methods")
    assert "Authorization" in r.header("Access-Control-Allow-Headers")
    r = d.request("GET", "/healthz",
                  headers={"Origin": "https://evil.example.com"})
    assert r.header("Access-Control-Allow-Origin") is None
    r = d.request("OPTIONS", "/api/v1/auth/login",
                  headers={"Origin": "https://evil.example.com"})
    assert r.status == 204 and "POST" in r.header("Allow")
    assert r.header("Access-Control-Allow-Methods") is None
    assert_problem(d.request("OPTIONS", "/nope", headers=ok), 404)


def test_no_cors_headers_by_default(daemon):
    r = daemon.request("GET", "/healthz",
                       headers={"Origin": "https://app.example.com"})
    assert r.header("Access-Control-Allow-Origin") is None
