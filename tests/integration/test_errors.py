"""Error responses (404/502/503/504/405), retries on another endpoint and passive ejection.
Every error carries X-Routemesh-Error and a short text body. One proxy thread so that per-thread
balancer and health state is deterministic."""
import socket
import threading
import time

import harness

IP = "127.0.0.22"
RETRY_IP = "127.0.0.33"
HTTP_PORT = 8080


class ErrorsTest(harness.ClassFixtures, harness.MeshTest):
    IP = IP

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.live = cls.class_whoami("live")
        cls.live2 = cls.class_whoami("live2")
        cls.slow = cls.class_whoami("slow", threads=2)
        dead1 = harness.free_port("127.0.0.1")
        dead2 = harness.free_port("127.0.0.1")
        dead3 = harness.free_port("127.0.0.1")
        services = [
            {"name": "web", "labels": {"mesh.http": "web.test"}, "tasks": [cls.live.addr]},
            {"name": "slow", "labels": {"mesh.http": "slow.test"}, "tasks": [cls.slow.addr]},
            {"name": "dead", "labels": {"mesh.http": "dead.test"}, "tasks": [f"127.0.0.1:{dead1}"]},
            {"name": "gone", "labels": {"mesh.http": "gone.test"}, "tasks": [f"127.0.0.1:{dead2}"]},
            {"name": "half", "labels": {"mesh.http": "half.test"},
             "tasks": [f"127.0.0.1:{dead3}", cls.live2.addr]},
        ]
        cfg = harness.node_config(
            IP, services, http_port=HTTP_PORT, node={"threads": 1},
            timeouts={"upstream_response_ms": 500, "upstream_connect_ms": 500},
            health={"max_failures": 1, "base_ejection_ms": 20000, "max_ejection_ms": 30000})
        cls.n = cls.class_node(cfg)

    def get(self, host, path="/", method="GET"):
        return harness.http(IP, HTTP_PORT, path, host=host, method=method)

    def assertError(self, status, hdrs, body, want):
        self.assertEqual(status, want, f"expected {want}, got {status}: {body[:200]!r}")
        self.assertIn("x-routemesh-error", hdrs, f"{want} without X-Routemesh-Error: {hdrs}")
        self.assertTrue(hdrs["x-routemesh-error"].strip(), "X-Routemesh-Error must not be empty")
        self.assertTrue(body.strip(), f"{want} must have a short body naming the cause")
        self.assertLess(len(body), 1024, "error bodies are short")
        self.assertTrue(hdrs.get("content-type", "").startswith("text/plain"), hdrs)

    def test_unknown_host_is_404(self):
        status, hdrs, body = self.get("unknown.test")
        self.assertError(status, hdrs, body, 404)
        self.assertNotIn("x-whoami-name", hdrs)

    def test_nothing_listening_is_502(self):
        status, hdrs, body = self.get("dead.test")
        self.assertError(status, hdrs, body, 502)
        connect_errors = self.n.metric("routemesh_proxy_upstream_connect_errors_total", service="dead")
        self.assertIsNotNone(connect_errors, "upstream_connect_errors_total{service=dead} missing")
        self.assertGreaterEqual(connect_errors, 1)

    def test_all_endpoints_ejected_is_503(self):
        # max_failures 1: the first failure ejects the only endpoint for 20 s.
        codes = []
        last = None
        for _ in range(3):
            last = self.get("gone.test")
            codes.append(last[0])
            if last[0] == 503:
                break
        self.assertEqual(codes[0], 502, f"first request to a dead endpoint: {codes}")
        self.assertIn(503, codes, f"after the endpoint is ejected, expected 503: {codes}")
        self.assertError(*last, 503)
        ejections = self.n.metric("routemesh_proxy_endpoint_ejections_total", service="gone")
        self.assertIsNotNone(ejections, "endpoint_ejections_total{service=gone} missing")
        self.assertGreaterEqual(ejections, 1)
        # 503 is answered without trying to connect: quick.
        t0 = time.monotonic()
        status, hdrs, body = self.get("gone.test")
        self.assertError(status, hdrs, body, 503)
        self.assertLess(time.monotonic() - t0, 0.4)

    def test_upstream_response_timeout_is_504(self):
        t0 = time.monotonic()
        status, hdrs, body = self.get("slow.test", "/delay/3000")
        elapsed = time.monotonic() - t0
        self.assertError(status, hdrs, body, 504)
        self.assertGreaterEqual(elapsed, 0.4, "504 came before upstream_response_ms")
        self.assertLess(elapsed, 2.5, "504 must come after ~upstream_response_ms (500 ms)")

    def test_idempotent_requests_are_retried_on_another_endpoint(self):
        before = self.n.metric("routemesh_proxy_upstream_retries_total", service="half") or 0
        ej_before = self.n.metric("routemesh_proxy_endpoint_ejections_total", service="half") or 0
        results = []
        for method in ["GET"] * 6 + ["HEAD", "OPTIONS", "DELETE"]:
            status, hdrs, _ = self.get("half.test", "/retry", method=method)
            results.append((method, status, hdrs.get("x-whoami-name")))
        for method, status, name in results:
            self.assertEqual(status, 200, f"{method} with one dead and one live endpoint: {results}")
            self.assertEqual(name, "live2", results)
        retries = harness.wait_until(
            lambda: (self.n.metric("routemesh_proxy_upstream_retries_total", service="half") or 0) > before,
            timeout=3, what="upstream_retries_total{service=half} to increase")
        self.assertTrue(retries)
        ejections = self.n.metric("routemesh_proxy_endpoint_ejections_total", service="half") or 0
        self.assertGreater(ejections, ej_before, "the dead endpoint must be ejected (passive health)")

    def test_connect_method_is_refused_with_405(self):
        data, closed = harness.exchange(
            IP, HTTP_PORT, b"CONNECT web.test:443 HTTP/1.1\r\nHost: web.test:443\r\n\r\n", timeout=3)
        self.assertEqual(harness.statuses(data), [405], data[:300])
        self.assertIn(b"x-routemesh-error:", data.lower())

    def test_error_counted_by_status_class(self):
        before = self.n.metric("routemesh_proxy_requests_total", code_class="4xx") or 0
        for _ in range(3):
            self.get("unknown.test")
        harness.wait_until(
            lambda: (self.n.metric("routemesh_proxy_requests_total", code_class="4xx") or 0) >= before + 3,
            timeout=3, what="requests_total{code_class=4xx} to grow by 3")



class RetryAcrossTableChangeTest(harness.MeshTest):
    def test_a_connect_that_fails_while_the_table_changes_is_retried_elsewhere(self):
        # A rolling update writes health and drain states all the time, so a task killed
        # under load often fails a connect while a new table arrives. The retry of an
        # idempotent request must still go to another endpoint, not end in a 502.
        live = harness.Whoami(name="live")
        self.addCleanup(live.stop)
        # An endpoint whose connects hang: its accept queue (backlog 0) is full, so the
        # kernel drops every further SYN.
        hang = socket.socket()
        hang.bind(("127.0.0.1", 0))
        hang.listen(0)
        self.addCleanup(hang.close)
        filler = socket.create_connection(hang.getsockname(), timeout=2)
        self.addCleanup(filler.close)
        services = [{"name": "retry", "labels": {"mesh.http": "retry.test"},
                     "tasks": [f"127.0.0.1:{hang.getsockname()[1]}", live.addr]}]
        cfg = harness.node_config(RETRY_IP, services, http_port=HTTP_PORT, node={"threads": 1},
                                  timeouts={"upstream_connect_ms": 1500},
                                  health={"max_failures": 10})
        n = harness.Node(cfg)
        self.addCleanup(n.stop)
        for attempt in range(6):
            result = {}

            def get():
                result["r"] = harness.http(RETRY_IP, HTTP_PORT, "/", host="retry.test", timeout=10)
            t = threading.Thread(target=get)
            t.start()
            t.join(0.4)
            if not t.is_alive():
                self.assertEqual(result["r"][0], 200, result["r"])  # the live endpoint
                continue
            # Waiting on the connect that hangs: a new table arrives meanwhile.
            cfg["services"].append({"name": f"other{attempt}",
                                    "labels": {"mesh.http": f"other{attempt}.test"},
                                    "tasks": [live.addr]})
            n.reload(cfg)
            t.join(10)
            status, hdrs, body = result["r"]
            self.assertEqual(status, 200, body)
            self.assertEqual(hdrs.get("x-whoami-name"), "live")
            return
        self.fail("no request went to the endpoint whose connects hang")


class PassiveHealthTest(harness.ClassFixtures, harness.MeshTest):
    """An endpoint answering 5xx is ejected after max_failures and comes back after the
    ejection time."""
    IP = IP

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bad = harness.RecordingBackend(status=500)
        cls.class_servers.append(cls.bad)
        cls.good = cls.class_whoami("good")
        services = [{"name": "mixed", "labels": {"mesh.http": "mixed.test"},
                     "tasks": [cls.bad.addr, cls.good.addr]}]
        cfg = harness.node_config(IP, services, http_port=HTTP_PORT + 1, node={"threads": 1},
                                  health={"max_failures": 2, "base_ejection_ms": 800,
                                          "max_ejection_ms": 5000})
        cls.n = cls.class_node(cfg)

    def test_5xx_endpoint_is_ejected_and_comes_back(self):
        c = harness.Client(IP, HTTP_PORT + 1)
        self.addCleanup(c.close)
        codes = [c.request("GET", f"/r{i}", host="mixed.test").status for i in range(12)]
        # Round robin: 500, 200, 500, 200 (ejected after the 2nd 500), then only 200s.
        self.assertEqual(codes.count(500), 2, f"the 5xx endpoint must be ejected after 2 failures: {codes}")
        self.assertEqual(codes[-6:], [200] * 6, codes)
        _, requests = self.bad.seen()
        self.assertEqual(len(requests), 2)
        ejections = self.n.metric("routemesh_proxy_endpoint_ejections_total", service="mixed")
        self.assertEqual(ejections, 1)
        # After base_ejection_ms the endpoint gets traffic again.
        time.sleep(1.0)
        codes = [c.request("GET", f"/back{i}", host="mixed.test").status for i in range(4)]
        self.assertIn(500, codes, f"the ejected endpoint must come back after base_ejection_ms: {codes}")
        _, requests = self.bad.seen()
        self.assertGreater(len(requests), 2)


if __name__ == "__main__":
    harness.main()
