"""/metrics counts each answered request under its route's method and
pattern, and a path of no route as unmatched."""
import re

from conftest import wait_until


def count(body, method, route, status):
    """The value of one auth_http_requests_total line, 0 when absent."""
    m = re.search(
        r'^auth_http_requests_total\{method="%s",route="%s",status="%s"\} '
        r"(\d+)$" % (re.escape(method), re.escape(route), status),
        body.decode(), re.M)
    return int(m.group(1)) if m else 0


def test_requests_counted_by_route(make_daemon):
    d = make_daemon().start()
    for _ in range(3):
        assert d.request("GET", "/healthz").status == 200
    assert d.request("GET", "/api/v1/users/me").status == 401
    assert d.request("GET", "/no-such-thing").status == 404
    # A request is counted just after its answer was sent, on the thread
    # of its connection, so the counts of requests on other connections
    # may land in any order: poll until all are in.
    want = {("any", "(unmatched)", "404"): 1, ("GET", "/healthz", "200"): 3,
            ("GET", "/api/v1/users/me", "401"): 1}

    def counted():
        b = d.request("GET", "/metrics").body
        return b if all(count(b, *k) == n for k, n in want.items()) else None
    body = wait_until(counted)
    assert body, "the requests were never counted as sent: %r" % \
        d.request("GET", "/metrics").body
    # nothing counted under a route that was not called
    assert count(body, "GET", "/readyz", "200") == 0, body
    assert count(body, "POST", "/api/v1/auth/login", "200") == 0, body
