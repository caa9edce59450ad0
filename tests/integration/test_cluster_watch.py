"""a worker's watch survives the death of its manager.
3 managers (127.0.0.41-43) and a worker (127.0.0.44) that joins via the second manager.
The manager the worker's watch stream is connected to (seen in /proc) is killed with SIGKILL,
twice; a service created afterwards reaches the worker's routing, what it had before is still
routed, and the worker is then connected to another manager."""
import time
import unittest

import cluster
import harness

FIRST_IP = "127.0.0.41"


class WatchResumeTest(unittest.TestCase):
    def setUp(self):
        self.c = cluster.Cluster(FIRST_IP, ["manager", "manager", "manager", "worker"])
        try:
            # The worker joins through n2, so n2 is the manager it first watches.
            self.c.start(join_via={"n4": self.c.nodes[1]})
            self.wa = self.c.whoami("watch-a")
            self.wb = self.c.whoami("watch-b")
        except BaseException:
            self.c.stop()
            raise

    def tearDown(self):
        self.c.stop()

    def create(self, via, name, host, backend):
        s, b = via.api("POST", "/v1/services", {"name": name, "labels": {"mesh.http": host}})
        self.assertEqual(s, 201, b)
        s, b = via.api("POST", "/v1/tasks", {"service": name, "node": "n4", "address": backend.addr})
        self.assertEqual(s, 201, b)
        return b["revision"]

    def watched_manager(self, worker, exclude=()):
        """The manager whose admin API the worker holds a connection to (its watch stream), as
        the OS sees it; waits until there is exactly one, not in `exclude`."""
        by_admin = {m.admin: m for m in self.c.managers}

        def find():
            conns = [a for a in worker.connected_to() if a in by_admin]
            if len(conns) == 1 and by_admin[conns[0]] not in exclude:
                return by_admin[conns[0]]
            return None
        return harness.wait_until(find, timeout=15, interval=0.05,
                                  what=f"{worker.name}'s watch connection to a manager not in {exclude}")

    def test_worker_resumes_its_watch_from_another_manager_when_its_manager_dies(self):
        c = self.c
        worker = c.nodes[3]
        self.create(c.nodes[0], "before", "before.watch.test", self.wa)
        cluster.wait_routes_everywhere([worker], "before.watch.test", {"watch-a"}, timeout=10)

        # Twice: the first time the worker watches whichever manager it chose (it joined
        # through n2); the second time the manager it moved to.
        for round_, backend in ((1, self.wb), (2, self.wa)):
            dead = self.watched_manager(worker)
            dead.kill9()
            t_kill = time.monotonic()
            # If the dead manager was the leader, wait for the new one before writing.
            lead = c.leader(timeout=15, exclude=(dead,))
            host = f"after{round_}.watch.test"
            rev = self.create(lead, f"after{round_}", host, backend)
            cluster.wait_routes_everywhere([worker], host, {backend.name}, timeout=15)
            took = time.monotonic() - t_kill
            now = self.watched_manager(worker, exclude=(dead,))
            self.assertEqual(worker.served_by("before.watch.test"), "watch-a")
            self.assertGreaterEqual(worker.routes_revision() or 0, rev)
            print(f"\n  round {round_}: {dead.name} (watched) killed; the worker moved to {now.name} and "
                  f"routed the new service {took:.2f}s later", flush=True)
            # The dead manager comes back from disk before the next round.
            dead.start()
            c.wait_voters(timeout=15)
            c.wait_converged(timeout=15)

        # Later changes keep flowing (the watch is live, not a one-off resync): delete `before`.
        s, b = c.leader().api("DELETE", "/v1/services/before")
        self.assertEqual(s, 200, b)
        cluster.wait_not_routed([worker], "before.watch.test", timeout=10)
        self.assertEqual(worker.served_by("after1.watch.test"), "watch-b")

    def test_worker_restarted_from_its_data_dir_resyncs_without_joining_again(self):
        c = self.c
        n1, n2, n3, worker = c.nodes
        worker_id = worker.id
        worker.kill9()
        # Changes made while the worker is down reach it when it comes back.
        self.create(n3, "while-down", "down.watch.test", self.wa)
        worker.start()  # no --join: its data_dir holds its identity
        self.assertEqual(worker.id, worker_id)
        cluster.wait_routes_everywhere([worker], "down.watch.test", {"watch-a"}, timeout=15)
        s, b = c.leader().get("/v1/nodes")
        self.assertEqual(s, 200, b)
        workers = [x for x in cluster.find_objects(b) if x.get("role") == "worker"]
        self.assertEqual([x["id"] for x in workers], [worker_id], "the worker joined twice")


if __name__ == "__main__":
    unittest.main(verbosity=2)
