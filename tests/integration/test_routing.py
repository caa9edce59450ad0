"""Routing by Host (exact, wildcard, several hosts, case and port), path prefix, Docker UCP label,
load balancing (round robin, least request, sticky cookie), forwarding headers and the route
table on the admin API. One node (one proxy thread, so balancer state is deterministic) and its
backends are shared by the whole class."""
import json
import socket
import threading
import time
import unittest

import harness

IP = "127.0.0.21"
HTTP_PORT = 8080


class RoutingTest(harness.ClassFixtures, harness.MeshTest):
    IP = IP

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        names = ["exact", "wild", "multi", "root", "api", "apiv2", "ucp", "rr1", "rr2", "lr1", "lr2",
                 "st1", "st2"]
        # least_request backends get two threads so a slow /delay request does not block them.
        cls.w = {n: cls.class_whoami(n, threads=2 if n.startswith("lr") else 1) for n in names}
        w = cls.w

        def svc(name, labels, tasks):
            return {"name": name, "labels": labels, "tasks": tasks}

        services = [
            svc("exact", {"mesh.http": "exact.test"}, [w["exact"].addr]),
            svc("wild", {"mesh.http": "*.example.test"}, [w["wild"].addr]),
            svc("multi", {"mesh.http": "one.test, two.test"}, [w["multi"].addr]),
            svc("paths-root", {"mesh.http": "paths.test"}, [w["root"].addr]),
            svc("paths-api", {"mesh.http": "paths.test", "mesh.http.path": "/api"}, [w["api"].addr]),
            svc("paths-apiv2", {"mesh.http": "paths.test", "mesh.http.path": "/api/v2"},
                [w["apiv2"].addr]),
            # UCP form: the task is an address only; the port comes from internal_port.
            svc("ucp", {"com.docker.ucp.mesh.http.80":
                        f"external_route=http://ucp.test,internal_port={w['ucp'].port}"},
                ["127.0.0.1"]),
            svc("rr", {"mesh.http": "rr.test"}, [w["rr1"].addr, w["rr2"].addr]),
            svc("lr", {"mesh.http": "lr.test", "mesh.lb": "least_request"},
                [w["lr1"].addr, w["lr2"].addr]),
            svc("sticky", {"mesh.http": "sticky.test", "mesh.http.sticky": "rmsticky"},
                [w["st1"].addr, w["st2"].addr]),
        ]
        cfg = harness.node_config(IP, services, http_port=HTTP_PORT, node={"threads": 1})
        cls.n = cls.class_node(cfg)

    # -- helpers ----------------------------------------------------------------------------

    def get(self, host, path="/", headers=None):
        status, hdrs, body = harness.http(IP, HTTP_PORT, path, host=host, headers=headers)
        return status, hdrs, body

    def served_by(self, host, path="/", headers=None):
        status, hdrs, body = self.get(host, path, headers)
        self.assertEqual(status, 200, f"Host {host!r} {path}: expected 200, got {status} "
                                      f"{hdrs.get('x-routemesh-error')} {body[:200]!r}")
        name = hdrs.get("x-whoami-name") or harness.parse_whoami(body)["name"]
        return name

    # -- Host matching ----------------------------------------------------------------------

    def test_exact_host_routes_to_its_service(self):
        self.assertEqual(self.served_by("exact.test"), "exact")

    def test_host_matching_ignores_case_and_port(self):
        self.assertEqual(self.served_by("EXACT.Test"), "exact")
        self.assertEqual(self.served_by(f"exact.test:{HTTP_PORT}"), "exact")
        self.assertEqual(self.served_by("ExAcT.TEST:1234"), "exact")

    def test_unknown_host_is_404_with_error_header(self):
        status, hdrs, _ = self.get("nobody.test")
        self.assertEqual(status, 404)
        self.assertIn("x-routemesh-error", hdrs)

    def test_wildcard_host_matches_subdomains_only(self):
        self.assertEqual(self.served_by("a.example.test"), "wild")
        self.assertEqual(self.served_by("deep.sub.example.test"), "wild")
        self.assertEqual(self.served_by("B.Example.Test:8080"), "wild")
        status, _, _ = self.get("example.test")
        self.assertEqual(status, 404, "*.example.test must not match example.test itself")
        status, _, _ = self.get("notexample.test")
        self.assertEqual(status, 404, "*.example.test must not match notexample.test")

    def test_several_hosts_in_one_label(self):
        self.assertEqual(self.served_by("one.test"), "multi")
        self.assertEqual(self.served_by("two.test"), "multi")

    def test_longest_path_prefix_wins_at_segment_boundary(self):
        cases = [("/", "root"), ("/index.html", "root"), ("/api", "api"), ("/api/", "api"),
                 ("/api/users?x=1", "api"), ("/apix", "root"), ("/api/v2", "apiv2"),
                 ("/api/v2/things", "apiv2"), ("/api/v20", "api"), ("/api?q=1", "api")]
        for path, want in cases:
            with self.subTest(path=path):
                self.assertEqual(self.served_by("paths.test", path), want, f"path {path}")

    def test_backend_sees_the_original_request_target(self):
        _, _, body = self.get("paths.test", "/api/users?x=1")
        self.assertEqual(harness.parse_whoami(body)["request_line"], "GET /api/users?x=1 HTTP/1.1")

    def test_ucp_label_routes_external_route_host_to_internal_port(self):
        self.assertEqual(self.served_by("ucp.test"), "ucp")

    # -- load balancing ---------------------------------------------------------------------

    def test_round_robin_alternates_between_two_backends(self):
        names = [self.served_by("rr.test") for _ in range(10)]
        self.assertEqual(sorted(set(names)), ["rr1", "rr2"], names)
        for a, b in zip(names, names[1:]):
            self.assertNotEqual(a, b, f"round robin must alternate: {names}")
        self.assertEqual(names.count("rr1"), 5, names)

    def test_least_request_avoids_the_busy_backend(self):
        # Warm up: both backends answer. Idle backends tie, and power-of-two-choices breaks a
        # tie at random, so 8 requests would all land on one backend 1 time in 128; 40 make
        # that 1 in 2^39.
        warm = {self.served_by("lr.test") for _ in range(40)}
        self.assertEqual(warm, {"lr1", "lr2"}, "least_request must use both idle backends")
        slow_result = {}

        def slow():
            try:
                slow_result["r"] = self.get("lr.test", "/delay/1500")
            except Exception as e:  # reported by the assertion below
                slow_result["e"] = e

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)  # the slow request is in flight on one backend
        quick = [self.served_by("lr.test") for _ in range(6)]
        t.join(10)
        self.assertNotIn("e", slow_result, f"slow request failed: {slow_result.get('e')}")
        status, hdrs, body = slow_result["r"]
        self.assertEqual(status, 200)
        busy = hdrs.get("x-whoami-name")
        self.assertIn(busy, ("lr1", "lr2"))
        self.assertNotIn(busy, quick,
                         f"with one request in flight on {busy}, least_request sent quick requests "
                         f"to it anyway: {quick}")

    def test_sticky_cookie_keeps_client_on_one_backend(self):
        status, hdrs, _ = self.get("sticky.test")
        self.assertEqual(status, 200)
        first = hdrs.get("x-whoami-name")
        set_cookie = hdrs.get("set-cookie")
        self.assertIsNotNone(set_cookie, "first response must set the sticky cookie")
        self.assertTrue(set_cookie.startswith("rmsticky="), set_cookie)
        cookie = set_cookie.split(";", 1)[0]
        seen = []
        for i in range(8):
            value = cookie if i % 2 == 0 else f"other=1; {cookie}; more=2"
            seen.append(self.served_by("sticky.test", headers={"Cookie": value}))
        self.assertEqual(set(seen), {first}, f"sticky requests went to {seen}, first was {first}")
        # Without the cookie the service still balances over both backends.
        free = {self.served_by("sticky.test") for _ in range(6)}
        self.assertEqual(free, {"st1", "st2"})

    # -- headers ----------------------------------------------------------------------------

    def test_forwarding_headers_reach_the_backend(self):
        c = harness.Client(IP, HTTP_PORT)
        try:
            client_ip = c.sock.getsockname()[0]
            r = c.request("GET", "/fwd", host="exact.test:8080",
                          headers={"X-Forwarded-For": "10.1.2.3"})
            self.assertEqual(r.status, 200)
            h = harness.parse_whoami(r.body)["headers"]
            xff = h.get("x-forwarded-for", [])
            self.assertEqual(len(xff), 1, f"one X-Forwarded-For expected, got {xff}")
            # The client is not in node.trusted_proxies: its X-Forwarded-For is replaced
            # (test_data_path.py covers a trusted proxy, whose value is appended to).
            self.assertEqual([p.strip() for p in xff[0].split(",")], [client_ip])
            self.assertEqual(h.get("x-forwarded-proto"), ["http"])
            self.assertIn(h.get("x-forwarded-host", [""])[0], ("exact.test:8080", "exact.test"))
            rid = h.get("x-request-id", [])
            self.assertEqual(len(rid), 1, f"a generated X-Request-Id expected, got {rid}")
            self.assertGreaterEqual(len(rid[0]), 8, rid)

            r2 = c.request("GET", "/fwd2", host="exact.test", headers={"X-Request-Id": "abc-123"})
            h2 = harness.parse_whoami(r2.body)["headers"]
            self.assertEqual(h2.get("x-request-id"), ["abc-123"], "an incoming X-Request-Id is kept")
            self.assertEqual(h2.get("x-forwarded-for"), [client_ip])

            r3 = c.request("GET", "/fwd3", host="exact.test")
            rid3 = harness.parse_whoami(r3.body)["headers"].get("x-request-id", [""])[0]
            self.assertNotEqual(rid3, rid[0], "generated request ids must differ per request")
        finally:
            c.close()

    def test_hop_by_hop_headers_are_removed(self):
        c = harness.Client(IP, HTTP_PORT)
        try:
            r = c.request("GET", "/hop", host="exact.test",
                          headers=[("Connection", "keep-alive, X-Secret"), ("X-Secret", "1"),
                                   ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive"),
                                   ("TE", "trailers"), ("X-Normal", "yes")])
            self.assertEqual(r.status, 200)
            h = harness.parse_whoami(r.body)["headers"]
            self.assertEqual(h.get("x-normal"), ["yes"], "end-to-end headers must pass")
            for name in ("x-secret", "keep-alive", "proxy-connection", "te"):
                self.assertNotIn(name, h, f"hop-by-hop header {name} reached the backend: {h}")
            for v in h.get("connection", []):
                self.assertNotIn("x-secret", v.lower())
            # The client connection stays usable (keep-alive honoured).
            r2 = c.request("GET", "/again", host="exact.test")
            self.assertEqual(r2.status, 200)
        finally:
            c.close()

    # -- admin ------------------------------------------------------------------------------

    def test_routes_api_lists_services_and_hosts(self):
        status, text = self.n.admin_get("/v1/routes")
        self.assertEqual(status, 200)
        table = json.loads(text)
        blob = json.dumps(table)
        for name in ("exact", "wild", "multi", "paths-root", "paths-api", "paths-apiv2", "ucp", "rr",
                     "lr", "sticky"):
            self.assertIn(f'"{name}"', blob, f"service {name} missing from /v1/routes")
        for host in ("exact.test", "one.test", "two.test", "paths.test", "ucp.test", "example.test"):
            self.assertIn(host, blob, f"host {host} missing from /v1/routes")
        for addr in (self.w["rr1"].addr, self.w["rr2"].addr):
            self.assertIn(addr, blob, f"endpoint {addr} missing from /v1/routes")


if __name__ == "__main__":
    harness.main()
