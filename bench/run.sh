#!/usr/bin/env bash
# Throughput and latency of the hot paths, measured in one run so the
# ratios are comparable on a shared, noisy machine. Loopback only; every
# load is bounded in time.
#   bench/run.sh [SECONDS]   (default 10 per endpoint)
# Needs: wrk, a built build/auth-serve (bash config/serve.sh builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
bin=${AUTH_BENCH_BIN:-build/auth-serve}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
dir=$(mktemp -d /tmp/auth-bench.XXXXXX)
log=$dir/daemon.log
(cd "$dir" && AUTH_PORT=0 AUTH_DATA_DIR="$dir" AUTH_LOG_LEVEL=warn \
    AUTH_RATE_LIMIT_PER_MINUTE=0 exec "$OLDPWD/$bin") 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
# AUTH_LOG_LEVEL=warn hides server.started; ask the kernel for the port.
port=""
for _ in $(seq 1 200); do
    port=$(ss -ltnpH "( sport > 0 )" 2>/dev/null |
           awk -v p="pid=$pid," '$0 ~ p {split($4,a,":"); print a[2]; exit}')
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "daemon did not start"; cat "$log"; exit 1; }
base=http://127.0.0.1:$port
curl -sf "$base/api/v1/auth/register" -H 'Content-Type: application/json' \
    -d '{"email":"load-test@example.com","password":"correct horse battery"}' \
    >/dev/null
token=$(curl -sf "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d '{"email":"load-test@example.com","password":"correct horse battery"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

run() {    # run NAME PATH [wrk args...]
    local name=$1 path=$2; shift 2
    printf '%-10s ' "$name"
    wrk -t2 -c32 -d"${secs}s" --latency "$@" "$base$path" |
        awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
             END {printf "%10s req/s  p50 %8s  p99 %8s\n", rps, p50, p99}'
}
echo "auth-serve $("$bin" --version | cut -d' ' -f2), $(nproc) cores, ${secs}s each, 2 threads x 32 connections"
run healthz /healthz
run users/me /api/v1/users/me -H "Authorization: Bearer $token"
run verify /api/v1/auth/verify -H "Authorization: Bearer $token"
