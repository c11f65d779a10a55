#!/usr/bin/env bash
# run-peers.sh - runs the shared peers benchmark (../shared/bench: direct, Postfix, Haraka) with
# Portcullis added, in ONE run, so the figures are comparable: `portcullis` (relay-policy only),
# `portcullis-att` (relay-policy + attachments, workers: 1), `portcullis-auto` (the same with
# workers: auto, through the portcullis command run by bench/relay-command.sh, so that the summed RSS
# is the relay's processes alone; left out when the checkout has no worker mode),
# `portcullis-rcpt` (relay-policy + recipients, callout answered from the cached catch-all flag) and
# the floor (bench/src/floor-relay.ts). Haraka runs with HARAKA_NODES=cpus unless set.
#
#   bench/run-peers.sh [any run-peers.sh options: --quick, --no-install, -o FILE, ...]
#
# relays.portcullis.json names the checkout as {REPO}; this script fills in the absolute path
# of this checkout, writes the result to a temp file and passes it with --relays. After the run it
# appends to the report, and prints: CPU ms per message of EVERY relay of the run (all its
# processes, from the harness CSV) with the ratio to the floor's and Postfix's, and Portcullis's own
# figures (end-of-DATA-to-250 p50/p99, from relay-main --stats).
# Needs root (the shared harness runs Postfix and a loopback-only network namespace).
# Environment: PEERS_DIR (default /work/shared/bench, or ../shared/bench next to the checkout).
# BASE_REPO=DIR adds the relay-policy + attachments relay of another built checkout as portcullis-att-base.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PEERS_DIR=${PEERS_DIR:-}
if [[ -z $PEERS_DIR ]]; then
  if [[ -x $REPO/../shared/bench/run-peers.sh ]]; then PEERS_DIR=$(cd "$REPO/../shared/bench" && pwd); else PEERS_DIR=/work/shared/bench; fi
fi
[[ -x $PEERS_DIR/run-peers.sh ]] || { echo "no $PEERS_DIR/run-peers.sh (set PEERS_DIR)" >&2; exit 1; }
[[ -f $REPO/bench/dist/relay-main.js && -f $REPO/bench/dist/peers-stats.js ]] || { echo "build first: (cd $REPO && npx tsc -b bench)" >&2; exit 1; }
WORK=${BENCH_WORK:-/tmp/relaybench}
# Haraka on every core, as Portcullis with workers: auto and Postfix (the harness's default is nodes=1).
export HARAKA_NODES=${HARAKA_NODES:-cpus}
STATS=$WORK/portcullis-stats.jsonl
# Where the report goes: the caller's -o, else a new file (so the stats can be appended to it).
out=''
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in -o|--out) out=${args[i+1]:-} ;; esac
done
if [[ -z $out ]]; then
  mkdir -p "$WORK"
  out=$WORK/results-peers-portcullis-$(date +%Y%m%d-%H%M%S).txt
  args+=(-o "$out")
fi
tmp=$(mktemp /tmp/relays.portcullis.XXXXXX.json)
trap 'rm -f "$tmp"' EXIT
# The path goes into a JSON string: escape backslashes and quotes, and sed's & and |.
esc=$(printf '%s' "$REPO" | sed -e 's/\\/\\\\\\\\/g' -e 's/"/\\\\"/g' -e 's/[&|]/\\&/g')
sed "s|{REPO}|$esc|g" "$HERE/relays.portcullis.json" > "$tmp"
# portcullis-auto needs the worker mode (the config's `workers` key, and the portcullis command built):
# without it that entry is left out of the run, with a note, rather than failing the whole run.
if ! node "$REPO/bench/dist/relay-main.js" --has-workers || [[ ! -f $REPO/packages/cli/dist/main.js ]]; then
  echo "run-peers: this checkout has no worker mode (config key \`workers\`): portcullis-auto left out" >&2
  node -e 'const fs = require("fs"); const f = process.argv[1]; fs.writeFileSync(f, JSON.stringify(JSON.parse(fs.readFileSync(f, "utf8")).filter((r) => r.name !== "portcullis-auto"), null, 2))' "$tmp"
fi
# BASE_REPO=DIR adds `portcullis-att-base`: the relay-policy + attachments relay of another checkout
# (built: DIR/bench/dist), in the same run, for before/after pairs of a change.
if [[ -n ${BASE_REPO:-} ]]; then
  [[ -f $BASE_REPO/bench/dist/relay-main.js ]] || { echo "BASE_REPO=$BASE_REPO: build it first (npx tsc -b bench)" >&2; exit 1; }
  node -e '
    const fs = require("fs"); const [f, base] = process.argv.slice(1);
    const list = JSON.parse(fs.readFileSync(f, "utf8"));
    const att = list.find((r) => r.name === "portcullis-att");
    const cmd = att.cmd.map((a) => a.replace(/^.*\/bench\/dist\/relay-main\.js$/, base + "/bench/dist/relay-main.js")).filter((a, i, all) => !["--workers", "--label"].includes(a) && !["--workers", "--label"].includes(all[i - 1]));
    list.push({ ...att, name: "portcullis-att-base", label: "Portcullis at " + base + ", relay-policy + attachments (the before of a pair)", port: 2532, cmd, cwd: base });
    fs.writeFileSync(f, JSON.stringify(list, null, 2));' "$tmp" "$(cd "$BASE_REPO" && pwd)"
fi
node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$tmp"
mkdir -p "$WORK"
rm -f "$STATS"
rc=0
log=$WORK/portcullis-harness.log
# The harness's progress goes to the terminal as before and to $log, which matches relay processes to runs.
"$PEERS_DIR/run-peers.sh" --relays "$tmp" "${args[@]}" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
csv=${out%.txt}.csv
table=$(node "$REPO/bench/dist/peers-stats.js" "$STATS" "$csv" "$log")
printf '\n%s\n' "$table"
[[ -f $out ]] && printf '\n%s\n' "$table" >> "$out"
exit $rc
