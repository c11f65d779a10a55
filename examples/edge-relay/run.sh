#!/usr/bin/env bash
# Starts the parts of the example in this terminal: the block list's DNS server, the internal mail
# server, the internet sink and the relay. Ctrl-C stops them all, and so does the relay exiting. The internal server
# and the sink may be stopped and started again on their own (README, step h): their process ids
# are in var/internal-server.pid and var/internet-sink.pid.
# Run `sh setup.sh` once first.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -s tls/cert.pem ] || [ ! -s users.passwd ]; then
  echo "run.sh: tls/ or users.passwd is missing: run 'sh setup.sh' first" >&2
  exit 78
fi
mkdir -p var

pids=()
stop() {
  trap - INT TERM EXIT
  # Only the processes this script started, by their ids.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f var/internal-server.pid var/internet-sink.pid
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

# The example's block list (blocklist.conf). Without dnsmasq the relay still runs: its lookups get
# no answer, and a block list that does not answer refuses nobody.
if [ -x /usr/sbin/dnsmasq ]; then
  /usr/sbin/dnsmasq --keep-in-foreground --conf-file=blocklist.conf --log-facility=var/dnsmasq.log $( [ "$(id -u)" -eq 0 ] && echo --user=root ) & pids+=($!)
else
  echo "run.sh: /usr/sbin/dnsmasq not found (apt-get install dnsmasq-base): the block list is not served" >&2
fi
node internal-server.mjs & pids+=($!); echo $! > var/internal-server.pid
node internet-sink.mjs & pids+=($!); echo $! > var/internet-sink.pid
# The relay's logs are JSON lines: into var/relay.log, to keep this terminal readable.
node node_modules/@portcullis/cli/dist/main.js start --config portcullis.yaml >>var/relay.log 2>&1 &
relay=$!; pids+=($relay)
echo "relay: MX on 127.0.0.1:2525, submission on 127.0.0.1:2587; logs in var/relay.log. Ctrl-C stops everything."

set +e
wait "$relay"
status=$?
if [ "$status" -eq 0 ]; then
  echo "run.sh: the relay stopped; stopping the internal server and the sink."
else
  echo "run.sh: the relay exited with status $status; stopping the rest. Last lines of var/relay.log:" >&2
  tail -n 5 var/relay.log >&2
fi
exit "$status"
