"""Statuses every operation answers before its handler runs, held to the
OpenAPI document (src/openapi.json) operation by operation: a body of
another type (415), a body over AUTH_MAX_BODY_BYTES (413), and another
method on the path (405, whose Allow is what OPTIONS answers). The
document once left 413 and 415 off twelve GET operations that answer
them. Also the token parameter of /revoke and /introspect: a JSON token
that is not a string is a 422 like every other route's wrong type, and
introspection takes JSON as the document says."""
import json
import os
import secrets

from conftest import ROOT, Daemon, assert_problem

DOC = json.load(open(os.path.join(ROOT, "src", "openapi.json")))
METHODS = ("get", "post", "patch", "delete")
SOME_ID = "0190c1d2-0000-7000-8000-000000000000"


def operations():
    for path, item in DOC["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def concrete(path):
    return path.replace("{id}", SOME_ID).replace("{file}", "index.css")


def test_every_operation_documents_its_early_statuses(backend):
    d = Daemon(backend, env={"AUTH_MAX_BODY_BYTES": "1024",
                             "AUTH_INTROSPECTION_TOKEN":
                                 secrets.token_urlsafe(32)}).start()
    try:
        seen = 0
        for path, method, op in operations():
            url = concrete(path)
            documented = op["responses"]
            r = d.request(method.upper(), url, body=b"x=1",
                          headers={"Content-Type": "text/plain"})
            assert_problem(r, 415, "unsupported_media_type")
            assert "415" in documented, (method, path)
            r = d.request(method.upper(), url, body=b"{}" + b" " * 2048,
                          headers={"Content-Type": "application/json"})
            assert_problem(r, 413, "payload_too_large")
            assert "413" in documented, (method, path)
            seen += 1
        assert seen >= 40, seen
        # A method the path does not list: 405, and Allow says what
        # OPTIONS says, OPTIONS itself included.
        for path, item in DOC["paths"].items():
            listed = [m.upper() for m in METHODS if m in item]
            other = next(m for m in ("PUT", "PATCH", "DELETE", "POST")
                         if m not in listed)
            r = d.request(other, concrete(path))
            assert_problem(r, 405, "method_not_allowed")
            allow = [m.strip() for m in r.header("Allow").split(",")]
            assert set(allow) == set(listed) | {"OPTIONS"} | (
                {"HEAD"} if "GET" in listed else set()), (path, allow)
            o = d.request("OPTIONS", concrete(path))
            assert o.status == 204 and o.header("Allow") == \
                r.header("Allow"), (path, o)
    finally:
        assert d.stop() == 0, "\n".join(d.lines[-20:])


def test_token_parameter_types(backend):
    secret = secrets.token_urlsafe(32)
    d = Daemon(backend, env={"AUTH_INTROSPECTION_TOKEN": secret}).start()
    try:
        tok = d.user()[2]["access_token"]
        caller = {"Authorization": "Bearer " + secret}
        for path, h in (("/api/v1/auth/revoke", {}),
                        ("/api/v1/auth/introspect", caller)):
            for bad in (5, True, ["x"], {"a": "b"}, None):
                r = d.request("POST", path, {"token": bad}, headers=h)
                assert_problem(r, 422, "validation_error")
                assert r.json["errors"][0]["field"] == "token", r.json
            r = d.request("POST", path, {}, headers=h)   # RFC 7009/7662
            assert_problem(r, 400)
        # introspection, as documented, in JSON and in a form
        r = d.request("POST", "/api/v1/auth/introspect", {"token": tok},
                      headers=caller)
        assert r.status == 200 and r.json["active"] is True, r
        r = d.request("POST", "/api/v1/auth/introspect",
                      body=("token=" + tok).encode(),
                      headers=dict(caller, **{
                          "Content-Type":
                              "application/x-www-form-urlencoded"}))
        assert r.status == 200 and r.json["active"] is True, r
    finally:
        assert d.stop() == 0, "\n".join(d.lines[-20:])
