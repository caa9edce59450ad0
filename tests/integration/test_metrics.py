"""Observability: /metrics passes `promtool check metrics` and carries the required families with
correct counts, /healthz, and access log lines (JSON and combined)."""
import json
import re
import shutil
import socket
import subprocess
import sys
import time

import harness

IP = "127.0.0.28"
HTTP_PORT = 8080
L4_PORT = 9000


def skip_loudly(test, reason):
    """Skips `test`, and says so on stderr too: ctest shows a skipped Python test as passed."""
    print(f"SKIPPED: {test.id()}: {reason}", file=sys.stderr, flush=True)
    test.skipTest(reason)


REQUIRED = [
    "routemesh_proxy_requests_total",
    "routemesh_proxy_request_duration_seconds_bucket",
    "routemesh_proxy_request_duration_seconds_count",
    "routemesh_proxy_upstream_connect_errors_total",
    "routemesh_proxy_upstream_retries_total",
    "routemesh_proxy_endpoint_ejections_total",
    "routemesh_proxy_downstream_connections_active",
    "routemesh_proxy_downstream_connections_total",
    "routemesh_proxy_bytes_received_total",
    "routemesh_proxy_bytes_sent_total",
    "routemesh_proxy_l4_connections_total",
    "routemesh_proxy_l4_bytes_total",
    "routemesh_config_reloads_total",
]


class MetricsTest(harness.ClassFixtures, harness.MeshTest):
    IP = IP

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.web = cls.class_whoami("web")
        cls.echo = harness.TcpEchoServer()
        cls.class_servers.append(cls.echo)
        dead = harness.free_port("127.0.0.1")
        cls.services = [
            {"name": "web", "labels": {"mesh.http": "web.test"}, "tasks": [cls.web.addr]},
            {"name": "flaky", "labels": {"mesh.http": "flaky.test"},
             "tasks": [f"127.0.0.1:{dead}", cls.web.addr]},
            {"name": "echo", "published": [f"{L4_PORT}:{cls.echo.port}/tcp"], "tasks": ["127.0.0.1"]},
        ]
        cfg = harness.node_config(IP, cls.services, http_port=HTTP_PORT, node={"threads": 1},
                                  health={"max_failures": 1, "base_ejection_ms": 10000,
                                          "max_ejection_ms": 20000})
        cls.cfg = cfg
        cls.n = cls.class_node(cfg)
        try:
            cls.traffic()
        except BaseException:
            cls.tearDownClass()  # unittest skips it when setUpClass fails: no node may outlive us
            raise

    @classmethod
    def traffic(cls):
        # Traffic that touches every family: 7 OK requests, 404s, a retry + ejection, L4 bytes.
        for i in range(7):
            status, _, _ = harness.http(IP, HTTP_PORT, f"/m{i}", host="web.test")
            assert status == 200, status
        for _ in range(2):
            harness.http(IP, HTTP_PORT, "/missing", host="nowhere.test")
        for _ in range(3):
            harness.http(IP, HTTP_PORT, "/", host="flaky.test")
        s = socket.create_connection((IP, L4_PORT), timeout=5)
        s.sendall(b"metrics")
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
        s.close()
        cls.n.reload(cls.cfg)

    def test_metrics_pass_promtool_check(self):
        promtool = shutil.which("promtool")
        if promtool is None:
            skip_loudly(self, "promtool is not installed (Debian package 'prometheus'); "
                              "/metrics is not linted")
        text = self.n.metrics()
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, f"promtool check metrics failed:\n{p.stdout}{p.stderr}")

    def test_metrics_contain_required_families(self):
        text = self.n.metrics()
        names = {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][\w:]*)(?:\{|\s)", text, re.M)}
        missing = [n for n in REQUIRED if n not in names]
        self.assertEqual(missing, [], "families without samples in /metrics")

    def test_request_counts_are_exact(self):
        harness.wait_until(
            lambda: self.n.metric("routemesh_proxy_requests_total", service="web", code_class="2xx") == 7,
            timeout=3, what="requests_total{service=web,code_class=2xx} == 7")
        self.assertGreaterEqual(
            self.n.metric("routemesh_proxy_requests_total", code_class="4xx") or 0, 2)
        self.assertEqual(
            self.n.metric("routemesh_proxy_request_duration_seconds_count", service="web"), 7)
        self.assertGreaterEqual(
            self.n.metric("routemesh_proxy_upstream_retries_total", service="flaky") or 0, 1)
        self.assertGreaterEqual(
            self.n.metric("routemesh_proxy_endpoint_ejections_total", service="flaky") or 0, 1)
        self.assertGreaterEqual(
            self.n.metric("routemesh_proxy_upstream_connect_errors_total", service="flaky") or 0, 1)
        self.assertGreaterEqual(
            self.n.metric("routemesh_proxy_l4_connections_total", service="echo") or 0, 1)
        self.assertGreaterEqual(self.n.metric("routemesh_proxy_l4_bytes_total", service="echo") or 0, 7)
        self.assertGreaterEqual(self.n.metric("routemesh_proxy_downstream_connections_total") or 0, 12)
        self.assertGreater(self.n.metric("routemesh_proxy_bytes_sent_total") or 0, 0)
        self.assertGreater(self.n.metric("routemesh_proxy_bytes_received_total") or 0, 0)
        self.assertEqual(self.n.metric("routemesh_config_reloads_total", result="ok"), 1)

    def test_active_connections_gauge_follows_open_connections(self):
        base = self.n.metric("routemesh_proxy_downstream_connections_active") or 0
        clients = [harness.Client(IP, HTTP_PORT) for _ in range(3)]
        try:
            for c in clients:
                self.assertEqual(c.request("GET", "/", host="nowhere.test").status, 404)
            harness.wait_until(
                lambda: (self.n.metric("routemesh_proxy_downstream_connections_active") or 0) >= base + 3,
                timeout=3, what="downstream_connections_active to rise by 3")
        finally:
            for c in clients:
                c.close()
        harness.wait_until(
            lambda: (self.n.metric("routemesh_proxy_downstream_connections_active") or 0) <= base,
            timeout=5, what="downstream_connections_active to fall back")

    def test_healthz(self):
        status, body = self.n.admin_get("/healthz")
        self.assertEqual(status, 200)
        self.assertIn("ok", body.lower())

    def test_access_log_lines_are_json(self):
        def json_lines():
            out = []
            for l in self.n.lines("out"):
                l = l.strip()
                if l.startswith("{"):
                    out.append(json.loads(l))
            return out

        def web_lines():
            return [d for d in json_lines() if d.get("service") == "web"]

        harness.wait_until(lambda: len(web_lines()) >= 7, timeout=5, what="7 access log lines for web")
        for l in self.n.lines("out"):
            if l.strip():
                try:
                    json.loads(l)
                except ValueError:
                    self.fail(f"access log line is not JSON: {l!r}")
        for d in web_lines():
            self.assertEqual(int(d["status"]), 200, d)
        paths = json.dumps(web_lines())
        self.assertIn("/m3", paths, "the request path belongs in the access log")
        misses = [d for d in json_lines() if int(d.get("status", 0)) == 404]
        self.assertGreaterEqual(len(misses), 2, "404s are logged too")
        for d in misses:
            self.assertIn(d.get("service"), ("", None), d)


class CombinedLogTest(harness.MeshTest):
    IP = IP

    def test_access_log_combined_format(self):
        w = self.whoami("web")
        cfg = harness.node_config(IP, [{"name": "web", "labels": {"mesh.http": "web.test"},
                                        "tasks": [w.addr]}], http_port=HTTP_PORT + 1,
                                  node={"access_log": {"enabled": True, "format": "combined",
                                                       "path": "-"}})
        n = self.node(cfg)
        status, _, _ = harness.http(IP, HTTP_PORT + 1, "/combined?x=1", host="web.test",
                                    headers={"User-Agent": "rm-test/1", "Referer": "http://r.test/"})
        self.assertEqual(status, 200)
        rx = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "GET /combined\?x=1 HTTP/1\.1" 200 \d+ '
                        r'"http://r\.test/" "rm-test/1"')
        line = harness.wait_until(lambda: next((l for l in n.lines("out") if rx.search(l)), None),
                                  timeout=5, what="a combined-format access log line")
        self.assertTrue(line)

    def test_access_log_disabled_writes_nothing(self):
        w = self.whoami("web")
        cfg = harness.node_config(IP, [{"name": "web", "labels": {"mesh.http": "web.test"},
                                        "tasks": [w.addr]}], http_port=HTTP_PORT + 2,
                                  node={"access_log": {"enabled": False, "format": "json", "path": "-"}})
        n = self.node(cfg)
        for _ in range(3):
            self.assertEqual(harness.http(IP, HTTP_PORT + 2, "/quiet", host="web.test")[0], 200)
        time.sleep(0.5)
        self.assertEqual([l for l in n.lines("out") if "/quiet" in l], [])


if __name__ == "__main__":
    harness.main()
