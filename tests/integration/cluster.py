"""Multi-node cluster harness, built on harness.py. Standard library only.

A Cluster is a set of ClusterNode processes (`routemesh node`), each with its own loopback
address (127.0.0.X: every node binds the same fixed ports), config file and data_dir under
one temporary directory:

    c = Cluster("127.0.0.31", ["manager", "manager", "manager", "worker"])   # .31 .. .34
    c.start()              # `cluster init` on the first, then the others --join TOKEN@it
    leader = c.leader()
    status, body = leader.api("POST", "/v1/services", {"name": "web", "labels": {...}})
    rc, out, err = c.cli(c.nodes[1], "service", "ls")
    leader.kill9(); ...; leader.start()      # restart from its data_dir
    c.stop()

Nodes are named n1, n2, ... in order. Configs are JSON (valid YAML). Optional network
namespaces (Netns) put each node in its own namespace on a private bridge so a test can cut
a node's traffic to its peers (`Netns.isolate`).

Security: clusters are created as routemesh creates them, with a CA. `cluster init` writes the
admin client certificate into `<cluster dir>/cli` (`Cluster.cert_dir`), nodes join with the
tokens it printed (`Cluster.worker_token`, `Cluster.manager_token`), the admin API is TLS 1.3:
`api()`/`request()` use the admin certificate (`Cluster.tls`, an ssl.SSLContext; pass
`tls=...` for another one, `tls=False` for plain HTTP) and `Cluster.cli()` sets
ROUTEMESH_CERT_DIR.
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import http.client

import harness
import linearizability

HTTP_PORT = 8080
ADMIN_PORT = 9901
PEER_PORT = 7946

READY_RX = r"cluster ready: role=(\w+) id=([0-9a-fA-F]+)"
TOKEN_RX = r"(RMTKN-1-[0-9a-f]{64}-[0-9a-f]{32})@"


def bin_path():
    return os.path.abspath(harness.BIN)


# ------------------------------------------------------------------------------------------
# HTTP JSON client for the admin API
# ------------------------------------------------------------------------------------------

class Refused(Exception):
    """The request was not sent: connection refused (the target is down). No effect."""


class Unknown(Exception):
    """The request may have been sent and its outcome is unknown (timeout, reset, EOF)."""


def client_tls(cert_dir, with_cert=True):
    """An ssl.SSLContext for the admin API: TLS 1.3, trusting `cert_dir`/ca.pem only (host
    names are not checked: routemesh's own clients check the node identity instead), presenting
    `cert_dir`/cert.pem + key.pem unless `with_cert` is False."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(os.path.join(cert_dir, "ca.pem"))
    if with_cert:
        ctx.load_cert_chain(os.path.join(cert_dir, "cert.pem"), os.path.join(cert_dir, "key.pem"))
    return ctx


OVERLAY_PORT = 4789  # node.overlay's default port in cluster mode


def overlay_tls_context(ca_from, present=None):
    """A TLS client context for a node's overlay port (mutual TLS): trusts the cluster CA in
    node `ca_from`'s data_dir; presents `present`'s node certificate when it is a node, the
    files cert.pem/key.pem of `present` when it is a directory (a user's, e.g. the CLI's), or
    nothing when it is None."""
    tls_dir = os.path.join(ca_from.data_dir, "tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(os.path.join(tls_dir, "ca.pem"))
    if isinstance(present, str):
        ctx.load_cert_chain(os.path.join(present, "cert.pem"), os.path.join(present, "key.pem"))
    elif present is not None:
        d = os.path.join(present.data_dir, "tls")
        ctx.load_cert_chain(os.path.join(d, "node.pem"), os.path.join(d, "node-key.pem"))
    return ctx


def overlay_preamble(node, line, present, timeout=5):
    """Sends one preamble line to `node`'s overlay port inside TLS with node `present`'s
    certificate (as another node would); returns the one-byte answer (b"" when closed)."""
    raw = socket.create_connection((node.ip, OVERLAY_PORT), timeout=timeout)
    with overlay_tls_context(present, present).wrap_socket(raw) as s:
        s.sendall(line)
        return s.recv(1)


def request(addr, method, path, body=None, headers=None, timeout=10.0, tls=None):
    """One admin API request with extra request `headers`, over TLS with the ssl.SSLContext
    `tls` (None or False: plain HTTP). Returns (status, {lower-case header name: value}, parsed
    JSON or text). Raises as api() does."""
    data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
    if isinstance(data, str):
        data = data.encode()
    host, _, port = addr.rpartition(":")
    if tls:
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=tls)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        try:
            conn.connect()
        except ConnectionRefusedError as e:
            raise Refused(f"{method} {addr}{path}: {e}") from e
        except OSError as e:
            # no route, unreachable, a connect timeout or a failed TLS handshake: nothing was
            # sent either
            raise Refused(f"{method} {addr}{path}: {e!r}") from e
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            raw = r.read()
        except (OSError, http.client.HTTPException) as e:
            raise Unknown(f"{method} {addr}{path}: {e!r}") from e
        text = raw.decode(errors="replace")
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = text
        return r.status, {k.lower(): v for k, v in r.getheaders()}, parsed
    finally:
        conn.close()


def api(addr, method, path, body=None, timeout=10.0, tls=None):
    """One admin API request. Returns (status, parsed JSON or text). 4xx/5xx are answers, not
    exceptions. Raises Refused when nothing was sent, Unknown when the outcome is unknown."""
    status, _, parsed = request(addr, method, path, body, timeout=timeout, tls=tls)
    return status, parsed


def stale(path):
    """`path` with stale=true added: the node answers from its own copy, not through the leader."""
    return path + ("&" if "?" in path else "?") + "stale=true"


def metric(text, name, labels=None):
    """The value of one sample of a Prometheus text page (0.0 when absent): `name` with exactly
    these `labels` (a dict)."""
    want = labels or {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if got == want:
            return float(m.group(3))
    return 0.0


def error_of(body):
    """The {"code","message","field"} object of an API error body, or {}."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return {}


def find_objects(value, key="name"):
    """Every dict (at any depth) that has `key`: a lenient reader of list-shaped JSON."""
    out = []
    if isinstance(value, dict):
        if key in value:
            out.append(value)
        for v in value.values():
            out += find_objects(v, key)
    elif isinstance(value, list):
        for v in value:
            out += find_objects(v, key)
    return out


def services_by_name(body):
    """{name: service} from a GET /v1/services answer."""
    svcs = body.get("services", []) if isinstance(body, dict) else []
    return {s["name"]: s for s in svcs}


def canonical(value):
    return json.dumps(value, sort_keys=True)


# ------------------------------------------------------------------------------------------
# Network namespaces (optional): one namespace per node on a private bridge
# ------------------------------------------------------------------------------------------

def _ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


class Netns:
    """A private bridge and one namespace per node (names carry the pid so parallel runs do not
    clash). Node k gets `<prefix>.<10+k>`; the bridge (the test process's side) `<prefix>.1`.
    No traffic leaves the machine: the bridge has no uplink. `isolate(ip)` installs `prohibit`
    routes both ways between that node and every other node (the test process still reaches
    everyone); `heal()` removes them."""

    def __init__(self, count, prefix=None):
        tag = f"{os.getpid() % 100000}"
        self.prefix = prefix or f"10.201.{100 + os.getpid() % 150}"
        self.bridge = f"rmbr{tag}"[:15]
        self.names, self.ips, self.veths = [], [], []
        self.blocked = []  # (ns, dst ip)
        self.ready = False
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.prefix}.1/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for k in range(1, count + 1):
                ns = f"rm{tag}n{k}"
                veth = f"rm{tag}v{k}"[:15]
                ip = f"{self.prefix}.{10 + k}"
                _ip("netns", "add", ns)
                self.names.append(ns)
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                self.veths.append(veth)
                _ip("link", "set", veth, "master", self.bridge)
                _ip("link", "set", veth, "up")
                _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                self.ips.append(ip)
            self.ready = True
        except Exception:
            self.close()
            raise

    def ns_of(self, ip):
        return self.names[self.ips.index(ip)]

    def prefix_args(self, ip):
        return ["ip", "netns", "exec", self.ns_of(ip)]

    def isolate(self, ip):
        """Cuts every packet between `ip` and the other nodes, in both directions."""
        for other in self.ips:
            if other == ip:
                continue
            for ns, dst in ((self.ns_of(ip), other), (self.ns_of(other), ip)):
                _ip("-n", ns, "route", "add", "prohibit", f"{dst}/32")
                self.blocked.append((ns, dst))

    def heal(self):
        for ns, dst in self.blocked:
            _ip("-n", ns, "route", "del", "prohibit", f"{dst}/32", check=False)
        self.blocked = []

    def close(self):
        self.heal()
        for v in self.veths:
            _ip("link", "del", v, check=False)
        for ns in self.names:
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.bridge, check=False)
        self.veths, self.names = [], []

    @staticmethod
    def available():
        """None when namespaces can be made here, else the reason they cannot."""
        if shutil.which("ip") is None:
            return "the `ip` tool (iproute2) is not installed"
        probe = f"rmprobe{os.getpid() % 100000}"
        r = _ip("netns", "add", probe, check=False)
        if r.returncode != 0:
            return f"`ip netns add` failed: {r.stderr.strip()} (needs CAP_SYS_ADMIN/CAP_NET_ADMIN)"
        _ip("netns", "del", probe, check=False)
        return None


# ------------------------------------------------------------------------------------------
# Nodes and clusters
# ------------------------------------------------------------------------------------------

class ClusterNode:
    """One `routemesh node` of a cluster. Survives kill9()/start() cycles: its config and
    data_dir stay in place."""

    def __init__(self, cluster, name, ip, role):
        self.cluster, self.name, self.ip, self.role = cluster, name, ip, role
        self.dir = os.path.join(cluster.dir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.data_dir = os.path.join(self.dir, "data")
        self.config_path = os.path.join(self.dir, f"{name}.yaml")
        self.proc = None
        self.id = None
        self.runs = []  # every Proc this node ever ran (for logs)
        # Top-level sections merged into this node's config (e.g. {"firewall": {...}}); set it
        # and call write_config() to change one node.
        self.extra = dict(cluster.node_extra)
        self.write_config()

    # -- addresses ---------------------------------------------------------------------------
    @property
    def admin(self):
        return f"{self.ip}:{ADMIN_PORT}"

    @property
    def peer(self):
        return f"{self.ip}:{PEER_PORT}"

    @property
    def is_manager(self):
        return self.role == "manager"

    def config(self):
        c = self.cluster
        cluster = {"role": self.role, "data_dir": self.data_dir, "tick_ms": c.tick_ms,
                   "election_ticks": c.election_ticks, "heartbeat_ticks": c.heartbeat_ticks}
        if self.is_manager:
            cluster["peer"] = self.peer
        cluster.update(c.cluster_extra)
        node = {"name": self.name, "listen": self.ip, "http_port": HTTP_PORT, "admin": self.admin,
                "threads": 1, "access_log": {"enabled": False},
                **(c.node_settings(self) if callable(c.node_settings) else c.node_settings)}
        return {"node": node, "cluster": cluster, "timeouts": {"drain_ms": 2000}, **self.extra}

    def write_config(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config(), f, indent=1)

    def _prefix(self):
        return self.cluster.netns.prefix_args(self.ip) if self.cluster.netns else []

    # -- lifecycle ---------------------------------------------------------------------------
    def init(self):
        """`routemesh cluster init --config` (first manager only). Returns its stdout."""
        r = subprocess.run(self._prefix() + [bin_path(), "cluster", "init", "--config", self.config_path,
                                             "--cert-dir", self.cluster.cert_dir,
                                             *self.cluster.init_args],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError(f"cluster init for {self.name} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r.stdout + r.stderr

    def start(self, join=None, wait=True, timeout=30.0, token=None, extra_args=(), env=None,
              stdin=subprocess.DEVNULL):
        """Starts the node; `join` is a manager's admin address for a first start, joined with
        `token` (default: the cluster's token for this node's role; a `join` that already holds
        an '@' is passed as it is). `extra_args` go after the others; `env` (a dict) is added
        to this process's environment; `stdin` is the process's standard input (a file
        descriptor, e.g. a pty's, or subprocess.DEVNULL)."""
        args = self._prefix() + [bin_path(), "node", "--config", self.config_path]
        if join:
            if "@" not in join:
                join = f"{token or self.cluster.token_for(self.role)}@{join}"
            args += ["--join", join]
        args += list(extra_args)
        self.proc = harness.Proc(args, env=None if env is None else {**os.environ, **env},
                                 stdin=stdin)
        self.runs.append(self.proc)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30.0):
        rx = re.compile(READY_RX)

        def find():
            for l in self.proc.lines("err") + self.proc.lines("out"):
                m = rx.search(l)
                if m:
                    return m
            if self.proc.p.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.p.returncode} before "
                                     f"`cluster ready`:\n{self.log_tail()}")
            return None
        m = harness.wait_until(find, timeout, what=f"`cluster ready` from {self.name}")
        if m.group(1) != self.role:
            raise AssertionError(f"{self.name}: ready as {m.group(1)}, expected {self.role}")
        node_id = m.group(2).lower()
        if self.id is not None and node_id != self.id:
            raise AssertionError(f"{self.name} came back with id {node_id}, was {self.id}")
        self.id = node_id
        return node_id

    @property
    def alive(self):
        return self.proc is not None and self.proc.p.poll() is None

    def kill9(self):
        if self.alive:
            self.proc.p.send_signal(signal.SIGKILL)
            self.proc.p.wait(10)
        if self.proc is not None:
            self.proc.stop()

    def stop(self, timeout=15.0):
        if self.proc is not None:
            return self.proc.stop(signal.SIGTERM, timeout)
        return None

    def freeze(self):
        self.proc.signal(signal.SIGSTOP)

    def thaw(self):
        self.proc.signal(signal.SIGCONT)

    def connected_to(self, port=ADMIN_PORT):
        """Remote "IP:PORT"s of this process's established TCP connections to `port`, read from
        /proc (what the OS sees, whatever the node logs): e.g. the manager a worker watches."""
        pid = self.proc.p.pid
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        out = []
        with open(f"/proc/{pid}/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                remote, state, inode = parts[2], parts[3], parts[9]
                if state != "01" or inode not in inodes:
                    continue
                hexip, hexport = remote.split(":")
                ip = ".".join(str(int(hexip[i:i + 2], 16)) for i in (6, 4, 2, 0))
                if int(hexport, 16) == port:
                    out.append(f"{ip}:{int(hexport, 16)}")
        return out

    def log_tail(self, n=40):
        lines = []
        for i, p in enumerate(self.runs):
            lines.append(f"--- {self.name} run {i + 1} ({'alive' if p.p.poll() is None else f'exit {p.p.returncode}'})")
            lines += p.lines("err")[-n:]
            lines += p.lines("out")[-5:]
        return "\n".join(lines)

    # -- API ---------------------------------------------------------------------------------
    def api(self, method, path, body=None, timeout=10.0, tls=None):
        """An admin API request with the cluster's admin certificate (or the ssl.SSLContext
        `tls`; False: plain HTTP)."""
        return api(self.admin, method, path, body, timeout,
                   tls=self.cluster.tls if tls is None else tls)

    def get(self, path, timeout=10.0, tls=None):
        return self.api("GET", path, timeout=timeout, tls=tls)

    def request(self, method, path, body=None, headers=None, timeout=10.0, tls=None):
        """(status, headers, body): api() with extra request headers and the answer's headers."""
        return request(self.admin, method, path, body, headers, timeout,
                       tls=self.cluster.tls if tls is None else tls)

    def local(self, path, timeout=10.0):
        """GET of this node's own copy (?stale=true): (status, body)."""
        return self.get(stale(path), timeout=timeout)

    def metrics(self, timeout=5.0):
        """This node's /metrics page as text."""
        s, _, b = self.request("GET", "/metrics", timeout=timeout)
        if s != 200:
            raise AssertionError(f"/metrics on {self.name}: {s} {b}")
        return b if isinstance(b, str) else json.dumps(b)

    def status(self):
        """GET /v1/cluster as this node sees it (?stale=true: its own account, not the
        leader's), or None when the node does not answer 200."""
        try:
            s, b = self.local("/v1/cluster", timeout=3)
        except (Refused, Unknown):
            return None
        return b if s == 200 and isinstance(b, dict) else None

    def routes_revision(self):
        """The revision of the RouteTable this node's proxy routes with (None when down)."""
        try:
            s, b = self.get("/v1/routes", timeout=3)
        except (Refused, Unknown):
            return None
        return b.get("revision") if s == 200 and isinstance(b, dict) else None

    def route(self, host, path="/", timeout=5):
        """(status, headers, body) of a request for `host` on this node's HRM port."""
        return harness.http(self.ip, HTTP_PORT, path, host=host, timeout=timeout)

    def served_by(self, host, path="/"):
        """The whoami name that served `host` here, or None when not 200."""
        try:
            st, hdrs, body = self.route(host, path)
        except OSError:
            return None
        if st != 200:
            return None
        return hdrs.get("x-whoami-name") or harness.parse_whoami(body)["name"]

    def credentials(self):
        """This node's own client credentials (its certificate from data_dir/tls): an
        ssl.SSLContext that speaks to the admin API as this node."""
        d = os.path.join(self.data_dir, "tls")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.load_verify_locations(os.path.join(d, "ca.pem"))
        ctx.load_cert_chain(os.path.join(d, "node.pem"), os.path.join(d, "node-key.pem"))
        return ctx

    def __repr__(self):
        return f"<{self.role} {self.name} {self.ip} id={self.id}>"


class Cluster:
    def __init__(self, first_ip, roles, tick_ms=50, election_ticks=10, heartbeat_ticks=1,
                 netns=None, node_extra=None, node_settings=None, init_args=(), **cluster_extra):
        """`first_ip` is the first node's address (127.0.0.X; the k-th node gets X+k-1) unless
        `netns` (a Netns) is given, whose addresses are used. roles[0] must be a manager.
        `node_extra`: top-level config sections every node gets (ClusterNode.extra);
        `node_settings`: keys added to every node's `node:` section (e.g. https_port), or a
        function of the ClusterNode that returns them. `init_args`: more arguments for the
        first manager's `cluster init` (e.g. --ca-cert F --ca-key F)."""
        assert roles and roles[0] == "manager"
        self.init_args = list(init_args)
        self.dir = tempfile.mkdtemp(prefix="rm-cluster-")
        self.tick_ms, self.election_ticks, self.heartbeat_ticks = tick_ms, election_ticks, heartbeat_ticks
        self.cluster_extra = cluster_extra
        self.node_extra = node_extra or {}
        self.node_settings = node_settings or {}
        self.netns = netns
        if netns is not None:
            ips = netns.ips[:len(roles)]
        else:
            a, b, c, d = first_ip.split(".")
            ips = [f"{a}.{b}.{c}.{int(d) + i}" for i in range(len(roles))]
        self.nodes = [ClusterNode(self, f"n{i + 1}", ip, role) for i, (ip, role) in enumerate(zip(ips, roles))]
        self.init_output = None
        self.whoamis = []
        # Written by `cluster init` (the admin client certificate) and read from its output.
        self.cert_dir = os.path.join(self.dir, "cli")
        self.tls = None
        self.worker_token = None
        self.manager_token = None

    def token_for(self, role):
        return self.manager_token if role == "manager" else self.worker_token

    def read_init_output(self, text):
        """Takes the join tokens and the admin certificate from `cluster init`'s output."""
        self.init_output = text
        for line in text.splitlines():
            m = re.search(TOKEN_RX, line)
            if m and line.strip().startswith("workers:"):
                self.worker_token = m.group(1)
            elif m and line.strip().startswith("managers:"):
                self.manager_token = m.group(1)
        if not (self.worker_token and self.manager_token):
            raise AssertionError(f"no join tokens in `cluster init`'s output:\n{text}")
        self.tls = client_tls(self.cert_dir)

    # -- views -------------------------------------------------------------------------------
    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    @property
    def managers(self):
        return [n for n in self.nodes if n.is_manager]

    @property
    def workers(self):
        return [n for n in self.nodes if not n.is_manager]

    def alive(self, managers_only=False):
        return [n for n in (self.managers if managers_only else self.nodes) if n.alive]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, join_via=None, timeout=60.0):
        """Initializes the first manager, starts it, then joins every other node one at a time
        (through `join_via[name]` if given, else the first manager) and waits until every
        manager is a voter and every node routes with the leader's revision."""
        deadline = time.monotonic() + timeout
        first = self.nodes[0]
        self.read_init_output(first.init())
        first.start()
        for n in self.nodes[1:]:
            via = (join_via or {}).get(n.name, first).admin
            n.start(join=via, timeout=max(5.0, deadline - time.monotonic()))
        self.wait_voters(timeout=max(5.0, deadline - time.monotonic()))
        self.wait_converged(timeout=max(5.0, deadline - time.monotonic()))
        return self

    def stop(self):
        for n in self.nodes:
            if n.proc is not None and n.proc.p.poll() is None:
                try:
                    n.thaw()
                except Exception:
                    pass
        for n in self.nodes:  # all at once: no node waits for the others' shutdown
            if n.proc is not None:
                n.proc.signal(signal.SIGTERM)
        for n in reversed(self.nodes):
            n.stop()
        for w in self.whoamis:
            w.stop(signal.SIGKILL)
        if os.environ.get("RM_KEEP_CLUSTER_DIR") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def whoami(self, name, ip="127.0.0.1", prefix=()):
        w = harness.Whoami(ip, 0, name, prefix=prefix)
        self.whoamis.append(w)
        return w

    def logs(self, n=40):
        return "\n".join(node.log_tail(n) for node in self.nodes)

    # -- leadership and convergence ----------------------------------------------------------
    def leader(self, timeout=15.0, exclude=()):
        """The manager that is leader by its own account, among live managers not in
        `exclude`, waiting up to `timeout` for one to exist."""
        def find():
            for n in self.alive(managers_only=True):
                if n in exclude:
                    continue
                st = n.status()
                if st and (st.get("leader") or {}).get("name") == n.name:
                    return n
            return None
        try:
            return harness.wait_until(find, timeout, interval=0.05, what="a leader")
        except AssertionError:
            raise AssertionError(f"no leader within {timeout}s\n{self.logs(20)}")

    def followers(self):
        lead = self.leader()
        return [n for n in self.alive(managers_only=True) if n is not lead]

    def wait_voters(self, timeout=30.0):
        """Until the leader lists every live manager as a voter."""
        want = {n.name for n in self.managers}

        def ok():
            lead = self.leader(timeout=max(1.0, timeout))
            st = lead.status() or {}
            voters = {m.get("name") for m in st.get("members", []) if m.get("voter")}
            return want <= voters
        try:
            harness.wait_until(ok, timeout, interval=0.1, what="every manager a voter")
        except AssertionError:
            lead = self.leader()
            raise AssertionError(f"managers not all voters: {lead.status()}\n{self.logs(20)}")

    def consistent_services(self, via=None, timeout=10.0):
        """(revision, {name: service}) from a linearizable read."""
        via = via or self.leader()
        s, b = via.get("/v1/services?consistent=1", timeout=timeout)
        if s != 200:
            raise AssertionError(f"consistent read on {via.name}: {s} {b}")
        return b["revision"], services_by_name(b)

    def wait_converged(self, timeout=20.0, nodes=None):
        """Until every live node (or `nodes`) routes with a table whose revision is the leader's
        revision at a linearizable read point taken now. Returns that revision."""
        rev, _ = self.consistent_services()
        nodes = nodes or self.alive()

        def ok():
            return all((n.routes_revision() or 0) >= rev for n in nodes)
        try:
            harness.wait_until(ok, timeout, interval=0.02, what=f"every node at revision {rev}")
        except AssertionError:
            got = {n.name: n.routes_revision() for n in nodes}
            raise AssertionError(f"not converged on revision {rev}: {got}\n{self.logs(20)}")
        return rev

    # -- CLI ---------------------------------------------------------------------------------
    def cli(self, via, *args, timeout=30.0, env=None):
        """Runs `routemesh --api ADDR ARGS...` where ADDR is `via`'s admin address (or `via`
        itself when it is an "IP:PORT" string; a list of either gives "A,B,C"; None gives no
        --api at all, e.g. with ROUTEMESH_API in `env`, a dict added to the environment);
        returns (exit code, stdout, stderr)."""
        def addr_of(v):
            return v if isinstance(v, str) else v.admin
        if via is None:
            api_args = []
        elif isinstance(via, (list, tuple)):
            api_args = ["--api", ",".join(addr_of(v) for v in via)]
        else:
            api_args = ["--api", addr_of(via)]
        full_env = {**os.environ, "ROUTEMESH_CERT_DIR": self.cert_dir, **(env or {})}
        r = subprocess.run([bin_path(), *api_args, *args], capture_output=True, text=True,
                           timeout=timeout, env=full_env)
        return r.returncode, r.stdout, r.stderr


def wait_routes_everywhere(nodes, host, expect_names, timeout=15.0, path="/"):
    """Until each node serves `host` from a whoami whose name is in `expect_names`."""
    expect_names = set(expect_names)
    last = {}

    def ok():
        done = True
        for n in nodes:
            who = n.served_by(host, path)
            last[n.name] = who
            if who not in expect_names:
                done = False
        return done
    try:
        harness.wait_until(ok, timeout, interval=0.05, what=f"{host} routed on every node")
    except AssertionError:
        raise AssertionError(f"{host} not routed to {sorted(expect_names)} everywhere within {timeout}s: "
                             f"last answers {last}")


def wait_not_routed(nodes, host, timeout=15.0):
    """Until each node answers 404 for `host`."""
    last = {}

    def ok():
        done = True
        for n in nodes:
            try:
                st = n.route(host)[0]
            except OSError as e:
                st = repr(e)
            last[n.name] = st
            if st != 404:
                done = False
        return done
    try:
        harness.wait_until(ok, timeout, interval=0.05, what=f"{host} gone from every node")
    except AssertionError:
        raise AssertionError(f"{host} still routed somewhere after {timeout}s: {last}")


# ------------------------------------------------------------------------------------------
# A bounded write/read workload recording a history for the linearizability checker
# ------------------------------------------------------------------------------------------

class Workload:
    """`clients` threads, each a closed loop for at most `duration` s and `max_ops` ops,
    against random targets from `targets()` (a callable: the list may change as nodes die).
    Ops on register services `reg-0..reg-{keys-1}` (label `test.value`):
    write = PUT /v1/services/NAME, read = GET `read_path` (default /v1/services?consistent=1);
    and create = POST /v1/services of a new unique service `ack-<client>-<n>`. With `cas` > 0
    that share of ops are compare-and-set: GET the register (a read op), then PUT it with the
    version read (a cas op: written values are unique, so the version matches exactly when
    the value does). With `delete` > 0 that share of ops DELETE a service this client created.
    Results go to a linearizability.Recorder (registers) and to `created` (name -> outcome:
    "ok" | "fail" | "unknown" | "deleted")."""

    LABEL = "test.value"

    def __init__(self, recorder, targets, keys=3, clients=4, duration=10.0, max_ops=5000,
                 op_timeout=8.0, seed=1, mix=(0.45, 0.35, 0.20), read_path="/v1/services?consistent=1",
                 cas=0.0, delete=0.0):
        self.rec, self.targets, self.keys, self.clients = recorder, targets, keys, clients
        self.cas, self.delete = cas, delete
        self.read_path = read_path
        self.duration, self.max_ops, self.op_timeout, self.seed, self.mix = duration, max_ops, op_timeout, seed, mix
        self.created = {}
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads = []
        self.acks = []  # (time, kind) of every ok write/create
        self.errors = []  # unexpected answers, for the report
        self.outcomes = {}  # (kind, status or exception name) -> count
        self.samples = {}  # (kind, status) -> first answer body seen, for the report

    def _count(self, kind, what, body=None):
        with self.lock:
            self.outcomes[(kind, what)] = self.outcomes.get((kind, what), 0) + 1
            if body is not None and (kind, what) not in self.samples:
                self.samples[(kind, what)] = str(body)[:300]

    @staticmethod
    def key(i):
        return f"reg-{i}"

    def setup(self, via):
        for i in range(self.keys):
            s, b = via.api("POST", "/v1/services", {"name": self.key(i), "labels": {self.LABEL: "init"}})
            if s != 201:
                raise AssertionError(f"creating {self.key(i)}: {s} {b}")

    def start(self):
        for c in range(self.clients):
            t = threading.Thread(target=self._run, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self, timeout=None):
        self.stop_flag.set()
        limit = time.monotonic() + (timeout if timeout is not None else self.op_timeout + 5)
        for t in self.threads:
            t.join(max(0.1, limit - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def _run(self, c):
        rng = random.Random(self.seed * 1000 + c)
        end = time.monotonic() + self.duration
        n = 0
        while not self.stop_flag.is_set() and time.monotonic() < end and n < self.max_ops:
            n += 1
            targets = self.targets()
            if not targets:
                time.sleep(0.05)
                continue
            node = rng.choice(targets)
            y = rng.random()
            if y < self.cas:
                ok = self._cas(c, n, node, rng)
                if not ok:
                    time.sleep(0.02)
                continue
            if y < self.cas + self.delete:
                ok = self._delete(c, node, rng)
                if not ok:
                    time.sleep(0.02)
                continue
            x = rng.random()
            if x < self.mix[0]:
                ok = self._write(c, n, node, rng)
            elif x < self.mix[0] + self.mix[1]:
                ok = self._read(c, node, rng)
            else:
                ok = self._create(c, n, node)
            if not ok:
                time.sleep(0.02)  # e.g. a fast 503 while there is no leader: do not spin

    def _classify(self, op, fn):
        """Runs fn() -> (status, body); maps the outcome onto the recorder."""
        try:
            s, b = fn()
        except Refused:
            self._count(op.kind, "refused")
            self.rec.fail(op)
            return None, None
        except Unknown as e:
            self._count(op.kind, f"unknown: {e.__cause__.__class__.__name__}")
            self.rec.info(op)
            return None, None
        self._count(op.kind, s, b if s >= 300 else None)
        return s, b

    def _write(self, c, n, node, rng):
        name = self.key(rng.randrange(self.keys))
        value = f"c{c}-{n}"
        op = self.rec.invoke(name, "write", value, client=c)
        s, b = self._classify(op, lambda: node.api("PUT", f"/v1/services/{name}",
                                                   {"name": name, "labels": {self.LABEL: value}},
                                                   timeout=self.op_timeout))
        if s is None:
            return False
        if s == 200:
            self.rec.ok(op)
            with self.lock:
                self.acks.append((time.monotonic(), "write"))
            return True
        if 400 <= s < 500:
            self.rec.fail(op)
            self.errors.append(f"PUT {name} on {node.name}: {s} {b}")
        else:
            self.rec.info(op)  # 503 (not committed in time / no leader) or 5xx: unknown outcome
        return False

    def _read(self, c, node, rng):
        name = self.key(rng.randrange(self.keys))
        op = self.rec.invoke(name, "read", client=c)
        s, b = self._classify(op, lambda: node.get(self.read_path, timeout=self.op_timeout))
        if s is None:
            return False
        if s == 200:
            svc = services_by_name(b).get(name)
            self.rec.ok(op, None if svc is None else svc.get("labels", {}).get(self.LABEL))
            return True
        else:
            self.rec.fail(op)  # a read that did not answer tells nothing
            if s < 500:
                self.errors.append(f"GET on {node.name}: {s} {b}")
        return False

    def _cas(self, c, n, node, rng):
        name = self.key(rng.randrange(self.keys))
        rop = self.rec.invoke(name, "read", client=c)
        s, b = self._classify(rop, lambda: node.get(f"/v1/services/{name}", timeout=self.op_timeout))
        if s != 200:
            if s is not None:
                self.rec.fail(rop)
            return False
        svc = b.get("service", b) if isinstance(b, dict) else {}
        old = svc.get("labels", {}).get(self.LABEL)
        self.rec.ok(rop, old)
        new = f"c{c}-{n}-cas"
        op = self.rec.invoke(name, "cas", (old, new), client=c)
        s, b = self._classify(op, lambda: node.api(
            "PUT", f"/v1/services/{name}",
            {"name": name, "labels": {self.LABEL: new}, "version": svc.get("version")},
            timeout=self.op_timeout))
        if s is None:
            return False
        if s == 200:
            self.rec.ok(op, True)
            with self.lock:
                self.acks.append((time.monotonic(), "cas"))
            return True
        if s == 409:
            self.rec.ok(op, False)  # the version moved: the value was not `old` any more
            return True
        if 400 <= s < 500:
            self.rec.fail(op)
            self.errors.append(f"CAS PUT {name} on {node.name}: {s} {b}")
        else:
            self.rec.info(op)
        return False

    def _delete(self, c, node, rng):
        with self.lock:
            mine = sorted(k for k, o in self.created.items() if o == "ok" and k.startswith(f"ack-{c}-"))
        if not mine:
            return False
        name = rng.choice(mine)
        try:
            s, b = node.api("DELETE", f"/v1/services/{name}", timeout=self.op_timeout)
        except Refused:
            self._count("delete", "refused")
            return False
        except Unknown as e:
            self._count("delete", f"unknown: {e.__cause__.__class__.__name__}")
            with self.lock:
                self.created[name] = "unknown"
            return False
        self._count("delete", s, b if s >= 300 else None)
        with self.lock:
            if s == 200:
                self.created[name] = "deleted"
                self.acks.append((time.monotonic(), "delete"))
                return True
            if 400 <= s < 500:
                self.errors.append(f"DELETE {name} on {node.name}: {s} {b}")
            else:
                self.created[name] = "unknown"
        return False

    def _create(self, c, n, node):
        name = f"ack-{c}-{n}"
        try:
            s, b = node.api("POST", "/v1/services", {"name": name, "labels": {}}, timeout=self.op_timeout)
        except Refused:
            self._count("create", "refused")
            return False
        except Unknown as e:
            self._count("create", f"unknown: {e.__cause__.__class__.__name__}")
            with self.lock:
                self.created[name] = "unknown"
            return False
        self._count("create", s, b if s >= 300 else None)
        with self.lock:
            if s == 201:
                self.created[name] = "ok"
                self.acks.append((time.monotonic(), "create"))
                return True
            if 400 <= s < 500:
                self.created[name] = "fail"
                self.errors.append(f"POST {name} on {node.name}: {s} {b}")
            else:
                self.created[name] = "unknown"
        return False


class SharedClusterTest(unittest.TestCase):
    """A test class whose tests share one cluster (`FIRST_IP`, `ROLES`, `CLUSTER_ARGS`),
    started once; `prepare(cluster)` may add to it. Nodes a test stops with self.freeze() are
    thawed after it, and a leader and every voter are back before the next test."""
    FIRST_IP = None
    ROLES = ["manager"] * 3
    CLUSTER_ARGS = {}

    @classmethod
    def prepare(cls, c):
        pass

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(cls.FIRST_IP, cls.ROLES, **cls.CLUSTER_ARGS)
        try:
            cls.c.start()
            cls.prepare(cls.c)
        except BaseException:
            cls.c.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    def setUp(self):
        self.frozen = []

    def tearDown(self):
        for n in self.frozen:
            n.thaw()
        if self.frozen:
            self.c.leader(timeout=20)
            self.c.wait_voters(timeout=20)

    def freeze(self, *nodes):
        for n in nodes:
            n.freeze()
            self.frozen.append(n)


# ------------------------------------------------------------------------------------------
# Steady load (the rotation and renewal tests)
# ------------------------------------------------------------------------------------------

class SteadyLoad:
    """Background load until stopped (bounded by `limit_s`), every failure counted:
      - "keepalive": GETs on one kept-alive connection to the first manager's published port
        `port` for `host` (a new connection only when the proxy says `Connection: close`; any
        error is a failure);
      - "fresh": one GET per new connection, round robin over the managers' published port;
      - "cli": `routemesh service ls` every 0.5 s, round robin over the managers, with the
        CLI's default cert dir, which must list `service`.
    Every request must be a 200 from the whoami task `task_name`."""

    def __init__(self, c, managers, task_name, service, host, port, limit_s):
        self.c, self.managers, self.task_name = c, list(managers), task_name
        self.service, self.host, self.port, self.limit_s = service, host, port, limit_s
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.ok = {"keepalive": [], "fresh": [], "cli": []}  # monotonic times of successes
        self.failures = []  # (monotonic time, kind, description)
        self.t0 = time.monotonic()
        self.threads = [threading.Thread(target=f, daemon=True)
                        for f in (self._keepalive, self._fresh, self._cli)]
        for t in self.threads:
            t.start()

    def _running(self):
        return not self.stop_ev.is_set() and time.monotonic() - self.t0 < self.limit_s

    def _record(self, kind, failure=None):
        with self.lock:
            if failure is None:
                self.ok[kind].append(time.monotonic())
            else:
                self.failures.append((time.monotonic(), kind, failure))

    def _check(self, status, headers, body):
        """None when the answer is the task's 200, else why not."""
        who = headers.get("x-whoami-name") or harness.parse_whoami(body)["name"]
        if status != 200 or who != self.task_name:
            return f"{status} from {who!r}: {body[:120]!r}"
        return None

    def _keepalive(self):
        node = self.managers[0]
        client = None
        while self._running():
            try:
                if client is None:
                    client = harness.Client(node.ip, self.port, timeout=10)
                r = client.request("GET", "/keepalive", host=self.host)
                why = self._check(r.status, {k.lower(): v for k, v in r.headers}, r.body)
                self._record("keepalive", why and f"{node.name}: {why}")
                if (r.header("connection") or "").lower() == "close":
                    client.close()
                    client = None
            except Exception as e:  # noqa: BLE001 - every failure is counted
                self._record("keepalive", f"{node.name}: {e!r}")
                if client is not None:
                    client.close()
                client = None
                time.sleep(0.05)
            time.sleep(0.01)
        if client is not None:
            client.close()

    def _fresh(self):
        k = 0
        while self._running():
            node = self.managers[k % len(self.managers)]
            k += 1
            try:
                status, headers, body = harness.http(node.ip, self.port, "/fresh", host=self.host,
                                                     headers={"Connection": "close"}, timeout=10)
                why = self._check(status, headers, body)
                self._record("fresh", why and f"{node.name}: {why}")
            except Exception as e:  # noqa: BLE001
                self._record("fresh", f"{node.name}: {e!r}")
                time.sleep(0.05)
            time.sleep(0.02)

    def _cli(self):
        k = 0
        while self._running():
            node = self.managers[k % len(self.managers)]
            k += 1
            started = time.monotonic()
            try:
                rc, out, err = self.c.cli(node, "service", "ls", timeout=25)
                if rc == 0 and re.search(rf"^{re.escape(self.service)}\s", out, re.M):
                    self._record("cli")
                else:
                    self._record("cli", f"service ls via {node.name}: exit {rc}: "
                                        f"{err.strip()[-300:]} {out.strip()[:100]}")
            except Exception as e:  # noqa: BLE001
                self._record("cli", f"service ls via {node.name}: {e!r}")
            self.stop_ev.wait(max(0.0, 0.5 - (time.monotonic() - started)))

    def successes(self, kind, after=None):
        with self.lock:
            return sum(1 for t in self.ok[kind] if after is None or t > after)

    def finish(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(40)
        return not any(t.is_alive() for t in self.threads)

    def report(self, t0):
        with self.lock:
            counts = ", ".join(f"{k} {len(v)} ok" for k, v in self.ok.items())
            fails = [f"  {t - t0:+.2f}s {kind}: {what}" for t, kind, what in self.failures[:20]]
        return f"{counts}, {len(self.failures)} failed" + ("\n" + "\n".join(fails) if fails else "")


# ------------------------------------------------------------------------------------------
# Rolling updates (the overlay test and bench/rolling_update.py)
# ------------------------------------------------------------------------------------------

CHECKED_LABELS = {"mesh.health.check": "http", "mesh.health.interval_ms": "100",
                  "mesh.health.healthy": "1", "mesh.health.unhealthy": "2"}


def task_health(c, task_id):
    """A task's health as the leader reads it, or None when it is gone."""
    s, b = c.leader().get(f"/v1/tasks/{task_id}")
    if s != 200:
        return None
    return b.get("task", b).get("health")


def wait_task_health(c, task_id, want, timeout=15):
    harness.wait_until(lambda: task_health(c, task_id) == want, timeout, interval=0.05,
                       what=f"task {task_id} {want}")


def add_task(c, service, node, address):
    """POST /v1/tasks; returns the new task's id."""
    s, b = c.leader().api("POST", "/v1/tasks", {"service": service, "node": node.name,
                                                "address": address})
    if s != 201:
        raise AssertionError(f"adding a task of {service} on {node.name}: {s} {b}")
    return b["task"]["id"] if "task" in b else b["id"]


def roll_task(c, service, node, old_id, old_proc, new_name, ip):
    """One step of a rolling update, as an operator does it with routemesh (it schedules
    nothing): start the new whoami on `node` (in its namespace) at `ip`, add its task, wait
    until the node's health check passed, drain the old task, wait until every node routes
    without it, stop it, remove its task. Returns (new task id, new whoami)."""
    prefix = c.netns.prefix_args(node.ip) if c.netns else ()
    w = c.whoami(new_name, ip, prefix=prefix)
    tid = add_task(c, service, node, f"{ip}:{w.port}")
    wait_task_health(c, tid, "healthy")
    s, b = c.leader().api("PUT", f"/v1/tasks/{old_id}", {"health": "draining"})
    if s != 200:
        raise AssertionError(f"draining {old_id}: {s} {b}")
    c.wait_converged()
    time.sleep(0.2)  # requests already sent to it finish
    old_proc.stop()
    s, b = c.leader().api("DELETE", f"/v1/tasks/{old_id}")
    if s != 200:
        raise AssertionError(f"removing {old_id}: {s} {b}")
    return tid, w


class HttpLoad:
    """Keep-alive GET loops against every node's HRM port until stopped (bounded: `limit_s`
    seconds and 100k requests per thread). Counts answers by status and socket errors."""

    def __init__(self, nodes, host, per_node=2, limit_s=60):
        self.host, self.stop_ev, self.limit_s = host, threading.Event(), limit_s
        self.lock = threading.Lock()
        self.ok, self.bad, self.errors = 0, [], []
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True)
                        for n in nodes for _ in range(per_node)]
        for t in self.threads:
            t.start()

    def run(self, node):
        client, deadline = None, time.monotonic() + self.limit_s
        for _ in range(100_000):
            if self.stop_ev.is_set() or time.monotonic() > deadline:
                break
            try:
                if client is None:
                    client = harness.Client(node.ip, HTTP_PORT, timeout=5)
                r = client.request("GET", "/", host=self.host)
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                    else:
                        self.bad.append((node.name, r.status, r.body[:100]))
                if (r.header("connection") or "").lower() == "close":
                    client.close()
                    client = None
            except Exception as e:  # noqa: BLE001 - every failure is counted
                with self.lock:
                    self.errors.append((node.name, repr(e)))
                if client is not None:
                    client.close()
                client = None
        if client is not None:
            client.close()

    def finish(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(10)
        return self.ok, self.bad, self.errors


def verify_workload(test, c, load, rec, name):
    """The checks after a Workload ran through faults (the workload stopped, the faults
    healed): no acknowledged create lost and no acknowledged delete undone, no unexpected 4xx,
    the registers' history linearizable (closed by a final linearizable read), every node at
    the leader's revision with the same services, and the cluster still committing through
    each node."""
    # No acknowledged write lost: every acked create is there (read linearizably),
    # every definitely failed one is not.
    lead = c.leader()
    t_read = time.monotonic()
    rev, svcs = c.consistent_services(via=lead)
    t_read_done = time.monotonic()
    lost = sorted(n for n, o in load.created.items() if o == "ok" and n not in svcs)
    undead = sorted(n for n, o in load.created.items() if o == "deleted" and n in svcs)
    test.assertFalse(lost, f"{len(lost)} acknowledged creates lost: {lost[:10]}")
    test.assertFalse(undead, f"{len(undead)} acknowledged deletes undone: {undead[:10]}")
    phantom = sorted(n for n, o in load.created.items() if o == "fail" and n in svcs)
    test.assertFalse(phantom, f"creates that failed with 4xx exist: {phantom[:10]}")

    # Every op of the workload is valid: a 4xx answer is a bug (e.g. a retried create).
    test.assertFalse(load.errors, f"unexpected 4xx answers: {load.errors[:5]}")

    # The final read closes the history: the last acknowledged write of each register
    # survives (or a write of unknown outcome overtook it), as the checker decides.
    for i in range(load.keys):
        op = rec.invoke(load.key(i), "read", client="final")
        rec.ok(op, svcs[load.key(i)]["labels"].get(load.LABEL))
        op.call, op.ret = t_read, t_read_done
    hist = rec.history()
    res = linearizability.check_kv(hist, init="init", max_steps=20_000_000)
    if res.ok is not True:
        path = os.path.join(tempfile.gettempdir(), f"rm-{name}-history-{os.getpid()}.jsonl")
        linearizability.dump(hist, path)
        test.fail(f"{res.explain()}\n(history saved to {path}; linearizability.load() reads it)")
    print(f"  linearizable: {res.explain()}; {sum(1 for o in hist if o.pending)} writes of "
          f"unknown outcome", flush=True)
    test.assertGreater(sum(1 for o in hist if o.kind == "write" and not o.pending), 20)
    test.assertGreater(sum(1 for o in hist if o.kind == "read"), 20)

    # Every manager, the restarted ones included, holds exactly the leader's state at that
    # linearizable read point (in its own copy: ?stale=true); every worker routes with it.
    for n in c.workers:
        harness.wait_until(lambda: (n.routes_revision() or 0) >= rev, timeout=15, interval=0.1,
                           what=f"worker {n.name} routing with revision {rev}")
    for n in c.managers:
        def caught_up():
            try:
                s, b = n.local("/v1/services")
            except (Refused, Unknown):
                return False
            return s == 200 and b.get("revision") == rev and \
                canonical(services_by_name(b)) == canonical(svcs)
        try:
            harness.wait_until(caught_up, timeout=15, interval=0.1, what=f"{n.name} at revision {rev}")
        except AssertionError:
            s, b = n.local("/v1/services")
            test.fail(f"{n.name} did not catch up to revision {rev}: it has {b.get('revision')}\n"
                      f"{n.log_tail(30)}")
        test.assertGreaterEqual(n.routes_revision() or 0, rev)
    # ...in a cluster that still commits, through any of them.
    for n in c.managers:
        s, b = n.api("POST", "/v1/services", {"name": f"after-{n.name}", "labels": {}})
        test.assertEqual(s, 201, b)

