#!/usr/bin/env bash
# Scale benchmark: per-write latency of a 1-manager cluster at 100, 1,000 and 10,000 existing
# services, route compile and validation time (tests/bench/scale_bench), and `routemesh check`
# time, so growth shows as a curve. Prints tables. See bench/README.md.
#
#   bench/scale.sh [--sizes 100,1000,10000] [--tasks 10] [--cluster-tasks 1] [--probes 30]
#                  [--writers 64] [--fill-timeout 900]
#                  [--skip core,check,cluster]
#
# Environment:
#   ROUTEMESH_BIN=PATH      use this routemesh binary instead of building build/routemesh
#   SCALE_BENCH_BIN=PATH    use this scale_bench binary instead of build/tests/scale_bench
set -euo pipefail
bench_dir="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$bench_dir/.." && pwd)"
for v in ROUTEMESH_BIN SCALE_BENCH_BIN; do
  if [ -n "${!v:-}" ] && [[ "${!v}" == */* ]] && [[ "${!v}" != /* ]]; then
    export "$v=$PWD/${!v}"
  fi
done
cd "$repo"
if [ -z "${ROUTEMESH_BIN:-}" ] || [ -z "${SCALE_BENCH_BIN:-}" ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j"${RM_JOBS:-2}" --target routemesh scale_bench
fi
export ROUTEMESH_BIN="${ROUTEMESH_BIN:-$repo/build/routemesh}"
export SCALE_BENCH_BIN="${SCALE_BENCH_BIN:-$repo/build/tests/scale_bench}"
for b in "$ROUTEMESH_BIN" "$SCALE_BENCH_BIN"; do
  [ -x "$b" ] || { echo "not executable: $b" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "missing tool: python3" >&2; exit 1; }
for port in 8080 9901 7946; do
  if (exec 3<>"/dev/tcp/127.0.0.71/$port") 2>/dev/null; then
    echo "127.0.0.71:$port is in use; the benchmark needs it free" >&2
    exit 1
  fi
done
# Every phase is bounded (scale_bench 900 s, each check 300 s, filling --fill-timeout); the
# whole run is capped here as well.
exec timeout --kill-after=10 2400 python3 "$bench_dir/scale.py" "$@"
