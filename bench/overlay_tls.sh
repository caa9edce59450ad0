#!/usr/bin/env bash
# Overlay encryption benchmark: the same overlay hop (wrk -> n1 -> overlay -> n2 -> task) in a
# cluster whose overlay is mutual TLS (the default) and in one whose overlay is plain TCP, in
# one run: MiB/s for 1 MiB responses and req/s for small ones, each also per busy proxy core.
# Two network namespaces on a private bridge, built and removed by the run. Prints a table;
# JSON in bench/results/overlay_tls.json. See bench/README.md.
#
#   bench/overlay_tls.sh [--rounds N] [--duration S] [--warmup S] [--connections N]
#
# Environment:
#   ROUTEMESH_BIN=PATH   use this binary instead of building with scripts/build.sh release
#   BENCH_SKIP_DEPS=1    do not run scripts/deps.sh --bench
# Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) for `ip netns`, and at least 2 CPU cores.
set -euo pipefail
source "$(dirname "$0")/prepare.sh"
bench_prepare overlay-tls wrk nginx taskset timeout ip python3
# overlay_tls.py bounds every step and removes the namespaces, processes and files it made.
exec python3 "$bench_dir/overlay_tls.py" "$@"
