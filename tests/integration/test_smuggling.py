"""Request smuggling defences (RFC 9112 §6.3, §11.2) and limits. Each vector is sent on a raw
socket followed, in the SAME write, by a second request `GET /smuggled`; the proxy must answer
exactly one error response, close the connection, and the backend (a recording server written
here) must never see /smuggled. A positive control proves the check can see a smuggled request."""
import select
import socket
import time

import harness

IP = "127.0.0.24"
HTTP_PORT = 8080
HOST = b"smug.test"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: smug.test\r\n\r\n"

# (name, bytes, acceptable statuses, may_reach_backend)
# may_reach_backend: the head is valid and may already be forwarded before the body shows the
# error; the backend may then see that first request, but never /smuggled.
H = b"Host: smug.test\r\n"
VECTORS = [
    ("cl_and_te", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}, False),
    ("te_and_cl", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 45\r\n\r\n0\r\n\r\n", {400}, False),
    ("double_cl_conflicting", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0\r\nContent-Length: 45\r\n\r\n", {400}, False),
    ("cl_list_conflicting", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0, 45\r\n\r\n", {400}, False),
    ("cl_plus_sign", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +0\r\n\r\n", {400}, False),
    ("cl_negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", {400}, False),
    ("cl_trailing_garbage", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x\r\n\r\n", {400}, False),
    ("cl_hex", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x0\r\n\r\n", {400}, False),
    ("cl_overflow", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 184467440737095516160\r\n\r\n", {400, 413}, False),
    ("te_chunked_not_final", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", {400, 501}, False),
    ("te_unknown", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", {400, 501}, False),
    ("te_two_fields_not_final", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", {400, 501}, False),
    ("te_on_http10", b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}, False),
    ("bad_chunk_size", b"POST /count HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", {400}, True),
    ("negative_chunk_size", b"POST /count HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", {400}, True),
    ("chunk_size_overflow", b"POST /count HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff5\r\nhello\r\n0\r\n\r\n", {400}, True),
    ("chunk_missing_crlf", b"POST /count HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", {400}, True),
    ("obs_fold", b"GET / HTTP/1.1\r\n" + H + b"X-Folded: a\r\n  b\r\n\r\n", {400}, False),
    ("obs_fold_tab", b"GET / HTTP/1.1\r\n" + H + b"X-Folded: a\r\n\tb\r\n\r\n", {400}, False),
    ("space_before_colon", b"GET / HTTP/1.1\r\n" + H + b"X-Space : 1\r\n\r\n", {400}, False),
    ("space_before_colon_cl", b"POST / HTTP/1.1\r\n" + H + b"Content-Length : 45\r\n\r\n", {400}, False),
    ("space_before_colon_te", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n", {400}, False),
    ("bare_lf_everywhere", b"GET / HTTP/1.1\nHost: smug.test\n\n", {400}, False),
    ("bare_lf_in_headers", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\nX-B: 2\r\n\r\n", {400}, False),
    ("bare_cr", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\rX-B: 2\r\n\r\n", {400}, False),
    ("nul_in_value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", {400}, False),
    ("del_in_value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", {400}, False),
    ("non_token_name_quote", b"GET / HTTP/1.1\r\n" + H + b"X\"A: 1\r\n\r\n", {400}, False),
    ("non_token_name_bracket", b"GET / HTTP/1.1\r\n" + H + b"X[A]: 1\r\n\r\n", {400}, False),
    ("empty_header_name", b"GET / HTTP/1.1\r\n" + H + b": 1\r\n\r\n", {400}, False),
    ("two_host_headers", b"GET / HTTP/1.1\r\n" + H + b"Host: other.test\r\n\r\n", {400}, False),
    ("missing_host", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", {400}, False),
    ("http_2_0_version", b"GET / HTTP/2.0\r\n" + H + b"\r\n", {505}, False),
    ("uri_too_long", b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\n" + H + b"\r\n", {414}, False),
    ("too_many_headers", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-H%d: v\r\n" % i for i in range(40)) + b"\r\n", {431}, False),
    ("head_too_large", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 6000 + b"\r\n\r\n", {431}, False),
]


class SmugglingTest(harness.ClassFixtures, harness.MeshTest):
    IP = IP

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.backend = harness.RecordingBackend()
        cls.class_servers.append(cls.backend)
        services = [{"name": "smug", "labels": {"mesh.http": "smug.test"}, "tasks": [cls.backend.addr]}]
        cfg = harness.node_config(
            IP, services, http_port=HTTP_PORT,
            limits={"max_uri_bytes": 1024, "max_headers": 20, "max_header_bytes": 4096},
            timeouts={"request_head_ms": 300})
        cls.n = cls.class_node(cfg)

    def test_control_a_pipelined_second_request_is_visible_to_the_backend(self):
        # Proves the detection works: a valid request followed by /smuggled reaches the backend.
        data, _ = harness.exchange(IP, HTTP_PORT, b"GET /ok HTTP/1.1\r\n" + H + b"\r\n" +
                                   b"GET /smuggled-control HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
                                   timeout=3)
        self.assertEqual(harness.statuses(data), [200, 200], data[:400])
        received, requests = self.backend.seen()
        self.assertIn("GET /smuggled-control HTTP/1.1", requests)

    def test_every_smuggling_vector_is_rejected_and_connection_closed(self):
        for name, vector, allowed, may_reach in VECTORS:
            with self.subTest(vector=name):
                before_bytes, before_reqs = self.backend.seen()
                data, closed = harness.exchange(IP, HTTP_PORT, vector + SMUGGLED, timeout=3)
                codes = harness.statuses(data)
                self.assertEqual(len(codes), 1, f"{name}: expected exactly one response, got {codes}: "
                                                f"{data[:300]!r}")
                self.assertIn(codes[0], allowed, f"{name}: status {codes[0]}, expected {allowed}")
                self.assertIn(b"x-routemesh-error:", data.lower(), f"{name}: no X-Routemesh-Error")
                self.assertTrue(closed, f"{name}: the connection must be closed after the error")
                time.sleep(0.05)  # anything forwarded would have reached the backend by now
                after_bytes, after_reqs = self.backend.seen()
                new_bytes = after_bytes[len(before_bytes):]
                self.assertNotIn(b"/smuggled", new_bytes, f"{name}: the backend saw /smuggled")
                if not may_reach:
                    self.assertEqual(new_bytes, b"",
                                     f"{name}: a rejected head reached the backend: {new_bytes[:200]!r}")

    def test_vectors_split_into_small_writes_are_rejected_too(self):
        # The same vectors arriving a few bytes at a time: the parser must keep its state across
        # reads. Before each write we check whether the answer has arrived already.
        for name, vector, allowed, may_reach in VECTORS:
            with self.subTest(vector=name):
                before, _ = self.backend.seen()
                # Small pieces, but few enough that the head arrives well within
                # request_head_ms (300 ms here).
                step = max(7, len(vector + SMUGGLED) // 40)
                data, closed = split_exchange(vector + SMUGGLED, step)
                codes = harness.statuses(data)
                self.assertEqual(len(codes), 1, f"{name} (split writes): {codes} {data[:300]!r}")
                self.assertIn(codes[0], allowed, f"{name} (split writes): status {codes[0]}")
                self.assertTrue(closed, f"{name} (split writes): connection not closed")
                time.sleep(0.05)
                after, _ = self.backend.seen()
                self.assertNotIn(b"/smuggled", after[len(before):], f"{name}: backend saw /smuggled")

    def test_incomplete_head_times_out_with_408(self):
        c = harness.Client(IP, HTTP_PORT, timeout=5)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        c.send(b"GET / HTTP/1.1\r\nHost: smug.test\r\n")
        r = c.read()
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 408)
        self.assertIsNotNone(r.header("x-routemesh-error"))
        self.assertGreaterEqual(elapsed, 0.25, "408 before request_head_ms")
        self.assertLess(elapsed, 2.5, "408 long after request_head_ms (300 ms)")
        self.assertTrue(c.at_eof(2), "the connection must be closed after 408")

    def test_slow_trickled_head_still_times_out(self):
        # A client sending one byte every 50 ms must not push the head deadline forward.
        head = b"GET / HTTP/1.1\r\nHost: smug.test\r\nX-Slow: " + b"s" * 100
        t0 = time.monotonic()
        data, closed = split_exchange(head, 1, pause=0.05, timeout=4)
        elapsed = time.monotonic() - t0
        self.assertEqual(harness.statuses(data), [408], f"trickled head: {data[:200]!r}")
        self.assertTrue(closed)
        self.assertLess(elapsed, 2.5)


def split_exchange(payload, step, pause=0.002, timeout=3.0):
    """Sends `payload` in pieces of `step` bytes, stopping as soon as a response arrives, then
    reads until the peer closes or `timeout` passes. Returns (bytes, closed)."""
    s = socket.create_connection((IP, HTTP_PORT), timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        for i in range(0, len(payload), step):
            readable, _, _ = select.select([s], [], [], pause)
            if readable or time.monotonic() > deadline:
                break
            try:
                s.sendall(payload[i:i + step])
            except (BrokenPipeError, ConnectionResetError):
                break
        return harness.read_all(s, max(0.01, deadline - time.monotonic()))
    finally:
        s.close()


if __name__ == "__main__":
    harness.main()
