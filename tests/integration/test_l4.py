"""Layer 4: a published port without an HTTP label is spliced to a task. The backend is a TCP echo
server written here; half-close must propagate both ways, bytes arrive exact, L4 metrics count,
and a dead backend closes the client connection."""
import hashlib
import os
import socket
import threading
import time

import harness

IP = "127.0.0.27"
HTTP_PORT = 8080
ECHO_PORT = 9000
DEAD_PORT = 9001
IDLE_PORT = 9002
BOUND_PORT = 9003
BOUND_IP = "127.0.0.75"  # a published port bound to an address of its own, not the node's


def recv_all(s, timeout=10.0):
    """Reads until EOF. Returns (bytes, how) with how in {"eof", "reset", "timeout"}."""
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), "timeout"
        s.settimeout(left)
        try:
            b = s.recv(1 << 16)
        except socket.timeout:
            return b"".join(chunks), "timeout"
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        if not b:
            return b"".join(chunks), "eof"
        chunks.append(b)


class L4Test(harness.ClassFixtures, harness.MeshTest):
    IP = IP

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.echo = harness.TcpEchoServer()
        cls.idle_echo = harness.TcpEchoServer()
        cls.class_servers += [cls.echo, cls.idle_echo]
        dead = harness.free_port("127.0.0.1")
        services = [
            {"name": "echo", "published": [f"{ECHO_PORT}:{cls.echo.port}/tcp"], "tasks": ["127.0.0.1"]},
            {"name": "dead", "published": [f"{DEAD_PORT}:{dead}/tcp"], "tasks": ["127.0.0.1"]},
            {"name": "idle", "published": [f"{IDLE_PORT}:{cls.idle_echo.port}/tcp"],
             "tasks": [cls.idle_echo.addr]},
            {"name": "bound", "published": [f"{BOUND_IP}:{BOUND_PORT}:{cls.echo.port}/tcp"],
             "tasks": ["127.0.0.1"]},
        ]
        cfg = harness.node_config(IP, services, http_port=HTTP_PORT, timeouts={"l4_idle_ms": 1000})
        cls.n = cls.class_node(cfg)
        ports = cls.n.wait_line(r"ready: .* ports=(\S+)").group(1)
        for p in (ECHO_PORT, DEAD_PORT, IDLE_PORT, BOUND_PORT):
            assert str(p) in ports.split(","), f"L4 port {p} not listening: ports={ports}"

    def connect(self, port=ECHO_PORT):
        s = socket.create_connection((IP, port), timeout=10)
        self.addCleanup(s.close)
        return s

    def test_client_half_close_reaches_backend_and_reply_still_flows(self):
        s = self.connect()
        s.sendall(b"hello over l4")
        s.shutdown(socket.SHUT_WR)
        data, how = recv_all(s)
        self.assertEqual(data, b"hello over l4BYE",
                         "echo then BYE (sent by the backend after it saw our EOF) expected")
        self.assertEqual(how, "eof", "the backend's close must reach the client as EOF")

    def test_backend_half_close_reaches_client_and_client_can_still_send(self):
        s = self.connect()
        s.sendall(b"HALF")
        data, how = recv_all(s, timeout=5)
        self.assertEqual((data, how), (b"HALF-OK", "eof"),
                         "the backend shut its write side: the client must see EOF")
        extra = os.urandom(100_000)
        s.sendall(extra)
        s.shutdown(socket.SHUT_WR)
        idx_total = 4 + len(extra)
        harness.wait_until(lambda: idx_total in self.echo.received, timeout=5,
                           what=f"backend to receive {idx_total} bytes after its half-close")

    def test_8_mib_round_trip_is_byte_exact(self):
        payload = os.urandom(8 << 20)
        s = self.connect()
        result = {}

        def reader():
            result["data"], result["how"] = recv_all(s, timeout=30)

        t = threading.Thread(target=reader)
        t.start()
        view = memoryview(payload)
        for i in range(0, len(payload), 1 << 16):
            s.sendall(view[i:i + (1 << 16)])
        s.shutdown(socket.SHUT_WR)
        t.join(40)
        data = result.get("data", b"")
        self.assertEqual(len(data), len(payload) + 3, f"got {len(data)} bytes ({result.get('how')})")
        self.assertEqual(hashlib.sha256(data[:-3]).hexdigest(), hashlib.sha256(payload).hexdigest())
        self.assertEqual(data[-3:], b"BYE")
        self.assertEqual(result["how"], "eof")

    def test_ping_pong_across_the_copy_buffers_sizes_stays_exact(self):
        # One connection, one message at a time, each echoed in full before the next: sizes
        # on both sides of the copy phase's 1 KiB read and 16 KiB worker buffer, and after a
        # read that fills the worker buffer (that direction splices from then on).
        s = self.connect()
        for size in (1, 1023, 1024, 1025, 3000, 16383, 16384, 16385, 70_000, 5, 1024, 2):
            msg = os.urandom(size)
            s.sendall(msg)
            got = b""
            s.settimeout(10)
            while len(got) < size:
                chunk = s.recv(1 << 16)
                self.assertTrue(chunk, f"EOF after {len(got)} of {size} echoed bytes")
                got += chunk
            self.assertEqual(got, msg, f"a {size}-byte message came back changed")

    def test_l4_metrics_count_connections_and_bytes(self):
        before_c = self.n.metric("routemesh_proxy_l4_connections_total", service="echo") or 0
        before_b = self.n.metric("routemesh_proxy_l4_bytes_total", service="echo") or 0
        for _ in range(3):
            s = self.connect()
            s.sendall(b"x" * 1000)
            s.shutdown(socket.SHUT_WR)
            recv_all(s)
            s.close()
        harness.wait_until(
            lambda: (self.n.metric("routemesh_proxy_l4_connections_total", service="echo") or 0)
            >= before_c + 3, timeout=5, what="l4_connections_total{service=echo} += 3")
        harness.wait_until(
            lambda: (self.n.metric("routemesh_proxy_l4_bytes_total", service="echo") or 0)
            >= before_b + 3000, timeout=5, what="l4_bytes_total{service=echo} += 3000")

    def test_dead_backend_closes_the_client_connection(self):
        s = self.connect(DEAD_PORT)
        try:
            s.sendall(b"anyone there?")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, how = recv_all(s, timeout=5)
        self.assertEqual(data, b"")
        self.assertIn(how, ("eof", "reset"), "the client must be disconnected when no task answers")

    def test_idle_connection_is_closed_after_l4_idle_ms(self):
        s = self.connect(IDLE_PORT)
        s.sendall(b"ping")
        s.settimeout(5)
        self.assertEqual(s.recv(100), b"ping")
        t0 = time.monotonic()
        data, how = recv_all(s, timeout=5)
        self.assertIn(how, ("eof", "reset"), "idle L4 connection must be closed after l4_idle_ms")
        self.assertLess(time.monotonic() - t0, 4.0)

    def test_http_port_still_serves_http(self):
        # An L4 service does not capture the HRM port.
        status, hdrs, _ = harness.http(IP, HTTP_PORT, "/", host="nothing.test")
        self.assertEqual(status, 404)

    def test_a_port_published_on_an_address_listens_there_only(self):
        s = socket.create_connection((BOUND_IP, BOUND_PORT), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"bound")
        s.shutdown(socket.SHUT_WR)
        data, how = recv_all(s)
        self.assertEqual(data, b"boundBYE")
        # Not on the node's own address: the port is bound to BOUND_IP alone.
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((IP, BOUND_PORT), timeout=5).close()


if __name__ == "__main__":
    harness.main()
