#!/usr/bin/env python3
"""Helpers of bench/run.sh (loopback only, every loop bounded in count and
time). Subcommands:

  port                          a free loopback TCP port
  logins URL EMAIL PW N FILE    N logins; "access refresh" per line in FILE
  accounts URL EMAIL PW N       registers EMAIL's +m0 .. +m(N-1) accounts
  argon2 MEM_KIB ITER SECS      raw crypto_pwhash_str_verify per second
                                (libsodium as shipped, through
                                python3-nacl)
  startup PORT PATH SECS CMD..  ms from starting CMD to the first 200 at
                                http://127.0.0.1:PORT/PATH (CMD is then
                                stopped with SIGTERM), median of 5 starts
  hold PORT N PID               opens N idle keep-alive connections (each
                                after one GET /healthz), prints the RSS of
                                PID while they are held, then closes them
  rss PID                       VmRSS of PID in KiB
  get PORT PATH TOKEN N         N GETs of PATH with a bearer TOKEN on one
                                keep-alive connection; fails unless all 200
  table TSV JSON                the summary table of a results file
"""
import json
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


PER_ACCOUNT = 64     # sessions per account: AUTH_MAX_SESSIONS_PER_USER
                     # (at most 100) ends the oldest beyond it


def register(url, email, pw):
    body = json.dumps({"email": email, "password": pw}).encode()
    req = urllib.request.Request(url + "/api/v1/auth/register", body,
                                 {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).close()


def logins(url, email, pw, n, path):
    """n sessions, PER_ACCOUNT to an account: `email` (registered by the
    caller), then email+1@..., email+2@... registered here."""
    local, domain = email.split("@", 1)
    headers = {"Content-Type": "application/json"}
    with open(path, "w") as out:
        for i in range(n):
            k = i // PER_ACCOUNT
            acct = email if k == 0 else f"{local}+{k}@{domain}"
            body = json.dumps({"email": acct, "password": pw}).encode()
            if k and i % PER_ACCOUNT == 0:
                register(url, acct, pw)
            req = urllib.request.Request(
                url + "/api/v1/auth/login", body, headers)
            with urllib.request.urlopen(req, timeout=30) as r:
                d = json.load(r)
            out.write(f"{d['access_token']} {d['refresh_token']}\n")


def accounts(url, email, pw, n):
    """Registers email+m0@... to email+m(n-1)@... (bench/wrk/logins.lua
    logs in to them in turn)."""
    local, domain = email.split("@", 1)
    for k in range(n):
        register(url, f"{local}+m{k}@{domain}", pw)


def argon2(mem_kib, iters, secs):
    import nacl.pwhash.argon2id as a2
    pw = b"correct horse battery"
    h = a2.str(pw, opslimit=iters, memlimit=mem_kib * 1024)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < secs:
        a2.verify(h, pw)
        n += 1
    print(f"{n / (time.monotonic() - t0):.2f}")


def get_status(port, path, timeout=0.5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\n"
                  "Connection: close\r\n\r\n".encode())
        head = s.recv(64)
    return int(head.split()[1]) if head.startswith(b"HTTP/") else 0


def start_once(port, path, secs, cmd):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    ms = None
    try:
        while time.monotonic() - t0 < secs and p.poll() is None:
            try:
                if get_status(port, path) == 200:
                    ms = (time.monotonic() - t0) * 1000
                    break
            except OSError:
                pass
            time.sleep(0.0001)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return ms


def startup(port, path, secs, cmd, starts=5):
    """The median of `starts` starts (one start is at the mercy of the
    host's scheduler)."""
    times = [start_once(port, path, secs, cmd) for _ in range(starts)]
    times = [t for t in times if t is not None]
    print(f"{statistics.median(times):.1f}" if times else "nan")


def hold(port, n, pid):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    req = b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n"
    socks, before = [], rss_kib(pid)
    t0 = time.monotonic()
    try:
        for _ in range(n):
            if time.monotonic() - t0 > 120:
                break
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(req)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    raise OSError("closed")
                buf += chunk
            socks.append(s)
        # Idle 2 s, a connection is parked outside libmicrohttpd (README
        # "Connections"); measured once the last ones opened are too.
        time.sleep(3.5)
        held = rss_kib(pid)
        alive = 0
        for s in socks:        # still open (the daemon closed none)?
            s.setblocking(False)
            try:
                alive += s.recv(1) != b""
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
    finally:
        for s in socks:
            s.close()
    print(json.dumps({"before_kib": before, "held_kib": held,
                      "connections": alive}))


def get(port, path, token, n):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {"Authorization": "Bearer " + token}
    for _ in range(n):
        c.request("GET", path, headers=h)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            sys.exit(f"GET {path}: {r.status}")
    c.close()


def table(tsv, out):
    """Rows of TSV: binary, round, figure, value. Prints per binary the
    median and the spread (min-max) of each figure over the rounds."""
    vals = {}
    bins, figs = [], []
    with open(tsv) as f:
        for line in f:
            b, _, fig, v = line.rstrip("\n").split("\t")
            if b not in bins:
                bins.append(b)
            if fig not in figs:
                figs.append(fig)
            try:
                vals.setdefault((b, fig), []).append(float(v))
            except ValueError:
                pass
    res = {"binaries": bins, "figures": {}}
    w = max(len(f) for f in figs) if figs else 10
    print(f"{'figure':<{w}}  " + "  ".join(f"{b:>28}" for b in bins))
    for fig in figs:
        cells = []
        for b in bins:
            v = vals.get((b, fig), [])
            res["figures"].setdefault(fig, {})[b] = v
            if not v:
                cells.append(f"{'-':>28}")
                continue
            m = statistics.median(v)
            fmt = (lambda x: f"{x:.3f}") if m < 10 else (
                lambda x: f"{x:.1f}" if m < 1000 else f"{x:.0f}")
            s = fmt(m) if len(v) == 1 else \
                f"{fmt(m)} ({fmt(min(v))}-{fmt(max(v))})"
            cells.append(f"{s:>28}")
        print(f"{fig:<{w}}  " + "  ".join(cells))
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == "port":
        print(free_port())
    elif cmd == "logins":
        logins(a[1], a[2], a[3], int(a[4]), a[5])
    elif cmd == "accounts":
        accounts(a[1], a[2], a[3], int(a[4]))
    elif cmd == "argon2":
        argon2(int(a[1]), int(a[2]), float(a[3]))
    elif cmd == "startup":
        startup(int(a[1]), a[2], float(a[3]), a[4:])
    elif cmd == "hold":
        hold(int(a[1]), int(a[2]), int(a[3]))
    elif cmd == "get":
        get(int(a[1]), a[2], a[3], int(a[4]))
    elif cmd == "rss":
        print(rss_kib(int(a[1])))
    elif cmd == "table":
        table(a[1], a[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
