#!/usr/bin/env bash
# Installs dependencies, builds from scratch and runs every test:
#   0. the layering check (docs/layout.md): includes follow the folder table, pure cores stay pure
#   1. release build: unit tests (Catch2) + integration tests (real processes on 127.0.0.x)
#   2. ASan+UBSan build: the same tests again
#   3. clang/libFuzzer build: bounded fuzzing runs over the HTTP head parser, the store path
#      (API bodies, commands, apply, snapshots, route tables), the Raft codec, the DNS query
#      path (decode, answer, encode, upstream replies) and the HTTPS port's ClientHello reader
# RM_SKIP_ASAN=1 or RM_SKIP_FUZZ=1 skip a stage (for quick local runs).
set -euo pipefail
cd "$(dirname "$0")/.."
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

echo "== layering"
bash scripts/deps.sh  # python3 and git
python3 scripts/check_layers.py

echo "== release build"
bash scripts/build.sh release
echo "== release tests"
ctest --test-dir build --output-on-failure -j2 --timeout 600

if [ "${RM_SKIP_ASAN:-0}" != 1 ]; then
  echo "== ASan+UBSan build"
  bash scripts/build.sh asan
  echo "== ASan+UBSan tests"
  ctest --test-dir build-asan --output-on-failure -j2 --timeout 900
fi

if [ "${RM_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz build"
  bash scripts/build.sh fuzz
  echo "== fuzz smoke run"
  ctest --test-dir build-fuzz --output-on-failure -R fuzz_
fi
