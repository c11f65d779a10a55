/**
 * Starts one Portcullis relay in the foreground for benchmarking, independent of the CLI package:
 *
 *   node bench/dist/relay-main.js --listen 127.0.0.1:2527 --upstream 127.0.0.1:2601 [--spool DIR]
 *       [--plugins relay-policy,attachments,clamav,rspamd,recipients] [--clamd 127.0.0.1:3310] [--rspamd 127.0.0.1:11333] [--stats FILE] [--max-size 120MB]
 *
 * Accepts mail for *@hosted.example (and anything from 127.0.0.0/8) and forwards hosted.example to
 * the upstream without TLS. `--plugins` adds the attachments screener and/or clamav (default:
 * relay-policy only). `--stats FILE`: on exit, appends one JSON line per burst of messages (a burst
 * ends after 700 ms without a reply to DATA) with its message count, the relay's CPU time and the
 * end-of-DATA-to-reply latencies (p50, p99, max), so a harness that runs a smoke test, a warm-up and
 * the measured run against one relay instance can pick the measured burst. SIGTERM / SIGINT:
 * graceful stop, then exit.
 *
 * `--workers N|auto` (the config's `workers` key): 1 runs the relay in this process as above (the key is
 * written into the config only when this checkout's core knows it). More than 1, or auto: this
 * process writes the same settings as a config file and runs the `portcullis start` command on it
 * (packages/cli: the primary and its workers, children of this process, so a harness that counts a
 * process tree counts them all), forwards SIGTERM/SIGINT, and for --stats reads the primary's
 * /metrics (admin on a free loopback port, every 2 s): one line with the messages and the
 * end-of-DATA-to-250 p50/p99 from the portcullis_data_reply_seconds histogram (bucket bounds,
 * interpolated; the process's whole life: smoke test and warm-up included). Exit status 69 when
 * the core has no `workers` key (the harness leaves the config out then).
 *
 * With workers the admin listener (and metrics recording) is on only with --stats or BENCH_METRICS=on.
 * `--env NAME=VALUE` (repeatable) sets an environment variable for the relay and its workers, e.g.
 * `--env PORTCULLIS_CLUSTER_SCHED=none` to measure the kernel's balancing against round-robin in one run.
 *
 * For the peers harness, `bench/relay-command.sh` runs the same worker mode without this process staying
 * resident (so the harness's summed RSS is the relay's alone), through two short-lived modes of this file:
 * `--prepare DIR ARGS...` writes the config file into DIR and prints three lines (the config file, the
 * admin port, the Node flags for the command), and `--stats-from METRICS_FILE --pid PID ARGS...`
 * appends the --stats line computed from a saved /metrics page (the script's last scrape).
 *
 * BENCH_METRICS=on turns the admin listener (and so metrics recording) on, on a free loopback
 * port, and scrapes /metrics from this process every BENCH_SCRAPE_MS (default 15 s, Prometheus's
 * default interval; one scrape costs about 7 ms of CPU), to compare throughput with metrics on and off.
 */
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
// The core and the plugins are imported only where this process runs the relay itself (--workers 1,
// --has-workers): with workers it only writes a config, starts `portcullis start` and reads /metrics,
// and a harness that sums the RSS of the relay's process tree should not count ~50 MB of modules
// this wrapper never uses (measured: 90 MB with them, see packages/core/README.md "Workers").
import { RELAY_NODE_FLAGS } from './node-flags.js';

function usage(msg: string): never {
  process.stderr.write(`relay-main: ${msg}\nusage: relay-main --listen 127.0.0.1:PORT --upstream HOST:PORT [--spool DIR] [--plugins relay-policy,attachments,clamav,rspamd,recipients] [--clamd HOST:PORT] [--rspamd HOST:PORT] [--stats FILE] [--max-size SIZE] [--workers N|auto] [--label NAME] [--env NAME=VALUE]\n`);
  process.exit(64);
}

const KNOWN_PLUGINS = ['relay-policy', 'attachments', 'clamav', 'rspamd', 'recipients'] as const;
type BenchPlugin = (typeof KNOWN_PLUGINS)[number];

interface Args {
  listen: { host: string; port: number };
  upstream: string;
  spool?: string;
  plugins: BenchPlugin[];
  clamd: string;
  rspamd: string;
  stats?: string;
  /** limits.messageSize and clamav's maxSize (for the large-message benchmark). */
  maxSize?: string;
  /** The config's `workers` (absent: not written). */
  workers?: number | 'auto';
  /** The harness's name for this relay config (written into --stats lines as `config`). */
  label?: string;
}

function parseArgs(argv: string[]): Args {
  let listen: string | undefined;
  let upstream: string | undefined;
  let spool: string | undefined;
  let plugins = 'relay-policy';
  let clamd = '127.0.0.1:3310';
  let rspamd = '127.0.0.1:11333';
  let stats: string | undefined;
  let maxSize: string | undefined;
  let workers: number | 'auto' | undefined;
  let label: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--listen' && v) (listen = v), i++;
    else if (a === '--upstream' && v) (upstream = v), i++;
    else if (a === '--spool' && v) (spool = v), i++;
    else if (a === '--plugins' && v) (plugins = v), i++;
    else if (a === '--clamd' && v) (clamd = v), i++;
    else if (a === '--rspamd' && v) (rspamd = v), i++;
    else if (a === '--stats' && v) (stats = v), i++;
    else if (a === '--max-size' && v) (maxSize = v), i++;
    else if (a === '--label' && v) (label = v), i++;
    else if (a === '--env' && v && /^[A-Z_][A-Z0-9_]*=/.test(v)) (process.env[v.slice(0, v.indexOf('='))] = v.slice(v.indexOf('=') + 1)), i++;
    else if (a === '--workers' && v && (v === 'auto' || /^[1-9]\d*$/.test(v))) (workers = v === 'auto' ? 'auto' : Number(v)), i++;
    else usage(`unknown or incomplete argument ${JSON.stringify(a)}`);
  }
  if (!listen || !upstream) usage('--listen and --upstream are required');
  const m = /^(\[[0-9a-fA-F:.]+\]|[^\s:]+):(\d{1,5})$/.exec(listen);
  if (!m) usage(`--listen: expected HOST:PORT, got ${JSON.stringify(listen)}`);
  const names = plugins.split(',').map((p) => p.trim()).filter(Boolean);
  for (const n of names) if (!(KNOWN_PLUGINS as readonly string[]).includes(n)) usage(`--plugins: unknown plugin ${JSON.stringify(n)} (known: ${KNOWN_PLUGINS.join(', ')})`);
  if (!names.includes('relay-policy')) names.unshift('relay-policy');
  return { listen: { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) }, upstream, spool, plugins: names as BenchPlugin[], clamd, rspamd, stats, maxSize, workers, label };
}

/** The plugin entries, in a fixed order: relay-policy first, then the screeners asked for. */
function pluginEntries(args: Args): Array<{ use: string; with?: Record<string, unknown> }> {
  const out: Array<{ use: string; with?: Record<string, unknown> }> = [
    {
      use: 'relay-policy',
      with: {
        domains: { 'hosted.example': { nexthop: args.upstream, tls: 'none' } },
        trustedNetworks: ['127.0.0.0/8'],
      },
    },
  ];
  // Defaults on purpose: the benchmark measures what an operator gets without tuning.
  if (args.plugins.includes('attachments')) out.push({ use: 'attachments' });
  if (args.plugins.includes('clamav')) out.push({ use: 'clamav', with: { servers: [args.clamd], ...(args.maxSize ? { maxSize: args.maxSize } : {}) } });
  if (args.plugins.includes('rspamd')) out.push({ use: 'rspamd', with: { servers: [args.rspamd] } });
  // Recipient validation by callout to the sink: the first probe finds the sink takes any address
  // (catch-all) and every later RCPT is answered from the cached catch-all flag, on the shared
  // state (memory), as an operator's cached answers would be. Its outbound.trustedNetworks is empty,
  // so the load's 127.0.0.1 is checked although relay-policy trusts it.
  if (args.plugins.includes('recipients')) out.push({ use: 'recipients', with: { sources: { verify: { callout: {} } }, domains: { 'hosted.example': ['verify'] } } });
  return out;
}

/** Read after the arguments (`--env BENCH_METRICS=on` sets it for one relay of a cpu-loop pair). */
const metricsOn = () => process.env['BENCH_METRICS'] === 'on';
/** How often /metrics is scraped with metrics on (BENCH_SCRAPE_MS): Prometheus's default 15 s. */
const scrapeMs = Number(process.env['BENCH_SCRAPE_MS'] ?? 15_000);

/** The relay's settings, as a raw config (what parseConfig and the `portcullis` command read). */
function rawConfig(args: Args, spoolDir: string, admin: { enabled: boolean; port: number }): Record<string, unknown> {
  return {
    hostname: 'relay.bench.example',
    listen: [{ host: args.listen.host, port: args.listen.port, greetingDelay: 0 }],
    limits: { connectionsPerIp: 1000, ...(args.maxSize ? { messageSize: args.maxSize } : {}) },
    spool: { dir: spoolDir },
    log: { level: 'warn' },
    admin: { ...admin, host: '127.0.0.1' },
    ...(args.workers !== undefined ? { workers: args.workers } : {}),
    plugins: pluginEntries(args),
  };
}

/** Whether this checkout's config schema has the `workers` key (the worker mode). */
async function coreHasWorkers(args: Args): Promise<boolean> {
  try {
    const { parseConfig } = await import('@portcullis/core');
    return 'workers' in parseConfig(rawConfig({ ...args, workers: 1 }, os.tmpdir(), { enabled: false, port: 0 }));
  } catch {
    return false;
  }
}

/** The same question asked in a short-lived child, so that this process never loads the core. */
function coreHasWorkersApart(): boolean {
  return spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--has-workers'], { stdio: 'ignore' }).status === 0;
}

/** A free loopback port (for the primary's admin listener). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** The histogram's quantile q, linearly interpolated inside its bucket (cumulative `le` counts). */
function quantile(buckets: Array<{ le: number; count: number }>, q: number): number {
  const total = buckets[buckets.length - 1]?.count ?? 0;
  if (!total) return 0;
  const want = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of buckets) {
    if (b.count >= want) {
      if (!Number.isFinite(b.le)) return prevLe;
      return prevLe + ((b.le - prevLe) * (want - prevCount)) / Math.max(1, b.count - prevCount);
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

/** The admin listener (and so metrics recording in every worker) only when something reads it (see runCommand). */
const adminWanted = (args: Args) => !!args.stats || metricsOn();

/** The end-of-DATA-to-250 histogram's buckets in a /metrics page (all workers summed by the primary). */
function histogramOf(text: string): { buckets: Array<{ le: number; count: number }>; count: number } | undefined {
  const buckets = [...text.matchAll(/^portcullis_data_reply_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\d+)/gm)].map((m) => ({ le: m[1] === '+Inf' ? Infinity : Number(m[1]), count: Number(m[2]) }));
  return buckets.length ? { buckets, count: buckets[buckets.length - 1]!.count } : undefined;
}

/** The --stats line of the worker mode: messages and the histogram's p50/p99 (interpolated in their buckets). */
function statsLine(args: Args, pid: number, last: { buckets: Array<{ le: number; count: number }>; count: number }): string {
  const ms = (q: number) => Math.round(quantile(last.buckets, q) * 1e5) / 100;
  return JSON.stringify({ pid, plugins: args.plugins.join(','), ...(args.label ? { config: args.label } : {}), workers: args.workers, messages: last.count, avgBytes: 0, seconds: 0, cpuMsPerMsg: null, p50Ms: ms(0.5), p99Ms: ms(0.99), maxMs: null, source: 'metrics histogram' }) + '\n';
}

/** `--prepare DIR`: relay-command.sh's first step. Writes DIR/portcullis.json; prints the file, the admin port and the Node flags. */
async function prepare(dir: string, args: Args): Promise<void> {
  const adminPort = await freePort();
  const file = path.join(dir, 'portcullis.json');
  writeFileSync(file, JSON.stringify(rawConfig(args, args.spool ?? path.join(dir, 'spool'), { enabled: adminWanted(args), port: adminPort }), null, 2));
  process.stdout.write(`${file}\n${adminWanted(args) ? adminPort : 0}\n${RELAY_NODE_FLAGS.join(' ')}\n`);
}

/** `--stats-from FILE --pid PID`: relay-command.sh's last step, after the relay stopped: the --stats line from its last scrape. */
function statsFrom(file: string, pid: number, args: Args): void {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // No scrape succeeded (the relay died at start): no line, as runCommand writes none then.
  }
  const last = histogramOf(text);
  if (args.stats && last) appendFileSync(args.stats, statsLine(args, pid, last));
}

/** `--workers` above 1: the `portcullis start` command (primary + workers) on a config file written here. */
async function runCommand(args: Args): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-bench-workers-'));
  const spoolDir = args.spool ?? path.join(dir, 'spool');
  const adminPort = await freePort();
  const file = path.join(dir, 'portcullis.json');
  // The admin listener (and so metrics recording in every worker) only when something reads it: --stats
  // (the p50/p99 come from /metrics) or BENCH_METRICS=on; otherwise off, as for --workers 1, so that the
  // two modes are compared doing the same work.
  const adminOn = adminWanted(args);
  writeFileSync(file, JSON.stringify(rawConfig(args, spoolDir, { enabled: adminOn, port: adminPort }), null, 2));
  const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../packages/cli/dist/main.js');
  // This process's Node flags (cpu-loop's: the portcullis command's, plus --cpu-prof when profiling),
  // which the primary passes on to its workers (cluster.setupPrimary's execArgv).
  const child = spawn(process.execPath, [...(process.execArgv.length ? process.execArgv : RELAY_NODE_FLAGS), cli, 'start', '--config', file], { stdio: 'inherit' });
  process.stderr.write(`relay-main: pid ${process.pid} runs portcullis start (pid ${child.pid}, workers ${args.workers}) on ${args.listen.host}:${args.listen.port}, plugins ${args.plugins.join(',')}, upstream ${args.upstream}, spool ${spoolDir}\n`);
  let last: { buckets: Array<{ le: number; count: number }>; count: number } | undefined;
  const scrape = () =>
    http.get({ host: '127.0.0.1', port: adminPort, path: '/metrics' }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => (last = histogramOf(text) ?? last));
    }).on('error', () => undefined);
  const timer = args.stats ? setInterval(scrape, 2000) : metricsOn() ? setInterval(scrape, scrapeMs) : undefined;
  let stopping = false;
  const stop = (sig: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    if (timer) clearInterval(timer);
    child.kill(sig);
    // Bounded: the primary drains its workers; a stuck one must not keep the benchmark waiting.
    setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  const code = await new Promise<number>((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
  if (args.stats && last) appendFileSync(args.stats, statsLine(args, process.pid, last));
  if (!args.spool) rmSync(dir, { recursive: true, force: true });
  process.exit(code);
}

async function main(): Promise<void> {
  // `relay-main --has-workers`: exit 0 when this checkout's core has the worker mode, 69 when not (run-peers.sh).
  if (process.argv[2] === '--has-workers') process.exit((await coreHasWorkers(parseArgs(['--listen', '127.0.0.1:2525', '--upstream', '127.0.0.1:2601']))) ? 0 : 69);
  if (process.argv[2] === '--prepare' && process.argv[3]) return prepare(process.argv[3], parseArgs(process.argv.slice(4)));
  if (process.argv[2] === '--stats-from' && process.argv[3] && process.argv[4] === '--pid' && process.argv[5]) return statsFrom(process.argv[3], Number(process.argv[5]), parseArgs(process.argv.slice(6)));
  const args = parseArgs(process.argv.slice(2));
  if (args.workers !== undefined && args.workers !== 1) {
    if (!coreHasWorkersApart()) {
      process.stderr.write('relay-main: this checkout\'s core has no `workers` config key (worker mode not merged): --workers needs it\n');
      process.exit(69);
    }
    return runCommand(args);
  }
  if (!(await coreHasWorkers(args))) delete args.workers;
  const [{ parseConfig, Relay }, { default: relayPolicy }, { default: attachments }, { default: clamav }, { default: rspamd }, { default: recipients }, { BurstStats }] = await Promise.all([
    import('@portcullis/core'),
    import('@portcullis/relay-policy'),
    import('@portcullis/attachments'),
    import('@portcullis/clamav'),
    import('@portcullis/rspamd'),
    import('@portcullis/recipients'),
    import('./burst-stats.js'),
  ]);
  const ownSpool = !args.spool;
  const spoolDir = args.spool ?? mkdtempSync(path.join(os.tmpdir(), 'portcullis-bench-spool-'));
  const config = parseConfig(rawConfig(args, spoolDir, { enabled: metricsOn(), port: 0 }));
  const stats = args.stats ? new BurstStats() : undefined;
  const relay = await Relay.create({
    config,
    builtins: { 'relay-policy': relayPolicy, attachments, clamav, rspamd, recipients },
    ...(stats ? { onDataReply: (r: { ms: number; size: number; sessions: number }) => stats.record(r.ms, r.size, r.sessions) } : {}),
  });
  await relay.start();
  let scrapes = 0;
  const admin = relay.adminAddress();
  if (admin) {
    setInterval(() => {
      http.get({ host: admin.host, port: admin.port, path: '/metrics' }, (res) => {
        res.resume();
        res.on('end', () => scrapes++);
      }).on('error', () => undefined);
    }, scrapeMs).unref();
  }
    process.stderr.write(`relay-main: pid ${process.pid} listening on ${args.listen.host}:${relay.addresses()[0]?.port}, plugins ${args.plugins.join(',')}, upstream ${args.upstream}, spool ${spoolDir}\n`);

  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    // Bounded: a stuck delivery must not keep the process alive after the benchmark is done.
    setTimeout(() => process.exit(1), 10_000).unref();
    relay
      .stop()
      .catch((err: unknown) => process.stderr.write(`relay-main: stop failed after ${sig}: ${String(err)}\n`))
      .finally(() => {
        if (stats && args.stats) {
          const lines = stats.bursts().map((b) => JSON.stringify({ pid: process.pid, plugins: args.plugins.join(','), ...(args.label ? { config: args.label } : {}), ...b }) + '\n');
          if (lines.length) appendFileSync(args.stats, lines.join(''));
        }
        if (ownSpool) rmSync(spoolDir, { recursive: true, force: true });
        if (metricsOn()) process.stderr.write(`relay-main: metrics on, ${scrapes} scrapes of /metrics\n`);
        process.exit(0);
      });
  };
  if (stats) process.on('SIGUSR2', () => stats.cut());
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`relay-main: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
