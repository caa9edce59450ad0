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
  if ! bash scripts/build.sh release >/tmp/routemesh-overlay-tls-build.$$.log 2>&1 \
    && ! cmake --build build --target routemesh -j"${RM_JOBS:-2}" >>/tmp/routemesh-overlay-tls-build.$$.log 2>&1; then
    tail -n 20 /tmp/routemesh-overlay-tls-build.$$.log >&2 || true
    echo "routemesh did not build" >&2
    exit 1
  fi
  rm -f /tmp/routemesh-overlay-tls-build.$$.log
  ROUTEMESH_BIN="$repo/build/routemesh"
fi
[ -x "$ROUTEMESH_BIN" ] || { echo "not executable: $ROUTEMESH_BIN" >&2; exit 1; }
for tool in wrk nginx taskset timeout ip python3; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin:/sbin"
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "need at least 2 CPU cores" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export ROUTEMESH_BIN
# overlay_tls.py bounds every step and removes the namespaces, processes and files it made.
exec python3 "$bench_dir/overlay_tls.py" "$@"
