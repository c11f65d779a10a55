/**
 * Portcullis throughput benchmark (`pnpm bench`).
 *
 *   load generator ──► Portcullis (child: dist/relay-main.js) ──► sink next hop
 *
 * For every config × message size × concurrency: a freshly started relay, a warm-up, then N
 * messages, one new TCP connection per message. Configs (BENCH_CONFIGS): `policy` (relay-policy
 * only), `attachments` (relay-policy + attachments), `clamav` (relay-policy + attachments + clamav,
 * with a private clamd started for the run), `rspamd` (relay-policy + rspamd, with a private rspamd started for
 * the run; after each rspamd row, rspamd's own rate: the same messages POSTed straight to /checkv2 at the same
 * concurrency, so the two rates come from the same run). Measured: wall time from the start of the load until the
 * sink has counted all N (msgs/s = N / seconds), the relay's peak RSS (VmRSS sampled every
 * 100 ms, and the kernel's VmHWM reset at the start of the measured run), its CPU time
 * (utime+stime from /proc/PID/stat) per message, and the end-of-DATA-to-250 latency (p50, p99) as
 * the relay measured it (relay-main --stats).
 *
 * Load: Postfix's smtp-source if installed (same flags as ../shared/bench), else a built-in
 * raw-socket client. Sink: Postfix's smtp-sink -c if installed, else dist/sink.js.
 * Loopback only. Every child is killed by PID on exit.
 *
 * Environment: BENCH_CONFIGS (`policy,attachments,clamav`), BENCH_N (one number, or `10240:2000,102400:1000`), BENCH_SIZES (`10240,102400`),
 * BENCH_CONCURRENCY (`1,10,50`), BENCH_WARMUP (200), BENCH_TIMEOUT_S (120, per cell),
 * BENCH_SINK_PORT (2621), BENCH_RELAY_PORT (2622), BENCH_CLIENT (`auto` | `builtin`),
 * BENCH_SINK (`auto` | `builtin`), BENCH_SAMPLE_MS (100).
 */
import { spawn, fork, type ChildProcess } from 'node:child_process';
import { startClamd, type Clamd } from './clamd.js';
import { directRate, startRspamd, type Rspamd } from './rspamd.js';
import { captureSourceMessage } from './source-message.js';
import { existsSync, mkdtempSync, openSync, closeSync, fstatSync, readSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RELAY_NODE_FLAGS } from './node-flags.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const LOOPBACK = '127.0.0.1';
const SMTP_SINK = '/usr/sbin/smtp-sink';
const SMTP_SOURCE = '/usr/sbin/smtp-source';
const CLK_TCK = 100; // USER_HZ on Linux

const env = process.env;
const list = (v: string | undefined, d: number[]) => (v ? v.split(',').map((x) => Number(x.trim())).filter((x) => Number.isFinite(x) && x > 0) : d);
const SIZES = list(env['BENCH_SIZES'], [10240, 102400]);
const CONCS = list(env['BENCH_CONCURRENCY'], [1, 10, 50]);
const WARMUP = env['BENCH_WARMUP'] !== undefined ? Number(env['BENCH_WARMUP']) : 200;
const TIMEOUT_MS = Number(env['BENCH_TIMEOUT_S'] ?? 120) * 1000;
const SINK_PORT = Number(env['BENCH_SINK_PORT'] ?? 2621);
const RELAY_PORT = Number(env['BENCH_RELAY_PORT'] ?? 2622);
const SAMPLE_MS = Number(env['BENCH_SAMPLE_MS'] ?? 100);
const CLAMD_PORT = Number(env['BENCH_CLAMD_PORT'] ?? 2623);
/** More Node flags for the relay process, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` (NODE_OPTIONS refuses --cpu-prof). */
const EXTRA_RELAY_FLAGS = (env['BENCH_RELAY_NODE_FLAGS'] ?? '').split(/\s+/).filter(Boolean);
const RSPAMD_PORT = Number(env['BENCH_RSPAMD_PORT'] ?? 2624);
/** rspamd rows: the measured run is cut in this many slices, with rspamd's own rate measured after each (same load for both). */
const SLICES = Math.max(1, Number(env['BENCH_RSPAMD_SLICES'] ?? 5));
/** Where the private rspamd sends DNS: a loopback port where nothing answers. */
const RSPAMD_DNS_PORT = Number(env['BENCH_RSPAMD_DNS_PORT'] ?? 2625);
/** Config name → relay-main --plugins. */
const CONFIGS: Record<string, string> = {
  policy: 'relay-policy',
  attachments: 'relay-policy,attachments',
  clamav: 'relay-policy,attachments,clamav',
  rspamd: 'relay-policy,rspamd',
  recipients: 'relay-policy,recipients',
};
const CONFIG_NAMES = (env['BENCH_CONFIGS'] ?? 'policy,attachments,clamav').split(',').map((c) => c.trim()).filter(Boolean);
for (const c of CONFIG_NAMES) if (!CONFIGS[c]) throw new Error(`BENCH_CONFIGS: unknown config ${JSON.stringify(c)} (known: ${Object.keys(CONFIGS).join(', ')})`);
const useSmtpSource = env['BENCH_CLIENT'] !== 'builtin' && existsSync(SMTP_SOURCE);
const useSmtpSink = env['BENCH_SINK'] !== 'builtin' && existsSync(SMTP_SINK);

function nFor(size: number): number {
  const v = env['BENCH_N'];
  if (v && /^\d+$/.test(v)) return Number(v);
  if (v) {
    for (const part of v.split(',')) {
      const [s, n] = part.split(':').map(Number);
      if (s === size && n) return n;
    }
  }
  return size <= 16384 ? 2000 : 1000;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ------------------------------------------------------------------ child tracking
const children = new Set<ChildProcess>();
function track(cp: ChildProcess): ChildProcess {
  children.add(cp);
  cp.once('exit', () => children.delete(cp));
  return cp;
}
function killAll(): void {
  for (const cp of children) {
    if (cp.pid && cp.exitCode === null && cp.signalCode === null) {
      try {
        process.kill(cp.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    log(`${sig}: killing children`);
    killAll();
    process.exit(130);
  });
}

async function stopChild(cp: ChildProcess, graceMs = 5000): Promise<void> {
  if (!cp.pid || cp.exitCode !== null || cp.signalCode !== null) return;
  const exited = new Promise<void>((r) => cp.once('exit', () => r()));
  process.kill(cp.pid, 'SIGTERM');
  const t = setTimeout(() => {
    try {
      process.kill(cp.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, graceMs);
  await exited;
  clearTimeout(t);
}

/** Resolves once something on host:port answers with a 220 greeting. */
async function waitSmtp(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, LOOPBACK);
      const done = (v: boolean) => (s.destroy(), resolve(v));
      s.setTimeout(1000, () => done(false));
      s.once('error', () => done(false));
      s.once('data', (d) => {
        const good = d.toString('latin1').startsWith('220');
        if (good) s.end('QUIT\r\n');
        resolve(good);
        setTimeout(() => s.destroy(), 200).unref();
      });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing answered 220 on ${LOOPBACK}:${port} within ${timeoutMs} ms`);
    await sleep(100);
  }
}

// ------------------------------------------------------------------ sink
interface Sink {
  readonly kind: string;
  count: number;
  waitFor(target: number, deadline: number): Promise<number | null>;
  stop(): Promise<void>;
}

function makeWaiter(sink: { count: number; countAt: number; waiters: Array<{ target: number; resolve: (t: number) => void }> }) {
  return (target: number, deadline: number) =>
    new Promise<number | null>((resolve) => {
      if (sink.count >= target) return resolve(sink.countAt);
      const w = { target, resolve: (t: number) => (clearTimeout(timer), resolve(t)) };
      const timer = setTimeout(() => {
        sink.waiters = sink.waiters.filter((x) => x !== w);
        resolve(null);
      }, Math.max(0, deadline - Date.now()));
      sink.waiters.push(w);
    });
}

function setCount(sink: { count: number; countAt: number; waiters: Array<{ target: number; resolve: (t: number) => void }> }, c: number) {
  if (c === sink.count) return;
  sink.count = c;
  sink.countAt = now();
  sink.waiters = sink.waiters.filter((w) => (c >= w.target ? (w.resolve(sink.countAt), false) : true));
}

/** Postfix smtp-sink -c: "sess=N quit=N mesg=N\r" after each message; we read the file's tail every 10 ms. */
async function startSmtpSink(workDir: string): Promise<Sink> {
  const outPath = path.join(workDir, 'smtp-sink.counters');
  const out = openSync(outPath, 'w');
  const err = openSync(path.join(workDir, 'smtp-sink.stderr'), 'w');
  const args = ['-c', ...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), '-m', '1024', `${LOOPBACK}:${SINK_PORT}`, '1024'];
  const cp = track(spawn(SMTP_SINK, args, { stdio: ['ignore', out, err] }));
  closeSync(out);
  closeSync(err);
  const fd = openSync(outPath, 'r');
  const state = { count: 0, countAt: now(), waiters: [] as Array<{ target: number; resolve: (t: number) => void }> };
  let lastSize = -1;
  const timer = setInterval(() => {
    const size = fstatSync(fd).size;
    if (size === lastSize) return;
    lastSize = size;
    const len = Math.min(size, 256);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    const recs = buf.toString('latin1').split('\r');
    recs.pop();
    for (let i = recs.length - 1; i >= 0; i--) {
      const m = /mesg=(\d+)$/.exec(recs[i]!);
      if (m && recs[i]!.startsWith('sess=')) {
        setCount(state, Number(m[1]));
        break;
      }
    }
  }, 10);
  await waitSmtp(SINK_PORT, 10_000);
  return {
    kind: `${SMTP_SINK} -c`,
    get count() { return state.count; },
    waitFor: makeWaiter(state),
    async stop() {
      clearInterval(timer);
      closeSync(fd);
      await stopChild(cp);
    },
  };
}

async function startBuiltinSink(): Promise<Sink> {
  const cp = track(fork(path.join(HERE, 'sink.js'), [`${LOOPBACK}:${SINK_PORT}`], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const state = { count: 0, countAt: now(), waiters: [] as Array<{ target: number; resolve: (t: number) => void }> };
  cp.on('message', (m: { count?: number }) => {
    if (typeof m.count === 'number') setCount(state, m.count);
  });
  await waitSmtp(SINK_PORT, 10_000);
  return {
    kind: 'built-in counting sink (dist/sink.js)',
    get count() { return state.count; },
    waitFor: makeWaiter(state),
    async stop() {
      cp.disconnect();
      await stopChild(cp);
    },
  };
}

// ------------------------------------------------------------------ /proc sampling
function readStatus(pid: number): { rssKb: number; hwmKb: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'latin1');
    return { rssKb: Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0), hwmKb: Number(/VmHWM:\s+(\d+)/.exec(s)?.[1] ?? 0) };
  } catch {
    return undefined;
  }
}
function cpuSeconds(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // fields after "(comm) ": state=0 ... utime=11 stime=12 (0-based from state)
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}
function resetHwm(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5'); // 5 = reset the peak RSS (VmHWM) to the current RSS
  } catch {
    /* not permitted: VmHWM then covers the warm-up too */
  }
}

// ------------------------------------------------------------------ load generators
interface LoadResult { ok: boolean; detail: string; doneAt: number }

function runSmtpSource(port: number, n: number, size: number, conc: number, deadline: number): Promise<LoadResult> {
  const args = ['-s', String(conc), '-m', String(n), '-l', String(size), '-f', 'bench@source.example', '-t', 'rcpt@hosted.example', '-N', '-M', 'client.example', `${LOOPBACK}:${port}`];
  return new Promise((resolve) => {
    const cp = track(spawn(SMTP_SOURCE, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
    let stderr = '';
    cp.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-500)));
    const timer = setTimeout(() => {
      try {
        process.kill(cp.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, Math.max(0, deadline - Date.now()));
    cp.once('exit', (code, sig) => {
      clearTimeout(timer);
      const ok = code === 0;
      resolve({ ok, doneAt: now(), detail: ok ? '' : sig === 'SIGKILL' ? 'TIMEOUT(source)' : `SRC_ERR(rc=${code}${stderr ? `: ${stderr.trim().split('\n').pop()}` : ''})` });
    });
  });
}

/** Body of `size` bytes in 80-column lines (79 chars + CRLF), like smtp-source. */
function makeMessage(size: number, i: number): Buffer {
  const head = `From: <bench@source.example>\r\nTo: <${i}rcpt@hosted.example>\r\nSubject: bench ${i}\r\nMessage-Id: <${i}.${Date.now()}@client.example>\r\n\r\n`;
  const line = 'X'.repeat(78) + '\r\n';
  const lines = Math.floor(size / line.length);
  return Buffer.from(head + line.repeat(lines) + 'X'.repeat(Math.max(0, size - lines * line.length - 2)) + '\r\n.\r\n', 'latin1');
}

/** One message on one new connection, no pipelining (as smtp-source does). */
function sendOne(port: number, body: Buffer, i: number, deadline: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, LOOPBACK);
    s.setNoDelay(true);
    const steps: Array<[string | Buffer | null, number]> = [
      [null, 220],
      ['EHLO client.example\r\n', 250],
      ['MAIL FROM:<bench@source.example>\r\n', 250],
      [`RCPT TO:<${i}rcpt@hosted.example>\r\n`, 250],
      ['DATA\r\n', 354],
      [body, 250],
      ['QUIT\r\n', 221],
    ];
    let step = 0;
    let buf = '';
    const timer = setTimeout(() => fail(new Error('timeout')), Math.max(0, deadline - Date.now()));
    const fail = (e: Error) => {
      clearTimeout(timer);
      s.destroy();
      reject(e);
    };
    s.on('error', fail);
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        // a complete reply: last line has "NNN " (not "NNN-")
        const m = /(^|\r\n)(\d{3}) [^\r\n]*\r\n$/.exec(buf);
        if (!m) return;
        const code = Number(m[2]);
        buf = '';
        const want = steps[step]![1];
        if (code !== want) return fail(new Error(`step ${step}: expected ${want}, got ${code}`));
        step++;
        if (step === steps.length) {
          clearTimeout(timer);
          s.end();
          return resolve();
        }
        s.write(steps[step]![0]!);
        return;
      }
    });
  });
}

async function runBuiltinClient(port: number, n: number, size: number, conc: number, deadline: number): Promise<LoadResult> {
  const template = makeMessage(size, 0);
  let next = 0;
  let errors = 0;
  let firstErr = '';
  const worker = async () => {
    while (next < n && Date.now() < deadline) {
      const i = ++next;
      try {
        await sendOne(port, i === 1 ? template : makeMessage(size, i), i, deadline);
      } catch (e) {
        errors++;
        firstErr ||= (e as Error).message;
        if (errors > 10) return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(conc, n) }, worker));
  const ok = errors === 0 && next >= n;
  return { ok, doneAt: now(), detail: ok ? '' : Date.now() >= deadline ? 'TIMEOUT(source)' : `SRC_ERR(${errors} errors: ${firstErr})` };
}

const runLoad = useSmtpSource ? runSmtpSource : runBuiltinClient;

// ------------------------------------------------------------------ one cell
interface Row {
  config: string; size: number; conc: number; n: number; seconds: number; rate: number; atSink: number; srcDone: number;
  peakRssMb: number; hwmMb: number; cpuS: number; p50: number; p99: number; status: string;
  /** rspamd's CPU (main process and workers) over the measured run, rspamd rows only. */
  rspamdCpuS?: number;
}

/** The measured run's burst from relay-main --stats: the one with the most messages. */
function measuredBurst(file: string): { messages: number; p50Ms: number; p99Ms: number } | undefined {
  if (!existsSync(file)) return undefined;
  const bursts = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { messages: number; p50Ms: number; p99Ms: number });
  return bursts.sort((a, b) => b.messages - a.messages)[0];
}

async function runCell(sink: Sink, config: string, clamd: Clamd | undefined, rspamd: Rspamd | undefined, workDir: string, size: number, conc: number, n: number, between?: (m: number) => Promise<void>): Promise<Row> {
  const deadline = Date.now() + TIMEOUT_MS;
  const row: Row = { config, size, conc, n, seconds: NaN, rate: NaN, atSink: 0, srcDone: NaN, peakRssMb: NaN, hwmMb: NaN, cpuS: NaN, p50: NaN, p99: NaN, status: 'ok' };
  const statsFile = path.join(workDir, `stats-${config}-${size}-${conc}.jsonl`);
  const args = ['--listen', `${LOOPBACK}:${RELAY_PORT}`, '--upstream', `${LOOPBACK}:${SINK_PORT}`, '--plugins', CONFIGS[config]!, '--stats', statsFile, ...(clamd ? ['--clamd', clamd.address] : []), ...(rspamd ? ['--rspamd', rspamd.address] : [])];
  const relay = track(
    spawn(process.execPath, [...RELAY_NODE_FLAGS, ...EXTRA_RELAY_FLAGS, path.join(HERE, 'relay-main.js'), ...args], {
      stdio: ['ignore', 'inherit', 'pipe'],
      env: { ...process.env, NODE_ENV: 'production' },
    }),
  );
  let relayErr = '';
  relay.stderr!.on('data', (d: Buffer) => (relayErr = (relayErr + d.toString()).slice(-2000)));
  const pid = relay.pid!;
  try {
    await waitSmtp(RELAY_PORT, 30_000);
    // warm-up at the cell's own size and concurrency, not reported
    if (WARMUP > 0) {
      const base = sink.count;
      const w = await runLoad(RELAY_PORT, WARMUP, size, conc, deadline);
      if (!w.ok) throw new Error(`warm-up: ${w.detail}`);
      if ((await sink.waitFor(base + WARMUP, deadline)) === null) throw new Error('TIMEOUT(warm-up at sink)');
    }
    await sleep(500);
    resetHwm(pid);
    process.kill(pid, 'SIGUSR2'); // the relay's latency figures start here
    let peakRssKb = 0;
    let hwmKb = 0;
    const sample = () => {
      const st = readStatus(pid);
      if (st) {
        peakRssKb = Math.max(peakRssKb, st.rssKb);
        hwmKb = Math.max(hwmKb, st.hwmKb);
      }
    };
    sample();
    const sampler = setInterval(sample, SAMPLE_MS);
    // The measured run, in slices; `between` runs after each slice (rspamd's own rate, interleaved).
    const slices = between ? Math.max(1, Math.min(SLICES, n)) : 1;
    row.cpuS = 0;
    row.srcDone = 0;
    row.seconds = 0;
    if (rspamd) row.rspamdCpuS = 0;
    for (let k = 0; k < slices && row.status === 'ok'; k++) {
      const m = Math.floor(n / slices) + (k < n % slices ? 1 : 0);
      const cpu0 = cpuSeconds(pid);
      const rspamdCpu0 = rspamd?.cpuSeconds() ?? NaN;
      const base = sink.count;
      const t0 = now();
      const load = await runLoad(RELAY_PORT, m, size, conc, deadline);
      row.srcDone += load.doneAt - t0;
      const at = load.ok ? await sink.waitFor(base + m, deadline) : null;
      const t1 = at === null ? now() : Math.max(at, load.doneAt);
      row.cpuS += cpuSeconds(pid) - cpu0;
      if (rspamd) row.rspamdCpuS! += rspamd.cpuSeconds() - rspamdCpu0;
      row.atSink += sink.count - base;
      row.seconds += t1 - t0;
      if (!load.ok) row.status = load.detail;
      else if (at === null) row.status = `TIMEOUT(sink ${row.atSink}/${n})`;
      else if (between) await between(m);
    }
    sample();
    clearInterval(sampler);
    row.rate = row.atSink / row.seconds;
    row.peakRssMb = peakRssKb / 1024;
    row.hwmMb = hwmKb / 1024;
  } catch (e) {
    row.status = (e as Error).message.startsWith('TIMEOUT') ? (e as Error).message : `ERROR(${(e as Error).message})`;
  } finally {
    if (relay.exitCode !== null) row.status += ` (relay exited ${relay.exitCode}: ${relayErr.trim().split('\n').pop()})`;
    await stopChild(relay);
  }
  const burst = measuredBurst(statsFile);
  if (burst) {
    row.p50 = burst.p50Ms;
    row.p99 = burst.p99Ms;
    if (burst.messages !== n && row.status === 'ok') row.status = `ok (latency over ${burst.messages} replies)`;
  }
  return row;
}

// ------------------------------------------------------------------ main
const fmt = (v: number, d: number) => (Number.isFinite(v) ? v.toFixed(d) : '-');
const COLS = ['config', 'msg_bytes', 'conc', 'N', 'msgs/s', 'seconds', 'src_done_s', 'at_sink', 'peak_rss_MB', 'vmhwm_MB', 'relay_cpu_s', 'cpu_ms/msg', 'p50_ms', 'p99_ms', 'status'];
function rowCells(r: Row): string[] {
  return [r.config, String(r.size), String(r.conc), String(r.n), fmt(r.rate, 1), fmt(r.seconds, 2), fmt(r.srcDone, 2), String(r.atSink), fmt(r.peakRssMb, 1), fmt(r.hwmMb, 1), fmt(r.cpuS, 2), fmt((r.cpuS * 1000) / r.atSink, 2), fmt(r.p50, 2), fmt(r.p99, 2), r.status];
}
const DIRECT_COLS = ['msg_bytes', 'conc', '    N', 'relay+rspamd/s', 'rspamd_direct/s', 'relay/direct', 'relay_ms', 'rspamd_ms_relayed', 'rspamd_ms_direct', 'client_ms_direct', 'policy/direct', 'status'];
function printTable(rows: string[][]): void {
  const widths = COLS.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(COLS));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(r));
}

async function main(): Promise<void> {
  if (!existsSync(path.join(HERE, 'relay-main.js'))) throw new Error('dist/relay-main.js missing: build first (tsc -b bench)');
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-bench-'));
  const started = now();
  const sink = useSmtpSink ? await startSmtpSink(workDir) : await startBuiltinSink();
  const rows: string[][] = [];
  const directRows: string[] = [];
  /** The policy rows' rates by size/conc: the relay without rspamd in this run, shown beside the rspamd rows. */
  const policyRates = new Map<string, number>();
  let clamd: Clamd | undefined;
  let rspamd: Rspamd | undefined;
  try {
    for (const config of CONFIG_NAMES) {
      if (config === 'clamav') {
        log(`starting clamd on ${LOOPBACK}:${CLAMD_PORT} ...`);
        clamd = await startClamd(CLAMD_PORT, track);
      }
      if (config === 'rspamd') {
        log(`starting rspamd on ${LOOPBACK}:${RSPAMD_PORT} ...`);
        rspamd = await startRspamd(RSPAMD_PORT, RSPAMD_DNS_PORT, track);
      }
      for (const size of SIZES) {
        for (const conc of CONCS) {
          const n = nFor(size);
          log(`${config} size=${size} conc=${conc} N=${n} (+${WARMUP} warm-up) ...`);
          // rspamd rows: rspamd's own rate is measured between slices of the relay's measured run
          // (BENCH_RSPAMD_SLICES), so both see the same load on this shared machine.
          let sourced: Buffer | undefined;
          let body: ((i: number) => Buffer) | undefined;
          const direct = { seconds: 0, done: 0, errors: 0, rspamdS: 0, clientUs: 0 };
          if (config === 'rspamd' && rspamd) {
            // The message the relay passes to rspamd: smtp-source's own bytes (or the built-in client's), without the SMTP ".\r\n".
            sourced = useSmtpSource ? await captureSourceMessage(SMTP_SOURCE, size) : undefined;
            body = (i: number) => { if (sourced) return sourced; const m = makeMessage(size, i); return m.subarray(0, m.length - 3); };
            await directRate(rspamd.port, body, Math.min(WARMUP, n), conc, Date.now() + TIMEOUT_MS); // its warm-up, as the relay's
          }
          const between = config === 'rspamd' && rspamd && body ? async (m: number) => {
            const r0 = rspamd!.cpuSeconds();
            const c0 = process.cpuUsage();
            const d = await directRate(rspamd!.port, body!, m, conc, Date.now() + TIMEOUT_MS);
            const c = process.cpuUsage(c0);
            direct.rspamdS += rspamd!.cpuSeconds() - r0;
            direct.clientUs += c.user + c.system;
            direct.seconds += d.seconds;
            direct.done += m - d.errors;
            direct.errors += d.errors;
          } : undefined;
          const r = await runCell(sink, config, config === 'clamav' ? clamd : undefined, config === 'rspamd' ? rspamd : undefined, workDir, size, conc, n, between);
          log(`  ${fmt(r.rate, 1)} msg/s, ${fmt(r.seconds, 2)} s, peak RSS ${fmt(r.peakRssMb, 1)} MB, relay CPU ${fmt(r.cpuS, 2)} s, p50/p99 ${fmt(r.p50, 2)}/${fmt(r.p99, 2)} ms, ${r.status}`);
          rows.push(rowCells(r));
          if (config === 'policy') policyRates.set(`${size}/${conc}`, r.rate);
          if (config === 'rspamd' && rspamd) {
            const d = { rate: direct.done / direct.seconds, errors: direct.errors };
            const done = direct.done;
            const directCpu = { rspamdMs: (direct.rspamdS * 1000) / done, clientMs: direct.clientUs / 1000 / done };
            log(`  rspamd direct: ${fmt(d.rate, 1)} msg/s (${d.errors} errors); relay/direct ${fmt((100 * r.rate) / d.rate, 0)} %`);
            const cells = [String(size), String(conc), String(n), fmt(r.rate, 1), fmt(d.rate, 1), `${fmt((100 * r.rate) / d.rate, 0)} %`, fmt((r.cpuS * 1000) / r.atSink, 2), fmt(((r.rspamdCpuS ?? NaN) * 1000) / r.atSink, 2), fmt(directCpu.rspamdMs, 2), fmt(directCpu.clientMs, 2), `${fmt((100 * (policyRates.get(`${size}/${conc}`) ?? NaN)) / d.rate, 0)} %`, d.errors ? `${d.errors} errors` : 'ok'];
            directRows.push(cells.map((c, i) => (i === cells.length - 1 ? c : c.padStart(DIRECT_COLS[i]!.length))).join('  '));
          }
        }
      }
    }
  } finally {
    await clamd?.stop();
    await rspamd?.stop();
    await sink.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
  const cpus = os.cpus();
  console.log(`# Portcullis relay benchmark - ${new Date().toISOString()}`);
  console.log(`# host: ${cpus[0]?.model.trim()} x ${cpus.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Linux ${os.release()}, Node ${process.version}`);
  console.log(`# load: ${useSmtpSource ? `${SMTP_SOURCE} -s CONC -m N -l BYTES -f bench@source.example -t rcpt@hosted.example -N -M client.example` : 'built-in raw-socket client (no pipelining)'}; one new TCP connection per message`);
  console.log(`# sink (next hop): ${sink.kind} on ${LOOPBACK}:${SINK_PORT}; relay: dist/relay-main.js on ${LOOPBACK}:${RELAY_PORT} (tls none, fresh temp spool), restarted per row`);
  console.log(`# configs: ${CONFIG_NAMES.map((c) => `${c} = ${CONFIGS[c]}`).join('; ')}${CONFIG_NAMES.includes('clamav') ? ` (private clamd on ${LOOPBACK}:${CLAMD_PORT}, one-signature database)` : ''}${CONFIG_NAMES.includes('rspamd') ? ` (private rspamd on ${LOOPBACK}:${RSPAMD_PORT}: Debian's stock rules, network and Redis modules off)` : ''}`);
  console.log(`# per row: ${WARMUP}-message warm-up (not reported), 500 ms pause, then N measured; time bound ${TIMEOUT_MS / 1000} s per row`);
  console.log(`# seconds = load start -> sink counted all N (and the load generator exited); msgs/s = at_sink / seconds; src_done_s = when the generator finished`);
  console.log('# cpu_ms/msg = relay_cpu_s / at_sink; p50_ms / p99_ms = end of DATA (the final dot read) to the reply, measured in the relay over the N measured messages');
  console.log(`# peak_rss_MB = max VmRSS of the relay process sampled every ${SAMPLE_MS} ms; vmhwm_MB = kernel peak (reset after warm-up); relay_cpu_s = utime+stime of the relay during the measured run`);
  console.log(`# the machine is shared with other workloads: expect noise (differences under ~25 % are not significant); total ${fmt(now() - started, 0)} s`);
  console.log('');
  printTable(rows);
  if (directRows.length) {
    console.log('');
    console.log(`# rspamd: the relay with rspamd (relay-policy + rspamd, smtp-source -> relay -> sink) next to rspamd's own rate: the same`);
    console.log(`# message (smtp-source's own bytes, as the relay passes them on), size, N and concurrency POSTed straight to`);
    console.log(`# ${LOOPBACK}:${RSPAMD_PORT}/checkv2 (chunked, one connection per message, the plugin's envelope headers), measured in this`);
    console.log(`# run between ${SLICES} slices of the relay row's measured run (so both see the same load). Both share the machine's cores with rspamd.`);
    console.log('# relay_ms = relay CPU ms per message; rspamd_ms_relayed / rspamd_ms_direct = rspamd CPU ms (main process + workers) per');
    console.log('# message in the relay row / in the direct row; client_ms_direct = CPU ms per message of the direct POSTs\' client (this process);');
    console.log('# policy/direct = the relay without rspamd (the policy row of this run, when BENCH_CONFIGS has policy) over rspamd\'s own rate');
    console.log(DIRECT_COLS.join('  '));
    for (const l of directRows) console.log(l);
  }
  // "ok (latency over n replies)": every message went through, the latency covers one slice or burst only.
  if (rows.some((r) => !r[r.length - 1]!.startsWith('ok'))) process.exitCode = 2;
}

main().catch((err: unknown) => {
  log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  killAll();
  process.exit(1);
});
