"""Strict HTTP framing over raw sockets: conflicting Content-Length values
and any Transfer-Encoding other than one `chunked` get a problem+json 400,
and `Expect: 100-continue` with a body over the cap gets 413 at once,
without `100 Continue`."""
import json
import random
import socket
import threading
import time

import pytest

from conftest import wait_until

LOGIN = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n" \
        b"Content-Type: application/json\r\n"


def parse(raw):
    """(status lines, headers of the last response, its body)."""
    lines = []
    rest = raw
    while rest.startswith(b"HTTP/"):
        head, _, rest = rest.partition(b"\r\n\r\n")
        first, *hdrs = head.split(b"\r\n")
        lines.append(first.decode())
        headers = {}
        for h in hdrs:
            k, _, v = h.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        if not first.startswith(b"HTTP/1.1 100"):
            return lines, headers, rest
    return lines, {}, rest


def assert_raw_problem(raw, status, code):
    lines, headers, body = parse(raw)
    assert lines and lines[0].startswith("HTTP/1.1 %d " % status), raw[:300]
    assert len(lines) == 1, lines           # no 100 Continue, no doubling
    assert raw.count(b"HTTP/1.1 ") == 1, raw[:300]
    assert headers["content-type"].startswith("application/problem+json")
    p = json.loads(body[:int(headers["content-length"])])
    assert p["status"] == status, p
    assert code is None or p["code"] == code, p
    assert p["request_id"] == headers["x-request-id"]
    return p


@pytest.mark.parametrize("lengths", [(b"2", b"5"), (b"5", b"2"),
                                     (b"2", b"2", b"3")])
def test_conflicting_content_length(daemon, lengths):
    raw = daemon.raw(LOGIN + b"".join(b"Content-Length: " + n + b"\r\n"
                                      for n in lengths) +
                     b"Connection: close\r\n\r\n{}123", timeout=5)
    assert_raw_problem(raw, 400, "bad_request")


def test_repeated_equal_content_length_is_one_value(daemon):
    raw = daemon.raw(LOGIN + b"Content-Length: 2\r\nContent-Length: 2\r\n"
                     b"Connection: close\r\n\r\n{}", timeout=5)
    lines, _, _ = parse(raw)
    assert lines[0].startswith("HTTP/1.1 422"), raw[:300]   # reached login
    raw = daemon.raw(LOGIN + b"Content-Length: 2\r\nContent-Length: 02\r\n"
                     b"Connection: close\r\n\r\n{}", timeout=5)
    lines, _, _ = parse(raw)
    assert lines[0].startswith("HTTP/1.1 422"), raw[:300]


def test_conflicting_content_length_before_routing(daemon):
    """An unknown route must not read a body of doubtful length either."""
    raw = daemon.raw(b"POST /nowhere HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 0\r\nContent-Length: 40\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    assert_raw_problem(raw, 400, "bad_request")


@pytest.mark.parametrize("te", [
    [b"chunked, gzip"], [b"gzip, chunked"], [b"gzip"], [b"chunked;x=1"],
    [b"chunked", b"gzip"], [b"gzip", b"chunked"], [b"chunked", b"chunked"],
])
def test_transfer_encoding_other_than_one_chunked(daemon, te):
    head = LOGIN + b"".join(b"Transfer-Encoding: " + t + b"\r\n" for t in te)
    raw = daemon.raw(head + b"\r\n2\r\n{}\r\n0\r\n\r\n", timeout=5)
    assert_raw_problem(raw, 400, "bad_request")


def test_one_chunked_is_accepted(daemon):
    raw = daemon.raw(LOGIN + b"Transfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                     timeout=5)
    lines, _, _ = parse(raw)
    assert lines[0].startswith("HTTP/1.1 422"), raw[:300]


@pytest.mark.parametrize("name", [b"Chunked", b"CHUNKED", b"cHuNkEd"])
def test_chunked_in_any_case_is_accepted(daemon, name):
    """Transfer-coding names are case-insensitive (RFC 9112 s7)."""
    raw = daemon.raw(LOGIN + b"Transfer-Encoding: " + name + b"\r\n"
                     b"Connection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                     timeout=5)
    lines, _, _ = parse(raw)
    assert lines[0].startswith("HTTP/1.1 422"), raw[:300]
    # an empty chunked body is an empty body, in any case of the name: a
    # JSON problem like Content-Length: 0, not a framing refusal
    raw = daemon.raw(LOGIN + b"Transfer-Encoding: " + name + b"\r\n"
                     b"Connection: close\r\n\r\n0\r\n\r\n", timeout=5)
    assert_raw_problem(raw, 400, "malformed_json")


def read_response_head(s, timeout):
    """Bytes the server sent within `timeout` (until it closes or a full
    response head has arrived)."""
    s.settimeout(0.2)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = s.recv(65536)
        except socket.timeout:
            if b"\r\n\r\n" in out and not out.startswith(b"HTTP/1.1 100"):
                break
            continue
        except ConnectionResetError:
            break
        if not c:
            break
        out += c
    return out


def test_expect_continue_over_the_cap_is_refused_at_once(daemon):
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    try:
        t0 = time.monotonic()
        s.sendall(LOGIN + b"Content-Length: 20000\r\n"
                  b"Expect: 100-continue\r\n\r\n")       # no body: we wait
        raw = read_response_head(s, 3.0)
        took = time.monotonic() - t0
    finally:
        s.close()
    assert b"100 Continue" not in raw, raw[:300]
    assert_raw_problem(raw, 413, "payload_too_large")
    assert took < 2.0, took


def test_expect_continue_within_the_cap_continues(daemon):
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    try:
        s.sendall(LOGIN + b"Content-Length: 2\r\nConnection: close\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        first = read_response_head(s, 3.0)
        assert first.startswith(b"HTTP/1.1 100 Continue"), first[:200]
        s.sendall(b"{}")
        raw = first + read_response_head(s, 3.0)
    finally:
        s.close()
    lines, _, _ = parse(raw)
    assert lines[-1].startswith("HTTP/1.1 422"), raw[:300]


def test_expect_continue_on_a_refused_media_type(daemon):
    """Any early answer goes out at once, not after a 100 Continue."""
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    try:
        s.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: text/plain\r\nContent-Length: 10\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        raw = read_response_head(s, 3.0)
    finally:
        s.close()
    assert b"100 Continue" not in raw, raw[:300]
    assert_raw_problem(raw, 415, None)


@pytest.mark.parametrize("name", [b"Content-Length ", b"Content-Length\t",
                                  b"Transfer-Encoding ", b"X Forwarded"])
def test_whitespace_before_a_colon_is_refused(daemon, name):
    """RFC 9112 5.1: a field name followed by whitespace gets 400, and
    the connection is closed: what such a "Content-Length" would frame is
    never read as a request of its own (request smuggling)."""
    inner = b"GET /api/v1/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    value = b"chunked" if name.startswith(b"Transfer") else \
        str(len(inner)).encode()
    raw = daemon.raw(b"POST /api/v1/auth/revoke HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n" + name +
                     b": " + value + b"\r\n\r\n" + inner, timeout=5)
    p = assert_raw_problem(raw, 400, "bad_request")
    assert "colon" in p["detail"], p
    assert parse(raw)[1]["connection"] == "close"


@pytest.mark.parametrize("head", [
    b"GET /healthz HTTP/1.1\r\n",                          # no Host
    b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n",      # two
    b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: a b/c\r\n",          # not a host
    b"GET /healthz HTTP/1.1\r\nHost: user@a\r\n",
    b"GET /healthz x HTTP/1.1\r\nHost: a\r\n",               # blanks in
    b"GET /heal\tthz HTTP/1.1\r\nHost: a\r\n",                # the target
    b"GET /healthz\x01 HTTP/1.1\r\nHost: a\r\n",      # other controls
    b"GET /heal\x7fthz HTTP/1.1\r\nHost: a\r\n",
    b"GET /healthz\x0b HTTP/1.1\r\nHost: a\r\n",
    b"GET /\x1b[2Jhealthz HTTP/1.1\r\nHost: a\r\n",
    b"GET * HTTP/1.1\r\nHost: a\r\n",              # not a path: the
    b"GET 127.0.0.1:80 HTTP/1.1\r\nHost: a\r\n",  # asterisk and the
    b"GET healthz HTTP/1.1\r\nHost: a\r\n",        # authority forms
    b"GET %2Fhealthz HTTP/1.1\r\nHost: a\r\n",     # read raw: not a
    b"GET http%3A%2F%2Fa%2Fhealthz HTTP/1.1\r\nHost: a\r\n",  # path
    b"GET http:///healthz HTTP/1.1\r\nHost: a\r\n",  # no host, or a
    b"GET http://u:p@a/healthz HTTP/1.1\r\nHost: a\r\n",  # user part
    b"GET ftp://a/healthz HTTP/1.1\r\nHost: a\r\n",
])
def test_host_and_request_target(daemon, head):
    """RFC 9112 3.2: an HTTP/1.1 request without Host, any request with
    two, a request target with a blank and one that is not a path (but
    for OPTIONS *) get one problem+json 400 (one
    status line: libmicrohttpd 0.9.75's own answer to a missing Host sent
    it twice), and the connection closed."""
    raw = daemon.raw(head + b"\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
                     timeout=5)
    assert_raw_problem(raw, 400, "bad_request")
    assert parse(raw)[1]["connection"] == "close"


SMUGGLED = b"GET /api/v1/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
REVOKE = b"POST /api/v1/auth/revoke HTTP/1.1\r\nHost: x\r\n" \
         b"Content-Type: application/json\r\n"
BODY = b'{"token":"x"}'
CHUNKED_BODY = b"d\r\n" + BODY + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize("fields, rest", [
    # obs-fold: libmicrohttpd (0.9.75) joins the continuation onto the
    # *name*, so these frame differently for it than for a strict reader
    (b"Content-Length:\r\n 13\r\n", BODY),
    (b"Transfer-Encoding:\r\n chunked\r\n", CHUNKED_BODY),
    (b"Content-: 13\r\n Length\r\n", BODY),
    (b"Transfer-: chunked\r\n Encoding\r\n", CHUNKED_BODY),
    (b"Connection:\r\n close\r\n", b""),
    # a bare CR or a NUL that hides the rest of its line
    (b"X-A: b\rContent-Length: 13\r\n", BODY),
    (b"X-A: b\rContent-Length: 0\r\nContent-Length: 13\r\n", BODY),
    (b"Content-Length: 13\x005\r\n", BODY),
    (b"Transfer-Encoding: chunked\x00, gzip\r\n", CHUNKED_BODY),
    (b"X-A: b\x00Content-Length: 13\r\n", BODY),
    # a NUL at a line's end or after its colon hides nothing, but a
    # strict reader refuses the line (RFC 9110 5.5) and so does the daemon
    (b"Content-Length: 13\x00\r\n", BODY),
    (b"X-A: b\x00 \r\n", BODY),
    (b"X-A:\x00\r\n", BODY),
    (b"X-A: \x00b\r\n", BODY),
    (b"X-A: b\x00\x00\n", BODY),
])
def test_header_lines_read_differently_are_refused(daemon, fields, rest):
    """RFC 9112 5.2 (obs-fold), 2.2 (bare CR) and RFC 9110 5.5 (NUL):
    refused with 400 and the connection closed, so no byte after them is
    read as a request of its own (each of these was answered twice, the
    second time for the bytes a strict reader sees as the body)."""
    raw = daemon.raw(REVOKE + fields + b"\r\n" + rest + SMUGGLED, timeout=5)
    p = assert_raw_problem(raw, 400, "bad_request")
    assert "folded" in p["detail"], p
    assert parse(raw)[1]["connection"] == "close"


@pytest.mark.parametrize("head", [
    # RFC 9112 2.2: a lone LF may end a line; blanks around a value are
    # not part of it (5.5); a value may be empty
    b"POST /api/v1/auth/revoke HTTP/1.1\nHost: x\nConnection: close\n"
    b"Content-Type: application/json\nContent-Length: 13\n\n",
    b"POST /api/v1/auth/revoke HTTP/1.1\r\nHost: x\nConnection: close\r\n"
    b"Content-Type:\tapplication/json \t\r\nX-Empty:\r\nX-Blank:  \r\n"
    b"Content-Length:13\n\r\n",
])
def test_well_formed_header_lines_of_every_layout_are_served(daemon, head):
    """The check of where libmicrohttpd parsed each line refuses none of
    the layouts a strict reader accepts."""
    raw = daemon.raw(head + BODY, timeout=5)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]


def strict_line(rng):
    """A random header line and what a strict reader (RFC 9112 5, 5.2;
    RFC 9110 5.5) makes of it: True (a field), False (refused), or one of
    the two layouts README "Framing" says the daemon cannot see: None for
    a single NUL right before a lone LF after an otherwise good value,
    "end" for a colon alone or with NULs (the block's end for
    libmicrohttpd, seen only when it and the line end before it take more
    than four bytes)."""
    name = rng.choice([b"X-A"] * 6 + [b"X-B"] * 6 +
                      [b"X A", b"X-A ", b"", b"X\x00A"])
    value = b"".join(rng.choice([b"a"] * 8 + [b" ", b"\t", b"\xc3\xa9"] * 2 +
                                [b"\x00", b"\r"])
                     for _ in range(rng.randrange(0, 5)))
    end = rng.choice([b"\r\n", b"\n"])
    if value.endswith(b"\r") and end == b"\n":
        value, end = value[:-1], b"\r\n"      # a CR before LF ends the line
    fold = rng.random() < 0.05
    token = bool(name) and all(c not in name for c in b" \x00")
    good = token and b"\x00" not in value and b"\r" not in value and \
        not fold
    line = (b" " if fold else b"") + name + b":" + value + end
    if name == b"" and value.strip(b"\x00") == b"" and not fold:
        return line, "end"
    if (not good and token and not fold and end == b"\n" and
            value.endswith(b"\x00") and b"\x00" not in value[:-1] and
            b"\r" not in value):
        return line, None
    return line, good


def test_header_lines_agree_with_a_strict_reader(daemon):
    """A differential check of where libmicrohttpd parsed each line
    (header_in_place): 400 random requests of two to four lines of names,
    blanks, NULs, CRs, UTF-8 and both line ends, answered 200 exactly when
    a strict reader takes every line as a field, else 400."""
    rng = random.Random(9112)
    seen = {True: 0, False: 0}
    for _ in range(400):
        lines = [strict_line(rng) for _ in range(rng.randrange(2, 5))]
        verdicts = [v for _, v in lines]
        for i, (line, v) in enumerate(lines):
            if v != "end":
                continue
            before = lines[i - 1][0] if i else b"\r\n"
            if len(line) + (2 if before.endswith(b"\r\n") else 1) > 4:
                verdicts[i] = False             # seen: refused
                continue
            verdicts = verdicts[:i + 1]         # what follows is not seen
            break
        if False not in verdicts and (None in verdicts or
                                      "end" in verdicts):
            continue                            # the documented blind spots
        good = all(verdicts)
        head = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close"
                b"\r\n" + b"".join(l for l, _ in lines) + b"\r\n")
        raw = daemon.raw(head, timeout=5)
        want = b"HTTP/1.1 200 " if good else b"HTTP/1.1 400 "
        assert raw.startswith(want), (head, raw[:200])
        seen[good] += 1
    assert seen[True] >= 20 and seen[False] >= 100, seen


def trailer_blind(lines):
    """True when README "Framing" says the daemon cannot see what is
    wrong with these trailer lines, for libmicrohttpd does not report
    where the section ends: a line without a name (which ends the section
    for it) after good lines, and what follows two NULs in the last line
    it reads (such as a NUL ending that line's otherwise good value)."""
    for i, (line, _) in enumerate(lines):
        if line.startswith(b":"):
            lines = lines[:i]
            if all(g for _, g in lines):
                return True
            break
    if not lines or not all(g for _, g in lines[:-1]):
        return False
    line, good = lines[-1]
    name, _, rest = line.partition(b":")
    value = rest[:-2] if rest.endswith(b"\r\n") else rest[:-1]
    head, nul, tail = value.partition(b"\x00")
    return (not good and nul != b"" and
            not line.startswith((b" ", b"\t")) and
            name not in (b"", b"X A", b"X-A ", b"X\x00A") and
            b"\r" not in head and (tail == b"" or tail.startswith(b"\x00")))


def test_trailer_lines_agree_with_a_strict_reader(daemon):
    """Trailer lines are field lines (RFC 9112 7.1.2): 300 random trailer
    sections of one to three lines, after a chunked body, answered 200
    exactly when a strict reader takes every line as a field, else 400
    (and the connection closed), README's blind spots aside."""
    rng = random.Random(7112)
    seen = {True: 0, False: 0}
    for _ in range(300):
        lines = [strict_line(rng) for _ in range(rng.randrange(1, 4))]
        if any(v is None or v == "end" for _, v in lines) or \
                trailer_blind(lines):
            continue
        good = all(v for _, v in lines)
        raw = daemon.raw(REVOKE + b"Transfer-Encoding: chunked\r\n"
                         b"Connection: close\r\n\r\nd\r\n" + BODY +
                         b"\r\n0\r\n" + b"".join(l for l, _ in lines) +
                         b"\r\n", timeout=5)
        want = b"HTTP/1.1 200 " if good else b"HTTP/1.1 400 "
        assert raw.startswith(want), (lines, raw[:200])
        seen[good] += 1
    assert seen[True] >= 20 and seen[False] >= 50, seen


@pytest.mark.parametrize("target", [
    b"/api/v1/auth/revoke",
    b"/api/v1/no-such-route",               # refused before any route
    b"/api/v1/auth/verify",
])
def test_chunked_http_1_0_is_refused_and_closed(daemon, target):
    """RFC 9112 6.1: HTTP/1.0 has no transfer codings, so a reader in
    front frames a chunked HTTP/1.0 body otherwise. The contract takes
    one chunked on HTTP/1.1 alone: 400, nothing read after it."""
    raw = daemon.raw(b"POST " + target + b" HTTP/1.0\r\nHost: x\r\n"
                     b"Connection: keep-alive\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY +
                     SMUGGLED, timeout=5)
    assert raw.startswith(b"HTTP/1.1 400 "), raw[:300]
    assert raw.count(b"HTTP/1.1 ") == 1, raw[:600]
    assert parse(raw)[1]["connection"] == "close"
    assert b"Content-Length" in raw.split(b"\r\n\r\n", 1)[1]


def test_a_long_refused_chunked_body_still_gets_its_answer(daemon):
    """A chunked body refused early (413 here) is read and dropped up to
    1 MiB; past that the answer is written before the connection closes,
    to a client that reads while it sends."""
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    got = []

    def reader():
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    return
                got.append(c)
        except OSError:
            return
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    chunk = b"%x\r\n" % 65536 + b"a" * 65536 + b"\r\n"
    try:
        s.sendall(REVOKE + b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(24):                     # 1.5 MiB
            s.sendall(chunk)
        s.sendall(b"0\r\n\r\n")
    except OSError:
        pass                                    # closed under us: fine
    t.join(10)
    s.close()
    raw = b"".join(got)
    assert raw.startswith(b"HTTP/1.1 413 "), raw[:300]


@pytest.mark.parametrize("framing,rest", [
    (b"Content-Length: 20000\r\n\r\n", b"b" * 20000),
    (b"Transfer-Encoding: chunked\r\n\r\n4001\r\n" + b"a" * 16385,
     b"\r\n10\r\n" + b"b" * 16 + b"\r\n0\r\n\r\n")],
    ids=["content-length", "chunked"])
def test_413_comes_before_the_rest_of_the_body(daemon, framing, rest):
    """A body over the cap is answered 413 at once, read no further (its
    Content-Length announced it, or its chunks passed the cap), and the
    rest a client sends meanwhile is dropped, then the connection closed
    without a reset. The body was answered only once it had all arrived,
    or never if it trickled."""
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    try:
        s.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\n" + framing)
        raw = b""
        while b"\r\n\r\n" not in raw:
            c = s.recv(4096)                 # times out without an answer
            if not c:
                break
            raw += c
        assert raw.startswith(b"HTTP/1.1 413 "), raw[:300]
        assert parse(raw)[1]["connection"] == "close"
        s.sendall(rest)                      # the client goes on: dropped
        assert s.recv(4096) == b""           # then closed, not reset
    finally:
        s.close()
    assert daemon.request("GET", "/healthz").status == 200


@pytest.mark.parametrize("version", [b"HTTP/1.2", b"HTTP/1.9"])
def test_other_http_versions_are_refused(daemon, version):
    """Only HTTP/1.0 and HTTP/1.1: libmicrohttpd served 1.2 and 1.9,
    without the Host that HTTP/1.1 needs (README "Framing": 505)."""
    for host in (b"", b"Host: x\r\n"):
        raw = daemon.raw(b"GET /healthz " + version + b"\r\n" + host +
                         b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                         timeout=5)
        assert_raw_problem(raw, 505, "http_version_not_supported")
        assert parse(raw)[1]["connection"] == "close"


@pytest.mark.parametrize("target", [
    b"/metrics%00.js", b"/healthz%00/../../etc", b"/api/v1/auth/verify%00.css",
    b"/api/v1/users?q=%00", b"/healthz?x=a%00b"])
def test_an_encoded_nul_in_the_target_is_refused(daemon, target):
    """A decoded %00 cut the path short: /metrics%00.js was /metrics."""
    raw = daemon.raw(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                     timeout=5)
    p = assert_raw_problem(raw, 400, "bad_request")
    assert "NUL" in p["detail"], p
    # %25 00 is a percent sign and two zeros, not a NUL
    raw = daemon.raw(b"GET /healthz?x=%2500 HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n", timeout=5)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]


@pytest.mark.parametrize("target", [
    b"/api/v1/users/me\x00.css", b"/.well-known/jwks.json\x00/../../x",
    b"/healthz\x00", b"/healthz?x=1\x00&y=2", b"\x00/healthz"])
def test_a_raw_nul_in_the_target_is_refused(daemon, target):
    """A NUL byte in the request target cut it there for libmicrohttpd:
    /api/v1/users/me<NUL>.css was served as /users/me, the account's JSON
    under a name a cache in front may keep (RFC 9112 3.2: no NUL in a
    target). Refused, also as the second request of a connection, whose
    first is served; a target that decodes in place is not mistaken for
    one."""
    user = daemon.user()[2]["access_token"].encode()
    raw = daemon.raw(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + user + b"\r\n\r\n",
                     timeout=5)
    p = assert_raw_problem(raw, 400, "bad_request")
    assert "NUL" in p["detail"], p
    assert parse(raw)[1]["connection"] == "close"
    raw = daemon.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                     timeout=5)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]
    assert b"\r\n\r\nHTTP/1.1 400 " in raw or b"}HTTP/1.1 400 " in raw, raw
    raw = daemon.raw(b"GET /api/v1/users/%6De?x=%41&y=b%20c HTTP/1.1\r\n"
                     b"Host: x\r\nAuthorization: Bearer " + user +
                     b"\r\nConnection: close\r\n\r\n", timeout=5)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]


def test_http_1_0_needs_no_host(daemon):
    raw = daemon.raw(b"GET /healthz HTTP/1.0\r\n\r\n", timeout=5)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]


@pytest.mark.parametrize("target", [b"http://auth.example.com/healthz",
                                    b"HTTPS://auth.example.com:8443/healthz"])
def test_absolute_form_targets_are_served(daemon, target):
    """RFC 9112 3.2.2: a server must accept the absolute form."""
    raw = daemon.raw(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n", timeout=5)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]


def test_options_asterisk_asks_about_the_server(daemon):
    """RFC 9110 9.3.7: OPTIONS * is about the server as a whole: 204 with
    the methods it serves, and the connection stays open for the next
    request."""
    raw = daemon.raw(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n", timeout=5)
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 204 "), raw[:300]
    headers = parse(first + b"\r\n\r\n")[1]
    assert headers["allow"] == "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
    assert "x-request-id" in headers
    assert rest.startswith(b"HTTP/1.1 200 "), raw[:400]


@pytest.mark.parametrize("head, status", [
    (b"GET /api/v1/nope HTTP/1.1\r\nHost: x\r\n", 404),
    (b"HEAD /api/v1/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n",
     404),
    (b"DELETE /healthz HTTP/1.1\r\nHost: x\r\n", 405),
    (b"OPTIONS /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
     b"Origin: https://app.example\r\n"
     b"Access-Control-Request-Method: POST\r\n", 204),
    (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n", 204),
])
def test_answers_decided_from_the_head_keep_the_connection(daemon, head,
                                                           status):
    """A request without a body answered from its line and headers alone
    (an unknown path, a method not allowed, a CORS preflight) leaves the
    connection open for the next one (libmicrohttpd 0.9.75 closes it when
    the answer is queued before the request is complete): a browser's
    preflight, or a proxy's kept-alive upstream connection, is not
    reopened for every such request."""
    raw = daemon.raw(head + b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n", timeout=5)
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 %d " % status), raw[:300]
    assert b"\r\nConnection: close" not in first, raw[:300]
    length = int(parse(first + b"\r\n\r\n")[1].get("content-length", 0))
    if head.startswith(b"HEAD"):
        length = 0
    assert rest[length:].startswith(b"HTTP/1.1 200 "), raw[:600]


@pytest.mark.parametrize("line", [b"GET /api/v1/nope HTTP/1.1",
                                  b"OPTIONS * HTTP/1.1",
                                  b"DELETE /healthz HTTP/1.1"])
@pytest.mark.parametrize("fields", [
    b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: identity\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
])
def test_doubtful_framing_is_refused_before_routing(daemon, line, fields):
    """A body of doubtful length is refused with 400 and the connection
    closed whatever the route: on an unknown path, OPTIONS * or a wrong
    method (answers that otherwise keep the connection) as on any other,
    so nothing after it is read as a request of its own (it was: 404
    kept the connection and the chunk bytes' successor was served; a
    Transfer-Encoding other than chunked there got no answer at all)."""
    raw = daemon.raw(line + b"\r\nHost: x\r\n" + fields +
                     b"\r\n5\r\nhello\r\n0\r\n\r\n" + SMUGGLED, timeout=5)
    assert_raw_problem(raw, 400, "bad_request")
    assert parse(raw)[1]["connection"] == "close"


@pytest.mark.parametrize("host", [b"auth.example.com", b"127.0.0.1:8000",
                                  b"[::1]:8000", b"xn--bcher-kva.example",
                                  b""])
def test_host_names_and_addresses_are_served(daemon, host):
    raw = daemon.raw(b"GET /healthz HTTP/1.1\r\nHost: " + host +
                     b"\r\nConnection: close\r\n\r\n", timeout=5)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]


@pytest.mark.parametrize("path", [b"/api/v1/auth/verify",
                                  b"/api/v1/users/me", b"/healthz"])
def test_two_authorization_headers_are_refused(daemon, path):
    """RFC 9110 11.6.2: Authorization is one field. With two, a proxy in
    front and the daemon could each act on another token; RFC 6750 3.1
    answers invalid_request. Whichever comes first, a live token does
    not make it through."""
    _, _, tokens = daemon.user()
    good = b"Bearer " + tokens["access_token"].encode()
    one = daemon.raw(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: " + good + b"\r\n"
                     b"Connection: close\r\n\r\n", timeout=5)
    assert one.startswith(b"HTTP/1.1 200 "), one[:300]
    for first, second in ((good, b"Bearer x.y.z"), (b"Bearer x.y.z", good),
                          (good, good)):
        raw = daemon.raw(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: " + first + b"\r\n"
                         b"authorization: " + second + b"\r\n"
                         b"Connection: close\r\n\r\n", timeout=5)
        assert_raw_problem(raw, 400, "bad_request")
        _, headers, _ = parse(raw)
        assert headers["www-authenticate"] == \
            'Bearer realm="auth-serve", error="invalid_request"'


def test_server_still_answers(daemon):
    assert wait_until(lambda: daemon.request("GET", "/healthz").status == 200)
