"""a manager's route compile thread follows the store by its deltas (cmd/route_publisher.h).
One manager (127.0.0.91). A mix of writes (services with HTTP, published ports and extra
networks, tasks, label changes, a drain, deletions) goes in one burst, without waiting for
any route; then the table the manager routes with, which its compile thread built from a copy
of the first state and the deltas after it, must equal the table the same node builds from a
copy of the same state after a restart. A delta applied differently on the compile thread's
replica than in the store would show as a difference."""
import json
import sys
import unittest

import cluster
import harness

FIRST_IP = "127.0.0.91"


class RouteCompileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = cluster.Cluster(FIRST_IP, ["manager"])
        try:
            cls.c.start()
        except BaseException:
            cls.c.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    def write(self, method, path, body=None, expect=(200, 201)):
        s, b = self.c.nodes[0].api(method, path, body)
        self.assertIn(s, expect, f"{method} {path}: {s} {b}")
        return b.get("revision", 0) if isinstance(b, dict) else 0

    def routes(self):
        s, b = self.c.nodes[0].get("/v1/routes")
        self.assertEqual(s, 200, b)
        return b

    def test_the_table_from_deltas_equals_the_table_from_a_copy(self):
        n1 = self.c.nodes[0]
        self.write("POST", "/v1/networks", {"name": "back"})
        for i in range(12):
            body = {"name": f"rc-{i}", "labels": {"mesh.http": f"rc-{i}.test"},
                    "ports": [{"published": 23000 + i, "target": 80}]}
            if i % 3 == 0:
                body["networks"] = ["ingress", "back"]
            self.write("POST", "/v1/services", body)
            for k in range(2):
                self.write("POST", "/v1/tasks", {"id": f"rc-{i}.{k}", "service": f"rc-{i}",
                                                 "node": "n1", "address": f"127.0.9.{i * 2 + k + 1}",
                                                 "port": 8080})
        for i in range(0, 12, 2):
            self.write("PUT", f"/v1/services/rc-{i}",
                       {"name": f"rc-{i}", "labels": {"mesh.http": f"rc-{i}.test,alt-{i}.test",
                                                      "mesh.lb": "least_request"},
                        "ports": [{"published": 23000 + i, "target": 80}]})
        self.write("PUT", "/v1/tasks/rc-1.0", {"health": "draining"})
        self.write("PUT", "/v1/tasks/rc-3.1", {"health": "unhealthy"})
        self.write("DELETE", "/v1/tasks/rc-2.1")
        rev = self.write("DELETE", "/v1/services/rc-5")

        harness.wait_until(lambda: (n1.routes_revision() or 0) >= rev, timeout=15,
                           what=f"n1 routing with revision {rev}")
        metrics = n1.metrics()
        by_deltas = cluster.metric(metrics, "routemesh_config_route_inputs_total",
                                   {"kind": "deltas"})
        self.assertGreater(by_deltas, 0, "the compile thread never took deltas")
        before = self.routes()
        self.assertEqual(before["revision"], rev, "a write after the test's own ones")
        hosts = json.dumps(before)
        self.assertIn("alt-4.test", hosts)
        self.assertNotIn("rc-5.test", hosts)

        # A restart compiles the same state from a copy (the first input is always one).
        n1.stop()
        n1.start()
        harness.wait_until(lambda: (n1.routes_revision() or 0) >= rev, timeout=30,
                           what=f"n1 routing with revision {rev} after its restart")
        after = self.routes()
        if after["revision"] != rev:
            why = f"the state moved on during the restart (revision {after['revision']})"
            print(f"SKIPPED: test_route_compile: {why}", file=sys.stderr)
            self.skipTest(why)
        self.assertEqual(cluster.canonical(after), cluster.canonical(before))


if __name__ == "__main__":
    unittest.main()
