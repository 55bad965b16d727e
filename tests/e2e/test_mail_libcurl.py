"""libcurl is opened only when mail delivery is configured (README.md,
"Performance"): a daemon without it never maps the library, and a host
where it cannot be loaded still serves, says why in the log and keeps the
mails queued until a daemon that can send them starts."""
import shutil

import conftest
from conftest import wait_until
from test_mail import SmtpSink, forgot, same_database, smtp_env, wait_mails

LIBCURL = "libcurl.so.4"


def mapped(d, name):
    return conftest.mapped(d.proc.pid, name)


def test_no_delivery_no_libcurl(make_daemon):
    d = make_daemon().start()
    assert wait_until(lambda: any(e.get("event") == "mail.disabled"
                                  for e in d.logs))
    assert wait_until(lambda: d.request("GET", "/readyz").status == 200)
    assert not mapped(d, "libcurl")
    assert d.stop() == 0


def test_delivery_loads_libcurl_and_sends(make_daemon):
    sink = SmtpSink()
    try:
        d = make_daemon(smtp_env(sink.port)).start()
        assert wait_until(lambda: any(e.get("event") == "mail.started"
                                      for e in d.logs))
        assert mapped(d, "libcurl")
        addr, _, _ = d.user()
        assert forgot(d, addr).status == 202
        wait_mails(sink, addr)
        assert d.stop() == 0
    finally:
        sink.close()


def test_missing_libcurl_keeps_mails_queued(make_daemon, monkeypatch):
    """The daemon runs in a mount namespace where libcurl.so.4 is an empty
    file (unshare -m, bind-mounted /dev/null), as on a host without it."""
    wrap_dir = conftest.scratch("auth-e2e-nocurl-")
    wrapper = conftest.without_library(LIBCURL, wrap_dir)
    sink = SmtpSink()
    try:
        monkeypatch.setattr(conftest, "BIN", wrapper)
        a = make_daemon(smtp_env(sink.port)).start()
        assert wait_until(lambda: any(e.get("event") == "mail.start_failed"
                                      for e in a.logs))
        ev = [e for e in a.logs if e.get("event") == "mail.start_failed"][0]
        assert "libcurl" in ev["reason"] and "queued" in ev["reason"]
        assert ev["error"]
        assert wait_until(lambda: a.request("GET", "/readyz").status == 200)
        addr, _, _ = a.user()
        assert forgot(a, addr).status == 202
        assert a.stop() == 0
        assert sink.to(addr) == []
        monkeypatch.undo()
        b = make_daemon(smtp_env(sink.port), **same_database(a)).start()
        wait_mails(sink, addr)               # it waited in the outbox
        assert len(sink.to(addr)) == 1
        assert b.stop() == 0
    finally:
        sink.close()
        shutil.rmtree(wrap_dir, ignore_errors=True)
