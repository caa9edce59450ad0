#!/usr/bin/env python3
"""Overlay benchmark: what a request costs when it crosses the ingress overlay (wrk -> node 1
-> overlay -> node 2 -> task) compared with a local hop (wrk -> node 2 -> task on node 2), and
routemesh's local hop compared with nginx's. Measures, never asserts. See bench/README.md.

Topology, built and removed by this script: a private bridge and one network namespace per
node (tests/integration/cluster.py's Netns; names carry the pid), a routemesh cluster of 1
manager (n1) + 1 worker (n2), one proxy thread each. The backend is nginx (bench/'s backend
config, one worker) on 172.31.2.1, an address on node 2's own loopback that node 1 cannot
reach: only the overlay gets there from node 1. wrk runs in the root namespace and connects to
the node addresses on the bridge. Run through bench/overlay.sh.
"""
import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# The integration harness first: bench/cluster.py (the cluster benchmark) has the same name.
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
if HERE not in sys.path:
    sys.path.append(HERE)

import cluster  # noqa: E402
import harness  # noqa: E402
import report  # noqa: E402  (wrk output parsing and formatting shared with bench/run.sh)
from report import children_of, ticks_or_none  # noqa: E402

PROXY_CORE = "0"   # routemesh nodes and the nginx proxy, as in bench/run.sh
CLIENT_CORE = "1"  # wrk and the backend nginx
TASK_IP = "172.31.2.1"
BACKEND_PORT = 18080
NGINX_PORT = 18082
HOST = "bench.local"
SMALL_BODY = b"ok\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGETS = [
    # key, label, what the request crosses
    ("local", "local hop", "wrk -> n2 -> task on n2"),
    ("overlay", "overlay hop", "wrk -> n1 -> overlay -> n2 -> task on n2"),
    ("nginx", "nginx local hop", "wrk -> nginx in n2's namespace -> task on n2"),
]
LABELS = {k: label for k, label, _ in TARGETS}


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


class BenchNetns(cluster.Netns):
    """Netns whose node processes (ClusterNode uses prefix_args) are pinned to the proxy core."""

    def prefix_args(self, ip):
        return ["taskset", "-c", PROXY_CORE] + super().prefix_args(ip)

    def exec_args(self, ip, core):
        return ["taskset", "-c", core] + super().prefix_args(ip)


def free_prefix():
    """A 10.202.N prefix that no interface of this host uses yet (the integration tests use
    10.201.N), starting from one derived from the pid."""
    used = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                          timeout=10).stdout
    start = os.getpid() % 250
    for i in range(250):
        prefix = f"10.202.{(start + i) % 250 + 1}"
        if f" {prefix}." not in used:
            return prefix
    raise RuntimeError("no free 10.202.N.0/24 prefix for the bridge")


# ------------------------------------------------------------------------------------------
# CPU accounting
# ------------------------------------------------------------------------------------------

def core_jiffies():
    """{core: (busy, total)} for the proxy and client cores from /proc/stat (busy = all but idle
    and iowait; softirq counts as busy)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0] in (f"cpu{PROXY_CORE}", f"cpu{CLIENT_CORE}"):
                v = [int(x) for x in parts[1:]]
                total = sum(v)
                out[parts[0][3:]] = (total - v[3] - v[4], total)
    return out


class SyscallCount:
    """`perf stat -e raw_syscalls:sys_enter` attached to each process (every thread) for one
    measured run: system calls per request do not move with the VM's speed the way CPU time
    does. A process perf cannot attach to gets None."""

    def __init__(self, pids):
        self.procs = {}
        for name, pid in pids.items():
            self.procs[name] = subprocess.Popen(
                ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", str(pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                text=True)
        time.sleep(0.3)  # perf attaches before the run starts

    def stop(self):
        out = {}
        for name, p in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            try:
                _, err = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                err = ""
            out[name] = None
            for line in (err or "").splitlines():
                fields = line.split(",")
                if len(fields) > 2 and "raw_syscalls:sys_enter" in line and fields[0].strip().isdigit():
                    out[name] = int(fields[0])
        return out


def overlay_streams_in(node):
    """routemesh_overlay_streams_total{direction="in"} on `node`, or None."""
    try:
        body = node.metrics(timeout=5)
    except (OSError, AssertionError):
        return None
    total = 0.0
    for line in body.splitlines():
        if line.startswith("routemesh_overlay_streams_total{") and 'direction="in"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


# ------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------

class Nginx:
    """An nginx master started through `args` (which exec it, so the pid is the master's)."""

    def __init__(self, args, conf, log):
        self.log = log
        with open(log, "wb") as out:
            self.p = subprocess.Popen(args + ["nginx", "-p", os.path.dirname(conf), "-c", conf],
                                      stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.workers = []

    def alive(self):
        return self.p.poll() is None

    def pids(self):
        return [self.p.pid] + self.workers

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        for w in self.workers:  # a worker outlives a killed master
            with contextlib.suppress(OSError):
                os.kill(w, signal.SIGKILL)


def ns_python(ns_args, code, timeout=20):
    """Runs `python3 -c code` with the `ns_args` prefix; returns its exit code."""
    r = subprocess.run(ns_args + [sys.executable, "-c", code], capture_output=True, timeout=timeout)
    return r.returncode


def connect_code(ip, port, timeout=1):
    return ("import socket,sys\ns=socket.socket();s.settimeout(%s)\n"
            "sys.exit(s.connect_ex(('%s',%d)))" % (timeout, ip, port))


def wait_nginx(ng, ns_args, ip, port, what):
    """Until nginx accepts on ip:port (probed from `ns_args`'s namespace), 10 s at most; then
    records its workers."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not ng.alive():
            break
        if ns_python(ns_args, connect_code(ip, port)) == 0:
            for _ in range(50):  # the master binds, then forks its worker
                ng.workers = children_of(ng.p.pid)
                if ng.workers:
                    return
                time.sleep(0.05)
            break
        time.sleep(0.1)
    tail = open(ng.log, errors="replace").read()[-500:]
    raise RuntimeError(f"{what} did not start on {ip}:{port}: {tail}")


def check(ip, port):
    """None when GET / with Host: bench.local on ip:port answers 200 "ok\\n", else why not."""
    try:
        st, _, body = harness.http(ip, port, "/", host=HOST, timeout=5)
    except OSError as e:
        return f"GET / on {ip}:{port}: {e!r}"
    if st != 200 or body != SMALL_BODY:
        return f"GET / on {ip}:{port} answered {st} {body[:80]!r}, expected 200 {SMALL_BODY!r}"
    return None


def render(template, out, replacements):
    text = open(template, encoding="utf-8").read()
    for old, new in replacements.items():
        if old not in text:
            raise RuntimeError(f"{os.path.basename(template)} no longer contains {old!r}: "
                               "update bench/overlay.py")
        text = text.replace(old, new)
    code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    left = re.findall(r"@[A-Z_]+@|127\.0\.0\.1", code)
    if left:
        raise RuntimeError(f"{os.path.basename(template)}: {sorted(set(left))} left unfilled")
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


# ------------------------------------------------------------------------------------------
# Measurement
# ------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, a, tmp):
        self.a, self.tmp = a, tmp
        self.rows = {}  # (case, target) -> {round: row}
        self.notes = []

    def run_wrk(self, url, seconds, out_path, pace=0, latency=True):
        args = ["timeout", "-k", "5", str(seconds + 30), "taskset", "-c", CLIENT_CORE, "wrk",
                f"-t{self.a.threads}", f"-c{self.a.connections}", f"-d{seconds}s", "-H", f"Host: {HOST}"]
        if latency:
            args += ["--latency", "-s", os.path.join(HERE, "summary.lua")]
        env = dict(os.environ, RM_RATE=str(pace))
        with open(out_path, "w") as out:
            p = subprocess.Popen(args + [url], stdout=out, stderr=subprocess.STDOUT, env=env,
                                 stdin=subprocess.DEVNULL)
            try:
                return p.wait(seconds + 45)
            except BaseException:
                p.terminate()  # `timeout` passes it on to wrk
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
                p.kill()
                raise

    def na(self, case, target, rnd, reason):
        self.rows.setdefault((case, target), {})[rnd] = {"status": "na", "reason": reason}
        print(f"[bench] [r{rnd} {case}] {LABELS[target]}: n/a ({reason})", file=sys.stderr)

    def measure(self, case, target, rnd, ip, port, procs, pace, streams_node, idle=None):
        """procs: {name: (pid, alive())}; their utime+stime over the measured run is the proxy
        CPU. streams_node: the node whose accepted overlay streams are counted (warm-up and
        run: HTTP keeps overlay streams open between requests, so most open in the warm-up).
        idle: {name: pid} of processes that get no traffic in this run; their CPU is recorded
        as their idle cost."""
        dead = [n for n, (_, alive) in procs.items() if not alive()]
        if dead:
            return self.na(case, target, rnd, f"process exited: {', '.join(dead)}")
        url = f"http://{ip}:{port}/"
        streams0 = overlay_streams_in(streams_node) if streams_node else None
        if self.a.warmup > 0:
            self.run_wrk(url, self.a.warmup, os.path.join(self.tmp, "warmup.txt"), latency=False)
        out = os.path.join(self.tmp, f"wrk-{case}-{target}-r{rnd}.txt")
        counting = SyscallCount({n: pid for n, (pid, _) in procs.items()}) if self.a.syscalls else None
        t0 = {n: ticks_or_none(pid) for n, (pid, _) in procs.items()}
        i0 = {n: ticks_or_none(pid) for n, pid in (idle or {}).items()}
        w0 = time.monotonic()
        c0 = core_jiffies()
        rc = self.run_wrk(url, self.a.duration, out, pace=pace)
        c1 = core_jiffies()
        w1 = time.monotonic()
        i1 = {n: ticks_or_none(pid) for n, pid in (idle or {}).items()}
        t1 = {n: ticks_or_none(pid) for n, (pid, _) in procs.items()}
        syscalls = counting.stop() if counting else None
        streams1 = overlay_streams_in(streams_node) if streams_node else None
        time.sleep(0.2)  # a proxy that dies from wrk's closing connections does so right after
        dead = [n for n, (_, alive) in procs.items() if not alive() or t0[n] is None or t1[n] is None]
        if dead:
            return self.na(case, target, rnd, f"process exited under load: {', '.join(dead)}")
        if rc != 0:
            tail = open(out, errors="replace").read().strip().splitlines()[-1:]
            return self.na(case, target, rnd, f"wrk failed or timed out (status {rc}): {tail}")
        row = report.parse_wrk(out)
        if row["status"] != "ok" or not row.get("requests"):
            return self.na(case, target, rnd, row.get("reason", "no request counted"))
        n = row["requests"]
        row["cpu_s"] = {k: (t1[k] - t0[k]) / CLK_TCK for k in procs}
        row["cpu_us_per_req"] = sum(row["cpu_s"].values()) * 1e6 / n
        row["cpu_us_per_req_by_process"] = {k: v * 1e6 / n for k, v in row["cpu_s"].items()}
        # (perf counts from its attach to its stop, a little wider than wrk's run: the
        # processes are idle then, apart from their background ticks.)
        row["syscalls_per_req_by_process"] = (None if syscalls is None else
                                              {k: (v / n if v is not None else None)
                                               for k, v in syscalls.items()})
        busy = c1[PROXY_CORE][0] - c0[PROXY_CORE][0]
        total = c1[PROXY_CORE][1] - c0[PROXY_CORE][1]
        row["core0_busy_pct"] = 100.0 * busy / total if total else None
        row["core0_us_per_req"] = busy / CLK_TCK * 1e6 / n if total else None
        row["idle_cpu_ms_per_s"] = {k: (i1[k] - i0[k]) / CLK_TCK * 1e3 / (w1 - w0) for k in i0
                                    if i0[k] is not None and i1[k] is not None}
        row["overlay_streams_in"] = (None if streams0 is None or streams1 is None
                                     else int(streams1 - streams0))
        row["wrk_output"] = os.path.basename(out)  # in bench/results/overlay-raw/
        self.rows.setdefault((case, target), {})[rnd] = row
        print(f"[bench] [r{rnd} {case}] {LABELS[target]}: {row['requests_per_s']:,.0f} req/s, "
              f"{row['cpu_us_per_req']:.1f} us CPU/req", file=sys.stderr)

    def cases(self):
        out = [("max", None)]
        if self.a.rate > 0:
            out.append(("paced", self.a.rate))
        return out


def summarize(per_round):
    ok = [r for r in per_round.values() if r["status"] == "ok"]
    if not ok:
        return {"status": "na", "reason": "; ".join(sorted({r["reason"] for r in per_round.values()}))
                or "not measured"}
    row = {"status": "ok", "rounds": len(ok), "rounds_na": len(per_round) - len(ok)}
    for k in ("requests_per_s", "p50_ms", "p99_ms", "cpu_us_per_req", "core0_us_per_req",
              "core0_busy_pct", "overlay_streams_in"):
        row[k] = report.median(r.get(k) for r in ok)
    row["by_process"] = {p: report.median(r["cpu_us_per_req_by_process"][p] for r in ok)
                         for p in ok[0]["cpu_us_per_req_by_process"]}
    row["syscalls_by_process"] = None
    if all(r.get("syscalls_per_req_by_process") for r in ok):
        row["syscalls_by_process"] = {
            p: report.median(r["syscalls_per_req_by_process"][p] for r in ok)
            for p in ok[0]["syscalls_per_req_by_process"]}
    rps = [r["requests_per_s"] for r in ok]
    row["requests_per_s_min"], row["requests_per_s_max"] = min(rps), max(rps)
    row["errors"] = sum(r["errors"] for r in ok)
    row["non_2xx"] = sum(r["non_2xx"] for r in ok)
    row["socket_errors"] = {k: sum(r["socket_errors"][k] for r in ok) for k in ok[0]["socket_errors"]}
    row["rounds_na_reasons"] = sorted({r["reason"] for r in per_round.values() if r["status"] != "ok"})
    return row


HEAD = "  %-16s %20s %8s %8s %8s %10s %12s %7s %7s"
RATIO_METRICS = ("cpu_us_per_req", "core0_us_per_req", "requests_per_s", "p99_ms")


def per_round_ratios(rows, case, subject, ref):
    s_rounds, r_rounds = rows.get((case, subject), {}), rows.get((case, ref), {})
    out = {k: {} for k in RATIO_METRICS}
    for rnd in sorted(set(s_rounds) & set(r_rounds)):
        s, r = s_rounds[rnd], r_rounds[rnd]
        if s["status"] != "ok" or r["status"] != "ok" or s["errors"] or r["errors"]:
            continue
        for k in RATIO_METRICS:
            out[k][rnd] = report.ratio(s.get(k), r.get(k))
    return out


def print_report(bench, a, meta):
    rows = bench.rows
    notes = bench.notes
    out = {"generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "settings": meta, "cases": {}, "goal": {}}
    print()
    print("routemesh overlay bench: CPU and latency of a request that crosses the ingress overlay "
          "(wrk -> n1 -> overlay -> n2 -> task) vs a local hop (wrk -> n2 -> task), and vs nginx")
    print(f"  {a.rounds} round(s) of wrk -t{a.threads} -c{a.connections} -d{a.duration}s "
          f"(+{a.warmup}s warm-up), Host: {HOST}, GET / -> \"ok\\n\" (3 bytes)")
    print(f"  2 network namespaces on a bridge ({meta['bridge_prefix']}.0/24), cluster n1 (manager) + "
          f"n2 (worker), threads 1 each; backend nginx on {TASK_IP} in n2's namespace")
    print(f"  core {PROXY_CORE}: both routemesh nodes, nginx proxy; core {CLIENT_CORE}: wrk (root namespace) "
          "+ backend nginx")
    print(f"  load average at start: {meta['load_before']}, at end: {meta['load_after']}")
    print("  rows: median over the rounds (req/s range in brackets); per-request figures in microseconds:")
    print("    cpu/req = utime+stime of the proxy processes (routemesh: n1 + n2; nginx: master + worker) "
          "/ requests; n1+n2/req = the same per node")
    print("    core0/req = busy time of core 0 (user+system+softirq, /proc/stat; every process on it) "
          "/ requests; ovl in = overlay streams n2 accepted (warm-up + run)")
    for case, pace in bench.cases():
        if case == "max":
            title = "(a) small response, as fast as wrk can"
        else:
            title = f"(b) small response at a fixed offered rate of {pace:,} req/s (equal load)"
        print()
        print(title)
        print(HEAD % ("target", "req/s", "p50", "p99", "cpu/req", "core0/req", "n1+n2/req",
                      "ovl in", "errors"))
        summaries = {}
        for key, label, path in TARGETS:
            r = summarize(rows.get((case, key), {}))
            summaries[key] = r
            if r["status"] != "ok":
                print("  %-16s n/a" % label)
                notes.append(f"{case}/{label}: {r['reason']}")
                continue
            if r["rounds_na"]:
                notes.append(f"{case}/{label}: {r['rounds_na']} round(s) not measured: "
                             + "; ".join(r["rounds_na_reasons"]))
            rps = "{:,.0f}".format(r["requests_per_s"])
            if r["rounds"] > 1:
                rps += " ({:.0f}-{:.0f}k)".format(r["requests_per_s_min"] / 1e3,
                                                 r["requests_per_s_max"] / 1e3)
            split = "-"
            if key != "nginx":
                split = "%.1f+%.1f" % (r["by_process"]["n1"], r["by_process"]["n2"])
            streams = "-" if r["overlay_streams_in"] is None else "%d" % r["overlay_streams_in"]
            err = str(r["errors"]) + (" !" if r["errors"] else "")
            print(HEAD % (
                label, rps, report.fmt_ms(r["p50_ms"]), report.fmt_ms(r["p99_ms"]),
                report.fmt_num(r["cpu_us_per_req"], "{:.1f}"),
                report.fmt_num(r["core0_us_per_req"], "{:.1f}"), split, streams, err))
            sc = r.get("syscalls_by_process")
            if sc:
                print("  %-16s system calls per request: %s" % ("", ", ".join(
                    "%s %s" % (k, "n/a" if v is None else "%.2f" % v) for k, v in sc.items())))
            if r["errors"]:
                notes.append(f"{case}/{label}: {r['non_2xx']} non-2xx, socket errors {r['socket_errors']}")
            if pace and r["requests_per_s_min"] < 0.98 * pace:
                notes.append(f"{case}/{label}: reached {r['requests_per_s_min']:.0f} req/s in its slowest "
                             f"round, below the offered {pace}: not at equal load")
        ratios = {}
        for subject, ref, name in (("overlay", "local", "overlay / local"),
                                   ("local", "nginx", "local / nginx")):
            per = per_round_ratios(rows, case, subject, ref)
            med = {k: report.median(v.values()) for k, v in per.items()}
            ratios[name] = {"median": med, "per_round": per}
            print("  %-18s cpu/req %s%s  core0/req %s  req/s %s%s  p99 %s" % (
                name + ":", report.fmt_ratio(med["cpu_us_per_req"]),
                report.fmt_range(per["cpu_us_per_req"].values()),
                report.fmt_ratio(med["core0_us_per_req"]), report.fmt_ratio(med["requests_per_s"]),
                report.fmt_range(per["requests_per_s"].values()), report.fmt_ratio(med["p99_ms"])))
        # the goal: an overlay hop costs at most 1.3x a local hop's CPU per request
        per = ratios["overlay / local"]["per_round"]["cpu_us_per_req"]
        vals = {rnd: v for rnd, v in per.items() if v is not None}
        clean = all(summaries[k]["status"] == "ok" and not summaries[k]["errors"]
                    for k in ("overlay", "local"))
        if vals and clean:
            med = report.median(vals.values())
            ok = med <= 1.3
            met = sum(1 for v in vals.values() if v <= 1.3)
            print("  goal: overlay-hop cpu/req <= 1.3x local-hop ... %s  (median of per-round "
                  "ratios %.2fx; met in %d/%d rounds)" % ("PASS" if ok else "FAIL", med, met, len(vals)))
            out["goal"][case] = {"median_ratio": med, "pass": ok, "rounds_met": met, "rounds": len(vals)}
        else:
            print("  goal: overlay-hop cpu/req <= 1.3x local-hop ... n/a (a row is missing or has errors)")
            out["goal"][case] = None
        idle = {}
        for r in rows.get((case, "nginx"), {}).values():
            for k, v in (r.get("idle_cpu_ms_per_s") or {}).items():
                idle.setdefault(k, []).append(v)
        if idle:
            print("  routemesh nodes with no traffic (during the nginx runs): "
                  + ", ".join("%s %.1f ms CPU/s" % (k, report.median(v)) for k, v in sorted(idle.items()))
                  + " (included in their cpu/req)")
        out["cases"][case] = {"title": title, "offered_rate": pace, "rows": summaries,
                              "per_round": {k: rows.get((case, k), {}) for k, _, _ in TARGETS},
                              "ratios": ratios}
    if notes:
        print()
        print("notes:")
        for n in notes:
            print("  - " + n)
    out["notes"] = notes
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2, default=str)
        f.write("\n")
    print()
    print(f"results: {a.out}")


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


def positive(v):
    n = int(v)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return n


def non_negative(v):
    n = int(v)
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return n


def main():
    ap = argparse.ArgumentParser(prog="bench/overlay.sh", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=positive, default=3)
    ap.add_argument("--duration", type=positive, default=5, help="seconds per measured wrk run")
    ap.add_argument("--rate", type=non_negative, default=20000,
                    help="offered req/s of the paced case (0 skips it)")
    ap.add_argument("--connections", type=positive, default=50)
    ap.add_argument("--threads", type=positive, default=1, help="wrk threads")
    ap.add_argument("--warmup", type=non_negative, default=1, help="unmeasured wrk seconds before each run")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "overlay.json"))
    ap.add_argument("--syscalls", action="store_true",
                    help="count each proxy process's system calls per request with perf stat "
                         "(linux-perf; the tracepoint adds a little CPU to every call)")
    a = ap.parse_args()
    if a.syscalls and shutil.which("perf") is None:
        ap.error("--syscalls needs perf (Debian package linux-perf)")
    if a.connections < a.threads:
        ap.error("--connections must be >= --threads")
    if (os.cpu_count() or 1) < 2:
        sys.exit("need at least 2 CPU cores (proxies on core 0, wrk + backend on core 1)")
    for tool in ("wrk", "nginx", "taskset", "timeout", "ip"):
        if shutil.which(tool) is None:
            sys.exit(f"missing tool: {tool}")
    why = cluster.Netns.available()
    if why:
        sys.exit(f"network namespaces unavailable: {why}")
    version = subprocess.run([cluster.bin_path(), "version"], capture_output=True, text=True,
                             timeout=10)
    if version.returncode != 0:
        sys.exit(f"'{cluster.bin_path()} version' failed (status {version.returncode}): "
                 f"{version.stderr.strip()}")

    # Every step is bounded (wrk by timeout, start-ups by their own limits); the whole run is
    # capped as well, and any of these signals unwinds through the cleanup below.
    n_cases = 2 if a.rate > 0 else 1
    budget = 180 + a.rounds * len(TARGETS) * n_cases * (a.duration + a.warmup + 15)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(s, on_signal)
    signal.alarm(budget)

    tmp = tempfile.mkdtemp(prefix="routemesh-overlay-bench.")
    os.chmod(tmp, 0o755)  # nginx workers may run unprivileged
    for d in ("backend-tmp", "nginx-tmp", "www"):
        os.makedirs(os.path.join(tmp, d))
    meta = {"rounds": a.rounds, "duration_s": a.duration, "rate": a.rate,
            "connections": a.connections, "wrk_threads": a.threads, "warmup_s": a.warmup,
            "routemesh": version.stdout.strip().splitlines()[0] if version.stdout.strip() else "n/a",
            "binary": cluster.bin_path(), "host": platform.node(), "cpus": os.cpu_count(),
            "load_before": loadavg(), "budget_s": budget, "syscalls": a.syscalls}
    bench = Bench(a, tmp)
    stack = contextlib.ExitStack()
    status = 0
    try:
        def later(fn, *args):
            """Registers a cleanup step; one that fails does not stop the others."""
            def step():
                try:
                    fn(*args)
                except Exception as e:  # noqa: BLE001 - reported, the next steps still run
                    print(f"[bench] cleanup: {type(e).__name__}: {e}", file=sys.stderr)
            stack.callback(step)

        later(shutil.rmtree, tmp, True)
        # --- topology: built with signals held so an interrupt cannot strand half of it
        prefix = free_prefix()
        meta["bridge_prefix"] = prefix
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            netns = BenchNetns(2, prefix=prefix)
            later(netns.close)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        n1_ip, n2_ip = netns.ips
        meta["namespaces"] = list(netns.names)
        cluster._ip("-n", netns.ns_of(n2_ip), "addr", "add", f"{TASK_IP}/32", "dev", "lo")
        in_n1 = netns.exec_args(n1_ip, CLIENT_CORE)
        in_n2_client = netns.exec_args(n2_ip, CLIENT_CORE)
        in_n2_proxy = netns.exec_args(n2_ip, PROXY_CORE)

        # --- backend: bench/'s backend nginx, on the task address in n2's namespace
        render(os.path.join(HERE, "backend-nginx.conf.tmpl"), os.path.join(tmp, "backend.conf"),
               {"@DIR@": tmp, f"127.0.0.1:@BACKEND_PORT@": f"{TASK_IP}:{BACKEND_PORT}"})
        render(os.path.join(HERE, "nginx.conf.tmpl"), os.path.join(tmp, "nginx.conf"),
               {"@DIR@": tmp, "127.0.0.1:@BACKEND_PORT@": f"{TASK_IP}:{BACKEND_PORT}",
                "127.0.0.1:@NGINX_PORT@": f"{n2_ip}:{NGINX_PORT}"})
        backend = Nginx(in_n2_client, os.path.join(tmp, "backend.conf"), os.path.join(tmp, "backend.log"))
        later(backend.stop)
        wait_nginx(backend, in_n2_client, TASK_IP, BACKEND_PORT, "backend nginx")
        if ns_python(in_n1, connect_code(TASK_IP, BACKEND_PORT)) == 0:
            raise RuntimeError(f"n1's namespace reaches {TASK_IP} directly: the overlay hop would "
                               "not need the overlay")

        # --- cluster: n1 manager, n2 worker; one service whose one task is on n2
        c = cluster.Cluster(None, ["manager", "worker"], netns=netns)
        later(c.stop)
        c.start()
        n1, n2 = c.nodes
        lead = c.leader()
        s, b = lead.api("POST", "/v1/services", {"name": "bench", "labels": {"mesh.http": HOST}})
        if s != 201:
            raise RuntimeError(f"creating the service: {s} {b}")
        s, b = lead.api("POST", "/v1/tasks", {"service": "bench", "node": "n2",
                                              "address": f"{TASK_IP}:{BACKEND_PORT}"})
        if s != 201:
            raise RuntimeError(f"creating the task: {s} {b}")
        c.wait_converged()
        for node in (n1, n2):
            harness.wait_until(lambda: check(node.ip, cluster.HTTP_PORT) is None, 15,
                               what=f"{HOST} routed on {node.name}")
        for node in (n1, n2):
            with open(f"/proc/{node.proc.p.pid}/comm") as f:
                comm = f.read().strip()
            if comm != "routemesh":
                raise RuntimeError(f"{node.name}'s pid {node.proc.p.pid} is {comm!r}, not routemesh")
        rm_procs = {n.name: (n.proc.p.pid, (lambda n=n: n.alive)) for n in (n1, n2)}

        def bench_local(rnd):
            why = check(n2.ip, cluster.HTTP_PORT)
            for case, pace in bench.cases():
                if why:
                    bench.na(case, "local", rnd, why)
                else:
                    bench.measure(case, "local", rnd, n2.ip, cluster.HTTP_PORT, rm_procs, pace or 0, n2)

        def bench_overlay(rnd):
            why = check(n1.ip, cluster.HTTP_PORT)
            for case, pace in bench.cases():
                if why:
                    bench.na(case, "overlay", rnd, why)
                else:
                    bench.measure(case, "overlay", rnd, n1.ip, cluster.HTTP_PORT, rm_procs, pace or 0, n2)

        def bench_nginx(rnd):
            ng = Nginx(in_n2_proxy, os.path.join(tmp, "nginx.conf"), os.path.join(tmp, "nginx.log"))
            try:
                try:
                    wait_nginx(ng, in_n2_client, n2_ip, NGINX_PORT, "nginx proxy")
                    why = check(n2_ip, NGINX_PORT)
                except RuntimeError as e:
                    why = str(e)
                procs = {"nginx": (ng.p.pid, ng.alive)}
                # Named by position, not pid: nginx starts afresh each round, and the rounds'
                # per-process figures are matched by name.
                procs.update({f"nginx worker {i}": (w, (lambda w=w: os.path.exists(f"/proc/{w}")))
                              for i, w in enumerate(ng.workers, start=1)})
                for case, pace in bench.cases():
                    if why:
                        bench.na(case, "nginx", rnd, why)
                    else:
                        bench.measure(case, "nginx", rnd, n2_ip, NGINX_PORT, procs, pace or 0, None,
                                      idle={k: pid for k, (pid, _) in rm_procs.items()})
            finally:
                ng.stop()

        order = [bench_local, bench_overlay, bench_nginx]
        print(f"[bench] {a.rounds} round(s); namespaces {', '.join(netns.names)}; "
              f"n1 {n1_ip}, n2 {n2_ip}, task {TASK_IP}:{BACKEND_PORT}", file=sys.stderr)
        for rnd in range(1, a.rounds + 1):
            # the order rotates each round so slow drift does not always favour one target
            for i in range(len(order)):
                order[(rnd - 1 + i) % len(order)](rnd)
        meta["load_after"] = loadavg()
        meta["nginx"] = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
        meta["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.strip().splitlines()[:1]
        signal.alarm(0)
        raw = os.path.join(HERE, "results", "overlay-raw")
        shutil.rmtree(raw, ignore_errors=True)
        os.makedirs(raw)
        for name in os.listdir(tmp):
            if name.endswith((".txt", ".log", ".conf")):
                shutil.copy(os.path.join(tmp, name), raw)
        for node in (n1, n2):
            with open(os.path.join(raw, f"{node.name}.log"), "w") as f:
                f.write(node.log_tail(200) + "\n")
        print_report(bench, a, meta)
    except Interrupted as e:
        print(f"[bench] interrupted ({e}): cleaning up", file=sys.stderr)
        status = 130 if str(e) == "SIGINT" else 143
        if str(e) == "SIGALRM":
            print(f"[bench] the run exceeded its {budget} s budget", file=sys.stderr)
            status = 124
    except Exception as e:  # a failed set-up is reported, with the nodes' last log lines
        print(f"[bench] failed: {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
    finally:
        # no second signal may cut the cleanup short
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        signal.alarm(0)
        stack.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
