"""kill -9 the leader of 3 managers (127.0.0.31-33) under a steady stream of writes.
A new leader within seconds; no acknowledged write lost; the history of every register
(a service's label) is linearizable; the killed node restarts from its data_dir and catches up."""
import os
import tempfile
import time
import unittest

import cluster
import harness
import linearizability
from linearizability import Recorder, check_kv

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

        # No acknowledged write lost: every acked create is there (read linearizably),
        # every definitely failed one is not.
        lead = c.leader()
        t_read = time.monotonic()
        rev, svcs = c.consistent_services(via=lead)
        t_read_done = time.monotonic()
        lost = sorted(n for n, o in load.created.items() if o == "ok" and n not in svcs)
        self.assertFalse(lost, f"{len(lost)} acknowledged creates lost: {lost[:10]}")
        phantom = sorted(n for n, o in load.created.items() if o == "fail" and n in svcs)
        self.assertFalse(phantom, f"creates that failed with 4xx exist: {phantom[:10]}")

        # Every op of the workload is valid: a 4xx answer is a bug (e.g. a retried create).
        self.assertFalse(load.errors, f"unexpected 4xx answers: {load.errors[:5]}")

        # The final read closes the history: the last acknowledged write of each register
        # survives (or a write of unknown outcome overtook it), as the checker decides.
        for i in range(load.keys):
            op = rec.invoke(load.key(i), "read", client="final")
            rec.ok(op, svcs[load.key(i)]["labels"].get(load.LABEL))
            op.call, op.ret = t_read, t_read_done
        hist = rec.history()
        res = check_kv(hist, init="init", max_steps=20_000_000)
        if res.ok is not True:
            path = os.path.join(tempfile.gettempdir(), f"rm-failover-history-{os.getpid()}.jsonl")
            linearizability.dump(hist, path)
            self.fail(f"{res.explain()}\n(history saved to {path}; linearizability.load() reads it)")
        print(f"  linearizable: {res.explain()}; {sum(1 for o in hist if o.pending)} writes of "
              f"unknown outcome", flush=True)
        self.assertGreater(sum(1 for o in hist if o.kind == "write" and not o.pending), 20)
        self.assertGreater(sum(1 for o in hist if o.kind == "read"), 20)

        # Every node, the two restarted ones included, holds exactly the leader's state at that
        # linearizable read point (in its own copy: ?stale=true).
        for n in c.nodes:
            def caught_up():
                try:
                    s, b = n.local("/v1/services")
                except (cluster.Refused, cluster.Unknown):
                    return False
                return s == 200 and b.get("revision") == rev and \
                    cluster.canonical(cluster.services_by_name(b)) == cluster.canonical(svcs)
            try:
                harness.wait_until(caught_up, timeout=15, interval=0.1, what=f"{n.name} at revision {rev}")
            except AssertionError:
                s, b = n.local("/v1/services")
                self.fail(f"{n.name} did not catch up to revision {rev}: it has {b.get('revision')}\n"
                          f"{n.log_tail(30)}")
            self.assertGreaterEqual(n.routes_revision() or 0, rev)
        # ...in a cluster that still commits, through any of them.
        for n in c.nodes:
            s, b = n.api("POST", "/v1/services", {"name": f"after-{n.name}", "labels": {}})
            self.assertEqual(s, 201, b)


if __name__ == "__main__":
    unittest.main(verbosity=2)
