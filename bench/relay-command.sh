#!/usr/bin/env bash
# relay-command.sh - the worker mode's relay (`portcullis start`: a primary and its workers) for the
# peers harness, with nothing of the benchmark resident beside it, so that the harness's summed RSS of
# the process tree is the relay's own: this bash (about 4 MB) is the root the harness watches, the
# primary its child, the workers the primary's children.
#
#   bench/relay-command.sh --listen 127.0.0.1:PORT --upstream HOST:PORT --workers auto [relay-main's other flags]
#
# 1. `relay-main.js --prepare` (short-lived) writes the config file (the same settings relay-main uses).
# 2. The portcullis command runs on it (the CLI's Node flags: bench/src/node-flags.ts).
# 3. With --stats: every 2 s this script saves the primary's /metrics page (bash's /dev/tcp and `cat`,
#    no Node process); at SIGTERM/SIGINT it passes the signal on, waits for the relay to stop, then
#    `relay-main.js --stats-from` (short-lived, after the run) appends the p50/p99 line from the last
#    page, as relay-main does with workers. The harness SIGTERMs the whole tree at once, so the last
#    page is the one saved while every worker still answered (at most 2 s before the stop).
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench-workers-XXXXXX")
out=$(node "$HERE/dist/relay-main.js" --prepare "$dir" "$@") || { code=$?; rm -rf "$dir"; exit "$code"; }
{ read -r config; read -r admin; read -r flags; } <<<"$out"
stats=''
for ((i = 1; i <= $#; i++)); do [[ ${!i} == --stats ]] && { j=$((i + 1)); stats=${!j:-}; }; done
# shellcheck disable=SC2086 # the flags are words
node $flags "$REPO/packages/cli/dist/main.js" start --config "$config" &
relay=$!
echo "relay-command: pid $$ runs portcullis start (pid $relay) on $config" >&2

scrape() {
  [[ $admin != 0 ]] || return 0
  { exec 3<>"/dev/tcp/127.0.0.1/$admin"; } 2>/dev/null || return 0
  printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  cat <&3 >"$dir/metrics.tmp" 2>/dev/null
  exec 3<&-
  # Only a page with the histogram replaces the last good one (not an error page while stopping).
  [[ $(<"$dir/metrics.tmp") == *portcullis_data_reply_seconds_bucket* ]] && mv -f "$dir/metrics.tmp" "$dir/metrics.prom"
  return 0
}

finish() {
  wait "$relay"
  local code=$?
  [[ -n $stats && -f $dir/metrics.prom ]] && node "$HERE/dist/relay-main.js" --stats-from "$dir/metrics.prom" --pid $$ "$@"
  rm -rf "$dir"
  exit "$code"
}

stopping=''
stop() {
  [[ -n $stopping ]] && return
  stopping=1
  kill "-$1" "$relay" 2>/dev/null
}
trap 'stop TERM' TERM
trap 'stop INT' INT

while [[ -z $stopping ]] && kill -0 "$relay" 2>/dev/null; do
  [[ -n $stats ]] && scrape
  sleep 2 &
  wait $! 2>/dev/null
done
trap '' TERM INT
# Bounded as relay-main is: a stuck worker must not keep the benchmark waiting (20 s, then SIGKILL).
for ((t = 0; t < 200; t++)); do kill -0 "$relay" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$relay" 2>/dev/null
finish "$@"
