#!/usr/bin/env bash
# The main job: installs dependencies, builds, and runs a local routemesh cluster: three
# managers (Raft voters) and one worker, each serving the HRM port 8080 and the published
# ports. Services are created through the CLI (admin API): two HTTP services (web, api), one
# layer-4 service (echo-tcp) and one UDP service (echo-udp), backed by `routemesh whoami` and
# echo processes. Prints the commands to try, runs until Ctrl-C; any one node may die.
#
# As root (where `ip netns` works) each node runs in its own network namespace on a private
# bridge (10.77.0.11-14, the host side is 10.77.0.1) and each task listens on 172.31.K.1, an
# address only its own node can reach: every request for a task on another node crosses the
# overlay, and every node serves each service's VIP. Otherwise (or with --loopback) the nodes
# share the host's loopback (127.0.0.11-14) and the tasks listen on 127.0.0.1.
#   scripts/run.sh --single     one node from examples/demo.yaml instead (no Raft store)
#   scripts/run.sh --loopback   the cluster on loopback even as root
# The cluster has a CA: nodes join with the tokens `cluster init` prints, the admin API is TLS
# with client certificates, and the CLI's admin certificate goes to the default place
# ($ROUTEMESH_CERT_DIR, else $XDG_CONFIG_HOME/routemesh, else ~/.config/routemesh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh release
bin="$PWD/build/routemesh"
work="${TMPDIR:-/tmp}/routemesh-demo"
pids=()
netns=()  # namespace names, when the nodes run in namespaces
bridge=rmdemo-br
cleanup() {
  trap "" INT TERM  # a second Ctrl-C must not cut the cleanup short
  trap - EXIT
  for p in "${pids[@]}" $(jobs -p); do kill "$p" 2>/dev/null || true; done
  # Nodes drain for up to timeouts.drain_ms; the namespaces can go once they have exited.
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for k in 1 2 3 4; do ip link del "rmdemo-v$k" 2>/dev/null || true; done
  for ns in "${netns[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  if [ "${#netns[@]}" -gt 0 ]; then ip link del "$bridge" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

wait_http() {  # URL: wait up to 30 s for a 2xx answer
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "routemesh demo: $1 did not answer" >&2
  return 1
}

if [ "${1:-}" = "--single" ]; then
  "$bin" whoami --listen 127.0.0.1:9101 --name web-1 >/dev/null & pids+=($!)
  "$bin" whoami --listen 127.0.0.1:9102 --name web-2 >/dev/null & pids+=($!)
  "$bin" whoami --listen 127.0.0.1:9201 --name api-1 >/dev/null & pids+=($!)
  "$bin" whoami --listen 127.0.0.1:9301 --name tcp-1 >/dev/null & pids+=($!)
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

# Namespaces when we can make them (root, iproute2), unless --loopback.
use_netns=0
if [ "${1:-}" != "--loopback" ] && [ "$(id -u)" -eq 0 ] && ip netns add rmdemo-probe 2>/dev/null; then
  ip netns del rmdemo-probe
  use_netns=1
fi
ips=() ; task_ips=() ; run_in=()
for k in 1 2 3 4; do
  if [ "$use_netns" = 1 ]; then
    ips+=("10.77.0.1$k"); task_ips+=("172.31.$k.1")
  else
    ips+=("127.0.0.1$k"); task_ips+=("127.0.0.1")
  fi
done
if [ "$use_netns" = 1 ]; then
  ip link del "$bridge" 2>/dev/null || true
  for k in 1 2 3 4; do
    ip link del "rmdemo-v$k" 2>/dev/null || true  # left by a demo that was killed
    ip netns del "rmdemo-n$k" 2>/dev/null || true
  done
  ip link add "$bridge" type bridge
  ip addr add 10.77.0.1/24 dev "$bridge"
  ip link set "$bridge" up
  for k in 1 2 3 4; do
    ns="rmdemo-n$k"
    ip netns add "$ns"; netns+=("$ns")
    ip link add "rmdemo-v$k" type veth peer name eth0 netns "$ns"
    ip link set "rmdemo-v$k" master "$bridge" up
    ip -n "$ns" addr add "10.77.0.1$k/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "172.31.$k.1/32" dev lo  # this node's tasks: no other node reaches it
  done
fi
in_node() {  # K CMD...: run CMD on node K's host (its namespace, or here)
  local k="$1"; shift
  if [ "$use_netns" = 1 ]; then ip netns exec "rmdemo-n$k" "$@"; else "$@"; fi
}
# K LOG CMD...: start CMD in the background on node K's host, stderr to LOG; its PID (the
# command's own: `ip netns exec` execs it) is appended to pids.
start_on() {
  local k="$1" log="$2"; shift 2
  if [ "$use_netns" = 1 ]; then
    ip netns exec "rmdemo-n$k" "$@" >/dev/null 2>"$log" &
  else
    "$@" >/dev/null 2>"$log" &
  fi
  pids+=($!)
}
ip_of() { echo "${ips[$(($1 - 1))]}"; }
task_ip() { echo "${task_ips[$(($1 - 1))]}"; }

# Tasks: web-1 on n1, web-2 on n2, api-1 on n3, tcp-1 and udp-1 on n1.
start_on 1 /dev/null "$bin" whoami --listen "$(task_ip 1):9101" --name web-1
start_on 2 /dev/null "$bin" whoami --listen "$(task_ip 2):9102" --name web-2
start_on 3 /dev/null "$bin" whoami --listen "$(task_ip 3):9201" --name api-1
start_on 1 /dev/null "$bin" whoami --listen "$(task_ip 1):9301" --name tcp-1
start_on 1 /dev/null python3 tests/integration/ns_echo.py "$(task_ip 1)" 9401

rm -rf "$work" && mkdir -p "$work"
write_config() {  # NAME IP ROLE
  cat >"$work/$1.yaml" <<YAML
node:
  name: $1
  listen: $2
  http_port: 8080
  https_port: 8443
  admin: "$2:9901"
  threads: 1
  access_log: { enabled: true, format: json, path: "$work/$1.access.log" }
cluster:
  role: $3
  data_dir: $work/$1
  peer: "$2:7946"
YAML
}
write_config n1 "$(ip_of 1)" manager
write_config n2 "$(ip_of 2)" manager
write_config n3 "$(ip_of 3)" manager
write_config n4 "$(ip_of 4)" worker

in_node 1 "$bin" cluster init --config "$work/n1.yaml" >"$work/init.txt"
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
node_pids=()
start_on 1 "$work/n1.log" "$bin" node --config "$work/n1.yaml"
node_pids+=("${pids[-1]}")
wait_ready n1
for n in 2 3; do
  start_on "$n" "$work/n$n.log" "$bin" node --config "$work/n$n.yaml" \
    --join "$manager_token@$(ip_of 1):9901"
  node_pids+=("${pids[-1]}")
done
start_on 4 "$work/n4.log" "$bin" node --config "$work/n4.yaml" --join "$worker_token@$(ip_of 1):9901"
node_pids+=("${pids[-1]}")
for n in 2 3 4; do wait_ready "n$n"; done

# Any manager takes writes (forwarded to the leader); the CLI tries the next on failure.
export ROUTEMESH_API="$(ip_of 1):9901,$(ip_of 2):9901,$(ip_of 3):9901"
cli() { "$bin" "$@" >/dev/null; }
cli service create --name web --label mesh.http=web.localhost
cli service create --name api --label mesh.http=api.localhost --label mesh.http.path=/v1 \
  --label mesh.lb=least_request
cli service create --name echo-tcp --publish 9300:9301
cli service create --name echo-udp --publish 9400:9401/udp
cli task add --service web --node n1 --addr "$(task_ip 1):9101"
cli task add --service web --node n2 --addr "$(task_ip 2):9102"
cli task add --service api --node n3 --addr "$(task_ip 3):9201"
cli task add --service echo-tcp --node n1 --addr "$(task_ip 1):9301"
cli task add --service echo-udp --node n1 --addr "$(task_ip 1):9401"
# HTTPS on port 8443 of every node: a self-signed certificate for the two HTTP hosts, stored in
# the cluster (every node serves it).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=routemesh demo" -addext "subjectAltName=DNS:web.localhost,DNS:api.localhost" \
  -keyout "$work/https-key.pem" -out "$work/https.pem" 2>/dev/null
cli cert add --host web.localhost --cert "$work/https.pem" --key "$work/https-key.pem"
cli cert add --host api.localhost --cert "$work/https.pem" --key "$work/https-key.pem"
# Wait until the worker routes (its state arrives over the watch stream).
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null -H 'Host: web.localhost' "http://$(ip_of 4):8080/" 2>/dev/null && break
  sleep 0.1
done

# Wait until the three managers vote (a joining manager is a learner until it has caught up).
for _ in $(seq 1 300); do
  voters="$(curl -fsS "${tls[@]}" "https://$(ip_of 1):9901/v1/cluster" 2>/dev/null |
    grep -o '"voter":true' | wc -l)"
  [ "$voters" -ge 3 ] && break
  sleep 0.1
done

"$bin" cluster status
vip="$(curl -fsS "${tls[@]}" "https://$(ip_of 1):9901/v1/services/echo-tcp" |
  python3 -c 'import json,sys; b=json.load(sys.stdin); print(list(b.get("service",b)["vips"].values())[0])')"
if [ "$use_netns" = 1 ]; then
  where="in network namespaces rmdemo-n1..n4 on bridge $bridge: managers n1-n3 on
10.77.0.11-13, worker n4 on 10.77.0.14. Each node's tasks listen on 172.31.K.1, which only
that node can reach, so a request for a task on another node crosses the overlay (port 4789)"
  vip_line="ip netns exec rmdemo-n4 curl http://$vip:9301/          # the echo-tcp VIP, served on every node"
else
  where="on loopback: managers n1-n3 on 127.0.0.11-13, worker n4 on 127.0.0.14 (run as root
for one network namespace per node, where tasks are reachable only through the overlay)"
  vip_line="# VIPs ($vip for echo-tcp) are served in the namespace mode only"
fi
cat <<TXT

A routemesh cluster is running $where.
Ctrl-C stops it; logs in $work. Every node routes every service:

  curl -H 'Host: web.localhost' http://$(ip_of 4):8080/           # round-robin over web-1 (n1), web-2 (n2)
  curl -H 'Host: api.localhost' http://$(ip_of 1):8080/v1/users   # path-routed to api-1 (n3)
  curl -H 'Host: nope.localhost' http://$(ip_of 2):8080/          # 404 no route
  curl http://$(ip_of 3):9300/                                    # layer-4 published port 9300
  curl --cacert $work/https.pem --resolve web.localhost:8443:$(ip_of 2) https://web.localhost:8443/
                                                                  # HTTPS, terminated by the node
  echo hello | nc -u -w1 $(ip_of 4) 9400                          # UDP published port 9400 (echo)
  $vip_line
  export ROUTEMESH_API=$ROUTEMESH_API
  build/routemesh service ls                                      # services, from the Raft store
  build/routemesh node ls                                         # members, status, leader
  build/routemesh task ls                                         # tasks and their health
  build/routemesh service update web --label-add mesh.http.sticky=rm_sticky
  build/routemesh cert issue --role viewer --out $work/viewer     # a read-only certificate
  ROUTEMESH_CERT_DIR=$work/viewer build/routemesh service rm web  # 403: viewers only read
  build/routemesh cluster token rotate worker                     # a new worker join token
  build/routemesh cluster ca rotate --grace 1m                    # a new root CA, every node re-issued
  build/routemesh cluster ca status                               # the rotation's progress

The admin API is TLS with client certificates from the cluster CA (the CLI's are in $certs):

  curl --cacert $certs/ca.pem --cert $certs/cert.pem --key $certs/key.pem \\
       https://$(ip_of 1):9901/v1/routes                          # a node's route table as JSON
  curl --cacert $certs/ca.pem https://$(ip_of 1):9901/metrics     # Prometheus metrics (no certificate needed)
  curl --cacert $certs/ca.pem https://$(ip_of 1):9901/v1/services # 401 without a client certificate

Failover: the node PIDs are n1=${node_pids[0]} n2=${node_pids[1]} n3=${node_pids[2]} n4=${node_pids[3]}.
Kill the leader (see \`cluster status\`), e.g. \`kill -9 ${node_pids[0]}\`: another manager takes
over within a second or two, \`build/routemesh cluster status\` answers through the others,
every other node keeps routing, and after node_down_after_ms (5 s) \`node ls\` shows the dead
node down and its tasks leave the route tables.

TXT
# Runs until Ctrl-C or SIGTERM, whichever nodes die meanwhile.
while true; do
  sleep 3600 &
  wait $! || true
done
