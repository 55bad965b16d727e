"""Bounds of the outbox: notices to one address capped apart from link
mails, a mail the receiver refuses dropped without pausing the
transport, failing mails given up, new mails served before retries, and
the outbox bounded while no transport is set. The webhook sink of
test_mail.py receives the mails."""
import json
import os
import secrets
import sqlite3
import subprocess
import time
import uuid

import pytest

from conftest import wait_until
from test_mail import (PUBLIC, SECRET, SmtpSink, WebhookSink, forgot, me,
                       smtp_env)
from test_mail_abuse import db_rows

DAY_MS = 86400000
MAX_ATTEMPTS = 12                 # MAIL_MAX_ATTEMPTS of include/mail.h


class SortingHook(WebhookSink):
    """The webhook sink, answering by recipient: 400 (this event is
    refused) when it contains "refused", 500 (the receiver fails) when it
    contains "bounce", else 204."""

    def __init__(self):
        super().__init__()
        sink = self
        base = self.server.RequestHandlerClass

        class Handler(base):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                to = json.loads(body)["to"]
                status = (400 if "refused" in to else
                          500 if "bounce" in to else 204)
                with sink.lock:
                    sink.requests.append({"path": self.path,
                                          "headers": dict(self.headers),
                                          "body": body, "to": to})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server.RequestHandlerClass = Handler

    def to(self, addr, kind=None):
        with self.lock:
            evs = [json.loads(r["body"]) for r in self.requests
                   if r["to"] == addr]
        return [e for e in evs if kind is None or e["type"] == kind]


def hook_env(hook, **more):
    env = {"AUTH_NOTIFY_WEBHOOK_URL": "http://127.0.0.1:%d/mail" % hook.port,
           "AUTH_NOTIFY_WEBHOOK_SECRET": SECRET, "AUTH_PUBLIC_URL": PUBLIC}
    env.update(more)
    return env


def db_exec(d, sql):
    """Runs `sql` (our own text) on the daemon's database."""
    url = d.env.get("AUTH_DATABASE_URL")
    if url and url.startswith("postgres"):
        subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c",
                        sql], check=True, capture_output=True)
        return
    db = sqlite3.connect(os.path.join(d.data_dir, "auth.db"), timeout=10)
    try:
        db.execute(sql)
        db.commit()
    finally:
        db.close()


def now_ms():
    return int(time.time() * 1000)


def queue_notice(d, user_id, to, attempts=0, created_at=None):
    """An email_changed notice to `to` as an email change queues it,
    `attempts` failed tries behind it, due now; its id."""
    rid = str(uuid.uuid4())
    now = now_ms()
    db_exec(d, "INSERT INTO outbox (id, user_id, kind, recipient, resolved, "
               "created_at, attempts, next_attempt_at) VALUES ('%s', '%s', "
               "'email_changed', '%s', true, %d, %d, %d)"
            % (rid, user_id, to, created_at or now, attempts, now - 1000))
    return rid


def outbox_has(d, rid):
    return bool(db_rows(d, "SELECT 1 FROM outbox WHERE id = '%s'" % rid))


def events(d, name, **match):
    return [e for e in d.logs if e.get("event") == name and
            all(e.get(k) == v for k, v in match.items())]


def user_id(d, tok):
    return me(d, tok["access_token"]).json["id"]


def test_notices_to_one_address_have_their_own_cap(make_daemon):
    """Two notices an hour to an address, whatever the link mails to it;
    the first past the cap is held until the count lets it through (one
    dropped let whoever holds a token add throwaway passkeys and then
    the one to keep, unheard of), and it stands for later ones."""
    hook = SortingHook()
    try:
        d = make_daemon(hook_env(
            hook, AUTH_MAIL_PER_RECIPIENT_PER_HOUR="2")).start()
        addr, pw, t = d.user()
        third = "third-%s@example.com" % secrets.token_hex(4)
        # link mails to the third party spend the cap of link mails...
        for _ in range(3):
            assert forgot(d, third).status == 202
        # ...and every other email change mails a notice to it: four
        # to each address
        for i in range(8):
            r = d.request("PATCH", "/api/v1/users/me",
                          {"email": third if i % 2 == 0 else addr,
                           "current_password": pw},
                          token=t["access_token"])
            assert r.status == 200, r
        assert wait_until(lambda: len(events(
            d, "mail.dropped", kind="email_changed",
            reason="recipient_cap")) >= 2 and len(events(
                d, "mail.held", kind="email_changed")) >= 2,
            timeout=20), hook.requests
        # two a recipient an hour, not silenced by the link mails
        assert wait_until(lambda: len(hook.to(third, "email_changed")) >= 2,
                          timeout=20)
        assert wait_until(lambda: len(hook.to(addr, "email_changed")) >= 2,
                          timeout=20)
        # the receiver answers before the row is marked sent: poll; one
        # notice an address stays, due when the hour lets it through
        soon = int(time.time() * 1000) + 55 * 60 * 1000
        assert wait_until(lambda: sorted(db_rows(
            d, "SELECT recipient FROM outbox WHERE sent_at IS NULL")) ==
            sorted([(addr,), (third,)]), timeout=20)
        assert db_rows(d, "SELECT count(*) FROM outbox WHERE sent_at IS "
                          "NULL AND next_attempt_at > %d" % soon) == [("2",)]
        assert len(hook.to(third, "email_changed")) == 2
        assert len(hook.to(addr, "email_changed")) == 2
        assert len(events(d, "mail.dropped", kind="email_changed",
                          reason="recipient_cap")) == 2
        assert len(events(d, "mail.held", kind="email_changed")) == 2
    finally:
        hook.close()


def test_refused_mail_is_dropped_without_pausing(make_daemon):
    hook = SortingHook()
    try:
        d = make_daemon(hook_env(hook)).start()
        refused = []
        for _ in range(3):
            addr, _, _ = d.user(email="refused-%s@example.com"
                                      % secrets.token_hex(4))
            refused.append(addr)
            assert forgot(d, addr).status == 202
        good, _, _ = d.user()
        assert forgot(d, good).status == 202
        assert wait_until(lambda: hook.to(good, "password_reset"),
                          timeout=20)
        assert wait_until(lambda: len(events(d, "mail.dropped",
                                             reason="refused")) == 3,
                          timeout=20), d.lines[-10:]
        # tried once each, then gone; the transport never paused
        for addr in refused:
            assert len(hook.to(addr)) == 1
        assert not events(d, "mail.failed")
        # the receiver answers before the row is marked sent: poll
        assert wait_until(lambda: not db_rows(
            d, "SELECT id FROM outbox WHERE sent_at IS NULL"), timeout=20)
    finally:
        hook.close()


def test_recipient_refused_by_smtp_is_dropped_without_pausing(make_daemon):
    # The relay answers 550 to one recipient: that mail is dropped, the
    # transport does not pause, and the next mail goes at once.
    sink = SmtpSink(reject=lambda rcpt: "refused-" in rcpt)
    try:
        d = make_daemon(smtp_env(sink.port)).start()
        refused, _, _ = d.user(email="refused-%s@example.com"
                                     % secrets.token_hex(4))
        assert forgot(d, refused).status == 202
        assert wait_until(lambda: events(d, "mail.dropped",
                                         reason="refused"), timeout=20), \
            d.lines[-10:]
        good, _, _ = d.user()
        assert forgot(d, good).status == 202
        assert wait_until(lambda: sink.to(good), timeout=10)
        assert sink.rejected == ["<%s>" % refused]
        assert not events(d, "mail.failed")
    finally:
        sink.close()


def test_recipient_deferred_by_smtp_retries_without_pausing(make_daemon):
    # The relay answers 450 to some recipients (an unknown domain): those
    # rows wait on their own backoff and the transport never pauses, so
    # a client that queues mail to such addresses (an account moving its
    # email from one to the next) holds nobody else's mail. Before, each
    # paused the transport, doubling up to a minute a row.
    sink = SmtpSink(defer=lambda rcpt: "grey-" in rcpt)
    try:
        d = make_daemon(smtp_env(sink.port)).start()
        grey = [d.user(email="grey-%d-%s@example.com"
                       % (i, secrets.token_hex(4)))[0] for i in range(4)]
        for addr in grey:
            assert forgot(d, addr).status == 202
        assert wait_until(lambda: len({e["id"] for e in events(
            d, "mail.failed")}) >= 4, timeout=20), d.lines[-10:]
        good, _, _ = d.user()
        assert forgot(d, good).status == 202
        assert wait_until(lambda: sink.to(good), timeout=20)
        failures = events(d, "mail.failed")
        assert failures and all(e["transport_pause_ms"] == 0
                                and e["retry_in_ms"] > 0
                                and "450" in e["error"]
                                for e in failures), failures
        assert {r.strip("<>") for r in sink.deferred} >= set(grey)
        # still queued, for their retries
        assert len(db_rows(d, "SELECT id FROM outbox WHERE sent_at IS NULL "
                              "AND attempts > 0")) >= 4
    finally:
        sink.close()


def test_new_mail_goes_before_retries(make_daemon):
    hook = SortingHook()
    try:
        d = make_daemon(hook_env(hook)).start()
        _, _, t = d.user()
        uid = user_id(d, t)
        # mails that failed before and keep failing, all due now
        for i in range(8):
            queue_notice(d, uid, "bounce-%d@example.com" % i, attempts=1)
        assert wait_until(lambda: len(hook.requests) >= 1, timeout=10)
        good, _, _ = d.user()
        asked = time.monotonic()
        assert forgot(d, good).status == 202
        # the pause after a failure or two, not after every retry
        assert wait_until(lambda: hook.to(good, "password_reset"),
                          timeout=15), [r["to"] for r in hook.requests]
        assert time.monotonic() - asked < 15
    finally:
        hook.close()


def test_failing_mail_is_given_up(make_daemon):
    hook = SortingHook()
    try:
        d = make_daemon(hook_env(hook)).start()
        addr, _, t = d.user()
        uid = user_id(d, t)
        last = queue_notice(d, uid, "bounce-last@example.com",
                            attempts=MAX_ATTEMPTS - 1)
        old = queue_notice(d, uid, addr, created_at=now_ms() - DAY_MS - 1000)
        assert wait_until(lambda: not outbox_has(d, last) and
                          not outbox_has(d, old), timeout=20), d.lines[-10:]
        assert len(hook.to("bounce-last@example.com")) == 1   # its last try
        assert hook.to(addr) == []                 # a day old: not sent
        # the log is read by another thread: it may lag the outbox
        assert wait_until(lambda: {e["id"] for e in events(
            d, "mail.dropped", reason="gave_up")} == {last, old},
            timeout=10), events(d, "mail.dropped")
    finally:
        hook.close()


def test_outbox_is_bounded_without_a_transport(make_daemon):
    d = make_daemon().start()
    for i in range(6):
        assert forgot(d, "nobody-%d@example.com" % i).status == 202
    assert int(db_rows(d, "SELECT count(*) FROM outbox")[0][0]) == 6
    # a day and more later, still never sent
    db_exec(d, "UPDATE outbox SET created_at = created_at - %d, "
               "next_attempt_at = next_attempt_at - %d" % (2 * DAY_MS,
                                                           2 * DAY_MS))
    for i in range(3):
        assert forgot(d, "later-%d@example.com" % i).status == 202
    # each new request took two of the old ones along
    rows = db_rows(d, "SELECT recipient FROM outbox")
    assert sorted(r[0] for r in rows) == ["later-%d@example.com" % i
                                          for i in range(3)]


def test_a_new_passkey_is_told_to_the_owner(make_daemon):
    """An access token alone adds a passkey (API contract), so the owner
    hears of each one at the account's email: a `passkey_added` notice
    without a link, queued with the passkey; a refused registration
    queues none. SMTP for the mail, the webhook for the event."""
    from softauthn import Authenticator
    from conftest import free_port

    sink, hook = SmtpSink(), SortingHook()
    try:
        for env in (smtp_env(sink.port), hook_env(hook)):
            port = free_port()
            origin = "http://localhost:%d" % port
            d = make_daemon(dict(env, AUTH_PORT=str(port),
                                 AUTH_WEBAUTHN_RP_ID="localhost",
                                 AUTH_WEBAUTHN_ORIGINS=origin)).start()
            addr, _, t = d.user()
            auth = Authenticator()
            opts = d.request("POST", "/api/v1/auth/passkeys/register/options",
                             {}, token=t["access_token"])
            assert opts.status == 200, opts
            cred = auth.register(opts.json, origin)
            r = d.request("POST", "/api/v1/auth/passkeys/register",
                          {"credential": cred}, token=t["access_token"])
            assert r.status == 201, r
            # the same credential again: refused, and no second notice
            opts = d.request("POST", "/api/v1/auth/passkeys/register/options",
                             {}, token=t["access_token"])
            r = d.request("POST", "/api/v1/auth/passkeys/register",
                          {"credential": cred}, token=t["access_token"])
            assert r.status == 400, r
            if "AUTH_SMTP_URL" in env:
                got = wait_until(lambda: sink.to(addr), timeout=20)
                assert got, "no notice to %s" % addr
                text = got[0]["raw"].decode()
                assert "Subject: A passkey was added to your account" in text
                assert "http" not in text.split("\r\n\r\n", 1)[1]
            else:
                got = wait_until(lambda: hook.to(addr, "passkey_added"),
                                 timeout=20)
                assert got, "no event for %s" % addr
                assert got[0]["link"] is None and got[0]["to"] == addr
            # one notice queued (sent rows stay a week), one delivered
            assert db_rows(d, "SELECT count(*) FROM outbox WHERE kind = "
                              "'passkey_added'") == [("1",)]
            assert wait_until(lambda: events(d, "mail.sent",
                                             kind="passkey_added"),
                              timeout=20)
            assert len(events(d, "mail.sent", kind="passkey_added")) == 1
            assert d.stop() == 0
    finally:
        sink.close()
        hook.close()


def test_passkey_notices_cannot_silence_an_email_change(make_daemon):
    """Each kind of notice has its own count: a stolen access token that
    adds passkeys past the cap (their notices held for later) cannot so
    silence the notice that the account's email moved."""
    from softauthn import Authenticator
    from conftest import free_port

    hook = SortingHook()
    try:
        port = free_port()
        origin = "http://localhost:%d" % port
        d = make_daemon(hook_env(hook, AUTH_MAIL_PER_RECIPIENT_PER_HOUR="2",
                                 AUTH_PORT=str(port),
                                 AUTH_WEBAUTHN_RP_ID="localhost",
                                 AUTH_WEBAUTHN_ORIGINS=origin)).start()
        addr, pw, t = d.user()
        for _ in range(3):
            opts = d.request("POST", "/api/v1/auth/passkeys/register/options",
                             {}, token=t["access_token"])
            assert opts.status == 200, opts
            cred = Authenticator().register(opts.json, origin)
            r = d.request("POST", "/api/v1/auth/passkeys/register",
                          {"credential": cred}, token=t["access_token"])
            assert r.status == 201, r
        assert wait_until(lambda: events(d, "mail.held",
                                         kind="passkey_added",
                                         reason="recipient_cap"),
                          timeout=20), hook.requests
        assert wait_until(lambda: len(hook.to(addr, "passkey_added")) == 2,
                          timeout=20)
        moved = "moved-" + addr
        r = d.request("PATCH", "/api/v1/users/me",
                      {"email": moved, "current_password": pw},
                      token=t["access_token"])
        assert r.status == 200, r
        got = wait_until(lambda: hook.to(addr, "email_changed"), timeout=20)
        assert got and got[0]["link"] is None, hook.requests
        assert not events(d, "mail.dropped", kind="email_changed")
    finally:
        hook.close()


@pytest.mark.parametrize("plant", ["fifo", "zero", "garbage"])
def test_what_lies_at_mail_unmarked_never_holds_the_start(plant):
    """The ids of sent mails not yet recorded are kept in the data folder's
    mail-unmarked across a stop (README "Mail"). What else lies there, a
    FIFO, a link to /dev/zero or bytes of no id, must not hold the start:
    the first blocked it for good (the mailer never started, SIGTERM was
    never handled), the second spun on it."""
    from conftest import Daemon, scratch
    data = scratch("auth-e2e-unmarked-")
    path = os.path.join(data, "mail-unmarked")
    if plant == "fifo":
        os.mkfifo(path)
    elif plant == "zero":
        os.symlink("/dev/zero", path)
    else:
        with open(path, "wb") as f:
            f.write(os.urandom(3000) + b"\n" + b"not-an-id\n" * 500)
    d = Daemon("sqlite", data_dir=data, env={
        "AUTH_NOTIFY_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "AUTH_NOTIFY_WEBHOOK_SECRET": "s" * 32}).start()
    try:
        assert d.events(lambda e: e.get("event") == "mail.started",
                        timeout=20), d.lines[-5:]
        assert d.request("GET", "/healthz").status == 200
    finally:
        assert d.stop(timeout=20) == 0
    assert not os.path.lexists(path)
