#!/usr/bin/env python3
"""Turns the wrk outputs listed by bench/run.sh into a table (stdout) and a JSON file.

Requests/s, p50 and p99 come from wrk's own text (--latency); MiB/s comes from the exact
byte count and duration that bench/summary.lua prints, falling back to Transfer/sec.
Standard library only.
"""
import argparse
import datetime
import json
import os
import platform
import re
import sys

CASES = [
    ("small", "(a) small response: GET / -> \"ok\\n\" (3 bytes)",
     ["backend", "nginx", "haproxy", "routemesh"], "routemesh", ["nginx", "haproxy"]),
    ("1m", "(b) 1 MiB response: GET /1m, HTTP proxying",
     ["backend", "nginx", "haproxy", "routemesh"], "routemesh", ["nginx", "haproxy"]),
    ("l4", "(c) layer 4: GET /1m through a TCP proxy (routemesh L4 port vs HAProxy mode tcp)",
     ["backend", "haproxy-tcp", "routemesh-l4"], "routemesh-l4", ["haproxy-tcp"]),
]
TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
MIB = 1024 * 1024


def parse_time_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * TIME_UNITS[m.group(2)] if m else None


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
    m = re.search(r"^RMBENCH (.*)$", text, re.M)
    exact = dict(kv.split("=", 1) for kv in m.group(1).split()) if m else {}
    exact = {k: int(float(v)) for k, v in exact.items()}
    if exact.get("duration_us"):
        row["requests"] = exact["requests"]
        row["bytes"] = exact["bytes"]
        row["duration_s"] = exact["duration_us"] / 1e6
        row["mib_per_s"] = exact["bytes"] / MIB / row["duration_s"]
    else:
        m = re.search(r"^Transfer/sec:\s*([0-9.]+)([KMGT]?B)", text, re.M)
        row["mib_per_s"] = float(m.group(1)) * SIZE_UNITS[m.group(2)] / MIB if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    row["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    names = ("connect", "read", "write", "timeout")
    row["socket_errors"] = dict(zip(names, map(int, m.groups()))) if m else dict.fromkeys(names, 0)
    row["errors"] = row["non_2xx"] + sum(row["socket_errors"].values())
    return row


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "n/a" if r is None else "%.2fx" % r


def fmt_ms(v):
    if v is None:
        return "n/a"
    return "%.0fus" % (v * 1e3) if v < 1 else "%.2fms" % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--json", required=True)
    for name in ("duration", "connections", "threads", "warmup"):
        ap.add_argument("--" + name, type=int, required=True)
    ap.add_argument("--loadavg-start", default="n/a")
    for name in ("routemesh-version", "nginx-version", "haproxy-version", "wrk-version"):
        ap.add_argument("--" + name, default="n/a")
    args = ap.parse_args()

    rows = {}
    with open(args.manifest, encoding="utf-8") as f:
        for line in f:
            case, target, status, detail = line.rstrip("\n").split("\t", 3)
            rows.setdefault(case, {})[target] = (
                parse_wrk(detail) if status == "ok" else {"status": "na", "reason": detail})

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
            "warmup_s": args.warmup, "proxy_core": 0, "client_and_backend_core": 1,
            "backend": "nginx, worker_processes 1",
        },
        "versions": {"routemesh": args.routemesh_version, "nginx": args.nginx_version,
                     "haproxy": args.haproxy_version, "wrk": args.wrk_version},
        "cases": {}, "checks": {},
    }

    print()
    print("routemesh bench: wrk -t%d -c%d -d%ds (+%ds warm-up), Host: bench.local; "
          "proxy on core 0 (1 worker), wrk + backend nginx on core 1"
          % (args.threads, args.connections, args.duration, args.warmup))
    print("load average at start: %s" % args.loadavg_start)
    print("load average at end: %s" % (" ".join(loadavg) if loadavg else "n/a"))
    notes = []
    for case, title, targets, subject, refs in CASES:
        case_rows = rows.get(case, {})
        print()
        print(title)
        print("  %-14s %11s %10s %10s %10s %8s" % ("target", "req/s", "p50", "p99", "MiB/s", "errors"))
        if case == "l4" and "backend" not in case_rows and "backend" in rows.get("1m", {}):
            # The direct row of (c) is the same request as (b)'s: measured once.
            case_rows["backend"] = dict(rows["1m"]["backend"], same_run_as="1m")
        for t in targets:
            r = case_rows.get(t, {"status": "na", "reason": "not measured"})
            if r["status"] != "ok":
                label = "n/a"
                if r["reason"].startswith("not running"):
                    label = "n/a (not running)"
                elif r["reason"].startswith("process exited"):
                    label = "n/a (process exited)"
                print("  %-14s %s" % (t, label))
                notes.append("%s/%s: %s" % (case, t, r["reason"]))
                continue
            mib = "%.1f" % r["mib_per_s"] if case != "small" and r["mib_per_s"] is not None else "-"
            err = str(r["errors"]) + (" !" if r["errors"] else "")
            print("  %-14s %11s %10s %10s %10s %8s" % (
                t + (" (=b)" if r.get("same_run_as") else ""), "{:,.0f}".format(r["requests_per_s"]), fmt_ms(r["p50_ms"]),
                fmt_ms(r["p99_ms"]), mib, err))
            if r["errors"]:
                notes.append("%s/%s: %d non-2xx, socket errors %s" % (
                    case, t, r["non_2xx"], r["socket_errors"]))
        ratios = {}
        s = case_rows.get(subject, {})
        for ref in refs:
            b = case_rows.get(ref, {})
            both = s.get("status") == "ok" and b.get("status") == "ok"
            rr = {k: (ratio(s.get(k), b.get(k)) if both else None)
                  for k in ("requests_per_s", "p50_ms", "p99_ms", "mib_per_s")}
            ratios["%s/%s" % (subject, ref)] = rr
            parts = ["req/s %s" % fmt_ratio(rr["requests_per_s"]),
                     "p50 %s" % fmt_ratio(rr["p50_ms"]), "p99 %s" % fmt_ratio(rr["p99_ms"])]
            if case != "small":
                parts.append("MiB/s %s" % fmt_ratio(rr["mib_per_s"]))
            print("  %-27s %s" % ("%s / %s:" % (subject, ref), "  ".join(parts)))
        if case == "l4":
            print("  (nginx is not in this case: Debian's nginx-light has no stream module)")
        out["cases"][case] = {"title": title, "rows": case_rows, "ratios": ratios}

    def clean(case, t):
        r = rows.get(case, {}).get(t, {})
        return r if r.get("status") == "ok" and r["errors"] == 0 else None

    def verdict(ok):
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    rm, ha, ng = clean("small", "routemesh"), clean("small", "haproxy"), clean("small", "nginx")
    floor_small = None if not (rm and ha) else (
        rm["requests_per_s"] >= ha["requests_per_s"] and rm["p99_ms"] <= ha["p99_ms"])
    l4rm, l4ha = clean("l4", "routemesh-l4"), clean("l4", "haproxy-tcp")
    floor_l4 = None if not (l4rm and l4ha) else l4rm["mib_per_s"] >= l4ha["mib_per_s"]
    aim = None if not (rm and ng) else rm["requests_per_s"] >= 1.2 * ng["requests_per_s"]
    out["checks"] = {
        "floor_small_rps_ge_haproxy_and_p99_le_haproxy": floor_small,
        "floor_l4_mib_per_s_ge_haproxy_tcp": floor_l4,
        "aim_small_rps_ge_1.2x_nginx": aim,
    }
    print()
    print("issue 2 floor: small req/s >= 1.0x HAProxy at <= p99 ........ %s" % verdict(floor_small))
    print("issue 2 floor: L4 1 MiB MiB/s >= 1.0x HAProxy tcp mode ....... %s" % verdict(floor_l4))
    print("issue 2 aim:   small req/s >= 1.2x nginx ...................... %s" % verdict(aim))
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
