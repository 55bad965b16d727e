"""What ends a mailed link (README "Mail"): a password change or reset
ends every reset link asked for before it, also one the mailer makes
after it from a request queued before; an email change ends every link
for good, also when the account's address comes back to the old one.
Each race is played many rounds, on test_mail.py's daemon (`md`, one per
module) and SMTP sink."""
from conftest import assert_problem, wait_until
from test_mail import (forgot, md, parse, reset, sink, token_in,  # noqa: F401
                       verify, verify_request, wait_mails)
from test_mail_abuse import db_rows

ROUNDS = 12


def drained(d):
    """Waits until the outbox holds no unsent mail (each request resolved
    and sent, or dropped)."""
    assert wait_until(lambda: db_rows(
        d, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == [("0",)],
        timeout=30), db_rows(d, "SELECT kind, recipient FROM outbox "
                                "WHERE sent_at IS NULL")


def verify_links(sink, addr):
    return links(sink, addr, "Confirm your email address", "/verify-email")


def reset_links(sink, addr):
    return links(sink, addr, "Reset your password", "/reset-password")


def links(sink, addr, subject, page):
    return [token_in(parse(m).get_content(), page) for m in sink.to(addr)
            if parse(m)["Subject"] == subject]


def dead_links(d, sink, addr, skip=0):
    """Once the outbox is worked through: every reset link mailed to
    `addr` (but the first `skip`) is refused. Returns how many there
    were."""
    drained(d)
    tokens = reset_links(sink, addr)[skip:]
    for token in tokens:
        assert_problem(reset(d, token, "attacker passphrase"), 400,
                       "invalid_token")
    return len(tokens)


def move(d, t, pw, *addresses):
    """The caller moves its account through `addresses` in turn."""
    for to in addresses:
        r = d.request("PATCH", "/api/v1/users/me",
                      {"email": to, "current_password": pw},
                      token=t["access_token"])
        assert r.status == 200, r


def admin_token(d):
    admin = "boss-%s" % d.user()[0]
    r = d.command("user", "create", "--email", admin, "--admin",
                  stdin=b"admin passphrase 123\n")
    assert r.returncode == 0, r.stderr
    return d.login(admin, "admin passphrase 123").json["access_token"]


def user_id(d, t):
    return d.request("GET", "/api/v1/users/me",
                     token=t["access_token"]).json["id"]


def change_password(d, t, old, new):
    return d.request("POST", "/api/v1/auth/password/change",
                     {"current_password": old, "new_password": new},
                     token=t["access_token"])


def test_a_reset_asked_before_a_password_change_is_dead_after_it(md, sink):
    """The request is queued at once and its link made by the mailer up to
    a moment later; a password change in between ended nothing before."""
    mailed = 0
    for i in range(ROUNDS):
        addr, pw, t = md.user()
        assert forgot(md, addr).status == 202
        r = change_password(md, t, pw, "changed passphrase %d" % i)
        assert r.status == 204, r
        mailed += dead_links(md, sink, addr)
        assert md.login(addr, "changed passphrase %d" % i).status == 200
    print("\n%d of %d reset mails went out, their links dead" % (mailed,
                                                                ROUNDS))


def test_a_reset_ends_the_links_asked_for_before_it(md, sink):
    for i in range(ROUNDS):
        addr, _, _ = md.user()
        assert forgot(md, addr).status == 202
        first = token_in(parse(wait_mails(sink, addr)[0]).get_content(),
                         "/reset-password")
        assert forgot(md, addr).status == 202      # a second link, queued
        assert reset(md, first, "reset passphrase %d" % i).status == 204
        dead_links(md, sink, addr, skip=1)
        assert md.login(addr, "reset passphrase %d" % i).status == 200


def test_a_reset_asked_before_an_email_change_is_dead_after_it(md, sink):
    """forgot(X), then X -> Y -> X before the mailer makes the link: the
    request went with the first change, and no link made later works."""
    mailed = 0
    for _ in range(ROUNDS):
        addr, pw, t = md.user()
        assert forgot(md, addr).status == 202
        move(md, t, pw, "moved-" + addr, addr)
        mailed += dead_links(md, sink, addr)
        assert md.login(addr, pw).status == 200
    print("\n%d of %d reset mails went out, their links dead" % (mailed,
                                                                ROUNDS))


def test_a_verification_asked_before_a_change_is_dead_after_it(md, sink):
    """A verification request, then X -> Y -> X (or a deactivation and a
    reactivation) before the mailer makes the link: the request was left
    queued, and its link, made after the change, verified the account
    (every round). It goes with the change now, and every verification
    link mailed is refused."""
    at = admin_token(md)
    mailed = 0
    for i in range(ROUNDS):
        addr, pw, t = md.user()
        assert verify_request(md, t["access_token"]).status == 202
        if i % 2:
            uid = user_id(md, t)
            for active in (False, True):
                r = md.request("PATCH", "/api/v1/users/" + uid,
                               {"is_active": active}, token=at)
                assert r.status == 200, r
            t = md.login(addr, pw).json
        else:
            move(md, t, pw, "moved-" + addr, addr)
        drained(md)
        tokens = verify_links(sink, addr)
        for token in tokens:
            assert_problem(verify(md, token), 400, "invalid_token")
        mailed += len(tokens)
        me = md.request("GET", "/api/v1/users/me", token=t["access_token"])
        assert me.json["is_verified"] is False, me
    print("\n%d of %d verification mails went out, their links dead"
          % (mailed, ROUNDS))


def test_links_die_with_an_email_change_also_when_it_comes_back(md, sink):
    for _ in range(3):
        addr, pw, t = md.user()
        assert verify_request(md, t["access_token"]).status == 202
        vtok = token_in(parse(wait_mails(sink, addr)[0]).get_content(),
                        "/verify-email")
        assert forgot(md, addr).status == 202
        assert wait_until(lambda: reset_links(sink, addr), timeout=30)
        rtok = reset_links(sink, addr)[0]
        move(md, t, pw, "moved-" + addr, addr)      # X -> Y -> X
        assert_problem(verify(md, vtok), 400, "invalid_token")
        assert_problem(reset(md, rtok, "attacker passphrase"), 400,
                       "invalid_token")
        assert md.login(addr, pw).status == 200
        me = md.request("GET", "/api/v1/users/me", token=t["access_token"])
        assert me.json["is_verified"] is False
        # and new links work
        assert verify_request(md, t["access_token"]).status == 202
        assert wait_until(lambda: len(verify_links(sink, addr)) >= 2,
                          timeout=30)
        assert verify(md, verify_links(sink, addr)[-1]).status == 204


def test_an_admin_moving_an_account_tells_the_owner(md, sink):
    """An admin's email change, like the owner's, mails the old address
    an `email_changed` notice and ends the account's links."""
    at = admin_token(md)
    addr, _, t = md.user()
    assert forgot(md, addr).status == 202
    assert wait_until(lambda: reset_links(sink, addr), timeout=30)
    rtok = reset_links(sink, addr)[0]
    r = md.request("PATCH", "/api/v1/users/" + user_id(md, t),
                   {"email": "elsewhere-" + addr}, token=at)
    assert r.status == 200, r
    assert wait_until(lambda: [
        m for m in sink.to(addr)
        if parse(m)["Subject"] == "Your email address was changed"],
        timeout=30), [parse(m)["Subject"] for m in sink.to(addr)]
    assert_problem(reset(md, rtok, "attacker passphrase"), 400,
                   "invalid_token")


def test_links_die_with_a_deactivation(md, sink):
    """Sessions stay dead when an admin reactivates an account; so do the
    links mailed before the deactivation."""
    at = admin_token(md)
    addr, pw, t = md.user()
    uid = user_id(md, t)
    assert verify_request(md, t["access_token"]).status == 202
    assert forgot(md, addr).status == 202
    assert wait_until(lambda: reset_links(sink, addr) and len(
        sink.to(addr)) >= 2, timeout=30)
    rtok = reset_links(sink, addr)[0]
    vtok = verify_links(sink, addr)[0]
    for active in (False, True):
        r = md.request("PATCH", "/api/v1/users/" + uid,
                       {"is_active": active}, token=at)
        assert r.status == 200, r
    assert_problem(reset(md, rtok, "attacker passphrase"), 400,
                   "invalid_token")
    assert_problem(verify(md, vtok), 400, "invalid_token")
    assert md.login(addr, pw).status == 200
