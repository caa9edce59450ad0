"""A load balancer in front: connections from node.proxy_protocol_from peers start with a PROXY
protocol header (v1 or v2) whose source becomes the client, for HTTP (X-Forwarded-For, the
access log) and at layer 4 (the PROXY header written to a mesh.proxy_protocol task). From those
peers a connection without a valid header is closed and counted; from any other peer a PROXY
line is just bytes (HTTP answers 400). The HTTPS port takes the header before the ClientHello:
a terminated request carries the header's client in X-Forwarded-For, a passthrough (mesh.sni)
service labelled mesh.proxy_protocol gets it in its own header followed by the untouched
ClientHello, and a trusted peer that starts with a ClientHello is closed and counted. The
"load balancer" is the test itself, connecting from 127.0.0.1; the untrusted client connects
from 127.0.0.2."""
import http.client
import shutil
import socket
import ssl
import struct
import tempfile

import harness
from test_https import TestCa

IP = "127.0.0.30"
HTTP_PORT = 8080
L4_PORT = 9050
HTTPS_PORT = 8443
CLIENT = "203.0.113.7"


def v2_header(src, sport, dst, dport):
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12) +
            socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport))


def connect(port, source="127.0.0.1"):
    s = socket.socket()
    s.settimeout(5)
    s.bind((source, 0))
    s.connect((IP, port))
    return s


class ProxyProtocolTest(harness.ClassFixtures, harness.MeshTest):
    IP = IP

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.w = cls.class_whoami("pp-web")
        cls.echo = harness.TcpEchoServer()
        cls.class_servers.append(cls.echo)
        cls.tmp = tempfile.mkdtemp(prefix="rm-pp-")
        cls.ca = TestCa(cls.tmp)
        cert, key = cls.ca.issue("pp-web", ["web.pp.test"])
        services = [
            {"name": "web", "labels": {"mesh.http": "web.pp.test"}, "tasks": [cls.w.addr]},
            {"name": "echo", "labels": {"mesh.proxy_protocol": "v1"},
             "published": [f"{L4_PORT}:{cls.echo.port}/tcp"], "tasks": ["127.0.0.1"]},
            {"name": "sni-echo", "labels": {"mesh.sni": "sni.pp.test", "mesh.proxy_protocol": "v1"},
             "tasks": [f"127.0.0.1:{cls.echo.port}"]},
        ]
        cfg = harness.node_config(IP, services, http_port=HTTP_PORT,
                                  node={"proxy_protocol_from": ["127.0.0.1/32"],
                                        "https_port": HTTPS_PORT},
                                  certificates=[{"host": "web.pp.test", "cert": cert, "key": key}])
        cls.n = cls.class_node(cfg)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def get(self, s):
        s.sendall(b"GET /x HTTP/1.1\r\nHost: web.pp.test\r\nConnection: close\r\n\r\n")
        data, _ = harness.read_all(s, 5)
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None
        return status, data

    def test_http_with_a_v1_header_sees_the_real_client(self):
        s = connect(HTTP_PORT)
        try:
            s.sendall(f"PROXY TCP4 {CLIENT} {IP} 5555 {HTTP_PORT}\r\n".encode())
            st, data = self.get(s)
        finally:
            s.close()
        self.assertEqual(st, 200, data[:200])
        body = data.split(b"\r\n\r\n", 1)[1]
        xff = harness.parse_whoami(body)["headers"].get("x-forwarded-for", [""])[-1]
        self.assertEqual(xff.split(",")[-1].strip(), CLIENT)

    def test_http_with_a_v2_header_in_the_same_packet_as_the_request(self):
        s = connect(HTTP_PORT)
        try:
            s.sendall(v2_header(CLIENT, 6666, IP, HTTP_PORT) +
                      b"GET /y HTTP/1.1\r\nHost: web.pp.test\r\nConnection: close\r\n\r\n")
            data, _ = harness.read_all(s, 5)
        finally:
            s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
        body = data.split(b"\r\n\r\n", 1)[1]
        xff = harness.parse_whoami(body)["headers"].get("x-forwarded-for", [""])[-1]
        self.assertEqual(xff.split(",")[-1].strip(), CLIENT)

    def test_a_trusted_peer_without_a_header_is_closed_and_counted(self):
        before = (self.n.metric("routemesh_proxy_bad_requests_total", reason="proxy_header_missing") or 0)
        s = connect(HTTP_PORT)
        try:
            st, data = self.get(s)
        finally:
            s.close()
        self.assertIsNone(st, data[:200])
        self.assertEqual(data, b"")
        self.assertEqual((self.n.metric("routemesh_proxy_bad_requests_total",
                                              reason="proxy_header_missing") or 0) - before, 1)

    def test_an_untrusted_peer_cannot_claim_a_client(self):
        s = connect(HTTP_PORT, source="127.0.0.2")
        try:
            s.sendall(f"PROXY TCP4 {CLIENT} {IP} 5555 {HTTP_PORT}\r\n".encode())
            st, data = self.get(s)
        finally:
            s.close()
        self.assertEqual(st, 400, data[:200])

    def test_l4_passes_the_real_client_on_in_its_own_header(self):
        s = connect(L4_PORT)
        try:
            s.sendall(f"PROXY TCP4 {CLIENT} {IP} 7777 {L4_PORT}\r\nhello".encode())
            want = f"PROXY TCP4 {CLIENT} {IP} 7777 {L4_PORT}\r\nhello".encode()
            data = harness.read_at_least(lambda: s.recv(4096), len(want))
        finally:
            s.close()
        # The echo task got the node's header (naming the load balancer's client) and then the
        # bytes that followed the load balancer's header.
        self.assertEqual(data, want)

    def test_https_terminated_sees_the_client_of_the_header_before_the_client_hello(self):
        s = connect(HTTPS_PORT)
        s.sendall(f"PROXY TCP4 {CLIENT} {IP} 5555 {HTTPS_PORT}\r\n".encode())
        ctx = ssl.create_default_context(cafile=self.ca.cert)
        with ctx.wrap_socket(s, server_hostname="web.pp.test") as t:
            t.sendall(b"GET /z HTTP/1.1\r\nHost: web.pp.test\r\nConnection: close\r\n\r\n")
            r = http.client.HTTPResponse(t)
            r.begin()
            body = r.read()
        self.assertEqual(r.status, 200, body[:200])
        who = harness.parse_whoami(body)
        self.assertEqual(who["headers"].get("x-forwarded-for", [""])[-1].split(",")[-1].strip(),
                         CLIENT)
        self.assertEqual(who["headers"].get("x-forwarded-proto", [""])[-1], "https")

    def test_https_passthrough_passes_the_client_on_before_the_untouched_client_hello(self):
        # A real ClientHello naming the passthrough service, made without a peer.
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        hello_maker = ssl.create_default_context().wrap_bio(incoming, outgoing,
                                                             server_hostname="sni.pp.test")
        with self.assertRaises(ssl.SSLWantReadError):
            hello_maker.do_handshake()
        hello = outgoing.read()
        s = connect(HTTPS_PORT)
        try:
            s.sendall(f"PROXY TCP4 {CLIENT} {IP} 7777 {HTTPS_PORT}\r\n".encode() + hello)
            want = f"PROXY TCP4 {CLIENT} {IP} 7777 {HTTPS_PORT}\r\n".encode() + hello
            data = harness.read_at_least(lambda: s.recv(65536), len(want))
        finally:
            s.close()
        self.assertEqual(data, want)

    def test_https_from_a_trusted_peer_without_a_header_is_closed_and_counted(self):
        before = (self.n.metric("routemesh_proxy_bad_requests_total", reason="proxy_header_missing") or 0)
        s = connect(HTTPS_PORT)
        ctx = ssl.create_default_context(cafile=self.ca.cert)
        with self.assertRaises((ssl.SSLError, OSError)):
            with ctx.wrap_socket(s, server_hostname="web.pp.test"):
                pass
        s.close()
        harness.wait_until(
            lambda: (self.n.metric("routemesh_proxy_bad_requests_total",
                                   reason="proxy_header_missing") or 0) - before == 1,
            timeout=5, what="the missing PROXY header counted")


class Ipv6TrustedProxyTest(harness.MeshTest):
    """node.trusted_proxies takes IPv6 ranges: a node on ::1 believes X-Forwarded-For from
    ::1 only when a range holds it."""

    def node_on_v6(self, port, trusted):
        w = self.whoami("v6-web")
        cfg = {"node": {"name": "n1", "listen": "::1", "http_port": port, "admin": "[::1]:0",
                        "threads": 1, "access_log": {"enabled": False},
                        "trusted_proxies": trusted},
               "services": [{"name": "web", "labels": {"mesh.http": "v6.test"}, "tasks": [w.addr]}]}
        self.node(cfg)

    def xff_seen(self, port):
        st, _, body = harness.http("::1", port, "/", host="v6.test",
                                   headers={"X-Forwarded-For": "198.51.100.1"})
        self.assertEqual(st, 200, body[:200])
        return harness.parse_whoami(body)["headers"].get("x-forwarded-for", [""])[-1]

    def test_an_ipv6_trusted_proxy_is_believed(self):
        self.node_on_v6(8095, ["::1/128"])
        self.assertEqual(self.xff_seen(8095), "198.51.100.1, ::1")

    def test_an_ipv6_peer_outside_the_ranges_is_not(self):
        self.node_on_v6(8096, ["2001:db8::/32", "127.0.0.1"])
        self.assertEqual(self.xff_seen(8096), "::1")


if __name__ == "__main__":
    harness.main()
