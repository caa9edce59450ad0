#!/usr/bin/env python3
"""Memory per idle keep-alive connection of a proxy.

Opens N client connections to PORT, sends one proxied request on each (Host: bench.local),
reads the whole response, and keeps every connection open. The resident set size of PID and
its child processes (nginx and HAProxy may fork workers) is read from /proc before the first
connection and after the last response; the difference divided by N is the cost of one idle
keep-alive connection, including whatever the proxy keeps for the request it served.

  bench/idle_memory.py --port P --pid PID [--connections 5000] [--path /]

Prints one line: `idle_memory target_kib_per_conn=X rss_before_kib=A rss_after_kib=B conns=N`.
Bounded: N connections at most, each with a 10 s timeout, to 127.0.0.1 only.
"""
import argparse
import os
import socket
import sys
import time


def tree(pid):
    """PID and every descendant."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def rss_kib(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def read_response(s):
    """Reads one Content-Length response; returns True on a 200."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            return False
        buf += b
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        b = s.recv(65536)
        if not b:
            return False
        body += b
    return head.startswith(b"HTTP/1.1 200")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--path", default="/")
    a = ap.parse_args()
    req = f"GET {a.path} HTTP/1.1\r\nHost: bench.local\r\n\r\n".encode()
    # Settle: a fresh process's RSS still moves for a moment after its first requests.
    warm = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    warm.sendall(req)
    read_response(warm)
    warm.close()
    time.sleep(0.5)
    before = rss_kib(a.pid)
    socks, failed = [], 0
    deadline = time.monotonic() + 120
    try:
        for _ in range(a.connections):
            if time.monotonic() > deadline:
                break
            s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
            s.sendall(req)
            if not read_response(s):
                failed += 1
            socks.append(s)
        time.sleep(0.5)
        after = rss_kib(a.pid)
    finally:
        for s in socks:
            s.close()
    n = len(socks)
    if n == 0 or failed:
        print(f"idle_memory failed conns={n} failed={failed}", file=sys.stderr)
        return 1
    print(f"idle_memory kib_per_conn={(after - before) / n:.2f} rss_before_kib={before} "
          f"rss_after_kib={after} conns={n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
