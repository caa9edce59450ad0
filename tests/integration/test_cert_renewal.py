"""Node certificates renew themselves before they expire, and no connection drops: a cluster of
two managers and a worker on 127.0.0.111-113 whose managers sign node certificates that last 12 seconds
(cluster.cert_lifetime_s), so every node renews about every 8 seconds. The test runs past the
end of every first certificate, with steady HTTP load through the encrypted overlay (a task
on the worker, published on the managers) and CLI reads that must not fail once, and checks
that the cluster still works: Raft, the worker's watch, heartbeats, a kept-alive admin
connection opened before the renewal, and a restarted manager that starts from the renewed
files.

The CLI renews its own certificate the same way: a one-manager cluster on 127.0.0.141 whose
user certificates last 12 seconds (cluster.user_cert_lifetime_s); a CLI command run after two
thirds of that renews the certificate in the CLI's place first, and the CLI keeps working past
the end of the first certificate, which is then refused. A watch opened with a user certificate
(a one-manager cluster on 127.0.0.143, the same lifetime) ends when that certificate does."""
import calendar
import http.client
import os
import shutil
import subprocess
import time
import unittest

import cluster
import harness

FIRST_IP = "127.0.0.111"
LIFETIME_S = 12
USER_IP = "127.0.0.141"
EXPIRY_IP = "127.0.0.143"
EXPIRY_METRICS_PORT = 9943
HOST = "renewal.test"
PUBLISHED = 9441


def cert_facts(path):
    """(serial, notAfter as unix time) of the PEM certificate at `path`."""
    r = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-serial", "-enddate"],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise AssertionError(f"openssl x509 {path}: {r.stderr}")
    fields = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    end = calendar.timegm(time.strptime(fields["notAfter"], "%b %d %H:%M:%S %Y %Z"))
    return fields["serial"], end


class CertRenewalTest(cluster.SharedClusterTest):
    FIRST_IP = FIRST_IP
    ROLES = ["manager", "manager", "worker"]
    CLUSTER_ARGS = {"cert_lifetime_s": LIFETIME_S}

    @classmethod
    def prepare(cls, c):
        # An HTTP service whose one task runs on the worker, published on the managers: the
        # steady load crosses the encrypted overlay, whose connections renewals must not drop.
        worker = c.workers[0]
        task = c.whoami("renew-task", worker.ip)
        s, b = c.leader().api("POST", "/v1/services", {
            "name": "web", "labels": {"mesh.http": HOST},
            "ports": [{"published": PUBLISHED, "target": task.port}]})
        if s != 201:
            raise AssertionError(f"creating web: {s} {b}")
        cluster.add_task(c, "web", worker, f"{task.ip}:{task.port}")
        c.wait_converged()
        cluster.wait_routes_everywhere(c.managers, HOST, {"renew-task"})
        harness.wait_until(
            lambda: all(harness.http(m.ip, PUBLISHED, "/", host=HOST, timeout=3)[0] == 200
                        for m in c.managers),
            timeout=15, interval=0.1, what=f"published port {PUBLISHED} on every manager")

    def node_pem(self, node):
        return os.path.join(node.data_dir, "tls", "node.pem")

    def renewals(self, node, result="ok"):
        return cluster.metric(node.metrics(), "routemesh_tls_certificate_renewals_total",
                              {"result": result})

    def test_certificates_renew_before_they_expire_and_nothing_drops(self):
        c = self.c
        first = {n.name: cert_facts(self.node_pem(n)) for n in c.nodes}
        for name, (_, end) in first.items():
            self.assertLessEqual(end - time.time(), LIFETIME_S + 1, f"{name}'s first certificate")
        # A kept-alive admin connection, opened before any renewal.
        host, port = c.nodes[0].admin.rsplit(":", 1)
        kept = http.client.HTTPSConnection(host, int(port), timeout=10, context=c.tls)
        kept.request("GET", "/v1/services")
        self.assertEqual(kept.getresponse().read() and 200, 200)
        sock = kept.sock
        load = cluster.SteadyLoad(c, c.managers, "renew-task", "web", HOST, PUBLISHED, 90)
        t_load = time.monotonic()

        # Past the end of every first certificate, with a margin.
        deadline = max(end for _, end in first.values()) + 2
        while time.time() < deadline:
            time.sleep(0.5)

        for n in c.nodes:
            serial, end = cert_facts(self.node_pem(n))
            self.assertNotEqual(serial, first[n.name][0], f"{n.name} renewed its certificate")
            self.assertGreater(end, first[n.name][1], n.name)
            self.assertGreater(end, time.time(), f"{n.name}'s certificate on disk is current")
            self.assertGreaterEqual(self.renewals(n), 1, n.name)
            self.assertEqual(self.renewals(n, "failed"), 0, n.name)
            harness.wait_until(
                lambda: any("renewed this node's certificate" in l for l in n.proc.lines("err")),
                timeout=5, interval=0.1, what=f"{n.name} logging its renewal")

        # No request through the overlay and no CLI read failed while every node renewed.
        self.assertTrue(load.finish(), "the load threads did not stop")
        report = load.report(t_load)
        print(f"\n  load while renewing: {report}", flush=True)
        self.assertEqual(load.failures, [], report)
        for kind, least in (("keepalive", 100), ("fresh", 50), ("cli", 10)):
            self.assertGreaterEqual(load.successes(kind), least, report)

        # The admin connection made with the first certificates still answers, on the same socket.
        kept.request("GET", "/v1/services")
        r = kept.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertIs(kept.sock, sock, "the kept-alive connection was not dropped")
        kept.close()

        # Raft, the worker's watch and heartbeats all still work.
        lead = c.leader()
        s, b = lead.api("POST", "/v1/services", {"name": "after-renewal",
                                                 "labels": {"mesh.http": "renewed.test"}})
        self.assertEqual(s, 201, b)
        for m in c.managers:
            harness.wait_until(lambda: m.local("/v1/services/after-renewal")[0] == 200,
                               timeout=10, what=f"the write on {m.name}")
        worker = c.workers[0]
        harness.wait_until(lambda: "renewed.test" in worker.get("/v1/routes")[1].__repr__(),
                           timeout=10, what="the write in the worker's route table")
        s, b = lead.get("/v1/nodes")
        self.assertEqual(s, 200, b)
        self.assertEqual({n["status"] for n in b["nodes"]}, {"ready"}, b)

        # A manager restarted now starts from its renewed files (its first certificate has
        # expired) and rejoins Raft over fresh TLS connections.
        follower = next(m for m in c.managers if m is not lead)
        follower.stop()
        follower.start()
        s, b = lead.api("POST", "/v1/services", {"name": "after-restart"})
        self.assertEqual(s, 201, b)
        harness.wait_until(lambda: follower.local("/v1/services/after-restart")[0] == 200,
                           timeout=15, what="the restarted manager catching up")


def cert_times(path):
    """(serial, notBefore, notAfter) of the first PEM certificate at `path` (unix times)."""
    r = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-serial", "-startdate",
                        "-enddate"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise AssertionError(f"openssl x509 {path}: {r.stderr}")
    fields = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    unix = lambda k: calendar.timegm(time.strptime(fields[k], "%b %d %H:%M:%S %Y %Z"))
    return fields["serial"], unix("notBefore"), unix("notAfter")


def sleep_until(t):
    while time.time() < t:
        time.sleep(min(0.2, max(0.0, t - time.time())))


class UserCertRenewalTest(cluster.SharedClusterTest):
    FIRST_IP = USER_IP
    ROLES = ["manager"]
    CLUSTER_ARGS = {"user_cert_lifetime_s": LIFETIME_S}

    def test_the_cli_renews_its_own_certificate_before_it_expires(self):
        c = self.c
        m = c.managers[0]
        cert = os.path.join(c.cert_dir, "cert.pem")
        serial, start, end = cert_times(cert)
        issued = start + 300  # notBefore is backdated 5 minutes for clock skew
        self.assertLessEqual(end - issued, LIFETIME_S + 1, "the admin certificate's lifetime")
        old_dir = os.path.join(c.dir, "cli-first")
        shutil.copytree(c.cert_dir, old_dir)

        # Early: the command runs with the certificate as it is.
        rc, out, err = c.cli(m, "service", "ls")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("renewed", err)
        self.assertEqual(cert_times(cert)[0], serial)

        # After two thirds of its lifetime: renewed first, the command still answers.
        sleep_until(issued + (end - issued) * 2 / 3 + 0.5)
        rc, out, err = c.cli(m, "service", "ls")
        self.assertEqual(rc, 0, err)
        self.assertIn("renewed this CLI's certificate", err)
        serial2, _, end2 = cert_times(cert)
        self.assertNotEqual(serial2, serial)
        self.assertGreater(end2, end)

        # Past the first certificate's end: the renewed one works, the first one is refused.
        sleep_until(end + 1.5)
        rc, out, err = c.cli(m, "service", "ls")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("renewed", err)
        rc, out, err = c.cli(m, "service", "ls", env={"ROUTEMESH_CERT_DIR": old_dir})
        self.assertNotEqual(rc, 0, f"the expired first certificate was accepted: {out}")
        self.assertIn("expired", err)


class UserCertExpiryTest(cluster.SharedClusterTest):
    """A user certificate that expires while its watch streams ends the stream then: the check
    before each request never runs again for a request that never ends."""
    FIRST_IP = EXPIRY_IP
    ROLES = ["manager"]
    CLUSTER_ARGS = {"user_cert_lifetime_s": LIFETIME_S,
                    "node_settings": {"metrics": f"{EXPIRY_IP}:{EXPIRY_METRICS_PORT}"}}

    def cut_total(self, reason):
        s, _, body = harness.http(EXPIRY_IP, EXPIRY_METRICS_PORT, "/metrics")
        self.assertEqual(s, 200, body[:200])
        return cluster.metric(body.decode(), "routemesh_admin_connections_cut_total",
                              {"reason": reason})

    def test_a_watch_ends_when_its_user_certificate_expires(self):
        c = self.c
        m = c.managers[0]
        # The admin certificate `cluster init` wrote; it lasts LIFETIME_S and is not renewed.
        _, _, end = cert_times(os.path.join(c.cert_dir, "cert.pem"))
        self.assertGreater(end - time.time(), 3, "the admin certificate expired during setup")
        host, _, port = m.admin.rpartition(":")
        # One blocking read outlasts the certificate: a timed-out socket file cannot be read again.
        wait = end + 10 - time.time()
        conn = http.client.HTTPSConnection(host, int(port), timeout=wait, context=c.tls)
        self.addCleanup(conn.close)
        conn.request("GET", "/v1/watch")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertIn(b'"snapshot"', r.readline())
        before = self.cut_total("expired")

        ended_at = None
        while time.time() < end + 10 and ended_at is None:
            try:
                if r.readline() == b"":
                    ended_at = time.time()
            except (OSError, http.client.HTTPException):
                ended_at = time.time()
        self.assertIsNotNone(ended_at, "the watch still streams after its certificate expired")
        self.assertGreaterEqual(ended_at, end, "the watch ended before its certificate did")
        self.assertEqual(self.cut_total("expired"), before + 1)
        # Logged before the close, but read from the node's stderr by another thread: wait.
        def cut_lines():
            return [l for p in m.runs for l in p.lines("err")
                    if "closing a connection of" in l and "expired" in l]
        harness.wait_until(cut_lines, timeout=5, interval=0.1, what="the cut logged")
        self.assertEqual(len(cut_lines()), 1, cut_lines())


if __name__ == "__main__":
    unittest.main()
