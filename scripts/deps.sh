#!/usr/bin/env bash
# Installs every Debian package routemesh needs to build, test and benchmark. Idempotent.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build ccache pkg-config git curl procps iproute2 python3
  netcat-openbsd nftables openssl
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev libboost-system1.81-dev
  libssl-dev node-llhttp libspdlog-dev libfmt-dev prometheus-cpp-dev catch2
  libyaml-cpp-dev libcli11-dev libldns-dev bind9-dnsutils
  clang libclang-rt-14-dev
  prometheus
)
if [ "${1:-}" = "--bench" ]; then
  PKGS+=(wrk nginx-light libnginx-mod-stream haproxy util-linux etcd-server linux-perf)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
