"""Data-path correctness against a misbehaving backend (scripted_backend.py).

A reverse proxy must never hand one client's bytes to another, never send a non-idempotent
request twice, never leave a client hanging when the backend gives up, and must frame its own
answers exactly. Each test here drives a real node with raw sockets; one proxy thread, so the
upstream pool is shared by every client of the test and reuse is deterministic.
"""
import os
import re
import select
import socket
import threading
import time
import unittest

import harness
from harness import read_all
from scripted_backend import ScriptedBackend

IP = "127.0.0.37"


def client_from(src_ip, port):
    s = socket.socket()
    s.bind((src_ip, 0))
    s.connect((IP, port))
    s.settimeout(10)
    return s


class DataPathTest(harness.ClassFixtures, harness.MeshTest):
    IP = IP

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.be = ScriptedBackend()
        cls.class_servers.append(cls.be)
        services = [
            {"name": "s", "labels": {"mesh.http": "s.test"}, "tasks": [cls.be.addr]},
            {"name": "a", "labels": {"mesh.http": "a.test"}, "tasks": [cls.be.addr]},
            {"name": "b", "labels": {"mesh.http": "b.test"}, "tasks": [cls.be.addr]},
            {"name": "dead", "labels": {"mesh.http": "dead.test"},
             "tasks": [f"127.0.0.1:{harness.free_port('127.0.0.1')}"]},
        ]
        # Scripts that fail on purpose must not eject the one endpoint every test shares.
        cfg = harness.node_config(IP, services, http_port=8080, node={"threads": 1},
                                  health={"max_failures": 100000})
        cls.n = cls.class_node(cfg)

    def fresh(self):
        return harness.Client(IP, 8080, timeout=5)

    def assert_clean_next_request(self, what):
        """The next client, on whatever pooled connection it draws, gets its own answer."""
        for _ in range(3):
            c = self.fresh()
            r = c.request("GET", "/ok", host="s.test")
            c.close()
            self.assertIsNone(r.header("x-forged"), f"after {what}: another client's bytes: {r.body!r}")
            self.assertEqual(r.status, 200, f"after {what}: {r.status} {r.body!r}")
            self.assertTrue(r.body.startswith(b"ok "), f"after {what}: {r.body!r}")

    # ---- 1. pooled connections are checked before reuse --------------------------------------

    def test_bytes_past_the_content_length_never_reach_the_next_client(self):
        c = self.fresh()
        r = c.request("GET", "/overflow", host="s.test")
        self.assertEqual((r.status, r.body), (200, b"ok"))
        c.close()
        self.assert_clean_next_request("a response with more bytes than its Content-Length")

    def test_bytes_sent_on_an_idle_pooled_connection_never_reach_the_next_client(self):
        c = self.fresh()
        self.assertEqual(c.request("GET", "/late?ms=100", host="s.test").status, 200)
        c.close()
        time.sleep(0.4)  # the forged response is now waiting on the idle connection
        self.assert_clean_next_request("bytes on an idle connection")

    def test_a_body_after_a_head_response_never_reaches_the_next_client(self):
        c = self.fresh()
        r = c.request("HEAD", "/head-body", host="s.test")
        self.assertEqual(r.status, 200)
        c.close()
        self.assert_clean_next_request("a body after HEAD")

    def test_bytes_after_a_204_never_reach_the_next_client(self):
        c = self.fresh()
        self.assertEqual(c.request("GET", "/nocontent-body", host="s.test").status, 204)
        c.close()
        self.assert_clean_next_request("bytes after a 204")

    def test_a_backend_408_on_an_idle_connection_is_not_a_response_to_the_next_request(self):
        c = self.fresh()
        self.assertEqual(c.request("GET", "/idle-408?ms=100", host="s.test").status, 200)
        c.close()
        time.sleep(0.4)
        self.assert_clean_next_request("a 408 on an idle connection")

    def pool_closed(self, reason):
        return self.n.metric("routemesh_proxy_upstream_pool_closed_total", reason=reason) or 0

    def test_an_idle_pooled_connection_that_receives_bytes_is_closed_at_once(self):
        # No request follows until the close is seen: only the pool's watch can have closed it.
        before = self.pool_closed("stray_bytes")
        c = self.fresh()
        self.assertEqual(c.request("GET", "/late?ms=300", host="s.test").status, 200)
        c.close()
        t0 = time.monotonic()
        harness.wait_until(lambda: self.pool_closed("stray_bytes") > before, timeout=3,
                           what="the pool closing the connection the late response arrived on")
        # 300 ms until the bytes, then at most one tick (100 ms) until /metrics shows the close.
        self.assertLess(time.monotonic() - t0, 1.5)
        self.assert_clean_next_request("bytes on a watched idle connection")

    def test_an_idle_pooled_connection_the_backend_closes_is_dropped_at_once(self):
        before = self.pool_closed("eof")
        c = self.fresh()
        self.assertEqual(c.request("GET", "/idle-close?ms=200", host="s.test").status, 200)
        c.close()
        harness.wait_until(lambda: self.pool_closed("eof") > before, timeout=3,
                           what="the pool dropping the connection the backend closed")
        self.assert_clean_next_request("a backend closing an idle connection")

    # ---- 2. non-idempotent requests are never sent twice --------------------------------------

    def test_a_post_that_the_backend_took_is_not_retried(self):
        c = self.fresh()
        self.assertEqual(c.request("GET", "/ok", host="s.test").status, 200)  # pools a connection
        r = c.request("POST", "/die", host="s.test", body=b"order=42")
        c.close()
        self.assertEqual(r.status, 502, r.body)
        time.sleep(0.2)
        n = self.be.count(lambda q: q.method == "POST" and q.body == b"order=42")
        self.assertEqual(n, 1, f"the backend received the POST {n} times")

    def test_an_idempotent_request_is_retried_on_a_reused_connection_that_died(self):
        c = self.fresh()
        self.assertEqual(c.request("GET", "/ok", host="s.test").status, 200)
        r = c.request("GET", "/die-once?id=get1", host="s.test")
        c.close()
        self.assertEqual(r.status, 200, r.body)

    def test_siblings_of_a_pooled_connection_that_died_are_dropped_and_counted(self):
        # Two requests at once leave two idle connections in the pool; the next one draws a
        # connection the backend closes before answering: the request is retried on a new one
        # and the other idle connection is dropped with it, counted as stale.
        before = self.pool_closed("stale")
        clients = [self.fresh() for _ in range(2)]
        results = []
        threads = [threading.Thread(target=lambda c=c: results.append(
            c.request("GET", "/slow?ms=300", host="s.test").status)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        for c in clients:
            c.close()
        self.assertEqual(results, [200, 200])
        c = self.fresh()
        r = c.request("GET", "/die-once?id=siblings", host="s.test")
        c.close()
        self.assertEqual(r.status, 200, r.body)
        harness.wait_until(lambda: self.pool_closed("stale") > before, timeout=3,
                           what="the stale sibling counted")

    def test_a_failed_connect_after_a_served_request_is_answered(self):
        # The second request on a client connection fails to connect: it gets its 502, whatever
        # the first request's exchange left behind.
        c = self.fresh()
        self.assertEqual(c.request("GET", "/ok", host="s.test").status, 200)
        r = c.request("POST", "/x", host="dead.test", body=b"a=1")
        c.close()
        self.assertEqual(r.status, 502, r)
        self.assertEqual(r.header("x-routemesh-error"), "upstream_connect_failed")

    # ---- 3. an upstream that closes mid-body closes the client at once -------------------------

    def test_upstream_closing_mid_body_closes_the_client_and_is_logged(self):
        before = self.n.metric("routemesh_proxy_upstream_errors_total", service="s") or 0
        c = self.fresh()
        self.assertEqual(c.request("GET", "/ok", host="s.test").status, 200)
        c.send(b"GET /mid-body HTTP/1.1\r\nHost: s.test\r\n\r\n")
        t0 = time.monotonic()
        data, closed = read_all(c.sock, 5.0)
        c.close()
        self.assertTrue(closed, "the client connection must be closed when the upstream is gone")
        self.assertLess(time.monotonic() - t0, 4.0)
        self.assertIn(b"Content-Length: 1000", data)
        self.assertTrue(data.endswith(b"0123456789"), data[-40:])
        harness.wait_until(
            lambda: (self.n.metric("routemesh_proxy_upstream_errors_total", service="s") or 0) > before,
            timeout=5, what="routemesh_proxy_upstream_errors_total{service=s} to grow")
        harness.wait_until(
            lambda: any('"path":"/mid-body"' in l and '"error":"upstream_' in l
                        for l in self.n.lines("out")),
            timeout=5, what="an access log line naming the upstream error")

    # ---- 4. the proxy's own answers are framed exactly ----------------------------------------

    def test_error_answers_to_head_have_no_body(self):
        c = self.fresh()
        c.send(b"HEAD / HTTP/1.1\r\nHost: unknown.test\r\n\r\n"
               b"GET /ok HTTP/1.1\r\nHost: s.test\r\n\r\n")
        first = c.read(head_request=True)
        self.assertEqual(first.status, 404)
        second = c.read()
        c.close()
        self.assertEqual(second.status, 200, "the pipelined response after a HEAD error is corrupted")
        self.assertTrue(second.body.startswith(b"ok "), second.body)

    def test_no_error_answer_is_written_into_a_started_response(self):
        # The backend answers after the head; the client's chunked body then turns out to be
        # malformed. The response has started: the client connection closes, no 400 is written
        # into the middle of the response.
        s = socket.create_connection((IP, 8080), timeout=5)
        s.sendall(b"POST /early-stream?ms=600 HTTP/1.1\r\nHost: s.test\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        time.sleep(0.3)  # the head and the first body bytes are on their way to the client
        s.sendall(b"zz\r\n")  # not a chunk size
        data, closed = read_all(s, 3.0)
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:80])
        self.assertEqual(data.count(b"HTTP/1."), 1, f"a second status line inside the response: {data!r}")
        self.assertTrue(closed)

    # ---- 5. absolute-form and Host syntax ------------------------------------------------------

    def test_absolute_form_forwards_the_uri_authority_as_host(self):
        c = self.fresh()
        c.send(b"GET http://a.test/echo HTTP/1.1\r\nHost: b.test\r\n\r\n")
        r = c.read()
        c.close()
        self.assertEqual(r.status, 200, r.body)
        head = r.body.decode("latin-1").lower()
        self.assertRegex(head, r"\nhost: a\.test\r\n", head)
        self.assertNotIn("b.test", head, "the client's Host header must not reach the backend")

    def test_host_values_that_are_not_host_port_are_rejected(self):
        for bad in (b"a.test:@evil.example", b"user@a.test", b"a.test/x", b"a.test:abc", b"a.test:",
                    b"a.test:99999", b"a.test?x", b"a test"):
            data, _ = harness.exchange(IP, 8080, b"GET /ok HTTP/1.1\r\nHost: " + bad + b"\r\n\r\n")
            self.assertTrue(data.startswith(b"HTTP/1.1 400"), f"Host: {bad!r} -> {data[:60]!r}")
        data, _ = harness.exchange(IP, 8080, b"GET /ok HTTP/1.1\r\nHost: s.test:8080\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:60])

    # ---- 8. Transfer-Encoding and Upgrade ------------------------------------------------------

    def test_only_chunked_is_accepted_as_transfer_encoding(self):
        for te in (b"gzip, chunked", b",chunked", b"gzip\r\nTransfer-Encoding: chunked"):
            data, _ = harness.exchange(
                IP, 8080, b"POST /ok HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: " + te +
                b"\r\n\r\n0\r\n\r\n")
            self.assertTrue(data.startswith(b"HTTP/1.1 501"), f"TE {te!r} -> {data[:60]!r}")
        # chunked twice, or a trailing empty element: a framing error (400) or 501, never 200.
        for te in (b"chunked,", b"chunked, chunked", b"chunked\r\nTransfer-Encoding: chunked"):
            data, _ = harness.exchange(
                IP, 8080, b"POST /ok HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: " + te +
                b"\r\n\r\n0\r\n\r\n")
            self.assertRegex(data[:12], rb"HTTP/1.1 (400|501)", f"TE {te!r} -> {data[:60]!r}")

    def test_chunked_is_forwarded_as_one_canonical_field(self):
        c = self.fresh()
        c.send(b"POST /echo HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: Chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\n\r\n")
        r = c.read()
        c.close()
        self.assertEqual(r.status, 200, r.body)
        head = r.body.decode("latin-1").split("\r\n\r\n")[0].lower()
        self.assertEqual(len(re.findall(r"\ntransfer-encoding:", head)), 1, head)
        self.assertIn("\ntransfer-encoding: chunked", head)

    def test_h2c_upgrade_is_never_forwarded(self):
        c = self.fresh()
        r = c.request("GET", "/echo", host="s.test",
                      headers={"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c",
                               "HTTP2-Settings": "AAMAAABkAAQAAP__"})
        c.close()
        self.assertEqual(r.status, 200, r.body)
        head = r.body.decode("latin-1").lower()
        self.assertNotIn("h2c", head)
        self.assertNotIn("upgrade", head)

    def test_a_101_to_another_protocol_than_asked_is_a_502(self):
        c = self.fresh()
        r = c.request("GET", "/switch?proto=h2c", host="s.test",
                      headers={"Connection": "Upgrade", "Upgrade": "websocket",
                               "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        c.close()
        self.assertEqual(r.status, 502, r)

    def test_a_tunnel_whose_backend_closes_with_its_101_ends_at_once(self):
        # The 101, the first tunnelled bytes and the backend's FIN arrive together: the
        # proxy's read of the head takes them all, and the FIN raises no readiness edge of its
        # own afterwards. The tunnel must still pass the EOF on at once, not at its idle timeout.
        s = socket.create_connection((IP, 8080), timeout=5)
        self.addCleanup(s.close)
        s.sendall(b"GET /switch-bye?proto=websocket HTTP/1.1\r\nHost: s.test\r\n"
                  b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        data = b""
        s.settimeout(3)
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        except socket.timeout:
            self.fail(f"no EOF within 3 s of the backend closing the tunnel; got {data!r}")
        self.assertIn(b" 101 ", data.split(b"\r\n", 1)[0], data)
        self.assertTrue(data.endswith(b"bye"), data)

    def test_every_upgrade_token_is_checked(self):
        c = self.fresh()
        r = c.request("GET", "/echo", host="s.test",
                      headers=[("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Upgrade", "h2c")])
        c.close()
        head = r.body.decode("latin-1").lower() if r.status == 200 else ""
        self.assertNotIn("h2c", head, "an h2c token in a second Upgrade field was forwarded")

    # ---- 9. forwarding headers from untrusted peers --------------------------------------------

    def test_forwarding_headers_from_an_untrusted_peer_are_replaced(self):
        s = client_from("127.0.0.99", 8080)
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: s.test\r\nX-Forwarded-For: 6.6.6.6\r\n"
                  b"Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Port: 1\r\n\r\n")
        r = harness.read_response(s.makefile("rb"))
        s.close()
        head = r.body.decode("latin-1").lower()
        self.assertNotIn("6.6.6.6", head)
        self.assertRegex(head, r"\nx-forwarded-for: 127\.0\.0\.99\r\n")
        self.assertRegex(head, r"\nx-forwarded-port: 8080\r\n")
        self.assertNotIn("\nforwarded:", head)

    # ---- 12. smaller ---------------------------------------------------------------------------

    def test_http10_keep_alive_is_advertised(self):
        s = socket.create_connection((IP, 8080), timeout=5)
        s.sendall(b"GET /ok HTTP/1.0\r\nHost: s.test\r\nConnection: keep-alive\r\n\r\n")
        f = s.makefile("rb")
        r = harness.read_response(f)
        self.assertEqual(r.status, 200)
        self.assertEqual((r.header("connection") or "").lower(), "keep-alive", r.headers)
        s.sendall(b"GET /ok HTTP/1.0\r\nHost: s.test\r\nConnection: keep-alive\r\n\r\n")
        self.assertEqual(harness.read_response(f).status, 200)
        s.close()


class TrustedProxiesTest(harness.MeshTest):
    IP = "127.0.0.42"

    def test_forwarding_headers_from_a_trusted_proxy_are_appended(self):
        be = ScriptedBackend()
        self.addCleanup(be.close)
        services = [{"name": "s", "labels": {"mesh.http": "s.test"}, "tasks": [be.addr]}]
        n = self.node(harness.node_config(self.IP, services, http_port=8080,
                                          node={"threads": 1, "trusted_proxies": ["127.0.0.98/32"]}))
        s = socket.socket()
        s.bind(("127.0.0.98", 0))
        s.connect((self.IP, n.http_port))
        s.settimeout(5)
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: s.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
        r = harness.read_response(s.makefile("rb"))
        s.close()
        head = r.body.decode("latin-1").lower()
        self.assertRegex(head, r"\nx-forwarded-for: 6\.6\.6\.6, 127\.0\.0\.98\r\n")
        # An untrusted peer on the same node: replaced.
        s = client_from_ip("127.0.0.97", self.IP, n.http_port)
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: s.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
        r = harness.read_response(s.makefile("rb"))
        s.close()
        self.assertNotIn("6.6.6.6", r.body.decode("latin-1"))


def client_from_ip(src, ip, port):
    s = socket.socket()
    s.bind((src, 0))
    s.connect((ip, port))
    s.settimeout(5)
    return s


class TimersTest(harness.MeshTest):
    """7. Each timer starts when its step starts; 10. SIGHUP applies them."""
    IP = "127.0.0.43"

    def start(self, port, **timeouts):
        be = ScriptedBackend()
        self.addCleanup(be.close)
        services = [{"name": "s", "labels": {"mesh.http": "s.test"}, "tasks": [be.addr]}]
        cfg = harness.node_config(self.IP, services, http_port=port, node={"threads": 1},
                                  timeouts=timeouts)
        return self.node(cfg), cfg

    def test_a_slow_upload_does_not_count_against_the_backend(self):
        n, _ = self.start(8080, upstream_response_ms=1000)
        s = socket.create_connection((self.IP, n.http_port), timeout=10)
        s.sendall(b"POST /ok HTTP/1.1\r\nHost: s.test\r\nContent-Length: 10\r\n\r\n12345")
        time.sleep(1.5)
        s.sendall(b"67890")
        r = harness.read_response(s.makefile("rb"))
        s.close()
        self.assertEqual(r.status, 200, "the response timer must start when the request is sent")

    def test_sighup_applies_new_timeouts(self):
        n, cfg = self.start(8081, upstream_response_ms=5000)
        self.assertEqual(harness.http(self.IP, n.http_port, "/slow?ms=800", host="s.test")[0], 200)
        cfg["timeouts"]["upstream_response_ms"] = 300
        n.reload(cfg)
        self.assertEqual(harness.http(self.IP, n.http_port, "/slow?ms=800", host="s.test")[0], 504)

    def test_sighup_names_settings_that_need_a_restart(self):
        n, cfg = self.start(8082)
        cfg["node"]["threads"] = 2
        n.reload(cfg)
        harness.wait_until(lambda: any("restart" in l and "node.threads" in l for l in n.lines()),
                           timeout=5, what="a log line naming node.threads as needing a restart")
        self.assertGreaterEqual(n.metric("routemesh_config_reload_restart_required_total") or 0, 1)


class BodyLimitTest(harness.MeshTest):
    """11. limits.max_request_body_bytes: 413 before the body is forwarded."""
    IP = "127.0.0.45"

    def test_a_request_body_over_the_limit_gets_413(self):
        be = ScriptedBackend()
        self.addCleanup(be.close)
        services = [{"name": "s", "labels": {"mesh.http": "s.test"}, "tasks": [be.addr]}]
        n = self.node(harness.node_config(self.IP, services, http_port=8080, node={"threads": 1},
                                          limits={"max_request_body_bytes": 1000}))
        data, closed = harness.exchange(
            self.IP, n.http_port,
            b"POST /ok HTTP/1.1\r\nHost: s.test\r\nContent-Length: 1001\r\n\r\n" + b"x" * 1001)
        self.assertTrue(data.startswith(b"HTTP/1.1 413"), data[:60])
        self.assertTrue(closed)
        self.assertEqual(be.count(lambda q: q.method == "POST"), 0, "the body must not be forwarded")
        c = harness.Client(self.IP, n.http_port)
        self.assertEqual(c.request("POST", "/ok", host="s.test", body=b"y" * 1000).status, 200)
        c.close()


class BodyDeadlineTest(harness.MeshTest):
    """Request bodies: a total deadline (timeouts.request_body_ms) and a minimum rate
    (body_min_rate_bps after body_min_rate_grace_ms), both off by default."""
    IP = "127.0.0.147"

    def start(self, port, **timeouts):
        be = ScriptedBackend()
        self.addCleanup(be.close)
        services = [{"name": "s", "labels": {"mesh.http": "s.test"}, "tasks": [be.addr]}]
        cfg = harness.node_config(self.IP, services, http_port=port, node={"threads": 1},
                                  timeouts=timeouts)
        return self.node(cfg), cfg

    def trickle(self, port, chunk=10, every=0.3, total=100000, give_up=10.0):
        """A POST whose body comes `chunk` bytes every `every` seconds. Returns the response
        and the seconds from the head to the answer."""
        s = socket.create_connection((self.IP, port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"POST /ok HTTP/1.1\r\nHost: s.test\r\nContent-Length: %d\r\n\r\n" % total)
        t0 = time.monotonic()
        sent = 0
        while sent < total and time.monotonic() - t0 < give_up:
            s.sendall(b"x" * chunk)
            sent += chunk
            readable, _, _ = select.select([s], [], [], every)
            if readable:
                break
        r = harness.read_response(s.makefile("rb"))
        return r, time.monotonic() - t0

    def test_a_trickled_body_gets_408_within_request_body_ms_applied_on_sighup(self):
        n, cfg = self.start(8080)
        # Off by default: a body that is slow but steady goes through.
        r, _ = self.trickle(n.http_port, chunk=10, every=0.1, total=100)
        self.assertEqual(r.status, 200, r)
        cfg["timeouts"]["request_body_ms"] = 1000
        n.reload(cfg)
        before = n.metric("routemesh_proxy_requests_total", service="s", code_class="4xx") or 0
        r, took = self.trickle(n.http_port)
        self.assertEqual(r.status, 408, r)
        self.assertEqual(r.header("x-routemesh-error"), "request_body_timeout", r.headers)
        self.assertEqual(r.header("connection"), "close", r.headers)
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 2.0, "the answer must come at the deadline (plus a tick)")
        harness.wait_until(
            lambda: (n.metric("routemesh_proxy_requests_total", service="s", code_class="4xx")
                     or 0) > before, timeout=3, what="the 408 counted")
        self.assertGreaterEqual(
            n.metric("routemesh_proxy_bad_requests_total", reason="request body timeout") or 0, 1)
        harness.wait_until(lambda: any("request body timeout" in l for l in n.lines()),
                           timeout=3, what="a log line about the cut body")
        # A normal upload still passes.
        c = harness.Client(self.IP, n.http_port)
        self.assertEqual(c.request("POST", "/ok", host="s.test", body=b"y" * (1 << 20)).status,
                         200)
        c.close()

    def test_a_body_under_the_minimum_rate_is_cut_after_the_grace(self):
        n, _ = self.start(8081, body_min_rate_bps=1000, body_min_rate_grace_ms=500)
        r, took = self.trickle(n.http_port, chunk=10, every=0.2)
        self.assertEqual(r.status, 408, r)
        self.assertEqual(r.header("x-routemesh-error"), "request_body_timeout", r.headers)
        self.assertGreaterEqual(took, 0.4)
        self.assertLess(took, 1.5)
        self.assertGreaterEqual(
            n.metric("routemesh_proxy_bad_requests_total", reason="request body too slow") or 0, 1)
        # A body at a good rate passes, in pieces over more than the grace.
        s = socket.create_connection((self.IP, n.http_port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"POST /ok HTTP/1.1\r\nHost: s.test\r\nContent-Length: 200000\r\n\r\n")
        for _ in range(10):
            s.sendall(b"z" * 20000)
            time.sleep(0.1)
        r = harness.read_response(s.makefile("rb"))
        self.assertEqual(r.status, 200, r)


class LocalResourcesTest(harness.MeshTest):
    """6. Running out of descriptors is not the endpoint's fault."""
    IP = "127.0.0.44"

    @unittest.skipIf(os.environ.get("RM_SANITIZED") == "1",
                     "GCC 12's sanitizer runtime checks memory with pipe(2); at EMFILE that fails "
                     "and UBSan reports a false invalid-vptr error and stops the node")
    def test_descriptor_exhaustion_answers_503_and_ejects_nobody(self):
        be = ScriptedBackend()
        self.addCleanup(be.close)
        services = [{"name": "s", "labels": {"mesh.http": "s.test"}, "tasks": [be.addr]}]
        cfg = harness.node_config(self.IP, services, http_port=8080, node={"threads": 1},
                                  health={"max_failures": 1, "base_ejection_ms": 30000,
                                          "max_ejection_ms": 30000})
        n = self.node(cfg, prefix=("prlimit", "--nofile=64:64"))
        first = harness.Client(self.IP, n.http_port)
        extra = []
        try:
            # Fill the node's descriptor table: it accepts until accept() fails with EMFILE.
            for _ in range(100):
                extra.append(socket.create_connection((self.IP, n.http_port), timeout=5))
            harness.wait_until(lambda: any("accept on port" in l for l in n.lines()),
                               timeout=10, what="the node to run out of descriptors")
            r = first.request("GET", "/ok", host="s.test")
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.header("x-routemesh-error"), "local_resources", r.headers)
        finally:
            for s in extra:
                s.close()
        time.sleep(0.3)
        r = first.request("GET", "/ok", host="s.test")
        self.assertEqual(r.status, 200, "the endpoint must not have been ejected for our own EMFILE")
        first.close()
        self.assertGreaterEqual(n.metric("routemesh_proxy_local_resource_errors_total") or 0, 1)
        self.assertEqual(n.metric("routemesh_proxy_endpoint_ejections_total") or 0, 0)


if __name__ == "__main__":
    harness.main()
