"""A key retires when it stops signing, not when `keys rotate` runs: a
SIGHUP long after a rotation keeps the key that signed until then (the keys
folder; on PostgreSQL see test_instances.py). The passage of time is made
by rewriting any retirement stamp the rotation left to an hour ago."""
import os
import shutil
import signal
import threading
import time

import pytest

from conftest import BACKENDS, Daemon, wait_until
from jwtutil import parts

pytestmark = pytest.mark.skipif("sqlite" not in BACKENDS,
                                reason="the keys folder is SQLite's")


def test_late_reload_keeps_the_last_signer(make_daemon, backend):
    if backend != "sqlite":
        pytest.skip("the keys folder is SQLite's")
    d = make_daemon({"AUTH_ACCESS_TOKEN_TTL": "30"}).start()
    email, pw, _ = d.user()
    r = d.command("keys", "rotate")
    assert r.returncode == 0, r.stderr
    kid_new = r.stdout.decode().strip()
    t = d.login(email, pw).json["access_token"]    # still the old key
    kid_old = parts(t)[0]["kid"]
    assert kid_old != kid_new
    stamp = os.path.join(d.data_dir, "keys", kid_old + ".retired")
    if os.path.exists(stamp):                     # an hour has passed
        with open(stamp, "w") as f:
            f.write("%d\n" % (int(time.time()) - 3600))
    d.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: any(e.get("event") == "keys.reloaded"
                                  for e in d.logs))
    # the token signed 0 s before the reload is good, and its key listed
    r = d.request("GET", "/api/v1/users/me", token=t)
    assert r.status == 200, r
    kids = {k["kid"] for k in d.request("GET", "/.well-known/jwks.json")
            .json["keys"]}
    assert {kid_old, kid_new} <= kids
    with open(stamp) as f:                        # retired at the reload
        assert abs(int(f.read()) - time.time()) < 60
    t2 = d.login(email, pw).json["access_token"]
    assert parts(t2)[0]["kid"] == kid_new


def test_a_rotated_key_is_published_before_it_signs(make_daemon, backend):
    """On SQLite a new key was listed in the JWKS only from the reload that
    also made it sign: a resource server holding a set cached for its
    max-age refused the new tokens until it expired. The daemon now lists
    a key `keys rotate` added within about 2 s, without a signal, and the
    old key signs until the reload (as before); a reload sooner than the
    JWKS max-age after the rotation says so (keys.signs_unpublished)."""
    if backend != "sqlite":
        pytest.skip("the keys folder is SQLite's")
    d = make_daemon({"AUTH_KEY_PUBLISH_SECONDS": "40"}).start()   # age 30
    email, pw, _ = d.user()
    kid_old = parts(d.login(email, pw).json["access_token"])[0]["kid"]

    def listed():
        return {k["kid"] for k in d.request(
            "GET", "/.well-known/jwks.json").json["keys"]}
    r = d.command("keys", "rotate")
    assert r.returncode == 0, r.stderr
    kid_new = r.stdout.decode().strip()
    # a signal every 0.3 s (logged and ignored) restarted the 2 s wait
    # for good, and the key was never listed while they came
    stop = threading.Event()

    def nag():
        while not stop.wait(0.3):
            d.proc.send_signal(signal.SIGUSR1)
    th = threading.Thread(target=nag)
    th.start()
    try:
        assert wait_until(lambda: kid_new in listed(), 15)
    finally:
        stop.set()
        th.join()
    assert kid_old in listed()
    assert any(e.get("event") == "keys.published" for e in d.logs)
    for _ in range(3):                    # the old key still signs
        t = d.login(email, pw).json["access_token"]
        assert parts(t)[0]["kid"] == kid_old
    assert d.request("GET", "/api/v1/users/me", token=t).status == 200
    d.proc.send_signal(signal.SIGHUP)     # 30 s not waited: said so
    assert wait_until(lambda: any(e.get("event") == "keys.signs_unpublished"
                                  and e.get("kid") == kid_new
                                  for e in d.logs))
    t2 = d.login(email, pw).json["access_token"]
    assert parts(t2)[0]["kid"] == kid_new
    assert {kid_old, kid_new} <= listed()
    assert d.request("GET", "/api/v1/users/me", token=t).status == 200
    assert d.stop() == 0


def test_a_restart_right_after_a_rotation_says_so(make_daemon, backend):
    """A restart instead of a reload signs with the new key at once, and
    said nothing of it: no instance can have listed the key for longer
    than it exists. keys.signs_unpublished now, as at a reload; a restart
    with no rotation since, or long after one, says nothing."""
    if backend != "sqlite":
        pytest.skip("the keys folder is SQLite's")
    d = make_daemon({"AUTH_KEY_PUBLISH_SECONDS": "40"}).start()   # age 30

    def warned():
        return [e for e in d.logs
                if e.get("event") == "keys.signs_unpublished"]
    assert d.stop() == 0
    d.start()                                  # no rotation: nothing said
    d.settled()
    assert not warned()
    r = d.command("keys", "rotate")
    assert r.returncode == 0, r.stderr
    kid_new = r.stdout.decode().strip()
    assert d.stop() == 0
    d.start()
    assert wait_until(lambda: any(e.get("kid") == kid_new
                                  for e in warned()))
    assert d.stop() == 0
    env = dict(d.env, AUTH_KEY_PUBLISH_SECONDS="0")   # age 0: never late
    d.env = env
    d.start()
    d.settled()
    assert not warned()
    assert d.stop() == 0


@pytest.mark.parametrize("publish, age", [(None, 300), ("600", 300),
                                          ("130", 120), ("5", 0)])
def test_jwks_is_cached_no_longer_than_a_new_key_waits(make_daemon,
                                                       publish, age):
    """A resource server that honours the key set's Cache-Control sees a
    new key before it signs: the key waits AUTH_KEY_PUBLISH_SECONDS from
    its rotation, and instances list it within 10 s, so the set is
    cached for at most that much less (and never more than 300 s)."""
    env = {} if publish is None else {"AUTH_KEY_PUBLISH_SECONDS": publish}
    d = make_daemon(env).start()
    r = d.request("GET", "/.well-known/jwks.json")
    assert r.status == 200
    assert r.header("Cache-Control") == "public, max-age=%d" % age
    assert d.stop() == 0


@pytest.mark.parametrize("gone", ["the folder", "current", "refresh.key"])
def test_a_reload_that_finds_keys_gone_makes_none(make_daemon, backend,
                                                  gone):
    """Keys are made at the first start only. A SIGHUP after the keys (or
    only `current`, or only refresh.key) were deleted made new ones: every
    access token was refused at once (the contract keeps the last signer's
    for their lifetime), and a new refresh.key made the stored TOTP
    secrets unreadable (500 at the second step). The reload is refused
    now, and the daemon goes on with the keys it holds."""
    if backend != "sqlite":
        pytest.skip("the keys folder is SQLite's")
    d = make_daemon().start()
    email, pw, _ = d.user()
    t = d.login(email, pw).json["access_token"]
    kid = parts(t)[0]["kid"]
    keys = os.path.join(d.data_dir, "keys")
    if gone == "the folder":
        shutil.rmtree(keys)
    else:
        os.unlink(os.path.join(keys, gone))
    d.proc.send_signal(signal.SIGHUP)
    assert d.events(lambda e: e.get("event") == "keys.reload_failed" and
                    "a reload makes no keys" in e.get("message", ""))
    assert d.request("GET", "/api/v1/users/me", token=t).status == 200
    assert parts(d.login(email, pw).json["access_token"])[0]["kid"] == kid
    left = os.listdir(keys) if os.path.isdir(keys) else []
    if gone != "refresh.key":
        assert not [f for f in left if f.endswith(".pem") and
                    not f.startswith(kid)] and "current" not in left, left
    if gone != "current":
        assert "refresh.key" not in left, left


def test_a_keys_folder_others_can_write_is_refused(make_daemon, backend):
    """Whoever can write to the keys folder can put a key of theirs there
    and make it `current`: the next reload signed every token with it
    (it was a warning). A reload is refused and the key kept; a start
    exits 2."""
    if backend != "sqlite":
        pytest.skip("the keys folder is SQLite's")
    d = make_daemon().start()
    email, pw, _ = d.user()
    t = d.login(email, pw).json["access_token"]
    keys = os.path.join(d.data_dir, "keys")
    os.chmod(keys, 0o777)
    try:
        d.proc.send_signal(signal.SIGHUP)
        assert d.events(lambda e: e.get("event") == "keys.reload_failed"
                        and "written by others" in e.get("message", ""))
        assert d.request("GET", "/api/v1/users/me", token=t).status == 200
        assert d.stop() == 0
        r = d.command("serve")
        assert r.returncode == 2 and b"written by others" in r.stderr, r
        os.chmod(keys, 0o720)                       # group-writable too
        assert d.command("serve").returncode == 2
    finally:
        os.chmod(keys, 0o700)
    d.start()
    assert d.request("GET", "/api/v1/users/me", token=t).status == 200


def test_a_rotation_where_there_are_no_keys_is_refused():
    """Run from the wrong folder, or with a mistyped AUTH_DATA_DIR, `keys
    rotate` made a new keys folder there, printed a kid and exited 0, the
    daemon's keys untouched (a review). It is refused now (exit 2, no
    folder made); `keys generate` makes a first key, and a rotation
    after it works."""
    d = Daemon("sqlite")
    keys = os.path.join(d.data_dir, "keys")
    r = d.command("keys", "rotate")
    assert r.returncode == 2 and b"no key to rotate" in r.stderr, r
    assert not os.path.exists(keys)
    assert d.command("keys", "generate").returncode == 0
    r = d.command("keys", "rotate")
    assert r.returncode == 0, r
    # a `current` that links to nothing is there, and refused as such,
    # not answered with advice to `keys generate`
    os.rename(os.path.join(keys, "current"), os.path.join(keys, "was"))
    os.symlink("nowhere", os.path.join(keys, "current"))
    r = d.command("keys", "rotate")
    assert r.returncode == 2 and b"no key to rotate" not in r.stderr, r
