# Shared by the bench wrappers that hand over to a Python driver (overlay, overlay_tls, https,
# dns): sourced, not run. Reads ROUTEMESH_BIN and BENCH_SKIP_DEPS, installs the bench packages
# (scripts/deps.sh --bench, plus any named in BENCH_EXTRA_PACKAGES), builds routemesh unless
# ROUTEMESH_BIN names a binary, checks the tools the caller lists, and exports ROUTEMESH_BIN.
#
#   source bench/prepare.sh; bench_prepare NAME TOOL...
# NAME names the build log (/tmp/routemesh-NAME-build.PID.log). Leaves the caller in the
# repository's root; exits with a message when something is missing.

bench_prepare() {
  local name="$1" tool p
  shift
  bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  repo="$(cd "$bench_dir/.." && pwd)"
  if [ -n "${ROUTEMESH_BIN:-}" ] && [[ "$ROUTEMESH_BIN" == */* ]] && [[ "$ROUTEMESH_BIN" != /* ]]; then
    ROUTEMESH_BIN="$PWD/$ROUTEMESH_BIN"
  fi
  cd "$repo"
  if [ "${BENCH_SKIP_DEPS:-0}" != 1 ]; then
    bash scripts/deps.sh --bench
    local missing=()
    for p in ${BENCH_EXTRA_PACKAGES:-}; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
      local sudo=""
      [ "$(id -u)" -ne 0 ] && sudo="sudo"
      DEBIAN_FRONTEND=noninteractive $sudo apt-get update -q
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
  fi
  if [ -z "${ROUTEMESH_BIN:-}" ]; then
    local log="/tmp/routemesh-$name-build.$$.log"
    echo "[bench] building routemesh (scripts/build.sh release)" >&2
    # A full build also compiles the tests; if one of those breaks, the binary may still build.
    if ! bash scripts/build.sh release >"$log" 2>&1 \
      && ! cmake --build build --target routemesh -j"${RM_JOBS:-2}" >>"$log" 2>&1; then
      tail -n 20 "$log" >&2 || true
      echo "routemesh did not build (log: $log)" >&2
      exit 1
    fi
    rm -f "$log"
    ROUTEMESH_BIN="$repo/build/routemesh"
  fi
  [ -x "$ROUTEMESH_BIN" ] || { echo "not executable: $ROUTEMESH_BIN" >&2; exit 1; }
  PATH="$PATH:/usr/sbin:/sbin"
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
  done
  if [ "$(nproc)" -lt 2 ]; then
    echo "need at least 2 CPU cores (proxies on core 0, clients and backends on core 1)" >&2
    exit 1
  fi
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  export ROUTEMESH_BIN
}
