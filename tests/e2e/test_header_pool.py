"""The request line and headers limit (README.md "Security" and "Framing":
about 15 KiB, 431 beyond, every size answered). What an idle keep-alive
connection costs is in test_parking.py."""
import json
import socket
import pytest

from conftest import wait_until


def status_of(port, header_bytes, token=None):
    bearer = b"Authorization: Bearer " + token.encode() + b"\r\n" \
        if token else b""
    return answer_of(port, b"GET", b"/api/v1/auth/verify", header_bytes,
                     bearer)


def test_headers_of_14_kib_are_served_beyond_16_kib_refused(daemon):
    token = daemon.user()[2]["access_token"]
    for n in (0, 1024, 4096, 9000, 14 * 1024):
        assert status_of(daemon.port, n, token) == 200, n
    for n in (17 * 1024, 24 * 1024, 31 * 1024):
        assert status_of(daemon.port, n, token) == 431, n
    assert daemon.request("GET", "/healthz").status == 200


def answer_of(port, method, path, pad, extra=b"", body=b""):
    """The status line's code for one request carrying `pad` bytes of
    X-Pad header, or None when the connection closed without one."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        head = method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" + extra
        if body:
            head += (b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\n" % len(body))
        s.sendall(head + b"X-Pad: " + b"a" * pad + b"\r\n\r\n" + body)
        out = b""
        while b"\r\n" not in out:
            c = s.recv(4096)
            if not c:
                break
            out += c
        return int(out.split(b" ")[1]) if out else None
    except (ConnectionResetError, BrokenPipeError):
        return None
    finally:
        s.close()


ORIGIN = b"https://" + b"o" * 240 + b".example.com"


@pytest.mark.parametrize("cors", [False, True])
def test_every_header_size_gets_an_answer(make_daemon, cors):
    """Up to the limit and past it, in 8-byte steps over the last 4 KiB:
    each request is answered (its route's status, or 431), never closed
    without a word. The reply needs room in the same pool as the
    request; a request that fits while its reply would not used to be
    dropped silently (a band of about 200 bytes per route). With CORS,
    the reply also echoes a long allowed Origin."""
    daemon = make_daemon({"AUTH_CORS_ORIGINS": ORIGIN.decode()} if cors
                         else {}).start()
    token = daemon.user()[2]["access_token"].encode()
    o = b"Origin: " + ORIGIN + b"\r\n" if cors else b""
    bearer = o + b"Authorization: Bearer " + token + b"\r\n"
    login = b'{"email":"nobody@example.com","password":"x"}'
    # (the many failed logins run into the lockout: 429 is served too)
    routes = [(b"GET", b"/api/v1/auth/verify", bearer, b"", (200,)),
              (b"GET", b"/api/v1/users/me", bearer, b"", (200,)),
              (b"GET", b"/healthz", o, b"", (200,)),
              (b"POST", b"/api/v1/auth/login", o, login, (401, 429)),
              (b"GET", b"/no-such-route", o, b"", (404,))]
    for method, path, extra, body, ok in routes:
        served, refused = [], []
        for pad in range(12 * 1024, 17 * 1024, 8):
            code = answer_of(daemon.port, method, path, pad, extra, body)
            assert code in ok + (431,), (path, pad, code)
            (refused if code == 431 else served).append(pad)
        # Served below the limit, refused above it, and one edge between.
        assert max(served) < min(refused), (path, served, refused)
        assert min(served) == 12 * 1024 and max(refused) > 16 * 1024


def test_the_header_limit_answer_is_a_problem_document(daemon):
    """Headers that leave the answer no room get the daemon's own 431:
    a problem document with its request id, then the connection closes
    (also after a body the daemon first reads, so no reset loses it), and
    the access log has it without a server error line."""
    cases = [b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
             b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
             b"Content-Type: application/json\r\nContent-Length: 5000\r\n"]
    for i, head in enumerate(cases):
        rid = b"pool-limit-%d" % i
        raw = daemon.raw(head + b"X-Request-ID: " + rid + b"\r\nX-Pad: " +
                         b"a" * (15 * 1024 + 300) + b"\r\n\r\n" +
                         (b"x" * 5000 if i else b""))
        head_part, _, body = raw.partition(b"\r\n\r\n")
        lines = head_part.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
        hdrs = dict(l.split(b": ", 1) for l in lines[1:])
        assert hdrs[b"Content-Type"] == b"application/problem+json"
        assert hdrs[b"X-Request-ID"] == rid
        assert hdrs[b"Connection"] == b"close"
        assert int(hdrs[b"Content-Length"]) == len(body)
        doc = json.loads(body)
        assert doc["status"] == 431
        assert doc["code"] == "header_fields_too_large"
        assert doc["request_id"] == rid.decode()
    assert wait_until(lambda: sorted(
        e.get("request_id") for e in daemon.logs
        if e.get("event") == "http.access" and e.get("status") == 431 and
        e.get("request_id", "").startswith("pool-limit-")) ==
        ["pool-limit-0", "pool-limit-1"])
    assert not [e for e in daemon.logs if e.get("event") == "http.server"
                and "Application reported" in e.get("message", "")]
    # HEAD: the same head, no body.
    raw = daemon.raw(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " +
                     b"a" * (15 * 1024 + 300) + b"\r\n\r\n")
    head_part, _, body = raw.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 431 "), raw
    assert b"\r\nContent-Length: 2" in head_part and body == b"", raw
    assert daemon.request("GET", "/healthz").status == 200
