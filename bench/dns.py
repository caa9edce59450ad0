#!/usr/bin/env python3
"""DNS benchmark: routemesh's embedded DNS server next to unbound and dnsmasq, with dnsperf.
Measures, never asserts. See bench/README.md. Run through bench/dns.sh.

Topology, built and removed by this script: one network namespace on a private bridge
(tests/integration/cluster.py's Netns). Inside it, each on the server core (taskset):
  - a routemesh manager (one proxy thread; the DNS server runs on its control thread) with a
    network `neta`, a service `web` on it (its VIP is the in-mesh answer) and the network's DNS
    address on the namespace's loopback;
  - unbound (`num-threads: 1`, the same name as local-data, forwarding everything else; its
    built-in NXDOMAIN zone for `test.` (RFC 6761) is turned off, since the forwarded names are
    *.example.test);
  - dnsmasq (the same name as a host-record, forwarding everything else).
All three forward to the same fake upstream (tests/integration/test_dns.py's FakeUpstream, in
this process, on the bridge), which answers the forwarded names with TTL 300, so after a warm-up
every forwarded query is a cache hit. dnsperf runs in the namespace on the client core, from an
address of neta's subnet (routemesh's DNS address answers only its own network).

Two cases per server: `mesh` (web.neta A: routemesh's own record, the others' local data) and
`forwarded` (50 names of the upstream, cache hits). Per case: a throughput run (dnsperf, 100
queries outstanding, --duration s) gives queries/s and the server's CPU time (utime+stime of
its process, from /proc), so queries/s per busy core = queries/s / (CPU s / wall s); then a paced
run (-Q --rate, -v) gives the p99 latency at the same offered load for every server.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import cluster  # noqa: E402
import harness  # noqa: E402
import test_dns  # noqa: E402  (FakeUpstream)

SERVER_CORE = "0"
CLIENT_CORE = "1"
UNBOUND_PORT = 5301
DNSMASQ_PORT = 5302
FORWARDED = [f"n{i}.example.test" for i in range(50)]
SERVERS = ["routemesh", "unbound", "dnsmasq"]


class Upstream(test_dns.FakeUpstream):
    RECORDS = dict(test_dns.FakeUpstream.RECORDS,
                   **{name: (300, [f"192.0.2.{100 + i}"]) for i, name in enumerate(FORWARDED)})


class PinnedNetns(cluster.Netns):
    """Node processes (ClusterNode uses prefix_args) run on the server core."""

    def prefix_args(self, ip):
        return ["taskset", "-c", SERVER_CORE] + super().prefix_args(ip)

    def exec_args(self, core):
        return ["taskset", "-c", core, "ip", "netns", "exec", self.names[0]]


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def proc_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def dnsperf(ns, server, port, src, qfile, seconds, rate=None, verbose=False):
    args = ["timeout", "-k", "5", str(seconds + 20)] + ns.exec_args(CLIENT_CORE) + [
        "dnsperf", "-s", server, "-p", str(port), "-a", src, "-d", qfile, "-l", str(seconds),
        "-q", "100", "-c", "1"]
    if rate:
        args += ["-Q", str(rate)]
    if verbose:
        args += ["-v"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30)
    return r.stdout + r.stderr


def parse_qps(text):
    for line in text.splitlines():
        if "Queries per second:" in line:
            return float(line.split(":")[1])
    return None


def parse_completed(text):
    """"NOERROR 100.00%" from dnsperf's "Response codes:" line: every answer counts as a
    completed query, so the codes say whether the server really answered."""
    for line in text.splitlines():
        if "Response codes:" in line:
            return line.split(":", 1)[1].strip().replace(" (", " ").replace(")", "")
    return "?"


def parse_p99_ms(text):
    """p99 of the latencies dnsperf -v prints, one per answer ('> NOERROR name A 0.000123')."""
    lat = []
    for line in text.splitlines():
        if line.startswith("> "):
            try:
                lat.append(float(line.split()[-1]))
            except ValueError:
                continue
    if not lat:
        return None
    lat.sort()
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=3, help="seconds per throughput run")
    ap.add_argument("--rate", type=int, default=5000, help="offered queries/s of the paced run")
    ap.add_argument("--paced", type=int, default=2, help="seconds per paced run (0 skips it)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(600)  # the whole run, whatever happens

    tmp = tempfile.mkdtemp(prefix="rm-bench-dns-")
    ns = c = up = None
    procs = []
    results = {}
    notes = []
    upstream = {}
    try:
        ns = PinnedNetns(1, prefix=f"10.203.{os.getpid() % 200 + 1}")
        nsname = ns.names[0]
        up = Upstream(f"{ns.prefix}.1", 1)
        c = cluster.Cluster(None, ["manager"], netns=ns,
                            node_extra={"dns": {"port": 53, "ttl_s": 300,
                                                "upstreams": [up.addr], "cache_entries": 4096}})
        c.start()
        lead = c.leader()
        s, b = lead.api("POST", "/v1/networks", {"name": "neta", "subnet": "10.64.1.0/24"})
        assert s == 201, b
        s, b = lead.api("POST", "/v1/services", {"name": "web", "networks": ["neta"],
                                                 "ports": [{"published": 19500, "target": 80}]})
        assert s == 201, b
        vip = b.get("service", b)["vips"]["neta"]
        for i in (1, 2):
            s, b = lead.api("POST", "/v1/tasks", {"service": "web", "node": "n1",
                                                  "address": f"172.31.9.{i}:80"})
            assert s == 201, b
        dns_addr, src = "10.64.1.2", "10.64.1.50"
        cluster._ip("-n", nsname, "addr", "add", f"{src}/32", "dev", "lo")
        harness.wait_until(
            lambda: f" {dns_addr}/32 " in cluster._ip("-n", nsname, "-o", "addr", "show", "dev",
                                                       "lo").stdout,
            timeout=15, what="routemesh's DNS address on lo")

        conf = os.path.join(tmp, "unbound.conf")
        with open(conf, "w") as f:
            f.write(f"""server:
  interface: 127.0.0.1@{UNBOUND_PORT}
  port: {UNBOUND_PORT}
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  pidfile: ""
  directory: "{tmp}"
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 0.0.0.0/0 allow
  module-config: "iterator"
  qname-minimisation: no
  do-not-query-localhost: no
  msg-cache-size: 16m
  rrset-cache-size: 16m
  local-zone: "test." nodefault
  local-data: "web.neta. 300 IN A {vip}"
forward-zone:
  name: "."
  forward-addr: {up.ip}@{up.port}
""")
        procs.append(("unbound", subprocess.Popen(
            ns.exec_args(SERVER_CORE) + ["unbound", "-d", "-c", conf],
            stdout=open(os.path.join(tmp, "unbound.log"), "w"), stderr=subprocess.STDOUT)))
        procs.append(("dnsmasq", subprocess.Popen(
            ns.exec_args(SERVER_CORE) + [
                "dnsmasq", "-k", "--no-resolv", "--no-hosts", "--user=root", "--pid-file=",
                "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={DNSMASQ_PORT}",
                f"--server={up.ip}#{up.port}", "--cache-size=10000",
                f"--host-record=web.neta,{vip}"],
            stdout=open(os.path.join(tmp, "dnsmasq.log"), "w"), stderr=subprocess.STDOUT)))
        time.sleep(1.0)
        pids = {"routemesh": c.nodes[0].proc.p.pid}
        for name, p in procs:
            if p.poll() is not None:
                notes.append(f"{name} exited at start ({p.returncode}): see {tmp}/{name}.log")
            pids[name] = p.pid
        where = {"routemesh": (dns_addr, 53), "unbound": ("127.0.0.1", UNBOUND_PORT),
                 "dnsmasq": ("127.0.0.1", DNSMASQ_PORT)}
        qfiles = {}
        for case, names in (("mesh", ["web.neta"]), ("forwarded", FORWARDED)):
            qfiles[case] = os.path.join(tmp, f"{case}.txt")
            with open(qfiles[case], "w") as f:
                f.write("".join(f"{n} A\n" for n in names))

        for server in SERVERS:
            host, port = where[server]
            if any(server in n for n in notes):
                continue
            seen0 = len(up.seen)
            for case in ("mesh", "forwarded"):
                dnsperf(ns, host, port, src, qfiles[case], 1, rate=2000)  # warm-up: fill caches
                t0, c0 = time.monotonic(), proc_ticks(pids[server])
                out = dnsperf(ns, host, port, src, qfiles[case], args.duration)
                wall, cpu = time.monotonic() - t0, (proc_ticks(pids[server]) - c0) / os.sysconf(
                    "SC_CLK_TCK")
                qps = parse_qps(out)
                p99 = None
                if args.paced:
                    p99 = parse_p99_ms(dnsperf(ns, host, port, src, qfiles[case], args.paced,
                                               rate=args.rate, verbose=True))
                results[(server, case)] = (qps, cpu / wall if wall else None, p99,
                                           parse_completed(out))
                if qps is None:
                    notes.append(f"{server}/{case}: no result from dnsperf:\n{out[-600:]}")
            upstream[server] = len(up.seen) - seen0

        print(f"\nDNS: dnsperf -q 100 -c 1, {args.duration} s per throughput run on core "
              f"{CLIENT_CORE}; servers on core {SERVER_CORE}; p99 at {args.rate} queries/s paced "
              f"({args.paced} s, dnsperf -Q -v)")
        print("queries that reached the fake upstream (warm-up included; 50 forwarded names): " +
              ", ".join(f"{k} {v}" for k, v in upstream.items()) + "\n")
        print("| case | server | queries/s | busy cores | queries/s per busy core | vs unbound "
              "| p99 ms (paced) | response codes |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for case in ("mesh", "forwarded"):
            base = results.get(("unbound", case))
            base_per = base[0] / base[1] if base and base[0] and base[1] else None
            for server in SERVERS:
                r = results.get((server, case))
                if r is None or r[0] is None:
                    print(f"| {case} | {server} | n/a | | | | | |")
                    continue
                qps, busy, p99, completed = r
                per = qps / busy if busy else None
                ratio = f"{per / base_per:.2f}" if per and base_per else "n/a"
                print(f"| {case} | {server} | {qps:,.0f} | {busy:.2f} | "
                      f"{per:,.0f} | {ratio} | {p99:.3f} | {completed} |"
                      if per and p99 is not None else
                      f"| {case} | {server} | {qps:,.0f} | {busy:.2f} | "
                      f"{per or 0:,.0f} | {ratio} | n/a | {completed} |")
        for n in notes:
            print(f"notes: {n}")
        return 0
    except Interrupted as e:
        print(f"interrupted ({e})", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        for _, p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        if c is not None:
            c.stop()
        if up is not None:
            up.close()
        if ns is not None:
            ns.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
