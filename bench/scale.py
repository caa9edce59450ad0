#!/usr/bin/env python3
"""Scale benchmark: what one write, a route compile and a config check cost as the state grows.
Measures, never asserts. Run through bench/scale.sh; see bench/README.md.

1. Pure cores (tests/bench/scale_bench, C++): validate_state, compile_route_table, one applied
   service.create / task.add, the Raft snapshot image, at each size (CPU time).
2. `routemesh check --config FILE` on a file with N services (bench/scale_gen.py), wall time.
3. A real 1-manager cluster (`routemesh node` in cluster mode on 127.0.0.71, the harness of
   tests/integration/cluster.py): filled to N services (--cluster-tasks each) by concurrent
   writers,
   then --probes sequential POST /v1/services (and POST /v1/tasks) on one keep-alive
   connection, each timed from request to reply, and after each pair the time until the node
   routes with its revision (GET /v1/routes?summary, polled in a loop).
"""
import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import cluster  # noqa: E402

FIRST_IP = "127.0.0.71"


class KeepAlive:
    """One persistent HTTP/1.1 connection to an admin API (TLS with the ssl.SSLContext `tls`
    when given); reconnects after an error."""

    def __init__(self, addr, tls=None, timeout=30.0):
        self.host, _, port = addr.rpartition(":")
        self.port, self.timeout, self.conn, self.tls = int(port), timeout, None, tls

    def request(self, method, path, body):
        data = json.dumps(body).encode()
        if self.conn is None:
            if self.tls:
                self.conn = http.client.HTTPSConnection(self.host, self.port,
                                                        timeout=self.timeout, context=self.tls)
            else:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            r = self.conn.getresponse()
            raw = r.read()
            if r.getheader("connection", "").lower() == "close":
                self.close()
            return r.status, raw
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def get(self, path):
        """GET `path`: (status, body bytes)."""
        if self.conn is None:
            if self.tls:
                self.conn = http.client.HTTPSConnection(self.host, self.port,
                                                        timeout=self.timeout, context=self.tls)
            else:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request("GET", path)
            r = self.conn.getresponse()
            return r.status, r.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def service_body(i):
    return {"name": f"svc-{i}", "labels": {"mesh.http": f"svc-{i}.scale.test"},
            "ports": [{"published": 20000 + i, "target": 80}]}


def task_body(i, k):
    return {"id": f"svc-{i}.{k + 1}", "service": f"svc-{i}",
            "address": f"10.{(i >> 8) & 0xff}.{i & 0xff}.{k + 1}", "port": 8080}


def fill(addr, start, stop, tasks, writers, deadline, tls=None):
    """Creates services start..stop-1 and their tasks with `writers` concurrent clients (each
    service, then its tasks, on one connection). Returns the number of failed writes."""
    lock = threading.Lock()
    state = {"next": start, "failed": 0, "error": None}

    def work():
        conn = KeepAlive(addr, tls)
        while time.monotonic() < deadline:
            with lock:
                i = state["next"]
                if i >= stop or state["error"]:
                    break
                state["next"] += 1
            writes = [("/v1/services", service_body(i))] + \
                     [("/v1/tasks", task_body(i, k)) for k in range(tasks)]
            for path, body in writes:
                try:
                    status, raw = conn.request("POST", path, body)
                except OSError as e:
                    with lock:
                        state["error"] = f"POST {path}: {e!r}"
                    return
                if status not in (200, 201, 409):  # 409: created by an earlier, retried run
                    with lock:
                        state["failed"] += 1
                        if state["failed"] > 100:
                            state["error"] = f"POST {path}: {status} {raw[:200]!r}"
        conn.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if state["error"]:
        raise RuntimeError(state["error"])
    if state["next"] < stop:
        raise RuntimeError(f"fill stopped at {state['next']} services (time limit)")
    return state["failed"]


def routed_revision(conn):
    """The revision of the route table the node's proxy uses (GET /v1/routes?summary)."""
    status, raw = conn.get("/v1/routes?summary")
    return json.loads(raw).get("revision", 0) if status == 200 else 0


def wait_routed(conn, revision, timeout=30.0):
    """Milliseconds until the node routes with a table of at least `revision` (polling
    /v1/routes?summary in a loop), or None after `timeout`."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if routed_revision(conn) >= revision:
            return (time.perf_counter() - t0) * 1000
    return None


def probe(addr, size, step, count, with_task, tls=None):
    """`count` sequential writes at `size` services: new services probe-<size>-<k> (published
    ports 40000 + 1000 * step + k), each followed by one task when `with_task`, and after each,
    the time until the node routes with the last write's revision. Latencies in ms."""
    conn = KeepAlive(addr, tls)
    metrics = KeepAlive(addr, tls)
    svc_ms, task_ms, routed_ms = [], [], []
    for k in range(count):
        name = f"probe-{size}-{k}"
        body = {"name": name, "labels": {"mesh.http": f"{name}.scale.test"},
                "ports": [{"published": 40000 + 1000 * step + k, "target": 80}]}
        t0 = time.perf_counter()
        status, raw = conn.request("POST", "/v1/services", body)
        svc_ms.append((time.perf_counter() - t0) * 1000)
        if status != 201:
            raise RuntimeError(f"POST /v1/services {name}: {status} {raw[:200]!r}")
        if with_task:
            t0 = time.perf_counter()
            status, raw = conn.request("POST", "/v1/tasks", {"id": f"{name}.1", "service": name,
                                                             "address": "10.250.0.1", "port": 8080})
            task_ms.append((time.perf_counter() - t0) * 1000)
            if status != 201:
                raise RuntimeError(f"POST /v1/tasks {name}.1: {status} {raw[:200]!r}")
        routed = wait_routed(metrics, json.loads(raw)["revision"])
        if routed is None:
            raise RuntimeError(f"{name}: not routed within 30 s")
        routed_ms.append(routed)
    conn.close()
    metrics.close()
    return svc_ms, task_ms, routed_ms


def summary(values):
    if not values:
        return None
    s = sorted(values)
    return {"p50": statistics.median(s), "p90": s[min(len(s) - 1, int(len(s) * 0.9))],
            "max": s[-1], "n": len(s)}


def run_core_bench(binary, sizes, tasks):
    """{size: {figure: ms}} from tests/bench/scale_bench."""
    out = subprocess.run([binary, "--sizes", ",".join(map(str, sizes)), "--tasks", str(tasks)],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"scale_bench exited {out.returncode}: {out.stderr.strip()[:500]}")
    figures = {}
    for line in out.stdout.splitlines():
        m = re.match(r"N=(\d+) (\S+) ([0-9.]+) ms", line)
        if m:
            figures.setdefault(int(m.group(1)), {})[m.group(2)] = float(m.group(3))
    return figures


def run_check(binary, size, tasks, workdir):
    path = os.path.join(workdir, f"scale-{size}.yaml")
    subprocess.run([sys.executable, os.path.join(HERE, "scale_gen.py"), str(size), "--tasks",
                    str(tasks), "--out", path], check=True, timeout=300)
    t0 = time.perf_counter()
    r = subprocess.run([binary, "check", "--config", path], capture_output=True, text=True,
                       timeout=300)
    elapsed = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        raise RuntimeError(f"check of {size} services exited {r.returncode}: {r.stderr[:300]}")
    return elapsed


def fmt(v):
    return "n/a" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000", help="existing services per step")
    ap.add_argument("--tasks", type=int, default=10,
                    help="tasks per service in the core bench and the check file")
    ap.add_argument("--cluster-tasks", type=int, default=1,
                    help="tasks per service in the cluster (each is one more write to fill)")
    ap.add_argument("--probes", type=int, default=30, help="sequential writes timed per step")
    ap.add_argument("--writers", type=int, default=64, help="concurrent writers while filling")
    ap.add_argument("--fill-timeout", type=float, default=900, help="seconds for all filling")
    ap.add_argument("--skip", default="", help="comma list of phases to skip: core,check,cluster")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = sorted(int(s) for s in a.sizes.split(","))
    # Published ports: services 20000 + i, probes 40000 + 1000 * step + k.
    if sizes[-1] > 20000 or len(sizes) > 20 or a.probes > 1000 or not 0 <= a.tasks <= 250 \
            or not 0 <= a.cluster_tasks <= 250:
        ap.error("at most 20,000 services, 20 sizes, 1,000 probes and 250 tasks per service")
    skip = set(filter(None, a.skip.split(",")))
    binary = cluster.bin_path()
    notes = []
    print(f"routemesh scale benchmark: sizes {sizes}, {a.tasks} tasks per service "
          f"({a.cluster_tasks} in the cluster), load {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs", flush=True)

    core = {}
    if "core" not in skip:
        try:
            core = run_core_bench(os.environ["SCALE_BENCH_BIN"], sizes, a.tasks)
        except Exception as e:
            notes.append(f"core bench: {e}")

    checks = {}
    if "check" not in skip:
        with tempfile.TemporaryDirectory(prefix="rm-scale-") as workdir:
            for size in sizes:
                try:
                    checks[size] = run_check(binary, size, a.tasks, workdir)
                except Exception as e:
                    notes.append(f"check at {size}: {e}")

    writes = {}
    fill_s = {}
    if "cluster" not in skip:
        c = cluster.Cluster(FIRST_IP, ["manager"])
        try:
            c.start()
            addr = c.leader().admin
            deadline = time.monotonic() + a.fill_timeout
            have = 0
            for step, size in enumerate(sizes):
                t0 = time.monotonic()
                fill(addr, have, size, a.cluster_tasks, a.writers, deadline, c.tls)
                fill_s[size] = time.monotonic() - t0
                have = size
                svc_ms, task_ms, routed_ms = probe(addr, size, step, a.probes, True, c.tls)
                writes[size] = {"service": summary(svc_ms), "task": summary(task_ms),
                                "routed": summary(routed_ms)}
                print(f"  [{size} services: filled in {fill_s[size]:.1f} s, POST /v1/services "
                      f"p50 {fmt(writes[size]['service']['p50'])} ms]", flush=True)
        except Exception as e:
            notes.append(f"cluster: {type(e).__name__}: {e}"[:500])
        finally:
            c.stop()

    print()
    print("pure cores (CPU ms; tests/bench/scale_bench):")
    cols = [("validate", "validate_state"), ("compile", "compile (node of 10)"),
            ("compile.all_local", "compile (1 node)"), ("write.service", "apply service"),
            ("write.task", "apply task"), ("snapshot", "snapshot"), ("state_copy", "state copy")]
    print(f"  {'services':>9}" + "".join(f"{title:>22}" for _, title in cols))
    for size in sizes:
        row = core.get(size, {})
        print(f"  {size:>9}" + "".join(f"{fmt(row.get(key)):>22}" for key, _ in cols))
    print()
    print(f"routemesh check --config FILE ({a.tasks} tasks per service; wall ms) and a 1-manager "
          f"cluster ({a.cluster_tasks} per service), sequential writes (wall ms):")
    print(f"  {'services':>9}{'check':>10}{'fill s':>9}{'service p50':>13}{'p90':>9}{'max':>9}"
          f"{'task p50':>10}{'p90':>9}{'max':>9}{'routed p50':>12}{'p90':>9}{'max':>9}")
    for size in sizes:
        w = writes.get(size, {})
        s, t, r = w.get("service") or {}, w.get("task") or {}, w.get("routed") or {}
        print(f"  {size:>9}{fmt(checks.get(size)):>10}"
              f"{(f'{fill_s[size]:.1f}' if size in fill_s else 'n/a'):>9}"
              f"{fmt(s.get('p50')):>13}{fmt(s.get('p90')):>9}{fmt(s.get('max')):>9}"
              f"{fmt(t.get('p50')):>10}{fmt(t.get('p90')):>9}{fmt(t.get('max')):>9}"
              f"{fmt(r.get('p50')):>12}{fmt(r.get('p90')):>9}{fmt(r.get('max')):>9}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    for n in notes:
        print(f"note: {n}")


if __name__ == "__main__":
    main()
