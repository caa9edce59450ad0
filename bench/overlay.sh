#!/usr/bin/env bash
# Overlay benchmark: CPU per request, req/s and p99 of a request that crosses the ingress
# overlay (wrk -> node 1 -> overlay -> node 2 -> task) next to a local hop (wrk -> node 2 ->
# task on node 2) and next to nginx doing the same local hop. Two network namespaces on a
# private bridge, built and removed by the run. Prints a table; JSON in
# bench/results/overlay.json. See bench/README.md.
#
#   bench/overlay.sh [--rounds N] [--duration S] [--rate N] [--connections N] [--threads N] [--warmup S]
#
# Environment:
#   ROUTEMESH_BIN=PATH   use this binary instead of building with scripts/build.sh release
#   BENCH_SKIP_DEPS=1    do not run scripts/deps.sh --bench
# Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) for `ip netns`, and at least 2 CPU cores.
set -euo pipefail
source "$(dirname "$0")/prepare.sh"
bench_prepare overlay wrk nginx taskset timeout ip python3
# overlay.py bounds every step (each wrk run by `timeout`, start-ups by their own limits, the
# whole run by an alarm) and removes the namespaces, processes and files it made however it
# ends, Ctrl-C and SIGTERM included.
exec python3 "$bench_dir/overlay.py" "$@"
