"""writes with an Idempotency-Key apply once; the CLI retries with one key over several managers.

Three managers on 127.0.0.61-63, compacting their logs every 16 entries (so a key's entry is
soon only in a snapshot). The state machine remembers each key with its first outcome: a
retry through any manager, after a timeout, a lost answer or a restart of every manager gets
that outcome again instead of a second task or a 409. The CLI takes `--api a,b,c` (or
ROUTEMESH_API), sends one key per command and tries the next manager on 503 and on connection
errors; fake managers (in this process) answer 503 or drop the connection to show it."""
import http.server
import json
import os
import re
import ssl
import threading
import time
import unittest
import uuid

import cluster
import harness

FIRST_IP = "127.0.0.61"
DEAD = "127.0.0.69:9901"  # nothing listens there
WRITE_TIMEOUT = 12.0


class FakeManager:
    """An admin API that records each request (method, path, headers, body) and either answers
    503 like a manager without a leader ("503") or closes the connection once it read the
    request, without answering ("drop"). It speaks TLS with the certificate of the cluster node
    `node` (the CLI talks only to nodes of its cluster's CA)."""

    def __init__(self, mode, node):
        self.mode, self.requests = mode, []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def handle_one(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode() if n else ""
                fake.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if fake.mode == "drop":
                    self.close_connection = True
                    return
                out = json.dumps({"error": {"code": "unavailable", "message": "no leader elected (fake)",
                                            "field": ""}}).encode()
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        d = os.path.join(node.data_dir, "tls")
        tls.load_cert_chain(os.path.join(d, "node.pem"), os.path.join(d, "node-key.pem"))
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class IdempotencyTest(cluster.SharedClusterTest):
    FIRST_IP = FIRST_IP
    CLUSTER_ARGS = {"snapshot_entries": 16}

    @classmethod
    def prepare(cls, c):
        s, b = c.leader().api("POST", "/v1/services", {"name": "app", "labels": {}})
        assert s == 201, (s, b)

    # -- helpers ----------------------------------------------------------------------------
    def post(self, node, path, body, key, timeout=10.0):
        return node.request("POST", path, body, headers={"Idempotency-Key": key}, timeout=timeout)

    def tasks_at(self, address):
        s, b = self.c.leader().get("/v1/tasks?service=app")
        self.assertEqual(s, 200, b)
        return [t for t in b["tasks"] if t["address"] == address]

    def replayed(self, node):
        return cluster.metric(node.metrics(), "routemesh_store_commands_total", {"result": "replayed"})

    # -- API --------------------------------------------------------------------------------
    def test_a_retried_task_add_creates_one_task_and_answers_the_first_outcome(self):
        lead = self.c.leader()
        f1, f2 = [n for n in self.c.managers if n is not lead]
        before = {n.name: self.replayed(n) for n in self.c.managers}
        key = str(uuid.uuid4())
        body = {"service": "app", "address": "10.0.0.7:8080"}
        s, _, first = self.post(f1, "/v1/tasks", body, key)  # forwarded: the key goes along
        self.assertEqual(s, 201, first)
        for via in (f2, lead, f1):
            s, _, again = self.post(via, "/v1/tasks", body, key)
            self.assertEqual(s, 201, again)
            self.assertEqual(again, first, f"retry through {via.name}")
        self.assertEqual(len(self.tasks_at("10.0.0.7")), 1, "a retried POST /v1/tasks made another task")
        # Without a key a second POST is a second task, as before.
        s, _, other = self.post(lead, "/v1/tasks", body, str(uuid.uuid4()))
        self.assertEqual(s, 201, other)
        self.assertNotEqual(other["task"]["id"], first["task"]["id"])
        # Every replica counted the three replays.
        def counted():
            return all(self.replayed(n) >= before[n.name] + 3 for n in self.c.managers)
        harness.wait_until(counted, timeout=10, what="routemesh_store_commands_total{result=replayed} on every manager")

    def test_a_retried_service_create_answers_its_first_201_not_a_409(self):
        lead = self.c.leader()
        via = next(n for n in self.c.managers if n is not lead)
        key = "create-svc-1"
        s, _, first = self.post(via, "/v1/services", {"name": "once", "labels": {"a": "1"}}, key)
        self.assertEqual(s, 201, first)
        # A newer write meanwhile: the replay is still the first answer, and changes nothing.
        s, b = lead.api("PUT", "/v1/services/once", {"name": "once", "labels": {"a": "2"}})
        self.assertEqual(s, 200, b)
        s, _, again = self.post(lead, "/v1/services", {"name": "once", "labels": {"a": "1"}}, key)
        self.assertEqual(s, 201, again)
        self.assertEqual(again, first)
        s, b = lead.get("/v1/services/once")
        self.assertEqual(b["service"]["labels"], {"a": "2"})
        # A rejection is a first outcome too, and a new key is a new request.
        s, _, b = self.post(lead, "/v1/services", {"name": "once", "labels": {}}, "create-svc-2")
        self.assertEqual(s, 409, b)
        s, _, b2 = self.post(via, "/v1/services", {"name": "once", "labels": {}}, "create-svc-2")
        self.assertEqual((s, b2), (409, b))

    def test_a_key_reused_with_another_request_is_a_422(self):
        lead = self.c.leader()
        s, _, b = self.post(lead, "/v1/services", {"name": "reuse-a", "labels": {}}, "reused")
        self.assertEqual(s, 201, b)
        s, _, b = self.post(lead, "/v1/services", {"name": "reuse-b", "labels": {}}, "reused")
        self.assertEqual(s, 422, b)
        e = cluster.error_of(b)
        self.assertEqual(e.get("code"), "key_reused", b)
        self.assertEqual(e.get("field"), "Idempotency-Key", b)
        self.assertEqual(lead.get("/v1/services/reuse-b")[0], 404)

    def test_a_malformed_key_is_a_400_naming_the_header(self):
        lead = self.c.leader()
        via = next(n for n in self.c.managers if n is not lead)
        for bad in ("", "x" * 129, "caf\u00e9"):
            for n in (lead, via):
                s, _, b = self.post(n, "/v1/services", {"name": "badkey", "labels": {}}, bad)
                self.assertEqual(s, 400, f"key {bad!r} on {n.name}: {b}")
                e = cluster.error_of(b)
                self.assertEqual(e.get("field"), "Idempotency-Key", b)
                self.assertIn("Idempotency-Key", json.dumps(b))
        s, _, b = self.post(lead, "/v1/services", {"name": "badkey", "labels": {}}, "x" * 128)
        self.assertEqual(s, 201, b)

    def test_a_write_that_timed_out_and_is_retried_with_its_key_applies_once(self):
        lead = self.c.leader()
        followers = [n for n in self.c.managers if n is not lead]
        key = "timed-out-1"
        body = {"service": "app", "address": "10.0.0.8:8080"}
        self.freeze(*followers)
        # The leader appends the entry but cannot commit it: 503 (it may still apply).
        try:
            s, _, b = self.post(lead, "/v1/tasks", body, key, timeout=WRITE_TIMEOUT)
        except cluster.Unknown:
            s, b = None, "no answer"
        self.assertNotIn(s, (200, 201), b)
        for n in followers:
            n.thaw()
        self.frozen = []
        # The client retries with the same key, through whichever manager answers, until done.
        deadline = time.monotonic() + 30
        answers = []
        while True:
            for via in self.c.managers:
                try:
                    s, _, b = self.post(via, "/v1/tasks", body, key, timeout=WRITE_TIMEOUT)
                except (cluster.Refused, cluster.Unknown) as e:
                    s, b = None, repr(e)
                answers.append((via.name, s))
                if s == 201:
                    break
            if s == 201 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(s, 201, f"retries: {answers}")
        self.assertEqual(len(self.tasks_at("10.0.0.8")), 1, f"the retried write applied twice: {answers}")

    def test_keys_survive_log_compaction_and_a_restart_of_every_manager(self):
        lead = self.c.leader()
        key = "survives-restart"
        body = {"service": "app", "address": "10.0.0.9:8080"}
        s, _, first = self.post(lead, "/v1/tasks", body, key)
        self.assertEqual(s, 201, first)
        commit = lead.status()["commit"]
        # More than two compaction intervals of other writes: the key's entry is now only in
        # the snapshots.
        for i in range(40):
            s, b = lead.api("PUT", "/v1/services/app", {"name": "app", "labels": {"n": str(i)}})
            self.assertEqual(s, 200, b)
        rx = re.compile(r"raft: node \w+ snapshot at (\d+)")

        def compacted():
            for n in self.c.managers:
                at = [int(m.group(1)) for l in n.proc.lines("err") + n.proc.lines("out")
                      for m in [rx.search(l)] if m]
                if not at or max(at) <= commit:
                    return False
            return True
        harness.wait_until(compacted, timeout=10, what=f"every manager compacted past index {commit}")
        for n in self.c.managers:
            n.stop()
        for n in self.c.managers:
            n.start(wait=False)
        for n in self.c.managers:
            n.wait_ready(30)
        self.c.wait_voters(timeout=30)
        for via in self.c.managers:
            s, _, again = self.post(via, "/v1/tasks", body, key, timeout=WRITE_TIMEOUT)
            self.assertEqual(s, 201, f"{via.name}: {again}")
            self.assertEqual(again, first, via.name)
        self.assertEqual(len(self.tasks_at("10.0.0.9")), 1)

    # -- CLI --------------------------------------------------------------------------------
    def test_cli_takes_several_managers_and_tries_the_next(self):
        m = self.c.managers
        rc, out, err = self.c.cli([DEAD, m[1], m[2]], "service", "create", "--name", "multi-1")
        self.assertEqual(rc, 0, err)
        self.assertIn(DEAD, err, "the failed attempt is reported")
        rc, out, err = self.c.cli(None, "service", "inspect", "multi-1",
                                  env={"ROUTEMESH_API": f"{DEAD},{m[0].admin}"})
        self.assertEqual(rc, 0, err)
        self.assertIn("multi-1", out)
        rc, out, err = self.c.cli(None, "service", "ls", env={"ROUTEMESH_API": f"{m[0].admin},nope"})
        self.assertEqual(rc, 2, out + err)
        self.assertIn("ROUTEMESH_API", err)
        rc, out, err = self.c.cli(f"{m[0].admin};{m[1].admin}", "service", "ls")
        self.assertEqual(rc, 2, out + err)
        self.assertIn("--api", err)

    def test_cli_gives_up_after_a_few_rounds(self):
        other = "127.0.0.68:9901"
        t0 = time.monotonic()
        rc, out, err = self.c.cli([DEAD, other], "service", "ls")
        took = time.monotonic() - t0
        self.assertEqual(rc, 1, out + err)
        self.assertIn(DEAD, err)
        self.assertIn(other, err)
        self.assertLess(took, 10, "refused connections are retried a few rounds, not for long")
        self.assertEqual(len(re.findall(r"cannot reach", err)), 6, err)

    def test_cli_retries_a_503_and_a_dropped_write_with_the_same_key(self):
        for mode in ("503", "drop"):
            fake = FakeManager(mode, self.c.managers[2])
            try:
                name = f"retried-{mode}"
                via = self.c.managers[1]
                rc, out, err = self.c.cli([fake.addr, via], "service", "create", "--name", name, "--json")
                self.assertEqual(rc, 0, err)
                self.assertIn(fake.addr, err)
                first = json.loads(out)
                self.assertEqual(first["service"]["name"], name)
                self.assertEqual(len(fake.requests), 1, fake.requests)
                method, path, headers, body = fake.requests[0]
                key = headers.get("idempotency-key", "")
                self.assertRegex(key, r"^[0-9a-f]{32}$", headers)
                # The manager got the same key: the same request with it is answered with the
                # CLI's first outcome (a 201, not "already exists").
                s, _, again = via.request(method, path, body, headers={"Idempotency-Key": key})
                self.assertEqual(s, 201, again)
                self.assertEqual(again, first)
                # Each command has its own key.
                rc, out, err = self.c.cli([fake.addr, via], "service", "rm", name)
                self.assertEqual(rc, 0, err)
                self.assertNotEqual(fake.requests[1][2].get("idempotency-key"), key)
            finally:
                fake.close()
        # Reads are retried too, without a key.
        fake = FakeManager("503", self.c.managers[2])
        try:
            rc, out, err = self.c.cli([fake.addr, self.c.managers[0]], "service", "ls")
            self.assertEqual(rc, 0, err)
            self.assertNotIn("idempotency-key", fake.requests[0][2])
            self.assertNotIn("stale", fake.requests[0][1])
            rc, out, err = self.c.cli([fake.addr, self.c.managers[0]], "--stale", "service", "ls")
            self.assertEqual(rc, 0, err)
            self.assertTrue(fake.requests[1][1].endswith("?stale=true"), fake.requests[1])
        finally:
            fake.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
