#!/usr/bin/env python3
"""Turns one bench/run.sh output folder into a Markdown summary (stdout).

  summarize.py bench/out/RUN

Reads env.txt, results.tsv and startup.*.json written by run.sh; Python 3
standard library only.
"""

import csv
import json
import sys
from pathlib import Path

PROVIDERS = ["mock-idp", "oidc-provider", "oauth2-mock-server"]
MEASUREMENTS = [
    ("discovery", "Discovery `GET /.well-known/openid-configuration`"),
    ("userinfo", "Userinfo `GET /userinfo` (bearer)"),
    ("client_credentials", "Token: client credentials (1 RS256 signature)"),
    ("refresh", "Token: refresh, no rotation (2 RS256 signatures: access + ID token)"),
]


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def fmt_int(x):
    return "—" if x is None else f"{x:,.0f}"


def main():
    out = Path(sys.argv[1])
    env = {}
    for line in (out / "env.txt").read_text().splitlines():
        k, _, v = line.partition("=")
        env[k] = v
    rows = {}
    with open(out / "results.tsv", newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            rows[(r["measurement"], r["provider"])] = r
    startup = {}
    for p in PROVIDERS:
        path = out / f"startup.{p}.json"
        if path.exists():
            startup[p] = json.loads(path.read_text())
    sign_rate = num(env.get("rs256_signs_per_core"))

    def rps(m, p):
        r = rows.get((m, p))
        return num(r["req_s"]) if r else None

    def valid(m, p):
        r = rows.get((m, p))
        return r is not None and r["non200"] == "0" and r["socket_errors"] in ("0", "")

    def per_cpu(m, p):
        r = rows.get((m, p))
        cores = num(r["server_cores"]) if r else None
        return num(r["req_s"]) / cores if cores else None

    def efficiency(m, p):
        r = rows.get((m, p))
        if not r or not sign_rate:
            return None
        cores = num(r["server_cores"])
        sigs = num(r["sigs_per_req"])
        if not cores or not sigs:
            return None
        return num(r["req_s"]) * sigs / (cores * sign_rate)

    lines = []
    w = lines.append
    knobs = dict(kv.split("=", 1) for kv in ("duration=" + env.get("duration", "")).split() if "=" in kv)
    w(f"Command: `{env.get('command', 'bash bench/run.sh')}` — each measurement is "
      f"`wrk -t{knobs.get('threads', '?')} -c{knobs.get('conns', '?')} -d{knobs.get('duration', '?')}`, "
      f"after an unreported {knobs.get('warmup', '?')} warm-up run")
    w("")
    w(f"- date (UTC): {env.get('date_utc')}")
    w(f"- machine: {env.get('nproc')} cores, {env.get('cpu_model')}, kernel {env.get('kernel')}")
    w(f"- load before: `{env.get('uptime_before', '').strip()}`")
    w(f"- load after: `{env.get('uptime_after', '').strip()}`")
    w(f"- versions: {env.get('mock_idp')} ({env.get('git')}), {env.get('rustc')}; "
      f"oidc-provider {env.get('oidc_provider')}, oauth2-mock-server {env.get('oauth2_mock_server')}, "
      f"node {env.get('node')}; {env.get('wrk')}; {env.get('openssl')}")
    w(f"- one core signs {env.get('rs256_signs_per_core')} RS256 (RSA-2048) signatures/s (`openssl speed -seconds 5 rsa2048`); "
      f"all {env.get('nproc')} together {env.get('rs256_signs_all_cores', '?')}/s (`openssl speed -multi {env.get('nproc')} -seconds 5 rsa2048`); "
      f"other processes used {env.get('openssl_others_cores', '?')} cores during the one-core run")
    w("")
    w("### Throughput (requests/s; latency p50 / p99)")
    w("")
    w("| measurement | " + " | ".join(PROVIDERS) + " |")
    w("| --- | " + " | ".join("---:" for _ in PROVIDERS) + " |")
    for m, title in MEASUREMENTS:
        cells = []
        for p in PROVIDERS:
            r = rows.get((m, p))
            if not r:
                cells.append("—")
                continue
            bad = "" if valid(m, p) else f" **INVALID: {r['non200']} non-200, {r['socket_errors']} socket errors**"
            busy = num(r.get("other_cores")) or 0
            mark = f" ⚠ others {busy:.2f} cores" if busy >= 0.25 else ""
            cells.append(f"{fmt_int(num(r['req_s']))} ({r['p50']} / {r['p99']}){mark}{bad}")
        w(f"| {title} | " + " | ".join(cells) + " |")
    w("")
    w("⚠ marks a run during which other processes on the machine used ≥ 0.25 cores (see the CPU table).")
    w("")
    w("### CPU during each run (cores busy = CPU seconds / wall seconds; the machine has "
      f"{env.get('nproc')}; \"others\" = every other process on the machine, from /proc/stat)")
    w("")
    w("| measurement | provider | server | wrk | others | steal | waited for quiet (s) |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for m, _ in MEASUREMENTS:
        for p in PROVIDERS:
            r = rows.get((m, p))
            if not r:
                continue
            w(f"| {m} | {p} | {num(r['server_cores']):.2f} | {num(r['wrk_cores']):.2f} | "
              f"{num(r.get('other_cores')) or 0:.2f} | {num(r.get('steal_cores')) or 0:.2f} | {r.get('quiet_wait_s') or '—'} |")
    w("")
    w("### Requests per CPU-second of the server (req/s ÷ server cores busy; less sensitive to other load than req/s)")
    w("")
    w("| measurement | " + " | ".join(PROVIDERS) + " |")
    w("| --- | " + " | ".join("---:" for _ in PROVIDERS) + " |")
    for m, _ in MEASUREMENTS:
        cells = []
        for p in PROVIDERS:
            v = per_cpu(m, p)
            cells.append("—" if v is None else f"{v:,.0f}")
        w(f"| {m} | " + " | ".join(cells) + " |")
    w("")
    w("### Signing efficiency (signatures/s ÷ (cores busy × one core's RS256 sign rate))")
    w("")
    w("| measurement | " + " | ".join(PROVIDERS) + " |")
    w("| --- | " + " | ".join("---:" for _ in PROVIDERS) + " |")
    for m, _ in MEASUREMENTS[2:]:
        cells = []
        for p in PROVIDERS:
            e = efficiency(m, p)
            r = rows.get((m, p))
            if e is None:
                cells.append("—")
            else:
                sigs_s = num(r["req_s"]) * num(r["sigs_per_req"])
                all_rate = num(env.get("rs256_signs_all_cores"))
                of_all = f"; {sigs_s / all_rate:.0%} of the machine's" if all_rate else ""
                cells.append(f"{e:.0%} ({sigs_s:,.0f} sig/s on {num(r['server_cores']):.2f} cores{of_all})")
        w(f"| {m} | " + " | ".join(cells) + " |")
    w("")
    w(f"### Start-up (ms, median / max of {startup.get('mock-idp', {}).get('runs', '?')} runs)")
    w("")
    w("| | " + " | ".join(PROVIDERS) + " |")
    w("| --- | " + " | ".join("---:" for _ in PROVIDERS) + " |")
    for key, title in (("ready", "exec → ready line (`… listening on URL`)"),
                       ("discovery", "exec → first 200 from discovery")):
        cells = []
        for p in PROVIDERS:
            s = startup.get(p)
            cells.append("—" if not s else f"{s[key + '_median_ms']:.1f} / {s[key + '_max_ms']:.1f}")
        w(f"| {title} | " + " | ".join(cells) + " |")
    w("")

    # goals
    w("### Goals")
    w("")
    w("Ratio goals are judged on req/s, as stated; the per-CPU-second ratio is the cross-check "
      "that other load on the machine moves less.")
    w("")
    w("| goal | numbers | per CPU-second | met? |")
    w("| --- | --- | --- | --- |")

    def ratio_goal(m, other, factor):
        a, b = rps(m, "mock-idp"), rps(m, other)
        if a is None or b is None or not b:
            return f"| {m}: ≥ {factor}× {other} | missing | | — |"
        ok = a >= factor * b and valid(m, "mock-idp") and valid(m, other)
        ca, cb = per_cpu(m, "mock-idp"), per_cpu(m, other)
        cpu = f"{ca:,.0f} vs {cb:,.0f} = {ca / cb:.2f}×" if ca and cb else "—"
        return (f"| {m}: ≥ {factor}× {other} | {a:,.0f} vs {b:,.0f} req/s = {a / b:.2f}× "
                f"| {cpu} | {'met' if ok else 'not met'} |")

    for m in ("discovery", "userinfo"):
        w(ratio_goal(m, "oidc-provider", 10))
        w(ratio_goal(m, "oauth2-mock-server", 2))
    for m in ("client_credentials", "refresh"):
        w(ratio_goal(m, "oauth2-mock-server", 2))
        e = efficiency(m, "mock-idp")
        if e is None:
            w(f"| {m}: ≥ 70 % of signing capacity | missing | | — |")
        else:
            r = rows[(m, "mock-idp")]
            w(f"| {m}: ≥ 70 % of signing capacity | {num(r['req_s']):,.0f} req/s × {r['sigs_per_req']} sig "
              f"/ ({num(r['server_cores']):.2f} cores × {sign_rate:,.0f} sig/s) = {e:.0%} "
              f"| | {'met' if e >= 0.70 else 'not met'} |")
    s = startup.get("mock-idp")
    if s:
        med, mx = s["ready_median_ms"], s["ready_max_ms"]
        verdict = "met" if mx <= 100 else ("met at the median, not at the max" if med <= 100 else "not met")
        w(f"| start-up to listening line ≤ 100 ms | median {med:.1f} ms, max {mx:.1f} ms "
          f"(first discovery answer: median {s['discovery_median_ms']:.1f} ms, max {s['discovery_max_ms']:.1f} ms) | | {verdict} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
