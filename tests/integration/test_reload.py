"""Configuration: SIGHUP reload under load without a failed request, invalid reloads rejected
with the old table kept, invalid startup configs (exit 2, every error with its key path) and
`routemesh check`."""
import json
import os
import subprocess
import tempfile
import threading
import time

import harness

IP = "127.0.0.25"
HTTP_PORT = 8080
HOST = "reload.test"


def services_for(backend):
    return [{"name": "app", "labels": {"mesh.http": HOST}, "tasks": [backend.addr]}]


def write_temp(text):
    d = tempfile.mkdtemp(prefix="rm-it-cfg-")
    path = os.path.join(d, "node.yaml")
    with open(path, "w") as f:
        f.write(text if isinstance(text, str) else json.dumps(text, indent=1))
    return path


class ReloadTest(harness.MeshTest):
    IP = IP

    def start(self):
        self.a = self.whoami("A")
        self.b = self.whoami("B")
        self.cfg = lambda backend: harness.node_config(IP, services_for(backend), http_port=HTTP_PORT,
                                                        node={"access_log": {"enabled": False,
                                                                             "format": "json", "path": "-"}})
        self.n = self.node(self.cfg(self.a))

    def name_now(self):
        status, hdrs, _ = harness.http(IP, HTTP_PORT, "/", host=HOST)
        return status, hdrs.get("x-whoami-name")

    def test_sighup_reload_under_load_fails_no_request(self):
        self.start()
        self.assertEqual(self.name_now(), (200, "A"))
        stop = threading.Event()
        results = [[] for _ in range(2)]   # (status or exception text, backend name)

        def load(out):
            c = None
            for _ in range(1500):
                if stop.is_set():
                    break
                try:
                    if c is None:
                        c = harness.Client(IP, HTTP_PORT, timeout=5)
                    r = c.request("GET", "/load", host=HOST)
                    out.append((r.status, r.header("x-whoami-name")))
                    if (r.header("connection") or "").lower() == "close":
                        c.close()
                        c = None
                    time.sleep(0.003)  # paced so the load spans every reload
                except Exception as e:  # a failed request: recorded and asserted below
                    out.append((f"{type(e).__name__}: {e}", None))
                    if c is not None:
                        c.close()
                    c = None
            if c is not None:
                c.close()

        threads = [threading.Thread(target=load, args=(results[i],)) for i in range(2)]
        for t in threads:
            t.start()
        try:
            backends = [self.b, self.a, self.b, self.a, self.b]
            for backend in backends:
                time.sleep(0.3)
                self.n.reload(self.cfg(backend))
                harness.wait_until(lambda: self.name_now() == (200, backend.name), timeout=5,
                                   what=f"new connections routed to {backend.name}")
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        flat = results[0] + results[1]
        print(f"[{len(flat)} requests during 5 reloads]", end=" ", flush=True)
        failures = [r for r in flat if r[0] != 200]
        self.assertGreater(len(flat), 50, "the load loop made too few requests")
        self.assertEqual(failures, [], f"{len(failures)} of {len(flat)} requests failed during reloads")
        names = {name for _, name in flat}
        self.assertEqual(names, {"A", "B"}, "the load must see both the old and the new routing")
        # Keep-alive clients follow the new table too: the last answers came from B.
        for out in results:
            if len(out) < 1500:  # the loop ran until after the last reload
                self.assertEqual(out[-1][1], "B", "a keep-alive connection kept the old table")
        self.assertEqual(self.n.metric("routemesh_config_reloads_total", result="ok"), 5)

    def test_invalid_reload_is_rejected_and_old_table_kept(self):
        self.start()
        bad = self.cfg(self.b)
        bad["services"][0]["labels"]["mesh.http"] = ""
        line = self.n.reload(bad, expect_ok=False)
        self.assertIn("reload of", line)
        self.assertIn("failed", line)
        self.assertTrue(any("services[0].labels.mesh.http" in l for l in self.n.lines()),
                        "the reason with its key path must be logged:\n" + "\n".join(self.n.lines()[-10:]))
        self.assertEqual(self.name_now(), (200, "A"), "the old table must stay in use")
        self.assertEqual(self.n.metric("routemesh_config_reloads_total", result="failed"), 1)
        self.assertEqual(self.n.metric("routemesh_config_reloads_total", result="ok"), 0)
        # Not YAML at all.
        self.n.reload("node: [unclosed\n", expect_ok=False)
        self.assertEqual(self.name_now(), (200, "A"))
        self.assertEqual(self.n.metric("routemesh_config_reloads_total", result="failed"), 2)
        # A later valid reload still works.
        self.n.reload(self.cfg(self.b))
        harness.wait_until(lambda: self.name_now() == (200, "B"), timeout=5, what="routing to B")
        self.assertEqual(self.n.metric("routemesh_config_reloads_total", result="ok"), 1)

    def test_reload_adds_and_removes_hosts(self):
        self.start()
        cfg = self.cfg(self.a)
        cfg["services"].append({"name": "extra", "labels": {"mesh.http": "extra.test"},
                                "tasks": [self.b.addr]})
        status, _, _ = harness.http(IP, HTTP_PORT, "/", host="extra.test")
        self.assertEqual(status, 404)
        self.n.reload(cfg)
        harness.wait_until(lambda: harness.http(IP, HTTP_PORT, "/", host="extra.test")[0] == 200,
                           timeout=5, what="extra.test routed after reload")
        self.n.reload(self.cfg(self.a))
        harness.wait_until(lambda: harness.http(IP, HTTP_PORT, "/", host="extra.test")[0] == 404,
                           timeout=5, what="extra.test gone after reload")
        routes = json.loads(self.n.admin_get("/v1/routes")[1])
        self.assertNotIn("extra", json.dumps(routes))

    def test_a_removed_port_keeps_its_connections_and_other_ports_are_untouched(self):
        """Listeners are reconciled to each table: a published port that goes away stops
        accepting while its established connections carry on (until the drain grace); a port
        that stays is never touched (its connections see no reset, it keeps accepting)."""
        import socket
        echo_a, echo_b = harness.TcpEchoServer(), harness.TcpEchoServer()
        try:
            def services(with_a):
                out = [{"name": "b", "published": [f"9062:{echo_b.port}"], "tasks": ["127.0.0.1"]}]
                if with_a:
                    out.append({"name": "a", "published": [f"9061:{echo_a.port}"],
                                "tasks": ["127.0.0.1"]})
                return out
            cfg = lambda with_a: harness.node_config(IP, services(with_a), http_port=HTTP_PORT)
            n = self.node(cfg(True))
            conns = {}
            for port in (9061, 9062):
                s = socket.create_connection((IP, port), timeout=5)
                s.sendall(b"before")
                self.assertEqual(s.recv(16), b"before")
                conns[port] = s
            n.reload(cfg(False))
            harness.wait_until(lambda: "9061" not in json.dumps(json.loads(n.admin_get("/v1/routes")[1])),
                               timeout=5, what="port 9061 gone from the table")
            # new connections to the removed port are refused
            harness.wait_until(lambda: self._refused(9061), timeout=5, what="9061 closed")
            # the established ones on both ports still work, byte for byte
            for port, s in conns.items():
                for i in range(3):
                    msg = f"after {port} {i}".encode()
                    s.sendall(msg)
                    got = b""
                    while len(got) < len(msg):
                        chunk = s.recv(64)
                        self.assertTrue(chunk, f"port {port}: connection closed")
                        got += chunk
                    self.assertEqual(got, msg)
            # and the unrelated port keeps accepting
            with socket.create_connection((IP, 9062), timeout=5) as s2:
                s2.sendall(b"new")
                self.assertEqual(s2.recv(16), b"new")
            for s in conns.values():
                s.close()
        finally:
            echo_a.close()
            echo_b.close()

    @staticmethod
    def _refused(port):
        import socket
        try:
            socket.create_connection((IP, port), timeout=1).close()
            return False
        except OSError:
            return True

    # -- startup validation -----------------------------------------------------------------

    def run_bin(self, *args, timeout=15):
        return subprocess.run([harness.BIN, *args], capture_output=True, text=True, timeout=timeout)

    def two_label_errors(self):
        w = "127.0.0.1:9"
        return harness.node_config(IP, [
            {"name": "one", "labels": {"mesh.http": ""}, "tasks": [w]},
            {"name": "two", "labels": {"mesh.http": "two.test", "mesh.lb": "fastest"}, "tasks": [w]},
        ], http_port=HTTP_PORT)

    def test_invalid_startup_config_exits_2_with_every_error_and_its_path(self):
        path = write_temp(self.two_label_errors())
        p = self.run_bin("node", "--config", path)
        self.assertEqual(p.returncode, 2, p.stderr)
        err = p.stderr
        self.assertRegex(err, r"routemesh: .*node\.yaml: services\[0\]\.labels\.mesh\.http: ")
        self.assertRegex(err, r"routemesh: .*node\.yaml: services\[1\]\.labels\.mesh\.lb: ")
        self.assertNotIn("ready", err, "must never start half-configured")

    def test_invalid_node_settings_report_every_error(self):
        cfg = harness.node_config(IP, [], http_port=HTTP_PORT)
        cfg["node"]["threads"] = "many"
        cfg["node"]["bogus_key"] = 1
        cfg["timeouts"] = {"idle_ms": -5}
        cfg["services"] = [{"name": "s", "published": ["99999:80/tcp"], "tasks": ["not-an-ip:80"]}]
        path = write_temp(cfg)
        p = self.run_bin("node", "--config", path)
        self.assertEqual(p.returncode, 2, p.stderr)
        for key in ("node.threads", "node.bogus_key", "timeouts.idle_ms", "services[0].published[0]",
                    "services[0].tasks[0]"):
            self.assertIn(f": {key}: ", p.stderr, f"error for {key} missing:\n{p.stderr}")

    def test_conflicting_host_claims_name_both_services(self):
        w = "127.0.0.1:9"
        cfg = harness.node_config(IP, [
            {"name": "first", "labels": {"mesh.http": "same.test"}, "tasks": [w]},
            {"name": "second", "labels": {"mesh.http": "SAME.test"}, "tasks": [w]},
        ], http_port=HTTP_PORT)
        p = self.run_bin("check", "--config", write_temp(cfg))
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        out = p.stdout + p.stderr
        self.assertIn("services[1].labels.mesh.http", out)
        self.assertIn("first", out)
        self.assertIn("second", out)

    def test_check_accepts_a_valid_file_and_rejects_an_invalid_one(self):
        cfg = harness.node_config(IP, [
            {"name": "web", "labels": {"mesh.http": "web.test,*.web.test", "mesh.http.path": "/api"},
             "tasks": ["127.0.0.1:9"]},
            {"name": "tcp", "published": ["9100:9/tcp"], "tasks": ["127.0.0.1"]},
        ], http_port=HTTP_PORT)
        p = self.run_bin("check", "--config", write_temp(cfg))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("ok", p.stdout)
        p = self.run_bin("check", "--config", write_temp(self.two_label_errors()))
        self.assertEqual(p.returncode, 2)
        self.assertIn("services[0].labels.mesh.http", p.stderr)
        self.assertIn("services[1].labels.mesh.lb", p.stderr)

    def test_missing_config_file_fails(self):
        p = self.run_bin("check", "--config", "/nonexistent/rm.yaml")
        self.assertNotEqual(p.returncode, 0)


if __name__ == "__main__":
    harness.main()
