"""The nftables backend of network policy (firewall.backend: nftables), through real processes.

Two nodes, each in its own network namespace (cluster.Netns): n1 (manager) and n2 (worker),
both with `firewall: {backend: nftables}`. Service `web` is on network `neta` only, with one
task on n2 (172.31.2.1), a VIP on neta and a published layer-4 port. As in test_policy.py,
client "tasks" are addresses on each namespace's loopback: client-a (on neta), client-b (on
netb) and an outsider.

Checked:
  - every node installs the table `inet routemesh` in its own namespace, with a chain for the
    VIP; the host's own nftables (outside the namespaces) never gets it;
  - a source the policy denies gets no SYN-ACK at all: its connect times out (the kernel drops
    the SYN; the rule's counter moves), where the proxy alone would accept and close; an allowed
    source connects and gets its answer;
  - a policy change re-renders the table on every node (the allowing rule appears, client-b
    connects), and its removal takes it away again;
  - a rule naming the published layer-4 port drops the denied source there too;
  - routemesh_firewall_applies_total{result="ok"} counts, nothing failed;
  - a node that stops removes its table;
  - a node whose nft cannot run logs it, counts result="missing" and keeps enforcing in user
    space (the denied source is accepted and closed).
Skipped only when not root (namespaces and nftables need CAP_NET_ADMIN)."""
import os
import shutil
import subprocess
import sys
import time
import unittest

import cluster
import harness

PUBLISHED = 9710
TABLE = ["inet", "routemesh"]


def task_ip(k):
    return f"172.31.{k}.1"


def client_a(k):
    return f"172.31.{k}.10"


def client_b(k):
    return f"172.31.{k}.20"


def outsider(k):
    return f"172.31.{k}.30"


# Run inside a namespace: connect from SRC to DST:PORT within 2 s, send one HTTP request, print
# the status code; "timeout" when the connection never opened (no SYN-ACK), "closed" when it
# opened and ended without a byte, "refused" on a RST.
CLIENT = r"""
import socket, sys
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket()
s.bind((src, 0))
s.settimeout(2)
try:
    s.connect((dst, port))
except socket.timeout:
    print("timeout"); sys.exit(0)
except ConnectionRefusedError:
    print("refused"); sys.exit(0)
s.settimeout(5)
data = b""
try:
    s.sendall(b"GET / HTTP/1.1\r\nHost: fw.test\r\nConnection: close\r\n\r\n")
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except (ConnectionResetError, BrokenPipeError):
    data = b""
print(data.split(b" ", 2)[1].decode() if data else "closed")
"""


def host_tables():
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=20)
    return r.stdout


class FirewallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.netns = None
        cls.c = None
        if os.geteuid() != 0:
            return
        if shutil.which("nft") is None:
            raise AssertionError("nft is not installed: run scripts/deps.sh (Debian nftables)")
        why = cluster.Netns.available()
        if why:
            raise AssertionError(f"root, yet network namespaces cannot be made: {why}")
        cls.host_before = host_tables()
        cls.netns = cluster.Netns(2)
        try:
            for k, ns in enumerate(cls.netns.names, start=1):
                for ip in (task_ip(k), client_a(k), client_b(k), outsider(k)):
                    cluster._ip("-n", ns, "addr", "add", f"{ip}/32", "dev", "lo")
            cls.c = cluster.Cluster(None, ["manager", "worker"], netns=cls.netns,
                                    node_extra={"firewall": {"backend": "nftables"}})
            cls.c.start()
            n1, n2 = cls.c.nodes
            cls.web = cls.c.whoami("web2", task_ip(2), prefix=cls.netns.prefix_args(n2.ip))
            lead = cls.c.leader()
            for name, subnet in (("neta", "10.61.1.0/24"), ("netb", "10.61.2.0/24")):
                s, b = lead.api("POST", "/v1/networks", {"name": name, "subnet": subnet})
                assert s == 201, b
            s, b = lead.api("POST", "/v1/services", {
                "name": "web", "networks": ["neta"],
                "ports": [{"published": PUBLISHED, "target": cls.web.port}]})
            assert s == 201, b
            cls.vip = b.get("service", b)["vips"]["neta"]
            s, b = lead.api("POST", "/v1/tasks", {"service": "web", "node": "n2",
                                                  "address": f"{task_ip(2)}:{cls.web.port}"})
            assert s == 201, b
            for svc, net, addr in (("client-a", "neta", client_a), ("client-b", "netb", client_b)):
                s, b = lead.api("POST", "/v1/services", {"name": svc, "networks": [net]})
                assert s == 201, b
                for k in (1, 2):
                    s, b = lead.api("POST", "/v1/tasks", {"service": svc, "node": f"n{k}",
                                                          "address": f"{addr(k)}:9"})
                    assert s == 201, b
            cls.c.wait_converged()
            for n in cls.c.nodes:
                harness.wait_until(lambda: f"ip daddr {cls.vip} tcp dport {cls.web.port} jump"
                                   in cls.table(n), timeout=15, what=f"VIP rule on {n.name}")
                harness.wait_until(lambda: client_a(2) in cls.table(n), timeout=15,
                                   what=f"client-a's task address on {n.name}")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.c is not None:
            cls.c.stop()
        if cls.netns is not None:
            cls.netns.close()

    def setUp(self):
        if os.geteuid() != 0:
            reason = "not root: network namespaces and nftables need CAP_NET_ADMIN"
            print(f"\nSKIPPED: {reason}", file=sys.stderr, flush=True)
            self.skipTest(reason)

    # -- helpers -----------------------------------------------------------------------------
    @classmethod
    def nft(cls, node, *args):
        return subprocess.run(cls.netns.prefix_args(node.ip) + ["nft", *args],
                              capture_output=True, text=True, timeout=20)

    @classmethod
    def table(cls, node):
        """`nft list table inet routemesh` in the node's namespace ("" when absent)."""
        r = cls.nft(node, "list", "table", *TABLE)
        return r.stdout if r.returncode == 0 else ""

    def connect(self, k, src, dst, port):
        node = self.c.nodes[k - 1]
        r = subprocess.run(self.netns.prefix_args(node.ip) +
                           [sys.executable, "-c", CLIENT, src, dst, str(port)],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def via_vip(self, k, src):
        return self.connect(k, src, self.vip, self.web.port)

    def isolation_drops(self, node):
        """Packets counted by the VIP chain's isolation rule."""
        for line in self.table(node).splitlines():
            if "isolation: not on network neta" in line and "counter packets" in line:
                return int(line.split("counter packets ")[1].split()[0])
        return 0

    def applies(self, node, result):
        return harness.metric_sum(node.metrics(), "routemesh_firewall_applies_total",
                                  result=result) or 0.0

    def add_policy(self, *args):
        code, out, err = self.c.cli(self.c.leader(), "policy", "add", *args)
        self.assertEqual(code, 0, err)
        return out.strip()

    def rm_policy(self, pid):
        code, out, err = self.c.cli(self.c.leader(), "policy", "rm", pid)
        self.assertEqual(code, 0, err)

    # -- tests -------------------------------------------------------------------------------
    def test_1_each_node_installs_its_table_and_the_host_has_none(self):
        for n in self.c.nodes:
            t = self.table(n)
            self.assertIn("hook input priority filter", t)
            self.assertIn(f'comment "service web on network neta"', t)
            self.assertIn("10.61.1.0/24 accept", t)
            self.assertIn('drop comment "isolation: not on network neta"', t)
        self.assertNotIn("routemesh", host_tables())
        self.assertEqual(host_tables(), self.host_before)

    def test_2_the_kernel_drops_a_denied_source_and_an_allowed_one_connects(self):
        for k in (1, 2):  # n1 reaches the task over the overlay, n2 locally
            node = self.c.nodes[k - 1]
            before = self.isolation_drops(node)
            self.assertEqual(self.via_vip(k, client_a(k)), "200", f"client-a via n{k}")
            t0 = time.monotonic()
            self.assertEqual(self.via_vip(k, client_b(k)), "timeout", f"client-b via n{k}")
            self.assertGreaterEqual(time.monotonic() - t0, 1.5)
            self.assertEqual(self.via_vip(k, outsider(k)), "timeout", f"outsider via n{k}")
            self.assertGreaterEqual(self.isolation_drops(node) - before, 2)

    def test_3_a_policy_change_rerenders_the_table_on_every_node(self):
        pid = self.add_policy("--from", "network:netb", "--to", "service:web", "--allow")
        try:
            for k, n in enumerate(self.c.nodes, start=1):
                harness.wait_until(lambda: f'comment "policy {pid}"' in self.table(n), timeout=15,
                                   what=f"policy {pid} in n{k}'s table")
                harness.wait_until(lambda: self.via_vip(k, client_b(k)) == "200", timeout=15,
                                   interval=0.1, what=f"client-b let in on n{k}")
                self.assertEqual(self.via_vip(k, outsider(k)), "timeout")
        finally:
            self.rm_policy(pid)
        for k, n in enumerate(self.c.nodes, start=1):
            harness.wait_until(lambda: pid not in self.table(n), timeout=15,
                               what=f"policy {pid} gone from n{k}'s table")
            self.assertEqual(self.via_vip(k, client_b(k)), "timeout")

    def test_4_a_rule_naming_the_published_port_drops_there_too(self):
        n1 = self.c.nodes[0]
        self.assertEqual(self.connect(1, outsider(1), n1.ip, PUBLISHED), "200")
        pid = self.add_policy("--from", f"cidr:{outsider(1)}/32", "--to", "service:web",
                              "--port", str(PUBLISHED), "--deny")
        try:
            harness.wait_until(lambda: f"tcp dport {PUBLISHED} jump" in self.table(n1),
                               timeout=15, what="published port chain on n1")
            self.assertEqual(self.connect(1, outsider(1), n1.ip, PUBLISHED), "timeout")
            self.assertEqual(self.connect(1, client_a(1), n1.ip, PUBLISHED), "200")
        finally:
            self.rm_policy(pid)
        harness.wait_until(lambda: f"tcp dport {PUBLISHED} jump" not in self.table(n1),
                           timeout=15, what="published port chain gone on n1")
        self.assertEqual(self.connect(1, outsider(1), n1.ip, PUBLISHED), "200")

    def test_5_applies_are_counted(self):
        for n in self.c.nodes:
            self.assertGreaterEqual(self.applies(n, "ok"), 1, n.name)
            self.assertEqual(self.applies(n, "failed"), 0, n.name)
            self.assertEqual(self.applies(n, "missing"), 0, n.name)

    def test_6_a_stopped_node_removes_its_table_and_without_nft_enforces_in_user_space(self):
        n2 = self.c.nodes[1]
        self.assertNotEqual(self.table(n2), "")
        n2.stop()
        self.assertEqual(self.table(n2), "", "the table outlived the node")
        self.assertIn("removed", "\n".join(n2.proc.lines("err") + n2.proc.lines("out")))

        n2.extra = {"firewall": {"backend": "nftables", "nft": "/nonexistent/nft"}}
        n2.write_config()
        n2.start()
        harness.wait_until(lambda: self.applies(n2, "missing") >= 1, timeout=15,
                           what="result=missing counted on n2")
        self.assertEqual(self.table(n2), "")
        harness.wait_until(lambda: self.via_vip(2, client_a(2)) == "200", timeout=15,
                           interval=0.2, what="client-a served by the restarted n2")
        self.assertEqual(self.via_vip(2, client_b(2)), "closed")  # the proxy's own check
        log = "\n".join(n2.proc.lines("err") + n2.proc.lines("out"))
        self.assertIn("cannot run `/nonexistent/nft`", log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
