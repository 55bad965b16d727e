"""Second factor: the limits on guessing codes, end to end.

Wrong codes count toward the lockout on every route that takes one, a
right password alone never resets that count while the factor is on, and
one mfa_token gives at most five tries however many arrive at once.
"""
import concurrent.futures

from conftest import assert_problem
from test_mfa import RECOVERY, SETUP, TOTP, login_mfa, mfa_token, \
    mfa_user

LIMITED = {"AUTH_LOCKOUT_THRESHOLD": "3"}


def _mfa_user_with_token(d):
    """A user with the factor on and the bearer token of a complete
    login."""
    email, password, codes, recovery = mfa_user(d)
    r = login_mfa(d, mfa_token(d, email, password), codes.next())
    assert r.status == 200, r
    return email, password, codes, recovery, r.json["access_token"]


def _guess_until_locked(d, path, password, codes, token, tries=8):
    """Sends the right password with wrong codes to `path`; returns the
    statuses."""
    out = []
    for i in range(tries):
        r = d.request("DELETE" if path == TOTP else "POST", path,
                      {"current_password": password,
                       "code": codes.wrong(i * 1000)}, token=token)
        out.append(r.status)
    return out


def test_wrong_codes_at_disable_lock_out(make_daemon):
    d = make_daemon(env=LIMITED).start()
    email, password, codes, _, at = _mfa_user_with_token(d)
    st = _guess_until_locked(d, TOTP, password, codes, at)
    assert st[:3] == [400, 400, 400] and 429 in st, st
    # the password is locked too, and the factor is still on
    assert_problem(d.login(email, password), 429, "too_many_attempts")


def test_wrong_codes_at_recovery_codes_lock_out(make_daemon):
    d = make_daemon(env=LIMITED).start()
    email, password, codes, _, at = _mfa_user_with_token(d)
    st = _guess_until_locked(d, RECOVERY, password, codes, at)
    assert st[:3] == [400, 400, 400] and 429 in st, st
    assert_problem(d.login(email, password), 429, "too_many_attempts")


def test_right_password_elsewhere_does_not_reset_the_count(make_daemon):
    """login -> wrong code -> setup with the right password, in a loop:
    the password check of setup never ends the run of wrong codes."""
    d = make_daemon(env=LIMITED).start()
    email, password, codes, _, at = _mfa_user_with_token(d)
    seen = []
    for i in range(6):
        r = d.login(email, password)
        if r.status == 429:
            seen.append("locked")
            break
        tok = assert_problem(r, 403, "mfa_required")["mfa_token"]
        seen.append(login_mfa(d, tok, codes.wrong(i * 1000)).status)
        seen.append(d.request("POST", SETUP, {"current_password": password},
                              token=at).status)
    assert "locked" in seen or 429 in seen, seen
    assert_problem(d.login(email, password), 429, "too_many_attempts")


def test_right_code_with_password_completes_and_resets(make_daemon):
    d = make_daemon(env=LIMITED).start()
    email, password, codes, _, at = _mfa_user_with_token(d)
    for i in range(2):
        r = d.request("POST", RECOVERY, {"current_password": password,
                                         "code": codes.wrong(i * 1000)},
                      token=at)
        assert_problem(r, 400, "invalid_code")
    r = d.request("POST", RECOVERY, {"current_password": password,
                                     "code": codes.next()}, token=at)
    assert r.status == 200, r
    # the count is back at zero: two more failures do not lock
    for i in range(2):
        assert_problem(d.login(email, "wrong password %d" % i), 401)
    assert_problem(d.login(email, password), 403, "mfa_required")


def test_concurrent_wrong_codes_get_five_tries(make_daemon):
    """Many rounds of 30 wrong codes at once on one mfa_token: at most five
    are looked at (400), the others find the token dead (401)."""
    d = make_daemon(env={"AUTH_LOCKOUT_THRESHOLD": "1000",
                         "AUTH_HASH_QUEUE": "256",
                         "AUTH_DB_POOL_SIZE": "8"}).start()
    email, password, codes, _ = mfa_user(d)
    with concurrent.futures.ThreadPoolExecutor(30) as ex:
        for _ in range(10):
            tok = mfa_token(d, email, password)
            wrong = [codes.wrong(1000 * i + 7) for i in range(30)]
            res = list(ex.map(lambda c: login_mfa(d, tok, c), wrong))
            st = [r.status for r in res]
            assert set(st) <= {400, 401}, res
            assert st.count(400) <= 5, st
            # the token is dead now, even for a right code
            assert_problem(login_mfa(d, tok, codes.totp.now()), 401,
                           "invalid_token")


def test_right_code_on_the_last_try(daemon):
    email, password, codes, _ = mfa_user(daemon)
    tok = mfa_token(daemon, email, password)
    for i in range(4):
        assert_problem(login_mfa(daemon, tok, codes.wrong(i * 1000)), 400,
                       "invalid_code")
    r = login_mfa(daemon, tok, codes.next())
    assert r.status == 200, r
    assert_problem(login_mfa(daemon, tok, codes.next()), 401,
                   "invalid_token")
