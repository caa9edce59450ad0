#!/usr/bin/env bash
# The main job: installs dependencies, builds, and runs a local routemesh node on loopback with
# two demo HTTP services (web, api) and one layer-4 service (echo-tcp), each backed by
# `routemesh whoami` processes. Prints the commands to try, runs until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh release
bin=build/routemesh
pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

"$bin" whoami --listen 127.0.0.1:9101 --name web-1 >/dev/null & pids+=($!)
"$bin" whoami --listen 127.0.0.1:9102 --name web-2 >/dev/null & pids+=($!)
"$bin" whoami --listen 127.0.0.1:9201 --name api-1 >/dev/null & pids+=($!)
"$bin" whoami --listen 127.0.0.1:9301 --name tcp-1 >/dev/null & pids+=($!)
"$bin" node --config examples/demo.yaml & pids+=($!)

# Wait for the node's admin server to answer.
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null http://127.0.0.1:9901/healthz 2>/dev/null && break
  sleep 0.1
done

cat <<'TXT'

routemesh is running on 127.0.0.1 (Ctrl-C stops it). Try:

  curl -H 'Host: web.localhost' http://127.0.0.1:8080/            # round-robin over web-1, web-2
  curl -H 'Host: api.localhost' http://127.0.0.1:8080/v1/users    # path-routed to api-1
  curl -H 'Host: nope.localhost' http://127.0.0.1:8080/           # 404 no route
  curl http://127.0.0.1:9300/                                     # layer-4 published port 9300
  curl http://127.0.0.1:9901/v1/routes                            # the route table as JSON
  curl http://127.0.0.1:9901/metrics                              # Prometheus metrics
  kill -HUP <node pid>                                            # reload examples/demo.yaml

TXT
wait "${pids[-1]}"
