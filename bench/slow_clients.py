#!/usr/bin/env python3
"""Slow-client load: 8 loopback addresses (127.0.0.2-9), each opening as
many connections as the daemon lets it, every one sending one header line
every INTERVAL seconds and never finishing its headers, while 127.0.0.1
asks GET /healthz over and over. Prints how fast 127.0.0.1 was answered
and when the slow connections were closed. Bounded in time.

    /usr/bin/python3 bench/slow_clients.py [INTERVAL] [KEY=VALUE ...]

KEY=VALUE pairs are extra AUTH_* settings (the defaults otherwise);
AUTH_E2E_BIN picks the binary (default build/auth-serve)."""
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))

import conftest                                           # noqa: E402
from test_slow_clients import (SLOW_ADDRS, Trickler,      # noqa: E402
                               answered_in, open_from)


def main():
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    env = dict(a.split("=", 1) for a in sys.argv[2:])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    d = conftest.Daemon(env=env).start()
    try:
        # how many the daemon keeps from one address: its per-address limit
        probe = open_from(d.port, SLOW_ADDRS[0], 300)
        per_addr = len(probe)
        for s in probe:
            s.close()
        time.sleep(0.5)                  # let the daemon close those
        t = Trickler(d.port, SLOW_ADDRS, per_addr, interval)
        timeout = float(env.get("AUTH_HEADER_TIMEOUT", "10"))
        lat = []
        end = time.monotonic() + timeout + 3.0
        while time.monotonic() < end and len(t.closed) < len(t.socks):
            t.pump(0.2)
            lat.append(answered_in(d, 3.0))
        ok = sorted(x for x in lat if x is not None)
        closed = sorted(t.closed.values())
        print("slow connections: %d (%d addresses x %d)"
              % (len(t.socks), len(SLOW_ADDRS), per_addr))
        print("closed by the daemon: %d" % len(closed), end="")
        if closed:
            print(", %.2f to %.2f s after their first byte (median %.2f)"
                  % (closed[0], closed[-1], statistics.median(closed)))
        else:
            print()
        print("GET /healthz from 127.0.0.1: %d asked, %d answered"
              % (len(lat), len(ok)), end="")
        if ok:
            print(", median %.1f ms, max %.1f ms"
                  % (statistics.median(ok) * 1000, ok[-1] * 1000))
        else:
            print()
        t.close()
    finally:
        d.stop()


if __name__ == "__main__":
    main()
