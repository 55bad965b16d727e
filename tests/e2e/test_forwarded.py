"""X-Forwarded-For from a trusted proxy: all header lines together are one
list walked from the right, so a proxy that appends its own line (HAProxy
`option forwardfor`) decides the client address, not the client's line."""
import json
import secrets

from conftest import assert_problem

PROXIED = {"AUTH_TRUSTED_PROXIES": "127.0.0.1"}


def raw_request(d, method, path, headers, body=b""):
    """One request with `headers` as (name, value) pairs, repeats allowed;
    returns (status, body as JSON or None)."""
    head = "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" % (method,
                                                                   path)
    for k, v in headers:
        head += "%s: %s\r\n" % (k, v)
    if body:
        head += "Content-Type: application/json\r\n"
        head += "Content-Length: %d\r\n" % len(body)
    raw = d.raw(head.encode() + b"\r\n" + body, timeout=10)
    status = int(raw.split(b" ", 2)[1])
    _, _, rest = raw.partition(b"\r\n\r\n")
    try:
        return status, json.loads(rest)
    except ValueError:
        return status, None


def login_lines(d, email, password, xff_lines):
    body = json.dumps({"email": email, "password": password}).encode()
    return raw_request(d, "POST", "/api/v1/auth/login",
                       [("X-Forwarded-For", v) for v in xff_lines], body)


def session_ip(d, access_token):
    r = d.request("GET", "/api/v1/auth/sessions", token=access_token)
    assert r.status == 200, r
    items = [i for i in r.json["items"] if i["current"]]
    return items[0]["ip"]


def test_sessions_see_the_rightmost_untrusted_hop(make_daemon):
    d = make_daemon(PROXIED).start()
    _, email, pw = d.register()
    cases = [
        # the client's own line first, the proxy's appended line last
        (["6.6.6.6", "203.0.113.7"], "203.0.113.7"),
        (["6.6.6.6, 7.7.7.7", "203.0.113.8"], "203.0.113.8"),
        # trusted hops are skipped across lines
        (["6.6.6.6, 203.0.113.9, 127.0.0.1", "127.0.0.1"], "203.0.113.9"),
        (["2001:db8::5", "127.0.0.1, 127.0.0.1"], "2001:db8::5"),
        # a malformed nearest line: the peer, never an earlier line
        (["6.6.6.6", "not-an-address"], "127.0.0.1"),
    ]
    for lines, want in cases:
        status, body = login_lines(d, email, pw, lines)
        assert status == 200, (lines, status, body)
        assert session_ip(d, body["access_token"]) == want, lines
    assert d.stop() == 0


def test_untrusted_peer_lines_are_ignored(make_daemon):
    d = make_daemon({"AUTH_TRUSTED_PROXIES": "10.0.0.0/8"}).start()
    _, email, pw = d.register()
    status, body = login_lines(d, email, pw, ["6.6.6.6", "203.0.113.7"])
    assert status == 200, body
    assert session_ip(d, body["access_token"]) == "127.0.0.1"
    assert d.stop() == 0


def test_rate_limit_follows_the_proxy_line(make_daemon):
    """A client that varies its own X-Forwarded-For line still has one
    bucket: the address its proxy appended."""
    d = make_daemon(dict(PROXIED, AUTH_RATE_LIMIT_PER_MINUTE="3")).start()
    email = "nobody-%s@example.com" % secrets.token_hex(5)
    statuses = []
    for i in range(5):
        status, body = login_lines(d, email, "wrong password here",
                                   ["198.51.100.%d" % (i + 1),
                                    "203.0.113.50"])
        statuses.append((status, body and body.get("code")))
    assert statuses[:3] == [(401, "invalid_credentials")] * 3, statuses
    assert statuses[3:] == [(429, "too_many_attempts")] * 2, statuses
    # another client behind the same proxy has its own bucket
    r = d.request("POST", "/api/v1/auth/login",
                  {"email": email, "password": "wrong password here"},
                  headers={"X-Forwarded-For": "203.0.113.51"})
    assert_problem(r, 401, "invalid_credentials")
    assert d.stop() == 0


def test_a_catch_all_trusted_list_is_warned_of(make_daemon):
    """AUTH_TRUSTED_PROXIES=0.0.0.0/0 (or ::/0) lets every client choose
    its own address, past rate limits, lockout and AUTH_METRICS_ALLOW (a
    review: silently accepted). The start warns; a list of proxies does
    not."""
    for spec, warned in (("0.0.0.0/0", True), ("::/0", True),
                         ("10.0.0.0/8,127.0.0.1", False),
                         ("0.0.0.0/1,128.0.0.0/1", True),
                         ("0.0.0.0/1", True), ("2000::/3", True)):
        d = make_daemon({"AUTH_TRUSTED_PROXIES": spec}).start()
        got = [e for e in d.logs if e.get("event") == "config.trusts_everyone"]
        assert bool(got) == warned, (spec, got)
        assert d.stop() == 0
