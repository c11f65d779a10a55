/**
 * After a ../shared/bench run with the Portcullis relays: one row per relay process (the harness
 * restarts the relay for every run and every retry) with the figures the relay measured over its
 * measured burst (relay-main --stats): CPU ms per message and the end-of-DATA-to-250 latency.
 *
 *   node bench/dist/peers-stats.js STATS.jsonl [RESULTS.csv]
 *
 *   node bench/dist/peers-stats.js STATS.jsonl [RESULTS.csv] [HARNESS.log]
 *
 * Matching a process to its run: with the harness's log (what run-peers.sh printed), the k-th relay
 * process of a config is the k-th `<config> size=… conc=…` line of that config (the harness starts
 * one process per run and per retry, in order, and each writes its stats when it stops); a size that
 * disagrees with the mean size the relay saw marks the row `?`. Without the log, the nearest CSV row
 * by mean size and median open sessions. (The CSV's `tries` column holds the attempt kept, not the
 * attempts made, so it cannot be used to count processes.)
 */
import { existsSync, readFileSync } from 'node:fs';

interface Burst { pid: number; plugins: string; config?: string; workers?: number | 'auto'; messages: number; avgBytes: number; seconds: number; cpuMsPerMsg: number | null; p50Ms: number; p99Ms: number; maxMs: number | null; sessions?: number }

const [statsFile, csvFile, logFile] = process.argv.slice(2);
if (!statsFile) {
  process.stderr.write('usage: peers-stats STATS.jsonl [RESULTS.csv]\n');
  process.exit(64);
}
cpuTable();
if (!existsSync(statsFile)) {
  console.log(`# no Portcullis stats in ${statsFile}`);
  process.exit(0);
}

/** CPU ms per message of every relay in the harness CSV, with ratios to the floor and to Postfix. */
function cpuTable(): void {
  if (!csvFile || !existsSync(csvFile)) return;
  const [head, ...lines] = readFileSync(csvFile, 'utf8').trim().split('\n');
  const keys = head!.split(',');
  const rows = lines.map((line) => {
    const vals = line.split(',').map((v) => v.replace(/^"|"$/g, ''));
    return Object.fromEntries(keys.map((k, i) => [k, vals[i] ?? ''])) as Record<string, string>;
  });
  const cpu = (r: Record<string, string>) => (r['relay_cpu_s'] && Number(r['sink']) > 0 ? (Number(r['relay_cpu_s']) * 1000) / Number(r['sink']) : undefined);
  const at = (config: string, size: string, conc: string) => rows.find((r) => r['config'] === config && r['size'] === size && r['conc'] === conc);
  const out: string[][] = [];
  for (const r of rows) {
    const c = cpu(r);
    if (c === undefined) continue;
    const floor = at('floor', r['size']!, r['conc']!);
    const postfix = at('postfix', r['size']!, r['conc']!);
    const f = floor && cpu(floor);
    const p = postfix && cpu(postfix);
    out.push([r['config']!, r['size']!, r['conc']!, r['sink']!, Number(r['relay_cpu_s']).toFixed(2), c.toFixed(3), f ? (c / f).toFixed(2) : '-', p ? (c / p).toFixed(2) : '-', r['procs'] ?? '-', r['status'] ?? '']);
  }
  if (!out.length) return;
  const header = ['config', 'msg_bytes', 'conc', 'at_sink', 'cpu_s', 'cpu_ms/msg', 'x_floor', 'x_postfix', 'procs', 'status'];
  const w = header.map((h, i) => Math.max(h.length, ...out.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((v, i) => (i === 0 || i === r.length - 1 ? v.padEnd(w[i]!) : v.padStart(w[i]!))).join('  ').trimEnd();
  console.log('# CPU per message, every relay (user+sys of its whole process tree over the run / messages at the sink); x_floor, x_postfix = ratio to the floor\'s and Postfix\'s CPU per message in the same run, same size and concurrency');
  console.log(fmt(header));
  console.log(w.map((x) => '-'.repeat(x)).join('  '));
  for (const r of out) console.log(fmt(r));
  console.log('');
}

const bursts = readFileSync(statsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Burst);
// Per process (in the order the processes ended), the measured burst: the one with the most messages.
const perPid = new Map<number, Burst>();
for (const b of bursts) {
  const cur = perPid.get(b.pid);
  if (!cur || b.messages > cur.messages) perPid.set(b.pid, b);
}
const procs = [...perPid.values()];

const configOf = (b: Burst) => b.config ?? configOfPlugins(b.plugins);
/**
 * A burst without `config` comes from a relay started without `--label`. Of this checkout's
 * relays (relays.portcullis.json) only portcullis-att runs relay-policy + attachments, and always
 * with `--label portcullis-att`; an unlabelled relay of those plugins is BASE_REPO's
 * (`portcullis-att-base`: run-peers.sh drops `--label` there, an older checkout may not know it).
 * Taking it for portcullis-att put the base's figures in portcullis-att's rows and shifted every
 * later portcullis-att process onto the wrong run.
 */
const configOfPlugins = (plugins: string) => (plugins === 'relay-policy' ? 'portcullis' : plugins === 'relay-policy,attachments' ? 'portcullis-att-base' : plugins === 'relay-policy,recipients' ? 'portcullis-rcpt' : plugins);
/** The (size, concurrency) rows of the harness CSV for our configs. */
const runs: Array<{ config: string; size: number; conc: number }> = [];
if (csvFile && existsSync(csvFile)) {
  const [head, ...lines] = readFileSync(csvFile, 'utf8').trim().split('\n');
  const keys = head!.split(',');
  for (const line of lines) {
    const vals = line.split(',').map((v) => v.replace(/^"|"$/g, ''));
    const row = Object.fromEntries(keys.map((k, i) => [k, vals[i] ?? '']));
    if (!String(row['config']).startsWith('portcullis')) continue;
    runs.push({ config: row['config']!, size: Number(row['msg_bytes'] ?? row['size']), conc: Number(row['conc']) });
  }
}

/** Per config, the runs in the order the harness made them (one line per relay process). */
const logged = new Map<string, Array<{ size: number; conc: number }>>();
if (logFile && existsSync(logFile)) {
  for (const m of readFileSync(logFile, 'utf8').matchAll(/^\[[^\]]*\]\s+(\S+) size=(\d+) conc=(\d+) N=/gm)) {
    const list = logged.get(m[1]!) ?? [];
    list.push({ size: Number(m[2]), conc: Number(m[3]) });
    logged.set(m[1]!, list);
  }
}

/** Distance on a log scale, so 10 vs 50 sessions and 10 KB vs 100 KB weigh alike. */
const far = (a: number, b: number) => Math.abs(Math.log((a + 1) / (b + 1)));
const header = ['config', 'msg_bytes', 'conc', 'attempt', 'measured', 'avg_bytes', 'sessions', 'cpu_ms/msg', 'p50_ms', 'p99_ms', 'max_ms'];
const rows: string[][] = [];
const attempts = new Map<string, number>();
for (const p of procs) {
  const config = configOf(p);
  let run: (typeof runs)[number] | undefined;
  const fromLog = logged.get(config)?.shift();
  if (fromLog) run = !p.avgBytes || Math.abs(fromLog.size - p.avgBytes) <= 0.05 * fromLog.size + 512 ? { config, ...fromLog } : undefined;
  else for (const r of runs) {
    if (r.config !== config) continue;
    const d = far(r.size, p.avgBytes) + far(r.conc, p.sessions ?? r.conc);
    if (!run || d < far(run.size, p.avgBytes) + far(run.conc, p.sessions ?? run.conc)) run = r;
  }
  const key = run ? `${config} ${run.size} ${run.conc}` : '';
  const attempt = run ? (attempts.get(key) ?? 0) + 1 : 0;
  if (run) attempts.set(key, attempt);
  rows.push([config, run ? String(run.size) : '?', run ? String(run.conc) : '?', run ? String(attempt) : '?', String(p.messages), p.avgBytes ? String(p.avgBytes) : '-', String(p.sessions ?? '-'), p.cpuMsPerMsg == null ? '-' : p.cpuMsPerMsg.toFixed(3), p.p50Ms.toFixed(2), p.p99Ms.toFixed(2), p.maxMs == null ? '-' : p.maxMs.toFixed(2)]);
}
const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const fmt = (r: string[]) => r.map((v, i) => (i === 0 ? v.padEnd(w[i]!) : v.padStart(w[i]!))).join('  ');
console.log('# Portcullis, measured inside the relay over each run\'s measured burst (relay-main --stats):');
console.log(logged.size ? '# matched to the harness runs in the order of its log (attempt = that row\'s relay processes in order, retries included)' : '# matched to the harness rows by mean size and median open sessions (attempt = that row\'s relay processes in order, retries included)');
console.log('# cpu_ms/msg = process CPU time (user+sys) from the first to the last reply / messages (one process; with workers see the table above); p50/p99/max = end of DATA (final dot read) to the reply (with workers: from the primary\'s portcullis_data_reply_seconds histogram over the process\'s life, bucket bounds interpolated)');
console.log(fmt(header));
console.log(w.map((x) => '-'.repeat(x)).join('  '));
for (const r of rows) console.log(fmt(r));
