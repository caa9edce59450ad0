#!/usr/bin/env bash
# Rolling updates under load; prints the failed-request counts. See bench/rolling_update.py.
#   bench/rolling_update.sh [--rounds N] [--clients-per-node N]
# ROUTEMESH_BIN=PATH uses that binary instead of building with scripts/build.sh release.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${ROUTEMESH_BIN:-}" ]; then
  bash scripts/build.sh release >/dev/null
  export ROUTEMESH_BIN="$PWD/build/routemesh"
fi
exec python3 bench/rolling_update.py "$@"
