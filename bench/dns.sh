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
BENCH_EXTRA_PACKAGES="dnsperf unbound dnsmasq-base util-linux"
source "$(dirname "$0")/prepare.sh"
bench_prepare dns dnsperf unbound dnsmasq taskset timeout ip python3
# dns.py bounds every step (each dnsperf run by `timeout`, the whole run by an alarm) and
# removes the namespace, processes and files it made however it ends.
exec python3 "$bench_dir/dns.py" "$@"
