"""Network isolation and service-to-service policies (mesh/policy), through real processes.

Two nodes, each in its own network namespace (cluster.Netns): n1 (manager) and n2 (worker).
Service `web` is on network `neta` only, with one task on n2 (172.31.2.1), a VIP on neta and a
published HTTP port. Client "tasks" are addresses on each namespace's loopback registered as
tasks of `client-a` (on neta) and `client-b` (on netb); a third address is nobody's. A client
binds its socket to one of them, so the node sees that source address.

Checked:
  - isolation by default: through web's VIP (layer 4, on either node, across the overlay from
    n1) client-a gets an answer, client-b and the outsider are closed at once, and counted in
    routemesh_policy_denied_total{layer="l4"};
  - a policy added with the CLI (`--from network:netb --allow`) lets client-b in on every node,
    and once removed (`policy rm`) it is kept out again on every node;
  - published ports are not isolated; a policy naming the published port denies per request at
    layer 7: 403 with X-Routemesh-Error: policy, counted with layer="l7";
  - the receiving end of the overlay refuses a stream whose preamble names a source the policy
    denies ('-'), and accepts an allowed one ('+');
  - bad rules are refused with the field named (API 400, CLI exit 2);
  - a published UDP port is judged per flow on the node that takes the datagrams: open to
    everyone, and closed to a source a rule for the port denies (counted in
    routemesh_policy_denied_total and routemesh_proxy_udp_dropped_total{reason="policy"}).
Skipped (loudly) where network namespaces cannot be made."""
import json
import os
import socket
import subprocess
import sys
import time
import unittest

import cluster
import harness

OVERLAY_PORT = 4789
PUBLISHED = 9700
UDP_PUBLISHED = 9712
UDP_TARGET = 9711
HOST = "policy.test"


def skip_loudly(test, reason):
    print(f"\nSKIPPED: {reason}", file=sys.stderr, flush=True)
    test.skipTest(reason)


def task_ip(k):
    return f"172.31.{k}.1"


def client_a(k):
    return f"172.31.{k}.10"


def client_b(k):
    return f"172.31.{k}.20"


def outsider(k):
    return f"172.31.{k}.30"


# Run inside a namespace: connect from SRC to DST:PORT, send one HTTP request, print the status
# code and the X-Routemesh-Error header, or "closed" when the connection ended without a byte.
CLIENT = r"""
import socket, sys
src, dst, port, host = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = socket.socket()
s.settimeout(5)
s.bind((src, 0))
try:
    s.connect((dst, port))
    s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except (ConnectionResetError, BrokenPipeError):
    data = b""
except OSError as e:
    print("error", e)
    sys.exit(0)
if not data:
    print("closed")
else:
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
    err = [h.split(":", 1)[1].strip() for h in head[1:] if h.lower().startswith("x-routemesh-error:")]
    print(head[0].split(" ")[1], err[0] if err else "-")
"""


# Run inside a namespace: from SRC (a new socket, so a new flow each run) send datagrams to
# DST:PORT until one comes back (printed) or 3 s pass ("none").
UDP_CLIENT = r"""
import socket, sys, time
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
s.settimeout(0.3)
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    s.sendto(b"ping from " + src.encode(), (dst, port))
    try:
        print(s.recvfrom(65535)[0].decode())
        sys.exit(0)
    except socket.timeout:
        pass
print("none")
"""


class PolicyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.netns = None
        cls.c = None
        if cluster.Netns.available():
            return
        cls.netns = cluster.Netns(2)
        try:
            for k, ns in enumerate(cls.netns.names, start=1):
                for ip in (task_ip(k), client_a(k), client_b(k), outsider(k)):
                    cluster._ip("-n", ns, "addr", "add", f"{ip}/32", "dev", "lo")
            cls.c = cluster.Cluster(None, ["manager", "worker"], netns=cls.netns)
            cls.c.start()
            n1, n2 = cls.c.nodes
            cls.web = cls.c.whoami("web2", task_ip(2), prefix=cls.netns.prefix_args(n2.ip))
            lead = cls.c.leader()
            for name, subnet in (("neta", "10.60.1.0/24"), ("netb", "10.60.2.0/24")):
                s, b = lead.api("POST", "/v1/networks", {"name": name, "subnet": subnet})
                assert s == 201, b
            s, b = lead.api("POST", "/v1/services", {
                "name": "web", "networks": ["neta"], "labels": {"mesh.http": HOST},
                "ports": [{"published": PUBLISHED, "target": cls.web.port}]})
            assert s == 201, b
            cls.vip = b.get("service", b)["vips"]["neta"]
            s, b = lead.api("POST", "/v1/tasks", {"service": "web", "node": "n2",
                                                  "address": f"{task_ip(2)}:{cls.web.port}"})
            assert s == 201, b
            cls.web_task = b.get("task", b)["id"]
            for svc, net, addr in (("client-a", "neta", client_a), ("client-b", "netb", client_b)):
                s, b = lead.api("POST", "/v1/services", {"name": svc, "networks": [net]})
                assert s == 201, b
                for k in (1, 2):
                    s, b = lead.api("POST", "/v1/tasks", {"service": svc, "node": f"n{k}",
                                                          "address": f"{addr(k)}:9"})
                    assert s == 201, b
            cls.c.wait_converged()
            for n in cls.c.nodes:
                harness.wait_until(lambda: f" {cls.vip}/32 " in cls.lo_addresses(n), timeout=10,
                                   what=f"VIP {cls.vip} on {n.name}'s lo")
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
        if self.netns is None:
            skip_loudly(self, f"network namespaces unavailable ({cluster.Netns.available()}); "
                              "policies are not tested")

    # -- helpers -----------------------------------------------------------------------------
    @classmethod
    def lo_addresses(cls, node):
        return cluster._ip("-n", cls.netns.ns_of(node.ip), "-o", "addr", "show", "dev", "lo").stdout

    def run_in(self, k, script, *args):
        """Runs a Python `script` with `args` in node k's namespace: its output."""
        node = self.c.nodes[k - 1]
        r = subprocess.run(self.netns.prefix_args(node.ip) +
                           [sys.executable, "-c", script, *map(str, args)],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def fetch(self, k, src, dst, port):
        """From node k's namespace, bound to `src`: "200 -", "403 policy", "closed", ..."""
        return self.run_in(k, CLIENT, src, dst, port, HOST)

    def via_vip(self, k, src):
        return self.fetch(k, src, self.vip, self.web.port)

    def wait_everywhere(self, src_of, want, what):
        for k in (1, 2):
            harness.wait_until(lambda: self.via_vip(k, src_of(k)).startswith(want), timeout=15,
                               interval=0.1, what=f"{what} on n{k}")

    def denied(self, layer):
        return sum(harness.metric_sum(n.metrics(), "routemesh_policy_denied_total",
                                      service="web", layer=layer) or 0.0 for n in self.c.nodes)

    def add_policy(self, *args):
        code, out, err = self.c.cli(self.c.leader(), "policy", "add", *args)
        self.assertEqual(code, 0, err)
        return out.strip()

    def rm_policy(self, pid):
        code, out, err = self.c.cli(self.c.leader(), "policy", "rm", pid)
        self.assertEqual(code, 0, err)

    def preamble(self, node, client_ip):
        line = (f"RMOV1 tcp {self.web_task} {self.web.port} {client_ip} 5555 "
                f"{self.vip} {self.web.port}\n").encode()
        return cluster.overlay_preamble(node, line, self.c.nodes[-1])

    # -- tests -------------------------------------------------------------------------------
    def test_1_isolation_by_default_at_layer_4(self):
        before = self.denied("l4")
        for k in (1, 2):  # n1 reaches the task over the overlay, n2 locally
            self.assertEqual(self.via_vip(k, client_a(k)), "200 -", f"client-a via n{k}")
            self.assertEqual(self.via_vip(k, client_b(k)), "closed", f"client-b via n{k}")
            self.assertEqual(self.via_vip(k, outsider(k)), "closed", f"outsider via n{k}")
        self.assertGreaterEqual(self.denied("l4") - before, 4)

    def test_2_a_policy_takes_effect_on_every_node_and_its_removal_too(self):
        pid = self.add_policy("--from", "network:netb", "--to", "service:web", "--allow")
        self.assertRegex(pid, r"^[0-9a-f]{16}$")
        t0 = time.monotonic()
        self.wait_everywhere(client_b, "200", "client-b let in")
        print(f"\n  policy effective on both nodes after {time.monotonic() - t0:.2f}s", flush=True)
        code, out, err = self.c.cli(self.c.leader(), "policy", "ls")
        self.assertEqual(code, 0, err)
        self.assertIn(pid, out)
        self.assertIn("network:netb", out)
        for k in (1, 2):  # the rule names netb only
            self.assertEqual(self.via_vip(k, outsider(k)), "closed")
        self.rm_policy(pid)
        self.wait_everywhere(client_b, "closed", "client-b kept out again")
        s, b = self.c.leader().get(f"/v1/policies/{pid}")
        self.assertEqual(s, 404, b)

    def test_3_a_deny_rule_closes_the_vip_to_its_own_network(self):
        pid = self.add_policy("--from", "service:client-a", "--to", "service:web", "--deny")
        try:
            self.wait_everywhere(client_a, "closed", "client-a denied")
        finally:
            self.rm_policy(pid)
        self.wait_everywhere(client_a, "200", "client-a allowed again")

    def test_4_published_ports_are_open_unless_a_policy_names_them_at_layer_7(self):
        n1 = self.c.nodes[0]
        self.assertEqual(self.fetch(1, outsider(1), n1.ip, PUBLISHED), "200 -")
        before = self.denied("l7")
        # A rule for every port does not touch the published port.
        every = self.add_policy("--from", f"cidr:{outsider(1)}/32", "--to", "service:web", "--deny")
        pid = self.add_policy("--from", f"cidr:{outsider(1)}/32", "--to", "service:web",
                              "--port", str(PUBLISHED), "--deny", "--priority", "5")
        try:
            harness.wait_until(lambda: self.fetch(1, outsider(1), n1.ip, PUBLISHED) == "403 policy",
                               timeout=15, interval=0.1, what="403 on the published port")
            self.assertEqual(self.fetch(1, client_a(1), n1.ip, PUBLISHED), "200 -")
            self.assertGreaterEqual(self.denied("l7") - before, 1)
        finally:
            self.rm_policy(pid)
        harness.wait_until(lambda: self.fetch(1, outsider(1), n1.ip, PUBLISHED) == "200 -",
                           timeout=15, interval=0.1, what="published port open again")
        self.rm_policy(every)

    def test_5_the_overlay_receiver_refuses_denied_sources(self):
        n2 = self.c.nodes[1]
        self.assertEqual(self.preamble(n2, client_a(1)), b"+")
        self.assertEqual(self.preamble(n2, client_b(1)), b"-")
        self.assertEqual(self.preamble(n2, "192.0.2.7"), b"-")
        self.assertGreaterEqual(harness.metric_sum(n2.metrics(), "routemesh_overlay_refused_total",
                                                   reason="policy") or 0, 2)

    def test_6_bad_rules_are_refused_naming_the_field(self):
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/policies", {"from": "host:x", "to": "service:web",
                                                 "action": "allow"})
        self.assertEqual(s, 400, b)
        self.assertEqual(b["error"]["field"], "policy.from")
        s, b = lead.api("POST", "/v1/policies", {"from": "network:netb", "to": "service:web"})
        self.assertEqual(s, 400, b)
        self.assertEqual(b["error"]["field"], "policy.action")
        code, out, err = self.c.cli(lead, "policy", "add", "--from", "cidr:10.0.0.1/8",
                                    "--to", "service:web", "--deny")
        self.assertEqual(code, 2, out + err)
        self.assertIn("--from", err)
        pid = self.add_policy("--from", "network:netb", "--to", "service:web", "--deny")
        code, out, err = self.c.cli(lead, "policy", "add", "--from", "network:netb",
                                    "--to", "service:web", "--allow")
        self.assertEqual(code, 1, out + err)
        self.assertIn("policy.from", err)
        self.rm_policy(pid)

    def udp(self, k, src, dst, port):
        """From node k's namespace, bound to `src`: the echo of a datagram, or "none"."""
        return self.run_in(k, UDP_CLIENT, src, dst, port)

    def test_7_a_published_udp_port_is_judged_where_the_datagrams_arrive(self):
        n2 = self.c.nodes[1]
        here = os.path.dirname(os.path.abspath(__file__))
        echo = harness.Proc(self.netns.prefix_args(n2.ip) + [
            sys.executable, os.path.join(here, "ns_echo.py"), task_ip(2), str(UDP_TARGET)])
        lead = self.c.leader()
        task = None
        try:
            echo.wait_line("listening on", which="out", timeout=10)
            s, b = lead.api("POST", "/v1/services", {"name": "udpweb", "ports": [
                {"published": UDP_PUBLISHED, "target": UDP_TARGET, "protocol": "udp"}]})
            self.assertEqual(s, 201, b)
            s, b = lead.api("POST", "/v1/tasks", {"service": "udpweb", "node": "n2",
                                                  "address": f"{task_ip(2)}:{UDP_TARGET}"})
            self.assertEqual(s, 201, b)
            task = b.get("task", b)["id"]
            want = f"ping from {outsider(2)}"
            # n2 takes the datagrams and its task is local: no overlay receiver judges them.
            harness.wait_until(lambda: self.udp(2, outsider(2), n2.ip, UDP_PUBLISHED) == want,
                               timeout=15, interval=0.2, what="the published UDP port open")
            dropped = harness.metric_sum(n2.metrics(), "routemesh_proxy_udp_dropped_total",
                                         reason="policy") or 0.0
            denied = harness.metric_sum(n2.metrics(), "routemesh_policy_denied_total",
                                        service="udpweb", layer="l4") or 0.0
            pid = self.add_policy("--from", f"cidr:{outsider(2)}/32", "--to", "service:udpweb",
                                  "--port", str(UDP_PUBLISHED), "--deny")
            try:
                harness.wait_until(
                    lambda: self.udp(2, outsider(2), n2.ip, UDP_PUBLISHED) == "none",
                    timeout=15, interval=0.2, what="the published UDP port closed to the outsider")
                self.assertEqual(self.udp(2, client_a(2), n2.ip, UDP_PUBLISHED),
                                 f"ping from {client_a(2)}")
                m = n2.metrics()
                self.assertGreater(harness.metric_sum(m, "routemesh_proxy_udp_dropped_total",
                                                      reason="policy") or 0.0, dropped)
                self.assertGreater(harness.metric_sum(m, "routemesh_policy_denied_total",
                                                      service="udpweb", layer="l4") or 0.0, denied)
            finally:
                self.rm_policy(pid)
            harness.wait_until(lambda: self.udp(2, outsider(2), n2.ip, UDP_PUBLISHED) == want,
                               timeout=15, interval=0.2, what="the published UDP port open again")
        finally:
            if task is not None:
                lead.api("DELETE", f"/v1/tasks/{task}")
            lead.api("DELETE", "/v1/services/udpweb")
            echo.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
