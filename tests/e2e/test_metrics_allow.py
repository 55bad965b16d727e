"""/metrics is readable only from AUTH_METRICS_ALLOW; others get 404."""
import http.client

from conftest import Response, assert_problem


def get_from(d, source, path="/metrics", headers=None, method="GET",
             body=None):
    """GET from the loopback address `source` (the client socket is bound
    to it, so the daemon sees it as the TCP peer)."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def test_default_allows_loopback(make_daemon):
    d = make_daemon().start()
    for src in ("127.0.0.1", "127.0.0.2"):
        r = get_from(d, src)
        assert r.status == 200, r
        assert r.header("Content-Type").startswith("text/plain")
        assert b"auth_http_requests_total" in r.body


def test_other_addresses_get_404(make_daemon):
    d = make_daemon({"AUTH_METRICS_ALLOW": "127.0.0.1"}).start()
    r = get_from(d, "127.0.0.2")
    p = assert_problem(r, 404, "not_found")
    assert b"auth_" not in r.body, p
    assert get_from(d, "127.0.0.1").status == 200
    # the rest of the API is unaffected for that address
    assert get_from(d, "127.0.0.2", "/healthz").status == 200
    # a 404 for /metrics looks like any unknown path's
    other = get_from(d, "127.0.0.2", "/no-such-thing")
    assert r.json["title"] == other.json["title"]
    assert r.json["detail"] == other.json["detail"]


def test_cidr_list(make_daemon):
    d = make_daemon({"AUTH_METRICS_ALLOW": "10.0.0.0/8, 127.0.0.2/32"}).start()
    assert get_from(d, "127.0.0.2").status == 200
    assert_problem(get_from(d, "127.0.0.3"), 404)


def test_client_behind_trusted_proxy_is_checked(make_daemon):
    # The proxy itself is allowed, but the client it forwards is not.
    d = make_daemon({"AUTH_TRUSTED_PROXIES": "127.0.0.1"}).start()
    r = get_from(d, "127.0.0.1",
                 headers={"X-Forwarded-For": "203.0.113.7"})
    assert_problem(r, 404)
    r = get_from(d, "127.0.0.1", headers={"X-Forwarded-For": "127.0.0.9"})
    assert r.status == 200, r


# What a client outside the list sends to /metrics, and what an unknown
# path gets for it: the same answer, whatever the method, headers or body.
PROBES = [
    ("GET", {}, None), ("HEAD", {}, None), ("POST", {}, b"{}"),
    ("PUT", {}, b"{}"), ("DELETE", {}, None), ("PATCH", {}, b"{}"),
    ("OPTIONS", {}, None),
    ("OPTIONS", {"Origin": "https://app.example",
                 "Access-Control-Request-Method": "GET"}, None),
    ("GET", {"Content-Type": "text/plain"}, b"x"),          # 415 elsewhere
    ("GET", {"Content-Type": "application/json"}, b"{" * 20000),  # 413
]
SAME_HEADERS = ("Content-Type", "Allow", "Access-Control-Allow-Methods",
                "Content-Length", "WWW-Authenticate", "Connection")


def test_no_method_shows_the_path_to_others(make_daemon):
    d = make_daemon({"AUTH_METRICS_ALLOW": "127.0.0.1",
                     "AUTH_CORS_ORIGINS": "https://app.example"}).start()
    for i, (method, headers, body) in enumerate(PROBES):
        headers = dict(headers, **{"X-Request-ID": "probe-%d" % i})
        r = get_from(d, "127.0.0.2", "/metrics", headers, method, body)
        other = get_from(d, "127.0.0.2", "/metrics-not", headers, method,
                         body)
        assert r.status == other.status == 404, (method, headers, r, other)
        for h in SAME_HEADERS:
            assert r.header(h) == other.header(h), (method, h, r, other)
        assert r.body == other.body, (method, r, other)
    # an allowed client still sees the route as it is
    r = get_from(d, "127.0.0.1", "/metrics", method="POST", body=b"{}")
    assert_problem(r, 405)
    assert r.header("Allow") == "GET, HEAD, OPTIONS"
    r = get_from(d, "127.0.0.1", "/metrics", method="OPTIONS")
    assert r.status == 204 and r.header("Allow") == "GET, HEAD, OPTIONS"
