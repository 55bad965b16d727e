"""Mail: password reset and email verification links, delivered through
the outbox by SMTP or a signed webhook, retried until they arrive, and
sent once. An SMTP sink and a webhook sink run inside the test."""
import concurrent.futures
import email
import email.policy
import hashlib
import hmac
import http.server
import json
import os
import re
import socket
import socketserver
import threading
import time

import pytest

from conftest import Daemon, assert_problem, free_port, preload_env, \
    preload_library, wait_until

PUBLIC = "https://app.example.com"
FROM = "Auth Serve <auth@mail.example.com>"
SECRET = "webhook-secret-0123456789"
TOKEN_RE = re.compile(r"[?&]token=([A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])")
DEADLINE = 30.0                     # the first retry comes after 5 s


class SmtpSink:
    """Enough of an SMTP server on 127.0.0.1 to accept mail: EHLO/HELO,
    MAIL, RCPT, DATA (with dot-unstuffing), RSET, NOOP, QUIT. A recipient
    for which `reject` is true gets 550, as a relay answers an address
    it will not deliver to; one for which `defer` is true gets 450, as
    a relay answers an address it cannot take now (Postfix's
    reject_unknown_recipient_domain, a greylist)."""

    def __init__(self, port=0, reject=None, defer=None):
        self.messages = []
        self.rejected = []
        self.deferred = []
        self.lock = threading.Lock()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, text):
                self.wfile.write(text.encode() + b"\r\n")

            def data(self):
                lines = []
                while True:
                    line = self.rfile.readline(65536)
                    if not line:
                        return None
                    if line == b".\r\n":
                        return b"".join(lines)
                    if line.startswith(b"."):
                        line = line[1:]
                    lines.append(line)

            def handle(self):
                self.reply("220 sink ESMTP")
                sender, rcpts = None, []
                while True:
                    line = self.rfile.readline(4096)
                    if not line:
                        return
                    cmd = line.decode("ascii", "replace").strip()
                    verb = cmd.split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        self.wfile.write(b"250-sink\r\n250 8BITMIME\r\n")
                    elif verb == "HELO":
                        self.reply("250 sink")
                    elif cmd.upper().startswith("MAIL FROM:"):
                        sender, rcpts = cmd[10:].strip(), []
                        self.reply("250 OK")
                    elif cmd.upper().startswith("RCPT TO:"):
                        rcpt = cmd[8:].strip()
                        if reject and reject(rcpt):
                            with sink.lock:
                                sink.rejected.append(rcpt)
                            self.reply("550 5.1.1 no such mailbox")
                            continue
                        if defer and defer(rcpt):
                            with sink.lock:
                                sink.deferred.append(rcpt)
                            self.reply("450 4.1.2 %s: Recipient address "
                                       "rejected: Domain not found" % rcpt)
                            continue
                        rcpts.append(rcpt)
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        raw = self.data()
                        if raw is None:
                            return
                        with sink.lock:
                            sink.messages.append({"from": sender,
                                                  "rcpt": rcpts,
                                                  "raw": raw})
                        self.reply("250 queued")
                    elif verb in ("RSET", "NOOP"):
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 not implemented")

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def to(self, addr):
        """Messages whose envelope recipient is `addr`."""
        with self.lock:
            return [m for m in self.messages if m["rcpt"] == ["<%s>" % addr]]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class WebhookSink:
    """An HTTP server on 127.0.0.1 that keeps every POST; it answers the
    statuses of `fail_with` first (one per request), then 204; with
    `hold` (a threading.Event), only once it is set (a delivery held in
    flight)."""

    def __init__(self, fail_with=(), hold=None):
        self.requests = []
        self.lock = threading.Lock()
        self.fail_with = list(fail_with)
        self.hold = hold
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with sink.lock:
                    sink.requests.append({"path": self.path,
                                          "headers": dict(self.headers),
                                          "body": body})
                    status = sink.fail_with.pop(0) if sink.fail_with else 204
                if sink.hold:
                    sink.hold.wait(60)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def close(self):
        if self.hold:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def smtp_env(port):
    return {"AUTH_SMTP_URL": "smtp://127.0.0.1:%d" % port,
            "AUTH_SMTP_FROM": FROM, "AUTH_PUBLIC_URL": PUBLIC}


def same_database(d):
    """Arguments for another Daemon on the database of `d`."""
    return {"data_dir": d.data_dir,
            "database_url": d.env.get("AUTH_DATABASE_URL")}


def parse(msg):
    return email.message_from_bytes(msg["raw"], policy=email.policy.default)


def wait_mails(sink, addr, n=1):
    got = wait_until(lambda: len(sink.to(addr)) >= n and sink.to(addr),
                     timeout=DEADLINE)
    assert got, "no mail for %s" % addr
    return got


def token_in(text, page):
    """The token of the one link to `page` in `text`."""
    links = re.findall(re.escape(PUBLIC + page) + r"\?token=\S+", text)
    assert len(links) == 1, text
    m = TOKEN_RE.search(links[0])
    assert m and links[0] == PUBLIC + page + "?token=" + m.group(1)
    return m.group(1)


def forgot(d, addr):
    return d.request("POST", "/api/v1/auth/password/forgot", {"email": addr})


def reset(d, token, password):
    return d.request("POST", "/api/v1/auth/password/reset",
                     {"token": token, "new_password": password})


def me(d, tok):
    return d.request("GET", "/api/v1/users/me", token=tok)


def assert_no_secret_logged(d, *secrets):
    text = "\n".join(d.lines)
    for s in secrets:
        assert s not in text


@pytest.fixture(scope="module")
def sink():
    s = SmtpSink()
    yield s
    s.close()


@pytest.fixture(scope="module")
def md(backend, sink):
    d = Daemon(backend, env=smtp_env(sink.port)).start()
    yield d
    assert d.stop() == 0, "\n".join(d.lines[-20:])


def reset_token(d, sink, addr, n=1):
    """Asks for a reset of `addr` and returns the token of the n-th mail."""
    r = forgot(d, addr)
    assert r.status == 202, r
    return token_in(parse(wait_mails(sink, addr, n)[n - 1])
                    .get_content(), "/reset-password")


# ---- forgot -------------------------------------------------------------

def test_forgot_unknown_email_is_202_and_sends_nothing(md, sink):
    unknown = "nobody-%s@example.com" % free_port()
    a = forgot(md, unknown)
    email_addr, _, _ = md.user()
    b = forgot(md, email_addr)
    assert a.status == b.status == 202
    assert a.body == b.body == b""
    # Mails go out oldest first: once the later one is here, the unknown
    # address would have had its mail too.
    wait_mails(sink, email_addr)
    assert sink.to(unknown) == []


def test_forgot_input(md):
    r = md.request("POST", "/api/v1/auth/password/forgot", {})
    assert_problem(r, 422, "validation_error")
    r = forgot(md, "not an email")
    assert_problem(r, 422, "validation_error")
    r = md.request("POST", "/api/v1/auth/password/forgot", body=b"x",
                   headers={"Content-Type": "text/plain"})
    assert_problem(r, 415)


def test_reset_mail_is_well_formed(md, sink):
    addr, _, _ = md.user()
    assert forgot(md, addr).status == 202
    raw = wait_mails(sink, addr)[0]
    assert raw["from"] == "<auth@mail.example.com>"
    assert b"\n" not in raw["raw"].replace(b"\r\n", b"")
    m = parse(raw)
    assert m["To"] == addr
    assert m["From"] == FROM
    assert m["Subject"] == "Reset your password"
    assert m["Date"] and m["Message-ID"]
    assert m["MIME-Version"] == "1.0"
    assert m.get_content_type() == "text/plain"
    assert m.get_content_charset() == "utf-8"
    token = token_in(m.get_content(), "/reset-password")
    assert_no_secret_logged(md, token)


# ---- reset --------------------------------------------------------------

def test_reset_once_and_sessions_revoked(md, sink):
    addr, old_pw, tokens = md.user()
    assert me(md, tokens["access_token"]).status == 200
    token = reset_token(md, sink, addr)
    new_pw = "new horse battery staple"
    r = reset(md, token, new_pw)
    assert r.status == 204, r
    assert_problem(me(md, tokens["access_token"]), 401)
    r = md.request("POST", "/api/v1/auth/refresh",
                   {"refresh_token": tokens["refresh_token"]})
    assert_problem(r, 401)
    assert md.login(addr, old_pw).status == 401
    assert md.login(addr, new_pw).status == 200
    assert_problem(reset(md, token, "another fine password 42"), 400,
                   "invalid_token")
    assert md.login(addr, new_pw).status == 200
    assert_no_secret_logged(md, token, new_pw)


def test_reset_ends_a_pending_second_factor(md, sink):
    # The mfa_token of a login that passed the old password no longer
    # completes it once the password was reset (README "Second factor").
    from test_mfa import login_mfa, mfa_token, setup_mfa
    addr, old_pw, tokens = md.user()
    codes, _ = setup_mfa(md, addr, old_pw, tokens["access_token"])
    tok = mfa_token(md, addr, old_pw)
    r = reset(md, reset_token(md, sink, addr), "new horse battery staple")
    assert r.status == 204, r
    assert_problem(login_mfa(md, tok, codes.next()), 401, "invalid_token")


def test_reset_weak_password_is_422_and_keeps_the_token(md, sink):
    addr, _, _ = md.user()
    token = reset_token(md, sink, addr)
    p = assert_problem(reset(md, token, "password"), 422,
                       "validation_error")
    assert p["errors"][0]["field"] == "new_password"
    local = addr.split("@")[0]
    p = assert_problem(reset(md, token, "xx" + local + "xx"), 422)
    assert p["errors"][0]["field"] == "new_password"
    assert reset(md, token, "a much better passphrase").status == 204


def test_reset_bad_tokens(md):
    assert_problem(reset(md, "A" * 43, "a much better passphrase"), 400,
                   "invalid_token")
    assert_problem(reset(md, "short", "a much better passphrase"), 400,
                   "invalid_token")
    r = md.request("POST", "/api/v1/auth/password/reset",
                   {"new_password": "a much better passphrase"})
    assert_problem(r, 422, "validation_error")
    r = md.request("POST", "/api/v1/auth/password/reset", {"token": "A" * 43})
    assert_problem(r, 422, "validation_error")
    r = md.request("POST", "/api/v1/auth/password/reset",
                   {"token": 7, "new_password": "x"})
    assert_problem(r, 422)


def test_concurrent_resets_have_one_winner(md, sink):
    addr, _, _ = md.user()
    token = reset_token(md, sink, addr)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        rs = list(ex.map(lambda i: reset(md, token, "racing password %d" % i),
                         range(8)))
    assert sorted(r.status for r in rs) == [204] + [400] * 7, rs
    won = [i for i, r in enumerate(rs) if r.status == 204][0]
    assert md.login(addr, "racing password %d" % won).status == 200


def test_new_reset_token_and_reset_retire_older_ones(md, sink):
    addr, _, _ = md.user()
    first = reset_token(md, sink, addr, 1)
    second = reset_token(md, sink, addr, 2)
    assert first != second
    assert reset(md, second, "second passphrase wins").status == 204
    assert_problem(reset(md, first, "first passphrase late"), 400,
                   "invalid_token")


# ---- verification ---------------------------------------------------------

def verify_request(d, tok):
    return d.request("POST", "/api/v1/auth/email/verify-request", token=tok)


def verify(d, token):
    return d.request("POST", "/api/v1/auth/email/verify", {"token": token})


def test_verify_flow(md, sink):
    addr, _, t = md.user()
    assert me(md, t["access_token"]).json["is_verified"] is False
    r = verify_request(md, t["access_token"])
    assert r.status == 202 and r.body == b"", r
    m = parse(wait_mails(sink, addr)[0])
    assert m["Subject"] == "Confirm your email address"
    token = token_in(m.get_content(), "/verify-email")
    assert verify(md, token).status == 204
    assert me(md, t["access_token"]).json["is_verified"] is True
    assert_problem(verify(md, token), 400, "invalid_token")
    # Already verified: 202 again, but no mail. A reset mail queued after
    # it is the marker that the outbox has been worked through.
    assert verify_request(md, t["access_token"]).status == 202
    assert forgot(md, addr).status == 202
    mails = wait_mails(sink, addr, 2)
    assert [parse(x)["Subject"] for x in mails] == [
        "Confirm your email address", "Reset your password"]
    assert_no_secret_logged(md, token)


def test_verify_after_email_change_is_400(md, sink):
    addr, pw, t = md.user()
    assert verify_request(md, t["access_token"]).status == 202
    token = token_in(parse(wait_mails(sink, addr)[0]).get_content(),
                     "/verify-email")
    r = md.request("PATCH", "/api/v1/users/me",
                   {"email": "moved-" + addr, "current_password": pw},
                   token=t["access_token"])
    assert r.status == 200, r
    assert_problem(verify(md, token), 400, "invalid_token")
    assert me(md, t["access_token"]).json["is_verified"] is False


def test_verify_input(md):
    assert_problem(verify_request(md, None), 401)
    assert_problem(verify(md, "B" * 43), 400, "invalid_token")
    assert_problem(verify(md, "not a token"), 400, "invalid_token")
    r = md.request("POST", "/api/v1/auth/email/verify", {})
    assert_problem(r, 422, "validation_error")


# ---- delivery -------------------------------------------------------------

def test_delivery_is_retried_until_the_server_listens(make_daemon):
    port = free_port()
    d = make_daemon(smtp_env(port)).start()
    addr, _, _ = d.user()
    assert forgot(d, addr).status == 202
    assert wait_until(lambda: any(e.get("event") == "mail.failed"
                                  for e in d.logs), timeout=DEADLINE)
    sink = SmtpSink(port)
    try:
        m = parse(wait_mails(sink, addr)[0])
        token = token_in(m.get_content(), "/reset-password")
        assert reset(d, token, "retried passphrase ok").status == 204
        failed = [e for e in d.logs if e.get("event") == "mail.failed"]
        assert failed and "error" in failed[0]
        assert_no_secret_logged(d, token)
        assert len(sink.to(addr)) == 1
    finally:
        sink.close()
    assert d.stop() == 0


def test_pending_mail_survives_restart_and_is_sent_once(make_daemon):
    a = make_daemon({"AUTH_PUBLIC_URL": PUBLIC}).start()
    assert wait_until(lambda: any(e.get("event") == "mail.disabled"
                                  for e in a.logs))
    addr, _, _ = a.user()
    assert forgot(a, addr).status == 202
    assert a.stop() == 0
    sink = SmtpSink()
    try:
        b = make_daemon(smtp_env(sink.port), **same_database(a)).start()
        wait_mails(sink, addr)
        assert b.stop() == 0
        c = make_daemon(smtp_env(sink.port), **same_database(a)).start()
        other, _, _ = c.user()
        assert forgot(c, other).status == 202
        wait_mails(sink, other)
        assert len(sink.to(addr)) == 1
        assert c.stop() == 0
    finally:
        sink.close()


def test_two_instances_send_each_mail_once(make_daemon, backend):
    if backend == "sqlite":
        pytest.skip("one SQLite database takes one daemon (README "
                    "\"Running on PostgreSQL and several instances\"; "
                    "test_sqlite_fault.py)")
    sink = SmtpSink()
    try:
        a = make_daemon(smtp_env(sink.port)).start()
        b = make_daemon(smtp_env(sink.port), **same_database(a)).start()
        users = [a.user()[0] for _ in range(6)]
        for i, addr in enumerate(users):
            assert forgot(a if i % 2 else b, addr).status == 202
        for addr in users:
            wait_mails(sink, addr)
        # one more round through both instances, then count
        marker = a.user()[0]
        assert forgot(b, marker).status == 202
        wait_mails(sink, marker)
        assert all(len(sink.to(addr)) == 1 for addr in users)
        assert a.stop() == 0 and b.stop() == 0
    finally:
        sink.close()


def test_webhook_is_signed_and_retried(make_daemon):
    hook = WebhookSink(fail_with=[500])
    try:
        d = make_daemon({
            "AUTH_NOTIFY_WEBHOOK_URL": "http://127.0.0.1:%d/mail" % hook.port,
            "AUTH_NOTIFY_WEBHOOK_SECRET": SECRET,
            "AUTH_PUBLIC_URL": PUBLIC}).start()
        addr, _, _ = d.user()
        assert forgot(d, addr).status == 202
        assert wait_until(lambda: len(hook.requests) >= 2,
                          timeout=DEADLINE), hook.requests
        first, second = hook.requests[:2]
        assert first["body"] == second["body"]     # the same event again
        req = second
        h = {k.lower(): v for k, v in req["headers"].items()}
        assert req["path"] == "/mail"
        assert h["content-type"] == "application/json"
        assert h["x-auth-event"] == "password_reset"
        want = hmac.new(SECRET.encode(),
                        h["x-auth-timestamp"].encode() + b"." + req["body"],
                        hashlib.sha256).hexdigest()
        assert hmac.compare_digest(h["x-auth-signature"], "sha256=" + want)
        wrong = hmac.new(b"another secret value!", h["x-auth-timestamp"]
                         .encode() + b"." + req["body"],
                         hashlib.sha256).hexdigest()
        assert h["x-auth-signature"] != "sha256=" + wrong
        ev = json.loads(req["body"])
        assert set(ev) == {"type", "to", "link", "id", "created_at"}
        assert ev["type"] == "password_reset" and ev["to"] == addr
        token = token_in(ev["link"], "/reset-password")
        assert reset(d, token, "hooked passphrase ok").status == 204
        assert_no_secret_logged(d, token, SECRET)
        assert d.stop() == 0
        assert len(hook.requests) == 2
    finally:
        hook.close()


def test_plain_smtp_to_a_remote_host_is_refused(make_daemon):
    d = make_daemon()
    r = d.command("config", "check", env={
        "AUTH_SMTP_URL": "smtp://mail.example.com:587",
        "AUTH_SMTP_FROM": "auth@example.com"})
    assert r.returncode == 2
    assert b"AUTH_SMTP_URL" in r.stderr
    r = d.command("config", "check", env={
        "AUTH_SMTP_URL": "smtps://mail.example.com:465",
        "AUTH_SMTP_FROM": "auth@example.com"})
    assert r.returncode == 0, r.stderr


def test_stop_aborts_a_hung_transfer(make_daemon):
    # A server that accepts the connection and then says nothing: the
    # transfer would wait for its greeting until the 15 s timeout.
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)
    mute.settimeout(DEADLINE)
    try:
        d = make_daemon(smtp_env(mute.getsockname()[1])).start()
        addr, _, _ = d.user()
        assert forgot(d, addr).status == 202
        conn, _ = mute.accept()             # the mailer is mid-transfer
        t0 = time.monotonic()
        assert d.stop() == 0
        assert time.monotonic() - t0 < 10.0
        conn.close()
        assert not any(e.get("event") == "mail.sent" for e in d.logs)
    finally:
        mute.close()


# ---- what a reset proves ------------------------------------------------

@pytest.fixture
def pd(backend, sink):
    """A daemon whose passkeys a software authenticator can use (RP ID
    localhost), mailing to the sink; a low lockout threshold."""
    port = free_port()
    origin = "http://localhost:%d" % port
    d = Daemon(backend, env=dict(
        smtp_env(sink.port), AUTH_PORT=str(port), AUTH_PUBLIC_URL=origin,
        AUTH_WEBAUTHN_RP_ID="localhost", AUTH_WEBAUTHN_ORIGINS=origin,
        AUTH_LOCKOUT_THRESHOLD="3", AUTH_RATE_LIMIT_PER_MINUTE="0")).start()
    d.origin = origin
    yield d
    assert d.stop() == 0, "\n".join(d.lines[-20:])


def verify_by_link(d, sink, addr, tok):
    """Verifies `addr` (a new account's, its first mail) through the
    link mailed at d's origin."""
    assert verify_request(d, tok).status == 202
    text = parse(wait_mails(sink, addr)[0]).get_content()
    link = re.search(re.escape(d.origin) +
                     r"/verify-email\?token=([A-Za-z0-9_-]+)", text)
    assert link, text
    assert verify(d, link.group(1)).status == 204


def link_token(d, sink, addr, n=1):
    """forgot(addr), then the token of the n-th reset mail to it (other
    mails, such as the notice of a passkey added, are passed over)."""
    def resets():
        return [m for m in sink.to(addr)
                if parse(m)["Subject"] == "Reset your password"]

    assert forgot(d, addr).status == 202
    got = wait_until(lambda: len(resets()) >= n and resets(),
                     timeout=DEADLINE)
    assert got, "no reset mail for %s" % addr
    text = parse(got[n - 1]).get_content()
    m = re.search(re.escape(d.origin) + r"/reset-password\?token=([A-Za-z0-9_-]+)",
                  text)
    assert m, text
    return m.group(1)


def test_a_reset_of_an_unverified_account_drops_its_passkeys_and_totp(
        pd, sink):
    """Pre-hijacking: someone registers an address that is not theirs,
    adds a passkey and turns the second factor on. The owner takes the
    account back with a reset (which proves the address): the passkey
    logs in no more and the owner's password alone logs in (the factor
    set up by the squatter is gone)."""
    from softauthn import Authenticator
    from test_mfa import setup_mfa
    from test_passkey_rules import LOGIN, enroll, login_options
    addr, squatter_pw, t = pd.user()
    auth = Authenticator()
    assert enroll(pd, t["access_token"], auth).status == 201
    setup_mfa(pd, addr, squatter_pw, t["access_token"])
    cred = auth.assertion(login_options(pd), pd.origin)
    assert pd.request("POST", LOGIN, {"credential": cred}).status == 200
    assert_problem(pd.login(addr, squatter_pw), 403, "mfa_required")
    owner_pw = "the owner's own passphrase"
    assert reset(pd, link_token(pd, sink, addr), owner_pw).status == 204
    cred = auth.assertion(login_options(pd), pd.origin)
    assert_problem(pd.request("POST", LOGIN, {"credential": cred}), 401,
                   "invalid_credential")
    r = pd.login(addr, owner_pw)
    assert r.status == 200, r
    assert pd.request("GET", "/api/v1/auth/passkeys",
                      token=r.json["access_token"]).json["items"] == []
    assert me(pd, r.json["access_token"]).json["mfa_enabled"] is False


def test_a_verified_account_moved_to_another_address_keeps_its_factors(
        pd, sink):
    """With the password and one access token (a change of email needs
    nothing more), someone moved a verified account's email to an
    address of their own. The new email is not verified, and a reset
    there took the passkey and the second factor off without a code: the
    rule asked whether the email is verified now. A reset removes them
    only on an account whose email was never verified (migration 0016):
    the new password alone no longer logs in, the owner's passkey still
    does."""
    from softauthn import Authenticator
    from test_mfa import setup_mfa
    from test_passkey_rules import LOGIN, enroll, login_options
    addr, pw, t = pd.user()
    tok = t["access_token"]
    verify_by_link(pd, sink, addr, tok)
    auth = Authenticator()
    assert enroll(pd, tok, auth).status == 201
    setup_mfa(pd, addr, pw, tok)
    taker = "taker-" + addr
    r = pd.request("PATCH", "/api/v1/users/me",
                   {"email": taker, "current_password": pw}, token=tok)
    assert r.status == 200 and r.json["is_verified"] is False, r
    new_pw = "the taker's own passphrase"
    assert reset(pd, link_token(pd, sink, taker), new_pw).status == 204
    assert_problem(pd.login(taker, new_pw), 403, "mfa_required")
    cred = auth.assertion(login_options(pd), pd.origin)
    assert pd.request("POST", LOGIN, {"credential": cred}).status == 200


# Holds the thread that has just used up a passkey (its counter UPDATE
# and COMMIT done) before its next SQLite statement, until the file
# $SHIM_GO exists (10 s at most): the instant a reset can commit between
# a passkey login's check and the session it stores.
PAUSE_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct sqlite3_stmt sqlite3_stmt;
const char *sqlite3_sql(sqlite3_stmt *);
static __thread int armed;

int sqlite3_step(sqlite3_stmt *st)
{
    int (*real)(sqlite3_stmt *) =
        (int (*)(sqlite3_stmt *))dlsym(RTLD_NEXT, "sqlite3_step");
    const char *sql = sqlite3_sql(st), *go = getenv("SHIM_GO");
    int rc, i;

    if (armed && sql && strncmp(sql, "COMMIT", 6) != 0) {
        armed = 0;
        fprintf(stderr, "sqlite-shim: paused after a passkey use\n");
        for (i = 0; i < 1000 && go && access(go, F_OK) != 0; i++) {
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
    rc = real(st);
    if (sql && strncmp(sql, "UPDATE passkeys SET sign_count", 30) == 0)
        armed = 1;
    return rc;
}
"""
PAUSED = "sqlite-shim: paused after a passkey use"


def test_a_passkey_login_racing_a_reset_keeps_no_session(backend, sink):
    """A passkey login checks the passkey, then stores a session. A reset
    of an unverified account (which deletes its passkeys and ends its
    sessions) committing in between must not leave that session working:
    the login is refused, or its session ended. A preloaded library holds
    the login right after the passkey is used up while the reset commits
    (SQLite: the library wraps sqlite3_step)."""
    if backend != "sqlite":
        pytest.skip("the pause wraps SQLite's sqlite3_step")
    from softauthn import Authenticator
    from test_passkey_rules import LOGIN, enroll, login_options
    lib, work = preload_library(PAUSE_SHIM, "pause-shim-")
    go = os.path.join(work, "go")
    port = free_port()
    origin = "http://localhost:%d" % port
    d = Daemon(backend, env=dict(
        smtp_env(sink.port), AUTH_PORT=str(port), AUTH_PUBLIC_URL=origin,
        AUTH_WEBAUTHN_RP_ID="localhost", AUTH_WEBAUTHN_ORIGINS=origin,
        AUTH_RATE_LIMIT_PER_MINUTE="0", AUTH_HASH_WORKERS="2",
        SHIM_GO=go, **preload_env(lib))).start()
    d.origin = origin
    try:
        for rnd in range(3):
            addr, _, t = d.user()
            auth = Authenticator()
            assert enroll(d, t["access_token"], auth).status == 201
            token = link_token(d, sink, addr)
            if os.path.exists(go):
                os.unlink(go)
            paused = sum(PAUSED in line for line in d.lines)
            cred = auth.assertion(login_options(d), origin)
            got = []
            th = threading.Thread(target=lambda: got.append(
                d.request("POST", LOGIN, {"credential": cred})))
            th.start()
            assert wait_until(lambda: sum(PAUSED in line
                                          for line in d.lines) > paused,
                              timeout=DEADLINE), (rnd, d.lines[-10:])
            r = reset(d, token, "the owner's own passphrase %d" % rnd)
            assert r.status == 204, (rnd, r)
            open(go, "w").close()
            th.join(DEADLINE)
            assert got, rnd
            login = got[0]
            if login.status == 200:     # stored before the reset: ended
                pair = login.json
                assert_problem(d.request("GET", "/api/v1/auth/verify",
                                         token=pair["access_token"]), 401)
                assert_problem(d.request(
                    "POST", "/api/v1/auth/refresh",
                    {"refresh_token": pair["refresh_token"]}), 401)
            else:
                assert_problem(login, 401, "invalid_credential")
            cred = auth.assertion(login_options(d), origin)
            assert_problem(d.request("POST", LOGIN, {"credential": cred}),
                           401, "invalid_credential")
    finally:
        open(go, "w").close()
        assert d.stop() == 0, "\n".join(d.lines[-20:])


def test_a_reset_lifts_the_lockout_of_its_email(pd, sink):
    """Wrong guesses by someone else lock the email (429 even with the
    right password); the owner's reset clears the counts: the new
    password logs in at once."""
    addr, pw, _ = pd.user()
    for _ in range(3):
        assert_problem(pd.login(addr, "a wrong guess!"), 401)
    assert_problem(pd.login(addr, pw), 429, "too_many_attempts")
    new_pw = "a fresh passphrase 2"
    assert reset(pd, link_token(pd, sink, addr), new_pw).status == 204
    assert pd.login(addr, new_pw).status == 200


def test_a_reset_leaves_the_run_while_a_second_factor_stays(pd, sink):
    """With the second factor on and kept by the reset (the email was
    verified), the reset leaves the run of failures, which holds wrong
    codes: the link proves the address, not the factor. Before, whoever
    had the password and a token moved the email to an address of
    theirs, and each reset there gave another threshold of guesses at
    the code."""
    from test_mfa import setup_mfa
    addr, pw, t = pd.user()
    tok = t["access_token"]
    verify_by_link(pd, sink, addr, tok)
    codes, _ = setup_mfa(pd, addr, pw, tok)
    seen = []
    for i in range(8):      # 3 lock; each attempt in a delay doubles it
        r = pd.request("DELETE", "/api/v1/auth/mfa/totp",
                       {"current_password": pw, "code": codes.wrong(i)},
                       token=tok)
        assert r.status in (400, 429), r
        seen.append(r.status)
    assert seen[-1] == 429, seen
    new_pw = "a fresh passphrase 3"
    assert reset(pd, link_token(pd, sink, addr), new_pw).status == 204
    assert_problem(pd.login(addr, new_pw), 429, "too_many_attempts")
