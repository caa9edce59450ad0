"""Integration-test harness: real routemesh processes on 127.0.0.x loopback addresses.

Only the Python standard library is used. Each test module picks its own loopback address
(127.0.0.21, .22, ...) so modules can run in parallel with fixed published ports.
Configs are written as JSON, which is valid YAML.
"""
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

# Module-level alias: inside class Proc the name `signal` is the method below.
_SIGTERM = signal.SIGTERM

BIN = os.environ.get("ROUTEMESH_BIN", os.path.join(os.path.dirname(__file__), "../../build/routemesh"))


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Proc:
    """A child process whose stdout/stderr are drained into lists by background threads."""

    def __init__(self, args, env=None, stdin=subprocess.DEVNULL):
        self.args = args
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=stdin, env=env)
        self.out, self.err = [], []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._drain, args=(self.p.stdout, self.out), daemon=True),
                         threading.Thread(target=self._drain, args=(self.p.stderr, self.err), daemon=True)]
        for t in self._threads:
            t.start()

    def _drain(self, f, sink):
        for line in iter(f.readline, b""):
            with self._lock:
                sink.append(line.decode(errors="replace").rstrip("\n"))

    def lines(self, which="err"):
        if self.p.poll() is not None:
            # The process is gone: let the readers take what it wrote to the end (on a busy
            # machine its last lines can still be in the pipe when it has been reaped).
            for t in self._threads:
                t.join(2)
        with self._lock:
            return list(self.err if which == "err" else self.out)

    def wait_line(self, pattern, which="err", timeout=20.0):
        rx = re.compile(pattern)

        def find():
            if self.p.poll() is not None and not any(rx.search(l) for l in self.lines(which)):
                raise AssertionError(f"{self.args[:2]} exited with {self.p.returncode}:\n" +
                                     "\n".join(self.lines("err")[-30:]))
            for l in self.lines(which):
                m = rx.search(l)
                if m:
                    return m
            return None
        return wait_until(find, timeout, what=f"line /{pattern}/ from {self.args[:2]}")

    def signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def stop(self, sig=_SIGTERM, timeout=20.0):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        for t in self._threads:
            t.join(2)
        for f in (self.p.stdout, self.p.stderr):
            if f is not None and not any(t.is_alive() for t in self._threads):
                f.close()
        return self.p.returncode

    def rss_kib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


class Whoami(Proc):
    """`routemesh whoami` test backend; the bound port is read from its first stdout line."""

    def __init__(self, ip="127.0.0.1", port=0, name="whoami", threads=1, prefix=()):
        # `prefix` runs it through a wrapper that execs it (`ip netns exec NS`).
        super().__init__([*prefix, BIN, "whoami", "--listen", f"{ip}:{port}", "--name", name,
                          "--threads", str(threads)])
        m = self.wait_line(r"listening on (\S+):(\d+)", which="out")
        self.ip, self.port, self.name = ip, int(m.group(2)), name

    @property
    def addr(self):
        return f"{self.ip}:{self.port}"


def node_config(ip, services, http_port=8080, admin_port=0, **sections):
    """A config dict; `sections` may override node/timeouts/limits/health keys."""
    node = {"name": "n1", "listen": ip, "http_port": http_port, "admin": f"{ip}:{admin_port}",
            "threads": 2, "access_log": {"enabled": True, "format": "json", "path": "-"}}
    node.update(sections.pop("node", {}))
    cfg = {"node": node, "services": services}
    cfg.update(sections)
    return cfg


class Node(Proc):
    """`routemesh node` with a config written to a temporary file. `prefix` runs it through a
    wrapper that execs it (e.g. prlimit), so the process is still the node."""

    def __init__(self, cfg, extra_args=(), prefix=()):
        self.dir = tempfile.mkdtemp(prefix="rm-it-")
        self.path = os.path.join(self.dir, "node.yaml")
        self.write_config(cfg)
        self.ip = cfg["node"]["listen"]
        super().__init__([*prefix, BIN, "node", "--config", self.path, *extra_args])
        m = self.wait_line(r"ready: http=\S+:(\d+) admin_port=(\d+)")
        self.http_port, self.admin_port = int(m.group(1)), int(m.group(2))

    def write_config(self, cfg):
        text = cfg if isinstance(cfg, str) else json.dumps(cfg, indent=1)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)

    def reload(self, cfg, expect_ok=True):
        before = len([l for l in self.lines() if "reload" in l])
        self.write_config(cfg)
        self.signal(signal.SIGHUP)
        m = wait_until(lambda: [l for l in self.lines() if "reload" in l][before:] or None,
                       what="reload log line")
        ok = "reloaded" in m[-1]
        if ok != expect_ok:
            raise AssertionError(f"reload result {m[-1]!r}, expected ok={expect_ok}")
        return m[-1]

    def admin_get(self, path):
        with urllib.request.urlopen(f"http://{self.ip}:{self.admin_port}{path}", timeout=10) as r:
            return r.status, r.read().decode()

    def metrics(self):
        return self.admin_get("/metrics")[1]

    def metric(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels` (None when none)."""
        return metric_sum(self.metrics(), name, **labels)


def metric_sum(text, name, **labels):
    """Sum of the samples of `name` in a Prometheus text page whose labels include `labels`;
    None when there is none."""
    total, found = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(lab.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
            found = True
    return total if found else None


def http(ip, port, path="/", host=None, method="GET", headers=None, body=None, timeout=10):
    """One request on a new connection. Returns (status, headers dict lower-case, body bytes)."""
    import http.client
    c = http.client.HTTPConnection(ip, port, timeout=timeout)
    h = dict(headers or {})
    if host is not None:
        h["Host"] = host
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, data


def raw(ip, port, data, timeout=5.0, shut_write=False):
    """Sends raw bytes and returns everything read until the peer closes or `timeout` passes."""
    s = socket.create_connection((ip, port), timeout=timeout)
    try:
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        s.close()


def statuses(raw_bytes):
    """Status codes of every HTTP response found in a raw byte stream."""
    return [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw_bytes)]


def free_port(ip):
    s = socket.socket()
    s.bind((ip, 0))
    p = s.getsockname()[1]
    s.close()
    return p


class MeshTest(unittest.TestCase):
    """Base class: tracks processes and stops them after each test."""
    IP = "127.0.0.20"

    def setUp(self):
        self.procs = []

    def tearDown(self):
        for p in reversed(self.procs):
            p.stop(signal.SIGKILL if p.p.poll() is None and isinstance(p, Whoami) else signal.SIGTERM)

    def whoami(self, name="whoami", port=0, ip="127.0.0.1", threads=1):
        w = Whoami(ip, port, name, threads)
        self.procs.append(w)
        return w

    def node(self, cfg, extra_args=(), prefix=()):
        n = Node(cfg, extra_args, prefix)
        self.procs.append(n)
        return n


# ---------------------------------------------------------------------------------------------
# Extensions: class-level fixtures, a raw HTTP/1.1 client, test backends written in Python.
# ---------------------------------------------------------------------------------------------

class ClassFixtures:
    """Mixin for MeshTest subclasses that share processes across a class's tests.

    Processes started with cls.class_whoami / cls.class_node are stopped in tearDownClass.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.class_procs = []
        cls.class_servers = []

    @classmethod
    def tearDownClass(cls):
        for p in reversed(cls.class_procs):
            p.stop(signal.SIGKILL if p.p.poll() is None and isinstance(p, Whoami) else signal.SIGTERM)
        for s in cls.class_servers:
            s.close()
        super().tearDownClass()

    @classmethod
    def class_whoami(cls, name="whoami", port=0, ip="127.0.0.1", threads=1):
        w = Whoami(ip, port, name, threads)
        cls.class_procs.append(w)
        return w

    @classmethod
    def class_node(cls, cfg, extra_args=()):
        n = Node(cfg, extra_args)
        cls.class_procs.append(n)
        return n


class Response:
    """One HTTP response read by Client/read_response."""

    def __init__(self, status, reason, headers, body, version="HTTP/1.1"):
        self.status, self.reason, self.headers, self.body, self.version = status, reason, headers, body, version

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def __repr__(self):
        return f"<Response {self.status} {self.reason} {len(self.body)} bytes>"


def read_response(f, head_request=False, sink=None):
    """Reads one response from a binary file object. `sink(bytes)` receives body bytes instead
    of keeping them (for very large bodies). Raises ConnectionError on EOF before a status line."""
    line = f.readline(65537)
    if not line:
        raise ConnectionError("connection closed before a response")
    m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?\r\n$", line)
    if not m:
        raise AssertionError(f"bad status line {line!r}")
    version, status, reason = m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode()
    headers = []
    while True:
        h = f.readline(65537)
        if not h:
            raise ConnectionError("connection closed inside a response head")
        if h in (b"\r\n", b"\n"):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    r = Response(status, reason, headers, b"", version)
    chunks = []
    out = sink or chunks.append
    if head_request or 100 <= status < 200 or status in (204, 304):
        return r
    te = (r.header("transfer-encoding") or "").lower()
    if "chunked" in te:
        while True:
            size_line = f.readline(1024)
            if not size_line:
                raise ConnectionError("connection closed inside a chunked body")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while f.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                break
            left = size
            while left:
                b = f.read(min(left, 1 << 20))
                if not b:
                    raise ConnectionError("connection closed inside a chunk")
                out(b)
                left -= len(b)
            if f.read(2) != b"\r\n":
                raise AssertionError("chunk not followed by CRLF")
    elif r.header("content-length") is not None:
        left = int(r.header("content-length"))
        while left:
            b = f.read(min(left, 1 << 20))
            if not b:
                raise ConnectionError(f"connection closed with {left} body bytes missing")
            out(b)
            left -= len(b)
    else:
        while True:
            b = f.read1(1 << 20) if hasattr(f, "read1") else f.read(1 << 16)
            if not b:
                break
            out(b)
    if sink is None:
        r.body = b"".join(chunks)
    return r


class Client:
    """A raw HTTP/1.1 client connection (keep-alive, pipelining, raw bytes)."""

    def __init__(self, ip, port, timeout=10.0):
        self.sock = socket.create_connection((ip, port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method="GET", path="/", host="localhost", headers=None, body=None, sink=None):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
        hdrs = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
            hdrs.append(("Content-Length", str(len(body))))
        lines += [f"{k}: {v}" for k, v in hdrs]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        return self.read(head_request=(method == "HEAD"), sink=sink)

    def read(self, head_request=False, sink=None):
        return read_response(self.f, head_request, sink)

    def at_eof(self, timeout=2.0):
        """True when the peer closes (EOF or reset) within `timeout` with no further bytes."""
        self.sock.settimeout(timeout)
        try:
            return self.f.read(1) == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        try:
            self.f.close()
        finally:
            self.sock.close()


def read_all(sock, timeout):
    """Everything the peer sends until it closes or `timeout` passes; (bytes, closed)."""
    chunks, closed = [], False
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            b = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not b:
            closed = True
            break
        chunks.append(b)
    return b"".join(chunks), closed


def read_at_least(read, n):
    """Calls `read()` (a socket's recv or a file's read1, bound to a size) until `n` bytes came
    or it returns b"" (the peer closed); returns what came."""
    data = b""
    while len(data) < n:
        chunk = read()
        if not chunk:
            break
        data += chunk
    return data


def exchange(ip, port, data, timeout=3.0):
    """Sends raw bytes in one write and reads until the peer closes or `timeout` passes.
    Returns (bytes, closed) where closed says whether the peer closed the connection."""
    s = socket.create_connection((ip, port), timeout=timeout)
    try:
        s.sendall(data)
        return read_all(s, timeout)
    finally:
        s.close()


def parse_whoami(body):
    """Fields of a whoami body: name, remote, request_line, headers (lower-case name -> list),
    conns (int or None)."""
    text = body.decode(errors="replace")
    out = {"name": None, "remote": None, "request_line": None, "headers": {}, "conns": None}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        l = lines[i].rstrip("\r")
        i += 1
        if l.startswith("Name: ") and out["name"] is None:
            out["name"] = l[6:]
        elif l.startswith("RemoteAddr: "):
            out["remote"] = l[len("RemoteAddr: "):]
        elif re.match(r"^[A-Z]+ \S+ HTTP/\d\.\d$", l):
            out["request_line"] = l
            while i < len(lines) and lines[i].rstrip("\r") != "":
                k, _, v = lines[i].rstrip("\r").partition(":")
                out["headers"].setdefault(k.strip().lower(), []).append(v.strip())
                i += 1
        else:
            m = re.match(r"^Conns: (\d+)", l)
            if m:
                out["conns"] = int(m.group(1))
    return out


class _ThreadedServer:
    """A loopback TCP server running `handle(conn)` on one thread per connection."""

    def __init__(self, ip="127.0.0.1", port=0):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((ip, port))
        self.lsock.listen(128)
        self.ip, self.port = ip, self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.accepted = 0
        self.conns = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def addr(self):
        return f"{self.ip}:{self.port}"

    def _accept(self):
        while not self._closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.handle(c)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def handle(self, c):
        raise NotImplementedError

    def close(self):
        self._closed = True
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


class RecordingBackend(_ThreadedServer):
    """An HTTP/1.1 backend that records every byte it receives and every request line it
    parses, and answers each request with `status` (default 200) and body "ok", keep-alive.
    Understands Content-Length and chunked request bodies."""

    def __init__(self, ip="127.0.0.1", port=0, status=200):
        self.received = bytearray()
        self.requests = []
        self.status = status
        super().__init__(ip, port)

    def seen(self):
        with self.lock:
            return bytes(self.received), list(self.requests)

    def handle(self, c):
        buf = b""

        def more():
            nonlocal buf
            b = c.recv(65536)
            if not b:
                raise OSError("eof")
            with self.lock:
                self.received += b
            buf += b

        while True:
            while b"\r\n\r\n" not in buf:
                more()
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            with self.lock:
                self.requests.append(lines[0].decode("latin-1"))
            hdrs = {}
            for l in lines[1:]:
                k, _, v = l.partition(b":")
                hdrs[k.strip().lower()] = v.strip()
            if b"chunked" in hdrs.get(b"transfer-encoding", b"").lower():
                while True:
                    while b"\r\n" not in buf:
                        more()
                    size_line, buf = buf.split(b"\r\n", 1)
                    size = int(size_line.split(b";")[0], 16)
                    while len(buf) < size + 2:
                        more()
                    buf = buf[size + 2:]
                    if size == 0:
                        break
            else:
                n = int(hdrs.get(b"content-length", b"0") or 0)
                while len(buf) < n:
                    more()
                buf = buf[n:]
            c.sendall(b"HTTP/1.1 %d Status\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
                      % self.status)


class SlowSinkBackend(_ThreadedServer):
    """An HTTP/1.1 backend that reads each request body (Content-Length only) at most at
    `rate` bytes/s and answers "bytes: N". A slow reader makes a proxy that buffers whole bodies
    grow in memory."""

    def __init__(self, ip="127.0.0.1", port=0, rate=80 << 20):
        self.rate = rate
        self.counts = []
        super().__init__(ip, port)

    def handle(self, c):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                b = c.recv(65536)
                if not b:
                    return
                buf += b
            head, buf = buf.split(b"\r\n\r\n", 1)
            n = 0
            for l in head.split(b"\r\n")[1:]:
                k, _, v = l.partition(b":")
                if k.strip().lower() == b"content-length":
                    n = int(v.strip())
            got = min(len(buf), n)
            buf = buf[got:]
            start = time.monotonic()
            while got < n:
                b = c.recv(min(1 << 18, n - got))
                if not b:
                    return
                got += len(b)
                ahead = got / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
            with self.lock:
                self.counts.append(got)
            body = b"bytes: %d\n" % got
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
                      + body)


class TcpEchoServer(_ThreadedServer):
    """Echoes every byte. When the client half-closes, sends b"BYE" and closes.
    On receiving b"HALF" as the first 4 bytes, sends b"HALF-OK", shuts down its own write side
    and keeps reading; the number of bytes read per connection is kept in `received`."""

    def __init__(self, ip="127.0.0.1", port=0):
        self.received = []
        super().__init__(ip, port)

    def handle(self, c):
        total, first, half = 0, b"", False
        idx = None
        with self.lock:
            idx = len(self.received)
            self.received.append(0)
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            total += len(b)
            with self.lock:
                self.received[idx] = total
            if len(first) < 4:
                first += b[:4 - len(first)]
                if first == b"HALF" and not half:
                    half = True
                    c.sendall(b"HALF-OK")
                    c.shutdown(socket.SHUT_WR)
                    continue
            if not half:
                c.sendall(b)
        if not half:
            c.sendall(b"BYE")


def main():
    unittest.main(verbosity=2)
