/**
 * Work objects per message: how many promises, tick callbacks, timers, immediates, socket and file
 * requests (async resources, by type) and EventEmitters (by class) a relay process makes for each
 * message, counted, not timed (`count-preload.ts`). Starts an `smtp-sink` next hop and the relay
 * (this Node with `--import count-preload.js` and the arguments after `--`), sends `--warm`
 * messages with `smtp-source`, then `--n` more, and prints the difference of the counts taken
 * before and after those, per message. One process only (the floor, `relay-main`, `portcullis start`
 * with `workers: 1`): with workers the counts would be the primary's alone.
 *
 *   node bench/dist/work-count.js [--n 1000] [--warm 500] [--conc 10] [--size 10240] [--port 2711] [--sink 2719] -- RELAY ARGS...
 *   e.g. -- bench/dist/floor-relay.js --listen 127.0.0.1:2711 --upstream 127.0.0.1:2719
 *
 * Loopback only; bounded: at most 100,000 messages, the relay given 20 s to listen, each
 * smtp-source run 10 minutes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface Counts {
  readonly types: Record<string, number>;
  readonly emitters: Record<string, number>;
}

function opt(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 0 || v > 100_000) throw new Error(`${name}: expected a whole number up to 100000, got ${args[i + 1]}`);
  return v;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function listening(port: number, within: number): Promise<void> {
  const until = Date.now() + within;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${within} ms`);
    await sleep(200);
  }
}

function source(port: number, n: number, conc: number, size: number): void {
  const r = spawnSync('smtp-source', ['-s', String(conc), '-m', String(n), '-l', String(size), '-f', 'b@source.example', '-t', 'rcpt@hosted.example', '-N', '-M', 'client.example', `127.0.0.1:${port}`], { stdio: 'inherit', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`smtp-source failed (${r.status ?? r.signal ?? r.error?.message})`);
}

/** Asks the relay for its counts (SIGUSR2) and reads the file once it has been rewritten. */
async function dump(relay: number, file: string): Promise<Counts> {
  const before = existsSync(file) ? statSync(file).mtimeMs : 0;
  process.kill(relay, 'SIGUSR2');
  for (let i = 0; i < 50; i++) {
    await sleep(100);
    if (existsSync(file) && statSync(file).mtimeMs !== before) return JSON.parse(readFileSync(file, 'utf8')) as Counts;
  }
  throw new Error('the relay wrote no counts (was it started with the preload, and is it one process?)');
}

function perMessage(a: Record<string, number>, b: Record<string, number>, n: number): Array<[string, number]> {
  return Object.keys(b)
    .map((k): [string, number] => [k, ((b[k] ?? 0) - (a[k] ?? 0)) / n])
    .filter(([, v]) => v > 0.005)
    .sort((x, y) => y[1] - x[1]);
}

async function main(): Promise<void> {
  const all = process.argv.slice(2);
  const dash = all.indexOf('--');
  if (dash < 0 || dash === all.length - 1) throw new Error('usage: work-count.js [--n N] [--warm N] [--conc C] [--size BYTES] [--port P] [--sink P] -- RELAY ARGS...');
  const own = all.slice(0, dash);
  const n = opt(own, '--n', 1000), warm = opt(own, '--warm', 500), conc = opt(own, '--conc', 10), size = opt(own, '--size', 10240);
  const port = opt(own, '--port', 2711), sinkPort = opt(own, '--sink', 2719);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-work-count-'));
  const file = path.join(dir, 'counts.json');
  const sinkArgs = [...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), '-c', '-m', '1024', `127.0.0.1:${sinkPort}`, '1024'];
  const sink = spawn('smtp-sink', sinkArgs, { stdio: 'ignore' });
  const preload = path.join(path.dirname(fileURLToPath(import.meta.url)), 'count-preload.js');
  const relay = spawn(process.execPath, ['--import', preload, ...all.slice(dash + 1)], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, PORTCULLIS_COUNT_FILE: file } });
  try {
    await listening(port, 20_000);
    source(port, warm, conc, size);
    await sleep(1000);
    const a = await dump(relay.pid!, file);
    source(port, n, conc, size);
    await sleep(1000); // the last deliveries
    const b = await dump(relay.pid!, file);
    const show = (title: string, rows: Array<[string, number]>) => {
      const total = rows.reduce((s, [, v]) => s + v, 0);
      console.log(`${title}: ${total.toFixed(1)} per message`);
      for (const [k, v] of rows) console.log(`  ${v.toFixed(2).padStart(8)}  ${k}`);
    };
    console.log(`# ${n} messages of ${size} bytes at ${conc} connections, after ${warm}: ${all.slice(dash + 1).join(' ')}`);
    show('async resources (async_hooks init, by type)', perMessage(a.types, b.types, n));
    show('EventEmitters (by class)', perMessage(a.emitters, b.emitters, n));
  } finally {
    relay.kill('SIGTERM');
    sink.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`work-count: ${(err as Error).message}`);
  process.exit(1);
});
