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
 * BENCH_METRICS=on turns the admin listener (and so metrics recording) on, on a free loopback
 * port, and scrapes /metrics from this process every BENCH_SCRAPE_MS (default 15 s, Prometheus's
 * default interval; one scrape costs about 7 ms of CPU), to compare throughput with metrics on and off.
 */
import http from 'node:http';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig, Relay } from '@portcullis/core';
import relayPolicy from '@portcullis/relay-policy';
import attachments from '@portcullis/attachments';
import clamav from '@portcullis/clamav';
import rspamd from '@portcullis/rspamd';
import recipients from '@portcullis/recipients';
import { BurstStats } from './burst-stats.js';

function usage(msg: string): never {
  process.stderr.write(`relay-main: ${msg}\nusage: relay-main --listen 127.0.0.1:PORT --upstream HOST:PORT [--spool DIR] [--plugins relay-policy,attachments,clamav,rspamd,recipients] [--clamd HOST:PORT] [--rspamd HOST:PORT] [--stats FILE] [--max-size SIZE]\n`);
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
    else usage(`unknown or incomplete argument ${JSON.stringify(a)}`);
  }
  if (!listen || !upstream) usage('--listen and --upstream are required');
  const m = /^(\[[0-9a-fA-F:.]+\]|[^\s:]+):(\d{1,5})$/.exec(listen);
  if (!m) usage(`--listen: expected HOST:PORT, got ${JSON.stringify(listen)}`);
  const names = plugins.split(',').map((p) => p.trim()).filter(Boolean);
  for (const n of names) if (!(KNOWN_PLUGINS as readonly string[]).includes(n)) usage(`--plugins: unknown plugin ${JSON.stringify(n)} (known: ${KNOWN_PLUGINS.join(', ')})`);
  if (!names.includes('relay-policy')) names.unshift('relay-policy');
  return { listen: { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) }, upstream, spool, plugins: names as BenchPlugin[], clamd, rspamd, stats, maxSize };
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

const metricsOn = process.env['BENCH_METRICS'] === 'on';
/** How often /metrics is scraped with metrics on (BENCH_SCRAPE_MS): Prometheus's default 15 s. */
const scrapeMs = Number(process.env['BENCH_SCRAPE_MS'] ?? 15_000);

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const ownSpool = !args.spool;
  const spoolDir = args.spool ?? mkdtempSync(path.join(os.tmpdir(), 'portcullis-bench-spool-'));
  const config = parseConfig({
    hostname: 'relay.bench.example',
    listen: [{ host: args.listen.host, port: args.listen.port, greetingDelay: 0 }],
    limits: { connectionsPerIp: 1000, ...(args.maxSize ? { messageSize: args.maxSize } : {}) },
    spool: { dir: spoolDir },
    log: { level: 'warn' },
    admin: { enabled: metricsOn, port: 0 },
    plugins: pluginEntries(args),
  });
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
          const lines = stats.bursts().map((b) => JSON.stringify({ pid: process.pid, plugins: args.plugins.join(','), ...b }) + '\n');
          if (lines.length) appendFileSync(args.stats, lines.join(''));
        }
        if (ownSpool) rmSync(spoolDir, { recursive: true, force: true });
        if (metricsOn) process.stderr.write(`relay-main: metrics on, ${scrapes} scrapes of /metrics\n`);
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
