#!/usr/bin/env bash
# Starts the cluster example in this terminal: a Redis (in memory, loopback only), the internal
# mail server and two relay nodes sharing that Redis. Ctrl-C stops all of them.
# Ports can be moved with REDIS_PORT, INTERNAL_PORT, NODE1_PORT, NODE2_PORT (the tests do);
# the configs written to var/ are node1.yaml and node2.yaml with those ports put in.
set -euo pipefail
cd "$(dirname "$0")"
var=${CLUSTER_VAR:-var}
REDIS_PORT=${REDIS_PORT:-6390} INTERNAL_PORT=${INTERNAL_PORT:-2610} NODE1_PORT=${NODE1_PORT:-2601} NODE2_PORT=${NODE2_PORT:-2602}
mkdir -p "$var"
if [ ! -x /usr/bin/redis-server ]; then echo "start.sh: redis-server not found: apt-get install redis-server" >&2; exit 69; fi

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done   # only what we started
  wait 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

# Redis: loopback only, nothing written to disk (a restart starts empty, which the relays survive).
/usr/bin/redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$var/redis.log" 2>&1 & pids+=($!)
INTERNAL_PORT=$INTERNAL_PORT node internal-server.mjs & pids+=($!)
for n in 1 2; do
  port_var=NODE${n}_PORT
  sed -e "s/port: 260$n/port: ${!port_var}/" -e "s/127.0.0.1:6390/127.0.0.1:$REDIS_PORT/" -e "s/127.0.0.1:2610/127.0.0.1:$INTERNAL_PORT/" \
      -e "s#dir: ./var/node$n/spool#dir: ./node$n/spool#" "node$n.yaml" >"$var/node$n.yaml"
  node node_modules/@portcullis/cli/dist/main.js start --config "$var/node$n.yaml" >>"$var/node$n.log" 2>&1 & pids+=($!)
done
echo "cluster: node1 on 127.0.0.1:$NODE1_PORT, node2 on 127.0.0.1:$NODE2_PORT, Redis on 127.0.0.1:$REDIS_PORT; logs in $var/. Ctrl-C stops everything."
set +e
wait -n
echo "start.sh: a process exited; stopping the rest" >&2
exit 1
