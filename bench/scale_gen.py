#!/usr/bin/env python3
"""Writes a routemesh config file with N services for the scale benchmark (bench/scale.sh).

Service i is `svc-i` with `mesh.http: svc-i.scale.test`, one published TCP port (20000 + i,
HTTP-routed through the label) and T tasks (default 10) on distinct addresses. The file is
JSON, which is valid YAML, so `routemesh check --config FILE` reads it.

    bench/scale_gen.py N [--tasks T] [--out FILE]
"""
import argparse
import json
import sys


def service(i, tasks):
    return {
        "name": f"svc-{i}",
        "labels": {"mesh.http": f"svc-{i}.scale.test"},
        "published": [f"{20000 + i}:80/tcp"],
        "tasks": [f"10.{(i >> 8) & 0xff}.{i & 0xff}.{k + 1}:8080" for k in range(tasks)],
    }


def config(n, tasks):
    return {
        "node": {"name": "scale", "listen": "127.0.0.1", "http_port": 8080,
                 "admin": "127.0.0.1:9901"},
        "services": [service(i, tasks) for i in range(n)],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, help="number of services (at most 45,000: published ports)")
    ap.add_argument("--tasks", type=int, default=10, help="tasks per service (at most 250)")
    ap.add_argument("--out", default="-", help="output file (default: stdout)")
    a = ap.parse_args()
    if not 0 <= a.n <= 45000 or not 0 <= a.tasks <= 250:
        ap.error("n must be 0..45000 and --tasks 0..250")
    text = json.dumps(config(a.n, a.tasks), separators=(",", ":"))
    if a.out == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
