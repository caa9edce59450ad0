#!/usr/bin/env bash
# The main job: installs dependencies, builds, and runs a local routemesh cluster on loopback:
# three managers (Raft voters) on 127.0.0.11-13 and one worker on 127.0.0.14, each serving the
# HRM port 8080 and the published ports. Services are created through the CLI (admin API):
# two HTTP services (web, api) and one layer-4 service (echo-tcp), backed by
# `routemesh whoami` processes. Prints the commands to try, runs until Ctrl-C. The cluster has a
# CA: nodes join with the tokens `cluster init` prints, the admin API is TLS with client
# certificates, and the CLI's admin certificate goes to the default place
# ($ROUTEMESH_CERT_DIR, else $XDG_CONFIG_HOME/routemesh, else ~/.config/routemesh).
#   scripts/run.sh --single   runs one node from examples/demo.yaml instead (no Raft store).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh release
bin="$PWD/build/routemesh"
work="${TMPDIR:-/tmp}/routemesh-demo"
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

wait_http() {  # URL: wait up to 30 s for a 2xx answer
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "routemesh demo: $1 did not answer" >&2
  return 1
}

if [ "${1:-}" = "--single" ]; then
  "$bin" node --config examples/demo.yaml & pids+=($!)
  wait_http http://127.0.0.1:9901/healthz
  cat <<TXT

routemesh (one node, examples/demo.yaml) is running on 127.0.0.1 (Ctrl-C stops it). Try:

  curl -H 'Host: web.localhost' http://127.0.0.1:8080/            # round-robin over web-1, web-2
  curl -H 'Host: api.localhost' http://127.0.0.1:8080/v1/users    # path-routed to api-1
  curl -H 'Host: nope.localhost' http://127.0.0.1:8080/           # 404 no route
  curl http://127.0.0.1:9300/                                     # layer-4 published port 9300
  curl http://127.0.0.1:9901/v1/routes                            # the route table as JSON
  kill -HUP ${pids[-1]}                                               # reload examples/demo.yaml

TXT
  wait "${pids[-1]}"
  exit 0
fi

rm -rf "$work" && mkdir -p "$work"
write_config() {  # NAME IP ROLE
  cat >"$work/$1.yaml" <<YAML
node:
  name: $1
  listen: $2
  http_port: 8080
  admin: "$2:9901"
  threads: 1
  access_log: { enabled: true, format: json, path: "$work/$1.access.log" }
cluster:
  role: $3
  data_dir: $work/$1
  peer: "$2:7946"
YAML
}
write_config n1 127.0.0.11 manager
write_config n2 127.0.0.12 manager
write_config n3 127.0.0.13 manager
write_config n4 127.0.0.14 worker

"$bin" cluster init --config "$work/n1.yaml" >"$work/init.txt"
worker_token="$(sed -n 's/.*workers: .*--join \(RMTKN-[^@]*\)@.*/\1/p' "$work/init.txt")"
manager_token="$(sed -n 's/.*managers: .*--join \(RMTKN-[^@]*\)@.*/\1/p' "$work/init.txt")"
certs="$(sed -n "s/^the CLI's admin certificate: \([^ ]*\) .*/\1/p" "$work/init.txt")"
tls=(--cacert "$certs/ca.pem" --cert "$certs/cert.pem" --key "$certs/key.pem")
wait_ready() {  # NAME: wait up to 30 s for the node's "cluster ready" log line
  for _ in $(seq 1 300); do
    grep -q "cluster ready:" "$work/$1.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "routemesh demo: $1 did not become ready; see $work/$1.log" >&2
  return 1
}
"$bin" node --config "$work/n1.yaml" 2>"$work/n1.log" & pids+=($!)
wait_ready n1
for n in 2 3; do
  "$bin" node --config "$work/n$n.yaml" --join "$manager_token@127.0.0.11:9901" \
    2>"$work/n$n.log" & pids+=($!)
done
"$bin" node --config "$work/n4.yaml" --join "$worker_token@127.0.0.11:9901" 2>"$work/n4.log" &
pids+=($!)
for n in 2 3 4; do wait_ready "n$n"; done

export ROUTEMESH_API=127.0.0.12:9901  # any manager: writes are forwarded to the leader
cli() { "$bin" "$@" >/dev/null; }
cli service create --name web --label mesh.http=web.localhost
cli service create --name api --label mesh.http=api.localhost --label mesh.http.path=/v1 \
  --label mesh.lb=least_request
cli service create --name echo-tcp --publish 9300:9301
cli task add --service web --node n1 --addr 127.0.0.1:9101
cli task add --service web --node n2 --addr 127.0.0.1:9102
cli task add --service api --node n3 --addr 127.0.0.1:9201
cli task add --service echo-tcp --node n1 --addr 127.0.0.1:9301
# Wait until the worker routes (its state arrives over the watch stream).
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null -H 'Host: web.localhost' http://127.0.0.14:8080/ 2>/dev/null && break
  sleep 0.1
done

# Wait until the three managers vote (a joining manager is a learner until it has caught up).
for _ in $(seq 1 300); do
  voters="$(curl -fsS "${tls[@]}" https://127.0.0.11:9901/v1/cluster 2>/dev/null |
    grep -o '"voter":true' | wc -l)"
  [ "$voters" -ge 3 ] && break
  sleep 0.1
done

"$bin" cluster status
cat <<TXT

A routemesh cluster is running on loopback (Ctrl-C stops it; logs in $work).
Managers n1-n3 on 127.0.0.11-13, worker n4 on 127.0.0.14; every node routes every service:

  curl -H 'Host: web.localhost' http://127.0.0.14:8080/           # round-robin over web-1, web-2
  curl -H 'Host: api.localhost' http://127.0.0.11:8080/v1/users   # path-routed to api-1
  curl -H 'Host: nope.localhost' http://127.0.0.12:8080/          # 404 no route
  curl http://127.0.0.13:9300/                                    # layer-4 published port 9300
  export ROUTEMESH_API=127.0.0.11:9901
  build/routemesh service ls                                      # services, from the Raft store
  build/routemesh node ls                                         # members, leader, voters
  build/routemesh service update web --label-add mesh.http.sticky=rm_sticky
  build/routemesh cert issue --role viewer --out $work/viewer     # a read-only certificate
  ROUTEMESH_CERT_DIR=$work/viewer build/routemesh service rm web  # 403: viewers only read
  build/routemesh cluster token rotate worker                     # a new worker join token

The admin API is TLS with client certificates from the cluster CA (the CLI's are in $certs):

  curl --cacert $certs/ca.pem --cert $certs/cert.pem --key $certs/key.pem \\
       https://127.0.0.11:9901/v1/routes                          # a node's route table as JSON
  curl --cacert $certs/ca.pem https://127.0.0.11:9901/metrics     # Prometheus metrics (no certificate needed)
  curl --cacert $certs/ca.pem https://127.0.0.11:9901/v1/services # 401 without a client certificate

TXT
wait "${pids[4]}"
