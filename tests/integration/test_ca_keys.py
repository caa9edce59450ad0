"""Where the root CA's key lives, through real processes and files.

The usual cluster (3 managers and a worker on 127.0.0.151-154): the root's key is in the
replicated state, sealed with the manager key. Checked:
  - no node keeps the root's key in a file; managers hold data_dir/tls/manager-key (0600),
    workers do not; GET /v1/ca and `cluster ca status` say the key is in the state;
  - after SIGTERM to the first manager (the only node that saw the key in clear, at `cluster
    init`), a new leader among the managers that joined signs: a new worker joins, a viewer
    certificate is issued;
  - a demoted manager drops its manager key and a promoted one gets it back (and opens the
    state's key: it logs that it signs);
  - a restarted manager opens the key again from its own log;
  - `cluster manager-key rotate`, twice: every live manager takes each new key from the state
    (0600), the state's sealed key opens with the newest key only, the watch stream leaves the
    wrapped key out, each manager signs, and a manager that was down through both rotations
    gets the key with a certificate renewal and signs; an HTTPS certificate added before the
    rotations (its key sealed with the state's secrets key) is served by every node
    afterwards, the manager that was down included.

The operator's own root (`cluster init --ca-cert F --ca-key F`, 127.0.0.156-157): a P-384
root made with openssl. The join tokens pin it, the node certificates verify against it, and
`cluster ca rotate` replaces it with a root of the same subject; `cluster ca rotate --ca-cert F
--ca-key F` with the operator's next root (and refuses, changing nothing, a flag without its
partner, an unreadable file, another subject, a leaf, a key of another root, the current root).

An external CA (`--external-ca`, an RSA root, 127.0.0.158-160): the key stays in the first
manager's data_dir/tls/ca-key.pem and nowhere else, a manager that joins gets no key, a worker
that joins through it is signed by the leader, and `cluster ca rotate` and `cluster
manager-key rotate` and `cluster autolock enable` are refused (409).

Autolock (3 managers on 127.0.0.171-173): `cluster autolock enable` prints an unlock key
(`cluster unlock-key` shows it again; neither a viewer nor the watch stream sees it), and every
manager rewrites its manager key and node key encrypted with it (openssl opens the node key
with it and not without). A manager restarted without the key waits for `routemesh cluster
unlock` on data_dir/unlock.sock (0600): a wrong key is refused and it keeps waiting, SIGTERM
ends the wait with exit 0, the right key lets it start and sign. Started with another key it
exits 2 saying why; with `--unlock-key-file` or ROUTEMESH_UNLOCK_KEY it starts and signs. `cluster
unlock-key --rotate` re-encrypts the keys with a new key (the old one no longer starts a
manager), `cluster manager-key rotate` keeps them locked, and `cluster autolock disable` writes
them in clear again. `cluster init --autolock` (127.0.0.175-176) locks the first manager's keys
from the start and prints the key; that manager starts only with it, and a manager that joins
locks its keys with the same key. On a terminal a locked manager asks for the key (a wrong one
is refused and asked again).

Bad input to `cluster init` (a leaf, another root's key, an RSA-1024 root, a missing file, a
flag without its partner) exits 2, names the flag, and writes nothing.
"""
import http.client
import json
import os
import pty
import re
import shutil
import ssl
import subprocess
import tempfile
import unittest

import cluster
import harness
from test_https import HTTPS_PORT, TestCa, peer_cn, tls_connect
from test_ca_rotation import (der_digest, openssl_verify, parse_ca_status, parse_rotate,
                              read_text, tls_file, token_digest)

STORE_IP = "127.0.0.151"  # n1-n3 managers, n4 worker, n5 joins later
AUTOLOCK_IP = "127.0.0.171"  # n1-n3 managers
INIT_AUTOLOCK_IP = "127.0.0.175"  # n1, n2 managers, `cluster init --autolock`
OWN_IP = "127.0.0.156"    # n1 manager, n2 worker
EXTERNAL_IP = "127.0.0.158"  # n1, n2 managers, n3 worker
SUBJECT = "/O=Example Corp/CN=Example routemesh root"


def openssl(*args, cwd=None):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, cwd=cwd)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)}: {r.stderr}")
    return r.stdout


def make_root(dir, name, key_args, ca=True, subject=SUBJECT):
    """A self-signed certificate and its key (PEM files in `dir`): (cert path, key path)."""
    cert, key = os.path.join(dir, f"{name}.pem"), os.path.join(dir, f"{name}-key.pem")
    ext = (["-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign"] if ca else
           ["-addext", "basicConstraints=critical,CA:FALSE"])
    openssl("req", "-x509", "-nodes", *key_args, "-keyout", key, "-out", cert, "-days", "30",
            "-subj", subject, *ext)
    return cert, key


def subject_of(pem_text):
    r = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem_text,
                       capture_output=True, text=True, timeout=10)
    return r.stdout.strip()


def signs_count(node):
    """How many times the node's current process logged that it opened the CA key."""
    return sum("this manager signs with root" in line for line in node.proc.lines())


def has_file(node, name):
    return os.path.exists(tls_file(node, name))


class StoreKeyTest(cluster.SharedClusterTest):
    FIRST_IP = STORE_IP
    ROLES = ["manager", "manager", "manager", "worker"]
    CLUSTER_ARGS = {"node_settings": {"https_port": HTTPS_PORT}}

    def ca_status(self, via):
        rc, out, err = self.c.cli(via, "cluster", "ca", "status")
        self.assertEqual(rc, 0, f"cluster ca status: {err}")
        return out

    def test_the_key_is_sealed_in_the_state_and_every_manager_signs(self):
        c = self.c
        for n in c.nodes:
            self.assertFalse(has_file(n, "ca-key.pem"), f"{n.name} keeps the CA key in a file")
            self.assertEqual(has_file(n, "manager-key"), n.is_manager, n.name)
            if n.is_manager:
                self.assertEqual(os.stat(tls_file(n, "manager-key")).st_mode & 0o777, 0o600)
                self.assertRegex(read_text(tls_file(n, "manager-key")).strip(), r"^[0-9a-f]{64}$")
        keys = {read_text(tls_file(n, "manager-key")) for n in c.managers}
        self.assertEqual(len(keys), 1, "the managers hold different manager keys")
        s, body = c.nodes[0].api("GET", "/v1/ca")
        self.assertEqual(s, 200, body)
        self.assertEqual(body["key"], "state")
        self.assertIn("key: sealed in the cluster state", self.ca_status(c.nodes[0]))

        # A manager restarted from its data_dir opens the key again (it logs that it signs).
        n2 = c.nodes[1]
        self.assertIsNotNone(n2.stop(), "n2 did not exit")
        n2.start()
        harness.wait_until(lambda: signs_count(n2) > 0,
                           timeout=15, interval=0.1, what="n2 opening the CA key after restart")
        c.wait_voters(timeout=20)

        # Demoted, a manager drops the manager key; promoted, it gets it back and signs.
        n3 = c.nodes[2]
        rc, out, err = c.cli(c.leader(), "node", "demote", n3.name)
        self.assertEqual(rc, 0, f"node demote: {err}")
        harness.wait_until(lambda: not has_file(n3, "manager-key"), timeout=15, interval=0.1,
                           what="n3 dropping its manager key after demote")
        marks = signs_count(n3)
        rc, out, err = c.cli(c.leader(), "node", "promote", n3.name)
        self.assertEqual(rc, 0, f"node promote: {err}")
        harness.wait_until(lambda: has_file(n3, "manager-key"), timeout=15, interval=0.1,
                           what="n3 holding the manager key again after promote")
        harness.wait_until(
            lambda: signs_count(n3) > marks,
            timeout=15, interval=0.1, what="n3 opening the CA key after promote")
        c.wait_voters(timeout=20)

        # The first manager goes; the managers that joined (they never saw the key in clear)
        # sign: a new worker joins, a viewer certificate is issued.
        first = c.nodes[0]
        self.assertIsNotNone(first.stop(), "n1 did not exit")
        survivors = [n for n in c.managers if n is not first]
        lead = c.leader(timeout=20, exclude=(first,))
        self.assertIn(lead, survivors)
        worker = cluster.ClusterNode(c, "n5", "127.0.0.155", "worker")
        c.nodes.append(worker)
        worker.start(join=survivors[0].admin, timeout=30)
        self.assertTrue(has_file(worker, "node.pem"))
        rc, out = openssl_verify(tls_file(lead, "ca.pem"), tls_file(worker, "node.pem"))
        self.assertEqual(rc, 0, out)
        out_dir = os.path.join(c.dir, "viewer")
        rc, out, err = c.cli(survivors[1], "cert", "issue", "--role", "viewer", "--name", "v",
                             "--out", out_dir)
        self.assertEqual(rc, 0, f"cert issue after the first manager stopped: {err}")
        self.assertIn("key: sealed in the cluster state", self.ca_status(survivors[1]))

    def watch_snapshot(self, via):
        """The state as the watch stream's first line gives it to an admin."""
        host, _, port = via.admin.rpartition(":")
        conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=self.c.tls)
        try:
            conn.request("GET", "/v1/watch")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            line = json.loads(r.readline())
        finally:
            conn.close()
        self.assertEqual(line["type"], "snapshot")
        return line["state"]

    def test_the_manager_key_rotates_and_every_manager_takes_it(self):
        c = self.c
        # A manager that is down through two rotations: it holds a key two generations old,
        # which opens nothing in the state when it comes back (the other test of this class
        # leaves the first manager stopped; run alone, a follower is stopped here).
        down = next((n for n in c.managers if not n.alive), None)
        if down is None:
            down = c.followers()[0]
            self.assertIsNotNone(down.stop(), f"{down.name} did not exit")
        live = [n for n in c.managers if n.alive]
        k0 = read_text(tls_file(down, "manager-key")).strip()
        self.assertEqual(read_text(tls_file(live[0], "manager-key")).strip(), k0)
        via = next(n for n in live if n is not c.leader())  # forwarded to the leader
        # An HTTPS certificate, its key sealed with the state's secrets key, which every
        # rotation seals anew: every node keeps serving it, the manager that was down too once
        # it has the newest key.
        test_ca = TestCa(tempfile.mkdtemp(prefix="rm-ca-keys-https-", dir=c.dir))
        pair = test_ca.issue("mk.test", ["mk.test"])
        rc, out, err = c.cli(via, "cert", "add", "--host", "mk.test", "--cert", pair[0], "--key",
                             pair[1])
        self.assertEqual(rc, 0, f"cert add: {out}\n{err}")

        def serves(n):
            try:
                with tls_connect(n.ip, "mk.test", test_ca.cert) as s:
                    return peer_cn(s) == "mk.test"
            except (OSError, ssl.SSLError):
                return False

        keys = [k0]
        for _ in range(2):
            rc, out, err = c.cli(via, "cluster", "manager-key", "rotate")
            self.assertEqual(rc, 0, f"cluster manager-key rotate: {out}\n{err}")
            m = re.search(r"its id is ([0-9a-f]{16})", out)
            self.assertIsNotNone(m, out)
            s, body = c.leader().get("/v1/ca")
            self.assertEqual((s, body.get("manager_key_id")), (200, m.group(1)), body)
            # Every live manager takes the new key from the state and writes it (0600).

            def taken():
                now = {read_text(tls_file(n, "manager-key")).strip() for n in live}
                return now if len(now) == 1 and keys[-1] not in now else None
            new = harness.wait_until(taken, timeout=15, interval=0.1,
                                     what="every live manager holding the new manager key")
            keys.append(new.pop())
            for n in live:
                self.assertEqual(os.stat(tls_file(n, "manager-key")).st_mode & 0o777, 0o600)
            rc, out, err = c.cli(via, "cluster", "ca", "status")
            self.assertIn(f"manager key: {m.group(1)}", out)
        self.assertEqual(len(set(keys)), 3, "a rotation made a key that was there before")

        # The root's key in the state opens with the newest manager key only; the wrapped key
        # stays with the managers (the watch stream leaves it out).
        state = self.watch_snapshot(via)
        self.assertIn("manager_key_id", state["ca"])
        self.assertNotIn("manager_key_wrapped", state["ca"])
        sealed = os.path.join(c.dir, "sealed-ca-key.pem")
        with open(sealed, "w") as f:
            f.write(state["ca"]["sealed_key"])
        for key, opens in ((keys[2], True), (keys[1], False), (keys[0], False)):
            r = subprocess.run(["openssl", "pkey", "-in", sealed, "-passin", f"pass:{key}",
                                "-noout"], capture_output=True, text=True, timeout=10)
            self.assertEqual(r.returncode == 0, opens, f"key {keys.index(key)}: {r.stderr}")

        # Signing goes on: through each live manager.
        for i, n in enumerate(live):
            rc, out, err = c.cli(n, "cert", "issue", "--role", "viewer", "--name", f"mk{i}",
                                 "--out", os.path.join(c.dir, f"mk{i}"))
            self.assertEqual(rc, 0, f"cert issue via {n.name}: {err}")

        # The manager that was down asks for the key (its own opens neither wrapped key),
        # gets it with a certificate renewal, and signs with it.
        down.start()
        harness.wait_until(
            lambda: read_text(tls_file(down, "manager-key")).strip() == keys[2], timeout=20,
            interval=0.1, what=f"{down.name} taking the newest manager key")
        harness.wait_until(lambda: signs_count(down) > 0, timeout=15, interval=0.1,
                           what=f"{down.name} opening the CA key with it")
        self.assertTrue(any("missed more than one rotation" in line
                            for line in down.proc.lines()))
        c.wait_voters(timeout=20)
        for n in c.nodes:
            if n.alive:
                harness.wait_until(lambda: serves(n), timeout=15, interval=0.2,
                                   what=f"{n.name} serving the HTTPS certificate")
        # Until its renewal brought the newest key, it could not open the key: said at most
        # once. Whether it is said at all depends on whether a route compile ran before the key
        # came: compiles are at least 10 ms apart (cmd/route_publisher.cc), and on loopback the
        # renewal is often quicker.
        unopened = [l for l in down.proc.lines() if "cannot open yet" in l]
        self.assertLessEqual(len(unopened), 1, unopened)
        for line in unopened:
            self.assertIn("mk.test", line)


def cli_unlock_key(test, c, via, rotate=False):
    """The unlock key `cluster unlock-key [--rotate]` prints through `via`."""
    rc, out, err = c.cli(via, "cluster", "unlock-key", *(["--rotate"] if rotate else []))
    test.assertEqual(rc, 0, f"cluster unlock-key: {out}\n{err}")
    m = re.search(r"^\s+([0-9a-f]{64})$", out, re.M)
    test.assertIsNotNone(m, out)
    return m.group(1)


def key_opens(node, unlock_key):
    """Whether openssl opens the node's node-key.pem with `unlock_key` as the passphrase."""
    r = subprocess.run(["openssl", "pkey", "-in", tls_file(node, "node-key.pem"), "-passin",
                        f"pass:{unlock_key}", "-noout"], capture_output=True, text=True,
                       timeout=10)
    return r.returncode == 0


def unlock(node, *args, env=None):
    """`routemesh cluster unlock --config NODE_CONFIG ARGS`: (exit code, stdout, stderr)."""
    r = subprocess.run([cluster.bin_path(), "cluster", "unlock", "--config", node.config_path,
                        *args], capture_output=True, text=True, timeout=30,
                       env=None if env is None else {**os.environ, **env}, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def locked_with(node, unlock_key):
    """Whether both of the node's keys are on disk encrypted, the node key with `unlock_key`."""
    return (read_text(tls_file(node, "manager-key")).startswith("locked:")
            and "ENCRYPTED PRIVATE KEY" in read_text(tls_file(node, "node-key.pem"))
            and key_opens(node, unlock_key))


class AutolockTest(cluster.SharedClusterTest):
    FIRST_IP = AUTOLOCK_IP
    ROLES = ["manager", "manager", "manager"]

    def unlock_key(self, via, rotate=False):
        return cli_unlock_key(self, self.c, via, rotate)

    def refused_start(self, node, extra_args=(), env=None):
        """Starts `node`, which must exit 2 before it is ready: its log lines."""
        node.start(wait=False, extra_args=extra_args, env=env)
        node.proc.p.wait(20)
        self.assertEqual(node.proc.p.returncode, 2, node.log_tail())
        return "\n".join(node.proc.lines())

    def restart(self, node, **kw):
        self.assertIsNotNone(node.stop(), f"{node.name} did not exit")
        node.start(**kw)
        self.c.wait_voters(timeout=20)

    def test_autolock_locks_every_managers_keys_until_it_is_given_the_key(self):
        c = self.c
        n1, n2, n3 = c.nodes
        self.assertRegex(read_text(tls_file(n2, "manager-key")).strip(), r"^[0-9a-f]{64}$")
        rc, out, err = c.cli(n2, "cluster", "unlock-key")
        self.assertEqual(rc, 1, out)
        self.assertIn("autolock is off", err)

        # A body without a boolean `enabled` is refused, naming the field; nothing changes.
        for body in ({"enabled": "yes"}, {}):
            s, b = n1.api("POST", "/v1/cluster/autolock", body)
            self.assertEqual((s, b["error"]["field"]), (400, "enabled"), b)
        s, b = n1.api("GET", "/v1/cluster/autolock")
        self.assertEqual((s, b["enabled"]), (200, False), b)

        # On: a key, shown again by `unlock-key`; every manager locks its keys with it.
        rc, out, err = c.cli(n2, "cluster", "autolock", "enable")
        self.assertEqual(rc, 0, f"cluster autolock enable: {out}\n{err}")
        key = re.search(r"^\s+([0-9a-f]{64})$", out, re.M).group(1)
        self.assertEqual(self.unlock_key(n3), key)
        for n in c.nodes:
            harness.wait_until(lambda: locked_with(n, key), timeout=15, interval=0.1,
                               what=f"{n.name} locking its keys")
            self.assertNotIn(key, read_text(tls_file(n, "manager-key")))
            self.assertFalse(key_opens(n, "0" * 64), f"{n.name}: another key opens it")
            for name in ("manager-key", "node-key.pem"):
                self.assertEqual(os.stat(tls_file(n, name)).st_mode & 0o777, 0o600)
        self.assertNotIn("unlock_key_wrapped", StoreKeyTest.watch_snapshot(self, n1)["ca"])
        viewer_dir = os.path.join(c.dir, "al-viewer")
        rc, out, err = c.cli(n1, "cert", "issue", "--role", "viewer", "--name", "al",
                             "--out", viewer_dir)
        self.assertEqual(rc, 0, f"cert issue: {err}")
        rc, out, err = c.cli(n1, "cluster", "unlock-key", "--cert", f"{viewer_dir}/cert.pem",
                             "--key", f"{viewer_dir}/key.pem", "--ca", f"{viewer_dir}/ca.pem")
        self.assertEqual(rc, 1, out)
        self.assertIn("admin only", err)
        self.assertNotIn(key, out + err)

        # A restarted manager given no key waits for `cluster unlock` on its socket: a wrong
        # key is refused and it keeps waiting; SIGTERM ends the wait cleanly; the right key
        # lets it go on.
        self.assertIsNotNone(n2.stop(), "n2 did not exit")
        sock = os.path.join(n2.data_dir, "unlock.sock")

        def start_waiting():
            n2.start(wait=False)
            harness.wait_until(
                lambda: os.path.exists(sock)
                and "this manager is locked" in "\n".join(n2.proc.lines()),
                timeout=15, interval=0.1, what="n2 waiting for its unlock key")
            self.assertEqual(os.stat(sock).st_mode & 0o777, 0o600)
        start_waiting()
        wrong = os.path.join(c.dir, "wrong-unlock-key")
        with open(wrong, "w") as f:
            f.write("ab" * 32 + "\n")
        rc, out, err = unlock(n2, "--unlock-key-file", wrong)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("does not open", err)
        rc, out, err = unlock(n2, env={"ROUTEMESH_UNLOCK_KEY": "not a key"})
        self.assertEqual(rc, 2, out + err)
        self.assertIn("ROUTEMESH_UNLOCK_KEY", err)
        self.assertTrue(n2.alive, "n2 stopped waiting after a refused key")
        self.assertEqual(n2.stop(), 0, n2.log_tail())
        self.assertFalse(os.path.exists(sock), "the socket outlived the wait")
        rc, out, err = unlock(n2, env={"ROUTEMESH_UNLOCK_KEY": key})
        self.assertEqual(rc, 1, out + err)
        self.assertIn("no locked manager waits", err)
        # A data_dir whose socket path does not fit a Unix socket address (108 bytes): the
        # manager says so and exits 2 rather than wait where nothing can reach it, and
        # `cluster unlock` names the path.
        deep = os.path.join(c.dir, "d" * 100)
        os.symlink(n2.data_dir, deep)
        saved = n2.data_dir
        n2.data_dir = deep
        n2.write_config()
        try:
            n2.start(wait=False)
            n2.proc.p.wait(20)
            self.assertEqual(n2.proc.stop(), 2, n2.log_tail())
            self.assertIn("too long for a Unix socket", "\n".join(n2.proc.lines()))
            rc, out, err = unlock(n2, env={"ROUTEMESH_UNLOCK_KEY": key})
            self.assertEqual(rc, 1, out + err)
            self.assertIn("too long for a Unix socket", err)
        finally:
            n2.data_dir = saved
            n2.write_config()
            os.remove(deep)
        start_waiting()
        # Typed on a terminal this time (echo off: the key is not printed back).
        master, slave = pty.openpty()
        try:
            os.write(master, (key + "\n").encode())
            r = subprocess.run([cluster.bin_path(), "cluster", "unlock", "--config",
                                n2.config_path], stdin=slave, capture_output=True, text=True,
                               timeout=30)
        finally:
            os.close(slave)
            os.close(master)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("unlock key:", r.stderr)
        self.assertNotIn(key, r.stdout + r.stderr)
        n2.wait_ready(timeout=30)
        harness.wait_until(lambda: signs_count(n2) > 0, timeout=15, interval=0.1,
                           what="n2 opening the CA key after `cluster unlock`")
        self.assertFalse(os.path.exists(sock))
        c.wait_voters(timeout=20)

        # A key given at start that does not open the keys ends the start; the right one starts.
        self.assertIsNotNone(n2.stop(), "n2 did not exit")
        with open(wrong, "w") as f:
            f.write("ab" * 32 + "\n")
        self.assertIn("does not open", self.refused_start(n2, ["--unlock-key-file", wrong]))
        with open(wrong, "w") as f:
            f.write("not a key\n")
        self.assertIn("not an unlock key", self.refused_start(n2, ["--unlock-key-file", wrong]))
        right = os.path.join(c.dir, "unlock-key")
        with open(right, "w") as f:
            f.write(key + "\n")
        n2.start(extra_args=["--unlock-key-file", right])
        harness.wait_until(lambda: signs_count(n2) > 0, timeout=15, interval=0.1,
                           what="n2 opening the CA key after an unlocked start")
        c.wait_voters(timeout=20)
        self.restart(n3, env={"ROUTEMESH_UNLOCK_KEY": key})
        rc, out, err = c.cli(n3, "cert", "issue", "--role", "viewer", "--name", "al3",
                             "--out", os.path.join(c.dir, "al3"))
        self.assertEqual(rc, 0, f"cert issue via n3: {err}")

        # A new unlock key: every manager locks with it, and the old one starts nothing.
        key2 = self.unlock_key(n1, rotate=True)
        self.assertNotEqual(key2, key)
        for n in c.nodes:
            harness.wait_until(lambda: locked_with(n, key2), timeout=15, interval=0.1,
                               what=f"{n.name} locking its keys with the new unlock key")
        self.assertEqual(self.unlock_key(n2), key2)
        self.assertIsNotNone(n2.stop(), "n2 did not exit")
        self.assertIn("does not open", self.refused_start(n2, ["--unlock-key-file", right]))
        n2.start(env={"ROUTEMESH_UNLOCK_KEY": key2})
        c.wait_voters(timeout=20)

        # A new manager key keeps the files locked with the same unlock key.
        before = read_text(tls_file(n1, "manager-key"))
        rc, out, err = c.cli(n1, "cluster", "manager-key", "rotate")
        self.assertEqual(rc, 0, f"cluster manager-key rotate: {out}\n{err}")
        for n in c.nodes:
            harness.wait_until(
                lambda: read_text(tls_file(n, "manager-key")) != before
                and locked_with(n, key2), timeout=15, interval=0.1,
                what=f"{n.name} writing the new manager key locked")
        self.assertEqual(self.unlock_key(n3), key2)
        self.restart(n1, env={"ROUTEMESH_UNLOCK_KEY": key2})
        harness.wait_until(lambda: signs_count(n1) > 0, timeout=15, interval=0.1,
                           what="n1 opening the CA key with the new manager key")

        # Off: the keys in clear again, and a manager starts without a key.
        rc, out, err = c.cli(n2, "cluster", "autolock", "disable")
        self.assertEqual(rc, 0, f"cluster autolock disable: {out}\n{err}")
        self.assertIn("autolock is off", out)
        for n in c.nodes:
            harness.wait_until(
                lambda: re.fullmatch(r"[0-9a-f]{64}\s*", read_text(tls_file(n, "manager-key")))
                and "ENCRYPTED" not in read_text(tls_file(n, "node-key.pem")),
                timeout=15, interval=0.1, what=f"{n.name} writing its keys in clear")
        self.restart(n3)
        rc, out, err = c.cli(n3, "cluster", "unlock-key")
        self.assertEqual(rc, 1, out)


class InitAutolockTest(unittest.TestCase):
    def test_cluster_init_autolock_locks_the_first_manager_and_every_manager_after_it(self):
        c = cluster.Cluster(INIT_AUTOLOCK_IP, ["manager", "manager"], init_args=["--autolock"])
        master = None
        try:
            first, second = c.nodes
            out = first.init()
            c.read_init_output(out)
            m = re.search(r"^\s+([0-9a-f]{64})$", out, re.M)
            self.assertIsNotNone(m, out)
            key = m.group(1)
            self.assertTrue(locked_with(first, key))
            # Not on a terminal, with no key: it waits for `cluster unlock` until stopped.
            first.start(wait=False)
            harness.wait_until(
                lambda: os.path.exists(os.path.join(first.data_dir, "unlock.sock"))
                and "this manager is locked" in "\n".join(first.proc.lines()),
                timeout=15, interval=0.1, what="the first manager waiting for its unlock key")
            self.assertEqual(first.stop(), 0, first.log_tail())
            # On a terminal it asks for the key: a wrong one, then the right one.
            master, slave = pty.openpty()
            try:
                first.start(wait=False, stdin=slave)
                os.write(master, ("ab" * 32 + "\n" + key + "\n").encode())
                first.wait_ready(timeout=20)
            finally:
                os.close(slave)  # the node holds its own copy; `master` closes at the end
            lines = "\n".join(first.proc.lines())
            self.assertIn("unlock key:", lines)
            self.assertIn("does not open", lines)
            self.assertNotIn(key, lines)
            second.start(join=first.admin)
            c.wait_voters(timeout=20)
            harness.wait_until(lambda: locked_with(second, key), timeout=15,
                               interval=0.1, what="the manager that joined locking its keys")
            self.assertEqual(cli_unlock_key(self, c, second), key)
            rc, out, err = c.cli(second, "cert", "issue", "--role", "viewer", "--name", "ia",
                                 "--out", os.path.join(c.dir, "ia"))
            self.assertEqual(rc, 0, f"cert issue: {err}")
        finally:
            c.stop()
            if master is not None:
                os.close(master)

    def test_autolock_needs_a_manager_key(self):
        d = tempfile.mkdtemp(prefix="rm-init-autolock-")
        try:
            cert, key = make_root(d, "root", ["-newkey", "ec", "-pkeyopt",
                                              "ec_paramgen_curve:P-256"])
            cfg = os.path.join(d, "n1.yaml")
            with open(cfg, "w") as f:
                json.dump({"node": {"name": "n1", "listen": "127.0.0.177",
                                    "admin": "127.0.0.177:9900"},
                           "cluster": {"role": "manager", "data_dir": os.path.join(d, "data"),
                                       "peer": "127.0.0.177:9901"}}, f)
            r = subprocess.run([cluster.bin_path(), "cluster", "init", "--config", cfg,
                                "--cert-dir", os.path.join(d, "cli"), "--ca-cert", cert,
                                "--ca-key", key, "--external-ca", "--autolock"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn("--autolock", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(d, "data", "identity.json")))
        finally:
            shutil.rmtree(d, ignore_errors=True)


class OwnRootTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rm-own-root-")
        self.cert, self.key = make_root(
            self.tmp, "root", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"])
        self.c = cluster.Cluster(OWN_IP, ["manager", "worker"],
                                 init_args=["--ca-cert", self.cert, "--ca-key", self.key])

    def tearDown(self):
        self.c.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_an_imported_root_signs_and_rotates_to_a_root_of_its_subject(self):
        c = self.c.start()
        digest = der_digest(read_text(self.cert))
        self.assertEqual(token_digest(c.worker_token), digest)
        self.assertEqual(token_digest(c.manager_token), digest)
        for n in c.nodes:
            rc, out = openssl_verify(self.cert, tls_file(n, "node.pem"))
            self.assertEqual(rc, 0, f"{n.name}'s certificate against the operator's root: {out}")
            self.assertFalse(has_file(n, "ca-key.pem"))
        rc, out, err = c.cli(c.nodes[0], "cluster", "ca", "status")
        self.assertEqual(rc, 0, err)
        self.assertEqual(parse_ca_status(out)["root"], digest)
        self.assertIn("key: sealed in the cluster state", out)

        rc, out, err = c.cli(c.nodes[0], "cluster", "ca", "rotate", "--grace", "0")
        self.assertEqual(rc, 0, f"cluster ca rotate: {out}\n{err}")
        new, _, _ = parse_rotate(out)
        self.assertIsNotNone(new, out)

        def done():
            rc, out, _ = c.cli(c.nodes[0], "cluster", "ca", "status")
            st = parse_ca_status(out) if rc == 0 else {}
            return st.get("rotating") == "no" and st.get("root") == new
        harness.wait_until(done, timeout=40, interval=0.3, what="the rotation to finish")
        roots = read_text(tls_file(c.nodes[1], "ca.pem"))
        self.assertEqual(subject_of(roots), subject_of(read_text(self.cert)))
        harness.wait_until(
            lambda: openssl_verify(tls_file(c.nodes[1], "ca.pem"),
                                   tls_file(c.nodes[1], "node.pem"))[0] == 0,
            timeout=15, interval=0.2, what="the worker's certificate of the new root")

    def test_a_rotation_to_the_operators_next_root(self):
        c = self.c.start()
        p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        nxt, nxt_key = make_root(self.tmp, "next", p256)
        other, other_key = make_root(self.tmp, "other", p256, subject="/O=Someone Else/CN=root")
        leaf, leaf_key = make_root(self.tmp, "leaf", p256, ca=False)
        before = parse_ca_status(c.cli(c.nodes[0], "cluster", "ca", "status")[1])

        # Refused, naming what is wrong, with nothing changed.
        for args, rc_want, says in (
                (["--ca-cert", nxt], 2, "--ca-key FILE required"),
                (["--ca-cert", os.path.join(self.tmp, "missing.pem"), "--ca-key", nxt_key], 2,
                 "--ca-cert: cannot read"),
                (["--ca-cert", other, "--ca-key", other_key], 1, "current root's subject"),
                (["--ca-cert", leaf, "--ca-key", leaf_key], 1, "not a root this cluster can take"),
                (["--ca-cert", nxt, "--ca-key", other_key], 1, "not a root this cluster can take"),
                (["--ca-cert", self.cert, "--ca-key", self.key], 1, "that is the current root")):
            rc, out, err = c.cli(c.nodes[0], "cluster", "ca", "rotate", "--grace", "0", *args)
            self.assertEqual(rc, rc_want, f"{args}: {out}\n{err}")
            self.assertIn(says, err + out, args)
        after = parse_ca_status(c.cli(c.nodes[0], "cluster", "ca", "status")[1])
        self.assertEqual(after, before)

        # The operator's next root: the join tokens pin it and every node is re-issued by it.
        rc, out, err = c.cli(c.nodes[0], "cluster", "ca", "rotate", "--grace", "0",
                             "--ca-cert", nxt, "--ca-key", nxt_key)
        self.assertEqual(rc, 0, f"cluster ca rotate --ca-cert: {out}\n{err}")
        new, worker_token, _ = parse_rotate(out)
        self.assertEqual(new, der_digest(read_text(nxt)))

        def done():
            rc, out, _ = c.cli(c.nodes[0], "cluster", "ca", "status")
            st = parse_ca_status(out) if rc == 0 else {}
            return st.get("rotating") == "no" and st.get("root") == new
        harness.wait_until(done, timeout=40, interval=0.3, what="the rotation to finish")
        for n in c.nodes:
            harness.wait_until(lambda: openssl_verify(nxt, tls_file(n, "node.pem"))[0] == 0,
                               timeout=15, interval=0.2,
                               what=f"{n.name}'s certificate of the operator's next root")
        self.assertFalse(has_file(c.nodes[0], "ca-key.pem"))


class ExternalCaTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rm-external-ca-")
        self.cert, self.key = make_root(self.tmp, "root", ["-newkey", "rsa:2048"])
        self.c = cluster.Cluster(EXTERNAL_IP, ["manager", "manager", "worker"],
                                 init_args=["--ca-cert", self.cert, "--ca-key", self.key,
                                            "--external-ca"])

    def tearDown(self):
        self.c.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_the_key_stays_in_the_first_managers_file(self):
        c = self.c
        n1, n2, n3 = c.nodes
        c.read_init_output(n1.init())
        n1.start()
        n2.start(join=n1.admin)
        n3.start(join=n2.admin)  # forwarded to the leader, which holds the key
        c.wait_voters()
        self.assertEqual(read_text(tls_file(n1, "ca-key.pem")), read_text(self.key))
        for n in c.nodes:
            self.assertFalse(has_file(n, "manager-key"), n.name)
            rc, out = openssl_verify(self.cert, tls_file(n, "node.pem"))
            self.assertEqual(rc, 0, f"{n.name}: {out}")
        self.assertFalse(has_file(n2, "ca-key.pem"), "a joining manager got the external key")
        self.assertFalse(has_file(n3, "ca-key.pem"))
        s, body = n2.api("GET", "/v1/ca")
        self.assertEqual(s, 200, body)
        self.assertEqual(body["key"], "file")
        rc, out, err = c.cli(n2, "cluster", "ca", "status")
        self.assertIn("key: in files", out)
        rc, out, err = c.cli(n2, "cluster", "ca", "rotate", "--grace", "0")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("kept in files", err + out)
        # No manager key either: nothing to rotate.
        rc, out, err = c.cli(n2, "cluster", "manager-key", "rotate")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("no manager key to rotate", err + out)
        rc, out, err = c.cli(n2, "cluster", "autolock", "enable")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("no manager key to lock", err + out)
        rc, out, err = c.cli(n2, "cluster", "ca", "status")
        self.assertEqual(parse_ca_status(out)["rotating"], "no")


class InitRefusesBadRootsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rm-bad-root-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def init(self, *args):
        """`cluster init` of a fresh node with `args`: (exit code, stderr, data_dir)."""
        dir = tempfile.mkdtemp(dir=self.tmp)
        data = os.path.join(dir, "data")
        config = os.path.join(dir, "n.yaml")
        with open(config, "w") as f:
            json.dump({"node": {"name": "n1", "listen": "127.0.0.161", "admin": "127.0.0.161:9900"},
                       "cluster": {"role": "manager", "data_dir": data,
                                   "peer": "127.0.0.161:9901"}}, f)
        r = subprocess.run([cluster.bin_path(), "cluster", "init", "--config", config,
                            "--cert-dir", os.path.join(dir, "cli"), *args],
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stderr, data

    def test_bad_roots_and_flags_exit_2_naming_the_flag_and_write_nothing(self):
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        root, root_key = make_root(self.tmp, "root", ec)
        _, other_key = make_root(self.tmp, "other", ec)
        leaf, leaf_key = make_root(self.tmp, "leaf", ec, ca=False)
        weak, weak_key = make_root(self.tmp, "weak", ["-newkey", "rsa:1024"])
        cases = [
            (["--ca-cert", leaf, "--ca-key", leaf_key], "--ca-cert", "not a self-signed CA"),
            (["--ca-cert", root, "--ca-key", other_key], "--ca-key", "do not belong together"),
            (["--ca-cert", weak, "--ca-key", weak_key], "--ca-key", "unsupported key"),
            (["--ca-cert", root, "--ca-key", root], "--ca-key", ""),  # a certificate, no key
            (["--ca-cert", os.path.join(self.tmp, "nope.pem"), "--ca-key", root_key],
             "--ca-cert", "missing"),
            (["--ca-cert", root], "--ca-key", ""),
            (["--ca-key", root_key], "--ca-cert", ""),
            (["--external-ca"], "--ca-cert", ""),
        ]
        for args, flag, words in cases:
            with self.subTest(args=args):
                rc, err, data = self.init(*args)
                self.assertEqual(rc, 2, err)
                self.assertIn(flag, err)
                self.assertIn(words, err)
                self.assertFalse(os.path.exists(os.path.join(data, "identity.json")), err)
                self.assertFalse(os.path.exists(os.path.join(data, "tls")), err)
        # And the good root goes in.
        rc, err, data = self.init("--ca-cert", root, "--ca-key", root_key)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read_text(os.path.join(data, "tls", "ca.pem")), read_text(root))
        self.assertTrue(os.path.exists(os.path.join(data, "tls", "manager-key")))
        self.assertFalse(os.path.exists(os.path.join(data, "tls", "ca-key.pem")))


if __name__ == "__main__":
    unittest.main()
