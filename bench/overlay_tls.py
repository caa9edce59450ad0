#!/usr/bin/env python3
"""Encrypted overlay benchmark: what mutual TLS on the overlay costs. The same request crosses
the overlay (wrk -> n1 -> overlay -> n2 -> task on n2) in a cluster with
cluster.overlay_encryption on (the default) and in one with it off, in one run, for 1 MiB
responses (MiB/s, and MiB/s per busy proxy core) and small ones (requests/s per busy proxy
core). Measures, never asserts. Run through bench/overlay_tls.sh; bench/README.md ("Overlay
encryption") has the results.

Topology as bench/overlay.py's (two network namespaces on a bridge; the task listens on an
address only n2's namespace reaches). Both routemesh nodes run on core 0 (one proxy thread
each); wrk and the backend nginx on core 1. "Per busy core" divides by core 0's busy share
over the run (softirq included), which holds both nodes' work: sending, encrypting,
decrypting and delivering.
"""
import argparse
import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
if HERE not in sys.path:
    sys.path.append(HERE)

import cluster  # noqa: E402
import harness  # noqa: E402
import overlay as ob  # noqa: E402  (bench/overlay.py: topology, nginx, CPU accounting)
import report  # noqa: E402

BIG = 1024 * 1024


def measure(a, tmp, url, tag):
    """One wrk run on the client core: the parsed row with core 0's busy share, or an n/a row."""
    wrk = ["timeout", "-k", "5", str(a.duration + 30), "taskset", "-c", ob.CLIENT_CORE, "wrk",
           "-t1", f"-c{a.connections}", "-H", f"Host: {ob.HOST}"]
    if a.warmup:
        subprocess.run(wrk + [f"-d{a.warmup}s", url], capture_output=True,
                               timeout=a.warmup + 40)
    out = os.path.join(tmp, f"wrk-{tag}.txt")
    c0 = ob.core_jiffies()
    r = subprocess.run(wrk + [f"-d{a.duration}s", "--latency", "-s",
                                      os.path.join(HERE, "summary.lua"), url],
                               capture_output=True, text=True, timeout=a.duration + 40)
    c1 = ob.core_jiffies()
    with open(out, "w") as f:
        f.write(r.stdout + r.stderr)
    row = report.parse_wrk(out)
    if r.returncode != 0 or row["status"] != "ok" or not row.get("requests"):
        return {"status": "na", "reason": row.get("reason", f"wrk status {r.returncode}")}
    busy = c1[ob.PROXY_CORE][0] - c0[ob.PROXY_CORE][0]
    total = c1[ob.PROXY_CORE][1] - c0[ob.PROXY_CORE][1]
    row["core0_busy"] = busy / total if total else None
    if row.get("errors"):
        row["status"] = "na"
        row["reason"] = f"{row['errors']} errors"
    return row


def run_cluster(a, tmp, netns, encrypted, rounds_out, rnd):
    c = cluster.Cluster(None, ["manager", "worker"], netns=netns,
                        overlay_encryption=encrypted)
    try:
        c.start()
        n1, n2 = c.nodes
        lead = c.leader()
        s, b = lead.api("POST", "/v1/services", {"name": "bench", "labels": {"mesh.http": ob.HOST}})
        if s != 201:
            raise RuntimeError(f"creating the service: {s} {b}")
        s, b = lead.api("POST", "/v1/tasks", {"service": "bench", "node": "n2",
                                              "address": f"{ob.TASK_IP}:{ob.BACKEND_PORT}"})
        if s != 201:
            raise RuntimeError(f"creating the task: {s} {b}")
        c.wait_converged()
        harness.wait_until(lambda: ob.check(n1.ip, cluster.HTTP_PORT) is None, 15,
                           what=f"{ob.HOST} routed on n1")
        for n in (n1, n2):
            subprocess.run(["taskset", "-a", "-p", "-c", ob.PROXY_CORE,
                                    str(n.proc.p.pid)], capture_output=True, check=True)
        key = "encrypted" if encrypted else "plain"
        for case, path in (("1m", "/1m"), ("small", "/")):
            row = measure(a, tmp, f"http://{n1.ip}:{cluster.HTTP_PORT}{path}", f"{key}-{case}-r{rnd}")
            rounds_out.setdefault((case, key), []).append(row)
            if row["status"] == "ok":
                what = (f"{row['mib_per_s']:,.0f} MiB/s" if case == "1m"
                        else f"{row['requests_per_s']:,.0f} req/s")
                print(f"[bench] r{rnd} {case} {key}: {what}, core 0 busy {row['core0_busy']:.0%}",
                      file=sys.stderr)
            else:
                print(f"[bench] r{rnd} {case} {key}: n/a ({row['reason']})", file=sys.stderr)
        if encrypted:
            # The streams really were TLS: the receiving node refuses plaintext on its port.
            body = n2.metrics()
            if "routemesh_overlay_streams_total" not in body:
                raise RuntimeError("no overlay streams counted on n2")
    finally:
        c.stop()


def main():
    ap = argparse.ArgumentParser(prog="bench/overlay_tls.sh")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--connections", type=int, default=16)
    a = ap.parse_args()
    if a.rounds < 1 or a.duration < 1 or a.connections < 1 or a.warmup < 0:
        ap.error("--rounds, --duration and --connections must be >= 1, --warmup >= 0")
    why = cluster.Netns.available()
    if why:
        sys.exit(f"network namespaces unavailable: {why}")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
        signal.signal(s, ob.on_signal)
    signal.alarm(300 + a.rounds * 4 * (a.duration + a.warmup + 60))
    tmp = tempfile.mkdtemp(prefix="routemesh-overlay-tls-bench.")
    os.chmod(tmp, 0o755)
    for d in ("backend-tmp", "www"):
        os.makedirs(os.path.join(tmp, d))
    with open(os.path.join(tmp, "www", "1m"), "wb") as f:
        f.write(os.urandom(BIG))
    os.chmod(os.path.join(tmp, "www", "1m"), 0o644)
    stack = contextlib.ExitStack()
    rows = {}
    status = 0
    try:
        stack.callback(lambda: subprocess.run(["rm", "-rf", tmp]))
        netns = ob.BenchNetns(2, prefix=ob.free_prefix())
        stack.callback(netns.close)
        n1_ip, n2_ip = netns.ips
        cluster._ip("-n", netns.ns_of(n2_ip), "addr", "add", f"{ob.TASK_IP}/32", "dev", "lo")
        in_n2_client = netns.exec_args(n2_ip, ob.CLIENT_CORE)
        ob.render(os.path.join(HERE, "backend-nginx.conf.tmpl"), os.path.join(tmp, "backend.conf"),
                  {"@DIR@": tmp, "127.0.0.1:@BACKEND_PORT@": f"{ob.TASK_IP}:{ob.BACKEND_PORT}"})
        backend = ob.Nginx(in_n2_client, os.path.join(tmp, "backend.conf"),
                           os.path.join(tmp, "backend.log"))
        stack.callback(backend.stop)
        ob.wait_nginx(backend, in_n2_client, ob.TASK_IP, ob.BACKEND_PORT, "backend nginx")
        load = open("/proc/loadavg").read().split()[:3]
        for rnd in range(1, a.rounds + 1):
            # alternate which goes first, so slow drift favours neither
            for encrypted in ((True, False) if rnd % 2 else (False, True)):
                run_cluster(a, tmp, netns, encrypted, rows, rnd)
        signal.alarm(0)
        print_report(a, rows, load)
    except ob.Interrupted as e:
        print(f"[bench] interrupted ({e})", file=sys.stderr)
        status = 130
    except Exception as e:  # noqa: BLE001 - a failed set-up is reported
        print(f"[bench] failed: {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
    finally:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        signal.alarm(0)
        stack.close()
    return status


def print_report(a, rows, load):
    def med(case, key, field):
        ok = [r for r in rows.get((case, key), []) if r["status"] == "ok"]
        vals = []
        for r in ok:
            v = r.get(field)
            if field == "per_core":
                base = r["mib_per_s"] if case == "1m" else r["requests_per_s"]
                v = base / r["core0_busy"] if r.get("core0_busy") else None
            vals.append(v)
        return report.median(vals), len(ok)

    lines = [f"Overlay encryption: wrk -> n1 -> overlay -> n2 -> task, {a.rounds} round(s) of "
             f"{a.duration} s, -c{a.connections}, medians; both nodes on core {ob.PROXY_CORE}; "
             f"load before {' '.join(load)}", "",
             "| case | encrypted (mutual TLS) | plain TCP | encrypted / plain |",
             "| --- | --- | --- | --- |"]
    results = {}
    for case, field, what, fmt in (
            ("1m", "mib_per_s", "1 MiB responses, MiB/s", "{:,.0f}"),
            ("1m", "per_core", "1 MiB responses, MiB/s per busy core", "{:,.0f}"),
            ("small", "requests_per_s", "small responses, req/s", "{:,.0f}"),
            ("small", "per_core", "small responses, req/s per busy core", "{:,.0f}"),
            ("small", "p99_ms", "small responses, p99 ms", "{:.2f}")):
        e, ne = med(case, "encrypted", field)
        p, np_ = med(case, "plain", field)
        ratio = e / p if e and p else None
        results[f"{case}.{field}"] = {"encrypted": e, "plain": p, "ratio": ratio,
                                      "rounds": [ne, np_]}
        f = lambda v: "n/a" if v is None else fmt.format(v)
        lines.append(f"| {what} | {f(e)} | {f(p)} | {'n/a' if ratio is None else f'{ratio:.2f}×'} |")
    print("\n".join(lines))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "overlay_tls.json"), "w") as f:
        json.dump({"when": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                   "settings": vars(a), "load_before": load, "results": results,
                   "rows": {f"{k[0]}/{k[1]}": v for k, v in rows.items()}}, f, indent=1,
                  default=str)


if __name__ == "__main__":
    sys.exit(main())
