"""The /verify answer is written without a JSON tree (README
"Performance"): its bytes must be exactly the compact JSON of the token's
claims, in the documented order, the amr array included, request after
request (the amr text is made once and reused)."""
import base64
import json


def payload(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_verify_body_is_the_claims_byte_for_byte(daemon):
    for _ in range(3):                  # several sessions, same daemon
        _, _, tokens = daemon.user()
        p = payload(tokens["access_token"])
        want = {k: p[k] for k in ("sub", "email", "role", "sid", "jti",
                                  "iss", "iat", "nbf", "exp", "aud")}
        want["amr"] = p.get("amr", ["pwd"])
        text = json.dumps(want, separators=(",", ":")).encode()
        for _ in range(5):
            r = daemon.request("GET", "/api/v1/auth/verify",
                               token=tokens["access_token"])
            assert r.status == 200, r
            assert r.body == text
            assert r.header("Content-Type") == "application/json"
            assert r.header("X-Auth-User-Id") == p["sub"]


def test_a_demoted_admins_token_reads_user_in_body_and_headers(make_daemon):
    """The body's role and email are the account's now, as the headers'
    are (the operation's description): a consumer reading the body must
    not take a demoted admin's token for an admin's."""
    from test_users import make_admin
    d = make_daemon().start()
    _, _, root = make_admin(d)
    _, _, demoted = make_admin(d)
    sub = payload(demoted)["sub"]
    assert payload(demoted)["role"] == "admin"
    r = d.request("PATCH", "/api/v1/users/" + sub, {"role": "user"},
                  token=root)
    assert r.status == 200, r
    r = d.request("GET", "/api/v1/auth/verify", token=demoted)
    assert r.status == 200, r
    assert r.json["role"] == "user" and r.header("X-Auth-Role") == "user"
