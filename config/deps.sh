#!/usr/bin/env bash
# Installs what building, running and testing auth-serve needs on Debian 12,
# skipping what is already there. Run as root (or with sudo available).
#   config/deps.sh build   compiler, CMake and the -dev libraries
#   config/deps.sh test    the above, plus cmocka, PostgreSQL, Python tests
#   config/deps.sh bench   the build set, plus what bench/run.sh measures with
set -euo pipefail

build_pkgs=(build-essential cmake pkg-config libmicrohttpd-dev libsqlite3-dev
            libpq-dev libjwt-dev libsodium-dev libjansson-dev libssl-dev
            libcurl4-openssl-dev libqrencode-dev libsystemd-dev libcbor-dev)
test_pkgs=(libcmocka-dev postgresql python3 python3-pytest
           python3-pytest-xdist python3-jwt
           python3-cryptography clang libclang-rt-14-dev
           python3-pyotp oathtool librsvg2-bin zbar-tools systemd
           dpkg-dev mmdebstrap chromium nodejs)
bench_pkgs=(wrk python3-nacl nginx-light postgresql)

want=("${build_pkgs[@]}")
if [ "${1:-build}" = test ]; then
    want+=("${test_pkgs[@]}")
    # The browser and API checks run on Node.js (tests/browser,
    # tests/passkeys); a Node.js that bundles its own npm (NodeSource) must
    # not get Debian's npm beside it.
    command -v npm >/dev/null 2>&1 || want+=(npm)
fi
if [ "${1:-build}" = bench ]; then
    want+=("${bench_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
        missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
