"""SIGTERM graceful shutdown: in-flight requests finish, the listener closes at once, idle
keep-alive connections are closed, the process exits 0 within drain_ms; requests that outlive
drain_ms are cut."""
import signal
import socket
import threading
import time

import harness

IP = "127.0.0.26"
HTTP_PORT = 8080
HOST = "drain.test"


class ShutdownTest(harness.MeshTest):
    IP = IP

    def start(self, drain_ms):
        self.w = self.whoami("slow", threads=2)
        services = [{"name": "app", "labels": {"mesh.http": HOST}, "tasks": [self.w.addr]}]
        cfg = harness.node_config(IP, services, http_port=HTTP_PORT, timeouts={"drain_ms": drain_ms})
        self.n = self.node(cfg)

    def in_flight(self, path, out):
        c = harness.Client(IP, HTTP_PORT, timeout=15)

        def run():
            try:
                out["r"] = c.request("GET", path, host=HOST)
                out["eof_after"] = c.at_eof(3)
            except Exception as e:  # checked by the test
                out["e"] = e
            finally:
                c.close()

        t = threading.Thread(target=run)
        t.start()
        return t

    def test_sigterm_lets_in_flight_requests_finish_and_exits_0(self):
        self.start(drain_ms=5000)
        idle = harness.Client(IP, HTTP_PORT, timeout=5)
        self.addCleanup(idle.close)
        self.assertEqual(idle.request("GET", "/warm", host=HOST).status, 200)
        out = {}
        t = self.in_flight("/delay/1500", out)
        time.sleep(0.4)  # the request is at the backend
        t0 = time.monotonic()
        self.n.signal(signal.SIGTERM)

        # The idle keep-alive connection is closed at once, long before the in-flight one ends.
        self.assertTrue(idle.at_eof(1.0), "an idle keep-alive connection must be closed on SIGTERM")

        # New connections are refused while the drain is going on.
        time.sleep(0.1)
        self.assertIsNone(self.n.p.poll(), "the node exited before its in-flight request finished")
        try:
            s = socket.create_connection((IP, HTTP_PORT), timeout=1)
            s.close()
            self.fail("a new connection was accepted during the drain (listener still open)")
        except ConnectionRefusedError:
            pass

        t.join(10)
        self.assertNotIn("e", out, f"in-flight request failed: {out.get('e')}")
        self.assertEqual(out["r"].status, 200, "the in-flight request must complete")
        self.assertTrue(out["eof_after"], "the drained connection must be closed after its response")
        self.n.p.wait(8)
        elapsed = time.monotonic() - t0
        self.assertEqual(self.n.p.returncode, 0)
        self.assertLess(elapsed, 1.5 + 2.0, "exit must follow the last in-flight request promptly")

    def test_drain_deadline_cuts_long_requests(self):
        self.start(drain_ms=1000)
        out = {}
        t = self.in_flight("/delay/10000", out)
        time.sleep(0.4)
        t0 = time.monotonic()
        self.n.signal(signal.SIGTERM)
        try:
            self.n.p.wait(1.0 + 3.0)
        except Exception:
            self.fail("the node did not exit within drain_ms + 3 s")
        self.assertEqual(self.n.p.returncode, 0)
        self.assertGreaterEqual(time.monotonic() - t0, 0.8, "exited before drain_ms")
        t.join(15)
        self.assertTrue("e" in out or (out.get("r") and out["r"].status != 200),
                        f"a request longer than drain_ms cannot have succeeded: {out}")

    def test_sigterm_with_no_traffic_exits_quickly(self):
        self.start(drain_ms=10000)
        t0 = time.monotonic()
        self.n.signal(signal.SIGTERM)
        self.n.p.wait(5)
        self.assertEqual(self.n.p.returncode, 0)
        self.assertLess(time.monotonic() - t0, 2.0, "an idle node must not wait for drain_ms")
        harness.wait_until(lambda: any("stopped" in l for l in self.n.lines()), timeout=3,
                           what="'stopped' log line")


if __name__ == "__main__":
    harness.main()
