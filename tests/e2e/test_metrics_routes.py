"""/metrics counts each answered request under its route's method and
pattern, and a path of no route as unmatched."""
import re
import shutil
import subprocess

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


def test_other_methods_counted_under_the_pattern(make_daemon):
    """A method no route of a known path has (405), and OPTIONS there (a
    CORS preflight: 204), are counted under method "other" and the
    path's pattern, and logged with it: they were "(unmatched)", as if
    the path did not exist."""
    d = make_daemon().start()
    assert d.request("DELETE", "/healthz").status == 405
    assert d.request("PUT", "/api/v1/users/me").status == 405
    assert d.request("POST", "/api/v1/users/me").status == 405
    assert d.request("OPTIONS", "/api/v1/auth/login").status == 204
    assert d.request("GET", "/no-such-thing").status == 404
    want = {("other", "/healthz", "405"): 1,
            ("other", "/api/v1/users/me", "405"): 2,
            ("other", "/api/v1/auth/login", "204"): 1,
            ("any", "(unmatched)", "404"): 1}

    def counted():
        b = d.request("GET", "/metrics").body
        return b if all(count(b, *k) == n for k, n in want.items()) else None
    body = wait_until(counted)
    assert body, d.request("GET", "/metrics").body
    assert count(body, "any", "(unmatched)", "405") == 0, body
    assert count(body, "any", "(unmatched)", "204") == 0, body
    assert wait_until(lambda: d.events(
        lambda e: e.get("event") == "http.access" and
        e.get("status") == 405 and e.get("route") == "/api/v1/users/me"))


def test_each_family_is_one_group(make_daemon):
    """The text format: all lines of a metric family in one group, its
    HELP and TYPE first. The request counts and the answer times of
    several routes were interleaved route by route (strict parsers, and
    OpenMetrics, refuse a family reopened). promtool checks it too when
    it is installed (Debian's prometheus)."""
    d = make_daemon().start()
    for path in ("/healthz", "/readyz", "/api/v1/users/me", "/nothing"):
        d.request("GET", path)
    body = wait_until(lambda: (lambda b: b if b"/nothing" not in b and
                               b'route="(unmatched)"' in b else None)(
        d.request("GET", "/metrics").body))
    assert body
    seen, current = [], None
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):
            fam = line.split()[2]
        elif line.startswith("#") or not line:
            continue
        else:
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            fam = re.sub(r"_(bucket|sum|count)$", "", name) \
                if name.startswith("auth_http_request_duration_seconds") \
                else name
        if fam != current:
            assert fam not in seen, "family %s reopened:\n%s" % (
                fam, body.decode())
            seen.append(fam)
            current = fam
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=body,
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
