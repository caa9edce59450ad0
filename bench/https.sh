#!/usr/bin/env bash
# HTTPS benchmark: routemesh's HTTPS port next to nginx terminating TLS with the same
# certificate, the same backend and the same clients, in one run: keep-alive requests/s (wrk
# over TLS), new and resumed handshakes/s (openssl s_time), each also per busy proxy core.
# Prints a table; JSON in bench/results/https.json. See bench/README.md.
#
#   bench/https.sh [--rounds N] [--duration S] [--warmup S] [--connections N]
#
# Environment:
#   ROUTEMESH_BIN=PATH   use this binary instead of building with scripts/build.sh release
#   BENCH_SKIP_DEPS=1    do not run scripts/deps.sh --bench
set -euo pipefail
source "$(dirname "$0")/prepare.sh"
bench_prepare https wrk nginx openssl curl taskset timeout python3
# https.py bounds every step (each client run by `timeout`, the whole run by an alarm) and
# removes the processes and files it made however it ends.
exec python3 "$bench_dir/https.py" "$@"
