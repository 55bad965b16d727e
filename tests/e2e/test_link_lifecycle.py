"""What ends a mailed link (README "Mail"): a password change or reset
ends every reset link asked for before it, also one the mailer makes
after it from a request queued before; an email change ends every link
for good, also when the account's address comes back to the old one.
Each race is played many rounds; the SMTP sink of test_mail.py receives
the mails."""
import pytest

from conftest import Daemon, assert_problem, wait_until
from test_mail import (SmtpSink, forgot, parse, reset, smtp_env, token_in,
                       verify, verify_request, wait_mails)
from test_mail_abuse import db_rows

ROUNDS = 12


@pytest.fixture(scope="module")
def sink():
    s = SmtpSink()
    yield s
    s.close()


@pytest.fixture(scope="module")
def ld(backend, sink):
    d = Daemon(backend, env=smtp_env(sink.port)).start()
    yield d
    assert d.stop() == 0, "\n".join(d.lines[-20:])


def drained(d):
    """Waits until the outbox holds no unsent mail (each request resolved
    and sent, or dropped)."""
    assert wait_until(lambda: db_rows(
        d, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == [("0",)],
        timeout=30), db_rows(d, "SELECT kind, recipient FROM outbox "
                                "WHERE sent_at IS NULL")


def reset_links(sink, addr):
    return [token_in(parse(m).get_content(), "/reset-password")
            for m in sink.to(addr)
            if parse(m)["Subject"] == "Reset your password"]


def change_password(d, t, old, new):
    return d.request("POST", "/api/v1/auth/password/change",
                     {"current_password": old, "new_password": new},
                     token=t["access_token"])


def test_a_reset_asked_before_a_password_change_is_dead_after_it(ld, sink):
    """The request is queued at once and its link made by the mailer up to
    a moment later; a password change in between ended nothing before."""
    mailed = 0
    for i in range(ROUNDS):
        addr, pw, t = ld.user()
        assert forgot(ld, addr).status == 202
        r = change_password(ld, t, pw, "changed passphrase %d" % i)
        assert r.status == 204, r
        drained(ld)
        for token in reset_links(sink, addr):
            mailed += 1
            assert_problem(reset(ld, token, "attacker passphrase"), 400,
                           "invalid_token")
        assert ld.login(addr, "changed passphrase %d" % i).status == 200
    print("\n%d of %d reset mails went out, their links dead" % (mailed,
                                                                ROUNDS))


def test_a_reset_ends_the_links_asked_for_before_it(ld, sink):
    for i in range(ROUNDS):
        addr, _, _ = ld.user()
        assert forgot(ld, addr).status == 202
        first = token_in(parse(wait_mails(sink, addr)[0]).get_content(),
                         "/reset-password")
        assert forgot(ld, addr).status == 202      # a second link, queued
        assert reset(ld, first, "reset passphrase %d" % i).status == 204
        drained(ld)
        for token in reset_links(sink, addr)[1:]:
            assert_problem(reset(ld, token, "attacker passphrase"), 400,
                           "invalid_token")
        assert ld.login(addr, "reset passphrase %d" % i).status == 200


def test_a_reset_asked_before_an_email_change_is_dead_after_it(ld, sink):
    """forgot(X), then X -> Y -> X before the mailer makes the link: the
    request went with the first change, and no link made later works."""
    mailed = 0
    for _ in range(ROUNDS):
        addr, pw, t = ld.user()
        assert forgot(ld, addr).status == 202
        for to in ("moved-" + addr, addr):
            r = ld.request("PATCH", "/api/v1/users/me",
                           {"email": to, "current_password": pw},
                           token=t["access_token"])
            assert r.status == 200, r
        drained(ld)
        for token in reset_links(sink, addr):
            mailed += 1
            assert_problem(reset(ld, token, "attacker passphrase"), 400,
                           "invalid_token")
        assert ld.login(addr, pw).status == 200
    print("\n%d of %d reset mails went out, their links dead" % (mailed,
                                                                ROUNDS))


def test_links_die_with_an_email_change_also_when_it_comes_back(ld, sink):
    for _ in range(3):
        addr, pw, t = ld.user()
        assert verify_request(ld, t["access_token"]).status == 202
        vtok = token_in(parse(wait_mails(sink, addr)[0]).get_content(),
                        "/verify-email")
        assert forgot(ld, addr).status == 202
        assert wait_until(lambda: reset_links(sink, addr), timeout=30)
        rtok = reset_links(sink, addr)[0]
        for to in ("moved-" + addr, addr):          # X -> Y -> X
            r = ld.request("PATCH", "/api/v1/users/me",
                           {"email": to, "current_password": pw},
                           token=t["access_token"])
            assert r.status == 200, r
        assert_problem(verify(ld, vtok), 400, "invalid_token")
        assert_problem(reset(ld, rtok, "attacker passphrase"), 400,
                       "invalid_token")
        assert ld.login(addr, pw).status == 200
        me = ld.request("GET", "/api/v1/users/me", token=t["access_token"])
        assert me.json["is_verified"] is False
        # and new links work
        assert verify_request(ld, t["access_token"]).status == 202
        assert wait_until(lambda: len([
            m for m in sink.to(addr)
            if parse(m)["Subject"] == "Confirm your email address"]) >= 2,
            timeout=30)
        fresh = [m for m in sink.to(addr)
                 if parse(m)["Subject"] == "Confirm your email address"][-1]
        assert verify(ld, token_in(parse(fresh).get_content(),
                                   "/verify-email")).status == 204


def test_an_admin_moving_an_account_tells_the_owner(ld, sink):
    """An admin's email change, like the owner's, mails the old address
    an `email_changed` notice and ends the account's links."""
    admin = "admin-%s" % ld.user()[0]
    r = ld.command("user", "create", "--email", admin, "--admin",
                   stdin=b"admin passphrase 123\n")
    assert r.returncode == 0, r.stderr
    at = ld.login(admin, "admin passphrase 123").json["access_token"]
    addr, _, t = ld.user()
    assert forgot(ld, addr).status == 202
    assert wait_until(lambda: reset_links(sink, addr), timeout=30)
    rtok = reset_links(sink, addr)[0]
    uid = ld.request("GET", "/api/v1/users/me",
                     token=t["access_token"]).json["id"]
    r = ld.request("PATCH", "/api/v1/users/" + uid,
                   {"email": "elsewhere-" + addr}, token=at)
    assert r.status == 200, r
    assert wait_until(lambda: [
        m for m in sink.to(addr)
        if parse(m)["Subject"] == "Your email address was changed"],
        timeout=30), [parse(m)["Subject"] for m in sink.to(addr)]
    assert_problem(reset(ld, rtok, "attacker passphrase"), 400,
                   "invalid_token")


def test_links_die_with_a_deactivation(ld, sink):
    """Sessions stay dead when an admin reactivates an account; so do the
    links mailed before the deactivation."""
    admin = "boss-%s" % ld.user()[0]
    r = ld.command("user", "create", "--email", admin, "--admin",
                   stdin=b"admin passphrase 123\n")
    assert r.returncode == 0, r.stderr
    at = ld.login(admin, "admin passphrase 123").json["access_token"]
    addr, pw, t = ld.user()
    uid = ld.request("GET", "/api/v1/users/me",
                     token=t["access_token"]).json["id"]
    assert verify_request(ld, t["access_token"]).status == 202
    assert forgot(ld, addr).status == 202
    assert wait_until(lambda: reset_links(sink, addr) and len(
        sink.to(addr)) >= 2, timeout=30)
    rtok = reset_links(sink, addr)[0]
    vtok = [token_in(parse(m).get_content(), "/verify-email")
            for m in sink.to(addr)
            if parse(m)["Subject"] == "Confirm your email address"][0]
    for active in (False, True):
        r = ld.request("PATCH", "/api/v1/users/" + uid,
                       {"is_active": active}, token=at)
        assert r.status == 200, r
    assert_problem(reset(ld, rtok, "attacker passphrase"), 400,
                   "invalid_token")
    assert_problem(verify(ld, vtok), 400, "invalid_token")
    assert ld.login(addr, pw).status == 200
