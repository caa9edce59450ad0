#!/usr/bin/env bash
# Cluster benchmark: committed writes/s and p50/p99 commit latency for 1 and
# 3 managers, and propagation time from the API's 200 reply to the last of 5 nodes routing
# with the change. Prints a table; JSON in bench/results/cluster.json. See bench/README.md.
#
#   bench/cluster.sh [--duration S] [--writers N] [--changes N] [--gap-ms MS] [--tick-ms MS]
#                    [--client cxx|python]
#
# Environment:
#   ROUTEMESH_BIN=PATH   use this binary instead of building with scripts/build.sh release
#   BENCH_SKIP_DEPS=1    do not run scripts/deps.sh (only used when building)
#   WRITE_LOAD_BIN=PATH  the closed-loop client (default build/tests/write_load)
set -euo pipefail
bench_dir="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$bench_dir/.." && pwd)"
if [ -n "${ROUTEMESH_BIN:-}" ] && [[ "$ROUTEMESH_BIN" == */* ]] && [[ "$ROUTEMESH_BIN" != /* ]]; then
  ROUTEMESH_BIN="$PWD/$ROUTEMESH_BIN"
fi
cd "$repo"
if [ -z "${ROUTEMESH_BIN:-}" ]; then
  if [ "${BENCH_SKIP_DEPS:-0}" = 1 ]; then
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j"${RM_JOBS:-2}" --target routemesh write_load
  else
    bash scripts/build.sh release
  fi
  ROUTEMESH_BIN="$repo/build/routemesh"
fi
# The closed-loop client (tests/bench/write_load); without it cluster.py falls back to Python
# clients and says so. With ROUTEMESH_BIN given, build/tests/write_load is used if present.
if [ -z "${WRITE_LOAD_BIN:-}" ] && [ -x "$repo/build/tests/write_load" ]; then
  WRITE_LOAD_BIN="$repo/build/tests/write_load"
fi
export WRITE_LOAD_BIN="${WRITE_LOAD_BIN:-}"
[ -x "$ROUTEMESH_BIN" ] || { echo "not executable: $ROUTEMESH_BIN" >&2; exit 1; }
command -v python3 >/dev/null || { echo "missing tool: python3" >&2; exit 1; }
for ip in 127.0.0.51 127.0.0.61 127.0.0.62 127.0.0.63 127.0.0.64 127.0.0.65; do
  for port in 8080 9901 7946; do
    if (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null; then
      echo "$ip:$port is in use; the benchmark needs it free" >&2
      exit 1
    fi
  done
done
export ROUTEMESH_BIN
# Every phase is bounded: cluster start-up (60 s), writes (--duration each, three times),
# propagation (--changes x --gap-ms + 10 s); the whole run is capped here as well.
exec timeout --kill-after=10 900 python3 "$bench_dir/cluster.py" "$@"
