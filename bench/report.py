#!/usr/bin/env python3
"""Turns the wrk outputs listed by bench/run.sh into a table (stdout) and a JSON file.

Each target is measured once per round. A row shows the median over the rounds; a ratio
line divides the subject by the reference within each round (both ran minutes apart at
most) and shows the median of those ratios with their range. The floor and aim verdicts
use the median ratios, and say in how many rounds the condition held.

Requests/s, p50 and p99 come from wrk's own text (--latency); MiB/s comes from the exact
byte count and duration that bench/summary.lua prints, falling back to Transfer/sec; core
busy time comes from the RMCPU line run.sh appends (/proc/stat deltas over the run).
Standard library only.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys

CASES = [
    ("small", "(a) small response: GET / -> \"ok\\n\" (3 bytes)",
     ["backend", "nginx", "haproxy", "routemesh"], "routemesh", ["nginx", "haproxy"]),
    ("paced", "(a') small response at a fixed offered rate (latency at equal load)",
     ["backend", "nginx", "haproxy", "routemesh"], "routemesh", ["nginx", "haproxy"]),
    ("1m", "(b) 1 MiB response: GET /1m, HTTP proxying",
     ["backend", "nginx", "haproxy", "routemesh"], "routemesh", ["nginx", "haproxy"]),
    ("paced1m", "(b') 1 MiB response at a fixed offered rate (latency at equal load)",
     ["backend", "nginx", "haproxy", "routemesh"], "routemesh", ["nginx", "haproxy"]),
    ("l4small", "(c) layer 4, small response: GET / through a TCP proxy (routemesh L4 port, "
     "nginx stream, HAProxy mode tcp)",
     ["backend", "nginx-stream", "haproxy-tcp", "routemesh-l4"], "routemesh-l4",
     ["nginx-stream", "haproxy-tcp"]),
    ("l4", "(c') layer 4, 1 MiB response: GET /1m through a TCP proxy",
     ["backend", "nginx-stream", "haproxy-tcp", "routemesh-l4"], "routemesh-l4",
     ["nginx-stream", "haproxy-tcp"]),
]
METRICS = ("requests_per_s", "p50_ms", "p99_ms", "mib_per_s", "core0_busy_pct",
           "core1_busy_pct", "core0_us_per_req")
TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_ticks(pid):
    """utime + stime of process `pid` (all its threads), in clock ticks (CLK_TCK a second)."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    return int(fields[11]) + int(fields[12])


def ticks_or_none(pid):
    try:
        return proc_ticks(pid)
    except (OSError, ValueError, IndexError):  # the process is gone
        return None


def children_of(pid):
    """The pids whose parent is `pid` (an nginx master's workers)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        if int(s[s.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(d))
    return out


def parse_time_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * TIME_UNITS[m.group(2)] if m else None


def parse_kv_line(text, tag):
    m = re.search(r"^%s (.*)$" % tag, text, re.M)
    if not m:
        return {}
    return {k: int(float(v)) for k, v in (kv.split("=", 1) for kv in m.group(1).split())}


def parse_wrk(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    row = {"status": "ok"}
    m = re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M)
    if not m:
        return {"status": "na", "reason": "no Requests/sec in wrk output"}
    row["requests_per_s"] = float(m.group(1))
    for pct in ("50", "99"):
        m = re.search(r"^\s*%s%%\s+(\S+)" % pct, text, re.M)
        row["p%s_ms" % pct] = parse_time_ms(m.group(1)) if m else None
    exact = parse_kv_line(text, "RMBENCH")
    if exact.get("duration_us"):
        row["requests"] = exact["requests"]
        row["bytes"] = exact["bytes"]
        row["duration_s"] = exact["duration_us"] / 1e6
        row["mib_per_s"] = exact["bytes"] / MIB / row["duration_s"]
    else:
        m = re.search(r"^Transfer/sec:\s*([0-9.]+)([KMGT]?B)", text, re.M)
        row["mib_per_s"] = float(m.group(1)) * SIZE_UNITS[m.group(2)] / MIB if m else None
    cpu = parse_kv_line(text, "RMCPU")
    for core in ("core0", "core1"):
        total = cpu.get(core + "_total")
        row[core + "_busy_pct"] = 100.0 * cpu[core + "_busy"] / total if total else None
    if cpu.get("core0_total") and row.get("requests"):
        row["core0_us_per_req"] = cpu["core0_busy"] * 1e6 / CLK_TCK / row["requests"]
    else:
        row["core0_us_per_req"] = None
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    row["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    names = ("connect", "read", "write", "timeout")
    row["socket_errors"] = dict(zip(names, map(int, m.groups()))) if m else dict.fromkeys(names, 0)
    row["errors"] = row["non_2xx"] + sum(row["socket_errors"].values())
    return row


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "n/a" if r is None else "%.2fx" % r


def fmt_range(values):
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    return " (%.2f-%.2f)" % (min(values), max(values))


def fmt_ms(v):
    if v is None:
        return "n/a"
    return "%.0fus" % (v * 1e3) if v < 1 else "%.2fms" % v


def fmt_num(v, pattern):
    return "-" if v is None else pattern.format(v)


def summarize(per_round):
    """Median row over the rounds that measured; n/a when no round did."""
    ok = [r for r in per_round.values() if r["status"] == "ok"]
    if not ok:
        reasons = sorted({r["reason"] for r in per_round.values()})
        return {"status": "na", "reason": "; ".join(reasons) or "not measured"}
    row = {"status": "ok", "rounds": len(ok), "rounds_na": len(per_round) - len(ok)}
    for k in METRICS:
        row[k] = median(r.get(k) for r in ok)
    rps = [r["requests_per_s"] for r in ok]
    row["requests_per_s_min"], row["requests_per_s_max"] = min(rps), max(rps)
    row["errors"] = sum(r["errors"] for r in ok)
    row["non_2xx"] = sum(r["non_2xx"] for r in ok)
    row["socket_errors"] = {k: sum(r["socket_errors"][k] for r in ok)
                            for k in ok[0]["socket_errors"]}
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--json", required=True)
    for name in ("duration", "connections", "threads", "warmup", "rounds", "rate"):
        ap.add_argument("--" + name, type=int, required=True)
    ap.add_argument("--rate-1m", type=int, default=0)
    ap.add_argument("--loadavg-start", default="n/a")
    for name in ("routemesh-version", "nginx-version", "haproxy-version", "wrk-version"):
        ap.add_argument("--" + name, default="n/a")
    args = ap.parse_args()

    # raw[case][target][round] = parsed wrk output or an n/a record
    raw = {}
    with open(args.manifest, encoding="utf-8") as f:
        for line in f:
            case, target, rnd, status, detail = line.rstrip("\n").split("\t", 4)
            raw.setdefault(case, {}).setdefault(target, {})[int(rnd)] = (
                parse_wrk(detail) if status == "ok" else {"status": "na", "reason": detail})
    for l4case, same in (("l4", "1m"), ("l4small", "small")):
        if l4case in raw and "backend" not in raw[l4case] and "backend" in raw.get(same, {}):
            # The direct row of (c) is the same request as (a)'s or (b)'s: measured once.
            raw[l4case]["backend"] = raw[same]["backend"]

    loadavg = None
    try:
        loadavg = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    out = {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"hostname": platform.node(), "cpus": os.cpu_count(),
                 "loadavg_at_start": args.loadavg_start.split(), "loadavg_at_end": loadavg},
        "settings": {
            "wrk": "-t%d -c%d -d%ds --latency -H 'Host: bench.local'"
                   % (args.threads, args.connections, args.duration),
            "rounds": args.rounds, "paced_rate": args.rate, "paced_1m_rate": args.rate_1m,
            "warmup_s": args.warmup, "proxy_core": 0, "client_and_backend_core": 1,
            "backend": "nginx, worker_processes 1",
        },
        "versions": {"routemesh": args.routemesh_version, "nginx": args.nginx_version,
                     "haproxy": args.haproxy_version, "wrk": args.wrk_version},
        "cases": {}, "checks": {},
    }

    print()
    print("routemesh bench: %d round(s) of wrk -t%d -c%d -d%ds (+%ds warm-up), Host: bench.local; "
          "proxy on core 0 (1 worker), wrk + backend nginx on core 1"
          % (args.rounds, args.threads, args.connections, args.duration, args.warmup))
    print("load average at start: %s" % args.loadavg_start)
    print("load average at end: %s" % (" ".join(loadavg) if loadavg else "n/a"))
    print("rows: median over the rounds; req/s range in brackets; core0 = the proxy's core, "
          "busy % and busy microseconds per request (user + system + softirq)")
    notes = []
    round_ratios = {}  # (case, subject/ref) -> {metric: {round: ratio}}
    for case, title, targets, subject, refs in CASES:
        case_rate = {"paced": args.rate, "paced1m": args.rate_1m}.get(case)
        if case_rate is not None:
            if case_rate == 0:
                continue
            title = title.replace("fixed offered rate", "fixed offered rate of {:,} req/s".format(
                case_rate))
        per_target = raw.get(case, {})
        rows = {t: summarize(per_target.get(t, {})) for t in targets}
        print()
        print(title)
        print("  %-14s %21s %9s %9s %8s %7s %8s %7s" % (
            "target", "req/s", "p50", "p99", "MiB/s", "core0", "us/req", "errors"))
        for t in targets:
            r = rows[t]
            if r["status"] != "ok":
                label = "n/a"
                if r["reason"].startswith("not running"):
                    label = "n/a (not running)"
                elif r["reason"].startswith("process exited"):
                    label = "n/a (process exited)"
                print("  %-14s %s" % (t, label))
                notes.append("%s/%s: %s" % (case, t, r["reason"]))
                continue
            if r["rounds_na"]:
                notes.append("%s/%s: %d round(s) not measured: %s" % (
                    case, t, r["rounds_na"], "; ".join(sorted({
                        x["reason"] for x in per_target[t].values() if x["status"] != "ok"}))))
            rps = "{:,.0f}".format(r["requests_per_s"])
            if r["rounds"] > 1:
                rps += " ({:.0f}-{:.0f}k)".format(r["requests_per_s_min"] / 1e3,
                                                 r["requests_per_s_max"] / 1e3)
            mib = (fmt_num(r["mib_per_s"], "{:.1f}") if case not in ("small", "paced", "l4small")
                   else "-")
            core0 = "-" if t == "backend" else fmt_num(r["core0_busy_pct"], "{:.0f}%")
            us = "-" if t == "backend" else fmt_num(r["core0_us_per_req"], "{:.1f}")
            err = str(r["errors"]) + (" !" if r["errors"] else "")
            label = t + ({"l4": " (=b)", "l4small": " (=a)"}.get(case, "") if t == "backend"
                         else "")
            print("  %-14s %21s %9s %9s %8s %7s %8s %7s" % (
                label, rps, fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]), mib, core0, us, err))
            if r["errors"]:
                notes.append("%s/%s: %d non-2xx, socket errors %s" % (
                    case, t, r["non_2xx"], r["socket_errors"]))
            if case_rate and r["requests_per_s_min"] < 0.98 * case_rate:
                notes.append("%s/%s: reached %.0f req/s in its slowest round, below the "
                             "offered %d: its latency is not at equal load" % (
                                 case, t, r["requests_per_s_min"], case_rate))
        ratios = {}
        for ref in refs:
            per = {k: {} for k in ("requests_per_s", "p50_ms", "p99_ms", "mib_per_s",
                                   "core0_us_per_req")}
            subj_rounds = per_target.get(subject, {})
            ref_rounds = per_target.get(ref, {})
            for rnd in sorted(set(subj_rounds) & set(ref_rounds)):
                s, b = subj_rounds[rnd], ref_rounds[rnd]
                if s["status"] != "ok" or b["status"] != "ok":
                    continue
                for k in per:
                    per[k][rnd] = ratio(s.get(k), b.get(k))
            key = "%s/%s" % (subject, ref)
            round_ratios[(case, key)] = per
            rr = {k: median(v.values()) for k, v in per.items()}
            ratios[key] = {"median": rr, "per_round": per}
            parts = ["req/s %s%s" % (fmt_ratio(rr["requests_per_s"]),
                                     fmt_range(per["requests_per_s"].values())),
                     "p99 %s%s" % (fmt_ratio(rr["p99_ms"]), fmt_range(per["p99_ms"].values())),
                     "p50 %s" % fmt_ratio(rr["p50_ms"])]
            if case not in ("small", "paced", "l4small"):
                parts.append("MiB/s %s" % fmt_ratio(rr["mib_per_s"]))
            parts.append("core0 us/req %s" % fmt_ratio(rr["core0_us_per_req"]))
            print("  %-27s %s" % ("%s / %s:" % (subject, ref), "  ".join(parts)))
        out["cases"][case] = {"title": title, "rows": rows, "per_round": per_target,
                              "ratios": ratios}

    def clean(case, t):
        r = out["cases"].get(case, {}).get("rows", {}).get(t, {})
        return r.get("status") == "ok" and r["errors"] == 0

    def check(parts, cond):
        """parts: [(name, case, subject/ref key, metric)]. Median verdict (cond over the medians
        of the per-round ratios) and in how many rounds cond held on that round's ratios."""
        series = {}
        for name, case, key, metric in parts:
            subject, ref = key.split("/")
            if not (clean(case, subject) and clean(case, ref)):
                return None, 0, 0
            per = round_ratios.get((case, key), {}).get(metric, {})
            series[name] = {rnd: v for rnd, v in per.items() if v is not None}
        rounds = sorted(set.intersection(*(set(v) for v in series.values())))
        if not rounds:
            return None, 0, 0
        med = {name: median(v.values()) for name, v in series.items()}
        rounds_ok = sum(1 for rnd in rounds if cond({name: v[rnd] for name, v in series.items()}))
        return cond(med), rounds_ok, len(rounds)

    # p99 for the floor is taken at equal load (the paced case): at full speed the client core
    # saturates, and wrk and the backend then share it in scheduler time slices that add
    # milliseconds to whichever proxy drives it hardest. Full-speed p99 is printed above.
    p99_case = "paced" if args.rate else "small"
    checks = [
        ("floor_small_rps_ge_haproxy_and_p99_le_haproxy",
         "floor: small req/s >= 1.0x HAProxy, p99 <= HAProxy%s" % (
             " at equal load" if args.rate else " ......"),
         check([("rps", "small", "routemesh/haproxy", "requests_per_s"),
                ("p99", p99_case, "routemesh/haproxy", "p99_ms")],
               lambda r: r["rps"] >= 1.0 and r["p99"] <= 1.0)),
        ("floor_l4_mib_per_s_ge_haproxy_tcp",
         "floor: L4 1 MiB MiB/s >= 1.0x HAProxy tcp mode ......",
         check([("mib", "l4", "routemesh-l4/haproxy-tcp", "mib_per_s")], lambda r: r["mib"] >= 1.0)),
        ("aim_l4_small_per_core_ge_nginx_stream",
         "aim:   L4 small core0 us/req <= nginx stream ........",
         check([("us", "l4small", "routemesh-l4/nginx-stream", "core0_us_per_req")],
               lambda r: r["us"] <= 1.0)),
        ("aim_small_rps_ge_1.2x_nginx",
         "aim:   small req/s >= 1.2x nginx .....................",
         check([("rps", "small", "routemesh/nginx", "requests_per_s")], lambda r: r["rps"] >= 1.2)),
    ]
    print()
    for key, text, (ok, rounds_ok, n) in checks:
        verdict = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        out["checks"][key] = {"median": ok, "rounds_met": rounds_ok, "rounds": n}
        print("%s %s%s" % (text, verdict, "" if ok is None else
                           "  (median of per-round ratios; met in %d/%d rounds)" % (rounds_ok, n)))
    if notes:
        print()
        print("notes:")
        for n in notes:
            print("  - " + n)
    out["notes"] = notes

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2, sort_keys=False)
        f.write("\n")
    print()
    print("results: %s" % args.json)


if __name__ == "__main__":
    sys.exit(main())
