"""The ingress overlay across hosts: each node runs in its own network namespace on a private
bridge (the underlay), and each node's tasks listen on 172.31.K.1, an address on that
namespace's own loopback that no other namespace can route to. Only node addresses are
reachable between hosts, so a request on one node can reach a task on another only through
the overlay (node.overlay, port 4789 on the node's address).

Checked through real processes and sockets:
  - the topology really is closed (a node's namespace cannot connect to another's task),
  - HTTP by Host on any node reaches a task on another node, keep-alive on the client leg,
    with the real client in X-Forwarded-For,
  - a layer-4 published port on any node reaches a remote task, spliced, with a PROXY protocol
    v2 header (mesh.proxy_protocol=v2) naming the real client; a half-close either way
    crosses the encrypted overlay and the other direction keeps flowing,
  - a published UDP port relays datagrams per flow to a task on another node (over the
    overlay) and on the same node,
  - mesh.lb.locality=prefer-local keeps traffic on the node that took it,
  - streams run inside mutual TLS between the nodes: plaintext, no client certificate and a
    user's certificate are refused at the overlay port and counted,
  - a stream for a task of another node, an unknown task or a port that is not exposed is
    refused by the receiving node and counted; a malformed preamble is refused too,
  - active health checks: a new task takes traffic once its node saw it pass, a stopped one
    is marked unhealthy in the store,
  - a rolling update (task add -> healthy -> drain -> stop -> rm, one node at a time) and a
    task killed without warning, under keep-alive load on every node, fail no request,
  - a node that stops heartbeating is `down` within cluster.node_down_after_ms, its tasks
    leave every route table, and it is `ready` and served again once it is back,
  - a host-mode published port opens only on nodes running a task of the service, reaches
    only that node's tasks, and closes when the node's last task goes,
  - a service VIP relays UDP to its task on every node, over the overlay where needed,
  - a service VIP answers on every node (from inside each namespace, for a task on another
    node), is on each node's loopback while the node runs and gone after it stops,
  - encrypted streams get new keys by epoch and by bytes without ending: a layer-4 stream, and
    keep-alive HTTP, whose session writes into the stream's TLS itself,
  - the receiving node relays a stream's TLS straight to the task both ways, ends one that
    moved nothing for timeouts.l4_idle_ms, and ends one whose task closed as the next request
    arrived (the sending node then retries it).
Skipped (loudly) where network namespaces cannot be made."""
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import unittest

import cluster
import harness

ECHO_PORT = 7000
L4_PORT = 9400
OVERLAY_PORT = 4789


def skip_loudly(test, reason):
    print(f"\nSKIPPED: {reason}", file=sys.stderr, flush=True)
    test.skipTest(reason)


def task_ip(k):
    return f"172.31.{k}.1"


def metric(node, name, **labels):
    """Sum of a counter's samples on `node` whose labels include `labels` (0 when none)."""
    return harness.metric_sum(node.metrics(), name, **labels) or 0.0


def parse_proxy_v2(data):
    """(src ip, src port, dst ip, dst port, rest) of a PROXY v2 TCP4 header at the start of
    `data`, or None."""
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    if not data.startswith(sig) or len(data) < 16:
        return None
    ver_cmd, fam, length = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if ver_cmd != 0x21 or fam != 0x11 or len(data) < 16 + length:
        return None
    src, dst, sport, dport = struct.unpack("!4s4sHH", data[16:28])
    return socket.inet_ntoa(src), sport, socket.inet_ntoa(dst), dport, data[16 + length:]


class OverlayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.netns = None
        cls.c = None
        why = cluster.Netns.available()
        if why:
            return
        cls.netns = cluster.Netns(3)
        cls.echoes = []
        try:
            for k, ns in enumerate(cls.netns.names, start=1):
                cluster._ip("-n", ns, "addr", "add", f"{task_ip(k)}/32", "dev", "lo")
            cls.c = cluster.Cluster(None, ["manager", "worker", "worker"], netns=cls.netns)
            cls.c.start()
            cls.who = [cls.c.whoami(f"task{k}", task_ip(k), prefix=cls.netns.prefix_args(n.ip))
                       for k, n in enumerate(cls.c.nodes, start=1)]
            here = os.path.dirname(os.path.abspath(__file__))
            for k, n in enumerate(cls.c.nodes, start=1):
                e = harness.Proc(cls.netns.prefix_args(n.ip) + [sys.executable, os.path.join(here, "ns_echo.py"),
                                                                 task_ip(k), str(ECHO_PORT)])
                cls.echoes.append(e)
                e.wait_line(r"listening on", which="out")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for e in getattr(cls, "echoes", []):
            e.stop()
        if cls.c is not None:
            cls.c.stop()
        if cls.netns is not None:
            cls.netns.close()

    def setUp(self):
        if self.netns is None:
            skip_loudly(self, f"network namespaces unavailable ({cluster.Netns.available()}); "
                              "the overlay is not tested")

    # -- helpers -----------------------------------------------------------------------------
    def service(self, name, labels=None, ports=None, tasks=()):
        """Creates a service and one task per (node index, port) in `tasks`; returns task ids."""
        lead = self.c.leader()
        body = {"name": name, "labels": labels or {}}
        if ports:
            body["ports"] = ports
        s, b = lead.api("POST", "/v1/services", body)
        self.assertEqual(s, 201, b)
        ids = []
        for k, port in tasks:
            s, b = lead.api("POST", "/v1/tasks", {"service": name, "node": f"n{k}",
                                                   "address": f"{task_ip(k)}:{port}"})
            self.assertEqual(s, 201, b)
            ids.append(b["task"]["id"] if "task" in b else b["id"])
        self.c.wait_converged()
        return ids

    def ns_connect(self, from_node, ip, port):
        """Return code of a TCP connect from `from_node`'s namespace to ip:port (0 = connected)."""
        code = ("import socket,sys\ns=socket.socket();s.settimeout(2)\n"
                f"sys.exit(s.connect_ex(('{ip}',{port})))")
        r = subprocess.run(self.netns.prefix_args(from_node.ip) + [sys.executable, "-c", code],
                           capture_output=True, timeout=20)
        return r.returncode

    # -- tests -------------------------------------------------------------------------------
    def test_topology_is_closed(self):
        n1 = self.c.nodes[0]
        self.assertEqual(self.ns_connect(self.c.nodes[2], task_ip(3), self.who[2].port), 0,
                         "a task is not reachable from its own node")
        self.assertNotEqual(self.ns_connect(n1, task_ip(3), self.who[2].port), 0,
                            "node 1 reaches node 3's task directly: the test would not need the overlay")

    def test_http_reaches_a_remote_task_with_the_client_ip(self):
        self.service("web", {"mesh.http": "web.overlay.test"}, tasks=[(3, self.who[2].port)])
        n1 = self.c.nodes[0]
        before = metric(self.c.nodes[2], "routemesh_overlay_streams_total", direction="in")
        client = harness.Client(n1.ip, cluster.HTTP_PORT)
        try:
            for i in range(5):  # keep-alive on the client leg
                r = client.request("GET", f"/r{i}", host="web.overlay.test")
                self.assertEqual(r.status, 200, r.body)
                w = harness.parse_whoami(r.body)
                self.assertEqual(w["name"], "task3")
                xff = w["headers"].get("x-forwarded-for", [""])[-1]
                self.assertEqual(xff.split(",")[-1].strip(), f"{self.netns.prefix}.1",
                                 f"client ip lost: {w['headers']}")
        finally:
            client.close()
        self.assertGreaterEqual(metric(self.c.nodes[2], "routemesh_overlay_streams_total",
                                       direction="in") - before, 1)
        # every node answers for it, the one running the task included
        for n in self.c.nodes:
            self.assertEqual(n.served_by("web.overlay.test"), "task3", n.name)

    def test_l4_reaches_a_remote_task_with_a_proxy_v2_header(self):
        self.service("tcpv2", {"mesh.proxy_protocol": "v2"},
                     ports=[{"published": L4_PORT, "target": ECHO_PORT}], tasks=[(2, ECHO_PORT)])
        for n in (self.c.nodes[0], self.c.nodes[2]):  # through the overlay from n1 and n3
            s = harness.wait_until(lambda: self._connect(n.ip, L4_PORT), timeout=10,
                                   what=f"published port {L4_PORT} open on {n.name}")
            try:
                s.sendall(b"hello overlay")
                data = b""
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    hdr = parse_proxy_v2(data)
                    if hdr and hdr[4] == b"hello overlay":
                        break
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                hdr = parse_proxy_v2(data)
                self.assertIsNotNone(hdr, f"no PROXY v2 header from {n.name}: {data!r}")
                src, sport, dst, dport, rest = hdr
                self.assertEqual(src, f"{self.netns.prefix}.1")
                self.assertEqual(sport, s.getsockname()[1])
                self.assertEqual((dst, dport), (n.ip, L4_PORT))
                self.assertEqual(rest, b"hello overlay")
            finally:
                s.close()

    def test_l4_half_close_crosses_the_encrypted_overlay_both_ways(self):
        """A layer-4 stream through n1 to n2's echo task, inside the overlay's TLS: the client's
        half-close reaches the task and the task's answer to it still comes back; the task's
        half-close reaches the client and the client can still send (TLS 1.3 close_notify
        closes one direction, like a TCP FIN)."""
        # The echo server runs in the test process (so the test can read what it received),
        # reachable from n2's namespace over the bridge; the task is n2's, so n1 reaches it
        # through the overlay.
        echo = harness.TcpEchoServer(f"{self.netns.prefix}.1")
        self.addCleanup(echo.close)
        port = L4_PORT + 500
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/services", {
            "name": "halfclose", "ports": [{"published": port, "target": echo.port}]})
        self.assertEqual(s, 201, b)
        s, b = lead.api("POST", "/v1/tasks", {"service": "halfclose", "node": "n2",
                                               "address": f"{echo.ip}:{echo.port}"})
        self.assertEqual(s, 201, b)
        self.c.wait_converged()
        n1 = self.c.nodes[0]

        def recv_until_eof(s, timeout=5.0):
            data, deadline = b"", time.monotonic() + timeout
            while time.monotonic() < deadline:
                s.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = s.recv(4096)
                except socket.timeout:
                    return data, "timeout"
                except ConnectionResetError:
                    return data, "reset"
                if not chunk:
                    return data, "eof"
                data += chunk
            return data, "timeout"

        # The client half-closes: the echo task sees EOF, answers BYE and closes.
        s = harness.wait_until(lambda: self._connect(n1.ip, port), timeout=10,
                               what=f"published port {port} open on n1")
        try:
            s.sendall(b"hello over the overlay")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(s), (b"hello over the overlayBYE", "eof"))
        finally:
            s.close()

        # The task half-closes (on HALF it answers HALF-OK and shuts its write side, then
        # keeps reading): the client sees EOF and can still send.
        s = self._connect(n1.ip, port)
        self.assertIsNotNone(s)
        try:
            s.sendall(b"HALF")
            self.assertEqual(recv_until_eof(s), (b"HALF-OK", "eof"))
            s.sendall(b"still here")
            harness.wait_until(lambda: echo.received[-1] == len(b"HALFstill here"), timeout=5,
                               what="the task to receive the bytes sent after its half-close")
            s.shutdown(socket.SHUT_WR)
        finally:
            s.close()

    def test_udp_echo_through_a_published_port(self):
        port = L4_PORT + 300
        self.service("udpecho", {}, ports=[{"published": port, "target": ECHO_PORT, "protocol": "udp"}],
                     tasks=[(3, ECHO_PORT)])
        for n in (self.c.nodes[0], self.c.nodes[2]):  # remote (overlay) and local
            socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
            try:
                for s in socks:
                    s.settimeout(0.5)

                def echo(s, payload):
                    for _ in range(20):  # the first datagram may race the listener's start
                        s.sendto(payload, (n.ip, port))
                        try:
                            data, _ = s.recvfrom(65535)
                            return data
                        except socket.timeout:
                            continue
                    return None
                for i in range(3):
                    for k, s in enumerate(socks):
                        payload = f"{n.name} flow {k} datagram {i}".encode()
                        self.assertEqual(echo(s, payload), payload)
                big = bytes(range(256)) * 200  # 51,200 bytes: one datagram, framed on the overlay
                self.assertEqual(echo(socks[0], big), big)
            finally:
                for s in socks:
                    s.close()
        self.assertGreaterEqual(metric(self.c.nodes[0], "routemesh_proxy_udp_datagrams_total",
                                       direction="to_client"), 4)
        self.assertGreaterEqual(metric(self.c.nodes[2], "routemesh_overlay_streams_total",
                                       direction="in"), 2)

    def l4_whoami(self, ip, port):
        """The whoami name behind a layer-4 port, by one HTTP request spliced through it; None
        when the port does not accept."""
        s = self._connect(ip, port)
        if s is None:
            return None
        try:
            s.settimeout(5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: l4\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return None
        finally:
            s.close()
        return harness.parse_whoami(data.partition(b"\r\n\r\n")[2])["name"]

    def test_a_host_mode_port_opens_only_where_the_service_runs(self):
        port = L4_PORT + 400
        n1, n2, n3 = self.c.nodes
        self.service("hostmode", {}, ports=[{"published": port, "target": 80, "mode": "host"}],
                     tasks=[(2, self.who[1].port)])
        harness.wait_until(lambda: self.l4_whoami(n2.ip, port), timeout=10,
                           what=f"host-mode port {port} open on {n2.name}")
        self.assertEqual({self.l4_whoami(n2.ip, port) for _ in range(4)}, {"task2"})
        for n in (n1, n3):
            self.assertIsNone(self._connect(n.ip, port),
                              f"host-mode port open on {n.name}, which runs no task of it")
        # A task on node 3 opens the port there, and each node serves only its own task.
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/tasks", {"service": "hostmode", "node": "n3",
                                              "address": f"{task_ip(3)}:{self.who[2].port}"})
        self.assertEqual(s, 201, b)
        self.c.wait_converged()
        harness.wait_until(lambda: self.l4_whoami(n3.ip, port), timeout=10,
                           what=f"host-mode port {port} open on {n3.name}")
        self.assertEqual({self.l4_whoami(n3.ip, port) for _ in range(6)}, {"task3"})
        self.assertEqual({self.l4_whoami(n2.ip, port) for _ in range(6)}, {"task2"})
        self.assertIsNone(self._connect(n1.ip, port))
        # Once node 2 has no task of it, its port closes.
        s, b = lead.api("GET", "/v1/tasks?service=hostmode")
        self.assertEqual(s, 200, b)
        tasks = b["tasks"] if isinstance(b, dict) else b
        on_n2 = [t["id"] for t in tasks if t.get("node") == "n2"]
        self.assertEqual(len(on_n2), 1, tasks)
        s, b = lead.api("DELETE", f"/v1/tasks/{on_n2[0]}")
        self.assertIn(s, (200, 204), b)
        harness.wait_until(lambda: self._connect(n2.ip, port) is None, timeout=10,
                           what=f"host-mode port {port} closed on {n2.name}")
        self.assertEqual(self.l4_whoami(n3.ip, port), "task3")

    @staticmethod
    def _connect(ip, port):
        try:
            return socket.create_connection((ip, port), timeout=2)
        except OSError:
            return None

    def test_prefer_local_keeps_traffic_on_the_node(self):
        self.service("near", {"mesh.http": "near.overlay.test", "mesh.lb.locality": "prefer-local"},
                     tasks=[(1, self.who[0].port), (2, self.who[1].port), (3, self.who[2].port)])
        for k, n in enumerate(self.c.nodes, start=1):
            seen = {n.served_by("near.overlay.test") for _ in range(6)}
            self.assertEqual(seen, {f"task{k}"}, n.name)
        # without the label the same tasks are balanced over every node
        self.service("spread", {"mesh.http": "spread.overlay.test"},
                     tasks=[(1, self.who[0].port), (2, self.who[1].port), (3, self.who[2].port)])
        seen = {self.c.nodes[0].served_by("spread.overlay.test") for _ in range(9)}
        self.assertEqual(seen, {"task1", "task2", "task3"})

    def preamble(self, node, line):
        """One preamble line to `node`'s overlay port inside TLS with node n3's certificate;
        the one-byte answer."""
        return cluster.overlay_preamble(node, line, self.c.nodes[2])

    def test_overlay_streams_need_tls_with_a_node_certificate(self):
        n2 = self.c.nodes[1]
        line = b"RMOV1 http nosuchtask 80 10.0.0.1 5555 10.0.0.2 8080\n"
        tls_refusals = metric(n2, "routemesh_overlay_refused_total", reason="tls")
        with socket.create_connection((n2.ip, OVERLAY_PORT), timeout=5) as s:  # plaintext
            s.sendall(line)
            self.assertEqual(s.recv(1), b"")
        harness.wait_until(lambda: metric(n2, "routemesh_overlay_refused_total", reason="tls")
                           > tls_refusals, timeout=5, what="plaintext refusal counted")
        not_node = metric(n2, "routemesh_overlay_refused_total", reason="not_a_node")
        for who in (self.c.cert_dir, None):  # the admin's certificate, and none at all
            raw = socket.create_connection((n2.ip, OVERLAY_PORT), timeout=5)
            try:
                with cluster.overlay_tls_context(self.c.nodes[2], who).wrap_socket(raw) as s:
                    s.sendall(line)
                    self.assertEqual(s.recv(1), b"", who)
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                pass  # refused during or right after the handshake: as good
        harness.wait_until(lambda: metric(n2, "routemesh_overlay_refused_total", reason="not_a_node")
                           >= not_node + 2, timeout=5, what="non-node certificates counted")
        # With a node's certificate the same line reaches the preamble check ("-": no such task).
        self.assertEqual(self.preamble(n2, line), b"-")

    def test_foreign_unknown_and_malformed_streams_are_refused(self):
        ids = self.service("guarded", {"mesh.http": "guarded.overlay.test"},
                           tasks=[(1, self.who[0].port)])
        n1, n2 = self.c.nodes[0], self.c.nodes[1]
        client = f"{self.netns.prefix}.1 5555 {n2.ip} 8080"
        port = self.who[0].port
        refused = metric(n2, "routemesh_overlay_refused_total")
        # a task of n1, asked of n2: n2 must not dial it
        self.assertEqual(self.preamble(n2, f"RMOV1 http {ids[0]} {port} {client}\n".encode()), b"-")
        self.assertEqual(self.preamble(n2, f"RMOV1 http nosuchtask {port} {client}\n".encode()), b"-")
        self.assertEqual(self.preamble(n2, b"HELLO there\n"), b"?")
        self.assertGreaterEqual(metric(n2, "routemesh_overlay_refused_total") - refused, 3)
        # n1 owns the task, but only on its exposed port
        self.assertEqual(self.preamble(n1, f"RMOV1 http {ids[0]} {port + 1} {client}\n".encode()), b"-")
        self.assertEqual(self.preamble(n1, f"RMOV1 http {ids[0]} {port} {client}\n".encode()), b"+")


    # -- health, drain, rolling update -------------------------------------------------------
    def test_health_checks_gate_new_tasks_and_mark_stopped_ones(self):
        self.service("checked", {"mesh.http": "checked.overlay.test", **cluster.CHECKED_LABELS})
        w = self.c.whoami("checked-a", task_ip(2), prefix=self.netns.prefix_args(self.c.nodes[1].ip))
        tid = cluster.add_task(self.c, "checked", self.c.nodes[1], f"{task_ip(2)}:{w.port}")
        cluster.wait_task_health(self.c, tid, "healthy")
        cluster.wait_routes_everywhere(self.c.nodes, "checked.overlay.test", {"checked-a"})
        self.assertGreaterEqual(metric(self.c.nodes[1], "routemesh_health_checks_total",
                                       result="pass"), 1)
        w.stop()
        cluster.wait_task_health(self.c, tid, "unhealthy")
        self.c.wait_converged()
        for n in self.c.nodes:
            st, _, _ = n.route("checked.overlay.test")
            self.assertEqual(st, 503, n.name)

    def test_a_drained_task_keeps_its_l4_connections_for_the_grace_only(self):
        port = L4_PORT + 1
        ids = self.service("drained", {"mesh.drain.grace_ms": "700"},
                           ports=[{"published": port, "target": ECHO_PORT}], tasks=[(2, ECHO_PORT)])
        n1 = self.c.nodes[0]
        s = harness.wait_until(lambda: self._connect(n1.ip, port), timeout=10,
                               what=f"published port {port} open on n1")
        try:
            s.settimeout(5)
            s.sendall(b"one")
            self.assertEqual(s.recv(16), b"one")
            closed_before = metric(n1, "routemesh_proxy_drain_closed_connections_total")
            st, b = self.c.leader().api("PUT", f"/v1/tasks/{ids[0]}", {"health": "draining"})
            self.assertEqual(st, 200, b)
            self.c.wait_converged()
            t_drained = time.monotonic()
            s.sendall(b"two")  # in the grace: still served
            self.assertEqual(s.recv(16), b"two")
            self.assertEqual(s.recv(16), b"", "the connection outlived the drain grace")
            took = time.monotonic() - t_drained
            self.assertLess(took, 5.0)
            self.assertGreaterEqual(
                metric(n1, "routemesh_proxy_drain_closed_connections_total") - closed_before, 1)
        finally:
            s.close()
        # new connections are not sent to the drained task (none left: closed at once)
        s2 = socket.create_connection((n1.ip, port), timeout=5)
        try:
            s2.sendall(b"three")
            self.assertIn(s2.recv(16), (b"",))
        except ConnectionResetError:
            pass
        finally:
            s2.close()

    def test_a_task_closing_as_a_request_arrives_is_retried_not_hung(self):
        """A kept-alive stream from n1 to a task of n2: while n2 is frozen, n1 sends the next
        request on it and then the task closes its connection, so when n2 runs again its relay
        finds the request and the task's EOF in one turn, the request first. The relay must end
        the stream (n1 then retries the GET on a new one), not wait for more from n1, which
        waits for the answer."""
        from scripted_backend import ScriptedBackend
        # The backend runs in the test process, reachable from n2's namespace over the bridge
        # (only n2 connects to it: the task is n2's, so n1 reaches it through the overlay).
        be = ScriptedBackend(f"{self.netns.prefix}.1")
        self.addCleanup(be.close)
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/services", {"name": "closing",
                                                  "labels": {"mesh.http": "closing.overlay.test"}})
        self.assertEqual(s, 201, b)
        s, b = lead.api("POST", "/v1/tasks", {"service": "closing", "node": "n2",
                                               "address": be.addr})
        self.assertEqual(s, 201, b)
        self.c.wait_converged()
        n1, n2 = self.c.nodes[0], self.c.nodes[1]
        harness.wait_until(lambda: n1.route("closing.overlay.test", "/ok")[0] == 200, 10,
                           what="n1 routes closing.overlay.test")
        client = harness.Client(n1.ip, cluster.HTTP_PORT, timeout=6)
        try:
            r = client.request("GET", "/idle-close?ms=700", host="closing.overlay.test")
            self.assertEqual(r.status, 200, r.body)
            n2.freeze()
            try:
                time.sleep(0.1)
                client.send(b"GET /ok HTTP/1.1\r\nHost: closing.overlay.test\r\n\r\n")
                time.sleep(1.0)  # the backend closes its connection to n2 at 0.7 s
            finally:
                n2.thaw()
            # The sending node would answer 504 only after upstream_response_ms (30 s): the
            # client's 6 s timeout tells a hang from the retry.
            try:
                r = client.read()
            except socket.timeout:
                self.fail("no answer 6 s after the task closed: the relay on n2 hung")
            self.assertEqual(r.status, 200, r.body)
        finally:
            client.close()

    def test_rolling_update_and_a_killed_task_fail_no_request(self):
        self.service("rolling", {"mesh.http": "rolling.overlay.test", **cluster.CHECKED_LABELS})
        current = {}
        for k, n in enumerate(self.c.nodes, start=1):
            w = self.c.whoami(f"v1-{k}", task_ip(k), prefix=self.netns.prefix_args(n.ip))
            current[k] = (cluster.add_task(self.c, "rolling", n, f"{task_ip(k)}:{w.port}"), w)
        for tid, _ in current.values():
            cluster.wait_task_health(self.c, tid, "healthy")
        self.c.wait_converged()
        cluster.wait_routes_everywhere(self.c.nodes, "rolling.overlay.test", {"v1-1", "v1-2", "v1-3"})

        load = cluster.HttpLoad(self.c.nodes, "rolling.overlay.test")
        try:
            for k, n in enumerate(self.c.nodes, start=1):
                time.sleep(0.3)
                current[k] = cluster.roll_task(self.c, "rolling", n, *current[k], f"v2-{k}", task_ip(k))
            time.sleep(0.3)
            # a task killed without warning: requests in flight to it are retried elsewhere
            current[2][1].stop(signal.SIGKILL)
            time.sleep(1.0)
        finally:
            ok, bad, errors = load.finish()
        print(f"\n  rolling update + kill under load: {ok} ok, {len(bad)} non-200, "
              f"{len(errors)} socket errors", flush=True)
        self.assertGreater(ok, 100)
        self.assertEqual(bad, [])
        self.assertEqual(errors, [])
        seen = {self.c.nodes[0].served_by("rolling.overlay.test") for _ in range(9)}
        self.assertLessEqual(seen, {"v2-1", "v2-3"})

class FreshClusterBase(unittest.TestCase):
    """A cluster per test (nodes are killed or stopped), with fast heartbeats and the cluster
    settings in `options`."""
    options = {}
    node_extra = None  # top-level config sections every node gets (e.g. timeouts)

    def setUp(self):
        self.netns = self.c = None
        why = cluster.Netns.available()
        if why:
            skip_loudly(self, f"network namespaces unavailable ({why}); node failure is not tested")
        self.netns = cluster.Netns(3)
        try:
            for k, ns in enumerate(self.netns.names, start=1):
                cluster._ip("-n", ns, "addr", "add", f"{task_ip(k)}/32", "dev", "lo")
            self.c = cluster.Cluster(None, ["manager", "worker", "worker"], netns=self.netns,
                                     heartbeat_ms=100, node_down_after_ms=800,
                                     node_extra=self.node_extra, **self.options)
            self.c.start()
        except BaseException:
            self.tearDown()
            raise

    def tearDown(self):
        if self.c is not None:
            self.c.stop()
        if self.netns is not None:
            self.netns.close()

    def l4_echo_on_n2(self, name):
        """Starts ns_echo.py in n2's namespace and a service `name` publishing L4_PORT to it
        with that one task; returns (the echo process, the task id). The caller stops it."""
        here = os.path.dirname(os.path.abspath(__file__))
        n2 = self.c.nodes[1]
        echo = harness.Proc(self.netns.prefix_args(n2.ip) +
                            [sys.executable, os.path.join(here, "ns_echo.py"), task_ip(2),
                             str(ECHO_PORT)])
        try:
            echo.wait_line(r"listening on", which="out")
            lead = self.c.leader()
            s, b = lead.api("POST", "/v1/services", {
                "name": name, "ports": [{"published": L4_PORT, "target": ECHO_PORT}]})
            self.assertEqual(s, 201, b)
            s, b = lead.api("POST", "/v1/tasks", {"service": name, "node": "n2",
                                                  "address": f"{task_ip(2)}:{ECHO_PORT}"})
            self.assertEqual(s, 201, b)
        except BaseException:
            echo.stop()
            raise
        return echo, (b["task"]["id"] if "task" in b else b["id"])



class FreshClusterTest(FreshClusterBase):
    def node_status(self, name):
        s, b = self.c.leader().get("/v1/nodes")
        self.assertEqual(s, 200, b)
        return {n["name"]: n.get("status") for n in b["nodes"]}.get(name)

    def test_a_silent_node_is_down_and_its_tasks_leave_the_tables(self):
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/services", {"name": "svc", "labels": {"mesh.http": "down.overlay.test"}})
        self.assertEqual(s, 201, b)
        ws = {}
        for k in (2, 3):
            n = self.c.nodes[k - 1]
            ws[k] = self.c.whoami(f"t{k}", task_ip(k), prefix=self.netns.prefix_args(n.ip))
            s, b = lead.api("POST", "/v1/tasks", {"service": "svc", "node": f"n{k}",
                                                  "address": f"{task_ip(k)}:{ws[k].port}"})
            self.assertEqual(s, 201, b)
        self.c.wait_converged()
        n1, n3 = self.c.nodes[0], self.c.nodes[2]
        cluster.wait_routes_everywhere([n1], "down.overlay.test", {"t2", "t3"})
        self.assertEqual({n1.served_by("down.overlay.test") for _ in range(8)}, {"t2", "t3"})

        n3.kill9()
        t0 = time.monotonic()
        harness.wait_until(lambda: self.node_status("n3") == "down", timeout=10, interval=0.05,
                           what="n3 down")
        took = time.monotonic() - t0
        print(f"\n  n3 killed: down after {took:.2f}s (node_down_after_ms=800)", flush=True)
        self.c.wait_converged(nodes=[n1, self.c.nodes[1]])
        self.assertEqual({n1.served_by("down.overlay.test") for _ in range(8)}, {"t2"})

        n3.start()
        harness.wait_until(lambda: self.node_status("n3") == "ready", timeout=10, interval=0.05,
                           what="n3 ready again")
        self.c.wait_converged()
        cluster.wait_routes_everywhere([n1], "down.overlay.test", {"t2", "t3"})
        seen = {n1.served_by("down.overlay.test") for _ in range(8)}
        self.assertEqual(seen, {"t2", "t3"})

    def ns_get(self, node, url):
        """(status or None, body text) of an HTTP GET run inside `node`'s namespace."""
        code = ("import sys,urllib.request\n"
                f"r=urllib.request.urlopen('{url}',timeout=5)\n"
                "sys.stdout.write(str(r.status)+'\\n'+r.read().decode())")
        r = subprocess.run(self.netns.prefix_args(node.ip) + [sys.executable, "-c", code],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            return None, r.stderr
        status, _, body = r.stdout.partition("\n")
        return int(status), body

    def lo_addresses(self, node):
        r = cluster._ip("-n", self.netns.ns_of(node.ip), "-o", "addr", "show", "dev", "lo")
        return r.stdout

    def test_a_service_vip_answers_on_every_node(self):
        n1, n2, n3 = self.c.nodes
        w = self.c.whoami("vt3", task_ip(3), prefix=self.netns.prefix_args(n3.ip))
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/services", {"name": "vipsvc", "ports": [{"published": 9600, "target": w.port}]})
        self.assertEqual(s, 201, b)
        svc = b.get("service", b)
        vip = list(svc["vips"].values())[0]
        s, b = lead.api("POST", "/v1/tasks", {"service": "vipsvc", "node": "n3",
                                              "address": f"{task_ip(3)}:{w.port}"})
        self.assertEqual(s, 201, b)
        self.c.wait_converged()
        for n in (n1, n2, n3):
            harness.wait_until(lambda: f" {vip}/32 " in self.lo_addresses(n), timeout=10,
                               what=f"VIP {vip} on {n.name}'s lo")
            st, body = self.ns_get(n, f"http://{vip}:{w.port}/")
            self.assertEqual(st, 200, body)
            self.assertIn("Name: vt3", body)
        n1.stop()
        self.assertNotIn(f" {vip}/32 ", self.lo_addresses(n1), "the VIP outlived its node")

    def ns_udp_echo(self, node, ip, port, payload):
        """The answer to one datagram sent from inside `node`'s namespace (retried: the first
        may race the VIP socket's start), or None."""
        code = ("import socket,sys\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(0.5)\n"
                "for _ in range(20):\n"
                f"  s.sendto({payload.encode()!r},('{ip}',{port}))\n"
                "  try:\n"
                "    d,_=s.recvfrom(65535);sys.stdout.write(d.decode());break\n"
                "  except socket.timeout:\n"
                "    pass\n")
        r = subprocess.run(self.netns.prefix_args(node.ip) + [sys.executable, "-c", code],
                           capture_output=True, text=True, timeout=30)
        return r.stdout if r.returncode == 0 and r.stdout else None

    def test_a_service_vip_relays_udp_on_every_node(self):
        n1, n2, n3 = self.c.nodes
        here = os.path.dirname(os.path.abspath(__file__))
        echo = harness.Proc(self.netns.prefix_args(n3.ip) + [
            sys.executable, os.path.join(here, "ns_echo.py"), task_ip(3), str(ECHO_PORT)])
        self.addCleanup(echo.stop)
        echo.wait_line(r"listening on", which="out")
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/services", {"name": "udpvip", "ports": [
            {"published": 9700, "target": ECHO_PORT, "protocol": "udp"}]})
        self.assertEqual(s, 201, b)
        vip = list(b.get("service", b)["vips"].values())[0]
        s, b = lead.api("POST", "/v1/tasks", {"service": "udpvip", "node": "n3",
                                              "address": f"{task_ip(3)}:{ECHO_PORT}"})
        self.assertEqual(s, 201, b)
        self.c.wait_converged()
        for n in (n1, n2, n3):  # n1, n2 over the overlay, n3 to its own task
            harness.wait_until(lambda: f" {vip}/32 " in self.lo_addresses(n), timeout=10,
                               what=f"VIP {vip} on {n.name}'s lo")
            payload = f"udp to the VIP on {n.name}"
            self.assertEqual(self.ns_udp_echo(n, vip, ECHO_PORT, payload), payload, n.name)
        s, b = n1.get("/v1/routes")
        self.assertEqual(s, 200, b)
        self.assertEqual([(v["vip"], v["port"], v["service"]) for v in b["udp_vips"]],
                         [(vip, ECHO_PORT, "udpvip")])



class OverlayRekeyTest(FreshClusterBase):
    """Encrypted overlay connections get new keys when the leader raises the key epoch (every
    second here) and after 256 KiB sent, while one stream keeps flowing."""
    options = {"overlay_rekey_s": 1, "overlay_rekey_bytes": 256 * 1024}

    def test_a_long_stream_survives_key_updates_by_epoch_and_by_bytes(self):
        n1, n2 = self.c.nodes[0], self.c.nodes[1]
        echo, _ = self.l4_echo_on_n2("rekey")
        try:
            def echoing():  # a connection through n1 that the task on n2 answers
                c = OverlayTest._connect(n1.ip, L4_PORT)
                if c is None:
                    return None
                try:
                    c.settimeout(2)
                    c.sendall(b"ping")
                    if c.recv(4) == b"ping":
                        return c
                except OSError:
                    pass
                c.close()
                return None
            conn = harness.wait_until(echoing, timeout=15,
                                      what="n1 relaying to the task on n2 through the overlay")
            epochs = lambda: sum(metric(n, "routemesh_overlay_key_updates_total", reason="epoch")
                                 for n in (n1, n2))
            by_bytes = lambda: sum(metric(n, "routemesh_overlay_key_updates_total",
                                          reason="bytes") for n in (n1, n2))
            sent = 0
            try:
                conn.settimeout(10)
                deadline = time.monotonic() + 20
                k = 0
                # 64 KiB at a time, each echoed back whole, until both kinds of update happened
                # (epochs need a few seconds) and at least 2 MiB went each way.
                while time.monotonic() < deadline and (epochs() < 2 or by_bytes() < 2
                                                       or sent < (2 << 20)):
                    chunk = bytes((k * 7 + i) % 251 for i in range(256)) * 256
                    conn.sendall(chunk)
                    got = b""
                    while len(got) < len(chunk):
                        part = conn.recv(len(chunk) - len(got))
                        self.assertTrue(part, f"the stream ended after {sent} bytes")
                        got += part
                    self.assertEqual(got, chunk, f"chunk {k} came back different")
                    sent += len(chunk)
                    k += 1
                    time.sleep(0.05)
            finally:
                conn.close()
            self.assertGreaterEqual(epochs(), 2, "no key update for a new epoch")
            self.assertGreaterEqual(by_bytes(), 2, "no key update after 256 KiB")
            print(f"\n  {sent >> 10} KiB each way on one stream; key updates: "
                  f"{epochs():.0f} for epochs, {by_bytes():.0f} for bytes", flush=True)
        finally:
            echo.stop()

    def test_keep_alive_http_through_the_overlay_survives_key_updates(self):
        # The sending node's HTTP session writes into the overlay's TLS stream itself (no
        # socketpair): it must update the keys by epoch and by bytes, and the stream must stay
        # the same through every update.
        n1, n2 = self.c.nodes[0], self.c.nodes[1]
        w = self.c.whoami("rekey-http", task_ip(2), prefix=self.netns.prefix_args(n2.ip))
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/services", {"name": "rekeyhttp",
                                                 "labels": {"mesh.http": "rekey.overlay.test"}})
        self.assertEqual(s, 201, b)
        s, b = lead.api("POST", "/v1/tasks", {"service": "rekeyhttp", "node": "n2",
                                              "address": f"{task_ip(2)}:{w.port}"})
        self.assertEqual(s, 201, b)
        cluster.wait_routes_everywhere([n1], "rekey.overlay.test", {"rekey-http"})
        epochs = lambda: metric(n1, "routemesh_overlay_key_updates_total", reason="epoch")
        by_bytes = lambda: metric(n1, "routemesh_overlay_key_updates_total", reason="bytes")
        streams = lambda: metric(n1, "routemesh_overlay_streams_total", direction="out")
        body = bytes(range(256)) * 256  # 64 KiB: a bytes update every 4 requests
        # Chunked, so whoami's /echo answers chunked and keeps the connection.
        chunked = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
        client = None

        def post(count):
            nonlocal client
            if client is None:
                client = harness.Client(n1.ip, cluster.HTTP_PORT, timeout=5)
            r = client.request("POST", "/echo", host="rekey.overlay.test",
                               headers={"Transfer-Encoding": "chunked"}, body=chunked)
            self.assertEqual(r.status, 200, f"request {count}")
            self.assertEqual(r.body, body, f"request {count} came back different")
            if (r.header("connection") or "").lower() == "close":
                # The answer began before the proxy had read the whole body (whoami echoes as
                # it reads): the client connection ends; the overlay stream does not.
                client.sock.close()
                client = None

        try:
            post(0)
            opened, e0, b0 = streams(), epochs(), by_bytes()
            count, deadline = 1, time.monotonic() + 20
            while time.monotonic() < deadline and (epochs() < e0 + 2 or by_bytes() < b0 + 2):
                post(count)
                count += 1
                time.sleep(0.05)
        finally:
            if client is not None:
                client.sock.close()
        self.assertGreaterEqual(epochs(), e0 + 2, "the HTTP sender made no key update for an epoch")
        self.assertGreaterEqual(by_bytes(), b0 + 2, "the HTTP sender made no key update by bytes")
        self.assertEqual(streams(), opened, "a key update cost the overlay stream")
        print(f"\n  {count} keep-alive requests of 64 KiB each way on one overlay stream; key "
              f"updates on the sender: {epochs() - e0:.0f} for epochs, {by_bytes() - b0:.0f} "
              f"for bytes", flush=True)


class OverlayRelayIdleTest(FreshClusterBase):
    """The receiving node relays an encrypted stream straight to the task, and ends a stream
    that moved nothing either way for timeouts.l4_idle_ms."""
    node_extra = {"timeouts": {"drain_ms": 2000, "l4_idle_ms": 1500}}

    def test_a_relayed_stream_moves_both_ways_and_ends_when_idle(self):
        n2, n3 = self.c.nodes[1], self.c.nodes[2]
        echo, task = self.l4_echo_on_n2("relayed")
        try:
            self.c.wait_converged()
            line = (f"RMOV1 tcp {task} {ECHO_PORT} {self.netns.prefix}.1 5555 "
                    f"{n2.ip} {L4_PORT}\n").encode()

            def stream():  # a stream to the task as node n3 would open one
                raw = socket.create_connection((n2.ip, OVERLAY_PORT), timeout=5)
                s = cluster.overlay_tls_context(n3, n3).wrap_socket(raw)
                s.sendall(line)
                self.assertEqual(s.recv(1), b"+")
                return s

            # Both ways, 200 KB each, through the relay.
            s = stream()
            s.sendall(b"x" * 200_000)
            got = harness.read_at_least(lambda: s.recv(65536), 200_000)
            self.assertEqual(got, b"x" * 200_000)
            s.close()
            # Idle: nothing either way, and n2 closes the stream after l4_idle_ms (1.5 s).
            s2 = stream()
            started = time.monotonic()
            s2.settimeout(10)
            try:
                self.assertEqual(s2.recv(10), b"")
            except (ssl.SSLError, ConnectionResetError):
                pass  # closed: as good
            waited = time.monotonic() - started
            s2.close()
            self.assertGreater(waited, 1.0, "the stream ended before its idle timeout")
            self.assertLess(waited, 8.0, "the idle stream was not ended")
        finally:
            echo.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
