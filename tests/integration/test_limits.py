"""Open-file limits: the node raises its soft limit to the hard one at startup and says when
that is still below what its settings can use; at the limit it refuses new connections
(accept fails with EMFILE) without crashing or spinning, keeps serving the connections it
has, and accepts again once descriptors are free."""
import os
import re
import socket
import sys

import harness

IP = "127.0.0.29"


def skip_loudly(test, reason):
    """Skips `test`, and says so on stderr too: ctest shows a skipped Python test as passed."""
    print(f"SKIPPED: {test.id()}: {reason}", file=sys.stderr, flush=True)
    test.skipTest(reason)


def open_files(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


class LimitsTest(harness.MeshTest):
    IP = IP

    def start(self, soft, hard, port, **limits):
        backend = self.whoami("be")
        services = [{"name": "web", "labels": {"mesh.http": "web.test"}, "tasks": [backend.addr]}]
        cfg = harness.node_config(IP, services, http_port=port, node={"threads": 1},
                                  limits=limits)
        return self.node(cfg, prefix=("prlimit", f"--nofile={soft}:{hard}"))

    def test_soft_limit_is_raised_to_the_hard_limit_and_a_low_one_is_named(self):
        n = self.start(256, 4096, 8080)
        self.assertEqual(open_files(n.p.pid), (4096, 4096))
        log = "\n".join(n.lines())
        self.assertIn("open-file limit raised from 256 to 4096", log)
        # 1 thread x 10,000 connections x 2 descriptors does not fit in 4096: say which setting.
        self.assertRegex(log, r"open-file limit 4096 is below .*limits\.max_connections_per_thread")
        s, _, _ = harness.http(IP, n.http_port, "/", host="web.test")
        self.assertEqual(s, 200)

    def test_no_warning_when_the_settings_fit(self):
        n = self.start(1024, 1024, 8081, max_connections_per_thread=100)
        self.assertEqual(open_files(n.p.pid), (1024, 1024))
        log = "\n".join(n.lines())
        self.assertNotIn("open-file limit raised", log)
        self.assertNotIn("is below", log)

    def test_at_the_limit_new_connections_wait_and_existing_ones_are_served(self):
        if os.environ.get("RM_SANITIZED") == "1":
            skip_loudly(self, "sanitizer build: GCC 12's sanitizer runtime checks memory with "
                              "pipe(2); at EMFILE that fails and UBSan reports a false "
                              "invalid-vptr error and stops the node")
        n = self.start(128, 128, 8082)
        first = harness.Client(IP, n.http_port)
        self.assertEqual(first.request(host="web.test").status, 200)  # pools an upstream conn
        # More connections than the node has descriptors: the kernel completes the handshakes
        # (backlog), the node's accept fails with EMFILE and backs off.
        extra = []
        try:
            for _ in range(200):
                extra.append(socket.create_connection((IP, n.http_port), timeout=5))
            # (The admin server cannot accept now either: the log says it, the metric later.)
            harness.wait_until(
                lambda: any(re.search(r"accept on port %d failed" % n.http_port, l)
                            for l in n.lines()),
                timeout=10, what="an accept failure logged")
            # The established connection is still served, on its pooled upstream connection.
            for _ in range(5):
                self.assertEqual(first.request(host="web.test").status, 200)
        finally:
            for s in extra:
                s.close()
        # Descriptors free again: new connections are accepted and served.
        def served():
            try:
                return harness.http(IP, n.http_port, "/", host="web.test", timeout=2)[0] == 200
            except OSError:
                return False
        harness.wait_until(served, timeout=15, what="a new connection served after the burst")
        self.assertGreater(n.metric("routemesh_proxy_listener_errors_total") or 0, 0)
        self.assertIsNone(n.p.poll(), "the node must not exit at the descriptor limit")


if __name__ == "__main__":
    harness.main()
