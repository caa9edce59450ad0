"""The cluster CA, join tokens and the admin API's client certificates, through real processes:
3 managers and a worker on 127.0.0.81-84, more nodes on .85-.94 that try to join.

Every refusal is checked the same way: refused (exit code / HTTP status / TLS error), logged
once, counted in a metric, and the store unchanged (nodes and revision as before)."""
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import cluster
import harness

FIRST_IP = "127.0.0.81"
METRICS_PORT = 9908  # node.metrics: every node's plain /metrics and /healthz, on its own IP


def openssl_text(path):
    r = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-text"], capture_output=True,
                       text=True, timeout=10)
    if r.returncode != 0:
        raise AssertionError(f"openssl x509 {path}: {r.stderr}")
    return r.stdout


def tls_serial(path):
    r = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-serial"], capture_output=True,
                       text=True, timeout=10)
    return r.stdout.strip().split("=", 1)[1].lower().lstrip("0")


def mode(path):
    return os.stat(path).st_mode & 0o777


REMOVED_MANAGER_IP = "127.0.0.181"  # n1, n2 managers


class SecurityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = cluster.Cluster(FIRST_IP, ["manager", "manager", "manager", "worker"],
                                node_settings=lambda n: {"metrics": f"{n.ip}:{METRICS_PORT}"})
        try:
            cls.c.start()
        except BaseException:
            cls.c.stop()
            raise
        cls.worker = cls.c.nodes[3]
        cls.next_ip = 85

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    # -- helpers ----------------------------------------------------------------------------
    def new_node(self, role="worker"):
        """A node of this cluster that has not joined yet (next free address)."""
        k = type(self).next_ip
        type(self).next_ip += 1
        n = cluster.ClusterNode(self.c, f"n{k - 80}", f"127.0.0.{k}", role)
        self.c.nodes.append(n)
        return n

    def store_view(self):
        """What must not change when something is refused: the nodes and the revision."""
        lead = self.c.leader()
        s, b = lead.get("/v1/nodes")
        self.assertEqual(s, 200, b)
        nodes = sorted((n["id"], n["name"]) for n in b["nodes"])
        return b["revision"], nodes

    def metric_sum(self, name, labels=None):
        return sum(cluster.metric(m.metrics(), name, labels) for m in self.c.managers if m.alive)

    def manager_log_lines(self, pattern):
        rx = re.compile(pattern)
        return [l for m in self.c.managers for p in m.runs for l in p.lines("err") if rx.search(l)]

    def exit_code(self, node, timeout=30):
        """Waits for `node` to exit; its log is complete afterwards."""
        try:
            node.proc.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"{node.name} did not exit:\n{node.log_tail()}")
        return node.proc.stop()  # joins the threads that drain its output

    def refused_join(self, node, join, expect_log):
        """Starts `node` with --join `join`; it must exit 2 and log `expect_log`."""
        node.start(join=join, wait=False)
        rc = self.exit_code(node)
        self.assertEqual(rc, 2, node.log_tail())
        log = "\n".join(node.proc.lines("err"))
        self.assertRegex(log, expect_log)
        self.assertNotIn("cluster ready", log)
        self.assertFalse(os.path.exists(os.path.join(node.data_dir, "identity.json")))
        return log

    def anonymous_tls(self):
        return cluster.client_tls(self.c.cert_dir, with_cert=False)

    # -- the PKI `cluster init` made --------------------------------------------------------
    def test_metrics_and_healthz_are_plain_http_on_node_metrics_and_nothing_else_is(self):
        live = self.c.alive()
        self.assertTrue(any(n.is_manager for n in live) and any(not n.is_manager for n in live))
        for n in live:
            s, h, body = harness.http(n.ip, METRICS_PORT, "/metrics")
            self.assertEqual(s, 200, f"{n.name}: {body[:200]!r}")
            self.assertIn(b"routemesh_admin_requests_total", body, n.name)
            if n.is_manager:
                self.assertIn(b"routemesh_raft_", body, n.name)
            s, h, body = harness.http(n.ip, METRICS_PORT, "/healthz")
            self.assertEqual((s, body), (200, b"ok\n"), n.name)
            # The API is not there: only the admin port (TLS, client certificates) has it.
            s, h, body = harness.http(n.ip, METRICS_PORT, "/v1/services")
            self.assertEqual(s, 404, f"{n.name}: {body[:200]!r}")
            s, h, body = harness.http(n.ip, METRICS_PORT, "/v1/ca/rotate", method="POST", body=b"{}")
            self.assertEqual(s, 404, f"{n.name}: {body[:200]!r}")
            s, h, body = harness.http(n.ip, METRICS_PORT, "/metrics", method="POST", body=b"")
            self.assertEqual(s, 405, f"{n.name}: {body[:200]!r}")
            # ... and the admin port still speaks TLS only.
            host, port = n.admin.rsplit(":", 1)
            with self.assertRaises((OSError, http.client.HTTPException)):
                harness.http(host, int(port), "/metrics", timeout=3)

    def test_init_made_a_ca_certificates_and_tokens_that_pin_the_ca(self):
        out = self.c.init_output
        self.assertIn(self.c.cert_dir, out)
        self.assertRegex(self.c.worker_token, r"^RMTKN-1-[0-9a-f]{64}-[0-9a-f]{32}$")
        self.assertNotEqual(self.c.worker_token, self.c.manager_token)
        # The token's digest is the SHA-256 of the CA certificate (DER).
        r = subprocess.run(["openssl", "x509", "-in", os.path.join(self.c.cert_dir, "ca.pem"),
                            "-noout", "-fingerprint", "-sha256"], capture_output=True, text=True)
        digest = r.stdout.strip().split("=", 1)[1].replace(":", "").lower()
        self.assertEqual(self.c.worker_token.split("-")[2], digest)
        n1, n2 = self.c.nodes[:2]
        cluster_id = n1.status()["id"]
        for node, role in ((n1, "manager"), (n2, "manager"), (self.worker, "worker")):
            tls_dir = os.path.join(node.data_dir, "tls")
            text = openssl_text(os.path.join(tls_dir, "node.pem"))
            self.assertIn(f"URI:routemesh://{cluster_id}/{role}/{node.id}", text)
            self.assertIn(f"IP Address:{node.ip}", text)
            self.assertEqual(mode(os.path.join(tls_dir, "node-key.pem")), 0o600)
            # Managers can sign: the manager key (it came with the manager token) opens the CA
            # key sealed in the state. Workers hold neither; no node keeps the CA key in a file.
            manager_key = os.path.join(tls_dir, "manager-key")
            self.assertEqual(os.path.exists(manager_key), role == "manager")
            if role == "manager":
                self.assertEqual(mode(manager_key), 0o600)
            self.assertFalse(os.path.exists(os.path.join(tls_dir, "ca-key.pem")))
        admin = openssl_text(os.path.join(self.c.cert_dir, "cert.pem"))
        self.assertIn(f"URI:routemesh://{cluster_id}/admin/admin", admin)
        self.assertEqual(mode(os.path.join(self.c.cert_dir, "key.pem")), 0o600)

    def test_the_cli_finds_its_certificate_in_the_default_place_or_takes_flags(self):
        home = tempfile.mkdtemp(prefix="rm-home-")
        try:
            env = {k: v for k, v in os.environ.items()
                   if k not in ("ROUTEMESH_CERT_DIR", "XDG_CONFIG_HOME")}
            env["HOME"] = home
            args = [cluster.bin_path(), "--api", self.c.nodes[0].admin, "service", "ls"]
            r = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(f"{home}/.config/routemesh/ca.pem", r.stderr)
            self.assertIn("--ca", r.stderr)
            shutil.copytree(self.c.cert_dir, os.path.join(home, ".config", "routemesh"))
            r = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            shutil.rmtree(os.path.join(home, ".config"))
            d = self.c.cert_dir
            r = subprocess.run(args + ["--cert", f"{d}/cert.pem", "--key", f"{d}/key.pem",
                                       "--ca", f"{d}/ca.pem"],
                               capture_output=True, text=True, timeout=30, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            shutil.rmtree(home, ignore_errors=True)

    # -- joins ------------------------------------------------------------------------------
    def test_a_wrong_token_is_refused_logged_once_counted_and_changes_nothing(self):
        before = self.store_view()
        refusals = self.metric_sum("routemesh_cluster_join_refusals_total", {"reason": "bad_secret"})
        n = self.new_node()
        wrong = self.c.worker_token[:-32] + "0" * 32
        self.refused_join(n, f"{wrong}@{self.c.nodes[0].admin}", r"join refused by .*HTTP 401")
        self.assertEqual(self.metric_sum("routemesh_cluster_join_refusals_total",
                                         {"reason": "bad_secret"}), refusals + 1)
        self.assertEqual(len(self.manager_log_lines(rf"join of {n.name} .*refused \(bad_secret\)")), 1)
        self.assertEqual(self.store_view(), before)

    def test_the_manager_token_joins_managers_only(self):
        before = self.store_view()
        n = self.new_node("worker")
        self.refused_join(n, f"{self.c.manager_token}@{self.c.nodes[0].admin}",
                          r"not the cluster's current worker token")
        self.assertEqual(self.store_view(), before)

    def test_the_right_secret_with_another_ca_digest_is_refused_before_the_secret_is_sent(self):
        before = self.store_view()
        count = lambda reason: self.metric_sum("routemesh_cluster_join_refusals_total",  # noqa
                                               {"reason": reason})
        mismatches, bad = count("ca_mismatch"), count("bad_secret")
        secret = self.c.worker_token.rsplit("-", 1)[1]
        forged = f"RMTKN-1-{'a' * 64}-{secret}"
        n = self.new_node()
        self.refused_join(n, f"{forged}@{self.c.nodes[1].admin}",
                          r"refusing to join via .*the join token pins a{64}.*secret was not sent")
        # The joining node stopped at the CA check: no manager saw the token.
        self.assertEqual((count("ca_mismatch"), count("bad_secret")), (mismatches, bad))
        self.assertEqual(self.manager_log_lines(rf"join of {n.name} "), [])
        # A client that sends it anyway (it skipped the check) is refused by the manager.
        body = {"name": "n-raw", "role": "worker", "api": "127.0.0.89:9901", "token": forged,
                "csr": "not even a request"}
        s, b = self.c.nodes[0].api("POST", "/v1/nodes/join", body, tls=self.anonymous_tls())
        self.assertEqual(s, 401, b)
        self.assertEqual(cluster.error_of(b).get("field"), "token", b)
        self.assertEqual(count("ca_mismatch"), mismatches + 1)
        self.assertEqual(len(self.manager_log_lines(r"join of n-raw .*refused \(ca_mismatch\)")), 1)
        self.assertEqual(self.store_view(), before)

    def test_joining_needs_a_token(self):
        n = self.new_node()
        n.start(join=f"@{self.c.nodes[0].admin}", wait=False)  # an '@' with no token
        self.assertEqual(self.exit_code(n), 2, n.log_tail())
        self.assertIn("--join", "\n".join(n.proc.lines("err")))
        args = [cluster.bin_path(), "node", "--config", n.config_path, "--join", self.c.nodes[0].admin]
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("joining needs a join token: --join TOKEN@", r.stderr)

    def test_token_rotation_stops_the_old_token_at_once_and_spares_joined_nodes(self):
        old = self.c.worker_token
        rc, out, err = self.c.cli(self.c.followers()[0], "cluster", "token", "rotate", "worker")
        self.assertEqual(rc, 0, err)
        new = out.strip()
        self.assertRegex(new, r"^RMTKN-1-[0-9a-f]{64}-[0-9a-f]{32}$")
        self.assertEqual(new.split("-")[2], old.split("-")[2], "the CA did not change")
        self.assertNotEqual(new, old)
        self.c.worker_token = new
        before = self.store_view()
        n = self.new_node()
        self.refused_join(n, f"{old}@{self.c.nodes[0].admin}", r"HTTP 401")
        self.assertEqual(self.store_view(), before)
        # The new token joins, through a follower (the join is forwarded to the leader).
        m = self.new_node()
        m.start(join=f"{new}@{self.c.followers()[0].admin}")
        self.assertIn(m.id, [i for i, _ in self.store_view()[1]])
        # The worker that joined with the old token still heartbeats and follows the state.
        w = self.worker
        s, b = self.c.leader().get(f"/v1/nodes/{w.id}")
        self.assertEqual((s, b["node"]["status"]), (200, "ready"), b)
        self.c.wait_converged(nodes=[self.c.nodes[0], w, m])
        # Only an admin may rotate.
        viewer = self.issue("viewer", "rot-viewer")
        s, b = self.c.nodes[0].api("POST", "/v1/cluster/tokens/worker/rotate", tls=viewer)
        self.assertEqual(s, 403, b)

    # -- the admin API ----------------------------------------------------------------------
    def issue(self, role, name):
        """A client certificate for `role` made with `routemesh cert issue`: an SSLContext."""
        out_dir = os.path.join(self.c.dir, f"cert-{name}")
        rc, out, err = self.c.cli(self.c.nodes[0], "cert", "issue", "--role", role, "--name", name,
                                  "--out", out_dir)
        self.assertEqual(rc, 0, err)
        self.assertIn(out_dir, out)
        self.assertIn(f"/{role}/{name}", openssl_text(os.path.join(out_dir, "cert.pem")))
        return cluster.client_tls(out_dir)

    def test_no_client_certificate_is_a_401_except_for_health_and_metrics(self):
        n1 = self.c.nodes[0]
        anon = self.anonymous_tls()
        before = cluster.metric(n1.metrics(), "routemesh_admin_requests_total",
                                {"path": "/v1/services", "code": "401"})
        s, b = n1.api("GET", "/v1/services", tls=anon)
        self.assertEqual(s, 401, b)
        self.assertEqual(cluster.error_of(b).get("code"), "unauthenticated", b)
        s, b = n1.api("POST", "/v1/services", {"name": "anon"}, tls=anon)
        self.assertEqual(s, 401, b)
        self.assertEqual(cluster.metric(n1.metrics(), "routemesh_admin_requests_total",
                                        {"path": "/v1/services", "code": "401"}), before + 2)
        self.assertEqual(n1.api("GET", "/v1/routes", tls=anon)[0], 401)
        self.assertEqual(self.worker.api("GET", "/v1/routes", tls=anon)[0], 401)
        s, _, body = n1.request("GET", "/healthz", tls=anon)
        self.assertEqual((s, body), (200, "ok\n"))
        s, _, body = n1.request("GET", "/metrics", tls=anon)
        self.assertEqual(s, 200)
        self.assertIn("routemesh_admin_requests_total", body)
        self.assertNotIn("anon", cluster.services_by_name(n1.get("/v1/services")[1]))

    def test_plain_http_and_another_cas_certificate_fail_the_handshake(self):
        n1 = self.c.nodes[0]
        failed = lambda: cluster.metric(n1.metrics(), "routemesh_admin_tls_handshakes_total",  # noqa
                                        {"result": "failed"})
        before = failed()
        with self.assertRaises((cluster.Refused, cluster.Unknown)):
            n1.api("GET", "/v1/services", tls=False)
        harness.wait_until(lambda: failed() == before + 1, timeout=5, what="a failed handshake")
        # A certificate from the CA of another cluster (made by another `cluster init`).
        other = tempfile.mkdtemp(prefix="rm-other-ca-")
        try:
            cfg = {"node": {"name": "x1", "listen": "127.0.0.1", "admin": "127.0.0.1:9901"},
                   "cluster": {"role": "manager", "data_dir": f"{other}/data",
                               "peer": "127.0.0.1:7946"}}
            with open(f"{other}/x1.yaml", "w") as f:
                json.dump(cfg, f)
            r = subprocess.run([cluster.bin_path(), "cluster", "init", "--config", f"{other}/x1.yaml",
                                "--cert-dir", f"{other}/cli"], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            stranger = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            stranger.check_hostname = False
            stranger.load_verify_locations(os.path.join(self.c.cert_dir, "ca.pem"))
            stranger.load_cert_chain(f"{other}/cli/cert.pem", f"{other}/cli/key.pem")
            with self.assertRaises((cluster.Refused, cluster.Unknown)):
                n1.api("GET", "/v1/services", tls=stranger)
            harness.wait_until(lambda: failed() == before + 2, timeout=5, what="a failed handshake")
        finally:
            shutil.rmtree(other, ignore_errors=True)
        # Counted, then logged; the log is read from the node's stderr by another thread.
        harness.wait_until(
            lambda: len([l for l in n1.proc.lines("err") if "admin: TLS handshake with" in l])
            >= 2, timeout=5, interval=0.1, what="both failed handshakes logged")

    def test_the_raft_port_takes_only_manager_certificates(self):
        n1 = self.c.nodes[0]
        host, port = n1.peer.rsplit(":", 1)
        refused = lambda: cluster.metric(n1.metrics(), "routemesh_raft_peers_refused_total")  # noqa
        before = refused()
        hello = struct.pack("<I", 8) + b"RMRAFT1\x00"
        # Plain TCP, the admin's certificate, a worker's certificate: each one refused.
        for k, ctx in enumerate((None, self.c.tls, self.worker.credentials()), start=1):
            with socket.create_connection((host, int(port)), timeout=5) as raw:
                s = ctx.wrap_socket(raw, server_hostname=None) if ctx else raw
                try:
                    s.sendall(hello)
                    s.settimeout(5)
                    self.assertEqual(s.recv(1), b"", "the connection must be closed")
                except (ssl.SSLError, ConnectionError):
                    pass  # a TLS alert or a reset: refused as well
                finally:
                    s.close()
            harness.wait_until(lambda: refused() >= before + k, timeout=5,
                               what=f"refusal {k} counted")
        harness.wait_until(
            lambda: len([l for l in n1.proc.lines("err") if "raft transport: refusing peer" in l])
            >= 3, timeout=5, interval=0.1, what="the three refusals logged")
        # The managers still speak to each other: a write commits on all three.
        s, b = self.c.leader().api("POST", "/v1/services", {"name": "after-raft-probes"})
        self.assertEqual(s, 201, b)
        for m in self.c.managers:
            harness.wait_until(lambda: m.local("/v1/services/after-raft-probes")[0] == 200,
                               timeout=10, what=f"the write on {m.name}")

    def test_a_viewer_reads_and_is_refused_writes(self):
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/services", {"name": "keep", "labels": {}})
        self.assertEqual(s, 201, b)
        viewer = self.issue("viewer", "bob")
        before = self.store_view()
        for via in (lead, self.c.followers()[0]):  # a follower refuses before forwarding
            s, b = via.api("GET", "/v1/services", tls=viewer)
            self.assertEqual(s, 200, b)
            self.assertIn("keep", cluster.services_by_name(b))
            s, b = via.api("DELETE", "/v1/services/keep", tls=viewer)
            self.assertEqual(s, 403, b)
            self.assertEqual(cluster.error_of(b).get("code"), "forbidden", b)
        self.assertEqual(self.store_view(), before)
        self.assertIn("keep", self.c.consistent_services()[1])
        # The CLI with the viewer's certificate.
        env = {"ROUTEMESH_CERT_DIR": os.path.join(self.c.dir, "cert-bob")}
        rc, out, err = self.c.cli(lead, "service", "ls", env=env)
        self.assertEqual(rc, 0, err)
        rc, out, err = self.c.cli(lead, "service", "rm", "keep", env=env)
        self.assertEqual(rc, 1, out)
        self.assertIn("role viewer may only read", err)

    def test_a_user_renews_its_own_certificate_with_the_same_role(self):
        self.issue("viewer", "carol")
        d = os.path.join(self.c.dir, "cert-carol")
        env = {"ROUTEMESH_CERT_DIR": d}
        old_serial = tls_serial(os.path.join(d, "cert.pem"))
        follower = self.c.followers()[0]
        rc, out, err = self.c.cli(follower, "cert", "renew", env=env)  # signed via the leader
        self.assertEqual(rc, 0, err)
        self.assertIn("renewed: a viewer certificate for carol", out)
        new_serial = tls_serial(os.path.join(d, "cert.pem"))
        self.assertNotEqual(new_serial, old_serial)
        self.assertIn(new_serial, out)
        self.assertIn("/viewer/carol", openssl_text(os.path.join(d, "cert.pem")))
        self.assertEqual(mode(os.path.join(d, "key.pem")), 0o600)
        # The new certificate works, with the same role: reads yes, writes no.
        rc, out, err = self.c.cli(follower, "service", "ls", env=env)
        self.assertEqual(rc, 0, err)
        rc, out, err = self.c.cli(follower, "network", "create", "by-carol", env=env)
        self.assertEqual(rc, 1, out)
        self.assertIn("role viewer may only read", err)
        # With --cert/--key the new files need a place of their own.
        rc, out, err = self.c.cli(follower, "--cert", os.path.join(d, "cert.pem"), "--key",
                                  os.path.join(d, "key.pem"), "--ca", os.path.join(d, "ca.pem"),
                                  "cert", "renew")
        self.assertEqual(rc, 2, out)
        self.assertIn("--out", err)

    def test_an_operator_changes_services_but_not_nodes(self):
        op = self.issue("operator", "ops")
        follower = self.c.followers()[0]
        s, b = follower.api("POST", "/v1/services", {"name": "by-ops", "labels": {}}, tls=op)
        self.assertEqual(s, 201, b)  # forwarded to the leader as the operator
        before = self.store_view()
        w = self.worker
        for via in (self.c.leader(), follower):
            s, b = via.api("DELETE", f"/v1/nodes/{w.id}", tls=op)
            self.assertEqual(s, 403, b)
            s, b = via.api("POST", "/v1/cluster/tokens/manager/rotate", tls=op)
            self.assertEqual(s, 403, b)
        self.assertEqual(self.store_view(), before)

    def test_a_revoked_certificate_is_refused_by_every_node(self):
        out_dir = os.path.join(self.c.dir, "cert-carol")
        rc, out, err = self.c.cli(self.c.nodes[0], "cert", "issue", "--role", "operator",
                                  "--name", "carol", "--out", out_dir)
        self.assertEqual(rc, 0, err)
        m = re.search(r"serial ([0-9a-f]+)", out)
        self.assertIsNotNone(m, out)
        serial = m.group(1)
        # The serial printed is the certificate's own (openssl prints it in upper case).
        r = subprocess.run(["openssl", "x509", "-in", os.path.join(out_dir, "cert.pem"), "-noout",
                            "-serial"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.stdout.strip().split("=")[1].lower().lstrip("0"), serial)
        carol = cluster.client_tls(out_dir)
        nodes = self.c.managers + [self.worker]

        def probe(n):  # a read every node serves to any user certificate
            return "/v1/routes" if n is self.worker else "/v1/services?stale=true"
        for n in nodes:
            s, b = n.api("GET", probe(n), tls=carol)
            self.assertEqual(s, 200, b)
        # One connection per node that carol keeps open across the revocation.
        kept = {}
        for n in nodes:
            host, _, port = n.admin.rpartition(":")
            conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=carol)
            conn.request("GET", probe(n))
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            kept[n.name] = conn

        # Only an admin may revoke; the field is checked.
        viewer = self.issue("viewer", "dave")
        before = self.store_view()
        for tls_ctx in (viewer, carol):
            s, b = self.c.leader().api("POST", "/v1/certs/revoke", {"serial": serial}, tls=tls_ctx)
            self.assertEqual(s, 403, b)
        for body in ({"serial": "xyz"}, {"serial": "00"}, {}, {"serial": serial, "extra": 1}):
            s, b = self.c.leader().api("POST", "/v1/certs/revoke", body)
            self.assertEqual(s, 400, b)
            field = "extra" if "extra" in body else "serial"
            self.assertEqual(cluster.error_of(b).get("field"), field, b)
        self.assertEqual(self.store_view(), before)
        rc, out, err = self.c.cli(self.c.nodes[0], "cert", "revoke", "not-hex")
        self.assertEqual(rc, 1, out)
        self.assertIn("serial", err)

        # Revoked through a follower (forwarded to the leader), in openssl's spelling.
        spelled = ":".join(serial.upper().zfill(len(serial) + len(serial) % 2)[i:i + 2]
                           for i in range(0, len(serial) + len(serial) % 2, 2))
        rc, out, err = self.c.cli(self.c.followers()[0], "cert", "revoke", spelled, "--name",
                                  "carol")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), serial)
        rc, out, err = self.c.cli(self.c.nodes[0], "cert", "revoked")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, rf"{serial}\s+carol\s+20\d\d-")
        s, b = self.c.leader().api("POST", "/v1/certs/revoke", {"serial": serial})
        self.assertEqual(s, 409, b)

        def refused(n):
            try:
                n.api("GET", probe(n), tls=carol)
            except (cluster.Refused, cluster.Unknown):
                return True
            return False
        for n in nodes:  # every manager and the worker, from the state they see
            harness.wait_until(lambda: refused(n), timeout=10,
                               what=f"{n.name} refusing the revoked certificate")
        # A connection made before the revocation is refused from its next request on (401,
        # then closed), not only new handshakes.
        for n in nodes:
            conn = kept[n.name]
            try:
                conn.request("GET", probe(n))
                r = conn.getresponse()
                body = r.read().decode()
                self.assertEqual(r.status, 401, f"{n.name}: {body}")
                self.assertIn("revoked", body)
                self.assertEqual((r.getheader("Connection") or "").lower(), "close", n.name)
            finally:
                conn.close()
            after = harness.metric_sum(n.metrics(), "routemesh_admin_connections_cut_total",
                                       reason="revoked") or 0
            self.assertGreaterEqual(after, 1, n.name)
        # Others are unaffected.
        for n in nodes:
            s, b = n.api("GET", probe(n), tls=viewer)
            self.assertEqual(s, 200, b)
        # Software outside the cluster gets the list as a CRL of the cluster CA (through a
        # follower, which forwards the read): openssl refuses carol's certificate with it and
        # still takes dave's. A node certificate may not read it.
        rc, out, err = self.c.cli(self.c.followers()[0], "cert", "crl")
        self.assertEqual(rc, 0, err)
        crl = os.path.join(self.c.dir, "cluster.crl")
        with open(crl, "w") as f:
            f.write(out)
        r = subprocess.run(["openssl", "crl", "-in", crl, "-noout", "-text"], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        listed = {m.replace(":", "").lower().lstrip("0")
                  for m in re.findall(r"Serial Number: ([0-9A-Fa-f:]+)", r.stdout)}
        self.assertIn(serial, listed, r.stdout)
        ca_pem = os.path.join(self.c.cert_dir, "ca.pem")
        for who, expect in (("cert-carol", "certificate revoked"), ("cert-dave", None)):
            r = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", ca_pem, "-CRLfile",
                                crl, os.path.join(self.c.dir, who, "cert.pem")],
                               capture_output=True, text=True, timeout=10)
            if expect:
                self.assertNotEqual(r.returncode, 0, r.stdout)
                self.assertIn(expect, r.stdout + r.stderr)
            else:
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        s, b = self.c.leader().api("GET", "/v1/certs/crl", tls=self.worker.credentials())
        self.assertEqual(s, 403, b)
        self.assertEqual(len(self.manager_log_lines(rf"certificate {serial} \(carol\) revoked by")),
                         1)

    def test_a_worker_certificate_reports_its_own_tasks_and_nothing_else(self):
        lead, follower = self.c.leader(), self.c.followers()[0]
        w = self.worker
        s, b = lead.api("POST", "/v1/services", {"name": "wsvc", "labels": {}})
        self.assertEqual(s, 201, b)
        s, b = lead.api("POST", "/v1/tasks", {"service": "wsvc", "node": w.name, "address": "127.0.0.1:9"})
        self.assertEqual(s, 201, b)
        own = b["task"]["id"]
        s, b = lead.api("POST", "/v1/tasks", {"service": "wsvc", "node": "n1", "address": "127.0.0.1:9"})
        self.assertEqual(s, 201, b)
        other = b["task"]["id"]
        worker = w.credentials()
        before = self.store_view()
        for method, path, body in (("POST", "/v1/services", {"name": "evil"}),
                                   ("GET", "/v1/services", None),
                                   ("DELETE", f"/v1/tasks/{own}", None),
                                   ("PUT", f"/v1/tasks/{other}", {"health": "unhealthy"}),
                                   ("POST", "/v1/heartbeat", {"node": self.c.nodes[0].id}),
                                   ("POST", "/v1/cluster/tokens/worker/rotate", None)):
            for via in (lead, follower):
                s, b = via.api(method, path, body, tls=worker)
                self.assertEqual(s, 403, f"{method} {path} via {via.name}: {b}")
        self.assertEqual(self.store_view(), before)
        for via in (lead, follower):  # the follower forwards it as the worker
            s, b = via.api("PUT", f"/v1/tasks/{own}", {"health": "unhealthy"}, tls=worker)
            self.assertEqual(s, 200, b)
            s, b = via.api("PUT", f"/v1/tasks/{own}", {"health": "healthy"}, tls=worker)
            self.assertEqual(s, 200, b)
        s, b = lead.api("POST", "/v1/heartbeat", {"node": w.id}, tls=worker)
        self.assertEqual(s, 200, b)

    def test_a_removed_node_is_refused(self):
        n = self.new_node()
        n.start(join=self.c.nodes[0].admin)
        creds = n.credentials()
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/heartbeat", {"node": n.id}, tls=creds)
        self.assertEqual(s, 200, b)
        nodes = self.c.managers + [self.worker]
        # One connection per node that the removed node made before its removal.
        kept = {}
        for m in nodes:
            host, _, port = m.admin.rpartition(":")
            conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=creds)
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            kept[m.name] = conn
        n.stop()
        self.c.nodes.remove(n)
        failed = lambda: self.metric_sum("routemesh_admin_tls_handshakes_total",  # noqa: E731
                                         {"result": "failed"})
        before_failed = failed()
        s, b = lead.api("DELETE", f"/v1/nodes/{n.id}")
        self.assertEqual(s, 200, b)
        before = self.store_view()

        # Every node refuses its certificate at the handshake, as soon as it has the state:
        # the node id is refused, not one serial, so no certificate it ever held gets in.
        def refused(m):
            try:
                m.api("POST" if m.role == "manager" else "GET",
                      "/v1/heartbeat" if m.role == "manager" else "/v1/routes",
                      {"node": n.id} if m.role == "manager" else None, tls=creds)
            except (cluster.Refused, cluster.Unknown):
                return True
            return False
        for m in nodes:
            harness.wait_until(lambda: refused(m), timeout=10,
                               what=f"{m.name} refusing the removed node's certificate")
        self.assertGreaterEqual(failed() - before_failed, len(self.c.managers))
        harness.wait_until(
            lambda: any("certificate revoked" in l for l in lead.proc.lines("err")
                        if "admin: TLS handshake with" in l),
            timeout=5, interval=0.1, what="the refused handshake logged")
        # A connection made before the removal is refused from its next request on (401, then
        # closed).
        for m in nodes:
            conn = kept[m.name]
            try:
                conn.request("GET", "/v1/routes")
                r = conn.getresponse()
                body = r.read().decode()
                self.assertEqual(r.status, 401, f"{m.name}: {body}")
                self.assertIn("removed", body)
            finally:
                conn.close()
            self.assertGreaterEqual(
                cluster.metric(m.metrics(), "routemesh_admin_connections_cut_total",
                               {"reason": "removed"}), 1, m.name)
        self.assertEqual(self.store_view(), before)
        # Its id is never handed out again, and the state keeps it refused.
        rc, out, err = self.c.cli(self.c.followers()[0], "node", "ls")
        self.assertEqual(rc, 0, err)
        self.assertNotIn(n.id, out)

    def test_a_removed_worker_still_running_says_why_it_gets_no_state(self):
        # Its watch stream is cut at the removal, usually before the removal reaches it; every
        # manager then refuses its certificate as revoked, on every retry. It says so once.
        n = self.new_node()
        n.start(join=self.c.nodes[0].admin)
        s, b = self.c.leader().api("DELETE", f"/v1/nodes/{n.id}")
        self.assertEqual(s, 200, b)

        def told():
            return [line for line in n.proc.lines("err")
                    if "refuses this node's certificate as revoked" in line]
        harness.wait_until(told, timeout=15, interval=0.2,
                           what="the removed worker saying why it gets no state")
        # Retries go on (each manager, with backoff) without saying it again.
        retries = lambda: len([line for line in n.proc.lines("err")  # noqa: E731
                               if "watch: stream from" in line and "revoked" in line])
        first = retries()
        harness.wait_until(lambda: retries() >= first + 2, timeout=20, interval=0.2,
                           what="more refused watch attempts")
        self.assertEqual(len(told()), 1, n.log_tail())
        n.stop()
        self.c.nodes.remove(n)

    def overlay_answer(self, to, present):
        """One overlay preamble to node `to` inside TLS with node `present`'s certificate: b"-"
        when the stream reached the preamble check (there is no such task), b"" when it was
        refused before that."""
        line = b"RMOV1 http nosuchtask 80 10.0.0.1 5555 10.0.0.2 8080\n"
        try:
            return cluster.overlay_preamble(to, line, present)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return b""

    def overlay_refusals(self, node, reason):
        return cluster.metric(node.metrics(), "routemesh_overlay_refused_total",
                              {"reason": reason})

    def serve(self, ip, port, handle):
        """A listening socket of this process on ip:port (0: any) whose connections a thread
        hands, one after the other, to handle(conn); closed at the test's end."""
        srv = socket.create_server((ip, port))
        self.addCleanup(srv.close)
        srv.settimeout(0.5)

        def accept():
            while True:
                try:
                    conn, _ = srv.accept()
                except socket.timeout:
                    continue
                except OSError:
                    return
                handle(conn)
        threading.Thread(target=accept, daemon=True).start()
        return srv

    def echo_task(self, target, service):
        """A service `service` with one task on node `target`: an echo server of this process on
        target's address. Returns the overlay preamble for a stream to that task."""
        def echo(conn):
            with conn:
                conn.settimeout(30)
                try:
                    while data := conn.recv(4096):
                        conn.sendall(data)
                except OSError:
                    pass
        srv = self.serve(target.ip, 0, echo)
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/services",
                        {"name": service, "labels": {"mesh.http": f"{service}.test"}})
        self.assertEqual(s, 201, b)
        port = srv.getsockname()[1]
        s, b = lead.api("POST", "/v1/tasks", {"service": service, "node": target.name,
                                              "address": f"{target.ip}:{port}"})
        self.assertEqual(s, 201, b)
        self.addCleanup(lambda: self.c.leader().api("DELETE", f"/v1/services/{service}"))
        return f"RMOV1 http {b['task']['id']} {port} 10.0.0.1 5555 10.0.0.2 8080\n".encode()

    def overlay_connection(self, to, present):
        """A TLS connection to node `to`'s overlay port with node `present`'s certificate, the
        handshake done and nothing sent (as a spare another node keeps)."""
        raw = socket.create_connection((to.ip, cluster.OVERLAY_PORT), timeout=5)
        s = cluster.overlay_tls_context(present, present).wrap_socket(raw)
        self.addCleanup(s.close)
        return s

    def test_a_revoked_certificate_ends_its_watch_stream(self):
        # A watch is one request that never ends: the check before each request never runs
        # again for it, so the revocation itself must end it.
        # The watch takes nodes and admins: a new node's certificate, as that node would.
        m = self.new_node()
        m.start(join=self.c.nodes[0].admin)
        serial = tls_serial(os.path.join(m.data_dir, "tls", "node.pem"))
        node = self.c.followers()[0]
        host, _, port = node.admin.rpartition(":")
        conn = http.client.HTTPSConnection(host, int(port), timeout=10,
                                           context=cluster.overlay_tls_context(node, m))
        self.addCleanup(conn.close)
        conn.request("GET", "/v1/watch")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertIn(b'"snapshot"', r.readline())
        before = cluster.metric(node.metrics(), "routemesh_admin_connections_cut_total",
                                {"reason": "revoked"})
        s, b = self.c.leader().api("POST", "/v1/certs/revoke", {"serial": serial, "name": m.name})
        self.assertEqual(s, 201, b)
        ended = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ended:
            try:
                ended = r.readline() == b""
            except (OSError, http.client.HTTPException):
                ended = True
        self.assertTrue(ended, "the watch of a revoked certificate still streams")
        self.assertGreater(cluster.metric(node.metrics(), "routemesh_admin_connections_cut_total",
                                          {"reason": "revoked"}), before)
        m.stop()
        s, b = self.c.leader().api("DELETE", f"/v1/nodes/{m.id}")
        self.assertEqual(s, 200, b)

    def test_a_revoked_managers_raft_connections_end(self):
        # Raft connections are long-lived: a manager whose certificate is revoked must stop
        # receiving the log on connections made before the revocation, and on new ones (the
        # dialling side checks the listener's certificate too).
        m = self.new_node("manager")
        m.start(join=self.c.nodes[0].admin)
        self.c.wait_voters()
        self.c.wait_converged(nodes=[m])
        lead = self.c.leader()
        refused_before = cluster.metric(lead.metrics(), "routemesh_raft_peers_refused_total")
        serial = tls_serial(os.path.join(m.data_dir, "tls", "node.pem"))
        s, b = lead.api("POST", "/v1/certs/revoke", {"serial": serial, "name": m.name})
        self.assertEqual(s, 201, b)
        harness.wait_until(
            lambda: cluster.metric(lead.metrics(), "routemesh_raft_peers_refused_total")
            > refused_before, timeout=10, what="the leader refusing the revoked manager")
        # Writes after the revocation reach the three other managers, never the revoked one.
        for i in range(3):
            s, b = lead.api("POST", "/v1/services", {
                "name": f"after-revoke-{i}", "labels": {"mesh.http": f"after-revoke-{i}.test"}})
            self.assertEqual(s, 201, b)
        others = [n for n in self.c.alive(managers_only=True) if n is not m]
        rev = self.c.wait_converged(nodes=others)
        time.sleep(1.0)  # what would still reach it has had time to
        s, b = m.local("/v1/services")
        self.assertEqual(s, 200, b)
        self.assertLess(b["revision"], rev, f"{m.name} still receives the log after its "
                        "certificate was revoked")
        self.assertNotIn("after-revoke-2", {x["name"] for x in b["services"]})
        self.assertTrue(self.manager_log_lines(r"raft transport: refusing peer connection .*"
                                               r"not trusted any more|raft transport: refusing "
                                               r"peer connection .*TLS handshake failed"))
        m.stop()
        s, b = lead.api("DELETE", f"/v1/nodes/{m.id}")
        self.assertEqual(s, 200, b)
        for i in range(3):
            s, b = lead.api("DELETE", f"/v1/services/after-revoke-{i}")
            self.assertEqual(s, 200, b)
        self.c.nodes.remove(m)  # gone from the cluster: later tests count the others
        self.c.wait_voters()

    def joined_node(self, target):
        """A new worker, joined, whose overlay streams `target` accepts."""
        n = self.new_node()
        n.start(join=self.c.nodes[0].admin)
        harness.wait_until(lambda: self.overlay_answer(target, n) == b"-", timeout=15,
                           what="the new node's overlay stream accepted")
        return n

    def stream_and_spare(self, target, node, preamble):
        """Two overlay connections to `target` with `node`'s certificate: a stream to the echo
        task of `preamble` (checked to echo), and a spare (the handshake only)."""
        def stream_up():
            s = self.overlay_connection(target, node)
            s.sendall(preamble)
            if s.recv(1) != b"+":
                return None
            s.sendall(b"ping")
            return s if s.recv(4) == b"ping" else None
        stream = harness.wait_until(stream_up, timeout=15, what="a stream to the echo task")
        return stream, self.overlay_connection(target, node)

    @staticmethod
    def overlay_ended(sock, send):
        """Whether overlay connection `sock` was closed (after sending `send`, if any)."""
        try:
            if send:
                sock.sendall(send)
            sock.settimeout(0.3)
            return sock.recv(16) in (b"", b"-")
        except socket.timeout:
            return False
        except (ssl.SSLError, OSError):
            return True

    def test_a_removed_or_revoked_node_certificate_opens_no_overlay_stream(self):
        target = self.c.nodes[1]
        # Removed: its certificate has not expired, but its node id is refused at the handshake.
        n = self.joined_node(target)
        before = self.overlay_refusals(target, "tls")
        n.stop()
        s, b = self.c.leader().api("DELETE", f"/v1/nodes/{n.id}")
        self.assertEqual(s, 200, b)
        harness.wait_until(lambda: self.overlay_answer(target, n) == b"", timeout=15,
                           what="the removed node's overlay stream refused")
        self.assertGreater(self.overlay_refusals(target, "tls"), before)
        # Revoked: still a member, but its certificate fails the handshake.
        m = self.joined_node(target)
        # A spare connection made before the revocation carries its preamble after it.
        preamble = self.echo_task(target, "ovlrev")
        probe = self.overlay_connection(target, m)
        probe.sendall(preamble)
        self.assertEqual(probe.recv(1), b"+", "a stream of the member before the revocation")
        spare = self.overlay_connection(target, m)
        before = self.overlay_refusals(target, "tls")
        serial = tls_serial(os.path.join(m.data_dir, "tls", "node.pem"))
        s, b = self.c.leader().api("POST", "/v1/certs/revoke", {"serial": serial, "name": m.name})
        self.assertEqual(s, 201, b)
        harness.wait_until(lambda: self.overlay_answer(target, m) == b"", timeout=15,
                           what="the revoked node's overlay stream refused")
        self.assertGreater(self.overlay_refusals(target, "tls"), before)
        # The revocation ends the spare (a test of its own, below); a preamble that came first
        # would be refused.
        try:
            spare.sendall(preamble)
            answer = spare.recv(1)
        except (ssl.SSLError, OSError):
            answer = b""
        self.assertIn(answer, (b"", b"-"), "a spare of the revoked node carried a stream")
        self.assertGreaterEqual(self.overlay_refusals(target, "revoked"), 1)
        # Removed as well: a stopped member turns `down` after node_down_after_ms, a store write
        # that would land inside a later test's "store unchanged" window.
        m.stop()
        s, b = self.c.leader().api("DELETE", f"/v1/nodes/{m.id}")
        self.assertEqual(s, 200, b)

    def test_a_removed_nodes_open_overlay_connections_end(self):
        # Membership is checked at the handshake, but another node's overlay connections are
        # pre-established (spares) and a stream may live as long as it is used: both must end
        # when the node leaves the state, not when they next reconnect.
        target, lead = self.c.nodes[1], self.c.leader()
        preamble = self.echo_task(target, "ovlsec")

        n = self.joined_node(target)

        stream, spare = self.stream_and_spare(target, n, preamble)
        ended = self.overlay_ended
        self.assertFalse(ended(stream, b"pong"), "the stream before the removal")
        n.stop()
        s, b = lead.api("DELETE", f"/v1/nodes/{n.id}")
        self.assertEqual(s, 200, b)
        harness.wait_until(lambda: ended(stream, b"x"), timeout=10, interval=0.1,
                           what="the removed node's open stream closed")
        harness.wait_until(lambda: ended(spare, None), timeout=10, interval=0.1,
                           what="the removed node's spare connection closed")
        self.assertGreaterEqual(self.overlay_refusals(target, "member_removed"), 2)

    def test_a_revoked_nodes_open_overlay_connections_end(self):
        # Revocation is checked at the handshake; a member whose certificate is revoked must
        # also lose the overlay connections it made before: its open stream and its spare.
        target = self.c.nodes[1]
        preamble = self.echo_task(target, "ovlrevopen")
        m = self.joined_node(target)
        stream, spare = self.stream_and_spare(target, m, preamble)
        before = self.overlay_refusals(target, "revoked")
        serial = tls_serial(os.path.join(m.data_dir, "tls", "node.pem"))
        s, b = self.c.leader().api("POST", "/v1/certs/revoke", {"serial": serial, "name": m.name})
        self.assertEqual(s, 201, b)
        ended = self.overlay_ended
        harness.wait_until(lambda: ended(stream, b"x"), timeout=10, interval=0.1,
                           what="the revoked node's open stream closed")
        harness.wait_until(lambda: ended(spare, None), timeout=10, interval=0.1,
                           what="the revoked node's spare connection closed")
        self.assertGreaterEqual(self.overlay_refusals(target, "revoked") - before, 2)
        m.stop()
        s, b = self.c.leader().api("DELETE", f"/v1/nodes/{m.id}")
        self.assertEqual(s, 200, b)

    def overlay_service(self, node, name):
        """A service `name` (host NAME.test) whose one task, an HTTP backend on node `node`'s
        address, the other nodes reach over the overlay. Returns the backend."""
        backend = harness.RecordingBackend(node.ip)
        self.addCleanup(backend.close)
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/services", {"name": name, "labels": {"mesh.http": f"{name}.test"}})
        self.assertEqual(s, 201, b)
        s, b = lead.api("POST", "/v1/tasks", {"service": name, "node": node.name,
                                              "address": f"{node.ip}:{backend.port}"})
        self.assertEqual(s, 201, b)
        return backend, b.get("task", b)["id"]

    def remove_node(self, node, task_id):
        """Removes a stopped node and its task from the state (before it is marked down: a
        store write that would land inside a later test's "store unchanged" window)."""
        lead = self.c.leader()
        s, b = lead.api("DELETE", f"/v1/tasks/{task_id}")
        self.assertEqual(s, 200, b)
        s, b = lead.api("DELETE", f"/v1/nodes/{node.id}")
        self.assertEqual(s, 200, b)

    def route_status(self, via, host):
        try:
            return via.route(host, timeout=5)[0]
        except (OSError, http.client.HTTPException):
            return None

    def test_a_sending_node_stops_using_a_revoked_nodes_overlay(self):
        # The sending side: after a node's certificate is revoked, no node sends it a stream,
        # neither on connections made before (pooled, spare) nor on new ones.
        sender = self.worker
        m = self.new_node()
        m.start(join=self.c.nodes[0].admin)
        backend, task = self.overlay_service(m, "ovlrevout")
        harness.wait_until(lambda: self.route_status(sender, "ovlrevout.test") == 200, timeout=15,
                           what="a request over the overlay to the new node's task")
        self.assertEqual(self.route_status(sender, "ovlrevout.test"), 200)
        before = cluster.metric(sender.metrics(), "routemesh_overlay_refused_total",
                                {"reason": "out_revoked"})
        serial = tls_serial(os.path.join(m.data_dir, "tls", "node.pem"))
        s, b = self.c.leader().api("POST", "/v1/certs/revoke", {"serial": serial, "name": m.name})
        self.assertEqual(s, 201, b)
        # Within the moment the revocation reaches the sender, before the node (whose
        # heartbeats its revoked certificate now fails) is marked down.
        revision = self.store_view()[0]
        harness.wait_until(lambda: (sender.routes_revision() or 0) >= revision, timeout=5,
                           what="the revocation on the sender")
        served = len(backend.seen()[1])
        for _ in range(5):
            self.assertNotEqual(self.route_status(sender, "ovlrevout.test"), 200)
        self.assertEqual(len(backend.seen()[1]), served, "a request reached the revoked node")
        self.assertGreater(cluster.metric(sender.metrics(), "routemesh_overlay_refused_total",
                                          {"reason": "out_revoked"}), before)
        m.stop()
        self.remove_node(m, task)

    def test_another_nodes_certificate_at_a_nodes_overlay_address_gets_no_stream(self):
        # A member that takes over another node's address (its certificate is valid, of this
        # cluster) must not receive the streams meant for that node.
        sender = self.worker
        m = self.new_node()
        m.start(join=self.c.nodes[0].admin)
        _, task = self.overlay_service(m, "ovlimpostor")
        harness.wait_until(lambda: self.route_status(sender, "ovlimpostor.test") == 200,
                           timeout=15, what="a request over the overlay to the new node's task")
        before = cluster.metric(sender.metrics(), "routemesh_overlay_refused_total",
                                {"reason": "out_wrong_node"})
        # The impostor presents the certificate of another member (a manager).
        other = os.path.join(self.c.nodes[2].data_dir, "tls")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(other, "node.pem"), os.path.join(other, "node-key.pem"))
        received = bytearray()
        m.kill9()  # its state stays: still a member with its task, until it is marked down

        def impostor(raw):
            try:
                with ctx.wrap_socket(raw, server_side=True) as t:
                    t.settimeout(2)
                    while data := t.recv(4096):
                        received.extend(data)
            except (OSError, ssl.SSLError):
                pass
        srv = self.serve(m.ip, cluster.OVERLAY_PORT, impostor)
        status = self.route_status(sender, "ovlimpostor.test")
        self.assertNotIn(b"RMOV1", bytes(received), "a stream reached the impostor")
        self.assertNotEqual(status, 200)
        self.assertGreater(cluster.metric(sender.metrics(), "routemesh_overlay_refused_total",
                                          {"reason": "out_wrong_node"}), before)
        srv.close()
        self.remove_node(m, task)

    def test_zz_a_manager_that_joined_signs_joins_when_it_leads(self):
        # The CA key travelled with the manager token: when the first manager is gone, the new
        # leader issues certificates itself.
        first = self.c.nodes[0]
        if self.c.leader() is not first:
            self.skipTest("the first manager does not lead any more")
        first.stop()
        lead = self.c.leader(timeout=15, exclude=(first,))
        self.assertIn(lead, self.c.nodes[1:3])
        n = self.new_node()
        n.start(join=lead.admin)
        s, b = lead.get(f"/v1/nodes/{n.id}")
        self.assertEqual(s, 200, b)
        self.assertEqual(len(self.manager_log_lines(rf"api: node {n.name} joined as worker")), 1)
        # The first manager comes back from its data_dir, with its certificate.
        first.start()
        self.c.wait_voters()



class RemovedManagerTest(cluster.SharedClusterTest):
    """Removing a live manager: the removed node's certificates are refused at the handshake,
    but only once it is out of Raft. With two voters the removal needs the removed manager's
    own vote for the configuration change; refusing its Raft connections as soon as the state
    says "removed" would leave a cluster that can commit nothing."""
    FIRST_IP = REMOVED_MANAGER_IP
    ROLES = ["manager", "manager"]

    def test_removing_one_of_two_live_managers_leaves_a_cluster_that_writes(self):
        lead = self.c.leader()
        other = self.c.followers()[0]
        creds = other.credentials()
        rc, out, err = self.c.cli(lead, "node", "rm", other.name)
        self.assertEqual(rc, 0, out + err)
        # The one manager left commits alone.
        s, b = lead.api("POST", "/v1/services", {"name": "after", "labels": {"mesh.http":
                                                                            "after.test"}})
        self.assertEqual(s, 201, b)
        st = lead.status() or {}
        self.assertEqual([m.get("id") for m in st.get("members", [])], [lead.id], st)
        # And the removed manager's certificate no longer completes a handshake.

        def refused():
            try:
                lead.api("GET", "/v1/services", tls=creds)
            except (cluster.Refused, cluster.Unknown):
                return True
            return False
        harness.wait_until(refused, timeout=10, what="the removed manager's certificate refused")
        def removed_said():
            return [line for line in other.proc.lines("err")
                    if "this node was removed from the cluster" in line]
        harness.wait_until(removed_said, timeout=10, what="the removed manager saying so")
        # The removed manager, still running, asks for votes and is refused at the handshake,
        # with the reason in the log.
        harness.wait_until(
            lambda: any("certificate revoked" in line for line in lead.proc.lines("err")
                        if "raft transport: refusing peer connection" in line),
            timeout=15, interval=0.2, what="the removed manager's Raft handshake refused")
        self.assertEqual(len(removed_said()), 1, other.log_tail())


if __name__ == "__main__":
    unittest.main(verbosity=2)
