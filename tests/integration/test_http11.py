"""HTTP/1.1 proxying: upstream keep-alive pooling, chunked bodies both ways, pipelining,
Expect: 100-continue, HEAD, 100 MiB bodies streamed in constant memory, WebSocket tunnel."""
import base64
import hashlib
import os
import random
import socket
import struct
import threading
import time

import harness

IP = "127.0.0.23"
HTTP_PORT = 8080
HOST = "web.test"
MIB = 1 << 20


class Http11Test(harness.ClassFixtures, harness.MeshTest):
    IP = IP

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.w = cls.class_whoami("web", threads=2)
        cls.sink = harness.SlowSinkBackend(rate=80 * MIB)
        cls.class_servers.append(cls.sink)
        services = [{"name": "web", "labels": {"mesh.http": HOST}, "tasks": [cls.w.addr]},
                    {"name": "sink", "labels": {"mesh.http": "sink.test"}, "tasks": [cls.sink.addr]}]
        cfg = harness.node_config(IP, services, http_port=HTTP_PORT,
                                  node={"access_log": {"enabled": False, "format": "json", "path": "-"}})
        cls.n = cls.class_node(cfg)

    def client(self):
        c = harness.Client(IP, HTTP_PORT, timeout=20)
        self.addCleanup(c.close)
        return c

    # -- connection reuse -------------------------------------------------------------------

    def test_upstream_connections_are_reused_over_keep_alive(self):
        conns = set()
        for _ in range(5):
            c = self.client()
            for _ in range(20):
                r = c.request("GET", "/ka", host=HOST)
                self.assertEqual(r.status, 200)
                conn = r.header("x-whoami-conn")
                self.assertIsNotNone(conn, "whoami must send X-Whoami-Conn")
                conns.add(conn)
            c.close()
        self.assertLessEqual(len(conns), 10,
                             f"100 requests used {len(conns)} upstream connections: no pooling")

    def test_upstream_connections_are_reused_across_client_connections(self):
        conns = set()
        for _ in range(30):
            status, hdrs, _ = harness.http(IP, HTTP_PORT, "/new", host=HOST)
            self.assertEqual(status, 200)
            conns.add(hdrs.get("x-whoami-conn"))
        self.assertLessEqual(len(conns), 6,
                             f"30 short client connections used {len(conns)} upstream connections")

    # -- chunked ----------------------------------------------------------------------------

    def test_chunked_upload_is_forwarded_byte_exact(self):
        rnd = random.Random(7)
        payload = os.urandom(1_000_003)
        body = bytearray()
        pos = 0
        while pos < len(payload):
            n = min(rnd.randint(1, 70000), len(payload) - pos)
            body += b"%x\r\n" % n + payload[pos:pos + n] + b"\r\n"
            pos += n
        body += b"0\r\n\r\n"
        c = self.client()
        r = c.request("POST", "/count", host=HOST, headers={"Transfer-Encoding": "chunked"},
                      body=bytes(body))
        self.assertEqual(r.status, 200, r.body[:200])
        self.assertIn(b"bytes: 1000003", r.body)
        # The connection is still in sync: a second request works.
        r2 = c.request("POST", "/echo", host=HOST, headers={"Transfer-Encoding": "chunked"},
                       body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        self.assertEqual(r2.status, 200)
        self.assertEqual(r2.body, b"hello world")

    def test_chunked_download_matches_the_backend_byte_for_byte(self):
        n = 300_001
        direct = harness.Client("127.0.0.1", self.w.port)
        self.addCleanup(direct.close)
        want = direct.request("GET", f"/chunked/{n}", host=HOST)
        self.assertEqual(len(want.body), n, "whoami /chunked/N must send N bytes")
        c = self.client()
        r = c.request("GET", f"/chunked/{n}", host=HOST)
        self.assertEqual(r.status, 200)
        self.assertIn("chunked", (r.header("transfer-encoding") or "").lower(),
                      f"a chunked response without length stays chunked: {r.headers}")
        self.assertEqual(len(r.body), n)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(want.body).hexdigest())
        r2 = c.request("GET", "/after", host=HOST)
        self.assertEqual(r2.status, 200)

    def test_echo_round_trips_a_content_length_body(self):
        payload = os.urandom(512 * 1024)
        c = self.client()
        r = c.request("POST", "/echo", host=HOST, body=payload)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, payload)

    # -- pipelining -------------------------------------------------------------------------

    def test_pipelined_requests_are_answered_in_order(self):
        c = self.client()
        paths = ["/first", "/second?x=1", "/third"]
        c.send(b"".join(f"GET {p} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode() for p in paths))
        for p in paths:
            r = c.read()
            self.assertEqual(r.status, 200)
            self.assertEqual(harness.parse_whoami(r.body)["request_line"], f"GET {p} HTTP/1.1",
                             f"responses out of order or mixed: {r.body[:200]!r}")
        # Mixed pipeline with bodies: POST /count then GET.
        c.send(f"POST /count HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 10\r\n\r\n0123456789"
               f"GET /fourth HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        r = c.read()
        self.assertIn(b"bytes: 10", r.body)
        r = c.read()
        self.assertEqual(harness.parse_whoami(r.body)["request_line"], "GET /fourth HTTP/1.1")

    # -- Expect / HEAD ----------------------------------------------------------------------

    def test_expect_100_continue_upload(self):
        c = self.client()
        body = b"x" * 100_000
        c.send(f"POST /count HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
               f"Expect: 100-continue\r\n\r\n".encode())
        c.sock.settimeout(3)
        interim = c.read()
        self.assertEqual(interim.status, 100, "expected 100 Continue before the body was sent")
        c.sock.settimeout(20)
        c.send(body)
        r = c.read()
        self.assertEqual(r.status, 200)
        self.assertIn(b"bytes: 100000", r.body)
        r2 = c.request("GET", "/after-expect", host=HOST)
        self.assertEqual(r2.status, 200)

    def test_head_has_headers_but_no_body(self):
        c = self.client()
        r = c.request("HEAD", "/bytes/1000", host=HOST)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-length"), "1000")
        # If any body byte had been sent, this response would be garbage.
        r2 = c.request("GET", "/bytes/10", host=HOST)
        self.assertEqual(r2.status, 200)
        self.assertEqual(len(r2.body), 10)

    # -- big bodies in constant memory ------------------------------------------------------

    def _sample_rss(self, stop, samples):
        while not stop.is_set():
            try:
                samples.append(self.n.rss_kib())
            except OSError:
                return
            time.sleep(0.005)

    def _baseline_rss(self):
        c = self.client()
        for _ in range(5):
            c.request("POST", "/count", host=HOST, body=b"y" * (256 * 1024))
        time.sleep(0.2)
        return self.n.rss_kib()

    def test_100_mib_upload_streams_in_constant_memory(self):
        # The backend reads at 80 MiB/s while the client sends as fast as it can: a proxy that
        # buffered the body would grow by tens of MiB.
        total = 100 * MIB
        base = self._baseline_rss()
        stop, samples = threading.Event(), []
        sampler = threading.Thread(target=self._sample_rss, args=(stop, samples))
        sampler.start()
        try:
            c = self.client()
            c.send(f"POST /upload HTTP/1.1\r\nHost: sink.test\r\nContent-Length: {total}\r\n\r\n".encode())
            block = os.urandom(256 * 1024)
            sent = 0
            while sent < total:
                c.send(block)
                sent += len(block)
            r = c.read()
        finally:
            stop.set()
            sampler.join()
        self.assertEqual(r.status, 200)
        self.assertIn(f"bytes: {total}".encode(), r.body)
        peak = max(samples + [base])
        print(f"[rss base={base} KiB peak={peak} KiB samples={len(samples)}]", end=" ", flush=True)
        self.assertGreater(len(samples), 20, "too few RSS samples")
        self.assertLess(peak - base, 32 * 1024,
                        f"node RSS grew from {base} KiB to {peak} KiB during a 100 MiB upload")

    def test_100_mib_upload_to_whoami_is_counted_exactly(self):
        total = 100 * MIB
        c = self.client()
        c.send(f"POST /count HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {total}\r\n\r\n".encode())
        block = os.urandom(1 * MIB)
        for _ in range(100):
            c.send(block)
        r = c.read()
        self.assertEqual(r.status, 200)
        self.assertIn(f"bytes: {total}".encode(), r.body)

    def test_100_mib_download_streams_in_constant_memory(self):
        # The client reads at most ~80 MiB/s while the backend writes as fast as it can.
        total = 100 * MIB
        base = self._baseline_rss()
        stop, samples = threading.Event(), []
        sampler = threading.Thread(target=self._sample_rss, args=(stop, samples))
        sampler.start()
        got = [0]
        t0 = time.monotonic()

        def sink(b):
            got[0] += len(b)
            ahead = got[0] / (80 * MIB) - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)

        try:
            c = self.client()
            r = c.request("GET", f"/bytes/{total}", host=HOST, sink=sink)
        finally:
            stop.set()
            sampler.join()
        self.assertEqual(r.status, 200)
        self.assertEqual(got[0], total)
        peak = max(samples + [base])
        print(f"[rss base={base} KiB peak={peak} KiB samples={len(samples)}]", end=" ", flush=True)
        self.assertGreater(len(samples), 20, "too few RSS samples")
        self.assertLess(peak - base, 32 * 1024,
                        f"node RSS grew from {base} KiB to {peak} KiB during a 100 MiB download")

    # -- WebSocket --------------------------------------------------------------------------

    @staticmethod
    def ws_frame(opcode, payload, mask=True):
        head = bytes([0x80 | opcode])
        n = len(payload)
        m = 0x80 if mask else 0
        if n < 126:
            head += bytes([m | n])
        elif n < 65536:
            head += bytes([m | 126]) + struct.pack("!H", n)
        else:
            head += bytes([m | 127]) + struct.pack("!Q", n)
        if not mask:
            return head + payload
        key = os.urandom(4)
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return head + key + masked

    @staticmethod
    def ws_read(f):
        b0, b1 = f.read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", f.read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", f.read(8))[0]
        key = f.read(4) if b1 & 0x80 else None
        payload = f.read(n)
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return b0 & 0x0F, payload

    def test_websocket_echo_through_the_proxy(self):
        c = self.client()
        key = base64.b64encode(os.urandom(16)).decode()
        c.send(f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        r = c.read()
        self.assertEqual(r.status, 101, f"upgrade failed: {r.status} {r.body[:200]!r}")
        self.assertEqual((r.header("upgrade") or "").lower(), "websocket")
        self.assertIn("upgrade", (r.header("connection") or "").lower())
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.assertEqual(r.header("sec-websocket-accept"), accept)

        c.send(self.ws_frame(0x1, b"hello routemesh"))
        self.assertEqual(self.ws_read(c.f), (0x1, b"hello routemesh"))
        big = os.urandom(70_000)
        c.send(self.ws_frame(0x2, big))
        op, data = self.ws_read(c.f)
        self.assertEqual(op, 0x2)
        self.assertEqual(data, big)
        c.send(self.ws_frame(0x8, struct.pack("!H", 1000)))
        op, _ = self.ws_read(c.f)
        self.assertEqual(op, 0x8, "close frame expected")
        self.assertTrue(c.at_eof(5), "connection must close after the WebSocket close handshake")


class TimeoutsTest(harness.ClassFixtures, harness.MeshTest):
    """Keep-alive lifetimes on both sides, backend-closed connections, HTTP/1.0, Via."""
    IP = IP
    PORT = HTTP_PORT + 1

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.w = cls.class_whoami("web2", threads=2)
        services = [{"name": "web", "labels": {"mesh.http": HOST}, "tasks": [cls.w.addr]}]
        cfg = harness.node_config(IP, services, http_port=cls.PORT,
                                  node={"via": True, "threads": 1},
                                  timeouts={"idle_ms": 400, "upstream_idle_ms": 500})
        cls.n = cls.class_node(cfg)

    def client(self):
        c = harness.Client(IP, self.PORT, timeout=10)
        self.addCleanup(c.close)
        return c

    def test_idle_keep_alive_connection_is_closed_after_idle_ms(self):
        c = self.client()
        self.assertEqual(c.request("GET", "/", host=HOST).status, 200)
        t0 = time.monotonic()
        self.assertTrue(c.at_eof(3), "an idle keep-alive connection must be closed after idle_ms")
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)

    def test_active_keep_alive_connection_stays_open(self):
        c = self.client()
        for i in range(6):  # 6 x 200 ms > idle_ms, but never idle that long
            r = c.request("GET", f"/active{i}", host=HOST)
            self.assertEqual(r.status, 200)
            time.sleep(0.2)

    def test_pooled_upstream_connection_expires_after_upstream_idle_ms(self):
        c = self.client()
        first = c.request("GET", "/p1", host=HOST).header("x-whoami-conn")
        self.assertEqual(c.request("GET", "/p2", host=HOST).header("x-whoami-conn"), first,
                         "back-to-back requests reuse the pooled upstream connection")
        c.close()
        time.sleep(0.9)  # > upstream_idle_ms
        status, hdrs, _ = harness.http(IP, self.PORT, "/p3", host=HOST)
        self.assertEqual(status, 200)
        self.assertNotEqual(hdrs.get("x-whoami-conn"), first,
                            "a pooled connection idle longer than upstream_idle_ms must not be reused")

    def test_connection_closed_by_backend_is_not_reused(self):
        c = self.client()
        r = c.request("GET", "/close", host=HOST)
        self.assertEqual(r.status, 200)
        closed_conn = r.header("x-whoami-conn")
        for i in range(10):
            r = c.request("GET", f"/after-close{i}", host=HOST)
            self.assertEqual(r.status, 200, f"request {i} after the backend closed: {r.status}")
            self.assertNotEqual(r.header("x-whoami-conn"), closed_conn)

    def test_http10_client_without_keep_alive_gets_close(self):
        data, closed = harness.exchange(IP, self.PORT, f"GET /old HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
        self.assertEqual(harness.statuses(data), [200], data[:200])
        self.assertTrue(closed, "an HTTP/1.0 request without keep-alive ends the connection")
        self.assertNotIn(b"transfer-encoding: chunked", data.lower(), "no chunked coding to 1.0")

    def test_http10_client_chunked_upstream_response_is_delimited_for_it(self):
        n = 50_000
        data, closed = harness.exchange(IP, self.PORT,
                                        f"GET /chunked/{n} HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode(),
                                        timeout=5)
        self.assertEqual(harness.statuses(data), [200], data[:200])
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertNotIn(b"transfer-encoding: chunked", head.lower(),
                         "an HTTP/1.0 client cannot read chunked coding (RFC 9112 §7.1)")
        self.assertEqual(len(body), n)

    def test_via_header_added_when_enabled(self):
        c = self.client()
        r = c.request("GET", "/via", host=HOST)
        seen = harness.parse_whoami(r.body)["headers"].get("via", [])
        self.assertEqual(len(seen), 1, f"backend must see one Via header: {seen}")
        self.assertTrue(seen[0].startswith("1.1 "), seen)
        self.assertTrue((r.header("via") or "").startswith("1.1 "), r.headers)


if __name__ == "__main__":
    harness.main()
