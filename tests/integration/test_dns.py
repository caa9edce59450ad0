"""The embedded DNS server through real processes and a real client (`dig`), in network
namespaces: a manager and a worker, each in its own namespace, each serving every network's
DNS address (the subnet's second address, on the namespace's loopback) on port 53.

Two fake upstream resolvers (tiny UDP/TCP DNS responders in this process, on the test side of
the namespaces' bridge) stand in for the outside world. Checked:
  - every record kind: A for a VIP (SERVICE and SERVICE.NETWORK), the healthy task addresses
    (tasks.SERVICE and endpoint mode dnsrr), SRV _PORT._tcp.SERVICE, PTR for VIPs and tasks,
    authoritative, on the manager and the worker alike,
  - scoping: a network does not see another network's names (NXDOMAIN), and they never reach
    an upstream,
  - TCP: a query over TCP; an answer too big for 512 bytes is truncated over UDP, retried by dig
    over TCP, and fits without truncation when the client's EDNS buffer is big enough,
  - forwarding: other names go to the first upstream; positive and negative answers are cached
    for their TTL; a truncated upstream reply is asked again over TCP; an upstream that stops
    answering is failed over to the next one; SERVFAIL only when every upstream fails; twenty
    clients asking one name at once while the upstream is slow make one upstream query, and
    each gets the answer under its own id,
  - a removed task is gone from the answers; a malformed packet gets FORMERR and the server
    goes on; metrics count queries by type and result,
  - the DNS addresses are on each node's loopback while it runs and gone after it stops,
  - isolation: a network's DNS address refuses (REFUSED) a source outside the network.
Skipped (loudly) where network namespaces or dig are unavailable."""
import json
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

import cluster
import harness

DNS_PORT = 53
TIMEOUT_MS = 400  # dns.upstream_timeout_ms
BIG_TASKS = 40    # A records: too many for 512 bytes, few enough for 1232


def skip_loudly(test, reason):
    print(f"\nSKIPPED: {reason}", file=sys.stderr, flush=True)
    test.skipTest(reason)


# ------------------------------------------------------------------------------------------
# A fake upstream resolver
# ------------------------------------------------------------------------------------------

def encode_name(name):
    out = b""
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


class FakeUpstream:
    """A DNS responder on UDP and TCP (the same port) answering from RECORDS: `big.example.test`
    is truncated over UDP (TC, no records) and whole over TCP; `who.example.test` answers this
    upstream's own address 192.0.2.<tag> with TTL 0 (never cached); a known name asked for
    another type is NODATA and an unknown one NXDOMAIN, both with an SOA (MINIMUM 60).
    `slow.example.test` (TTL 0) is answered over UDP after SLOW_S seconds, without holding up
    other names. `silent` drops every query. `seen` lists (name, type, transport) of every
    query."""

    SLOW_S = 0.2  # under TIMEOUT_MS

    RECORDS = {
        "www.example.test": (300, ["192.0.2.10"]),
        "ttl1.example.test": (1, ["192.0.2.11"]),
        "big.example.test": (300, ["192.0.2.21", "192.0.2.22", "192.0.2.23"]),
        "fast.example.test": (300, ["192.0.2.30"]),
        "slow.example.test": (0, ["192.0.2.40"]),
    }

    def __init__(self, ip, tag):
        self.ip, self.tag = ip, tag
        self.silent = False
        self.seen = []
        self.lock = threading.Lock()
        self.stopping = False
        for _ in range(50):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind((ip, 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket()
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind((ip, self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        self.tcp.listen(16)
        self.udp.settimeout(0.2)
        self.tcp.settimeout(0.2)
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self.threads:
            t.start()

    @property
    def addr(self):
        return f"{self.ip}:{self.port}"

    def count(self, name, transport=None):
        with self.lock:
            return sum(1 for n, _, t in self.seen if n == name and transport in (None, t))

    def close(self):
        self.stopping = True
        for t in self.threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()

    def _answer(self, data, transport):
        if self.silent or len(data) < 12:
            return None
        qid, flags, qdcount = struct.unpack("!HHH", data[:6])
        if qdcount != 1:
            return None
        i, labels = 12, []
        while i < len(data) and data[i] != 0:
            n = data[i]
            labels.append(data[i + 1:i + 1 + n].decode(errors="replace").lower())
            i += 1 + n
        i += 1
        qtype, qclass = struct.unpack("!HH", data[i:i + 4])
        question = data[12:i + 4]
        name = ".".join(labels)
        with self.lock:
            self.seen.append((name, qtype, transport))
        records = dict(self.RECORDS)
        records["who.example.test"] = (0, [f"192.0.2.{self.tag}"])
        out_flags = 0x8000 | (flags & 0x0100) | 0x0080
        answers, authority, rcode = [], [], 0
        soa = (encode_name("example.test") + struct.pack("!HHIH", 6, 1, 60, 0))
        soa_rdata = (encode_name("ns.example.test") + encode_name("admin.example.test") +
                     struct.pack("!IIIII", 1, 3600, 600, 86400, 60))
        soa = soa[:-2] + struct.pack("!H", len(soa_rdata)) + soa_rdata
        if name in records and qtype == 1:
            ttl, ips = records[name]
            if name == "big.example.test" and transport == "udp":
                out_flags |= 0x0200  # TC: ask again over TCP
            else:
                for ip in ips:
                    answers.append(b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, ttl, 4) + socket.inet_aton(ip))
        elif name in records:
            authority.append(soa)
        else:
            rcode = 3
            authority.append(soa)
        header = struct.pack("!HHHHHH", qid, out_flags | rcode, 1, len(answers), len(authority), 0)
        return header + question + b"".join(answers) + b"".join(authority)

    def _serve_udp(self):
        while not self.stopping:
            try:
                data, peer = self.udp.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self._answer(data, "udp")
            if reply is None:
                continue
            if b"\x04slow\x07example\x04test\x00" in data[12:].lower():
                threading.Timer(self.SLOW_S, self._send_late, (reply, peer)).start()
            else:
                self.udp.sendto(reply, peer)

    def _send_late(self, reply, peer):
        try:
            self.udp.sendto(reply, peer)
        except OSError:
            pass

    def _serve_tcp(self):
        while not self.stopping:
            try:
                conn, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._tcp_conn, args=(conn,), daemon=True).start()

    def _tcp_conn(self, conn):
        conn.settimeout(5)
        try:
            while True:
                head = conn.recv(2)
                if len(head) < 2:
                    return
                n = struct.unpack("!H", head)[0]
                data = b""
                while len(data) < n:
                    chunk = conn.recv(n - len(data))
                    if not chunk:
                        return
                    data += chunk
                reply = self._answer(data, "tcp")
                if reply is None:
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            return
        finally:
            conn.close()


# ------------------------------------------------------------------------------------------
# dig
# ------------------------------------------------------------------------------------------

class Dig:
    """The parts of dig's output the tests read."""

    def __init__(self, text):
        self.text = text
        m = re.search(r"status: (\w+)", text)
        self.status = m.group(1) if m else None
        m = re.search(r";; flags: ([a-z ]*);", text)
        self.flags = set(m.group(1).split()) if m else set()
        m = re.search(r";; SERVER: \S+ \((\w+)\)", text)
        self.transport = m.group(1) if m else None
        self.retried_tcp = "Truncated, retrying in TCP mode" in text
        self.answers = self._section("ANSWER")
        self.additional = self._section("ADDITIONAL")

    def _section(self, name):
        out, inside = [], False
        for line in self.text.splitlines():
            if line.startswith(f";; {name} SECTION:"):
                inside = True
                continue
            if inside:
                if not line.strip():
                    break
                parts = line.split()
                out.append((parts[0], int(parts[1]), parts[3], " ".join(parts[4:])))
        return out

    def data(self, rtype="A"):
        return sorted(d for _, _, t, d in self.answers if t == rtype)

    def __repr__(self):
        return self.text


# Run inside a namespace: COUNT clients, each on its own socket with its own id, ask SERVER:PORT
# for NAME (A) at once; prints one JSON line per client: {"id_ok", "rcode", "has": the answer
# holds IP}.
BURST = r"""
import json, random, select, socket, struct, sys, time
server, port, name, ip, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
socks = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    qid = random.randrange(65536)
    s.sendto(struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1),
             (server, port))
    socks.append((s, qid))
results, deadline = {}, time.monotonic() + 5
while len(results) < count and time.monotonic() < deadline:
    ready, _, _ = select.select([s for s, _ in socks if s.fileno() not in results], [], [], 0.2)
    for s in ready:
        data = s.recv(4096)
        qid = dict((x.fileno(), q) for x, q in socks)[s.fileno()]
        results[s.fileno()] = {"id_ok": struct.unpack("!H", data[:2])[0] == qid,
                               "rcode": data[3] & 0xF, "has": socket.inet_aton(ip) in data[12:]}
for r in results.values():
    print(json.dumps(r))
"""


class DnsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.netns = cls.c = None
        cls.upstreams = []
        cls.why = cluster.Netns.available()
        if cls.why is None and shutil.which("dig") is None:
            cls.why = "dig is not installed (Debian bind9-dnsutils; scripts/deps.sh installs it)"
        if cls.why:
            return
        cls.netns = cluster.Netns(2)
        try:
            bridge = f"{cls.netns.prefix}.1"
            cls.up1 = FakeUpstream(bridge, 1)
            cls.up2 = FakeUpstream(bridge, 2)
            cls.upstreams = [cls.up1, cls.up2]
            cls.c = cluster.Cluster(None, ["manager", "worker"], netns=cls.netns)
            for n in cls.c.nodes:
                base = n.config

                def config(base=base):
                    cfg = base()
                    cfg["dns"] = {"port": DNS_PORT, "ttl_s": 5, "upstream_timeout_ms": TIMEOUT_MS,
                                  "upstreams": [cls.up1.addr, cls.up2.addr]}
                    return cfg
                n.config = config
                n.write_config()
            cls.c.start()
            cls.setup_objects()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def setup_objects(cls):
        lead = cls.c.leader()

        def ok(status, body, want=201):
            if status != want:
                raise AssertionError(f"{status} {body}")
            return body

        for net in ("neta", "netb"):
            ok(*lead.api("POST", "/v1/networks", {"name": net}))
        cls.dns = {}
        for net in ("neta", "netb"):
            b = ok(*lead.api("GET", f"/v1/networks/{net}"), want=200)
            subnet = b.get("network", b)["subnet"]
            cls.dns[net] = subnet.rsplit(".", 1)[0] + ".2"

        def service(name, networks, target, published, mode="vip"):
            b = ok(*lead.api("POST", "/v1/services", {
                "name": name, "networks": networks, "endpoint_mode": mode,
                "ports": [{"published": published, "target": target}]}))
            return b.get("service", b)

        cls.vips = {"web": service("web", ["neta"], 80, 19101)["vips"]}
        service("api", ["neta"], 9000, 19102, mode="dnsrr")
        service("big", ["neta"], 7000, 19103, mode="dnsrr")
        cls.vips["secret"] = service("secret", ["netb"], 80, 19104)["vips"]
        cls.tasks = {}

        def task(svc, node, address):
            b = ok(*lead.api("POST", "/v1/tasks", {"service": svc, "node": node, "address": address}))
            t = b.get("task", b)
            cls.tasks[address.split(":")[0]] = t["id"]
            return t["id"]

        task("web", "n1", "172.31.1.1:80")
        task("web", "n2", "172.31.1.2:80")
        task("api", "n1", "172.31.2.1:9000")
        task("api", "n2", "172.31.2.2:9000")
        task("secret", "n2", "172.31.4.1:80")
        for k in range(1, BIG_TASKS + 1):
            task("big", "n1", f"172.31.8.{k}:7000")
        cls.c.wait_converged()

    @classmethod
    def tearDownClass(cls):
        if cls.c is not None:
            cls.c.stop()
        for u in cls.upstreams:
            u.close()
        if cls.netns is not None:
            cls.netns.close()

    def setUp(self):
        if self.why:
            skip_loudly(self, f"{self.why}; the DNS server is not tested")

    # -- helpers -----------------------------------------------------------------------------
    def dig(self, node, server, *args, tries=1):
        cmd = self.netns.prefix_args(node.ip) + ["dig", "-p", str(DNS_PORT), f"@{server}",
                                                 "+time=3", f"+tries={tries}", *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return Dig(r.stdout + r.stderr)

    def lo_addresses(self, node):
        return cluster._ip("-n", self.netns.ns_of(node.ip), "-o", "addr", "show", "dev", "lo").stdout

    def metrics(self, node):
        return node.metrics()

    # -- tests -------------------------------------------------------------------------------
    def test_each_network_dns_address_is_on_every_nodes_loopback(self):
        for n in self.c.nodes:
            for net in ("neta", "netb"):
                harness.wait_until(lambda: f" {self.dns[net]}/32 " in self.lo_addresses(n),
                                   timeout=10, what=f"{self.dns[net]} on {n.name}'s lo")
            self.assertIn(" 10.255.0.2/32 ", self.lo_addresses(n), "ingress's DNS address")
        # The API shows each network's DNS address.
        lead = self.c.leader()
        s, b = lead.api("GET", "/v1/networks")
        self.assertEqual(s, 200, b)
        shown = {n["name"]: n.get("dns_address") for n in b["networks"]}
        self.assertEqual({k: shown.get(k) for k in self.dns}, self.dns)
        self.assertEqual(shown.get("ingress"), "10.255.0.2")
        s, b = lead.api("GET", "/v1/networks/neta")
        self.assertEqual((s, b.get("network", b).get("dns_address")), (200, self.dns["neta"]), b)

    def test_a_service_resolves_to_its_vip_on_every_node(self):
        vip = self.vips["web"]["neta"]
        for n in self.c.nodes:
            for name in ("web", "web.neta", "WEB.NetA"):
                d = self.dig(n, self.dns["neta"], name, "A")
                self.assertEqual(d.status, "NOERROR", d)
                self.assertIn("aa", d.flags, d)
                self.assertEqual(d.data(), [vip], d)
                self.assertEqual(d.answers[0][1], 5, "dns.ttl_s")
            d = self.dig(n, self.dns["neta"], "web", "AAAA")
            self.assertEqual((d.status, d.answers), ("NOERROR", []), d)

    def test_stored_answers_with_and_without_edns_and_in_the_clients_case(self):
        # The common query is answered from stored bytes (discovery/dns/wire.h): asked more
        # than once, in mixed case, with and without EDNS, with the DO and CD bits.
        n1 = self.c.nodes[0]
        vip = self.vips["web"]["neta"]
        for args in ([], ["+noedns"], ["+dnssec", "+cdflag"], ["+bufsize=4096", "+nocookie"]):
            for _ in range(2):
                d = self.dig(n1, self.dns["neta"], *args, "wEb.NeTa", "A")
                self.assertEqual(d.status, "NOERROR", d)
                self.assertEqual(d.data(), [vip], d)
                self.assertEqual(d.answers[0][:2], ("wEb.NeTa.", 5), d)
                self.assertIn("aa", d.flags, d)
                self.assertIn("rd", d.flags, d)
                self.assertEqual("cd" in d.flags, "+cdflag" in args, d)
                self.assertEqual("udp: 1232" in d.text, "+noedns" not in args, d)
                self.assertEqual(" do;" in d.text, "+dnssec" in args, d)
        d = self.dig(n1, self.dns["neta"], "+norecurse", "_80._TCP.web", "SRV")
        self.assertNotIn("rd", d.flags, d)
        self.assertEqual(d.data("SRV"), [f"0 0 80 web.neta."], d)
        self.assertEqual(d.additional[0][3], vip, d)
        # A forwarded name's cache hit: the client's id, case and flags, the TTL lowered.
        for args in (["+noedns"], []):
            for _ in range(2):
                d = self.dig(n1, self.dns["neta"], *args, "FaSt.Example.Test")
                self.assertEqual(d.status, "NOERROR", d)
                self.assertEqual(d.data(), ["192.0.2.30"], d)
                self.assertEqual(d.answers[0][0], "FaSt.Example.Test.", d)
                self.assertLessEqual(d.answers[0][1], 300, d)
                self.assertNotIn("aa", d.flags, d)
                self.assertEqual("udp: 1232" in d.text, "+noedns" not in args, d)
        self.assertEqual(sum(u.count("fast.example.test") for u in self.upstreams), 1,
                         "not answered from the cache")

    def test_tasks_and_dnsrr_give_the_task_addresses(self):
        n1, n2 = self.c.nodes
        d = self.dig(n2, self.dns["neta"], "tasks.web")
        self.assertEqual(d.data(), ["172.31.1.1", "172.31.1.2"], d)
        d = self.dig(n1, self.dns["neta"], "api.neta")
        self.assertEqual(d.data(), ["172.31.2.1", "172.31.2.2"], d)

    def test_srv_for_a_target_port(self):
        n1 = self.c.nodes[0]
        d = self.dig(n1, self.dns["neta"], "_80._tcp.web", "SRV")
        self.assertEqual(d.data("SRV"), ["0 0 80 web.neta."], d)
        self.assertIn(("web.neta.", 5, "A", self.vips["web"]["neta"]), d.additional, d)
        d = self.dig(n1, self.dns["neta"], "_9000._tcp.api", "SRV")
        want = sorted(f"0 0 9000 {self.tasks[ip]}.tasks.api.neta." for ip in ("172.31.2.1", "172.31.2.2"))
        self.assertEqual(d.data("SRV"), want, d)
        d = self.dig(n1, self.dns["neta"], "_81._tcp.web", "SRV")
        self.assertEqual(d.status, "NXDOMAIN", d)

    def test_ptr_for_vips_and_tasks(self):
        n2 = self.c.nodes[1]
        d = self.dig(n2, self.dns["neta"], "-x", self.vips["web"]["neta"])
        self.assertEqual(d.data("PTR"), ["web.neta."], d)
        d = self.dig(n2, self.dns["neta"], "-x", "172.31.1.2")
        self.assertEqual(d.data("PTR"), [f"{self.tasks['172.31.1.2']}.tasks.web.neta."], d)
        # The target resolves back.
        d = self.dig(n2, self.dns["neta"], f"{self.tasks['172.31.1.2']}.tasks.web.neta")
        self.assertEqual(d.data(), ["172.31.1.2"], d)

    def test_a_network_cannot_see_another_networks_names(self):
        n1 = self.c.nodes[0]
        before = sum(u.count(name) for u in self.upstreams for name in ("secret", "secret.netb", "web"))
        for name in ("secret", "secret.netb", "tasks.secret"):
            d = self.dig(n1, self.dns["neta"], name)
            self.assertEqual(d.status, "NXDOMAIN", d)
            self.assertEqual(d.answers, [], d)
        d = self.dig(n1, self.dns["neta"], "-x", self.vips["secret"]["netb"])
        self.assertEqual(d.status, "NXDOMAIN", d)
        d = self.dig(n1, self.dns["netb"], "secret")
        self.assertEqual(d.data(), [self.vips["secret"]["netb"]], d)
        d = self.dig(n1, self.dns["netb"], "web")
        self.assertEqual(d.status, "NXDOMAIN", d)
        after = sum(u.count(name) for u in self.upstreams for name in ("secret", "secret.netb", "web"))
        self.assertEqual(after, before, "a cluster name leaked to an upstream")

    def test_tcp_and_truncation(self):
        n1 = self.c.nodes[0]
        d = self.dig(n1, self.dns["neta"], "+tcp", "web")
        self.assertEqual(d.transport, "TCP", d)
        self.assertEqual(d.data(), [self.vips["web"]["neta"]], d)
        # 40 A records do not fit 512 bytes: TC and no records over UDP ...
        d = self.dig(n1, self.dns["neta"], "+noedns", "+ignore", "big")
        self.assertIn("tc", d.flags, d)
        self.assertEqual(d.answers, [], d)
        # ... dig retries over TCP and gets them all ...
        d = self.dig(n1, self.dns["neta"], "+noedns", "big")
        self.assertTrue(d.retried_tcp, d)
        self.assertEqual(len(d.data()), BIG_TASKS, d)
        # ... and a client announcing an EDNS buffer of 1232 gets them over UDP (RFC 6891).
        d = self.dig(n1, self.dns["neta"], "+bufsize=1232", "+ignore", "big")
        self.assertNotIn("tc", d.flags, d)
        self.assertEqual(d.transport, "UDP", d)
        self.assertEqual(len(d.data()), BIG_TASKS, d)

    def test_other_names_are_forwarded_and_cached_for_their_ttl(self):
        n1 = self.c.nodes[0]
        d = self.dig(n1, self.dns["neta"], "www.example.test")
        self.assertEqual(d.status, "NOERROR", d)
        self.assertNotIn("aa", d.flags, d)
        self.assertIn("ra", d.flags, d)
        self.assertEqual(d.data(), ["192.0.2.10"], d)
        d = self.dig(n1, self.dns["neta"], "www.example.test")
        self.assertEqual(d.data(), ["192.0.2.10"], d)
        self.assertLessEqual(d.answers[0][1], 300)
        self.assertEqual(sum(u.count("www.example.test") for u in self.upstreams), 1,
                         "the second query was not answered from the cache")
        # Negative answers are cached by the SOA's MINIMUM (RFC 2308).
        for _ in range(2):
            d = self.dig(n1, self.dns["neta"], "nope.example.test")
            self.assertEqual(d.status, "NXDOMAIN", d)
        self.assertEqual(sum(u.count("nope.example.test") for u in self.upstreams), 1)
        # A TTL of 1 s is honoured: asked again once it ran out.
        self.dig(n1, self.dns["neta"], "ttl1.example.test")
        time.sleep(1.3)
        d = self.dig(n1, self.dns["neta"], "ttl1.example.test")
        self.assertEqual(d.data(), ["192.0.2.11"], d)
        self.assertEqual(sum(u.count("ttl1.example.test") for u in self.upstreams), 2)

    def test_concurrent_misses_for_one_name_are_one_upstream_query(self):
        n1 = self.c.nodes[0]
        before = sum(u.count("slow.example.test") for u in self.upstreams)
        coalesced = cluster.metric(self.metrics(n1), "routemesh_dns_coalesced_total")
        r = subprocess.run(self.netns.prefix_args(n1.ip) + [
            sys.executable, "-c", BURST, self.dns["neta"], str(DNS_PORT), "slow.example.test",
            "192.0.2.40", "20"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        results = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(len(results), 20, r.stdout)
        for res in results:
            self.assertEqual(res, {"id_ok": True, "rcode": 0, "has": True})
        self.assertEqual(sum(u.count("slow.example.test") for u in self.upstreams) - before, 1,
                         "concurrent misses for one name were each asked upstream")
        self.assertGreaterEqual(
            cluster.metric(self.metrics(n1), "routemesh_dns_coalesced_total") - coalesced, 19)

    def test_a_truncated_upstream_reply_is_asked_again_over_tcp(self):
        n2 = self.c.nodes[1]
        d = self.dig(n2, self.dns["neta"], "big.example.test")
        self.assertEqual(d.status, "NOERROR", d)
        self.assertEqual(d.data(), ["192.0.2.21", "192.0.2.22", "192.0.2.23"], d)
        self.assertEqual(d.transport, "UDP", "the client itself did not need TCP")
        self.assertEqual(sum(u.count("big.example.test", "udp") for u in self.upstreams), 1)
        self.assertEqual(sum(u.count("big.example.test", "tcp") for u in self.upstreams), 1)

    def test_an_upstream_that_stops_answering_is_failed_over(self):
        n1 = self.c.nodes[0]
        try:
            d = self.dig(n1, self.dns["neta"], "who.example.test")
            self.assertEqual(d.data(), ["192.0.2.1"], f"the first upstream answers first\n{d}")
            self.up1.silent = True
            start = time.monotonic()
            d = self.dig(n1, self.dns["neta"], "who.example.test")
            self.assertEqual(d.data(), ["192.0.2.2"], d)
            self.assertLess(time.monotonic() - start, 2.5, "failover took longer than one timeout")
            # The silent one is set aside: the next query goes to the second at once.
            start = time.monotonic()
            d = self.dig(n1, self.dns["neta"], "who.example.test")
            self.assertEqual(d.data(), ["192.0.2.2"], d)
            self.assertLess(time.monotonic() - start, TIMEOUT_MS / 1000.0, "asked the silent one again")
            text = self.metrics(n1)
            self.assertGreaterEqual(cluster.metric(text, "routemesh_dns_upstream_queries_total",
                                                   {"upstream": self.up1.addr, "result": "timeout"}), 1)
            # SERVFAIL only when every upstream fails.
            self.up2.silent = True
            d = self.dig(n1, self.dns["neta"], "who.example.test")
            self.assertEqual(d.status, "SERVFAIL", d)
        finally:
            self.up1.silent = self.up2.silent = False

    def test_a_removed_task_is_gone_from_the_answers(self):
        n1, n2 = self.c.nodes
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/tasks", {"service": "web", "node": "n1", "address": "172.31.1.9:80"})
        self.assertEqual(s, 201, b)
        tid = b.get("task", b)["id"]
        harness.wait_until(lambda: "172.31.1.9" in self.dig(n2, self.dns["neta"], "tasks.web").data(),
                           timeout=10, what="the new task in the answers")
        s, b = lead.api("DELETE", f"/v1/tasks/{tid}")
        self.assertIn(s, (200, 204), b)
        for n in (n1, n2):
            harness.wait_until(lambda: self.dig(n, self.dns["neta"], "tasks.web").data() ==
                               ["172.31.1.1", "172.31.1.2"], timeout=10,
                               what=f"the removed task gone from {n.name}'s answers")
            d = self.dig(n, self.dns["neta"], "-x", "172.31.1.9")
            self.assertEqual(d.status, "NXDOMAIN", d)

    def test_a_network_dns_address_refuses_sources_outside_the_network(self):
        n1 = self.c.nodes[0]
        # The node's own underlay address is in no network and no task's: refused.
        d = self.dig(n1, self.dns["neta"], "-b", n1.ip, "web")
        self.assertEqual(d.status, "REFUSED", d)
        # neta's own address (the default source towards it, on lo) is answered.
        d = self.dig(n1, self.dns["neta"], "-b", self.dns["neta"], "web")
        self.assertEqual(d.data(), [self.vips["web"]["neta"]], d)
        # netb's DNS address is no address of neta.
        d = self.dig(n1, self.dns["neta"], "-b", self.dns["netb"], "web")
        self.assertEqual(d.status, "REFUSED", d)

    def test_a_malformed_packet_gets_formerr_and_the_server_goes_on(self):
        n1 = self.c.nodes[0]
        code = ("import socket,sys\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(2)\n"
                f"a=('{self.dns['neta']}',{DNS_PORT})\n"
                # a header announcing one question, followed by a label running past the end
                "s.sendto(bytes([0xab,0xcd,1,0,0,1,0,0,0,0,0,0,9,ord('w')]),a)\n"
                "r=s.recv(512)\n"
                "print(r[0],r[1],r[3]&15)\n"
                # five bytes: not even a header; no answer
                "s.sendto(b'hello',a)\n"
                "try:\n  s.recv(512);print('answered')\n"
                "except socket.timeout:\n  print('dropped')\n")
        r = subprocess.run(self.netns.prefix_args(n1.ip) + [sys.executable, "-c", code],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout.split(), ["171", "205", "1", "dropped"], r.stdout + r.stderr)
        d = self.dig(n1, self.dns["neta"], "web")
        self.assertEqual(d.data(), [self.vips["web"]["neta"]], d)
        text = self.metrics(n1)
        self.assertGreaterEqual(cluster.metric(text, "routemesh_dns_queries_total",
                                               {"type": "none", "result": "formerr"}), 1)
        self.assertGreaterEqual(cluster.metric(text, "routemesh_dns_queries_total",
                                               {"type": "none", "result": "dropped"}), 1)

    def test_queries_are_counted_by_type_and_result(self):
        n2 = self.c.nodes[1]
        self.dig(n2, self.dns["neta"], "web")
        self.dig(n2, self.dns["neta"], "_80._tcp.web", "SRV")
        self.dig(n2, self.dns["neta"], "secret")
        self.dig(n2, self.dns["neta"], "www.example.test")
        text = self.metrics(n2)
        for labels in ({"type": "A", "result": "local"}, {"type": "SRV", "result": "local"},
                       {"type": "A", "result": "nxdomain"}):
            self.assertGreaterEqual(cluster.metric(text, "routemesh_dns_queries_total", labels), 1, labels)
        forwarded = sum(cluster.metric(text, "routemesh_dns_queries_total", {"type": "A", "result": r})
                        for r in ("forwarded", "cached"))
        self.assertGreaterEqual(forwarded, 1)
        self.assertEqual(cluster.metric(text, "routemesh_dns_addresses"), 3)

    def test_z_a_stopped_node_leaves_no_dns_address_behind(self):
        n2 = self.c.nodes[1]
        self.assertIn(f" {self.dns['neta']}/32 ", self.lo_addresses(n2))
        n2.stop()
        lo = self.lo_addresses(n2)
        for address in (self.dns["neta"], self.dns["netb"], "10.255.0.2"):
            self.assertNotIn(f" {address}/32 ", lo, "a DNS address outlived its node")


if __name__ == "__main__":
    unittest.main(verbosity=2)
