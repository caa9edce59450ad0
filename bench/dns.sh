#!/usr/bin/env bash
# DNS benchmark: routemesh's embedded DNS server next to unbound and dnsmasq, measured with
# dnsperf, for an in-mesh name and for forwarded names (cache hits). One network namespace,
# built and removed by the run; every server on one core, dnsperf on the other. Prints a table.
# See bench/README.md.
#
#   bench/dns.sh [--duration S] [--rate N] [--paced S]
#
# Environment:
#   ROUTEMESH_BIN=PATH   use this binary instead of building with scripts/build.sh release
#   BENCH_SKIP_DEPS=1    do not install packages
# Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) for `ip netns`, and at least 2 CPU cores.
set -euo pipefail
bench_dir="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$bench_dir/.." && pwd)"
if [ -n "${ROUTEMESH_BIN:-}" ] && [[ "$ROUTEMESH_BIN" == */* ]] && [[ "$ROUTEMESH_BIN" != /* ]]; then
  ROUTEMESH_BIN="$PWD/$ROUTEMESH_BIN"
fi
cd "$repo"

if [ "${BENCH_SKIP_DEPS:-0}" != 1 ]; then
  bash scripts/deps.sh
  missing=()
  for p in dnsperf unbound dnsmasq-base util-linux; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi
if [ -z "${ROUTEMESH_BIN:-}" ]; then
  echo "[bench] building routemesh (scripts/build.sh release)" >&2
  if ! bash scripts/build.sh release >/tmp/routemesh-dns-build.$$.log 2>&1 \
    && ! cmake --build build --target routemesh -j"${RM_JOBS:-2}" >>/tmp/routemesh-dns-build.$$.log 2>&1; then
    tail -n 20 /tmp/routemesh-dns-build.$$.log >&2 || true
    echo "routemesh did not build (log: /tmp/routemesh-dns-build.$$.log)" >&2
    exit 1
  fi
  rm -f /tmp/routemesh-dns-build.$$.log
  ROUTEMESH_BIN="$repo/build/routemesh"
fi
[ -x "$ROUTEMESH_BIN" ] || { echo "not executable: $ROUTEMESH_BIN" >&2; exit 1; }
PATH="$PATH:/usr/sbin:/sbin"
for tool in dnsperf unbound dnsmasq taskset timeout ip python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
export ROUTEMESH_BIN
# dns.py bounds every step (each dnsperf run by `timeout`, the whole run by an alarm) and
# removes the namespace, processes and files it made however it ends.
exec python3 "$bench_dir/dns.py" "$@"
