"""A raw HTTP/1.1 backend whose misbehaviour is chosen per request, for data-path tests.

The first path segment picks the script (`/ok`, `/overflow`, `/late`, ...); query parameters
tune it (`?ms=300`). Every request it reads is recorded with its connection's serial number,
so a test can tell which upstream connection carried what and how often a request arrived.
Standard library only.
"""
import socket
import time
import urllib.parse

import harness

FORGED = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Forged: 1\r\n\r\nEVIL!"


class Request:
    def __init__(self, conn, method, target, version, headers, body):
        self.conn, self.method, self.target, self.version = conn, method, target, version
        self.headers, self.body = headers, body  # headers: list of (name lower-case, value)
        u = urllib.parse.urlsplit(target)
        self.path = u.path
        self.query = dict(urllib.parse.parse_qsl(u.query))

    def header(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def __repr__(self):
        return f"<{self.method} {self.target} conn={self.conn} body={self.body!r}>"


class ScriptedBackend(harness._ThreadedServer):
    """Answers each request by the script its path names. Scripts:

    /ok                 200, body "ok <conn>", keep-alive (X-Conn: connection serial)
    /echo               200, body = the request head as received + the body
    /overflow           200 with Content-Length 2, then a forged response in the same write
    /late?ms=N          200 "ok", then N ms later a forged response on the idle connection
    /head-body          (HEAD) head with Content-Length 5, then 5 body bytes anyway
    /nocontent-body     204, then a forged response in the same write
    /idle-408?ms=N      200 "ok", then N ms later "408" and close (a backend's idle timeout)
    /idle-close?ms=N    200 "ok", then N ms later close without a byte
    /die                read the request (and body), close without answering
    /die-once?id=X      like /die the first time an id is seen, /ok after that
    /mid-body           head with Content-Length 1000, 10 body bytes, close
    /stream?ms=N        head with Content-Length 10, 5 bytes, N ms later 5 more
    /early-stream?ms=N  like /stream, but answers right after the request head, body unread
    /slow?ms=N          wait N ms, then 200 "ok"
    /switch?proto=P     101 Switching Protocols with Upgrade: P, then echo bytes
    /switch-bye?proto=P 101 Switching Protocols and "bye", sent with the FIN in one segment
    """

    def __init__(self, ip="127.0.0.1", port=0):
        self.requests = []
        self.serial = 0
        self.seen_ids = set()
        super().__init__(ip, port)

    def count(self, pred):
        with self.lock:
            return sum(1 for r in self.requests if pred(r))

    def handle(self, c):
        with self.lock:
            self.serial += 1
            conn = self.serial
        f = c.makefile("rb")
        while True:
            req = self._read_request(f, conn)
            if req is None:
                return
            with self.lock:
                self.requests.append(req)
            if not self._answer(c, req):
                return

    @staticmethod
    def _read_request(f, conn):
        line = f.readline(65537)
        if not line:
            return None
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3:
            return None
        headers = []
        while True:
            h = f.readline(65537)
            if not h:
                return None
            if h in (b"\r\n", b"\n"):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers.append((k.strip().lower(), v.strip()))
        hd = dict(headers)
        body = b""
        if parts[1].startswith("/early-"):
            pass  # answered before the body is read (an early response)
        elif "chunked" in hd.get("transfer-encoding", "").lower():
            while True:
                size = int(f.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while f.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += f.read(size)
                f.read(2)
        elif "content-length" in hd:
            body = f.read(int(hd["content-length"]))
        return Request(conn, parts[0], parts[1], parts[2], headers, body)

    def _answer(self, c, req):
        """Writes the scripted answer; False ends the connection."""
        name = req.path.strip("/").split("/")[0]
        ms = int(req.query.get("ms", "200"))
        ok = f"ok {req.conn}".encode()
        plain = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Conn: %d\r\n\r\n" % (len(ok), req.conn)
                 + (b"" if req.method == "HEAD" else ok))
        if name == "ok":
            c.sendall(plain)
        elif name == "echo":
            head = f"{req.method} {req.target} {req.version}\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in req.headers)
            body = head.encode("latin-1") + b"\r\n" + req.body
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        elif name == "overflow":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + FORGED)
        elif name == "late":
            c.sendall(plain)
            time.sleep(ms / 1000)
            c.sendall(FORGED)
        elif name == "head-body":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!")
        elif name == "nocontent-body":
            c.sendall(b"HTTP/1.1 204 No Content\r\n\r\n" + FORGED)
        elif name == "idle-408":
            c.sendall(plain)
            time.sleep(ms / 1000)
            c.sendall(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            return False
        elif name == "idle-close":
            c.sendall(plain)
            time.sleep(ms / 1000)
            return False
        elif name == "die":
            return False
        elif name == "die-once":
            with self.lock:
                first = req.query.get("id") not in self.seen_ids
                self.seen_ids.add(req.query.get("id"))
            if first:
                return False
            c.sendall(plain)
        elif name == "mid-body":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            return False
        elif name in ("stream", "early-stream"):
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
            time.sleep(ms / 1000)
            c.sendall(b"67890")
        elif name == "slow":
            time.sleep(ms / 1000)
            c.sendall(plain)
        elif name == "switch":
            proto = req.query.get("proto", "websocket")
            c.sendall(f"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\n\r\n"
                      .encode())
            c.settimeout(5)
            while True:
                b = c.recv(65536)
                if not b:
                    return False
                c.sendall(b)
        elif name == "switch-bye":
            proto = req.query.get("proto", "websocket")
            # Corked, the bytes wait for the close and leave with the FIN in one segment.
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            c.sendall(f"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\n\r\nbye"
                      .encode())
            return False
        else:
            c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return True
