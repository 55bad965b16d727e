#!/usr/bin/env bash
# Instructions per request of the hot routes, under callgrind: one
# keep-alive connection, WARM requests of warm-up, then N counted ones,
# whole process (README.md, "Performance"). Unlike req/s on a shared
# machine these counts repeat to the last few instructions, so a change
# of a few percent shows. Loopback only; bounded in count.
#
#   bench/instructions.sh [BIN] [N]     default build/auth-serve, 2000
# AUTH_LOG_LEVEL (default warn) is the daemon's: info counts the access
# log line every request writes at the daemon's default level.
# Needs valgrind (installed when missing) and python3.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-build/auth-serve}") n=${2:-2000} warm=200
py=/usr/bin/python3
command -v valgrind >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
work=$(mktemp -d /tmp/auth-instr.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null;
            rm -rf "$work"; }
trap cleanup EXIT
port=$($py bench/tools.py port)
base=http://127.0.0.1:$port
(cd "$work" && exec env AUTH_HOST=127.0.0.1 AUTH_PORT="$port" \
    AUTH_DATA_DIR="$work" AUTH_LOG_LEVEL="${AUTH_LOG_LEVEL:-warn}" AUTH_RATE_LIMIT_PER_MINUTE=0 \
    AUTH_ACCESS_TOKEN_TTL=7200 AUTH_ARGON2_MEMORY_KIB=1024 \
    AUTH_ARGON2_ITERATIONS=1 AUTH_THREADS=1 \
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" \
    "$bin") 2>"$work/log" >/dev/null &
pid=$!
for _ in $(seq 1 600); do
    curl -s -o /dev/null "$base/healthz" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
curl -sf "$base/api/v1/auth/register" -H 'Content-Type: application/json' \
    -d '{"email":"instr@example.com","password":"correct horse battery"}' \
    >/dev/null || { echo "could not register:"; tail -5 "$work/log"; exit 1; }
$py bench/tools.py logins "$base" instr@example.com "correct horse battery" \
    1 "$work/tokens" || exit 1
tok=$(cut -d' ' -f1 "$work/tokens")
printf '%-12s %12s\n' route instructions
for route in /healthz /api/v1/auth/verify /api/v1/users/me; do
    $py bench/tools.py get "$port" "$route" "$tok" "$warm" || exit 1
    callgrind_control -z "$pid" >/dev/null 2>&1
    $py bench/tools.py get "$port" "$route" "$tok" "$n" || exit 1
    callgrind_control -d "$pid" >/dev/null 2>&1
    total=$(for f in "$work"/cg.*.[0-9]*; do
                sed -n 's/^summary: //p' "$f"; done |
            awk '{s += $1} END {print s}')
    rm -f "$work"/cg.*.[0-9]*
    printf '%-12s %12.0f\n' "${route##*/}" "$(echo "$total / $n" | bc -l)"
done
