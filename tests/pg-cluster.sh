#!/usr/bin/env bash
# pg-cluster.sh: a throwaway PostgreSQL cluster on loopback for the tests.
#
#   tests/pg-cluster.sh start DIR   prints postgresql://auth:PASS@127.0.0.1:PORT/auth
#   tests/pg-cluster.sh stop DIR    stops that cluster and removes DIR
#   tests/pg-cluster.sh halt DIR    kills its server at once (pg_ctl stop
#                                   -m immediate), keeping DIR, for fault
#                                   tests
#   tests/pg-cluster.sh resume DIR  starts a halted server again on the
#                                   same port and waits until it is ready
#
# `start` installs Debian's postgresql when no server binaries are found,
# makes a cluster in DIR (owned by the postgres user when run as root) on a
# free loopback port, waits until it accepts connections, and creates the
# role and database "auth" with a random password. Only the URL goes to
# stdout. Starting a running DIR prints its URL again; stopping a missing
# DIR does nothing. The machine's own clusters are never touched.
set -euo pipefail

MARK=.pg-cluster                   # DIR holds this file once it is ours
START_DEADLINE=60                  # seconds

say() { printf 'pg-cluster: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
usage() { die "usage: $0 start|stop|halt|resume DIR"; }

# Newest server binaries installed, or nothing.
find_bindir() {
    local d
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

install_server() {
    [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and we are not root"
    say "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq postgresql >&2 || die "apt-get install failed"
}

# Runs a command as the cluster's owner (root may not run a server).
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# A free loopback port below the kernel's ephemeral range: ports in that
# range go to outgoing connections too, and while a test held thousands
# of them, five ports in a row that bind(0) had just found free were
# taken again before the server bound them (a CI run).
free_port() {
    local lo=32768 p
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    [ "$lo" -gt 11000 ] 2>/dev/null || lo=32768
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$lo" <<'PY' 2>/dev/null && return 0
import random, socket, sys
top = int(sys.argv[1])
for _ in range(200):
    p = random.randrange(10000, top)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    sys.exit(0)
sys.exit(1)
PY
    fi
    for _ in $(seq 1 50); do
        p=$((10000 + RANDOM % (lo - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# Where the cluster files live: DIR itself when the owner can reach it and
# the socket path fits, else a private folder under /tmp named in $MARK.
cluster_root() {
    local dir=$1 root
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
    fi
    chmod 700 "$dir"
    if [ ${#dir} -le 80 ] && as_owner test -w "$dir" 2>/dev/null; then
        echo "$dir"
        return 0
    fi
    root=$(mktemp -d /tmp/auth-pg.XXXXXX)
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$root"
    fi
    echo "$root"
}

mark_get() {    # KEY from DIR's mark file
    sed -n "s/^$2=//p" "$1/$MARK" 2>/dev/null | head -n 1
}

running() {     # DIR
    local root bin
    root=$(mark_get "$1" root)
    bin=$(mark_get "$1" bin)
    [ -n "$root" ] && [ -n "$bin" ] && [ -f "$root/data/PG_VERSION" ] &&
        [ -f "$1/url" ] &&
        (cd / && as_owner "$bin/pg_ctl" status -D "$root/data" >/dev/null 2>&1)
}

stop_cluster() {     # DIR: stops and removes what start made
    local dir=$1 root bin
    root=$(mark_get "$dir" root)
    bin=$(mark_get "$dir" bin)
    if [ -n "$root" ] && [ -n "$bin" ] && [ -f "$root/data/postmaster.pid" ]
    then
        (cd / && as_owner "$bin/pg_ctl" stop -D "$root/data" -m fast -w \
            -t 60 >/dev/null 2>&1) ||
        (cd / && as_owner "$bin/pg_ctl" stop -D "$root/data" -m immediate \
            -w -t 30 >/dev/null 2>&1) || true
    fi
    if [ -n "$root" ] && [ "$root" != "$dir" ]; then
        case $root in
        /tmp/auth-pg.*) rm -rf -- "$root" ;;
        esac
    fi
    rm -rf -- "$dir"
}

cmd_start() {
    local dir=$1 bin root data port pass url deadline log
    if [ -e "$dir" ] && [ ! -d "$dir" ]; then
        die "$dir exists and is not a folder"
    fi
    if [ -d "$dir" ] && [ ! -f "$dir/$MARK" ] &&
        [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
        die "$dir is not empty and was not made by this script"
    fi
    if [ -f "$dir/$MARK" ]; then
        if running "$dir"; then
            cat "$dir/url"
            return 0
        fi
        say "removing a stale cluster in $dir"
        stop_cluster "$dir"
    fi

    bin=$(find_bindir) || { install_server; bin=$(find_bindir); } ||
        die "no initdb under /usr/lib/postgresql/*/bin"
    if [ "$(id -u)" = 0 ]; then
        id -u postgres >/dev/null 2>&1 || die "no postgres user"
    fi

    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    root=$(cluster_root "$dir")
    printf 'root=%s\nbin=%s\n' "$root" "$bin" >"$dir/$MARK"
    data=$root/data
    log=$root/postgres.log
    as_owner mkdir -p "$root/sock"

    local locale=C
    if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then
        locale=C.UTF-8
    fi
    if ! (cd / && as_owner "$bin/initdb" -D "$data" -U postgres -E UTF8 \
            --locale="$locale" --auth-local=trust \
            --auth-host=scram-sha-256 --no-sync \
            >"$root/initdb.log" 2>&1); then
        cat "$root/initdb.log" >&2 || true
        die "initdb failed"
    fi
    as_owner tee -a "$data/postgresql.conf" >/dev/null <<EOF
# throwaway test cluster (tests/pg-cluster.sh)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$root/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 32MB
logging_collector = off
log_min_messages = warning
include_if_exists = 'port.conf'
EOF

    # The port can be taken between the probe and the bind: retry.
    for _ in 1 2 3 4 5; do
        port=$(free_port) || die "no free loopback port"
        # In the configuration, so that a plain pg_ctl restart keeps it.
        echo "port = $port" | as_owner tee "$data/port.conf" >/dev/null
        if (cd / && as_owner "$bin/pg_ctl" start -D "$data" -l "$log" \
                -w -t "$START_DEADLINE" >/dev/null 2>&1); then
            break
        fi
        port=
        if ! grep -q 'could not bind\|Address already in use' "$log" \
                2>/dev/null; then
            tail -n 20 "$log" >&2 2>/dev/null || true
            die "the server did not start"
        fi
        say "port taken, trying another"
    done
    [ -n "$port" ] || die "the server did not start"

    deadline=$((SECONDS + START_DEADLINE))
    until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -t 2; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$log" >&2 2>/dev/null || true
            die "the server is not ready after ${START_DEADLINE}s"
        fi
        sleep 0.1
    done

    pass=$(od -An -tx1 -N18 /dev/urandom | tr -d ' \n')
    if ! (cd / && as_owner "$bin/psql" -X -q -v ON_ERROR_STOP=1 \
            -h "$root/sock" -p "$port" -U postgres -d postgres \
            -v pass="$pass" >/dev/null 2>"$root/psql.log") <<'EOF'
CREATE ROLE auth LOGIN CREATEDB PASSWORD :'pass';
CREATE DATABASE auth OWNER auth;
EOF
    then
        cat "$root/psql.log" >&2 || true
        die "could not create the auth role and database"
    fi
    url="postgresql://auth:$pass@127.0.0.1:$port/auth"
    (umask 077 && printf '%s\n' "$url" >"$dir/url")
    printf 'port=%s\n' "$port" >>"$dir/$MARK"
    say "$bin/postgres on 127.0.0.1:$port, data in $data"
    echo "$url"
}

cmd_stop() {
    local dir=$1
    [ -e "$dir" ] || return 0
    if [ ! -f "$dir/$MARK" ]; then
        if [ -d "$dir" ] && [ -z "$(ls -A "$dir" 2>/dev/null)" ]; then
            rmdir -- "$dir"
            return 0
        fi
        die "$dir was not made by this script; leaving it alone"
    fi
    stop_cluster "$dir"
}

# Kills the server of DIR in immediate mode (no shutdown checkpoint, the
# way a crash or a pulled plug looks to clients); DIR stays for resume.
cmd_halt() {
    local dir=$1 root bin
    [ -f "$dir/$MARK" ] || die "$dir was not made by this script"
    root=$(mark_get "$dir" root)
    bin=$(mark_get "$dir" bin)
    (cd / && as_owner "$bin/pg_ctl" stop -D "$root/data" -m immediate -w \
        -t 30 >/dev/null 2>&1) || die "pg_ctl stop failed"
}

# Starts the halted server of DIR again (crash recovery, same port, which
# port.conf keeps) and waits until it accepts connections.
cmd_resume() {
    local dir=$1 root bin port deadline
    [ -f "$dir/$MARK" ] || die "$dir was not made by this script"
    root=$(mark_get "$dir" root)
    bin=$(mark_get "$dir" bin)
    port=$(mark_get "$dir" port)
    if ! (cd / && as_owner "$bin/pg_ctl" start -D "$root/data" \
            -l "$root/postgres.log" -w -t "$START_DEADLINE" \
            >/dev/null 2>&1); then
        tail -n 20 "$root/postgres.log" >&2 2>/dev/null || true
        die "the server did not start again"
    fi
    deadline=$((SECONDS + START_DEADLINE))
    until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -t 2; do
        [ "$SECONDS" -lt "$deadline" ] ||
            die "the server is not ready after ${START_DEADLINE}s"
        sleep 0.1
    done
}

[ $# -eq 2 ] || usage
case $1 in
start) cmd_start "$2" ;;
stop) cmd_stop "$2" ;;
halt) cmd_halt "$2" ;;
resume) cmd_resume "$2" ;;
*) usage ;;
esac
