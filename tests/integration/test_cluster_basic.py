"""a cluster of 3 managers + 2 workers as real processes on 127.0.0.11-15.
Objects are created through the CLI on a follower (writes are forwarded to the leader) and
every node, manager or worker, routes them. CLI tables, --json, CLI and API errors."""
import subprocess
import json
import re
import unittest

import cluster
import harness

FIRST_IP = "127.0.0.11"


def parse_json(testcase, text, what):
    try:
        return json.loads(text)
    except ValueError as e:
        testcase.fail(f"{what}: --json output is not JSON ({e}): {text[:500]!r}")


class ClusterBasicTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = cluster.Cluster(FIRST_IP, ["manager", "manager", "manager", "worker", "worker"])
        try:
            cls.c.start()
            cls.w1 = cls.c.whoami("web-a")
            cls.w2 = cls.c.whoami("web-b")
        except BaseException:
            cls.c.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    # -- helpers ----------------------------------------------------------------------------
    def follower(self):
        return self.c.followers()[0]

    def cli(self, *args, via=None, expect_rc=0):
        via = via or self.follower()
        rc, out, err = self.c.cli(via, *args)
        if expect_rc is not None:
            self.assertEqual(rc, expect_rc, f"`routemesh --api {via.admin} {' '.join(args)}` exited {rc}\n"
                                            f"stdout: {out}\nstderr: {err}")
        return rc, out, err

    def cli_json(self, *args, via=None):
        _, out, _ = self.cli(*args, "--json", via=via)
        return parse_json(self, out, " ".join(args))

    # -- tests ------------------------------------------------------------------------------
    def test_cluster_init_prints_how_others_join(self):
        self.assertIn("--join", self.c.init_output)
        self.assertIn(self.c.nodes[0].admin, self.c.init_output)

    def test_objects_created_with_the_cli_on_a_follower_are_routed_by_every_node(self):
        via = self.follower()
        self.cli("network", "create", "appnet", via=via)
        self.cli("service", "create", "--name", "web", "--label", "mesh.http=web.test",
                 "--network", "appnet", via=via)
        self.cli("task", "add", "--service", "web", "--node", "n2", "--addr", self.w1.addr, via=via)
        self.cli("task", "add", "--service", "web", "--node", "n4", "--addr", self.w2.addr, via=via)
        nodes = self.c.nodes
        cluster.wait_routes_everywhere(nodes, "web.test", {"web-a", "web-b"})
        # Both tasks reached every node: round robin over two backends shows both names.
        for n in nodes:
            seen = {n.served_by("web.test") for _ in range(6)}
            self.assertEqual(seen, {"web-a", "web-b"}, f"{n.name} balances over {seen}")

        # The service as the CLI shows it.
        _, out, _ = self.cli("service", "ls")
        self.assertRegex(out, r"(?m)^.*\bweb\b")
        svc = self.cli_json("service", "inspect", "web")
        svc = svc.get("service", svc) if isinstance(svc, dict) else svc[0]
        self.assertEqual(svc["name"], "web")
        self.assertEqual(svc["labels"].get("mesh.http"), "web.test")
        self.assertIn("appnet", svc["networks"])
        # IPAM: appnet got a /24 from the default pool 10.10.0.0/16 and web a VIP in it.
        nets = {n["name"]: n for n in cluster.find_objects(self.cli_json("network", "ls"))}
        self.assertIn("appnet", nets)
        self.assertIn("ingress", nets)
        self.assertRegex(nets["appnet"]["subnet"], r"^10\.10\.\d+\.0/24$")
        vip = svc["vips"]["appnet"]
        prefix = nets["appnet"]["subnet"].rsplit(".", 1)[0] + "."
        self.assertTrue(vip.startswith(prefix), f"VIP {vip} not in {nets['appnet']['subnet']}")

        _, out, _ = self.cli("task", "ls", "--service", "web")
        self.assertIn(self.w1.addr.split(":")[0], out)
        for w in (self.w1, self.w2):
            self.assertIn(str(w.port), out)
        tasks = [t for t in cluster.find_objects(self.cli_json("task", "ls"), "service") if t["service"] == "web"]
        self.assertEqual(len(tasks), 2, tasks)
        self.assertEqual(sorted(t["node"] for t in tasks), ["n2", "n4"])
        self.assertEqual(sorted(t["port"] for t in tasks), sorted([self.w1.port, self.w2.port]))

        # An update (label replaced) reaches every node: the new host routes, the old one is gone.
        self.cli("service", "update", "web", "--label-add", "mesh.http=web2.test", via=via)
        cluster.wait_routes_everywhere(nodes, "web2.test", {"web-a", "web-b"})
        cluster.wait_not_routed(nodes, "web.test")

        # Removing a task: every node stops sending to it.
        t2 = next(t for t in tasks if t["port"] == self.w2.port)
        self.cli("task", "rm", t2["id"], via=via)
        self.c.wait_converged()
        for n in nodes:
            seen = {n.served_by("web2.test") for _ in range(4)}
            self.assertEqual(seen, {"web-a"}, f"{n.name} after task rm")

    def test_service_rm_stops_routing_on_every_node(self):
        via = self.follower()
        self.cli("service", "create", "--name", "gone", "--label", "mesh.http=gone.test", via=via)
        self.cli("task", "add", "--service", "gone", "--node", "n1", "--addr", self.w1.addr, via=via)
        cluster.wait_routes_everywhere(self.c.nodes, "gone.test", {"web-a"})
        self.cli("service", "rm", "gone", via=via)
        cluster.wait_not_routed(self.c.nodes, "gone.test")
        rc, out, err = self.cli("service", "inspect", "gone", expect_rc=1)
        self.assertIn("gone", out + err)
        # its tasks went with it
        tasks = cluster.find_objects(self.cli_json("task", "ls"), "service")
        self.assertFalse([t for t in tasks if t["service"] == "gone"], tasks)

    def test_node_ls_lists_every_node_with_its_role(self):
        _, out, _ = self.cli("node", "ls")
        for n in self.c.nodes:
            line = next((l for l in out.splitlines() if re.search(rf"\b{n.name}\b", l)), None)
            self.assertIsNotNone(line, f"{n.name} missing from `node ls`:\n{out}")
            self.assertIn(n.role, line.lower())
        nodes = {x["name"]: x for x in cluster.find_objects(self.cli_json("node", "ls"))}
        self.assertEqual(set(nodes), {n.name for n in self.c.nodes})
        for n in self.c.nodes:
            self.assertEqual(nodes[n.name]["role"], n.role)
            self.assertEqual(nodes[n.name]["id"], n.id)
            self.assertRegex(nodes[n.name]["id"], r"^[0-9a-f]{16}$")
            self.assertEqual(nodes[n.name]["address"], n.admin)

    def test_cluster_status_shows_leader_term_members_and_commit(self):
        lead = self.c.leader()
        _, out, _ = self.cli("cluster", "status")
        self.assertIn(lead.name, out)
        self.assertRegex(out.lower(), r"term")
        self.assertRegex(out.lower(), r"commit")
        for m in self.c.managers:
            self.assertIn(m.name, out)
        st = self.cli_json("cluster", "status")
        self.assertEqual(st["leader"]["name"], lead.name)
        self.assertEqual(st["leader"]["id"], lead.id)
        self.assertGreaterEqual(st["term"], 1)
        self.assertGreaterEqual(st["commit"], 1)
        self.assertGreaterEqual(st["applied"], 1)
        voters = {m["name"] for m in st["members"] if m.get("voter")}
        self.assertEqual(voters, {m.name for m in self.c.managers})
        for m in st["members"]:
            if m["name"] in voters:
                self.assertEqual(m["role"], "manager")
                self.assertEqual(m["peer"], self.c.node(m["name"]).peer)

    def test_duplicate_service_is_a_409_naming_the_field(self):
        via = self.follower()
        self.cli("service", "create", "--name", "dup", "--label", "mesh.http=dup.test", via=via)
        rc, out, err = self.cli("service", "create", "--name", "dup", via=via, expect_rc=1)
        self.assertIn("already exists", out + err)
        self.assertIn("service.name", out + err)
        s, b = via.api("POST", "/v1/services", {"name": "dup"})
        self.assertEqual(s, 409, b)
        e = cluster.error_of(b)
        self.assertEqual(e.get("code"), "conflict", b)
        self.assertEqual(e.get("field"), "service.name", b)
        self.assertIn("dup", e.get("message", ""))

    def test_bad_publish_flag_exits_2_naming_the_flag_and_creates_nothing(self):
        rc, out, err = self.cli("service", "create", "--name", "badpub", "--publish", "eighty", expect_rc=2)
        self.assertIn("--publish", err)
        s, b = self.c.leader().get("/v1/services/badpub")
        self.assertEqual(s, 404, b)

    def test_cli_cannot_reach_api_exits_1(self):
        rc, out, err = self.c.cli("127.0.0.19:9901", "service", "ls")  # nothing listens there
        self.assertEqual(rc, 1, out + err)
        self.assertIn("127.0.0.19:9901", out + err)

    def test_api_invalid_label_is_a_400_with_the_label_path(self):
        via = self.follower()
        s, b = via.api("POST", "/v1/services", {"name": "badlabel", "labels": {"mesh.http": "bad host!"}})
        self.assertEqual(s, 400, b)
        e = cluster.error_of(b)
        self.assertEqual(e.get("code"), "invalid", b)
        self.assertIn("labels.mesh.http", e.get("field", ""), b)
        self.assertEqual(self.c.leader().get("/v1/services/badlabel")[0], 404)

    def test_api_malformed_json_is_a_400(self):
        s, b = self.follower().api("POST", "/v1/services", b"{not json")
        self.assertEqual(s, 400, b)
        self.assertEqual(cluster.error_of(b).get("code"), "invalid", b)

    def test_api_unknown_objects_are_404(self):
        lead = self.c.leader()
        for method, path in (("GET", "/v1/services/nope"), ("DELETE", "/v1/services/nope"),
                             ("GET", "/v1/networks/nope"), ("DELETE", "/v1/tasks/nope"),
                             ("GET", "/v1/tasks/nope"), ("GET", "/v1/nodes/00000000000000ff")):
            s, b = self.follower().api(method, path)
            self.assertEqual(s, 404, f"{method} {path}: {b}")
            self.assertEqual(cluster.error_of(b).get("code"), "not_found", f"{method} {path}: {b}")
        s, b = self.follower().api("DELETE", "/v1/services/nope?version=abc")
        self.assertEqual(s, 400, b)
        self.assertEqual(cluster.error_of(b).get("field"), "version", b)
        s, b = lead.api("POST", "/v1/services", {"name": "needsnet", "networks": ["nonet"]})
        self.assertEqual(s, 400, b)
        self.assertIn("networks", cluster.error_of(b).get("field", ""), b)

    def test_writes_forwarded_by_a_follower_share_one_connection_to_the_leader(self):
        lead, via = self.c.leader(), self.follower()
        def leader_api_time_waits():
            # With "Connection: close" every forwarded write left a socket in TIME_WAIT on one
            # side of the follower -> leader connection; kept alive, they share one connection.
            out = subprocess.run(["ss", "-Htan", "state", "time-wait"], capture_output=True,
                                 text=True, check=True).stdout
            return sum(1 for line in out.splitlines() if f"{lead.ip}:{cluster.ADMIN_PORT}" in line)
        before = leader_api_time_waits()
        for i in range(30):
            s, b = via.api("PUT", "/v1/services/ka", {"name": "ka", "labels": {"n": str(i)}}) \
                if i else via.api("POST", "/v1/services", {"name": "ka", "labels": {"n": "0"}})
            self.assertIn(s, (200, 201), b)
        self.assertEqual(self.c.consistent_services(via=via)[1]["ka"]["labels"], {"n": "29"})
        self.assertLess(leader_api_time_waits() - before, 10,
                        "30 forwarded writes should not open 30 connections to the leader")

    def test_sequential_writes_cost_one_fdatasync_per_write_on_each_manager(self):
        # Each entry is synced once on each manager, when appended. The Ready that only moves
        # the commit index past it is not synced (a lost commit index is relearned from the
        # leader), which used to cost the leader a second fdatasync per write.
        lead = self.c.leader()
        def syncs():
            return {m.name: cluster.metric(m.metrics(), "routemesh_raft_fsync_duration_seconds_count")
                    for m in self.c.managers}
        s, b = lead.api("POST", "/v1/services", {"name": "syncs", "labels": {"n": "0"}})
        self.assertEqual(s, 201, b)
        before, writes = syncs(), 60
        for i in range(1, writes + 1):
            s, b = lead.api("PUT", "/v1/services/syncs", {"name": "syncs", "labels": {"n": str(i)}})
            self.assertEqual(s, 200, b)
        after = syncs()
        per_write = {name: round((after[name] - before[name]) / writes, 2) for name in after}
        for name, per in per_write.items():
            # Worker heartbeats and health reports are writes too, hence some slack above 1.
            self.assertLess(per, 1.5, f"fdatasyncs per sequential write on each manager: {per_write}")

    def test_api_stale_version_is_a_409_and_changes_nothing(self):
        via = self.follower()
        s, b = via.api("POST", "/v1/services", {"name": "cas", "labels": {"k": "1"}})
        self.assertEqual(s, 201, b)
        v1 = b["service"]["version"]
        self.assertEqual(b["revision"], v1)
        s, b = via.api("PUT", "/v1/services/cas", {"name": "cas", "labels": {"k": "2"}, "version": v1})
        self.assertEqual(s, 200, b)
        v2 = b["service"]["version"]
        self.assertGreater(v2, v1)
        s, b = via.api("PUT", "/v1/services/cas", {"name": "cas", "labels": {"k": "3"}, "version": v1})
        self.assertEqual(s, 409, b)
        self.assertEqual(cluster.error_of(b).get("code"), "version_mismatch", b)
        s, b = via.api("DELETE", f"/v1/services/cas?version={v1}")
        self.assertEqual(s, 409, b)
        rev, svcs = self.c.consistent_services(via=via)
        self.assertEqual(svcs["cas"]["labels"], {"k": "2"})
        self.assertEqual(svcs["cas"]["version"], v2)
        s, b = via.api("DELETE", f"/v1/services/cas?version={v2}")
        self.assertEqual(s, 200, b)

    def test_a_write_is_visible_to_a_linearizable_read_on_every_manager_at_once(self):
        via = self.follower()
        s, b = via.api("POST", "/v1/services", {"name": "ryw", "labels": {"k": "v"}})
        self.assertEqual(s, 201, b)
        rev = b["revision"]
        for m in self.c.managers:
            r, svcs = self.c.consistent_services(via=m)
            self.assertGreaterEqual(r, rev, m.name)
            self.assertIn("ryw", svcs, m.name)

    def test_workers_follow_the_revision_of_the_managers(self):
        via = self.follower()
        s, b = via.api("POST", "/v1/services", {"name": "rev-probe", "labels": {}})
        self.assertEqual(s, 201, b)
        rev = b["revision"]
        harness.wait_until(lambda: all((n.routes_revision() or 0) >= rev for n in self.c.workers),
                           timeout=10, what=f"workers at revision {rev}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
