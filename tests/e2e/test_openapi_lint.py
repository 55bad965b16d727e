"""src/openapi.json under linters someone else wrote: Redocly's
recommended rules and Spectral's spectral:oas, both without a single
problem (their configuration: tests/browser/redocly.yaml, .spectral.yaml).
"""
import json
import os
import subprocess

import pytest

from conftest import ROOT

TOOLS = os.path.join(ROOT, "tests", "browser")
BINS = os.path.join(TOOLS, "node_modules", ".bin")
DOC = os.path.join(ROOT, "src", "openapi.json")

pytestmark = [
    pytest.mark.skipif(not os.path.isdir(BINS),
                       reason="run `npm ci` in tests/browser"),
    # about the document alone: once per run is enough
    pytest.mark.skipif(bool(os.environ.get("AUTH_E2E_SANITIZED")),
                       reason="checked in the normal build's run"),
]


def test_redocly_recommended_clean():
    r = subprocess.run([os.path.join(BINS, "redocly"), "lint",
                        "--config", "redocly.yaml", "--format", "json",
                        DOC], cwd=TOOLS, capture_output=True, text=True,
                       timeout=120)
    report = json.loads(r.stdout)
    problems = ["%s %s: %s" % (p["severity"], p["ruleId"], p["message"])
                for p in report["problems"]]
    assert r.returncode == 0 and not problems, "\n".join(problems)
    assert report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}


def test_spectral_oas_clean(tmp_path):
    out = tmp_path / "spectral.json"
    r = subprocess.run([os.path.join(BINS, "spectral"), "lint",
                        "--ruleset", ".spectral.yaml", "--format", "json",
                        "--output", str(out), "--fail-severity", "hint",
                        DOC], cwd=TOOLS, capture_output=True, text=True,
                       timeout=120)
    problems = json.loads(out.read_text())
    assert r.returncode == 0 and problems == [], json.dumps(problems,
                                                            indent=1)


def test_public_operations_declare_no_security():
    doc = json.load(open(DOC))
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                assert "security" in op, "%s %s" % (method, path)


def test_login_example_logs_in_the_register_example():
    doc = json.load(open(DOC))
    reg = doc["paths"]["/api/v1/auth/register"]["post"]["requestBody"]
    log = doc["paths"]["/api/v1/auth/login"]["post"]["requestBody"]
    r = reg["content"]["application/json"]["example"]
    j = log["content"]["application/json"]["example"]
    f = log["content"]["application/x-www-form-urlencoded"]["example"]
    assert (j["email"], j["password"]) == (r["email"], r["password"])
    assert (f["username"], f["password"]) == (r["email"], r["password"])
