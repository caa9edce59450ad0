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

    def __init__(self, args, env=None):
        self.args = args
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, env=env)
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

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        for t in self._threads:
            t.join(2)
        return self.p.returncode

    def rss_kib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


class Whoami(Proc):
    """`routemesh whoami` test backend; the bound port is read from its first stdout line."""

    def __init__(self, ip="127.0.0.1", port=0, name="whoami", threads=1):
        super().__init__([BIN, "whoami", "--listen", f"{ip}:{port}", "--name", name,
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
    """`routemesh node` with a config written to a temporary file."""

    def __init__(self, cfg, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="rm-it-")
        self.path = os.path.join(self.dir, "node.yaml")
        self.write_config(cfg)
        self.ip = cfg["node"]["listen"]
        super().__init__([BIN, "node", "--config", self.path, *extra_args])
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
        """Sum of the samples of `name` whose labels include `labels`."""
        total, found = 0.0, False
        for line in self.metrics().splitlines():
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

    def node(self, cfg, extra_args=()):
        n = Node(cfg, extra_args)
        self.procs.append(n)
        return n


def main():
    unittest.main(verbosity=2)
