"""Mail under abuse: reset links retired by a password change, the cap of
mails per recipient, the outbox holding no usable link, expired links not
sent, a failing transport backed off, and /password/forgot taking the same
time for known and unknown emails. The SMTP and webhook sinks of
test_mail.py receive the mails."""
import concurrent.futures
import os
import sqlite3
import statistics
import subprocess
import time

from conftest import assert_problem, wait_until
from test_mail import (PUBLIC, SECRET, SmtpSink, WebhookSink, forgot,
                       free_port, parse, reset, reset_token, same_database,
                       smtp_env, token_in, wait_mails)
from test_mail import md, sink  # noqa: F401  (fixtures)


def change_password(d, tok, current, new):
    return d.request("POST", "/api/v1/auth/password/change",
                     {"current_password": current, "new_password": new},
                     token=tok)


# ---- a password change or reset retires earlier reset links ---------------

def test_password_change_retires_earlier_reset_links(md, sink):
    addr, pw, t = md.user()
    token = reset_token(md, sink, addr)
    r = change_password(md, t["access_token"], pw, "changed by its owner 1")
    assert r.status == 204, r
    assert_problem(reset(md, token, "attacker passphrase 1"), 400,
                   "invalid_token")
    assert md.login(addr, "changed by its owner 1").status == 200


def test_reset_retires_reset_links_mailed_before_it(md, sink):
    addr, _, _ = md.user()
    first = reset_token(md, sink, addr, 1)
    second = reset_token(md, sink, addr, 2)
    assert reset(md, first, "the first link wins 1").status == 204
    assert_problem(reset(md, second, "the second link late 1"), 400,
                   "invalid_token")
    assert md.login(addr, "the first link wins 1").status == 200
