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
  if ! bash scripts/build.sh release >/tmp/routemesh-https-build.$$.log 2>&1 \
    && ! cmake --build build --target routemesh -j"${RM_JOBS:-2}" >>/tmp/routemesh-https-build.$$.log 2>&1; then
    tail -n 20 /tmp/routemesh-https-build.$$.log >&2 || true
    echo "routemesh did not build (log: /tmp/routemesh-https-build.$$.log)" >&2
    exit 1
  fi
  rm -f /tmp/routemesh-https-build.$$.log
  ROUTEMESH_BIN="$repo/build/routemesh"
fi
[ -x "$ROUTEMESH_BIN" ] || { echo "not executable: $ROUTEMESH_BIN" >&2; exit 1; }
for tool in wrk nginx openssl curl taskset timeout python3; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin:/sbin"
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "need at least 2 CPU cores" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export ROUTEMESH_BIN
# https.py bounds every step (each client run by `timeout`, the whole run by an alarm) and
# removes the processes and files it made however it ends.
exec python3 "$bench_dir/https.py" "$@"
