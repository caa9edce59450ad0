#!/usr/bin/env python3
"""Rolling updates under load, counted: how many requests fail while every task of a service
is replaced, one node at a time, the way an operator does it with routemesh (task add ->
healthy -> task drain -> stop -> task rm), and while a task is killed without warning.

Three nodes in network namespaces (1 manager, 2 workers; tasks on 172.31.K.1, reachable only
from their own node), a service with an HTTP health check and one whoami task per node, and
keep-alive GET loops against every node's HRM port for the whole run. Prints one line per
update round and the totals: requests answered 200, non-2xx answers, socket errors.

  bench/rolling_update.sh [--rounds N] [--clients-per-node N]

Needs root (network namespaces). Bounded: N rounds (default 5), 100k requests per client.
"""
import argparse
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import cluster  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients-per-node", type=int, default=2)
    args = ap.parse_args()
    why = cluster.Netns.available()
    if why:
        print(f"rolling_update: network namespaces unavailable: {why}", file=sys.stderr)
        return 2
    netns = cluster.Netns(3, prefix=f"10.203.{100 + os.getpid() % 150}")
    c = None
    try:
        for k, ns in enumerate(netns.names, start=1):
            cluster._ip("-n", ns, "addr", "add", f"172.31.{k}.1/32", "dev", "lo")
        c = cluster.Cluster(None, ["manager", "worker", "worker"], netns=netns)
        c.start()
        s, b = c.leader().api("POST", "/v1/services", {
            "name": "app", "labels": {"mesh.http": "app.bench", **cluster.CHECKED_LABELS}})
        assert s == 201, (s, b)
        current = {}
        for k, n in enumerate(c.nodes, start=1):
            w = c.whoami(f"r0-{k}", f"172.31.{k}.1", prefix=netns.prefix_args(n.ip))
            current[k] = (cluster.add_task(c, "app", n, f"172.31.{k}.1:{w.port}"), w)
        for tid, _ in current.values():
            cluster.wait_task_health(c, tid, "healthy")
        c.wait_converged()
        load = cluster.HttpLoad(c.nodes, "app.bench", per_node=args.clients_per_node,
                                limit_s=30 + 15 * args.rounds)
        t0 = time.monotonic()
        try:
            for r in range(1, args.rounds + 1):
                before = load.ok
                for k, n in enumerate(c.nodes, start=1):
                    current[k] = cluster.roll_task(c, "app", n, *current[k], f"r{r}-{k}",
                                                   f"172.31.{k}.1")
                print(f"round {r}: 3 tasks replaced, {load.ok - before} requests answered, "
                      f"{len(load.bad)} non-2xx and {len(load.errors)} socket errors so far",
                      flush=True)
            current[2][1].stop(signal.SIGKILL)
            time.sleep(1.0)
            print("a task killed with SIGKILL (no drain)", flush=True)
        finally:
            ok, bad, errors = load.finish()
        took = time.monotonic() - t0
        print(f"rolling_update rounds={args.rounds} seconds={took:.1f} ok={ok} non_2xx={len(bad)} "
              f"socket_errors={len(errors)}")
        for b in (bad + errors)[:10]:
            print(f"  {b}")
        return 0 if not bad and not errors else 1
    finally:
        if c is not None:
            c.stop()
        netns.close()


if __name__ == "__main__":
    sys.exit(main())
