"""The HTTPS port (node.https_port), through real processes: a manager and a worker on
127.0.0.121-122, backends on 127.0.0.123. Certificates come from a test CA made here with the
openssl command; the cluster stores them with `routemesh cert add`.

- termination: the certificate is chosen by SNI (exact, wildcard, default), the task gets
  X-Forwarded-Proto: https and the client's address, keep-alive works, both nodes serve it
  (the certificate travels with the state);
- protocol: TLS 1.2 and 1.3 only, ALPN http/1.1 only, session resumption;
- passthrough: a service labelled mesh.sni gets the TLS connection untouched (its own
  certificate reaches the client);
- refusals: a wrong key, a certificate for another host, an expired one, a missing file,
  plaintext on the HTTPS port; each is refused with a clear message, counted, and changes
  nothing;
- the data path inside TLS (one node on 127.0.0.125 from a config file): large bodies both
  ways, chunked bodies, pipelining, HEAD, the proxy's own errors, an upgrade's tunnel, and
  close_notify when the proxy closes (after `Connection: close` and after idle_ms)."""
import http.client
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest

import cluster
import harness
import scripted_backend

FIRST_IP = "127.0.0.121"
BACKEND_IP = "127.0.0.123"
HTTPS_PORT = 8443


def harness_read(path):
    with open(path) as f:
        return f.read()


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)}: {r.stderr}")
    return r.stdout


class TestCa:
    """A throwaway CA and the certificates it signs (ECDSA P-256), as files in `dir`."""

    def __init__(self, dir):
        self.dir = dir
        self.cert = os.path.join(dir, "ca.pem")
        self.key = os.path.join(dir, "ca-key.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=routemesh test CA")

    def issue(self, name, sans, days=2):
        """A server certificate for `sans` (DNS names) with CN `name`, valid for `days` from
        now (-1: it expired a day ago); returns (cert, key) paths."""
        cert = os.path.join(self.dir, f"{name}.pem")
        key = os.path.join(self.dir, f"{name}-key.pem")
        csr = os.path.join(self.dir, f"{name}.csr")
        ext = os.path.join(self.dir, "leaf.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
                "-addext", "subjectAltName=" + ",".join(f"DNS:{s}" for s in sans))
        openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-out", cert,
                "-days", str(days), "-copy_extensions", "copy", "-extfile", ext)
        return cert, key

    def expired(self, name, san):
        return self.issue(name, [san], days=-1)


class TlsBackend:
    """A TLS server of its own (the passthrough target): answers every request with a fixed
    body over its own certificate."""

    def __init__(self, ip, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, 0))
        self.sock.listen(16)
        self.addr = f"{ip}:{self.sock.getsockname()[1]}"
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            conn.settimeout(10)
            with self.ctx.wrap_socket(conn, server_side=True) as s:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                body = b"passthrough-backend\n"
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                          % len(body) + body)
        except (OSError, ssl.SSLError):
            pass

    def stop(self):
        self.stopped = True
        self.sock.close()


def client_context(ca, versions=None, alpn=None, check_hostname=True):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = check_hostname
    if versions:
        ctx.minimum_version, ctx.maximum_version = versions
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(ip, name, ca, versions=None, alpn=None, session=None, timeout=10,
                check_hostname=True, ctx=None):
    """A TLS connection to the HTTPS port with SNI `name`, verified against `ca` (and against
    `name` unless check_hostname is False: the default certificate names another host). A
    resumed session needs the context that made it (`ctx`)."""
    ctx = ctx or client_context(ca, versions, alpn, check_hostname)
    raw = socket.create_connection((ip, HTTPS_PORT), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=name, session=session)
    except BaseException:
        raw.close()
        raise


def get(s, host, path="/"):
    """One keep-alive GET on the TLS socket `s`: (status, headers dict, body text)."""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    r = http.client.HTTPResponse(s)
    r.begin()
    body = r.read().decode()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def peer_cn(s):
    for rdn in s.getpeercert()["subject"]:
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


class HttpsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rm-https-")
        cls.ca = TestCa(cls.tmp)
        cls.a = cls.ca.issue("a.test", ["a.test"])
        cls.wild = cls.ca.issue("wild", ["*.wild.test"])
        cls.default = cls.ca.issue("default", ["default.test"])
        cls.backend_cert = cls.ca.issue("p-backend", ["p.test"])
        cls.c = cluster.Cluster(FIRST_IP, ["manager", "worker"],
                                node_settings={"https_port": HTTPS_PORT})
        cls.w = None
        cls.tls_backend = None
        try:
            cls.c.start()
            cls.w = harness.Whoami(ip=BACKEND_IP, name="web-1")
            cls.tls_backend = TlsBackend(BACKEND_IP, *cls.backend_cert)
            m = cls.c.nodes[0]
            for args in (["service", "create", "--name", "web", "--label",
                          "mesh.http=a.test,x.wild.test,other.test"],
                         ["task", "add", "--service", "web", "--node", "n1", "--addr", cls.w.addr],
                         ["service", "create", "--name", "secure", "--label", "mesh.sni=p.test"],
                         ["task", "add", "--service", "secure", "--node", "n1", "--addr",
                          cls.tls_backend.addr]):
                rc, out, err = cls.c.cli(m, *args)
                if rc != 0:
                    raise AssertionError(f"{args}: {out}{err}")
            cluster.wait_routes_everywhere(cls.c.nodes, "a.test", {"web-1"})
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.tls_backend:
            cls.tls_backend.stop()
        if cls.w:
            cls.w.stop()
        cls.c.stop()

    # -- helpers ----------------------------------------------------------------------------
    def cli(self, *args):
        return self.c.cli(self.c.nodes[0], *args)

    def add_cert(self, host, pair):
        flag = ["--default"] if host == "*" else ["--host", host]
        rc, out, err = self.cli("cert", "add", *flag, "--cert", pair[0], "--key", pair[1])
        self.assertEqual(rc, 0, out + err)

    def wait_served(self, name, cn, nodes=None):
        """Until every node presents certificate `cn` for SNI `name`."""
        for n in nodes or self.c.nodes:
            def ok():
                try:
                    with tls_connect(n.ip, name, self.ca.cert, check_hostname=False) as s:
                        return peer_cn(s) == cn
                except (OSError, ssl.SSLError):
                    return False
            harness.wait_until(ok, timeout=15, what=f"{n.name} serving {cn} for {name}")

    def tls_metric(self, outcome):
        return sum(cluster.metric(n.metrics(), "routemesh_proxy_tls_connections_total",
                                  {"outcome": outcome}) for n in self.c.nodes)

    def ingress_list(self):
        s, b = self.c.nodes[0].get("/v1/ingress/certs")
        self.assertEqual(s, 200, b)
        return sorted((c["host"], c["digest"], c["version"]) for c in b["certs"])

    # -- tests (named in the order they build on each other) -------------------------------
    def test_1_terminates_with_the_certificate_chosen_by_sni_on_every_node(self):
        self.add_cert("a.test", self.a)
        self.add_cert("*.wild.test", self.wild)
        rc, out, err = self.cli("cert", "ls")
        self.assertEqual(rc, 0, err)
        self.assertIn("a.test", out)
        self.assertIn("*.wild.test", out)
        self.assertNotIn("PRIVATE KEY", out)
        s, b = self.c.nodes[0].get("/v1/ingress/certs/a.test")
        self.assertEqual(s, 200, b)
        self.assertNotIn("key", b["cert"])  # keys never leave through the API
        self.wait_served("a.test", "a.test")
        self.wait_served("x.wild.test", "wild")
        for n in self.c.nodes:  # the worker too: the certificate came with the state
            with tls_connect(n.ip, "a.test", self.ca.cert) as s:
                local_port = s.getsockname()[1]
                status, headers, body = get(s, "a.test")
                self.assertEqual(status, 200, body)
                self.assertIn("Name: web-1", body)
                self.assertIn("X-Forwarded-Proto: https", body)
                self.assertIn(f"X-Forwarded-Port: {HTTPS_PORT}", body)
                self.assertIn("X-Forwarded-For: 127.0.0.1", body)
                # Keep-alive: a second request on the same TLS connection.
                status, headers, body = get(s, "a.test", "/again")
                self.assertEqual(status, 200, body)
                self.assertIn("GET /again HTTP/1.1", body)
                self.assertNotEqual(local_port, 0)
        # A name nothing covers, with no default certificate: unrecognized_name.
        with self.assertRaises(ssl.SSLError) as e:
            tls_connect(self.c.nodes[0].ip, "other.test", self.ca.cert).close()
        self.assertIn("UNRECOGNIZED NAME", str(e.exception).upper().replace("_", " "))
        # Two labels under a wildcard are not covered by it.
        with self.assertRaises(ssl.SSLError):
            tls_connect(self.c.nodes[0].ip, "y.x.wild.test", self.ca.cert).close()

    def test_2_the_default_certificate_serves_other_names_and_no_sni(self):
        self.add_cert("*", self.default)
        self.wait_served("other.test", "default")
        ctx = ssl.create_default_context(cafile=self.ca.cert)
        ctx.check_hostname = False
        with socket.create_connection((self.c.nodes[1].ip, HTTPS_PORT), timeout=10) as raw:
            with ctx.wrap_socket(raw) as s:  # no server_hostname: no SNI
                self.assertEqual(peer_cn(s), "default")
                status, _, body = get(s, "other.test")
                self.assertEqual(status, 200, body)
        # Exact and wildcard certificates still win over the default.
        self.wait_served("a.test", "a.test")

    def test_3_tls_versions_alpn_and_resumption(self):
        ip = self.c.nodes[0].ip
        for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with tls_connect(ip, "a.test", self.ca.cert, versions=(v, v)) as s:
                self.assertEqual(s.version(), "TLSv1.2" if v == ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
        r = subprocess.run(["openssl", "s_client", "-connect", f"{ip}:{HTTPS_PORT}", "-servername",
                            "a.test", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], input="", capture_output=True, text=True,
                           timeout=15)
        self.assertNotEqual(r.returncode, 0, "TLS 1.1 was accepted:\n" + r.stdout)
        # The server refused it (alert 70), not the client's own defaults.
        self.assertIn("alert protocol version", r.stdout + r.stderr)
        r = subprocess.run(["openssl", "s_client", "-connect", f"{ip}:{HTTPS_PORT}", "-servername",
                            "a.test", "-alpn", "h2,http/1.1", "-CAfile", self.ca.cert],
                           input="", capture_output=True, text=True, timeout=15)
        self.assertIn("ALPN protocol: http/1.1", r.stdout)
        with self.assertRaises(ssl.SSLError) as e:  # only h2 offered: no_application_protocol
            tls_connect(ip, "a.test", self.ca.cert, alpn=["h2"]).close()
        self.assertIn("NO APPLICATION PROTOCOL", str(e.exception).upper().replace("_", " "))
        before = self.tls_metric("resumed")
        for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = client_context(self.ca.cert, versions=(v, v))
            with tls_connect(ip, "a.test", self.ca.cert, ctx=ctx) as s:
                get(s, "a.test")  # TLS 1.3 tickets arrive after the handshake
                session = s.session
            with tls_connect(ip, "a.test", self.ca.cert, session=session, ctx=ctx) as s:
                self.assertTrue(s.session_reused, f"{v} session not resumed")
                status, _, body = get(s, "a.test")
                self.assertEqual(status, 200, body)
        harness.wait_until(lambda: self.tls_metric("resumed") >= before + 2, timeout=5,
                           what="resumed handshakes counted")

    def test_4_passthrough_by_sni_reaches_the_service_untouched(self):
        before = self.tls_metric("passthrough")
        for n in self.c.nodes:
            with tls_connect(n.ip, "p.test", self.ca.cert) as s:
                self.assertEqual(peer_cn(s), "p-backend")  # the backend's own certificate
                s.sendall(b"GET / HTTP/1.1\r\nHost: p.test\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.assertIn(b"passthrough-backend", data)
        r = subprocess.run(["curl", "-sS", "--resolve", f"p.test:{HTTPS_PORT}:{self.c.nodes[1].ip}",
                            "--cacert", self.ca.cert, f"https://p.test:{HTTPS_PORT}/"],
                           capture_output=True, text=True, timeout=15)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("passthrough-backend", r.stdout)
        harness.wait_until(lambda: self.tls_metric("passthrough") >= before + 3, timeout=5,
                           what="passthrough connections counted")

    def test_5_curl_terminated_on_the_worker(self):
        r = subprocess.run(["curl", "-sS", "--resolve", f"a.test:{HTTPS_PORT}:{self.c.nodes[1].ip}",
                            "--cacert", self.ca.cert, f"https://a.test:{HTTPS_PORT}/curl"],
                           capture_output=True, text=True, timeout=15)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("GET /curl HTTP/1.1", r.stdout)
        self.assertIn("X-Forwarded-Proto: https", r.stdout)

    def test_6_bad_certificates_are_refused_and_change_nothing(self):
        before = self.ingress_list()
        other = self.ca.issue("other", ["other.test"])
        expired = self.ca.expired("old", "old.test")
        cases = [
            (["--host", "c.test", "--cert", self.a[0], "--key", self.a[1]], 1, "host"),
            (["--host", "a.test", "--cert", self.a[0], "--key", other[1]], 1, "key"),
            (["--host", "old.test", "--cert", expired[0], "--key", expired[1]], 1, "expired"),
            (["--host", "a.test", "--cert", "/nonexistent.pem", "--key", self.a[1]], 2, "--cert"),
            (["--host", "a.test", "--key", self.a[1]], 2, "--cert"),
            (["--cert", self.a[0], "--key", self.a[1]], 2, "--host"),
        ]
        for args, want_rc, want_text in cases:
            rc, out, err = self.cli("cert", "add", *args)
            self.assertEqual(rc, want_rc, f"{args}: {out}{err}")
            self.assertIn(want_text, out + err, args)
        # Straight to the API: not PEM, and a field that is not known.
        m = self.c.nodes[0]
        s, b = m.api("PUT", "/v1/ingress/certs/a.test", {"cert": "junk", "key": "junk"})
        self.assertEqual(s, 400, b)
        self.assertEqual(cluster.error_of(b)["field"], "cert")
        s, b = m.api("PUT", "/v1/ingress/certs/a.test",
                     {"cert": open(self.a[0]).read(), "key": open(self.a[1]).read(), "x": 1})
        self.assertEqual(s, 400, b)
        self.assertEqual(cluster.error_of(b)["field"], "x")
        s, b = m.api("PUT", "/v1/ingress/certs/bad_host!", {"cert": "x", "key": "y"})
        self.assertEqual(s, 400, b)
        self.assertEqual(self.ingress_list(), before)

    def test_7_plaintext_on_the_https_port_is_closed_and_counted(self):
        before = self.tls_metric("not_tls")
        data = harness.raw(self.c.nodes[0].ip, HTTPS_PORT, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(data, b"")
        harness.wait_until(lambda: self.tls_metric("not_tls") >= before + 1, timeout=5,
                           what="not_tls counted")

    def test_8_removing_a_certificate_stops_serving_it(self):
        rc, out, err = self.cli("cert", "rm", "a.test")
        self.assertEqual(rc, 0, out + err)
        self.wait_served("a.test", "default")  # the default takes over
        rc, out, err = self.cli("cert", "rm", "a.test")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("no certificate", out + err)


    def test_9_keys_are_sealed_at_rest_and_served_after_a_manager_key_rotation(self):
        # Nothing on the manager's disk (WAL, snapshots, anything) holds a key added so far in
        # clear: the state keeps them sealed with the secrets key.
        m = self.c.nodes[0]
        self.add_cert("a.test", self.a)

        def body_lines(key_file):
            lines = [ln for ln in harness_read(key_file).splitlines()
                     if ln and not ln.startswith("-----")]
            return [ln.encode() for ln in lines if len(ln) >= 40]

        def clear_keys_on_disk(node):
            secrets = [ln for pair in (self.a, self.wild, self.default)
                       for ln in body_lines(pair[1])]
            found = []
            for root, _, files in os.walk(node.data_dir):
                for f in files:
                    path = os.path.join(root, f)
                    with open(path, "rb") as fh:
                        data = fh.read()
                    found += [path for ln in secrets if ln in data]
            return found

        self.assertEqual(clear_keys_on_disk(m), [])
        self.wait_served("a.test", "a.test")
        # A manager-key rotation seals the secrets key anew; the manager restarted from its
        # data_dir opens the keys with the new manager key and serves them, and the worker's
        # copy (sent opened over mutual TLS) keeps serving.
        key_file = os.path.join(m.data_dir, "tls", "manager-key")
        old_key = harness_read(key_file)
        rc, out, err = self.cli("cluster", "manager-key", "rotate")
        self.assertEqual(rc, 0, out + err)
        harness.wait_until(lambda: harness_read(key_file) != old_key, timeout=15, interval=0.1,
                           what="the manager taking the new manager key")
        self.add_cert("*.wild.test", self.wild)  # sealed after the rotation
        self.assertIsNotNone(m.stop(), "the manager did not exit")
        m.start()
        self.wait_served("a.test", "a.test")
        self.wait_served("x.wild.test", "wild")
        with tls_connect(m.ip, "a.test", self.ca.cert) as s:
            status, _, body = get(s, "a.test")
            self.assertEqual(status, 200, body)
        self.assertEqual(clear_keys_on_disk(m), [])
        for n in self.c.nodes:
            self.assertEqual(
                cluster.metric(n.metrics(), "routemesh_proxy_tls_certificate_errors_total"), 0,
                n.name)


class StaticHttpsTest(unittest.TestCase):
    """One node from a config file (no cluster): certificates from `certificates:` files,
    checked at load and reloaded on SIGHUP."""

    IP = "127.0.0.124"

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rm-https-static-")
        cls.ca = TestCa(cls.tmp)
        cls.first = cls.ca.issue("static-1", ["s.test"])
        cls.second = cls.ca.issue("static-2", ["s.test"])
        cls.w = harness.Whoami(ip=BACKEND_IP, name="static-web")

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()

    def config(self, pair):
        return harness.node_config(
            self.IP, [{"name": "web", "labels": {"mesh.http": "s.test"}, "tasks": [self.w.addr]}],
            node={"https_port": HTTPS_PORT},
            certificates=[{"host": "s.test", "cert": pair[0], "key": pair[1]}])

    def test_certificates_from_the_config_file_are_served_and_reloaded(self):
        n = harness.Node(self.config(self.first))
        try:
            with tls_connect(self.IP, "s.test", self.ca.cert) as s:
                self.assertEqual(peer_cn(s), "static-1")
                status, _, body = get(s, "s.test")
                self.assertEqual(status, 200, body)
                self.assertIn("X-Forwarded-Proto: https", body)
            # A bad pair on reload is refused, naming the entry; the old certificate stays.
            line = n.reload(self.config((self.first[0], self.second[1])), expect_ok=False)
            self.assertIn("certificates[0].key", "\n".join(n.lines()))
            with tls_connect(self.IP, "s.test", self.ca.cert) as s:
                self.assertEqual(peer_cn(s), "static-1", line)
            # A new certificate for the host, then SIGHUP: served from then on.
            n.reload(self.config(self.second))
            harness.wait_until(lambda: self.served_cn() == "static-2", timeout=10,
                               what="the reloaded certificate served")
        finally:
            n.stop()

    def served_cn(self):
        with tls_connect(self.IP, "s.test", self.ca.cert) as s:
            return peer_cn(s)

    def test_a_certificate_that_does_not_fit_stops_the_node_from_starting(self):
        cfg = self.config((self.first[0], self.second[1]))
        path = os.path.join(self.tmp, "bad.yaml")
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([harness.BIN, "node", "--config", path], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("certificates[0].key: the key does not belong to the certificate", r.stderr)


class HttpsDataPathTest(unittest.TestCase):
    """The HTTP session over the TLS socket: what the HTTP port does with plain sockets (splice
    included) must hold inside TLS, where every byte is copied through OpenSSL."""

    IP = "127.0.0.125"

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rm-https-data-")
        cls.ca = TestCa(cls.tmp)
        pair = cls.ca.issue("d.test", ["d.test"])
        cls.b = scripted_backend.ScriptedBackend(BACKEND_IP)
        cfg = harness.node_config(
            cls.IP, [{"name": "scripted", "labels": {"mesh.http": "d.test"}, "tasks": [cls.b.addr]}],
            node={"https_port": HTTPS_PORT}, timeouts={"idle_ms": 1500, "l4_idle_ms": 1500},
            certificates=[{"host": "d.test", "cert": pair[0], "key": pair[1]}])
        cls.n = harness.Node(cfg)

    @classmethod
    def tearDownClass(cls):
        cls.n.stop()
        cls.b.close()

    def connect(self):
        """A TLS connection that tells close_notify from a bare TCP end: recv answers b""
        only after close_notify, and raises SSLEOFError without one."""
        ctx = client_context(self.ca.cert)
        raw = socket.create_connection((self.IP, HTTPS_PORT), timeout=10)
        return ctx.wrap_socket(raw, server_hostname="d.test", suppress_ragged_eofs=False)

    def assert_closed_with_close_notify(self, s, f):
        self.assertEqual(f.read(), b"", "bytes after the last response")
        self.assertEqual(s.recv(1), b"")

    def test_bodies_pipelining_head_and_errors_on_one_connection(self):
        payload = os.urandom(1 << 20)
        with self.connect() as s:
            f = s.makefile("rb")
            # 1 MiB up and 1 MiB (and its head) back: the HTTP port would splice the answer.
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: d.test\r\nContent-Length: %d\r\n\r\n"
                      % len(payload) + payload)
            r = harness.read_response(f)
            self.assertEqual(r.status, 200)
            self.assertTrue(r.body.endswith(payload), "the echoed body differs")
            self.assertIn(b"x-forwarded-proto: https", r.body[:2000].lower())
            # A chunked body.
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: d.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            r = harness.read_response(f)
            self.assertEqual(r.status, 200)
            self.assertTrue(r.body.endswith(b"hello world"), r.body[-100:])
            # Three requests in one write; HEAD in the middle; then the proxy's own 404.
            s.sendall(b"GET /ok HTTP/1.1\r\nHost: d.test\r\n\r\n"
                      b"HEAD /ok HTTP/1.1\r\nHost: d.test\r\n\r\n"
                      b"GET /ok HTTP/1.1\r\nHost: d.test\r\n\r\n"
                      b"GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
            first = harness.read_response(f)
            head = harness.read_response(f, head_request=True)
            third = harness.read_response(f)
            missing = harness.read_response(f)
            self.assertEqual((first.status, head.status, third.status, missing.status),
                             (200, 200, 200, 404))
            self.assertRegex(first.body, rb"^ok \d+$")
            self.assertEqual(head.header("content-length"), str(len(first.body)))
            # The connection closes after an answer that says so, with close_notify.
            s.sendall(b"GET /ok HTTP/1.1\r\nHost: d.test\r\nConnection: close\r\n\r\n")
            last = harness.read_response(f)
            self.assertEqual(last.status, 200)
            self.assertEqual(last.header("connection"), "close")
            self.assert_closed_with_close_notify(s, f)

    def upgrade(self, s, f, script):
        """Asks the scripted backend's `script` (/switch or /switch-bye) for a websocket
        upgrade on `s` and checks the 101; the tunnel starts after it."""
        s.sendall(b"GET /%s?proto=websocket HTTP/1.1\r\nHost: d.test\r\n"
                  b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n" % script)
        r = harness.read_response(f)
        self.assertEqual(r.status, 101)
        self.assertEqual((r.header("upgrade") or "").lower(), "websocket")

    def test_an_upgrade_tunnels_inside_tls(self):
        with self.connect() as s:
            f = s.makefile("rb")
            self.upgrade(s, f, b"switch")
            data = os.urandom(200 * 1024)
            s.sendall(data)
            got = harness.read_at_least(lambda: f.read1(65536), len(data))
            self.assertEqual(got, data, "the tunnel did not echo every byte")

    def test_a_tunnel_whose_backend_closed_ends_though_the_client_stays(self):
        # After an upgrade the backend answers and closes: the client gets its bytes and
        # close_notify, which in TLS 1.3 ends only the node's direction. A client that then
        # neither sends nor closes is closed once nothing moved for l4_idle_ms (1.5 s here),
        # not kept for ever.
        with self.connect() as s:
            f = s.makefile("rb")
            self.upgrade(s, f, b"switch-bye")
            self.assertEqual(f.read(), b"bye", "the backend's bytes, then close_notify")
            raw = socket.socket(fileno=os.dup(s.fileno()))
            try:
                raw.settimeout(10)
                try:
                    end = raw.recv(1)
                except ConnectionResetError:
                    end = b""
                except socket.timeout:
                    self.fail("the node kept the half-closed TLS connection open for 10 s")
                self.assertEqual(end, b"", "bytes after close_notify")
            finally:
                raw.close()

    def test_an_idle_connection_is_closed_with_close_notify(self):
        with self.connect() as s:
            f = s.makefile("rb")
            s.sendall(b"GET /ok HTTP/1.1\r\nHost: d.test\r\n\r\n")
            self.assertEqual(harness.read_response(f).status, 200)
            s.settimeout(10)  # idle_ms is 1.5 s
            self.assert_closed_with_close_notify(s, f)


if __name__ == "__main__":
    unittest.main()
