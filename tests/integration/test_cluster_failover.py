"""kill -9 the leader of 3 managers (127.0.0.31-33) under a steady stream of writes.
A new leader within seconds; no acknowledged write lost; the history of every register
(a service's label) is linearizable; the killed node restarts from its data_dir and catches up."""
import os
import time
import unittest

import cluster
import harness
from linearizability import Recorder

FIRST_IP = "127.0.0.31"
ELECTION_BOUND_S = 10.0


class FailoverTest(unittest.TestCase):
    def setUp(self):
        self.c = cluster.Cluster(FIRST_IP, ["manager", "manager", "manager"])
        try:
            self.c.start()
        except BaseException:
            self.c.stop()
            raise

    def tearDown(self):
        self.c.stop()

    def test_leader_killed_under_writes_loses_nothing_and_restarts_from_disk(self):
        c = self.c
        rec = Recorder()
        seed = int(os.environ.get("RM_FAILOVER_SEED", "1"))
        # Reads are plain GETs: linearizable by default, through whichever manager is asked.
        load = cluster.Workload(rec, lambda: c.alive(managers_only=True), keys=3, clients=4,
                                duration=40.0, max_ops=4000, seed=seed, read_path="/v1/services")
        load.setup(c.leader())
        load.start()
        report = []
        try:
            time.sleep(2.0)
            self.assertGreater(len(load.acks), 10, f"the workload barely runs: {load.errors[:5]}\n{c.logs(20)}")
            # Two cycles: kill -9 the leader, a new one is elected, the killed node restarts
            # from its data_dir (no --join) under the same load and becomes a voter again.
            for cycle in (1, 2):
                old = c.leader()
                old_id = old.id
                t_kill = time.monotonic()
                old.kill9()
                new = c.leader(timeout=ELECTION_BOUND_S + 5, exclude=(old,))
                elected_after = time.monotonic() - t_kill
                self.assertLess(elected_after, ELECTION_BOUND_S,
                                f"new leader {new.name} only after {elected_after:.1f}s")
                t_new = t_kill + elected_after
                harness.wait_until(lambda: sum(1 for t, _ in load.acks if t > t_new) >= 10,
                                   timeout=10, what="10 writes acknowledged after the election")
                old.start()
                self.assertEqual(old.id, old_id)
                c.wait_voters(timeout=15)
                time.sleep(1.0)
                report.append(f"cycle {cycle}: kill -9 {old.name} (leader), {new.name} leader after "
                              f"{elected_after:.2f}s, {old.name} back as a voter")
        finally:
            stopped = load.stop()
        self.assertTrue(stopped, "workload clients did not stop in time")
        print("\n  " + "\n  ".join(report) + f"\n  {len(load.acks)} writes acknowledged; "
              f"{len(rec.history())} register ops, {len(load.created)} creates\n  outcomes: "
              f"{sorted(load.outcomes.items(), key=str)}\n  samples: {load.samples}", flush=True)

        cluster.verify_workload(self, c, load, rec, "failover")

if __name__ == "__main__":
    unittest.main(verbosity=2)
