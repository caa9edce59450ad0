#!/usr/bin/env python3
"""HTTPS benchmark: routemesh's HTTPS port next to nginx terminating TLS with the same
certificate (ECDSA P-256), the same backend and the same clients, in one run. Measures, never
asserts. See bench/README.md ("HTTPS"). Run through bench/https.sh.

Per round and proxy:
- keep-alive: wrk over TLS (-t1 -c50), small responses ("ok\\n"): requests/s, and requests/s
  per busy proxy core (core 0's busy share over the run, softirq included, as bench/run.sh);
- new handshakes: `openssl s_time -new` (a full handshake per connection, no request);
- resumed handshakes: `openssl s_time -reuse` (TLS 1.2 session resumption; s_time does not
  resume TLS 1.3 sessions), each per busy proxy core as well.

Placement as in bench/run.sh: the proxy (routemesh node with one proxy thread, or nginx with
one worker) on core 0; wrk, openssl and the backend nginx on core 1. routemesh runs as a
one-manager cluster on 127.0.0.201 (the certificate is stored with `routemesh cert add`).
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
import report  # noqa: E402

PROXY_CORE = "0"
CLIENT_CORE = "1"
HOST = "bench.local"
NODE_IP = "127.0.0.201"
BACKEND_PORT = 18090
NGINX_PORT = 18093
HTTPS_PORT = 18443
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


def core_busy():
    """(busy, total) jiffies of the proxy core (busy = all but idle and iowait)."""
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0] == f"cpu{PROXY_CORE}":
                v = [int(x) for x in parts[1:]]
                return sum(v) - v[3] - v[4], sum(v)
    raise RuntimeError("no cpu0 line in /proc/stat")


def run(args, timeout, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


def make_certificate(tmp):
    """A CA and a server certificate for bench.local (P-256), as files."""
    ca, ca_key = os.path.join(tmp, "ca.pem"), os.path.join(tmp, "ca-key.pem")
    cert, key, csr = (os.path.join(tmp, n) for n in ("cert.pem", "key.pem", "cert.csr"))
    ext = os.path.join(tmp, "leaf.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj",
         "/CN=routemesh bench CA"],
        ["openssl", "req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={HOST}",
         "-addext", f"subjectAltName=DNS:{HOST}"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-out", cert,
         "-days", "2", "-copy_extensions", "copy", "-extfile", ext],
    ]
    for s in steps:
        r = run(s, 30)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(s[:3])}: {r.stderr}")
    return ca, cert, key


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/{name}.pid;
error_log {dir}/{name}.error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {dir}/{name}-tmp/body;
  proxy_temp_path {dir}/{name}-tmp/proxy;
  fastcgi_temp_path {dir}/{name}-tmp/fastcgi;
  uwsgi_temp_path {dir}/{name}-tmp/uwsgi;
  scgi_temp_path {dir}/{name}-tmp/scgi;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  {body}
}}
"""

BACKEND_BODY = """
  server {{
    listen 127.0.0.1:{port} default_server;
    location / {{ return 200 "ok\\n"; }}
  }}
"""

# The same TLS settings routemesh uses: TLS 1.2 and 1.3, ALPN http/1.1 (nginx's default for
# ssl without http2), tickets and a session cache for resumption.
PROXY_BODY = """
  upstream bench_backend {{
    server 127.0.0.1:{backend};
    keepalive 64;
    keepalive_requests 1000000;
  }}
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  ssl_session_tickets on;
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name {host};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      proxy_pass http://bench_backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
    }}
  }}
"""


class Nginx:
    def __init__(self, tmp, name, body, core):
        os.makedirs(os.path.join(tmp, f"{name}-tmp"), exist_ok=True)
        conf = os.path.join(tmp, f"{name}.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=tmp, name=name, body=body))
        self.log = os.path.join(tmp, f"{name}.log")
        with open(self.log, "wb") as out:
            self.p = subprocess.Popen(["taskset", "-c", core, "nginx", "-p", tmp, "-c", conf],
                                      stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def wait_for(pred, what, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def https_ok(ip, port, ca):
    r = run(["curl", "-sS", "-m", "5", "--cacert", ca, "--resolve", f"{HOST}:{port}:{ip}",
             f"https://{HOST}:{port}/"], 10)
    return r.returncode == 0 and r.stdout == "ok\n"


class Bench:
    def __init__(self, a, tmp, ca, pids):
        self.a, self.tmp, self.ca = a, tmp, ca
        self.pids = pids  # target -> the proxy's processes (nginx: master and worker)
        self.rows = {}  # (case, target) -> [row per round]

    def busy_run(self, fn, target):
        """Runs fn(): (its result, core 0's busy share, the target's process CPU seconds)."""
        b0 = core_busy()
        t0 = [report.ticks_or_none(p) for p in self.pids[target]]
        result = fn()
        t1 = [report.ticks_or_none(p) for p in self.pids[target]]
        b1 = core_busy()
        busy = (b1[0] - b0[0]) / max(1, b1[1] - b0[1])
        cpu = None
        if None not in t0 + t1:
            cpu = sum(b - a for a, b in zip(t0, t1)) / CLK_TCK
        return result, busy, cpu

    def keepalive(self, target, ip, port, rnd):
        url = f"https://{ip}:{port}/"
        wrk = ["timeout", "-k", "5", str(self.a.duration + 30), "taskset", "-c", CLIENT_CORE,
               "wrk", "-t1", f"-c{self.a.connections}", "-H", f"Host: {HOST}"]
        if self.a.warmup:
            run(wrk + [f"-d{self.a.warmup}s", url], self.a.warmup + 40)
        out = os.path.join(self.tmp, f"wrk-{target}-r{rnd}.txt")

        def go():
            r = run(wrk + [f"-d{self.a.duration}s", "--latency", "-s",
                           os.path.join(HERE, "summary.lua"), url], self.a.duration + 40)
            with open(out, "w") as f:
                f.write(r.stdout + r.stderr)
            return r.returncode

        rc, busy, cpu = self.busy_run(go, target)
        row = report.parse_wrk(out)
        if rc != 0 or row["status"] != "ok" or not row.get("requests"):
            row = {"status": "na", "reason": row.get("reason", f"wrk status {rc}")}
        else:
            row["core0_busy"] = busy
            row["per_busy_core"] = row["requests_per_s"] / busy if busy > 0 else None
            row["cpu_us"] = cpu * 1e6 / row["requests"] if cpu is not None else None
        self.add("keepalive", target, row)

    def handshakes(self, case, target, ip, port, rnd):
        args = ["timeout", "-k", "5", str(self.a.duration + 30), "taskset", "-c", CLIENT_CORE,
                "openssl", "s_time", "-connect", f"{ip}:{port}", "-time", str(self.a.duration),
                "-CAfile", self.ca, "-verify", "1"]
        if case == "new":
            args += ["-new"]
        else:
            args += ["-reuse", "-tls1_2"]
        # s_time has no SNI flag: for routemesh, the certificate is also the default one.

        def go():
            return run(args, self.a.duration + 40)

        r, busy, cpu = self.busy_run(go, target)
        text = r.stdout + r.stderr
        with open(os.path.join(self.tmp, f"s_time-{case}-{target}-r{rnd}.txt"), "w") as f:
            f.write(text)
        # "N connections in T real seconds, ..." ; the last such line is the measured phase.
        rate = None
        count = None
        for line in text.splitlines():
            if "connections in" in line and "real seconds" in line:
                parts = line.split()
                try:
                    n, secs = int(parts[0]), float(parts[3])
                    rate = n / secs if secs > 0 else None
                    count = n
                except (ValueError, IndexError):
                    pass
        # s_time prints '*' for a full handshake and 'r' for a resumed one.
        marks = "".join(l for l in text.splitlines() if l and set(l) <= {"*", "r"})
        reused = marks.count("r") / len(marks) if marks else 0.0
        if case == "resumed" and reused < 0.9:
            rate = None
            text += f"\nonly {reused:.0%} of the connections were resumed"
        if rate is None:
            row = {"status": "na", "reason": (text.strip().splitlines() or ["no output"])[-1]}
        else:
            row = {"status": "ok", "per_s": rate, "core0_busy": busy, "resumed_share": reused,
                   "per_busy_core": rate / busy if busy > 0 else None,
                   "cpu_us": cpu * 1e6 / count if cpu is not None and count else None}
        self.add(case, target, row)

    def add(self, case, target, row):
        self.rows.setdefault((case, target), []).append(row)
        if row["status"] == "ok":
            v = row.get("requests_per_s") or row.get("per_s")
            print(f"[bench] {case} {target}: {v:,.0f}/s, core 0 busy {row['core0_busy']:.0%}",
                  file=sys.stderr)
        else:
            print(f"[bench] {case} {target}: n/a ({row['reason']})", file=sys.stderr)


def median(values):
    v = sorted(x for x in values if x is not None)
    return v[len(v) // 2] if v else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--connections", type=int, default=50)
    a = ap.parse_args()
    if a.rounds < 1 or a.duration < 1 or a.connections < 1 or a.warmup < 0:
        ap.error("--rounds, --duration and --connections must be >= 1, --warmup >= 0")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(600 + a.rounds * 6 * (a.duration + a.warmup + 45))
    tmp = tempfile.mkdtemp(prefix="routemesh-https-bench.")
    os.chmod(tmp, 0o755)
    procs = []
    c = None
    try:
        ca, cert, key = make_certificate(tmp)
        backend = Nginx(tmp, "backend", BACKEND_BODY.format(port=BACKEND_PORT), CLIENT_CORE)
        procs.append(backend)
        nginx = Nginx(tmp, "nginx", PROXY_BODY.format(backend=BACKEND_PORT, port=NGINX_PORT,
                                                      host=HOST, cert=cert, key=key), PROXY_CORE)
        procs.append(nginx)
        c = cluster.Cluster(NODE_IP, ["manager"], node_settings={"https_port": HTTPS_PORT})
        c.start()
        node = c.nodes[0]
        subprocess.run(["taskset", "-a", "-p", "-c", PROXY_CORE, str(node.proc.p.pid)],
                       capture_output=True, check=True)
        for args in (["service", "create", "--name", "bench", "--label", f"mesh.http={HOST}"],
                     ["task", "add", "--service", "bench", "--node", "n1", "--addr",
                      f"127.0.0.1:{BACKEND_PORT}"],
                     ["cert", "add", "--host", HOST, "--cert", cert, "--key", key],
                     ["cert", "add", "--default", "--cert", cert, "--key", key]):
            rc, out, err = c.cli(node, *args)
            if rc != 0:
                raise RuntimeError(f"routemesh {' '.join(args[:3])}: {out}{err}")
        wait_for(lambda: https_ok(NODE_IP, HTTPS_PORT, ca), "routemesh's HTTPS port")
        wait_for(lambda: https_ok("127.0.0.1", NGINX_PORT, ca), "nginx's HTTPS port")
        targets = [("routemesh", NODE_IP, HTTPS_PORT), ("nginx", "127.0.0.1", NGINX_PORT)]
        b = Bench(a, tmp, ca, {"routemesh": [node.proc.p.pid],
                               "nginx": [nginx.p.pid] + report.children_of(nginx.p.pid)})
        load = open("/proc/loadavg").read().split()[:3]
        print(f"[bench] load average before: {' '.join(load)}", file=sys.stderr)
        for rnd in range(1, a.rounds + 1):
            for target, ip, port in targets:
                b.keepalive(target, ip, port, rnd)
                b.handshakes("new", target, ip, port, rnd)
                b.handshakes("resumed", target, ip, port, rnd)
        print_report(b, a, load)
    except Interrupted as e:
        print(f"[bench] interrupted: {e}", file=sys.stderr)
        return 130
    finally:
        if c is not None:
            c.stop()
        for p in procs:
            p.stop()
        with contextlib.suppress(OSError):
            subprocess.run(["rm", "-rf", tmp])
    return 0


def print_report(b, a, load):
    def med(case, target, key):
        rows = [r for r in b.rows.get((case, target), []) if r["status"] == "ok"]
        return median([r.get(key) for r in rows]), len(rows)

    lines = [f"HTTPS, {a.rounds} round(s) of {a.duration} s, medians; proxy on core {PROXY_CORE}, "
             f"clients and backend on core {CLIENT_CORE}; load before {' '.join(load)}",
             "",
             "| case | routemesh | nginx | routemesh / nginx |",
             "| --- | --- | --- | --- |"]
    results = {}
    for case, key, what in (("keepalive", "requests_per_s", "keep-alive requests/s"),
                            ("keepalive", "per_busy_core", "keep-alive requests/s per busy proxy core"),
                            ("new", "per_s", "new handshakes/s"),
                            ("new", "per_busy_core", "new handshakes/s per busy proxy core"),
                            ("resumed", "per_s", "resumed handshakes/s (TLS 1.2)"),
                            ("resumed", "per_busy_core", "resumed handshakes/s per busy proxy core")):
        rm, n1 = med(case, "routemesh", key)
        ng, n2 = med(case, "nginx", key)
        ratio = rm / ng if rm and ng else None
        results[f"{case}.{key}"] = {"routemesh": rm, "nginx": ng, "ratio": ratio}
        fmt = lambda v: "n/a" if v is None else f"{v:,.0f}"
        lines.append(f"| {what} | {fmt(rm)} | {fmt(ng)} | "
                     f"{'n/a' if ratio is None else f'{ratio:.2f}×'} |")
    for case, what in (("keepalive", "proxy CPU per keep-alive request (µs)"),
                       ("new", "proxy CPU per new handshake (µs)"),
                       ("resumed", "proxy CPU per resumed handshake (µs)")):
        rm, _ = med(case, "routemesh", "cpu_us")
        ng, _ = med(case, "nginx", "cpu_us")
        ratio = rm / ng if rm and ng else None
        results[f"{case}.cpu_us"] = {"routemesh": rm, "nginx": ng, "ratio": ratio}
        fmt = lambda v: "n/a" if v is None else f"{v:,.1f}"
        lines.append(f"| {what} | {fmt(rm)} | {fmt(ng)} | "
                     f"{'n/a' if ratio is None else f'{ratio:.2f}×'} |")
    p99_rm, _ = med("keepalive", "routemesh", "p99_ms")
    p99_ng, _ = med("keepalive", "nginx", "p99_ms")
    if p99_rm and p99_ng:
        lines.append(f"| keep-alive p99 (ms) | {p99_rm:.2f} | {p99_ng:.2f} | {p99_rm / p99_ng:.2f}× |")
    print("\n".join(lines))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "https.json"), "w") as f:
        json.dump({"when": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                   "rounds": a.rounds, "duration_s": a.duration, "load_before": load,
                   "results": results,
                   "rows": {f"{k[0]}/{k[1]}": v for k, v in b.rows.items()}}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
