#!/usr/bin/env python3
"""Cluster benchmark: committed writes/s and commit latency of the admin API for
1 and 3 managers, next to etcd (1 and 3 members) written by the same clients, and the
propagation time from the API's 200 reply to the last node (of 3 managers + 2 workers)
routing with the change. Measures, never asserts. See bench/README.md.

Uses the integration-test harness (tests/integration/cluster.py): real `routemesh node`
processes on 127.0.0.51 (1 manager) and 127.0.0.61-65 (3 managers + 2 workers).
"""
import argparse
import base64
import http.client
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import tempfile
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import cluster  # noqa: E402
import harness  # noqa: E402


# The C++ closed-loop client (tests/bench/write_load), or None for the Python one: main()
# sets it from --client and $WRITE_LOAD_BIN.
WRITE_LOAD_BIN = None


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


class KeepAlive:
    """One persistent HTTP/1.1 connection to an admin API (TLS with the ssl.SSLContext `tls`,
    the cluster's admin certificate); reconnects after any error."""

    def __init__(self, addr, tls, timeout=10.0):
        self.host, _, port = addr.rpartition(":")
        self.port, self.timeout, self.conn, self.tls = int(port), timeout, None, tls

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                        context=self.tls)
            try:
                self.conn.request(method, path, body=data,
                                  headers={"Content-Type": "application/json"} if data else {})
                r = self.conn.getresponse()
                raw = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status, raw
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 1 or method != "GET":
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def cpu_seconds(pid):
    """User + system CPU seconds of a process (all its threads) so far; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def cpu_figures(server_cpu, committed):
    """The servers' CPU columns of a row: seconds, ms per committed write, writes per busy core
    (none without CPU figures or writes)."""
    if not server_cpu or not committed:
        return {}
    return {"server_cpu_s": round(server_cpu, 2),
            "cpu_ms_per_write": round(server_cpu * 1000.0 / committed, 3),
            "writes_per_busy_core": round(committed / server_cpu, 1)}


def closed_loop(make_client, write, writers, duration, server_pids=()):
    """`writers` closed-loop clients for `duration` s: each gets make_client(i) and calls
    write(client, i, n) -> HTTP status (n counts its writes); 200 counts as committed. Returns
    a dict with writes/s, latencies (ms) and error counts, and, given the servers' pids, the
    CPU they spent per committed write and the writes per busy server core."""
    lat, errors = [], {}
    lock = threading.Lock()
    start_evt = threading.Event()
    t_end = [0.0]

    def run(i):
        c = make_client(i)
        mine, errs, n = [], {}, 0
        start_evt.wait()
        while time.monotonic() < t_end[0]:
            n += 1
            t0 = time.monotonic()
            try:
                st = write(c, i, n)
            except (OSError, http.client.HTTPException) as e:
                errs[type(e).__name__] = errs.get(type(e).__name__, 0) + 1
                continue
            dt = time.monotonic() - t0
            if st == 200:
                mine.append(dt * 1000.0)
            else:
                errs[str(st)] = errs.get(str(st), 0) + 1
        c.close()
        with lock:
            lat.extend(mine)
            for k, v in errs.items():
                errors[k] = errors.get(k, 0) + v

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(writers)]
    for t in threads:
        t.start()
    cpu0 = [cpu_seconds(p) for p in server_pids]
    t0 = time.monotonic()
    t_end[0] = t0 + duration
    start_evt.set()
    for t in threads:
        t.join(duration + 30)
    elapsed = time.monotonic() - t0
    cpu1 = [cpu_seconds(p) for p in server_pids]
    used = [b - a for a, b in zip(cpu0, cpu1) if a is not None and b is not None]
    server_cpu = sum(used) if server_pids and len(used) == len(server_pids) else None
    return {**cpu_figures(server_cpu, len(lat)), "writers": writers, "seconds": round(elapsed, 2), "committed": len(lat),
            "writes_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": round(pct(lat, 50), 2) if lat else None,
            "p99_ms": round(pct(lat, 99), 2) if lat else None,
            "max_ms": round(max(lat), 2) if lat else None,
            "errors": errors}


def tool_closed_loop(args, server_pids=()):
    """The same closed loop run by tests/bench/write_load (C++, one thread): it makes every
    writer's first write, prints "start", runs and prints its figures as JSON. The servers'
    CPU is taken between those two lines; the tool's own CPU per write is reported too."""
    p = subprocess.Popen([WRITE_LOAD_BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        first = p.stdout.readline().strip()
        if first != "start":
            p.wait(30)
            raise RuntimeError(f"write_load did not start: {first!r} {p.stderr.read()[-500:]!r}")
        pids = list(server_pids) + [p.pid]
        cpu0 = [cpu_seconds(x) for x in pids]
        line = p.stdout.readline()
        cpu1 = [cpu_seconds(x) for x in pids]
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    r = json.loads(line)
    used = [b - a for a, b in zip(cpu0, cpu1) if a is not None and b is not None]
    if len(used) == len(pids) and r["committed"]:
        if server_pids:
            r.update(cpu_figures(sum(used[:-1]), r["committed"]))
        r["client_us_per_write"] = round(used[-1] * 1e6 / r["committed"], 1)
    return r


def measure_writes(target, writers, duration, tag):
    """`writers` closed-loop clients, each updating its own service (a label change)."""
    pids = [n.proc.p.pid for n in target.cluster.managers if n.alive]
    if WRITE_LOAD_BIN:
        return tool_closed_loop(["--api", target.admin, "--cert-dir", target.cluster.cert_dir,
                                 "--writers", str(writers), "--duration", str(duration),
                                 "--prefix", tag], pids)
    for i in range(writers):
        s, b = target.api("POST", "/v1/services", {"name": f"{tag}-{i}", "labels": {"bench.n": "0"}})
        if s not in (201, 409):
            raise RuntimeError(f"creating {tag}-{i}: {s} {b}")

    def write(c, i, n):
        body = {"name": f"{tag}-{i}", "labels": {"bench.n": str(n)}}
        st, _ = c.request("PUT", f"/v1/services/{tag}-{i}", body)
        return st

    # The managers only (the Raft members), as etcd's members: the workers' watch streams are
    # not counted (etcd has no watchers here).
    return closed_loop(lambda i: KeepAlive(target.admin, target.cluster.tls), write, writers,
                       duration, pids)


class PlainKeepAlive(KeepAlive):
    """KeepAlive over plain HTTP (etcd's client port as started here)."""

    def request(self, method, path, body=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=json.dumps(body).encode(),
                              headers={"Content-Type": "application/json"})
            r = self.conn.getresponse()
            return r.status, r.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise


class Etcd:
    """An etcd cluster of `n` members on 127.0.0.71.. (client port 2379, peer port 2380), each
    with its data dir under a temporary directory; the same fsync'd Raft log as routemesh's."""

    def __init__(self, n):
        self.dir = tempfile.mkdtemp(prefix="rm-etcd-bench.")
        self.ips = [f"127.0.0.{71 + k}" for k in range(n)]
        initial = ",".join(f"e{k}=http://{ip}:2380" for k, ip in enumerate(self.ips))
        self.procs = []
        for k, ip in enumerate(self.ips):
            log = open(os.path.join(self.dir, f"e{k}.log"), "wb")
            self.procs.append(subprocess.Popen(
                ["etcd", "--name", f"e{k}", "--data-dir", os.path.join(self.dir, f"e{k}"),
                 "--listen-client-urls", f"http://{ip}:2379",
                 "--advertise-client-urls", f"http://{ip}:2379",
                 "--listen-peer-urls", f"http://{ip}:2380",
                 "--initial-advertise-peer-urls", f"http://{ip}:2380",
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--heartbeat-interval", "50", "--election-timeout", "500"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(self.healthy(ip) for ip in self.ips):
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("etcd did not become healthy within 30 s")

    @staticmethod
    def healthy(ip):
        try:
            c = http.client.HTTPConnection(ip, 2379, timeout=2)
            c.request("GET", "/health")
            ok = b'"true"' in c.getresponse().read()
            c.close()
            return ok
        except (OSError, http.client.HTTPException):
            return False

    def leader_ip(self):
        for ip in self.ips:
            c = http.client.HTTPConnection(ip, 2379, timeout=2)
            c.request("POST", "/v3/maintenance/status", body=b"{}")
            st = json.loads(c.getresponse().read())
            c.close()
            if st.get("leader") == st.get("header", {}).get("member_id"):
                return ip
        return self.ips[0]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def measure_etcd_writes(ip, writers, duration, pids=()):
    """The same closed loop against etcd: each writer puts its own key (v3 JSON gateway)."""
    if WRITE_LOAD_BIN:
        return tool_closed_loop(["--etcd", "--api", f"{ip}:2379", "--writers", str(writers),
                                 "--duration", str(duration), "--prefix", "bench"], pids)
    def write(c, i, n):
        body = {"key": base64.b64encode(f"bench/{i}".encode()).decode(),
                "value": base64.b64encode(json.dumps({"bench.n": n}).encode()).decode()}
        st, _ = c.request("POST", "/v3/kv/put", body)
        return st

    return closed_loop(lambda i: PlainKeepAlive(f"{ip}:2379", None), write, writers, duration,
                       pids)


class RevisionWatcher:
    """Polls one node's GET /v1/routes in a tight loop and records when each new route-table
    revision was first seen."""

    def __init__(self, node):
        self.node = node
        self.seen = []  # (monotonic time, revision), revision increasing
        self.polls = 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        c = KeepAlive(self.node.admin, self.node.cluster.tls, timeout=5)
        last = -1
        while not self.stop_flag.is_set():
            try:
                st, raw = c.request("GET", "/v1/routes")
            except (OSError, http.client.HTTPException):
                time.sleep(0.01)
                continue
            now = time.monotonic()
            self.polls += 1
            if st != 200:
                continue
            rev = json.loads(raw).get("revision", 0)
            if rev > last:
                self.seen.append((now, rev))
                last = rev
        c.close()

    def first_seen(self, revision):
        for t, r in self.seen:
            if r >= revision:
                return t
        return None

    def stop(self):
        self.stop_flag.set()
        self.thread.join(10)


def measure_propagation(c, changes, gap_s, whoami):
    """`changes` label updates of one routed service, one every ~gap_s; for each, the time from
    the API's 200 reply to the moment every node's proxy routes with a revision >= the write's.
    A node that had it before the reply counts 0."""
    lead = c.leader()
    s, b = lead.api("POST", "/v1/services", {"name": "prop", "labels": {"mesh.http": "prop-0.bench"}})
    if s != 201:
        raise RuntimeError(f"creating prop: {s} {b}")
    s, b = lead.api("POST", "/v1/tasks", {"service": "prop", "node": "n1", "address": whoami.addr})
    if s != 201:
        raise RuntimeError(f"adding prop's task: {s} {b}")
    c.wait_converged(timeout=20)
    watchers = [RevisionWatcher(n) for n in c.nodes]
    time.sleep(0.3)
    samples, per_node, missing = [], {n.name: [] for n in c.nodes}, 0
    api = KeepAlive(lead.admin, lead.cluster.tls)
    try:
        writes = []
        for i in range(1, changes + 1):
            host = f"prop-{i}.bench"
            st, raw = api.request("PUT", "/v1/services/prop", {"name": "prop", "labels": {"mesh.http": host}})
            t_reply = time.monotonic()
            if st != 200:
                raise RuntimeError(f"update {i}: {st} {raw[:200]!r}")
            writes.append((t_reply, json.loads(raw)["revision"], host))
            time.sleep(gap_s)
        time.sleep(1.0)
        # The last host really routes everywhere (the /v1/routes table is the one the proxy uses).
        cluster.wait_routes_everywhere(c.nodes, writes[-1][2], {whoami.name}, timeout=10)
    finally:
        api.close()
        for w in watchers:
            w.stop()
    for t_reply, rev, _ in writes:
        times = []
        for w in watchers:
            t = w.first_seen(rev)
            if t is None:
                missing += 1
                continue
            d = max(0.0, t - t_reply) * 1000.0
            per_node[w.node.name].append(d)
            times.append(d)
        if len(times) == len(watchers):
            samples.append(max(times))
    polls = {w.node.name: w.polls for w in watchers}
    return {"changes": changes, "measured": len(samples), "missing_observations": missing,
            "p50_ms": round(pct(samples, 50), 2) if samples else None,
            "p99_ms": round(pct(samples, 99), 2) if samples else None,
            "max_ms": round(max(samples), 2) if samples else None,
            "mean_ms": round(statistics.mean(samples), 2) if samples else None,
            "per_node_p50_ms": {k: round(pct(v, 50), 2) for k, v in per_node.items() if v},
            "per_node_p99_ms": {k: round(pct(v, 99), 2) for k, v in per_node.items() if v},
            "polls": polls}


def loadavg():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def git_rev():
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip()
    except Exception:
        return None


def fs_type(path):
    """The filesystem type holding `path` (fdatasync costs depend on it), from `df -T`."""
    try:
        out = subprocess.run(["df", "-T", path], capture_output=True, text=True, timeout=5).stdout
        return out.splitlines()[1].split()[1]
    except Exception:
        return None


def fmt(v, unit=""):
    return "n/a" if v is None else f"{v}{unit}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per write measurement")
    ap.add_argument("--writers", type=int, default=8, help="concurrent closed-loop writers")
    ap.add_argument("--changes", type=int, default=50, help="changes for the propagation measurement")
    ap.add_argument("--gap-ms", type=float, default=100.0, help="pause between propagation changes")
    ap.add_argument("--tick-ms", type=int, default=50, help="Raft tick (cluster.tick_ms)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "cluster.json"))
    ap.add_argument("--client", choices=("cxx", "python"), default="cxx",
                    help="closed-loop writers: tests/bench/write_load ($WRITE_LOAD_BIN, else "
                         "build/tests/write_load) or Python threads")
    a = ap.parse_args()
    global WRITE_LOAD_BIN
    client_note = None
    if a.client == "cxx":
        tool = os.environ.get("WRITE_LOAD_BIN") or os.path.join(REPO, "build", "tests", "write_load")
        if os.access(tool, os.X_OK):
            WRITE_LOAD_BIN = tool
        else:
            client_note = f"client: {tool} not found; Python clients instead"
    # `timeout` (cluster.sh) sends SIGTERM: unwind so every cluster's processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    result = {"settings": {"duration_s": a.duration, "writers": a.writers, "changes": a.changes,
                           "gap_ms": a.gap_ms, "tick_ms": a.tick_ms, "election_ticks": 10,
                           "binary": cluster.bin_path(), "git": git_rev(), "host": platform.node(),
                           "cpus": os.cpu_count(), "data_dirs_under": tempfile.gettempdir(),
                           "data_dirs_fs": fs_type(tempfile.gettempdir())},
              "load_before": loadavg(), "notes": [client_note] if client_note else []}
    result["settings"]["client"] = WRITE_LOAD_BIN or "python"
    rows = {}

    def run_phase(label, fn):
        try:
            return fn()
        except Exception as e:  # a measurement that cannot run is reported, not fatal
            result["notes"].append(f"{label}: {type(e).__name__}: {e}"[:2000])
            print(f"[bench] {label} failed: {e}", file=sys.stderr)
            return None

    # 1 manager
    c1 = cluster.Cluster("127.0.0.51", ["manager"], tick_ms=a.tick_ms)
    try:
        def one():
            c1.start()
            return measure_writes(c1.leader(), a.writers, a.duration, "w1m")
        rows["1 manager"] = run_phase("1 manager", one)
    finally:
        c1.stop()

    # 3 managers + 2 workers: writes to the leader, writes via a follower, propagation
    c3 = cluster.Cluster("127.0.0.61", ["manager"] * 3 + ["worker"] * 2, tick_ms=a.tick_ms)
    try:
        started = run_phase("3 managers start", lambda: c3.start() and True)
        if started:
            rows["3 managers"] = run_phase(
                "3 managers", lambda: measure_writes(c3.leader(), a.writers, a.duration, "w3m"))
            rows["3 managers, via follower"] = run_phase(
                "3 managers via follower", lambda: measure_writes(c3.followers()[0], a.writers, a.duration, "w3f"))
            who = c3.whoami("prop")
            result["propagation"] = run_phase(
                "propagation", lambda: measure_propagation(c3, a.changes, a.gap_ms / 1000.0, who))
    finally:
        c3.stop()
    # etcd, the same writers and the same machine: 1 member, then 3 (its leader)
    if shutil.which("etcd") is None:
        result["notes"].append("etcd: not installed (scripts/deps.sh --bench installs etcd-server)")
    else:
        for n in (1, 3):
            label = f"etcd, {n} member{'s' if n > 1 else ''}"
            e = run_phase(f"{label} start", lambda n=n: Etcd(n))
            if e is None:
                continue
            try:
                rows[label] = run_phase(
                    label, lambda: measure_etcd_writes(e.leader_ip(), a.writers, a.duration,
                                              [p.pid for p in e.procs]))
            finally:
                e.stop()
    result["writes"] = rows
    result["load_after"] = loadavg()

    print(f"\nroutemesh cluster benchmark  (tick {a.tick_ms} ms, {a.writers} writers x {a.duration:g} s, "
          f"load {result['load_before']} -> {result['load_after']})")
    print(f"  data dirs under {result['settings']['data_dirs_under']} "
          f"({result['settings']['data_dirs_fs']}); "
          f"{'C++ clients (write_load)' if WRITE_LOAD_BIN else 'Python clients'}")
    print(f"  {'commit (PUT /v1/services/NAME)':<32}{'writes/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
          f"{'max ms':>10}{'cpu ms/w':>10}{'w/s/core':>10}{'client us/w':>12}  errors")
    for label, r in rows.items():
        if r is None:
            print(f"  {label:<32}{'n/a':>10}")
            continue
        print(f"  {label:<32}{r['writes_per_s']:>10}{fmt(r['p50_ms']):>10}{fmt(r['p99_ms']):>10}"
              f"{fmt(r['max_ms']):>10}{fmt(r.get('cpu_ms_per_write')):>10}"
              f"{fmt(r.get('writes_per_busy_core')):>10}{fmt(r.get('client_us_per_write')):>12}"
              f"  {r['errors'] or '-'}")
    p = result.get("propagation")
    print(f"\n  propagation: API 200 -> last of 5 nodes routing with it ({a.changes} changes)")
    if p:
        print(f"    p50 {fmt(p['p50_ms'], ' ms')}  p99 {fmt(p['p99_ms'], ' ms')}  max {fmt(p['max_ms'], ' ms')}"
              f"  (measured {p['measured']}/{p['changes']}; goal p99 < 100 ms: "
              f"{'met' if p['p99_ms'] is not None and p['p99_ms'] < 100 else 'NOT met'})")
        print(f"    per node p99: {p['per_node_p99_ms']}")
    else:
        print("    n/a")
    for n in result["notes"]:
        print(f"  note: {n.splitlines()[0]}")
    ratios = {}
    for ours, theirs in (("1 manager", "etcd, 1 member"), ("3 managers", "etcd, 3 members")):
        for key, what in (("writes_per_s", "writes/s"), ("writes_per_busy_core", "writes/s per busy core")):
            if rows.get(ours) and rows.get(theirs) and rows[theirs].get(key) and rows[ours].get(key):
                ratios[f"{what} {ours} / {theirs}"] = round(rows[ours][key] / rows[theirs][key], 2)
    result["ratios"] = ratios
    for k, v in ratios.items():
        print(f"  {k}: {v}x")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\n  -> {a.out}")
    return 0 if rows and all(rows.values()) and p else 1


if __name__ == "__main__":
    sys.exit(main())
