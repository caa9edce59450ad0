"""a partitioned node cannot commit, answers no read but a marked stale one, and converges
after healing.

Three managers, each in its own network namespace on a private bridge (created and removed
by the test; skipped when namespaces cannot be created). A partition is a pair of `prohibit`
routes between the isolated node and each other node, so peer traffic is cut both ways while
the test process (on the bridge) still reaches every node's admin API."""
import sys
import time
import unittest

import cluster
import harness

WRITE_TIMEOUT = 12.0  # the API answers 503 when a write does not commit within 5 s


def skip_loudly(test, reason):
    """Skips `test`, and says so on stderr too: ctest shows a skipped Python test as passed."""
    print(f"SKIPPED: {test.id()}: {reason}", file=sys.stderr, flush=True)
    test.skipTest(reason)


class PartitionTest(unittest.TestCase):
    def setUp(self):
        why = cluster.Netns.available()
        if why:
            skip_loudly(self, f"network namespaces unavailable ({why}); partitions are not tested")
        try:
            self.netns = cluster.Netns(3)
        except RuntimeError as e:
            skip_loudly(self, f"cannot build the namespace network ({e}); partitions are not tested")
        try:
            self.c = cluster.Cluster(None, ["manager"] * 3, netns=self.netns)
            self.c.start()
        except BaseException:
            self.cleanup()
            raise

    def cleanup(self):
        try:
            if hasattr(self, "c"):
                self.c.stop()
        finally:
            self.netns.close()

    def tearDown(self):
        self.cleanup()

    def write_must_not_commit(self, node, name):
        t0 = time.monotonic()
        try:
            s, b = node.api("POST", "/v1/services", {"name": name, "labels": {}}, timeout=WRITE_TIMEOUT)
        except cluster.Refused as e:
            self.fail(f"{node.name}'s API is unreachable from the test process: {e}")
        except cluster.Unknown:
            s, b = None, "timeout"
        took = time.monotonic() - t0
        self.assertNotIn(s, (200, 201), f"write on isolated {node.name} answered {s} {b}")
        if s is not None:
            self.assertEqual(s, 503, b)
        return took

    def same_state_everywhere(self, timeout=20.0):
        """Until every node's own copy (?stale=true) equals the leader's state at a
        linearizable read point."""
        lead = self.c.leader()
        rev, svcs = self.c.consistent_services(via=lead)
        want = cluster.canonical(svcs)
        last = {}

        def ok():
            done = True
            for n in self.c.nodes:
                try:
                    s, b = n.local("/v1/services", timeout=3)
                except (cluster.Refused, cluster.Unknown) as e:
                    last[n.name] = repr(e)
                    done = False
                    continue
                last[n.name] = b.get("revision") if s == 200 else s
                if s != 200 or b.get("revision") != rev or cluster.canonical(cluster.services_by_name(b)) != want:
                    done = False
            return done
        try:
            harness.wait_until(ok, timeout, interval=0.1, what="convergence")
        except AssertionError:
            self.fail(f"not converged on revision {rev}: {last}\n{self.c.logs(20)}")
        return rev, svcs

    def reads_refused_but_stale_marked(self, node, absent):
        """`node` cannot reach a quorum: a default read is a 503 with a short error body (not
        its copy), ?stale=true is its copy, marked, with its revision; `absent` is not in it."""
        t0 = time.monotonic()
        s, h, b = node.request("GET", "/v1/services", timeout=WRITE_TIMEOUT)
        took = time.monotonic() - t0
        self.assertEqual(s, 503, f"default read on isolated {node.name} answered {s} {b}")
        self.assertEqual(cluster.error_of(b).get("code"), "unavailable", b)
        self.assertNotIn("services", b, "a refused read must not carry the old data")
        self.assertLess(len(str(b)), 400, b)
        s, h, b = node.request("GET", "/v1/services/maj-write", timeout=WRITE_TIMEOUT)
        self.assertEqual(s, 503, b)
        s, h, b = node.request("GET", cluster.stale("/v1/services"))
        self.assertEqual(s, 200, b)
        self.assertEqual(h.get("x-routemesh-stale"), "true", h)
        self.assertEqual(h.get("x-routemesh-revision"), str(b["revision"]), h)
        self.assertNotIn(absent, cluster.services_by_name(b))
        s, h, b = node.request("GET", "/v1/services?stale=true&consistent=1")
        self.assertEqual(s, 400, b)
        self.assertEqual(cluster.error_of(b).get("field"), "stale", b)
        return took

    def test_isolated_leader_cannot_commit_and_converges_after_healing(self):
        c = self.c
        old = c.leader()
        others = [n for n in c.nodes if n is not old]
        self.netns.isolate(old.ip)

        took = self.write_must_not_commit(old, "iso-write")
        # The majority elects a leader and commits.
        new = c.leader(timeout=10, exclude=(old,))
        s, b = new.api("POST", "/v1/services", {"name": "maj-write", "labels": {}}, timeout=WRITE_TIMEOUT)
        self.assertEqual(s, 201, b)
        s, b = others[0].api("POST", "/v1/services", {"name": "maj-write-2", "labels": {}}, timeout=WRITE_TIMEOUT)
        self.assertEqual(s, 201, b)
        # The old leader steps down (check-quorum) and serves no linearizable read.
        harness.wait_until(lambda: ((old.status() or {}).get("leader") or {}).get("name") != old.name,
                           timeout=10, what=f"{old.name} to step down")
        s, b = old.get("/v1/services?consistent=1", timeout=WRITE_TIMEOUT)
        self.assertEqual(s, 503, b)
        # Nothing of the failed write anywhere, nothing of the majority's on the isolated node.
        _, svcs = c.consistent_services(via=new)
        self.assertNotIn("iso-write", svcs)
        self.assertIn("maj-write", svcs)
        # Its reads: refused by default (its copy is old), its copy only when asked for.
        self.reads_refused_but_stale_marked(old, "maj-write")
        s, b = old.local("/v1/services")
        self.assertEqual(s, 200, b)
        self.assertNotIn("iso-write", cluster.services_by_name(b))
        # The majority's default reads are linearizable, through any of its members.
        for n in others:
            s, h, b = n.request("GET", "/v1/services/maj-write-2", timeout=WRITE_TIMEOUT)
            self.assertEqual(s, 200, f"{n.name}: {b}")
            self.assertNotIn("x-routemesh-stale", h)

        self.netns.heal()
        rev, svcs = self.same_state_everywhere()
        self.assertNotIn("iso-write", svcs)
        self.assertIn("maj-write", svcs)
        self.assertIn("maj-write-2", svcs)
        # The healed node takes writes again (forwarded to the leader).
        s, b = old.api("POST", "/v1/services", {"name": "after-heal", "labels": {}}, timeout=WRITE_TIMEOUT)
        self.assertEqual(s, 201, b)
        self.same_state_everywhere()
        print(f"\n  isolated-leader write refused after {took:.1f}s; converged at revision {rev}", flush=True)

    def test_isolated_follower_cannot_commit_or_disrupt_the_leader(self):
        c = self.c
        lead = c.leader()
        term = lead.status()["term"]
        follower = next(n for n in c.nodes if n is not lead)
        self.netns.isolate(follower.ip)

        self.write_must_not_commit(follower, "iso-f-write")
        s, b = lead.api("POST", "/v1/services", {"name": "maj-f-write", "labels": {}}, timeout=WRITE_TIMEOUT)
        self.assertEqual(s, 201, b)
        # Longer than several election timeouts: the isolated follower campaigns meanwhile.
        time.sleep(3.0)
        s, b = follower.get("/v1/services?consistent=1", timeout=WRITE_TIMEOUT)
        self.assertEqual(s, 503, b)
        self.reads_refused_but_stale_marked(follower, "maj-f-write")

        self.netns.heal()
        rev, svcs = self.same_state_everywhere()
        self.assertIn("maj-f-write", svcs)
        self.assertNotIn("iso-f-write", svcs)
        # Pre-vote: the returning follower did not force an election.
        st = lead.status()
        self.assertEqual(st["leader"]["name"], lead.name, st)
        self.assertEqual(st["term"], term, "the healed follower bumped the term (pre-vote missing?)")


if __name__ == "__main__":
    unittest.main(verbosity=2)
