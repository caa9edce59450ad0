#!/usr/bin/env bash
# Side-by-side HTTP benchmark: wrk against the backend directly, routemesh, nginx and HAProxy,
# all in one run, with the same backend and the same wrk settings. See bench/README.md.
#
#   bench/run.sh [--duration S] [--rounds N] [--rate N] [--rate-1m N] [--connections N] [--threads N] [--warmup S] [--idle-conns N]
#
# Environment:
#   ROUTEMESH_BIN=PATH   use this binary instead of building with scripts/build.sh release
#   BENCH_PORT_BASE=N    first of seven consecutive loopback ports (default 18080)
#   BENCH_SKIP_DEPS=1    do not run scripts/deps.sh --bench
set -euo pipefail

duration=5
rounds=3
rate=40000
rate_1m=1500
connections=50
threads=1
warmup=1
idle_conns=5000
usage() {
  echo "usage: bench/run.sh [--duration S] [--rounds N] [--rate N] [--rate-1m N] [--connections N] [--threads N] [--warmup S] [--idle-conns N]" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="${2:-}"; shift 2 || usage ;;
    --rounds) rounds="${2:-}"; shift 2 || usage ;;
    --rate) rate="${2:-}"; shift 2 || usage ;;
    --rate-1m) rate_1m="${2:-}"; shift 2 || usage ;;
    --connections) connections="${2:-}"; shift 2 || usage ;;
    --threads) threads="${2:-}"; shift 2 || usage ;;
    --warmup) warmup="${2:-}"; shift 2 || usage ;;
    --idle-conns) idle_conns="${2:-}"; shift 2 || usage ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
for v in "$duration" "$rounds" "$rate" "$rate_1m" "$connections" "$threads" "$warmup" "$idle_conns"; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "not a non-negative integer: '$v'" >&2; usage; }
done
if [ "$duration" -lt 1 ] || [ "$rounds" -lt 1 ] || [ "$connections" -lt 1 ] || [ "$threads" -lt 1 ]; then
  usage
fi
[ "$connections" -ge "$threads" ] || { echo "--connections must be >= --threads" >&2; exit 2; }

if [ -n "${ROUTEMESH_BIN:-}" ] && [[ "$ROUTEMESH_BIN" == */* ]] && [[ "$ROUTEMESH_BIN" != /* ]]; then
  ROUTEMESH_BIN="$PWD/$ROUTEMESH_BIN"
fi
bench_dir="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$bench_dir/.." && pwd)"
cd "$repo"

log() { printf '[bench] %s\n' "$*" >&2; }

# ---------------------------------------------------------------- dependencies
if [ "${BENCH_SKIP_DEPS:-0}" != 1 ]; then
  bash scripts/deps.sh --bench
fi
for tool in wrk nginx haproxy taskset curl python3 timeout; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin:/sbin"
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
  echo "need at least 2 CPU cores (proxy on core 0, wrk + backend on core 1)" >&2
  exit 1
fi

# HAProxy needs about 2 descriptors per connection (maxconn 4096); wrk one per connection.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- process handling
tmp="$(mktemp -d /tmp/routemesh-bench.XXXXXX)"
chmod 755 "$tmp"  # nginx workers may run as an unprivileged user and must read www/
pids=()
job=""
cleanup() {
  local pid
  [ -z "$job" ] || kill -TERM "$job" 2>/dev/null || true
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- ports
base="${BENCH_PORT_BASE:-18080}"
backend_port=$base
routemesh_http_port=$((base + 1))
nginx_port=$((base + 2))
haproxy_http_port=$((base + 3))
haproxy_tcp_port=$((base + 4))
routemesh_l4_port=$((base + 5))
nginx_stream_port=$((base + 6))

port_busy() {
  if command -v ss >/dev/null; then
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
for p in $(seq "$base" $((base + 6))); do
  if port_busy "$p"; then
    echo "port $p is in use; set BENCH_PORT_BASE to another range" >&2
    exit 1
  fi
done

# ---------------------------------------------------------------- routemesh binary
routemesh_bin=""
routemesh_reason=""
if [ -n "${ROUTEMESH_BIN:-}" ]; then
  routemesh_bin="$ROUTEMESH_BIN"
else
  log "building routemesh (scripts/build.sh release, log: $tmp/build.log)"
  # A full build also compiles the tests; if one of those breaks, the binary may still build.
  if bash scripts/build.sh release >"$tmp/build.log" 2>&1 \
    || cmake --build build --target routemesh -j"${RM_JOBS:-2}" >>"$tmp/build.log" 2>&1; then
    routemesh_bin="$repo/build/routemesh"
  else
    tail -n 15 "$tmp/build.log" >&2 || true
    routemesh_reason="build failed"
  fi
fi
if [ -n "$routemesh_bin" ] && ! timeout 10 "$routemesh_bin" version >"$tmp/routemesh-version.txt" 2>&1; then
  routemesh_reason="'$routemesh_bin version' failed"
  routemesh_bin=""
fi

# run_job CMD...: runs CMD in the background and waits for it, so that a signal to this script
# is handled at once (bash runs traps only between foreground commands); cleanup kills it.
run_job() {
  local rc=0
  "$@" &
  job=$!
  wait "$job" || rc=$?
  job=""
  return "$rc"
}

# stop_pid PID: TERM, up to 5 s, then KILL.
stop_pid() {
  local pid="$1" keep=() p
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "exit_status[$pid]"  # a later process may get the same PID
  for p in "${pids[@]}"; do
    [ "$p" = "$pid" ] || keep+=("$p")
  done
  pids=("${keep[@]+"${keep[@]}"}")
}

# wait_listen PID PORT...: true once every port accepts connections (10 s at most) while PID lives.
wait_listen() {
  local pid="$1" p
  shift
  for p in "$@"; do
    local ok=0
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || return 1
      if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        ok=1
        break
      fi
      sleep 0.1
    done
    [ "$ok" = 1 ] || return 1
  done
}

# check PORT PATH SIZE: one request with Host: bench.local must answer 200 with SIZE body bytes.
check() {
  local got
  got="$(curl -sS -m 5 -o /dev/null -w '%{http_code} %{size_download}' \
    -H 'Host: bench.local' "http://127.0.0.1:$1$2" 2>&1)" || true
  if [ "$got" != "200 $3" ]; then
    echo "GET $2 on port $1 answered '$got', expected '200 $3'"
    return 1
  fi
}

render() {  # render TEMPLATE OUT
  sed -e "s|@DIR@|$tmp|g" \
    -e "s|@BACKEND_PORT@|$backend_port|g" \
    -e "s|@NGINX_PORT@|$nginx_port|g" \
    -e "s|@HAPROXY_HTTP_PORT@|$haproxy_http_port|g" \
    -e "s|@HAPROXY_TCP_PORT@|$haproxy_tcp_port|g" \
    -e "s|@ROUTEMESH_HTTP_PORT@|$routemesh_http_port|g" \
    -e "s|@ROUTEMESH_L4_PORT@|$routemesh_l4_port|g" \
    -e "s|@NGINX_STREAM_PORT@|$nginx_stream_port|g" \
    "$1" >"$2"
}

# ---------------------------------------------------------------- measurements
manifest="$tmp/manifest.tsv"
: >"$manifest"
small_size=3      # "ok\n"
big_size=1048576  # /1m

# na CASE TARGET ROUND REASON: records a row that could not be measured.
na() {
  printf '%s\t%s\t%s\tna\t%s\n' "$1" "$2" "$3" "$4" >>"$manifest"
  log "[r$3 $1] $2: n/a ($4)"
}

# exited PID: true when the proxy PID is gone; then $why says how it ended.
declare -A exit_status=()
exited() {
  local rc=0
  why=""
  if [ -z "${exit_status[$1]:-}" ]; then
    kill -0 "$1" 2>/dev/null && return 1
    wait "$1" 2>/dev/null || rc=$?
    exit_status[$1]=$rc
  fi
  rc="${exit_status[$1]}"
  if [ "$rc" -gt 128 ]; then
    why="process exited (status $rc: signal $((rc - 128)), $(kill -l $((rc - 128)) 2>/dev/null))"
  else
    why="process exited (status $rc)"
  fi
}

# cpu_jiffies: "busy0 total0 busy1 total1" for cores 0 and 1 from /proc/stat (busy = all but
# idle and iowait; softirq time, where loopback TCP does most of its work, counts as busy).
cpu_jiffies() {
  awk '/^cpu[01] / { t = 0; for (i = 2; i <= NF; i++) t += $i; printf "%d %d ", t - $5 - $6, t }' /proc/stat
}

# measure CASE TARGET ROUND PORT PATH PID [RATE]: warm-up, then the measured wrk run, both on
# core 1; with RATE, the measured run is paced to RATE requests/s (summary.lua). PID is the
# proxy's process; a proxy that dies under load gets an n/a row saying so. The busy time of
# both cores over the measured run is appended to wrk's output (RMCPU line).
measure() {
  local case_name="$1" target="$2" round="$3" port="$4" path="$5" pid="$6" pace="${7:-0}"
  local out="$tmp/wrk-$case_name-$target-r$round.txt" url="http://127.0.0.1:$port$path"
  if exited "$pid"; then
    na "$case_name" "$target" "$round" "$why"
    return
  fi
  if [ "$warmup" -gt 0 ]; then
    run_job timeout -k 5 $((warmup + 20)) taskset -c 1 wrk -t"$threads" -c"$connections" \
      -d"${warmup}s" -H 'Host: bench.local' "$url" >/dev/null 2>&1 || true
  fi
  local before after
  before="$(cpu_jiffies)"
  if run_job timeout -k 5 $((duration + 30)) env RM_RATE="$pace" taskset -c 1 wrk -t"$threads" -c"$connections" \
    -d"${duration}s" --latency -s "$bench_dir/summary.lua" -H 'Host: bench.local' "$url" \
    >"$out" 2>&1; then
    after="$(cpu_jiffies)"
    set -- $before $after
    printf 'RMCPU core0_busy=%d core0_total=%d core1_busy=%d core1_total=%d\n' \
      $(($5 - $1)) $(($6 - $2)) $(($7 - $3)) $(($8 - $4)) >>"$out"
    sleep 0.2  # a proxy that dies from wrk's closing connections does so right after the run
    if exited "$pid"; then
      na "$case_name" "$target" "$round" "$why"
    else
      printf '%s\t%s\t%s\tok\t%s\n' "$case_name" "$target" "$round" "$out" >>"$manifest"
      log "[r$round $case_name] $target: $(grep -m1 'Requests/sec' "$out" | tr -s ' ')"
    fi
  elif exited "$pid"; then
    na "$case_name" "$target" "$round" "$why"
  else
    na "$case_name" "$target" "$round" "wrk failed or timed out: $(tail -n 1 "$out" 2>/dev/null)"
  fi
}

mkdir -p "$tmp/www" "$tmp/backend-tmp" "$tmp/nginx-tmp"
head -c "$big_size" /dev/urandom >"$tmp/www/1m"
chmod 755 "$tmp/www" && chmod 644 "$tmp/www/1m"
render "$bench_dir/backend-nginx.conf.tmpl" "$tmp/backend.conf"
render "$bench_dir/nginx.conf.tmpl" "$tmp/nginx.conf"
render "$bench_dir/nginx-stream.conf.tmpl" "$tmp/nginx-stream.conf"
render "$bench_dir/haproxy.cfg.tmpl" "$tmp/haproxy.cfg"
render "$bench_dir/routemesh.yaml.tmpl" "$tmp/routemesh.yaml"

loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)"
log "load average before: $loadavg_start"
log "$rounds round(s) of wrk -t$threads -c$connections -d${duration}s (+${warmup}s warm-up);" \
  "proxies on core 0, wrk + backend on core 1"

# Backend: nginx, one worker, on the client core, up for the whole run.
taskset -c 1 nginx -p "$tmp" -c "$tmp/backend.conf" >"$tmp/backend.log" 2>&1 &
backend_pid=$!
pids+=("$backend_pid")
if ! wait_listen "$backend_pid" "$backend_port" || ! check "$backend_port" / $small_size >&2 \
  || ! check "$backend_port" /1m $big_size >&2; then
  cat "$tmp/backend.log" "$tmp/backend.error.log" 2>/dev/null >&2 || true
  echo "backend nginx did not start; cannot benchmark" >&2
  exit 1
fi

# http_na TARGET ROUND REASON: n/a rows for every HTTP case of TARGET.
http_na() {
  na small "$1" "$2" "$3"
  [ "$rate" = 0 ] || na paced "$1" "$2" "$3"
  na 1m "$1" "$2" "$3"
  [ "$rate_1m" = 0 ] || na paced1m "$1" "$2" "$3"
}

# http_cases TARGET ROUND PORT PID: when both paths answer correctly, the small, paced and 1 MiB
# measurements; otherwise n/a rows naming the failed check.
http_cases() {
  local target="$1" round="$2" port="$3" pid="$4" reason
  if reason="$(check "$port" / $small_size)" && reason="$(check "$port" /1m $big_size)"; then
    measure small "$target" "$round" "$port" / "$pid"
    [ "$rate" = 0 ] || measure paced "$target" "$round" "$port" / "$pid" "$rate"
    measure 1m "$target" "$round" "$port" /1m "$pid"
    [ "$rate_1m" = 0 ] || measure paced1m "$target" "$round" "$port" /1m "$pid" "$rate_1m"
  else
    http_na "$target" "$round" "$reason"
  fi
}

# l4_case TARGET ROUND PORT PID: the layer-4 measurements (small and 1 MiB responses through
# a TCP proxy), after the same kind of check.
l4_case() {
  local target="$1" round="$2" port="$3" pid="$4" reason
  if reason="$(check "$port" / $small_size)" && reason="$(check "$port" /1m $big_size)"; then
    measure l4small "$target" "$round" "$port" / "$pid"
    measure l4 "$target" "$round" "$port" /1m "$pid"
  else
    na l4small "$target" "$round" "$reason"
    na l4 "$target" "$round" "$reason"
  fi
}

# One function per target: start it pinned to core 0 (proxies), check it answers correctly,
# measure its cases, stop it. Each proxy runs alone on core 0.
bench_backend() {
  measure small backend "$1" "$backend_port" / "$backend_pid"
  [ "$rate" = 0 ] || measure paced backend "$1" "$backend_port" / "$backend_pid" "$rate"
  measure 1m backend "$1" "$backend_port" /1m "$backend_pid"
  [ "$rate_1m" = 0 ] || measure paced1m backend "$1" "$backend_port" /1m "$backend_pid" "$rate_1m"
}

bench_nginx() {
  taskset -c 0 nginx -p "$tmp" -c "$tmp/nginx.conf" >"$tmp/nginx.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  if wait_listen "$pid" "$nginx_port"; then
    http_cases nginx "$1" "$nginx_port" "$pid"
  else
    http_na nginx "$1" "did not start: $(tail -n 1 "$tmp/nginx.error.log" "$tmp/nginx.log" 2>/dev/null | tr '\n' ' ')"
  fi
  stop_pid "$pid"
}

# nginx's stream module (layer 4), its own process: Debian's nginx-light has the module as a
# separate package (libnginx-mod-stream, installed by scripts/deps.sh --bench).
bench_nginx_stream() {
  if [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
    na l4small nginx-stream "$1" "no stream module (Debian package libnginx-mod-stream)"
    na l4 nginx-stream "$1" "no stream module (Debian package libnginx-mod-stream)"
    return
  fi
  taskset -c 0 nginx -p "$tmp" -c "$tmp/nginx-stream.conf" >"$tmp/nginx-stream.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  if wait_listen "$pid" "$nginx_stream_port"; then
    l4_case nginx-stream "$1" "$nginx_stream_port" "$pid"
  else
    local reason="did not start: $(tail -n 1 "$tmp/nginx-stream.error.log" "$tmp/nginx-stream.log" 2>/dev/null | tr '\n' ' ')"
    na l4small nginx-stream "$1" "$reason"
    na l4 nginx-stream "$1" "$reason"
  fi
  stop_pid "$pid"
}

# HAProxy: http mode and tcp mode in one process.
bench_haproxy() {
  taskset -c 0 haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  if wait_listen "$pid" "$haproxy_http_port" "$haproxy_tcp_port"; then
    http_cases haproxy "$1" "$haproxy_http_port" "$pid"
    l4_case haproxy-tcp "$1" "$haproxy_tcp_port" "$pid"
  else
    local reason="did not start: $(tail -n 3 "$tmp/haproxy.log" 2>/dev/null | tr '\n' ' ')"
    http_na haproxy "$1" "$reason"
    na l4small haproxy-tcp "$1" "$reason"
    na l4 haproxy-tcp "$1" "$reason"
  fi
  stop_pid "$pid"
}

# routemesh: HRM port and the L4 published port in one node.
bench_routemesh() {
  local reason="$routemesh_reason"
  if [ -n "$routemesh_bin" ]; then
    taskset -c 0 "$routemesh_bin" node --config "$tmp/routemesh.yaml" >"$tmp/routemesh.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    if wait_listen "$pid" "$routemesh_http_port" "$routemesh_l4_port"; then
      http_cases routemesh "$1" "$routemesh_http_port" "$pid"
      l4_case routemesh-l4 "$1" "$routemesh_l4_port" "$pid"
    else
      reason="node did not start: $(tail -n 3 "$tmp/routemesh.log" 2>/dev/null | tr '\n' ' ')"
    fi
    stop_pid "$pid"
  fi
  if [ -n "$reason" ]; then
    http_na routemesh "$1" "not running: $reason"
    na l4small routemesh-l4 "$1" "not running: $reason"
    na l4 routemesh-l4 "$1" "not running: $reason"
  fi
}

# Rounds rotate the order (round r starts with target r mod 5), so slow drift of the machine
# (thermal, a neighbour's load) does not always favour the same target; the report takes the
# median of each figure over the rounds and compares targets round by round.
targets=(backend nginx haproxy routemesh nginx_stream)
for round in $(seq "$rounds"); do
  for i in $(seq 0 $((${#targets[@]} - 1))); do
    "bench_${targets[$(((round - 1 + i) % ${#targets[@]}))]}" "$round"
  done
done

# ---------------------------------------------------------------- idle memory
# Memory per idle keep-alive connection (bench/idle_memory.py): each proxy alone on core 0,
# $idle_conns clients each make one proxied request and stay connected; RSS growth / clients.
idle_report="$tmp/idle-memory.txt"
: >"$idle_report"
idle_case() {  # idle_case TARGET PORT PID
  local line
  if line="$(timeout 180 python3 "$bench_dir/idle_memory.py" --port "$2" --pid "$3" \
    --connections "$idle_conns" 2>&1)"; then
    printf '%-10s %s\n' "$1" "$line" >>"$idle_report"
  else
    printf '%-10s n/a (%s)\n' "$1" "$(echo "$line" | tail -n 1)" >>"$idle_report"
  fi
}
if [ "$idle_conns" -gt 0 ]; then
  log "idle memory: $idle_conns keep-alive connections per proxy"
  taskset -c 0 nginx -p "$tmp" -c "$tmp/nginx.conf" >"$tmp/nginx.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_listen "$pid" "$nginx_port" && idle_case nginx "$nginx_port" "$pid"
  stop_pid "$pid"
  taskset -c 0 haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_listen "$pid" "$haproxy_http_port" && idle_case haproxy "$haproxy_http_port" "$pid"
  stop_pid "$pid"
  if [ -n "$routemesh_bin" ]; then
    taskset -c 0 "$routemesh_bin" node --config "$tmp/routemesh.yaml" >"$tmp/routemesh.log" 2>&1 &
    pid=$!; pids+=("$pid")
    wait_listen "$pid" "$routemesh_http_port" && idle_case routemesh "$routemesh_http_port" "$pid"
    stop_pid "$pid"
  fi
fi

# ---------------------------------------------------------------- report
results="$bench_dir/results"
mkdir -p "$results"
rm -rf "$results/latest-raw"
mkdir -p "$results/latest-raw"
cp "$tmp"/wrk-*.txt "$tmp"/*.log "$tmp"/*.conf "$tmp"/*.cfg "$tmp"/*.yaml "$tmp/manifest.tsv" \
  "$results/latest-raw/" 2>/dev/null || true
python3 "$bench_dir/report.py" \
  --manifest "$manifest" \
  --loadavg-start "$loadavg_start" \
  --json "$results/latest.json" \
  --duration "$duration" --connections "$connections" --threads "$threads" --warmup "$warmup" \
  --rounds "$rounds" --rate "$rate" --rate-1m "$rate_1m" \
  --routemesh-version "$(head -n 1 "$tmp/routemesh-version.txt" 2>/dev/null || echo n/a)" \
  --nginx-version "$(nginx -v 2>&1 | head -n 1)" \
  --haproxy-version "$(haproxy -v 2>&1 | head -n 1)" \
  --wrk-version "$(wrk -v 2>&1 | head -n 1)"
if [ -s "$idle_report" ]; then
  echo
  echo "(d) memory per idle keep-alive connection ($idle_conns clients, one proxied request each):"
  cat "$idle_report"
fi
