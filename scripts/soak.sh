#!/usr/bin/env bash
# Long run of the Raft simulator: scripts/soak.sh [N] runs N seeds (default 1,000,000) of
# test_raft's randomized simulation in parallel jobs, then prints how many seeds ran and every
# seed that failed (rerun one with RM_RAFT_SEED=S build/tests/test_raft "simulated*").
#
# Environment:
#   RM_RAFT_FIRST_SEED  first seed (default 1): continue a run, or cover another range
#   RM_SOAK_JOBS        parallel jobs (default: the number of cores)
#   RM_SOAK_CHUNK       seeds per job (default 10000)
#   RM_BUILD_DIR        build directory holding tests/test_raft (default: build)
# Exit status: 0 when every seed passed, 1 otherwise, 2 on a usage error.
# Cost: about 7 ms of CPU per seed: 20,000 seeds took 134 s on two shared cores, so 1,000,000
# seeds take about two hours there.
set -euo pipefail

cd "$(dirname "$0")/.."
total="${1:-1000000}"
first="${RM_RAFT_FIRST_SEED:-1}"
jobs="${RM_SOAK_JOBS:-$(nproc)}"
chunk="${RM_SOAK_CHUNK:-10000}"
bin="${RM_BUILD_DIR:-build}/tests/test_raft"
for v in "$total" "$first" "$jobs" "$chunk"; do
  if ! [[ "$v" =~ ^[0-9]+$ ]] || [ "$v" -eq 0 ]; then
    echo "soak.sh: seeds, RM_RAFT_FIRST_SEED, RM_SOAK_JOBS and RM_SOAK_CHUNK must be positive integers (got '$v')" >&2
    exit 2
  fi
done
if [ ! -x "$bin" ]; then
  echo "soak.sh: $bin not found; build first (cmake --build build --target test_raft)" >&2
  exit 2
fi

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
last=$((first + total - 1))
echo "soak: seeds $first..$last in chunks of $chunk, $jobs jobs (logs in $logs while running)"
start=$(date +%s)

# One line per chunk: "FIRST COUNT"; each job writes its log to $logs/FIRST.log.
for ((s = first; s <= last; s += chunk)); do
  n=$chunk
  if ((s + n - 1 > last)); then
    n=$((last - s + 1))
  fi
  echo "$s $n"
done | xargs -P "$jobs" -L 1 sh -c '
  if RM_RAFT_FIRST_SEED="$0" RM_RAFT_SEEDS="$1" "'"$bin"'" "simulated clusters*" \
      >"'"$logs"'/$0.log" 2>&1; then
    echo "$0 $1 ok" >>"'"$logs"'/done"
  else
    echo "$0 $1 FAILED" >>"'"$logs"'/done"
  fi' || true

ran=0
bad_chunks=0
for f in "$logs"/*.log; do
  n=$(grep -o 'raft sim: [0-9]* seeds' "$f" | grep -o '[0-9][0-9]*' || true)
  ran=$((ran + ${n:-0}))
done
failed_seeds=$(cat "$logs"/*.log | grep -o 'seed [0-9]* failed: .*' | sort -t' ' -k2,2n || true)
if [ -f "$logs/done" ]; then
  bad_chunks=$(grep -c FAILED "$logs/done" || true)
fi
echo "soak: $ran of $total seeds ran in $(($(date +%s) - start)) s"
if [ -n "$failed_seeds" ]; then
  echo "soak: failing seeds (rerun one with RM_RAFT_SEED=S $bin \"simulated*\"):"
  echo "$failed_seeds"
fi
if [ "$bad_chunks" -gt 0 ] || [ "$ran" -ne "$total" ] || [ -n "$failed_seeds" ]; then
  if [ -f "$logs/done" ]; then
    grep FAILED "$logs/done" | while read -r s n _; do
      echo "soak: chunk $s..$((s + n - 1)) failed; its log:"
      grep -v '^\[20' "$logs/$s.log" | tail -n 30
    done
  fi
  echo "soak: FAILED"
  exit 1
fi
echo "soak: all $ran seeds passed"
