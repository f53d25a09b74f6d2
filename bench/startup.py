#!/usr/bin/env python3
"""Start-up time of a provider, for bench/run.sh (Python 3 standard library only).

  startup.py --runs 20 --label NAME -- COMMAND ARG... ('{port}' in an argument
  is replaced by a free port picked before each run)

For each run: t0 just before the exec (subprocess.Popen), then
  - ready: the first stdout line that contains `listening on http://...`;
  - discovery: the first 200 answer to GET /.well-known/openid-configuration at
    the URL from that line (connection errors are retried every 1 ms, for at
    most 10 s).
  - line → discovery: the difference of the two.
--path and --expect poll another path instead (e.g. --path /jwks --expect
'"keys"' for the moment the provider can sign); the result keys keep their
"discovery" names and the output names the path.
The process is then stopped (SIGTERM, then SIGKILL after 5 s). Prints one
JSON object with every run and the median and max of each, in milliseconds.
Only 127.0.0.1 is contacted; every loop is bounded.
"""

import argparse
import http.client
import json
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse

READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+\S*)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DISCOVERY = "/.well-known/openid-configuration"


def discovery_ok(url, deadline, path=DISCOVERY, expect=b'"issuer"'):
    u = urllib.parse.urlsplit(url)
    path = u.path.rstrip("/") + path
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", u.port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200 and expect in body:
                return True
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.001)
    return False


def one_run(cmd, path=DISCOVERY, expect=b'"issuer"'):
    port = str(free_port())
    argv = [a.replace("{port}", port) for a in cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready_ms = None
        url = None
        for _ in range(50):  # the ready line comes within the first lines
            line = proc.stdout.readline()
            if not line:
                break
            m = READY.search(line)
            if m:
                ready_ms = (time.perf_counter() - t0) * 1000
                url = m.group(1)
                break
        if url is None:
            raise SystemExit(f"startup.py: no ready line from {argv}")
        if not discovery_ok(url, time.monotonic() + 10, path, expect):
            raise SystemExit(f"startup.py: no discovery answer from {url}")
        discovery_ms = (time.perf_counter() - t0) * 1000
        return ready_ms, discovery_ms
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--label", required=True)
    p.add_argument("--path", default=DISCOVERY, help="the path to poll after the line")
    p.add_argument("--expect", default='"issuer"', help="text the 200 answer must contain")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd or not 1 <= args.runs <= 1000:
        p.error("a command and 1..1000 runs are needed")
    expect = args.expect.encode()
    one_run(cmd, args.path, expect)  # not counted: warms the page cache
    ready, disc = [], []
    for _ in range(args.runs):
        r, d = one_run(cmd, args.path, expect)
        ready.append(r)
        disc.append(d)
    out = {
        "label": args.label,
        "runs": args.runs,
        "path": args.path,
        "ready_ms": [round(x, 2) for x in ready],
        "discovery_ms": [round(x, 2) for x in disc],
        "ready_median_ms": round(statistics.median(ready), 2),
        "ready_max_ms": round(max(ready), 2),
        "discovery_median_ms": round(statistics.median(disc), 2),
        "discovery_max_ms": round(max(disc), 2),
        "line_to_discovery_ms": [round(d - r, 2) for r, d in zip(ready, disc)],
        "line_to_discovery_median_ms": round(statistics.median(d - r for r, d in zip(ready, disc)), 2),
        "line_to_discovery_max_ms": round(max(d - r for r, d in zip(ready, disc)), 2),
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
