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
bench_dir="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$bench_dir/.." && pwd)"
if [ -n "${ROUTEMESH_BIN:-}" ] && [[ "$ROUTEMESH_BIN" == */* ]] && [[ "$ROUTEMESH_BIN" != /* ]]; then
  ROUTEMESH_BIN="$PWD/$ROUTEMESH_BIN"
fi
cd "$repo"

if [ "${BENCH_SKIP_DEPS:-0}" != 1 ]; then
  bash scripts/deps.sh --bench
fi
if [ -z "${ROUTEMESH_BIN:-}" ]; then
  echo "[bench] building routemesh (scripts/build.sh release)" >&2
  # A full build also compiles the tests; if one of those breaks, the binary may still build.
  if ! bash scripts/build.sh release >/tmp/routemesh-overlay-build.$$.log 2>&1 \
    && ! cmake --build build --target routemesh -j"${RM_JOBS:-2}" >>/tmp/routemesh-overlay-build.$$.log 2>&1; then
    tail -n 20 /tmp/routemesh-overlay-build.$$.log >&2 || true
    echo "routemesh did not build (log: /tmp/routemesh-overlay-build.$$.log)" >&2
    exit 1
  fi
  rm -f /tmp/routemesh-overlay-build.$$.log
  ROUTEMESH_BIN="$repo/build/routemesh"
fi
[ -x "$ROUTEMESH_BIN" ] || { echo "not executable: $ROUTEMESH_BIN" >&2; exit 1; }
for tool in wrk nginx taskset timeout ip python3; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin:/sbin"
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export ROUTEMESH_BIN
# overlay.py bounds every step (each wrk run by `timeout`, start-ups by their own limits, the
# whole run by an alarm) and removes the namespaces, processes and files it made however it
# ends, Ctrl-C and SIGTERM included.
exec python3 "$bench_dir/overlay.py" "$@"
