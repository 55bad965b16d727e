"""Swagger UI at /docs: headers and files from the daemon, and the page
driven in headless Chromium (tests/browser/docs.test.mjs)."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, Daemon, assert_problem

TOOLS = os.path.join(ROOT, "tests", "browser")
CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def docs_daemon():
    d = Daemon("sqlite").start()
    yield d
    assert d.stop() == 0


def test_docs_page_and_files(docs_daemon):
    d = docs_daemon
    r = d.request("GET", "/docs")
    assert r.status == 200
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    csp = r.header("Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert r.header("X-Frame-Options") == "DENY"
    assert b"docs/swagger-ui-bundle.js" in r.body
    bundle = open(os.path.join(ROOT, "third_party", "swagger-ui",
                               "swagger-ui-bundle.js"), "rb").read()
    r = d.request("GET", "/docs/swagger-ui-bundle.js")
    assert r.status == 200 and r.body == bundle
    assert r.header("Content-Type").startswith("text/javascript")
    r = d.request("GET", "/docs/swagger-ui.css")
    assert r.status == 200 and r.header("Content-Type").startswith(
        "text/css")
    assert d.request("HEAD", "/docs/docs.js").status == 200
    assert_problem(d.request("GET", "/docs/../openapi.json"), 404)
    assert_problem(d.request("GET", "/docs/swagger-ui.js.map"), 404)
    assert d.request("POST", "/docs", body=b"").status == 405


@pytest.mark.skipif(bool(os.environ.get("AUTH_E2E_SANITIZED")),
                    reason="the page is checked in the normal build's run")
@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed")
@pytest.mark.skipif(not os.path.isdir(os.path.join(TOOLS, "node_modules")),
                    reason="run `npm ci` in tests/browser")
def test_swagger_ui_in_chromium(docs_daemon):
    _, _, tokens = docs_daemon.user()
    r = subprocess.run(["node", "docs.test.mjs",
                        "http://127.0.0.1:%d" % docs_daemon.port,
                        tokens["access_token"]], cwd=TOOLS,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
