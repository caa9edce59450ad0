"""Root CA rotation under load: 3 managers and a worker on 127.0.0.131-134 (more nodes on
.135-.136 try to join). An HTTP service (mesh.http + a published port) has its one task on the
worker (n4); clients send to the managers, so every request crosses the encrypted overlay.

While HTTP requests (kept-alive and fresh connections, through the published port) and a CLI
read every 0.5 s (the CLI's default cert dir) run in the background, `routemesh cluster ca
rotate --grace 4` starts a root rotation (both roots trusted for at least 4 s). Checked through real processes and files:
  - the command prints the new root's digest and new join tokens; the old worker token stops
    joining at once (the node exits non-zero, never ready, not in the state);
  - `cluster ca status` ends with `rotating: no` and the new root, and GET /v1/ca with only the
    new root (no "rotation");
  - every node's data_dir/tls/ca.pem then holds exactly the new root, its node.pem verifies
    against it (and its leaf not against the old root alone); overlay streams open between the
    re-issued node certificates and not with a node's pre-rotation certificate;
  - the CLI rewrote its own files: the old admin credentials are refused everywhere, the
    current ones work;
  - a new worker joins with the new worker token;
  - no request and no CLI read failed during all that;
  - after SIGTERM to the Raft leader, the new leader (a follower during the rotation) signs a
    viewer certificate (`cert issue` through another manager) that verifies against the new
    root: followers got the new CA key.
"""
import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import unittest

import cluster
import harness

FIRST_IP = "127.0.0.131"  # n1-n3 managers, n4 worker; .135 and .136 join later
HOST = "rotation.test"
PUBLISHED = 9431  # an HTTP port: the service has an HTTP exposure (mesh.http)
ROTATION_BOUND_S = 60.0
GRACE_S = 4  # the old root stays trusted at least this long: traffic runs across both roots
LOAD_LIMIT_S = 150.0  # hard bound of the background load, whatever happens

DIGEST_RX = r"[0-9a-f]{64}"
TOKEN_RX = r"RMTKN-1-[0-9a-f]{64}-[0-9a-f]{32}"
PEM_RX = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


# ------------------------------------------------------------------------------------------
# Certificates
# ------------------------------------------------------------------------------------------

def pem_certs(text):
    """The PEM certificate blocks of `text`, in order."""
    return PEM_RX.findall(text)


def der_digest(pem):
    """sha256 (lower-case hex) of one PEM certificate's DER: what tokens and the API call a
    certificate's digest."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def read_text(path):
    with open(path) as f:
        return f.read()


def file_digests(path):
    """Digests of every certificate in the PEM file at `path`, in order."""
    return [der_digest(p) for p in pem_certs(read_text(path))]


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def openssl_verify(ca_file, cert_file, untrusted=None):
    """(exit code, output) of `openssl verify -CAfile ca_file [-untrusted U] cert_file`."""
    args = ["openssl", "verify", "-CAfile", ca_file]
    if untrusted:
        args += ["-untrusted", untrusted]
    r = subprocess.run(args + [cert_file], capture_output=True, text=True, timeout=10)
    return r.returncode, (r.stdout + r.stderr).strip()


def unverified_tls():
    """A TLS 1.3 client context that checks nothing and presents nothing (GET /v1/ca is
    anonymous; a joining node reads it the same way)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_with(ca_file, cert_file, key_file):
    """A TLS 1.3 client context trusting `ca_file` and presenting cert_file/key_file."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(ca_file)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


# ------------------------------------------------------------------------------------------
# CLI output
# ------------------------------------------------------------------------------------------

def parse_rotate(out):
    """(new root digest, worker token, manager token) from `cluster ca rotate`'s output;
    None for each one missing."""
    def grab(rx):
        m = re.search(rx, out, re.M)
        return m.group(1) if m else None
    return (grab(rf"^\s*new root:\s*({DIGEST_RX})\s*$"),
            grab(rf"^\s*worker token:\s*({TOKEN_RX})"),
            grab(rf"^\s*manager token:\s*({TOKEN_RX})"))


def parse_ca_status(out):
    """{"root", "rotating", "old", "waiting"} from `cluster ca status`'s lines (None when a line
    is absent; "waiting" is a list of names)."""
    def grab(rx):
        m = re.search(rx, out, re.M)
        return m.group(1).strip() if m else None
    waiting = grab(r"^\s*waiting for:[ \t]*(.*)$")
    return {"root": grab(rf"^\s*root:\s*({DIGEST_RX})\s*$"),
            "rotating": grab(r"^\s*rotating:\s*(yes|no)\s*$"),
            "old": grab(rf"^\s*old root:\s*({DIGEST_RX})\s*$"),
            "waiting": None if waiting is None else
            [w.strip() for w in waiting.split(",") if w.strip()]}


def tls_file(node, name):
    """A file of the node's data_dir/tls."""
    return os.path.join(node.data_dir, "tls", name)


def token_digest(token):
    """The CA digest a join token pins (RMTKN-1-<digest>-<secret>)."""
    return token.split("-")[2]


# ------------------------------------------------------------------------------------------
# The test
# ------------------------------------------------------------------------------------------

class CaRotationTest(cluster.SharedClusterTest):
    FIRST_IP = FIRST_IP
    ROLES = ["manager", "manager", "manager", "worker"]

    @classmethod
    def prepare(cls, c):
        cls.worker = c.nodes[3]
        # The service's one task runs on the worker (at its address); the clients send to the
        # managers, so every request goes through the overlay to n4.
        cls.task = c.whoami("rot-task", cls.worker.ip)
        lead = c.leader()
        s, b = lead.api("POST", "/v1/services", {
            "name": "web", "labels": {"mesh.http": HOST},
            "ports": [{"published": PUBLISHED, "target": cls.task.port}]})
        if s != 201:
            raise AssertionError(f"creating web: {s} {b}")
        cluster.add_task(c, "web", cls.worker, f"{cls.task.ip}:{cls.task.port}")
        c.wait_converged()
        cluster.wait_routes_everywhere(c.managers, HOST, {"rot-task"})

        def published_ok():
            try:
                return all(harness.http(m.ip, PUBLISHED, "/", host=HOST, timeout=3)[0] == 200
                           for m in c.managers)
            except OSError:
                return False
        harness.wait_until(published_ok, timeout=15, interval=0.1,
                           what=f"published port {PUBLISHED} serving {HOST} on every manager")

    # -- helpers ----------------------------------------------------------------------------
    def cert_role(self, node):
        """The role (OU) of the first certificate in the node's node.pem."""
        leaf = pem_certs(read_text(tls_file(node, "node.pem")) or "")[:1]
        if not leaf:
            return None
        out = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "sep_multiline"],
                             input=leaf[0], capture_output=True, text=True).stdout
        m = re.search(r"OU=(\w+)", out)
        return m.group(1) if m else None


    def new_node(self, k, role="worker"):
        n = cluster.ClusterNode(self.c, f"n{k}", f"127.0.0.{130 + k}", role)
        self.c.nodes.append(n)
        return n

    def ca_status(self, via):
        rc, out, err = self.c.cli(via, "cluster", "ca", "status", timeout=30)
        self.assertEqual(rc, 0, f"cluster ca status via {via}: exit {rc}\n{out}\n{err}")
        st = parse_ca_status(out)
        self.assertIsNotNone(st["root"], f"no `root: <digest>` line:\n{out}")
        self.assertIsNotNone(st["rotating"], f"no `rotating: yes|no` line:\n{out}")
        return st, out

    def get_ca(self, node):
        s, b = node.api("GET", "/v1/ca", tls=unverified_tls())
        self.assertEqual(s, 200, f"GET /v1/ca on {node.name}: {b}")
        self.assertIsInstance(b, dict, b)
        return b

    def cluster_leader_name(self, via):
        """The leader's name as `cluster status` prints it (`Leader:    NAME (ID)`), or None."""
        try:
            rc, out, err = self.c.cli(via, "cluster", "status", timeout=30)
        except subprocess.TimeoutExpired:
            return None
        if rc != 0:
            return None
        m = re.search(r"^Leader:\s+(\S+)", out, re.M)
        return m.group(1) if m and m.group(1) not in ("-", "none") else None

    def overlay_answer(self, target, ca_file, cert_file, key_file):
        """The one-byte answer of `target`'s overlay port to a preamble for a task that does
        not exist, sent inside TLS presenting cert_file/key_file: b"-" when the stream reached
        the preamble check (the TLS and the node checks passed), b"" when refused before."""
        line = b"RMOV1 http nosuchtask 80 10.0.0.1 5555 10.0.0.2 8080\n"
        try:
            raw = socket.create_connection((target.ip, cluster.OVERLAY_PORT), timeout=5)
            with tls_with(ca_file, cert_file, key_file).wrap_socket(raw) as s:
                s.sendall(line)
                return s.recv(1)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return b""

    def wait_exit(self, node, timeout=20):
        try:
            node.proc.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"{node.name} did not exit within {timeout}s:\n{node.log_tail()}")
        return node.proc.stop()

    def check_node_files(self, node, new, old_root_file):
        """data_dir/tls/ca.pem holds exactly the new root; node.pem's leaf verifies against it
        (with the rest of node.pem as untrusted intermediates) and not against the old root
        alone."""
        ca_file, node_pem = tls_file(node, "ca.pem"), tls_file(node, "node.pem")
        self.assertEqual(file_digests(ca_file), [new], f"{node.name}'s ca.pem")
        blocks = pem_certs(read_text(node_pem))
        self.assertGreaterEqual(len(blocks), 1, f"{node.name}'s node.pem has no certificate")
        leaf = write_text(os.path.join(self.c.dir, f"{node.name}-leaf.pem"), blocks[0] + "\n")
        rc, out = openssl_verify(ca_file, leaf, untrusted=node_pem if len(blocks) > 1 else None)
        self.assertEqual(rc, 0, f"{node.name}'s node.pem against its ca.pem: {out}")
        rc, out = openssl_verify(old_root_file, leaf)
        self.assertNotEqual(rc, 0, f"{node.name}'s certificate still issued by the old root: {out}")

    # -- the test ---------------------------------------------------------------------------
    def test_root_rotation_under_load(self):
        c = self.c
        managers = list(c.managers)
        n1 = managers[0]
        original = managers + [self.worker]
        t_start = time.monotonic()

        # 2. Steady load for the whole rotation; it must run before anything changes.
        load = cluster.SteadyLoad(c, managers, "rot-task", "web", HOST, PUBLISHED, LOAD_LIMIT_S)
        self.addCleanup(load.finish)
        harness.wait_until(lambda: all(load.successes(k) >= 3 for k in ("keepalive", "fresh", "cli")),
                           timeout=15, interval=0.1, what="the load running (every kind answered)")
        self.assertEqual(load.failures, [], load.report(time.monotonic()))
        # The requests really cross the overlay to the worker.
        self.assertGreaterEqual(harness.metric_sum(self.worker.metrics(),
                                                   "routemesh_overlay_streams_total",
                                                   direction="in") or 0, 1,
                                "no overlay stream reached the worker")

        # 3. Save the admin's files and a node's certificate from before the rotation.
        old_dir = os.path.join(c.dir, "old-admin")
        shutil.copytree(c.cert_dir, old_dir)
        old_node_dir = os.path.join(c.dir, "old-n4")
        os.makedirs(old_node_dir)
        for f in ("node.pem", "node-key.pem"):
            shutil.copy(tls_file(self.worker, f), os.path.join(old_node_dir, f))
        old_ca = pem_certs(read_text(os.path.join(old_dir, "ca.pem")))
        self.assertEqual(len(old_ca), 1, "the admin's ca.pem before the rotation")
        old = der_digest(old_ca[0])
        old_root_file = write_text(os.path.join(c.dir, "old-root.pem"), old_ca[0] + "\n")
        self.assertEqual(token_digest(c.worker_token), old, "the init token pins the first root")
        old_worker_token = c.worker_token
        old_manager_token = c.manager_token
        # A connection made with the old admin certificate and kept open across the rotation.
        kept_node = managers[1]
        host, _, port = kept_node.admin.rpartition(":")
        kept = http.client.HTTPSConnection(host, int(port), timeout=10,
                                           context=cluster.client_tls(old_dir))
        kept.request("GET", "/v1/services?stale=true")
        r = kept.getresponse()
        r.read()
        self.assertEqual(r.status, 200, "the old admin certificate before the rotation")

        st, out = self.ca_status(managers[1])
        self.assertEqual((st["root"], st["rotating"]), (old, "no"), out)
        b = self.get_ca(n1)
        self.assertEqual((b.get("digest"), b.get("roots"), b.get("rotation")), (old, [old], None), b)

        lead = c.leader()
        via = next(m for m in managers if m is not lead)  # a follower forwards it
        t_rot = time.monotonic()
        rc, out, err = c.cli(via, "cluster", "ca", "rotate", "--grace", str(GRACE_S), timeout=60)
        self.assertEqual(rc, 0, f"cluster ca rotate: exit {rc}\n{out}\n{err}")
        new, worker_token, manager_token = parse_rotate(out)
        self.assertIsNotNone(new, f"no `new root: <digest>` line:\n{out}")
        self.assertIsNotNone(worker_token, f"no `worker token: RMTKN-1-...` line:\n{out}")
        self.assertIsNotNone(manager_token, f"no `manager token: RMTKN-1-...` line:\n{out}")
        self.assertNotEqual(new, old)
        self.assertNotIn(worker_token, (old_worker_token, old_manager_token))
        self.assertNotIn(manager_token, (old_worker_token, old_manager_token, worker_token))
        self.assertEqual(token_digest(worker_token), new, "the new worker token pins the new root")
        self.assertEqual(token_digest(manager_token), new, "the new manager token pins the new root")
        t_rotated = time.monotonic()
        print(f"\n  rotate via {via.name} took {time.monotonic() - t_rot:.2f}s: {old[:12]}… -> "
              f"{new[:12]}…", flush=True)

        # The CLI renewed its own certificate under the new root and rewrote its files.
        bundle = file_digests(os.path.join(c.cert_dir, "ca.pem"))
        self.assertIn(new, bundle, "the CLI's ca.pem does not trust the new root")
        self.assertLessEqual(set(bundle), {old, new}, bundle)
        self.assertNotEqual(read_text(os.path.join(c.cert_dir, "key.pem")),
                            read_text(os.path.join(old_dir, "key.pem")), "the CLI's key.pem")
        self.assertNotEqual(pem_certs(read_text(os.path.join(c.cert_dir, "cert.pem")))[:1],
                            pem_certs(read_text(os.path.join(old_dir, "cert.pem")))[:1],
                            "the CLI's cert.pem")
        c.tls = cluster.client_tls(c.cert_dir)  # the harness's own API calls use the new files

        # GET /v1/ca right away (a manager's own copy may trail the commit by a moment): the new
        # root signs; the old one is still trusted unless the rotation already ended.
        b = harness.wait_until(lambda: (lambda b: b if b.get("digest") == new else None)(
            self.get_ca(managers[2])), timeout=5, interval=0.05,
            what=f"GET /v1/ca on {managers[2].name} naming the new root")
        self.assertEqual(der_digest(b.get("certificate", "")), new, b)
        if "rotation" in b:
            self.assertEqual(b.get("roots"), [new, old], b)
            rot = b["rotation"]
            self.assertEqual(rot.get("old"), old, b)
            self.assertIsInstance(rot.get("retire_after"), (int, float), b)
            self.assertLessEqual(set(rot.get("waiting", [])), {n.id for n in original}, b)
        else:
            self.assertEqual(b.get("roots"), [new], b)

        # The old worker token stopped joining at once.
        n5 = self.new_node(5)
        n5.start(join=f"{old_worker_token}@{n1.admin}", wait=False)
        rc5 = self.wait_exit(n5)
        self.assertNotEqual(rc5, 0, n5.log_tail())
        log5 = "\n".join(n5.proc.lines("err") + n5.proc.lines("out"))
        self.assertNotIn("cluster ready", log5)
        self.assertFalse(os.path.exists(os.path.join(n5.data_dir, "identity.json")))

        # 4. Until the leader retired the old root (bounded), sampling the status and every
        # node's ca.pem meanwhile: only the old and the new root, never an empty or torn file.
        samples, both_seen, rotating_seen = 0, set(), False
        names = {n.name for n in original}
        deadline = t_rot + ROTATION_BOUND_S
        while True:
            st, out = self.ca_status(managers[samples % len(managers)])
            samples += 1
            if st["root"] != new:
                # Only a copy that has not applied the rotation yet, for a moment.
                self.assertEqual((st["root"], st["rotating"]), (old, "no"), out)
                self.assertLess(time.monotonic() - t_rotated, 5.0,
                                f"`cluster ca status` still names the old root:\n{out}")
            elif st["rotating"] == "yes":
                rotating_seen = True
                self.assertEqual(st["old"], old, out)
                self.assertIsNotNone(st["waiting"], f"no `waiting for:` line while rotating:\n{out}")
                self.assertLessEqual(set(st["waiting"]), names, out)
            for n in original:
                digests = file_digests(tls_file(n, "ca.pem"))
                self.assertTrue(digests and set(digests) <= {old, new},
                                f"{n.name}'s ca.pem during the rotation: {digests}")
                if set(digests) == {old, new}:
                    both_seen.add(n.name)
            if st["rotating"] == "no" and st["root"] == new:
                break
            if time.monotonic() > deadline:
                self.fail(f"still rotating {ROTATION_BOUND_S:.0f}s after the start:\n{out}\n"
                          f"{load.report(t_rot)}\n{c.logs(20)}")
            time.sleep(0.25)
        t_retired = time.monotonic()
        print(f"  old root retired {t_retired - t_rot:.2f}s after the start ({samples} status "
              f"samples, rotating seen: {rotating_seen}, both roots seen in the ca.pem of "
              f"{sorted(both_seen)})", flush=True)
        self.assertIsNone(st["old"], f"`old root:` after the rotation:\n{out}")
        self.assertTrue(rotating_seen, "the rotation was never seen running")
        # retire_after is whole seconds from the leader's clock: up to a second before t_rot + GRACE_S
        self.assertGreaterEqual(t_retired - t_rot, GRACE_S - 1.2, "retired before the grace ended")

        # Every node's gauge of trusted roots is back to one.
        for n in original:
            harness.wait_until(
                lambda: cluster.metric(n.metrics(), "routemesh_tls_trusted_roots") == 1,
                timeout=10, interval=0.1, what=f"{n.name}'s routemesh_tls_trusted_roots at 1")

        # Every manager answers GET /v1/ca with the new root alone.
        for m in managers:
            def only_new():
                b = self.get_ca(m)
                return b.get("digest") == new and b.get("roots") == [new] and "rotation" not in b
            harness.wait_until(only_new, timeout=15, interval=0.1,
                               what=f"GET /v1/ca on {m.name} with the new root only")
            self.assertEqual(der_digest(self.get_ca(m)["certificate"]), new)

        # 5. Every node's files: the new root only, a certificate it issued.
        for n in original:
            harness.wait_until(lambda: file_digests(tls_file(n, "ca.pem")) == [new],
                               timeout=15, interval=0.1,
                               what=f"{n.name}'s ca.pem holding the new root only")
            self.check_node_files(n, new, old_root_file)
        new_root_file = write_text(os.path.join(c.dir, "new-root.pem"),
                                   read_text(tls_file(n1, "ca.pem")))
        # Overlay streams open between re-issued certificates (both ways between a manager and
        # the worker), and not with the worker's certificate from before the rotation.
        for target, present in ((self.worker, n1), (n1, self.worker), (managers[1], managers[2])):
            d = os.path.join(present.data_dir, "tls")
            ans = self.overlay_answer(target, new_root_file, os.path.join(d, "node.pem"),
                                      os.path.join(d, "node-key.pem"))
            self.assertEqual(ans, b"-", f"overlay {present.name} -> {target.name} after retirement")
        ans = self.overlay_answer(n1, new_root_file, os.path.join(old_node_dir, "node.pem"),
                                  os.path.join(old_node_dir, "node-key.pem"))
        self.assertEqual(ans, b"", "n1's overlay took n4's certificate of the old root")

        # 6. The old admin credentials are refused; the current ones work.
        rc, out, err = c.cli(n1, "service", "ls", env={"ROUTEMESH_CERT_DIR": old_dir})
        self.assertNotEqual(rc, 0, f"the old admin files still work:\n{out}")
        rc, out, err = c.cli(n1, "--cert", os.path.join(old_dir, "cert.pem"),
                             "--key", os.path.join(old_dir, "key.pem"),
                             "--ca", os.path.join(c.cert_dir, "ca.pem"), "service", "ls")
        self.assertNotEqual(rc, 0, f"the old admin certificate still works:\n{out}")
        old_admin = tls_with(new_root_file, os.path.join(old_dir, "cert.pem"),
                             os.path.join(old_dir, "key.pem"))
        for n in original:
            path = "/v1/routes" if n is self.worker else "/v1/services?stale=true"
            try:
                s, b = n.api("GET", path, tls=old_admin)
            except (cluster.Refused, cluster.Unknown):
                continue  # refused at the handshake
            self.assertIn(s, (401, 403), f"{n.name} answered the old admin certificate: {s} {b}")
        # The connection made before the rotation is refused at its next request and closed.
        kept.request("GET", "/v1/services?stale=true")
        r = kept.getresponse()
        body = r.read().decode()
        self.assertEqual(r.status, 401, f"the kept connection after the retirement: {body}")
        self.assertIn("retired_root", body)
        self.assertEqual(r.getheader("Connection"), "close")
        kept.close()
        self.assertGreaterEqual(harness.metric_sum(kept_node.metrics(),
                                                   "routemesh_admin_connections_cut_total",
                                                   reason="retired_root") or 0, 1)
        for m in managers:
            rc, out, err = c.cli(m, "service", "ls")
            self.assertEqual(rc, 0, f"the CLI's current files via {m.name}: {err}")
        # Both cross certificates were revoked before the old root was dropped: the old root's
        # key certified by the new root would otherwise chain old certificates to the new root.
        s, b = c.leader().get("/v1/certs/revoked")
        self.assertEqual(s, 200, b)
        names = [r.get("name") for r in b["revoked"]]
        for name in ("root-rotation.cross-new", "root-rotation.cross-old"):
            self.assertIn(name, names, f"the revocation list after the retirement: {b}")
        s, b = self.worker.api("GET", "/v1/routes")
        self.assertEqual(s, 200, b)
        rc, out = openssl_verify(new_root_file, os.path.join(c.cert_dir, "cert.pem"),
                                 untrusted=os.path.join(c.cert_dir, "cert.pem"))
        self.assertEqual(rc, 0, f"the CLI's cert.pem against the new root: {out}")

        # 7. A new worker joins with the new worker token.
        n6 = self.new_node(6)
        n6.start(join=f"{worker_token}@{n1.admin}", timeout=30)
        harness.wait_until(lambda: (c.leader().get(f"/v1/nodes/{n6.id}")[1] or {})
                           .get("node", {}).get("status") == "ready",
                           timeout=15, interval=0.1, what="n6 ready in the state")
        self.check_node_files(n6, new, old_root_file)
        s, b = c.leader().get("/v1/nodes")
        self.assertEqual(s, 200, b)
        self.assertNotIn(n5.name, [n["name"] for n in b["nodes"]], "the old token's join landed")

        # The load ran through all of it and failed nothing.
        harness.wait_until(lambda: load.successes("cli", after=t_retired) >= 2, timeout=10,
                           interval=0.1, what="CLI reads after the retirement")
        self.assertTrue(load.finish(), "the load threads did not stop")
        report = load.report(t_rot)
        print(f"  load: {report}", flush=True)
        self.assertEqual(load.failures, [], report)
        self.assertGreaterEqual(load.successes("keepalive"), 100, report)
        self.assertGreaterEqual(load.successes("fresh"), 50, report)
        self.assertGreaterEqual(load.successes("cli"), 5, report)
        for kind in ("keepalive", "fresh", "cli"):
            self.assertGreaterEqual(load.successes(kind, after=t_retired), 1,
                                    f"no {kind} success after the retirement: {report}")
            during = load.successes(kind, after=t_rot) - load.successes(kind, after=t_retired)
            self.assertGreaterEqual(during, 3, f"few {kind} successes while rotating: {report}")

        # A role change re-issues the node's certificate with the state's role: demote a
        # follower (its node.pem then names a worker), promote it back (a manager again).
        follower = next(m for m in managers if m is not c.leader())
        for action, role in (("demote", "worker"), ("promote", "manager")):
            rc, out, err = c.cli(c.leader(), "node", action, follower.name)
            self.assertEqual(rc, 0, f"node {action} {follower.name}: {err}\n{c.logs(60)}")
            harness.wait_until(lambda: self.cert_role(follower) == role, timeout=15,
                               interval=0.1,
                               what=f"{follower.name}'s node.pem naming a {role} after {action}")
        c.wait_voters(timeout=20)  # all three vote again before the leader stops below

        # 8. SIGTERM to the leader; the new one (a follower during the rotation) signs.
        lead_name = harness.wait_until(lambda: self.cluster_leader_name(managers), timeout=15,
                                       interval=0.2, what="the leader in `cluster status`")
        old_lead = c.node(lead_name)
        self.assertIn(old_lead, managers)
        self.assertIsNotNone(old_lead.stop(), f"{old_lead.name} did not exit")
        survivors = [m for m in managers if m is not old_lead]
        new_lead_name = harness.wait_until(
            lambda: (lambda n: n if n in {m.name for m in survivors} else None)(
                self.cluster_leader_name(survivors)),
            timeout=20, interval=0.2, what="a new leader among the survivors")
        through = next(m for m in survivors if m.name != new_lead_name)
        out_dir = os.path.join(c.dir, "viewer-after-rotation")
        rc, out, err = c.cli(through, "cert", "issue", "--role", "viewer", "--name",
                             "after-rotation", "--out", out_dir)
        self.assertEqual(rc, 0, f"cert issue via {through.name} (leader {new_lead_name}): {err}")
        cert_pem = os.path.join(out_dir, "cert.pem")
        leaf = write_text(os.path.join(c.dir, "viewer-leaf.pem"),
                          pem_certs(read_text(cert_pem))[0] + "\n")
        rc, out = openssl_verify(new_root_file, leaf, untrusted=cert_pem)
        self.assertEqual(rc, 0, f"the viewer certificate against the new root: {out}")
        rc, out = openssl_verify(old_root_file, leaf)
        self.assertNotEqual(rc, 0, f"the viewer certificate is of the old root: {out}")
        self.assertIn(new, file_digests(os.path.join(out_dir, "ca.pem")))
        rc, out, err = c.cli(through, "service", "ls", env={"ROUTEMESH_CERT_DIR": out_dir})
        self.assertEqual(rc, 0, f"the new viewer certificate via {through.name}: {err}")
        # A viewer may not rotate the root: 403, and the root stays.
        rc, out, err = c.cli(through, "cluster", "ca", "rotate", "--grace", "0",
                             env={"ROUTEMESH_CERT_DIR": out_dir})
        self.assertNotEqual(rc, 0, f"a viewer rotated the root: {out}")
        self.assertIn("may only read", err + out)
        rc, out, err = c.cli(through, "cluster", "ca", "status")
        self.assertEqual(rc, 0, err)
        self.assertIn(f"root: {new}", out)
        self.assertIn("rotating: no", out)
        print(f"  {old_lead.name} (leader) stopped, {new_lead_name} leads and signed; whole test "
              f"{time.monotonic() - t_start:.1f}s", flush=True)



class CaRotationWaitsForEveryNodeTest(cluster.SharedClusterTest):
    """A manager and a worker on 127.0.0.137-138: the worker is stopped and turns down, so the
    rotation cannot retire the old root; `cluster ca status` names it as down, and removing it
    (`node rm`) lets the rotation end."""
    FIRST_IP = "127.0.0.137"
    ROLES = ["manager", "worker"]
    CLUSTER_ARGS = {"heartbeat_ms": 100, "node_down_after_ms": 800}

    def test_a_down_node_holds_the_rotation_until_it_is_removed(self):
        c = self.c
        m, w = c.managers[0], c.workers[0]
        self.assertIsNotNone(w.stop(), f"{w.name} did not exit")
        harness.wait_until(lambda: (m.get(f"/v1/nodes/{w.id}")[1] or {}).get("node", {})
                           .get("status") == "down", timeout=10, interval=0.1,
                           what=f"{w.name} down in the state")
        # A malformed --grace is refused by the CLI (exit 2, naming the flag); nothing starts.
        rc, out, err = c.cli(m, "cluster", "ca", "rotate", "--grace", "1w")
        self.assertEqual(rc, 2, f"{out}\n{err}")
        self.assertIn("--grace: expected a duration", err)
        self.assertEqual(parse_ca_status(c.cli(m, "cluster", "ca", "status")[1])["rotating"], "no")
        rc, out, err = c.cli(m, "cluster", "ca", "rotate", "--grace", "0s", timeout=60)
        self.assertEqual(rc, 0, f"{out}\n{err}")
        new, _, _ = parse_rotate(out)
        c.tls = cluster.client_tls(c.cert_dir)  # the CLI renewed its files
        # The manager is re-issued at once; the stopped worker never is.
        def waiting_only_for_the_worker():
            rc, out, err = c.cli(m, "cluster", "ca", "status")
            st = parse_ca_status(out)
            return out if st["rotating"] == "yes" and st["waiting"] == [f"{w.name} (down)"] \
                else None
        out = harness.wait_until(waiting_only_for_the_worker, timeout=15, interval=0.2,
                                 what=f"the rotation waiting for {w.name} alone, down")
        self.assertIn("node rm", out)
        time.sleep(2)  # more than the reconciler's period, past the grace: still rotating
        st = parse_ca_status(c.cli(m, "cluster", "ca", "status")[1])
        self.assertEqual((st["rotating"], st["root"]), ("yes", new))
        self.assertEqual(len(file_digests(tls_file(m, "ca.pem"))), 2)

        rc, out, err = c.cli(m, "node", "rm", w.name)
        self.assertEqual(rc, 0, err)
        harness.wait_until(lambda: parse_ca_status(c.cli(m, "cluster", "ca", "status")[1])
                           ["rotating"] == "no", timeout=15, interval=0.2,
                           what="the rotation ending once the down node is gone")
        harness.wait_until(lambda: file_digests(tls_file(m, "ca.pem")) == [new],
                           timeout=10, interval=0.1, what="the manager trusting the new root alone")



if __name__ == "__main__":
    unittest.main(verbosity=2)
