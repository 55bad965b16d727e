#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 checkout: installs what is
# missing, builds the normal and the ASan+UBSan trees, starts a throwaway
# PostgreSQL, then runs the unit tests and the end-to-end tests against
# SQLite and PostgreSQL on both builds, gcc's static analyzer, a
# SQLite-only build and its unit tests, and a short
# run of every libFuzzer target (AUTH_FUZZ_SECONDS each, default 12), a
# Release build whose Debian package is installed into a clean Debian 12
# root. The end-to-end tests include the systemd protocol, Swagger UI in
# headless Chromium, the OpenAPI linters and the contract test generated
# from the document. Any failure or sanitizer report fails the run; the
# last line sums it up.
#   AUTH_TEST_QUICK=1   skip the sanitizer build
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -gt 2 ] && jobs=2

bash config/deps.sh test || exit 1
py=/usr/bin/python3                  # Debian's, where pytest and PyJWT are
reports=$(mktemp -d)
failed_stages=()

build() {                            # build DIR [cmake args...]
    local dir=$1; shift
    cmake -S . -B "$dir" -DAUTH_TESTS=ON -DAUTH_WERROR=ON "$@" \
        >"$reports/cmake-$dir.log" ||
        { cat "$reports/cmake-$dir.log"; return 1; }
    cmake --build "$dir" -j"$jobs" 2>&1 | grep -E 'error|warning|Error' ;
    [ "${PIPESTATUS[0]}" -eq 0 ]
}

stage() {                            # stage NAME COMMAND...
    local name=$1 t0=$SECONDS; shift
    echo "=== $name"
    if ! "$@"; then
        failed_stages+=("$name")
        echo "=== $name FAILED"
    fi
    echo "=== $name: $((SECONDS - t0)) s"
}

must_build() {                       # must_build DIR [cmake args...]
    local t0=$SECONDS
    echo "=== build $1"
    build "$@" || exit 1
    echo "=== build $1: $((SECONDS - t0)) s"
}

unit() {                             # unit BUILD_DIR TAG
    (cd "$1" && ctest -j"$jobs" --output-on-failure --timeout 600 \
        --output-junit "$reports/unit-$2.xml")
}

e2e() {                              # e2e BUILD_DIR TAG
    AUTH_E2E_SANITIZED=$([ "$2" = asan ] && echo 1) \
    AUTH_E2E_BIN="$root/$1/auth-serve" \
    AUTH_E2E_BACKENDS=sqlite,postgres \
        "$py" -m pytest -q -p no:cacheprovider -n "$jobs" --dist loadfile \
        --durations=15 tests/e2e --junitxml="$reports/e2e-$2.xml"
}

pgdir=$(mktemp -d /tmp/auth-pg.XXXXXX)
cleanup() { bash tests/pg-cluster.sh stop "$pgdir" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM
pg_url=$(bash tests/pg-cluster.sh start "$pgdir") || {
    echo "could not start PostgreSQL"; exit 1; }
export AUTH_TEST_PG_URL=$pg_url AUTH_E2E_PG_URL=$pg_url

# Node.js tools of the API checks (Swagger UI in Chromium, OpenAPI
# linters, the generated contract test), at their locked versions; the
# e2e tests that use them skip without them. Fetched while the tests
# build and the unit tests run (it waits on the network, not a CPU).
(cd tests/browser &&
    npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) \
    >"$reports/npm.log" 2>&1 &
npm_pid=$!
npm_done() { wait "$npm_pid"; local rc=$?; cat "$reports/npm.log"; return $rc; }
must_build build-tests -DCMAKE_BUILD_TYPE=RelWithDebInfo
stage unit unit build-tests normal
stage npm npm_done
stage e2e e2e build-tests normal

# Builds and their checks, beside the fuzzing: each fuzz target runs a
# fixed time on one core, so the builds' work costs it executions, not
# minutes. Their output follows the fuzzing's.
builds() {
    local before=${#failed_stages[@]}
    stage analyze build build-analyze -DAUTH_TESTS=OFF -DAUTH_ANALYZE=ON
    # The SQLite-only build (CMake option AUTH_POSTGRES off): it links no
    # libpq, and its unit tests pass with PostgreSQL out of the picture.
    stage nopg build build-nopg -DAUTH_POSTGRES=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo
    stage unit-nopg bash -c '! ldd build-nopg/auth-serve | grep libpq &&
        cd build-nopg && AUTH_TEST_PG_URL= ctest -j2 --output-on-failure \
        --timeout 600 --output-junit "$0/unit-nopg.xml"' "$reports"
    # A packager's Release build of every target (gcc -O3), then its .deb
    # installed into a clean Debian 12 root.
    stage release build build-release -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX=/usr
    stage package bash tests/package.sh build-release
    printf '%s\n' "${failed_stages[@]:before}" >"$reports/builds.failed"
}
builds >"$reports/builds.log" 2>&1 &
builds_pid=$!
stage fuzz bash fuzz/run.sh "${AUTH_FUZZ_SECONDS:-12}"
wait "$builds_pid"
cat "$reports/builds.log"
if [ -f "$reports/builds.failed" ]; then
    while IFS= read -r s; do
        [ -n "$s" ] && failed_stages+=("$s")
    done <"$reports/builds.failed"
else
    failed_stages+=(builds)
fi

if [ -z "${AUTH_TEST_QUICK:-}" ]; then
    export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    # -O1, as the sanitizers' documentation advises: the same checks,
    # and the whole suite runs on this build.
    must_build build-asan -DAUTH_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
        "-DCMAKE_C_FLAGS_DEBUG=-g -O1"
    stage unit-asan unit build-asan asan
    stage e2e-asan e2e build-asan asan
fi

"$py" - "$reports" <<'PY'
import glob, sys
import xml.etree.ElementTree as ET
passed = failed = skipped = 0
for f in glob.glob(sys.argv[1] + "/*.xml"):
    for tc in ET.parse(f).getroot().iter("testcase"):
        kids = {c.tag for c in tc}
        if kids & {"failure", "error"}:
            failed += 1
        elif "skipped" in kids:
            skipped += 1
        else:
            passed += 1
print("tests: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
PY
echo "whole suite: $SECONDS s"
if [ ${#failed_stages[@]} -gt 0 ]; then
    echo "failed stages: ${failed_stages[*]}"
    echo "logs and test reports kept in $reports"
    exit 1
fi
rm -rf "$reports"
