"""Token lifecycle: refresh rotation, logout, verify, sessions, password
change, introspection, revocation, JWKS and key rotation."""
import concurrent.futures
import json
import signal
import threading
from urllib.parse import urlencode

import jwt as pyjwt
import pytest

from conftest import assert_problem, wait_until
from jwtutil import b64d, b64e, parts

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def me(d, tok):
    return d.request("GET", "/api/v1/users/me", token=tok)


def refresh(d, rt):
    return d.request("POST", "/api/v1/auth/refresh", {"refresh_token": rt})


def test_refresh_rotates(daemon):
    _, _, t = daemon.user()
    r = refresh(daemon, t["refresh_token"])
    assert r.status == 200, r
    assert r.header("Cache-Control") == "no-store"
    n = r.json
    assert n["refresh_token"] != t["refresh_token"]
    assert parts(n["access_token"])[1]["sid"] == \
        parts(t["access_token"])[1]["sid"]
    assert me(daemon, n["access_token"]).status == 200
    # a retry within the grace window gets the same child
    again = refresh(daemon, t["refresh_token"])
    assert again.status == 200
    assert again.json["refresh_token"] == n["refresh_token"]
    # and the child rotates on
    assert refresh(daemon, n["refresh_token"]).status == 200


def test_refresh_bad_input(daemon):
    assert_problem(refresh(daemon, "x" * 43), 401, "invalid_token")
    assert_problem(refresh(daemon, "short"), 401, "invalid_token")
    r = daemon.request("POST", "/api/v1/auth/refresh", {})
    assert_problem(r, 422, "validation_error")
    r = daemon.request("POST", "/api/v1/auth/refresh", {"refresh_token": 7})
    assert_problem(r, 422)


def test_long_strings_are_invalid_refresh_tokens(daemon):
    """An access token, or any over-long string, sent as a refresh token
    is an invalid token (401), not a malformed request; the body cap still
    holds."""
    _, _, t = daemon.user()
    assert len(t["access_token"]) > 512
    assert_problem(refresh(daemon, t["access_token"]), 401, "invalid_token")
    for path in ("/api/v1/auth/refresh", "/api/v1/auth/logout"):
        r = daemon.request("POST", path, {"refresh_token": "A" * 4000})
        assert_problem(r, 401, "invalid_token")
        r = daemon.request("POST", path, {"refresh_token": "A" * 20000})
        assert_problem(r, 413)
    # the session is untouched
    assert refresh(daemon, t["refresh_token"]).status == 200


def test_concurrent_refresh_gets_one_child(daemon):
    _, _, t = daemon.user()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        rs = list(ex.map(lambda _: refresh(daemon, t["refresh_token"]),
                         range(8)))
    assert all(r.status == 200 for r in rs), rs
    assert len({r.json["refresh_token"] for r in rs}) == 1


def test_replay_after_grace_kills_session(make_daemon):
    d = make_daemon({"AUTH_REFRESH_REUSE_GRACE_SECONDS": "0",
                     "AUTH_SESSION_CACHE_SECONDS": "0"}).start()
    _, _, t = d.user()
    child = refresh(d, t["refresh_token"]).json
    assert_problem(refresh(d, t["refresh_token"]), 401, "invalid_token")
    assert_problem(refresh(d, child["refresh_token"]), 401, "invalid_token")
    assert_problem(me(d, child["access_token"]), 401, "invalid_token")
    audits = d.events(lambda e: e.get("action") == "refresh_reuse_detected")
    assert audits and audits[0]["session_id"] == \
        parts(t["access_token"])[1]["sid"]


def test_logout(daemon):
    _, _, t = daemon.user()
    r = daemon.request("POST", "/api/v1/auth/logout",
                       {"refresh_token": t["refresh_token"]})
    assert r.status == 204, r
    assert_problem(refresh(daemon, t["refresh_token"]), 401)
    assert_problem(me(daemon, t["access_token"]), 401, "invalid_token")
    r = daemon.request("POST", "/api/v1/auth/logout",
                       {"refresh_token": t["refresh_token"]})
    assert_problem(r, 401, "invalid_token")


def test_logout_all(daemon):
    email, pw, t1 = daemon.user()
    t2 = daemon.login(email, pw).json
    assert_problem(daemon.request("POST", "/api/v1/auth/logout-all"), 401)
    r = daemon.request("POST", "/api/v1/auth/logout-all",
                       token=t1["access_token"])
    assert r.status == 204
    for t in (t1, t2):
        assert_problem(me(daemon, t["access_token"]), 401)
        assert_problem(refresh(daemon, t["refresh_token"]), 401)


def test_verify(daemon):
    email, _, t = daemon.user()
    r = daemon.request("GET", "/api/v1/auth/verify", token=t["access_token"])
    assert r.status == 200, r
    c = parts(t["access_token"])[1]
    assert r.header("X-Auth-User-Id") == c["sub"]
    assert r.header("X-Auth-Email") == email
    assert r.header("X-Auth-Role") == "user"
    for k in ("sub", "email", "role", "sid", "exp", "iat", "iss", "aud"):
        assert r.json[k] == c[k], k
    r = daemon.request("GET", "/api/v1/auth/verify")
    assert_problem(r, 401)
    assert r.header("WWW-Authenticate").startswith("Bearer")
    r = daemon.request("GET", "/api/v1/auth/verify", token="nope")
    assert 'error="invalid_token"' in r.header("WWW-Authenticate")


def test_password_change(daemon):
    email, pw, t1 = daemon.user()
    t2 = daemon.login(email, pw).json
    path = "/api/v1/auth/password/change"
    r = daemon.request("POST", path, {"current_password": pw + "x",
                                      "new_password": "a brand new one"},
                       token=t1["access_token"])
    assert_problem(r, 401, "invalid_credentials")
    r = daemon.request("POST", path, {"current_password": pw,
                                      "new_password": "password1"},
                       token=t1["access_token"])
    p = assert_problem(r, 422, "validation_error")
    assert p["errors"][0]["field"] == "new_password"
    r = daemon.request("POST", path, {"current_password": pw},
                       token=t1["access_token"])
    assert_problem(r, 422)
    r = daemon.request("POST", path, {"current_password": pw,
                                      "new_password": "a brand new one"},
                       token=t1["access_token"])
    assert r.status == 204, r
    assert me(daemon, t1["access_token"]).status == 200
    assert_problem(me(daemon, t2["access_token"]), 401)
    assert_problem(refresh(daemon, t2["refresh_token"]), 401)
    assert daemon.login(email, pw).status == 401
    assert daemon.login(email, "a brand new one").status == 200


def test_sessions(daemon):
    email, pw, t1 = daemon.user()
    t2 = daemon.login(email, pw, **{"User-Agent": "second-device/1.0"}).json
    r = daemon.request("GET", "/api/v1/auth/sessions",
                       token=t1["access_token"])
    assert r.status == 200
    items = r.json["items"]
    assert len(items) == 2
    sid1 = parts(t1["access_token"])[1]["sid"]
    sid2 = parts(t2["access_token"])[1]["sid"]
    cur = [i for i in items if i["current"]]
    assert len(cur) == 1 and cur[0]["id"] == sid1
    other = [i for i in items if i["id"] == sid2][0]
    assert other["user_agent"] == "second-device/1.0"
    assert other["ip"] == "127.0.0.1"
    for k in ("created_at", "last_used_at", "expires_at"):
        assert other[k].endswith("Z")
    # someone else cannot revoke it
    _, _, stranger = daemon.user()
    r = daemon.request("DELETE", "/api/v1/auth/sessions/" + sid2,
                       token=stranger["access_token"])
    assert_problem(r, 404, "not_found")
    r = daemon.request("DELETE", "/api/v1/auth/sessions/" + sid2,
                       token=t1["access_token"])
    assert r.status == 204
    assert_problem(me(daemon, t2["access_token"]), 401)
    r = daemon.request("DELETE", "/api/v1/auth/sessions/" + sid2,
                       token=t1["access_token"])
    assert_problem(r, 404)
    r = daemon.request("DELETE", "/api/v1/auth/sessions/not-a-uuid",
                       token=t1["access_token"])
    assert_problem(r, 404)


def test_sessions_beyond_the_cap_end(make_daemon):
    """AUTH_MAX_SESSIONS_PER_USER live sessions at most: a new login ends
    the least recently used (created or refreshed) beyond it, at once on
    this instance (its tokens stop working), and GET /sessions lists
    every live one: a session cannot hide behind many newer ones."""
    d = make_daemon({"AUTH_MAX_SESSIONS_PER_USER": "3",
                     "AUTH_RATE_LIMIT_PER_MINUTE": "0"}).start()
    email, pw, first = d.user()
    pairs = [first] + [d.login(email, pw).json for _ in range(2)]
    assert me(d, first["access_token"]).status == 200   # cached now
    kept = refresh(d, first["refresh_token"])     # the first, used again
    assert kept.status == 200, kept
    pairs[0] = kept.json
    pairs += [d.login(email, pw).json for _ in range(2)]
    # ended: the two least recently used, the 2nd and 3rd logins
    for t in pairs[1:3]:
        assert_problem(me(d, t["access_token"]), 401)
        assert_problem(refresh(d, t["refresh_token"]), 401)
    for t in (pairs[0], pairs[3], pairs[4]):
        assert me(d, t["access_token"]).status == 200
    r = d.request("GET", "/api/v1/auth/sessions",
                  token=pairs[4]["access_token"])
    assert r.status == 200
    assert sorted(i["id"] for i in r.json["items"]) == sorted(
        parts(t["access_token"])[1]["sid"]
        for t in (pairs[0], pairs[3], pairs[4]))


def test_the_cap_holds_when_logins_end_together(make_daemon):
    """Logins of one user that end at the same instant cap one after the
    other: each sees the sessions the others made, so no round leaves
    more live sessions than AUTH_MAX_SESSIONS_PER_USER."""
    d = make_daemon({"AUTH_MAX_SESSIONS_PER_USER": "2",
                     "AUTH_RATE_LIMIT_PER_MINUTE": "0"}).start()
    email, pw, _ = d.user()
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        for rnd in range(40):
            go = threading.Barrier(4)

            def login():
                go.wait(30)
                return d.login(email, pw)
            futures = [ex.submit(login) for _ in range(4)]
            got = [f.result(60) for f in futures]
            assert [g.status for g in got] == [200] * 4, (rnd, got)
            live = [g.json for g in got
                    if me(d, g.json["access_token"]).status == 200]
            assert 1 <= len(live) <= 2, (rnd, len(live))
            r = d.request("GET", "/api/v1/auth/sessions",
                          token=live[0]["access_token"])
            assert r.status == 200 and len(r.json["items"]) <= 2, (rnd, r)


def test_introspection_off_by_default(daemon):
    r = daemon.request("POST", "/api/v1/auth/introspect",
                       body=b"token=x", headers=FORM)
    assert_problem(r, 404)


def test_introspection(make_daemon):
    secret = "introspect-" + "z" * 30
    d = make_daemon({"AUTH_INTROSPECTION_TOKEN": secret}).start()
    email, _, t = d.user()

    def ask(tok, caller=secret):
        return d.request("POST", "/api/v1/auth/introspect",
                         body=urlencode({"token": tok}).encode(),
                         headers=dict(FORM, Authorization="Bearer " + caller))

    r = ask(t["access_token"], "wrong")
    assert_problem(r, 401)
    # RFC 6750 3.1: a bearer credential that was sent and is wrong
    assert r.header("WWW-Authenticate") == \
        'Bearer realm="auth-serve", error="invalid_token"'
    r = d.request("POST", "/api/v1/auth/introspect", body=b"token=x",
                  headers=FORM)
    assert_problem(r, 401)
    assert "error=" not in r.header("WWW-Authenticate")     # none sent
    r = ask(t["access_token"])
    assert r.status == 200
    # once: the route's and the handler's own were both sent
    assert [v for k, v in r.headers if k.lower() == "cache-control"] == \
        ["no-store"], r.headers
    j = r.json
    c = parts(t["access_token"])[1]
    assert j["active"] is True and j["sub"] == c["sub"]
    assert j["email"] == email and j["sid"] == c["sid"]
    assert j["exp"] == c["exp"] and j["iat"] == c["iat"]
    assert j["role"] == "user" and j["token_type"]
    r = ask(t["refresh_token"])
    assert r.json["active"] is True and r.json["sub"] == c["sub"]
    assert r.json["token_type"] == "refresh_token"
    # issued with the pair at login; and a rotated child when rotated
    assert abs(r.json["iat"] - c["iat"]) <= 1, r.json
    assert r.json["exp"] > r.json["iat"]
    n = refresh(d, t["refresh_token"])
    assert n.status == 200, n
    r = ask(n.json["refresh_token"])
    assert abs(r.json["iat"] - parts(n.json["access_token"])[1]["iat"]) \
        <= 1, r.json
    t = n.json
    assert ask("garbage").json == {"active": False}
    # tokens none of ours can be (longer than any, U+0000 in them):
    # inactive, like any invalid one (RFC 7662 s2.2), in a form or JSON
    for bad in ("x" * 9000, t["access_token"] + "\u0000",
                t["refresh_token"] + "\u0000x"):
        r = ask(bad)
        assert r.status == 200 and r.json == {"active": False}, r
        r = d.request("POST", "/api/v1/auth/introspect", {"token": bad},
                      headers={"Authorization": "Bearer " + secret})
        assert r.status == 200 and r.json == {"active": False}, r
    d.request("POST", "/api/v1/auth/logout",
              {"refresh_token": t["refresh_token"]})
    assert ask(t["access_token"]).json == {"active": False}
    assert ask(t["refresh_token"]).json == {"active": False}
    r = d.request("POST", "/api/v1/auth/introspect", body=b"",
                  headers=dict(FORM, Authorization="Bearer " + secret))
    assert_problem(r, 400)


def test_revoke(daemon):
    _, _, t = daemon.user()
    r = daemon.request("POST", "/api/v1/auth/revoke",
                       body=urlencode({"token": t["refresh_token"],
                                       "token_type_hint": "refresh_token"})
                       .encode(), headers=FORM)
    assert r.status == 200
    assert_problem(me(daemon, t["access_token"]), 401)
    _, _, t = daemon.user()
    r = daemon.request("POST", "/api/v1/auth/revoke",
                       {"token": t["access_token"]})
    assert r.status == 200
    assert_problem(refresh(daemon, t["refresh_token"]), 401)
    r = daemon.request("POST", "/api/v1/auth/revoke", {"token": "garbage"})
    assert r.status == 200
    r = daemon.request("POST", "/api/v1/auth/revoke", {})
    assert_problem(r, 400)
    # tokens none of ours can be: 200 as any invalid one (RFC 7009 s2.2),
    # and nothing revoked by a token cut short at a U+0000
    _, _, t = daemon.user()
    for bad in ("x" * 9000, t["refresh_token"] + "\u0000x",
                t["access_token"] + "\u0000", "\u0000" + t["refresh_token"],
                "\u0000"):
        r = daemon.request("POST", "/api/v1/auth/revoke", {"token": bad})
        assert r.status == 200, r
        r = daemon.request("POST", "/api/v1/auth/revoke",
                           body=urlencode({"token": bad}).encode(),
                           headers=FORM)
        assert r.status == 200, r
    assert me(daemon, t["access_token"]).status == 200
    assert refresh(daemon, t["refresh_token"]).status == 200


@pytest.mark.parametrize("how", ["logout", "revoke form", "revoke json"])
def test_a_rotated_refresh_token_still_ends_its_session(daemon, how):
    """A tab that lost the refresh race to another tab holds the parent
    token: within the grace it still refreshes, so a logout or an RFC 7009
    revocation with it must end the session too (the parent refreshes no
    more, the child neither, nor do their access tokens verify)."""
    _, _, t = daemon.user()
    n = refresh(daemon, t["refresh_token"])
    assert n.status == 200, n
    n = n.json
    if how == "logout":
        r = daemon.request("POST", "/api/v1/auth/logout",
                           {"refresh_token": t["refresh_token"]})
        assert r.status == 204, r
    elif how == "revoke form":
        r = daemon.request("POST", "/api/v1/auth/revoke",
                           body=urlencode({"token": t["refresh_token"]})
                           .encode(), headers=FORM)
        assert r.status == 200, r
    else:
        r = daemon.request("POST", "/api/v1/auth/revoke",
                           {"token": t["refresh_token"]})
        assert r.status == 200, r
    assert_problem(refresh(daemon, t["refresh_token"]), 401)
    assert_problem(refresh(daemon, n["refresh_token"]), 401)
    for tok in (t["access_token"], n["access_token"]):
        assert_problem(daemon.request("GET", "/api/v1/auth/verify",
                                      token=tok), 401)
    # Ended already: a second logout with either token finds nothing.
    for rt in (t["refresh_token"], n["refresh_token"]):
        r = daemon.request("POST", "/api/v1/auth/logout",
                           {"refresh_token": rt})
        assert_problem(r, 401, "invalid_token")


def test_jwks_verifies_with_independent_library(daemon):
    _, _, t = daemon.user()
    r = daemon.request("GET", "/.well-known/jwks.json")
    assert r.status == 200
    keys = r.json["keys"]
    hdr = parts(t["access_token"])[0]
    k = [k for k in keys if k["kid"] == hdr["kid"]][0]
    assert k["kty"] == "EC" and k["crv"] == "P-256"
    assert k["use"] == "sig" and k["alg"] == "ES256"
    assert "d" not in k
    key = pyjwt.PyJWK(k).key
    claims = pyjwt.decode(t["access_token"], key, algorithms=["ES256"],
                          audience="auth-serve", issuer="auth-serve")
    assert claims["sid"] and claims["role"] == "user"


# P-256's group order (SEC 2, s2.4.2)
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def test_es256_twin_signature_refused(make_daemon):
    """ECDSA is malleable: (r, n - s) verifies wherever (r, s) does. The
    daemon signs with the low s and refuses the twin, so a token has one
    spelling (PyJWT, which has no such rule, shows the twin is a valid
    signature)."""
    secret = "introspect-" + "t" * 30
    d = make_daemon({"AUTH_INTROSPECTION_TOKEN": secret}).start()
    jwk = d.request("GET", "/.well-known/jwks.json").json["keys"][0]
    key = pyjwt.PyJWK(jwk).key
    email, password, _ = d.user()
    for _ in range(8):          # a high s half the time, were it unchecked
        t = d.login(email, password).json["access_token"]
        head, sig = t.rsplit(".", 1)
        raw = b64d(sig)
        s = int.from_bytes(raw[32:], "big")
        assert len(raw) == 64 and s <= P256_N // 2, t
        twin = head + "." + b64e(raw[:32] + (P256_N - s).to_bytes(32, "big"))
        assert pyjwt.decode(twin, key, algorithms=["ES256"],
                            audience="auth-serve")["sub"]
        assert d.request("GET", "/api/v1/auth/verify", token=t).status == 200
        assert_problem(d.request("GET", "/api/v1/auth/verify", token=twin),
                       401, "invalid_token")
        assert_problem(me(d, twin), 401, "invalid_token")
        r = d.request("POST", "/api/v1/auth/introspect", {"token": twin},
                      headers={"Authorization": "Bearer " + secret})
        assert r.status == 200 and r.json == {"active": False}, r


def test_key_confusion_rejected(daemon):
    from cryptography.hazmat.primitives import serialization
    _, _, t = daemon.user()
    hdr, claims, _ = parts(t["access_token"])
    jwk = [k for k in daemon.request("GET", "/.well-known/jwks.json")
           .json["keys"] if k["kid"] == hdr["kid"]][0]
    pub = pyjwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac
    for secret in (pub, pub.strip()):
        h = b64e(json.dumps({"alg": "HS256", "typ": "JWT",
                             "kid": hdr["kid"]}).encode())
        p = b64e(json.dumps(claims).encode())
        sig = hmac.new(secret, (h + "." + p).encode(),
                       hashlib.sha256).digest()
        forged = h + "." + p + "." + b64e(sig)
        assert_problem(me(daemon, forged), 401, "invalid_token")


@pytest.mark.parametrize("alg", ["RS256", "HS256"])
def test_other_algorithms(make_daemon, alg):
    env = {"AUTH_JWT_ALG": alg}
    if alg == "HS256":
        env["AUTH_JWT_SECRET"] = "s" * 48
    d = make_daemon(env).start()
    _, _, t = d.user()
    assert me(d, t["access_token"]).status == 200
    keys = d.request("GET", "/.well-known/jwks.json").json["keys"]
    if alg == "HS256":
        assert keys == []
        key = "s" * 48
    else:
        assert keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256"
        assert keys[0]["n"] and keys[0]["e"]
        key = pyjwt.PyJWK(keys[0]).key
    c = pyjwt.decode(t["access_token"], key, algorithms=[alg],
                     audience="auth-serve")
    assert c["email"]


def test_a_token_naming_another_users_session_is_refused(make_daemon):
    """A token's session must be its subject's. Made with the signing key
    (here the HS256 secret, which every verifying service holds), `sub` of
    a deactivated user and `sid` of someone else's live session passed
    /verify as the deactivated user, and mixed two users' identities."""
    secret = "s" * 48
    caller = "introspect-" + "z" * 30
    d = make_daemon({"AUTH_JWT_ALG": "HS256", "AUTH_JWT_SECRET": secret,
                     "AUTH_INTROSPECTION_TOKEN": caller}).start()
    _, _, mine = d.user()
    _, _, theirs = d.user()
    claims = pyjwt.decode(mine["access_token"], secret, algorithms=["HS256"],
                          audience="auth-serve")
    claims["sub"] = parts(theirs["access_token"])[1]["sub"]
    forged = pyjwt.encode(claims, secret, algorithm="HS256",
                          headers={"kid": parts(mine["access_token"])[0]
                                   ["kid"]})
    for tok in (forged, forged):            # the second from the cache
        r = d.request("GET", "/api/v1/auth/verify",
                      headers={"Authorization": "Bearer " + tok})
        assert_problem(r, 401)
        assert_problem(me(d, tok), 401)
        r = d.request("POST", "/api/v1/auth/introspect",
                      body=urlencode({"token": tok}).encode(),
                      headers=dict(FORM, Authorization="Bearer " + caller))
        assert r.json == {"active": False}, r.json
    # the real ones still work, on the same session
    assert me(d, mine["access_token"]).status == 200
    assert me(d, theirs["access_token"]).status == 200


def test_verify_says_what_the_session_passed_not_the_token(make_daemon):
    """X-Auth-MFA is "true when the session passed a second factor". A
    token made with the signing key (the HS256 secret every verifying
    service holds) claiming `amr` ["pwd", "otp"] for a password-only
    session made /verify answer X-Auth-MFA: true and the claimed amr; the
    role and email it claimed were already replaced by the account's."""
    secret = "m" * 48
    d = make_daemon({"AUTH_JWT_ALG": "HS256",
                     "AUTH_JWT_SECRET": secret}).start()
    _, _, mine = d.user()
    real = d.request("GET", "/api/v1/auth/verify",
                     token=mine["access_token"])
    assert real.status == 200 and real.header("X-Auth-MFA") == "false"
    claims = pyjwt.decode(mine["access_token"], secret, algorithms=["HS256"],
                          audience="auth-serve")
    kid = parts(mine["access_token"])[0]["kid"]
    for amr in (["pwd", "otp"], ["hwk", "mfa"], ["mfa"]):
        claims["amr"] = amr
        forged = pyjwt.encode(claims, secret, algorithm="HS256",
                              headers={"kid": kid})
        for _ in range(2):                  # the second from the cache
            r = d.request("GET", "/api/v1/auth/verify", token=forged)
            assert r.status == 200, r
            assert r.header("X-Auth-MFA") == "false", (amr, r.headers)
            assert r.json["amr"] == ["pwd"], r.json


def test_key_rotation_keeps_old_tokens(make_daemon):
    # PostgreSQL publishes a new key this long before it signs
    d = make_daemon({"AUTH_KEY_PUBLISH_SECONDS": "0"}).start()
    email, pw, t_old = d.user()
    kid_old = parts(t_old["access_token"])[0]["kid"]
    r = d.command("keys", "rotate")
    assert r.returncode == 0, r.stderr
    kid_new = r.stdout.decode().strip()
    assert kid_new and kid_new != kid_old
    d.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: any(e.get("event") == "keys.reloaded"
                                  for e in d.logs))
    t_new = d.login(email, pw).json
    assert parts(t_new["access_token"])[0]["kid"] == kid_new
    assert me(d, t_old["access_token"]).status == 200
    kids = {k["kid"] for k in d.request("GET", "/.well-known/jwks.json")
            .json["keys"]}
    assert {kid_old, kid_new} <= kids
    # a restart keeps both
    assert d.stop() == 0
    d.start()
    assert me(d, t_old["access_token"]).status == 200
    assert me(d, t_new["access_token"]).status == 200
