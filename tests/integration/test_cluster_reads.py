"""reads are linearizable by default; ?stale=true (CLI: --stale) is the marked opt-out.

Three managers on 127.0.0.51-53. A manager whose peers are frozen (SIGSTOP) cannot reach a
quorum: its default reads answer 503 with a short error body, never its copy; ?stale=true
answers its copy with X-Routemesh-Stale: true and the revision. Without faults, a default read
through any manager sees every write acknowledged before it started."""
import time
import unittest

import cluster
import harness

FIRST_IP = "127.0.0.51"
READ_TIMEOUT = 15.0  # a forwarded read waits at most 8 s for the leader, a read index 5 s


class ReadsTest(cluster.SharedClusterTest):
    FIRST_IP = FIRST_IP

    def assert_refused_read(self, node, path):
        t0 = time.monotonic()
        s, h, b = node.request("GET", path, timeout=READ_TIMEOUT)
        took = time.monotonic() - t0
        self.assertEqual(s, 503, f"default read of {path} on {node.name} without a quorum: {s} {b}")
        self.assertEqual(cluster.error_of(b).get("code"), "unavailable", b)
        self.assertEqual(set(b), {"error"}, f"a refused read carries no data: {b}")
        self.assertNotIn("x-routemesh-stale", h)
        return took

    def assert_stale_read(self, node, want_in, want_out):
        s, h, b = node.request("GET", cluster.stale("/v1/services"), timeout=5)
        self.assertEqual(s, 200, b)
        self.assertEqual(h.get("x-routemesh-stale"), "true", h)
        self.assertIsInstance(b.get("revision"), int, b)
        self.assertEqual(h.get("x-routemesh-revision"), str(b["revision"]), h)
        svcs = cluster.services_by_name(b)
        self.assertIn(want_in, svcs)
        self.assertNotIn(want_out, svcs)
        return b["revision"]

    # -- without faults ---------------------------------------------------------------------
    def test_a_default_read_through_any_manager_sees_every_acknowledged_write(self):
        lead = self.c.leader()
        for i in range(5):
            name = f"ryw-{i}"
            s, b = lead.api("POST", "/v1/services", {"name": name, "labels": {}})
            self.assertEqual(s, 201, b)
            rev = b["revision"]
            # At once, with no wait: the followers answer through the leader's read index.
            for n in self.c.managers:
                s, h, b = n.request("GET", f"/v1/services/{name}")
                self.assertEqual(s, 200, f"{n.name}: {b}")
                self.assertGreaterEqual(b["revision"], rev, n.name)
                self.assertNotIn("x-routemesh-stale", h)
                s, b = n.get("/v1/services")
                self.assertIn(name, cluster.services_by_name(b), n.name)
        # Every read endpoint takes the parameters.
        for path in ("/v1/cluster", "/v1/nodes", f"/v1/nodes/{lead.id}", "/v1/networks",
                     "/v1/networks/ingress", "/v1/tasks", "/v1/services/ryw-0"):
            for n in self.c.managers:
                s, h, b = n.request("GET", path)
                self.assertEqual(s, 200, f"{path} on {n.name}: {b}")
                self.assertNotIn("x-routemesh-stale", h, path)
                s, h, b = n.request("GET", cluster.stale(path))
                self.assertEqual(s, 200, f"{path}?stale=true on {n.name}: {b}")
                self.assertEqual(h.get("x-routemesh-stale"), "true", path)
                self.assertTrue(h.get("x-routemesh-revision", "").isdigit(), h)

    def test_stale_and_consistent_together_are_a_400_and_consistent_alone_still_works(self):
        lead = self.c.leader()
        via = next(n for n in self.c.managers if n is not lead)
        for n in (lead, via):
            for q in ("stale=true&consistent=1", "stale=1&consistent=true", "stale&consistent"):
                s, b = n.get(f"/v1/services?{q}")
                self.assertEqual(s, 400, f"?{q} on {n.name}: {b}")
                e = cluster.error_of(b)
                self.assertEqual(e.get("field"), "stale", b)
                self.assertIn("consistent", e.get("message", ""), b)
            s, b = n.get("/v1/services?stale=maybe")
            self.assertEqual(s, 400, b)
            self.assertEqual(cluster.error_of(b).get("field"), "stale", b)
            s, b = n.get("/v1/services?consistent=1")
            self.assertEqual(s, 200, b)
            s, b = n.get("/v1/services?stale=false&consistent=1")
            self.assertEqual(s, 200, b)

    # -- without a quorum -------------------------------------------------------------------
    def test_a_follower_without_quorum_refuses_default_reads_and_marks_stale_ones(self):
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/services", {"name": "before-f", "labels": {}})
        self.assertEqual(s, 201, b)
        follower, other = [n for n in self.c.managers if n is not lead]
        harness.wait_until(lambda: "before-f" in cluster.services_by_name(follower.local("/v1/services")[1]),
                                   timeout=10, what=f"before-f on {follower.name}")
        self.freeze(lead, other)
        took = self.assert_refused_read(follower, "/v1/services")
        self.assertLess(took, READ_TIMEOUT)
        self.assert_refused_read(follower, "/v1/services/before-f")
        self.assert_refused_read(follower, "/v1/cluster")
        self.assert_stale_read(follower, "before-f", "nothing-here")
        print(f"\n  follower without quorum: default read refused after {took:.1f}s", flush=True)

    def test_a_leader_without_quorum_refuses_default_reads_and_marks_stale_ones(self):
        lead = self.c.leader()
        s, b = lead.api("POST", "/v1/services", {"name": "before-l", "labels": {}})
        self.assertEqual(s, 201, b)
        self.freeze(*[n for n in self.c.managers if n is not lead])
        # Right away: it still believes it leads, but no quorum confirms the read index.
        took = self.assert_refused_read(lead, "/v1/services")
        self.assert_refused_read(lead, "/v1/tasks")
        self.assert_stale_read(lead, "before-l", "nothing-here")
        print(f"\n  leader without quorum: default read refused after {took:.1f}s", flush=True)

    def test_cli_reads_linearizably_and_stale_opts_out(self):
        lead = self.c.leader()
        rc, out, err = self.c.cli(lead, "service", "create", "--name", "cli-read")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.c.cli(lead, "service", "ls", "--stale", "--consistent")
        self.assertEqual(rc, 2, out + err)
        self.assertIn("--stale", err)
        follower = next(n for n in self.c.managers if n is not lead)
        harness.wait_until(lambda: "cli-read" in cluster.services_by_name(follower.local("/v1/services")[1]),
                                   timeout=10, what=f"cli-read on {follower.name}")
        self.freeze(*[n for n in self.c.managers if n is not follower])
        t0 = time.monotonic()
        rc, out, err = self.c.cli(follower, "service", "ls", timeout=60)
        self.assertEqual(rc, 1, f"`service ls` without a quorum: {out}{err}")
        self.assertNotIn("cli-read", out)
        self.assertLess(time.monotonic() - t0, 40)
        rc, out, err = self.c.cli(follower, "--stale", "service", "ls")
        self.assertEqual(rc, 0, err)
        self.assertIn("cli-read", out)
        rc, out, err = self.c.cli(follower, "service", "inspect", "cli-read", "--stale", "--json")
        self.assertEqual(rc, 0, err)
        self.assertIn('"cli-read"', out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
