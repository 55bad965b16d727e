#!/usr/bin/env bash
# Every performance figure of the daemon in one command (README.md,
# "Performance"): the daemon pinned to one core, the load generator (wrk)
# and pollers to another, ratios taken in the same run so that they mean
# something on a shared, noisy machine. Loopback only; every load is
# bounded in time or count. It reports; it never fails on a figure.
#
#   bench/run.sh [options]
#     --quick          short: 1 s per load, 20,000 requests, 500 idle
#                      connections, one round, a cheaper Argon2 cost
#     --secs S         seconds per load (default 5)
#     --requests N     requests before the "RSS after N" figure (1000000)
#     --idle N         idle keep-alive connections held (10000)
#     --rounds R       rounds (default 3); the table gives the median and
#                      the spread (min-max) of each figure
#     --argon2 M,I     Argon2id memory KiB and passes (19456,2)
#     --pg             also on PostgreSQL (tests/pg-cluster.sh; its server
#                      pinned to the daemon's core)
#     --bin [LABEL=]PATH   a daemon binary (repeatable: binaries are
#                      measured in turn within each round, in reverse
#                      order in even rounds); default build/auth-serve
#     --json PATH      results file (default bench/results/<date>.json)
#     --server-cpu C / --client-cpu C   the cores (default 0 / 1)
# The table ends with callgrind's instructions per request of /healthz,
# /verify and /users/me for each binary (bench/instructions.sh, SQLite;
# not with --quick), and the ratios taken on them.
# Needs wrk, python3-nacl, cc with libsodium's headers (bench/argon2_raw.c)
# and (for the start-up comparison) nginx: installed when missing.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=5 requests=1000000 idle=10000 rounds=3 argon="19456,2" pg=0
json="" scpu=0 ccpu=1 bins=() quick=0
while [ $# -gt 0 ]; do
    case $1 in
    --quick) secs=1 requests=20000 idle=500 rounds=1 argon="1024,1"
             quick=1 ;;
    --secs) secs=$2; shift ;;
    --requests) requests=$2; shift ;;
    --idle) idle=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --argon2) argon=$2; shift ;;
    --pg) pg=1 ;;
    --bin) bins+=("$2"); shift ;;
    --json) json=$2; shift ;;
    --server-cpu) scpu=$2; shift ;;
    --client-cpu) ccpu=$2; shift ;;
    *) sed -n '2,/^set /p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 2 ;;
    esac
    shift
done
[ ${#bins[@]} -gt 0 ] || bins=(build/auth-serve)
[ -n "$json" ] || json=bench/results/$(date -u +%Y-%m-%dT%H%M%S).json
mem=${argon%,*} iters=${argon#*,}
py=/usr/bin/python3
tools=$root/bench/tools.py
need=()
command -v wrk >/dev/null || need+=(wrk)
$py -c 'import nacl' 2>/dev/null || need+=(python3-nacl)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v cc >/dev/null || need+=(gcc)
pkg-config --exists libsodium 2>/dev/null || need+=(libsodium-dev pkg-config)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" \
        >/dev/null 2>&1 || echo "could not install ${need[*]}" >&2
fi
ulimit -n "$(ulimit -Hn)"           # the idle connections need descriptors
work=$(mktemp -d /tmp/auth-bench.XXXXXX)
tsv=$work/results.tsv
: >"$tsv"
pids=()
pgdir=/tmp/auth-bench-pg.$$   # the postgres user must reach it
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ "$pg" = 1 ] && bash tests/pg-cluster.sh stop "$pgdir" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
# raw Argon2 with its memory kept from hash to hash (bench/argon2_raw.c)
rawk=$work/argon2_raw
cc -O2 -o "$rawk" bench/argon2_raw.c $(pkg-config --cflags --libs libsodium) ||
    { echo "could not build bench/argon2_raw.c" >&2; rawk=""; }
S() { taskset -c "$scpu" "$@"; }          # on the daemon's core
C() { taskset -c "$ccpu" "$@"; }          # on the load generator's core

label=""    # of the binary being measured, then its round
round=0
rec() {     # rec FIGURE VALUE
    printf '%s\t%s\t%s\t%s\n' "$label" "$round" "$1" "$2" >>"$tsv"
}
sum() { awk -v a="$1" -v b="$2" 'BEGIN {print a + b}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print "nan"}'; }

# wrk_run CONNS URL [wrk args...]: prints "rps p50_ms p99_ms refused all",
# with two wrk threads (one for one connection; $WRK_THREADS when set)
# rps counting only the 2xx answers (a refusal, such as a 429 or a 503,
# is no work done), refused the share of the others, all every answer
wrk_run() {
    local c=$1 url=$2 t
    shift 2
    t=${WRK_THREADS:-$(( c < 2 ? 1 : 2 ))}
    C wrk -t"$t" -c"$c" -d"${secs}s" --latency "$url" "$@" 2>/dev/null |
        awk 'function ms(v) { if (v ~ /us$/) return v / 1000;
                              if (v ~ /ms$/) return v + 0;
                              if (v ~ /s$/) return v * 1000; return v }
             /requests in/ {n=$1} /Non-2xx/ {bad=$NF}
             /Requests\/sec/ {rps=$2} /^ +50%/ {p50=ms($2)} /^ +99%/ {p99=ms($2)}
             END {f = n > 0 ? bad / n : 0;
                  printf "%.1f %.3f %.3f %.4f %.1f\n", rps * (1 - f), p50,
                         p99, f, rps}'
}
# load NAME CONNS URL [wrk args]: records NAME req/s (2xx only), p50,
# p99, and the share of other answers when there were any
load() {
    local name=$1 r
    shift
    r=$(wrk_run "$@")
    set -- $r
    rec "$name req/s" "$1"
    rec "$name p50 ms" "$2"
    rec "$name p99 ms" "$3"
    [ "${4:-0}" != 0.0000 ] && rec "$name non-2xx share" "$4"
    last_rps=$1 last_p99=$3 last_all=${5:-0}
}

port="" pid="" base=""
daemon_env() {   # daemon_env DATADIR DBURL: the environment, one a line
    echo AUTH_HOST=127.0.0.1
    echo AUTH_PORT="$port"
    echo AUTH_DATA_DIR="$1"
    [ -n "$2" ] && echo AUTH_DATABASE_URL="$2"
    # PostgreSQL keeps the signing keys sealed with this (README.md)
    [ -n "$2" ] && echo AUTH_KEYS_SECRET=bench-keys-secret-kkkkkkkkkkkkkkkkkkkk
    echo AUTH_LOG_LEVEL=warn
    echo AUTH_RATE_LIMIT_PER_MINUTE=0
    echo AUTH_MAX_CONNECTIONS=$(( idle + 1024 ))
    echo AUTH_MAX_CONNECTIONS_PER_IP=0
    echo AUTH_CONNECTION_TIMEOUT=300
    echo AUTH_ACCESS_TOKEN_TTL=7200
    echo AUTH_ARGON2_MEMORY_KIB="$mem"
    echo AUTH_ARGON2_ITERATIONS="$iters"
}
ready_wait() {
    local i
    for i in $(seq 1 400); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] &&
            return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
start() {        # start BIN DATADIR DBURL
    port=$($py "$tools" port)
    base=http://127.0.0.1:$port
    (cd "$2" && exec env $(daemon_env "$2" "$3") taskset -c "$scpu" \
        "$1") 2>>"$2/daemon.log" &
    pid=$!
    pids+=("$pid")
    ready_wait || { echo "daemon $1 did not start:" >&2;
                    tail -5 "$2/daemon.log" >&2; return 1; }
}
stop() {
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

# The account the login loads and refresh chains use: logins past
# AUTH_MAX_SESSIONS_PER_USER end that account's oldest sessions, which
# must not be the ones the token loads present.
login_account() { echo "${1%@*}+login@${1#*@}"; }
# A login load over many accounts (bench/wrk/logins.lua), each far from
# its session cap for the whole run: a login that ends no other session
# (the one account above is at its cap after its first hundred logins,
# and each of its logins then also revokes one and announces it).
ACCOUNTS=128

# Per binary and backend, once: four accounts and 256 sessions, 64 each
# (their access and refresh tokens in $dir/tokens; an account keeps at
# most AUTH_MAX_SESSIONS_PER_USER, 100), an existing database for
# start-up.
prepare() {      # prepare BIN DATADIR DBURL EMAIL
    mkdir -p "$2"
    start "$1" "$2" "$3" || return 1
    for e in "$4" "$(login_account "$4")"; do
        curl -sf "$base/api/v1/auth/register" \
            -H 'Content-Type: application/json' \
            -d "{\"email\":\"$e\",\"password\":\"correct horse battery\"}" \
            >/dev/null
    done
    C $py "$tools" logins "$base" "$4" "correct horse battery" 256 \
        "$2/tokens" || { stop; return 1; }
    C $py "$tools" accounts "$base" "$4" "correct horse battery" \
        "$ACCOUNTS" || { stop; return 1; }
    stop
}

# One round of every figure for one binary on one backend; `p` prefixes
# the figure names ("" for SQLite, "pg " for PostgreSQL).
measure() {      # measure BIN DATADIR DBURL EMAIL PREFIX
    local bin=$1 d=$2 db=$3 email=$4 p=$5 hz hz256 v1 v256 me r idle_p99 \
          lp c rss0 rss1 h
    if [ -z "$db" ]; then
        port=$($py "$tools" port)
        r=$(cd "$d" && env $(daemon_env "$d" "") taskset -c "$ccpu" \
            $py "$tools" startup \
            "$port" /readyz 20 taskset -c "$scpu" "$bin")
        rec "start to first 200 /readyz ms" "$r"
    fi
    start "$bin" "$d" "$db" || return 1
    sleep 0.5
    rss0=$($py "$tools" rss "$pid")
    rec "${p}RSS idle MiB" "$(awk -v k="$rss0" 'BEGIN {printf "%.1f", k/1024}')"
    local auth="Authorization: Bearer $(head -1 "$d/tokens" | cut -d' ' -f1)"
    # One second over the 256 sessions first, not recorded: the figures
    # are the steady state, not the daemon's first read of each session
    # and user row after its start (each a database read);
    # the loads that follow keep them fresh.
    BENCH_PATH2=/api/v1/users/me C wrk -t2 -c16 -d1s \
        "$base/api/v1/auth/verify" -s bench/wrk/tokens.lua -- \
        "$d/tokens" 256 >/dev/null 2>&1
    # The host's speed drifts over seconds (on a shared host one load's
    # figure moves by a tenth or more from the one before it), so the
    # loads the ratios below are taken on are interleaved as the login's
    # are: /healthz, /verify one session, /verify 256 sessions, /healthz
    # with the 256 tokens (the same requests, which it ignores: the load
    # generator's own limit when it cycles tokens, on its core as loaded
    # as under the /verify load, so that ratio is the daemon's alone) and
    # /users/me, then again in reverse order: a linear drift cancels out
    # of the ratios of the sums. Each req/s figure is the mean of its two.
    hz=0 v1=0 v256=0 hz256=0 me=0
    for x in H V W C M M C W V H; do
        case $x in
        H) load "${p}healthz c64" 64 "$base/healthz"
           hz=$(sum "$hz" "$last_rps") ;;
        V) load "${p}verify 1 session c64" 64 "$base/api/v1/auth/verify" \
               -H "$auth"
           v1=$(sum "$v1" "$last_rps") ;;
        W) load "${p}verify 256 sessions c64" 64 \
               "$base/api/v1/auth/verify" -s bench/wrk/tokens.lua -- \
               "$d/tokens" 256
           v256=$(sum "$v256" "$last_rps") ;;
        C) load "${p}healthz 256 tokens cycled c64" 64 "$base/healthz" \
               -s bench/wrk/tokens.lua -- "$d/tokens" 256
           hz256=$(sum "$hz256" "$last_rps") ;;
        M) load "${p}users/me 1 session c64" 64 "$base/api/v1/users/me" \
               -H "$auth"
           me=$(sum "$me" "$last_rps") ;;
        esac
    done
    # Tokens no cache holds: made-up signatures, each checked with the
    # public key (what a new token's first check costs too) and answered
    # 401, so the figure counts every answer.
    load "${p}verify forged signatures c64" 64 "$base/api/v1/auth/verify" \
        -s bench/wrk/forged.lua -- "$d/tokens"
    rec "${p}verify forged signatures c64 answers/s" "$last_all"
    rec "${p}verify forged signatures / healthz" \
        "$(ratio "$(sum "$last_all" "$last_all")" "$hz")"   # hz: two loads
    rec "${p}verify 1 session / healthz" "$(ratio "$v1" "$hz")"
    rec "${p}verify 256 sessions / healthz" "$(ratio "$v256" "$hz")"
    rec "${p}verify 256 sessions / healthz, same tokens cycled" \
        "$(ratio "$v256" "$hz256")"
    rec "${p}users/me / healthz" "$(ratio "$me" "$hz")"
    for c in 1 16 256; do
        load "${p}verify 256 sessions c$c" "$c" \
            "$base/api/v1/auth/verify" -s bench/wrk/tokens.lua -- \
            "$d/tokens" 256
        load "${p}users/me 256 sessions c$c" "$c" "$base/api/v1/users/me" \
            -s bench/wrk/tokens.lua -- "$d/tokens" 256
    done
    load "${p}users/me 256 sessions c64" 64 "$base/api/v1/users/me" \
        -s bench/wrk/tokens.lua -- "$d/tokens" 256
    # login against raw Argon2 on the same core, then /verify during a
    # login storm against /verify idle (16 connections). The hashing
    # loads use 4 connections: all come from one address, and one client
    # may hold 8 jobs of the hash pool (README "Security"), counted until
    # each job's worker is done, a moment after its answer has left; 8
    # connections would be partly refused with 429.
    # Raw Argon2 three ways: libsodium as shipped (python3-nacl: a fresh
    # mapping of the working memory per hash); with the memory kept from
    # hash to hash (bench/argon2_raw.c), at normal priority; and kept
    # the way the daemon's hashing threads keep theirs, in huge pages,
    # at their priority (SCHED_IDLE): the limit for those threads
    # (README "Performance"). On a core other processes also want, the
    # last and the daemon lose the same time to them, so the last ratio
    # is the daemon's own overhead.
    # The host's speed drifts over seconds, so the step is interleaved:
    # the raws, login twice, then the raws again in reverse order; a
    # linear drift cancels out of the ratios of the sums.
    local rn=0 rk=0 ri=0 lm=0 x steps="n k i L M M L i k n"
    [ -n "$rawk" ] || steps="n L M M L n"
    lp=0
    for x in $steps; do
        case $x in
        n) r=$(S $py "$tools" argon2 "$mem" "$iters" "$secs")
           rn=$(awk -v a="$rn" -v b="$r" 'BEGIN {print a + b}') ;;
        k) r=$(S "$rawk" "$mem" "$iters" "$secs" kept)
           rk=$(awk -v a="$rk" -v b="$r" 'BEGIN {print a + b}') ;;
        i) r=$(S "$rawk" "$mem" "$iters" "$secs" huge idle)
           ri=$(awk -v a="$ri" -v b="$r" 'BEGIN {print a + b}') ;;
        L) load "${p}login c4" 4 "$base/api/v1/auth/login" \
               -s bench/wrk/login.lua -- "$(login_account "$email")" \
               "correct horse battery"
           lp=$(awk -v a="$lp" -v b="$last_rps" 'BEGIN {print a + b}') ;;
        M) load "${p}login c4, $ACCOUNTS accounts" 4 \
               "$base/api/v1/auth/login" -s bench/wrk/logins.lua -- \
               "$email" "$ACCOUNTS" "correct horse battery"
           lm=$(awk -v a="$lm" -v b="$last_rps" 'BEGIN {print a + b}') ;;
        esac
    done
    rec "${p}raw crypto_pwhash_str_verify /s" \
        "$(awk -v a="$rn" 'BEGIN {printf "%.2f", a / 2}')"
    rec "${p}login / raw Argon2" "$(ratio "$lp" "$rn")"
    if [ -n "$rawk" ]; then
        rec "${p}raw, memory kept /s" \
            "$(awk -v a="$rk" 'BEGIN {printf "%.2f", a / 2}')"
        rec "${p}raw, memory kept in huge pages, at the hashing priority /s" \
            "$(awk -v a="$ri" 'BEGIN {printf "%.2f", a / 2}')"
        rec "${p}login / raw Argon2, memory kept" "$(ratio "$lp" "$rk")"
        rec "${p}login / raw Argon2, memory kept in huge pages, at the hashing priority" \
            "$(ratio "$lp" "$ri")"
        rec "${p}login, $ACCOUNTS accounts / raw Argon2, memory kept in huge pages, at the hashing priority" \
            "$(ratio "$lm" "$ri")"
    fi
    rec "${p}login, $ACCOUNTS accounts / raw Argon2" "$(ratio "$lm" "$rn")"
    # The storm's p99 against the idle p99 measured just before and just
    # after it (their mean), so that a drift of the host between the
    # step above and this one does not count as the storm's. Three such
    # pairs, and the figure is their median ratio (each is recorded too):
    # on a shared host one 3-5 s p99 moves by half from a pause of the
    # host alone (README "Performance": 0.85-1.37 in six pairs of one
    # run), more than the storm moves it.
    local storm_p99 pair ratios=""
    load "${p}verify idle before the storm c16" 16 \
        "$base/api/v1/auth/verify" -s bench/wrk/tokens.lua -- "$d/tokens" 256
    idle_p99=$last_p99
    for pair in 1 2 3; do
        C wrk -t1 -c4 -d"$((secs + 2))s" "$base/api/v1/auth/login" \
            -s bench/wrk/login.lua -- "$(login_account "$email")" \
                   "correct horse battery" \
            >/dev/null 2>&1 &
        h=$!
        sleep 1
        load "${p}verify during login storm c16, pair $pair" 16 \
            "$base/api/v1/auth/verify" -s bench/wrk/tokens.lua -- \
            "$d/tokens" 256
        storm_p99=$last_p99
        wait "$h"
        load "${p}verify idle after the storm c16, pair $pair" 16 \
            "$base/api/v1/auth/verify" -s bench/wrk/tokens.lua -- \
            "$d/tokens" 256
        r=$(ratio "$storm_p99" "$(awk -v a="$idle_p99" -v b="$last_p99" \
                                  'BEGIN {print (a + b) / 2}')")
        rec "${p}verify p99 storm / idle (c16), pair $pair" "$r"
        ratios="$ratios $r"
        idle_p99=$last_p99          # the next pair's idle before
    done
    rec "${p}verify p99 storm / idle (c16)" \
        "$(printf '%s\n' $ratios | sort -g | sed -n 2p)"
    # refresh chains (4 fresh sessions) and registrations
    C $py "$tools" logins "$base" "$(login_account "$email")" \
        "correct horse battery" 4 "$d/chains"
    # (a chain per wrk thread, so one thread per connection: two
    # connections of one thread would send each token twice at once)
    WRK_THREADS=4 load "${p}refresh c4" 4 "$base/api/v1/auth/refresh" \
        -s bench/wrk/refresh.lua -- "$d/chains"
    load "${p}register c4" 4 "$base/api/v1/auth/register" \
        -s bench/wrk/register.lua
    # memory: growth over N requests (/verify and /users/me alternating,
    # 256 sessions) from the end of their first load (not from the
    # hashing loads above, whose memory the daemon gives back a second
    # after), then while holding idle keep-alive connections
    rss0=""
    local total=0 t0=$SECONDS k
    while [ "$total" -lt "$requests" ] && [ $((SECONDS - t0)) -lt 900 ]; do
        k=$(BENCH_PATH2=/api/v1/users/me C wrk -t2 -c64 -d"${secs}s" \
            "$base/api/v1/auth/verify" -s bench/wrk/tokens.lua -- \
            "$d/tokens" 256 2>/dev/null | awk '/requests in/ {print $1}')
        total=$(( total + ${k:-0} ))
        [ "${k:-0}" -gt 0 ] || break
        [ -n "$rss0" ] || rss0=$($py "$tools" rss "$pid")
    done
    [ -n "$rss0" ] || rss0=$($py "$tools" rss "$pid")
    rec "${p}requests for the RSS figure" "$total"
    rss1=$($py "$tools" rss "$pid")
    rec "${p}RSS after the first load of N MiB" "$(awk -v k="$rss0" 'BEGIN {printf "%.1f", k/1024}')"
    rec "${p}RSS after N requests MiB" "$(awk -v k="$rss1" 'BEGIN {printf "%.1f", k/1024}')"
    rec "${p}RSS growth over N requests MiB" "$(awk -v a="$rss0" -v b="$rss1" 'BEGIN {printf "%.2f", (b-a)/1024}')"
    r=$(C $py "$tools" hold "$port" "$idle" "$pid")
    rec "${p}idle connections held" "$(echo "$r" | $py -c 'import json,sys; print(json.load(sys.stdin)["connections"])')"
    rec "${p}RSS per idle connection KiB" "$(echo "$r" | $py -c 'import json,sys; d=json.load(sys.stdin); print("%.2f" % ((d["held_kib"]-d["before_kib"])/max(d["connections"],1)))')"
    stop
}

# nginx returning a constant 200, started and polled the same way.
nginx_startup() {
    local d=$work/nginx r
    [ -x /usr/sbin/nginx ] || return 0
    mkdir -p "$d"
    port=$($py "$tools" port)
    cat >"$d/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $d/error.log;
pid $d/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $d; proxy_temp_path $d; fastcgi_temp_path $d;
    uwsgi_temp_path $d; scgi_temp_path $d;
    server { listen 127.0.0.1:$port; location / { return 200 "ok"; } }
}
EOF
    r=$(C $py "$tools" startup "$port" /readyz 20 taskset -c "$scpu" \
        /usr/sbin/nginx -c "$d/nginx.conf" -p "$d")
    rec "start to first 200 /readyz ms" "$r"
}

echo "auth-serve bench: $(nproc) cores, daemon on core $scpu, load on" \
     "core $ccpu; ${secs}s per load, $rounds round(s), N=$requests," \
     "$idle idle connections, Argon2 ${mem} KiB x $iters;" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg);" \
     "kernel.sched_autogroup_enabled" \
     "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo -)"
url=""
if [ "$pg" = 1 ]; then
    url=$(bash tests/pg-cluster.sh start "$pgdir") || { echo "no PostgreSQL" >&2; pg=0; }
    if [ "$pg" = 1 ]; then
        pgpid=$(head -1 "$(find "$pgdir" -name postmaster.pid | head -1)")
        taskset -a -p -c "$scpu" "$pgpid" >/dev/null
        for p in $(pgrep -P "$pgpid"); do taskset -a -p -c "$scpu" "$p" >/dev/null; done
    fi
fi
n=0
for b in "${bins[@]}"; do
    n=$((n + 1))
    case $b in *=*) l=${b%%=*} path=${b#*=} ;; *) l=$b path=$b ;; esac
    [ -x "$path" ] || { echo "no binary $path" >&2; exit 2; }
    label=$l
    prepare "$(realpath "$path")" "$work/d$n" "" "bench@example.com" ||
        echo "prepare failed for $l" >&2
    if [ "$pg" = 1 ]; then
        prepare "$(realpath "$path")" "$work/p$n" "$url" "bench$n@example.com" ||
            echo "prepare (PostgreSQL) failed for $l" >&2
    fi
done
for round in $(seq 1 "$rounds"); do
    label=nginx
    nginx_startup
    # Even rounds take the binaries in reverse order: a host that drifts
    # within a round then weighs on each binary alike over two rounds
    # (in one run every round measured the first binary first, and a
    # figure the change could not touch came out a third lower for the
    # second binary in both rounds).
    order=$(seq 1 ${#bins[@]})
    [ $((round % 2)) -eq 0 ] && order=$(seq ${#bins[@]} -1 1)
    for n in $order; do
        b=${bins[$((n - 1))]}
        case $b in *=*) l=${b%%=*} path=${b#*=} ;; *) l=$b path=$b ;; esac
        label=$l
        echo "round $round: $l (SQLite)" >&2
        measure "$(realpath "$path")" "$work/d$n" "" "bench@example.com" ""
        if [ "$pg" = 1 ]; then
            echo "round $round: $l (PostgreSQL)" >&2
            measure "$(realpath "$path")" "$work/p$n" "$url" \
                "bench$n@example.com" "pg "
        fi
    done
done
# Instructions per request (bench/instructions.sh, callgrind, SQLite):
# unlike req/s on a shared machine they repeat to a few instructions, so
# the same ratios taken on them show what a change did to the daemon's
# own work. Skipped with --quick.
if [ "$quick" = 0 ]; then
    n=0 round=1
    for b in "${bins[@]}"; do
        n=$((n + 1))
        case $b in *=*) l=${b%%=*} path=${b#*=} ;; *) l=$b path=$b ;; esac
        label=$l
        echo "instructions: $l" >&2
        r=$(bash bench/instructions.sh "$(realpath "$path")" 2000 2>/dev/null)
        hi=$(echo "$r" | awk '$1 == "healthz" {print $2}')
        vi=$(echo "$r" | awk '$1 == "verify" {print $2}')
        mi=$(echo "$r" | awk '$1 == "me" {print $2}')
        [ -n "$hi" ] && [ -n "$vi" ] && [ -n "$mi" ] || {
            echo "instructions failed for $l" >&2; continue; }
        rec "healthz instructions/request" "$hi"
        rec "verify instructions/request" "$vi"
        rec "users/me instructions/request" "$mi"
        rec "verify / healthz by instructions" "$(ratio "$hi" "$vi")"
        rec "users/me / healthz by instructions" "$(ratio "$hi" "$mi")"
    done
fi
mkdir -p "$(dirname "$json")"
$py "$tools" table "$tsv" "$json"
echo "results: $json"
exit 0
