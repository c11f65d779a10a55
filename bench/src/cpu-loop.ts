/**
 * A quick, bounded, paired measurement of CPU per message: the floor (floor-relay.js) and the
 * Portcullis relay (relay-main.js), each driven by smtp-source into one smtp-sink with the same
 * message size and concurrency, in turns (floor, relay, floor, relay, ...), in one run. CPU is the
 * relay process's utime + stime from /proc, read before smtp-source starts and after the sink has
 * counted every message (so delivery is in it); the figure that holds on a shared machine is the
 * ratio to the floor of the same round. A relay that runs as several processes (`--relay-args
 * '--workers 2'`: relay-main → the `portcullis start` primary → its workers) is counted whole: the
 * CPU of every process in its tree, read from /proc per pid (a process's own stat counts its dead
 * children only), and `--per-process` prints each role's share (main, primary, worker).
 *
 *   node bench/dist/cpu-loop.js [--sizes 10240,102400] [--conc 10] [--n 1000] [--rounds 3]
 *       [--plugins relay-policy,attachments] [--relay-args '...'] [--base DIR] [--base-args '...']
 *       [--per-process] [--prof DIR]
 *
 * Loopback only, bounded: every smtp-source run and every wait has a deadline. `--prof DIR` runs the
 * relays with --cpu-prof into DIR/floor and DIR/relay (written when they stop). `--only relay`
 * (or floor) runs one of them. `--parallel`: in each round all relays are loaded at once (each by
 * its own smtp-source), so they share the same moment's load (msg/s then mean little). RELAY_NODE_FLAGS (environment) replaces the relay's Node flags
 * (default: those of the portcullis command). `--relay-args` / `--base-args`: extra relay-main
 * arguments for the relay / the base (`--base .` with other args pairs two settings of this checkout,
 * e.g. `--relay-args '--workers 2' --base . --base-args '--workers 1'`). With `--prof DIR` and
 * workers, each worker and the primary write their own profile into DIR/<name> (execArgv passes on).
 * `--compare-plugins 'A;B'` (e.g. 'relay-policy;relay-policy,recipients'): two relays of this checkout
 * in the same rounds, `relay` with plugins A and `relay2` with plugins B (replaces --plugins), and
 * the ratio relay2/relay: the cost of a plugin, paired.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RELAY_NODE_FLAGS } from './node-flags.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const sizes = opt('--sizes', '10240,102400').split(',').map(Number);
const conc = Number(opt('--conc', '10'));
const n = Number(opt('--n', '1000'));
const rounds = Number(opt('--rounds', '3'));
/** `A;B`: relay runs plugins A, relay2 plugins B (see the header). */
const comparePlugins = opt('--compare-plugins', '').split(';').filter(Boolean);
if (comparePlugins.length && comparePlugins.length !== 2) throw new Error(`--compare-plugins wants two plugin lists separated by ';', got ${comparePlugins.length}`);
const plugins = comparePlugins[0] ?? opt('--plugins', 'relay-policy,attachments');
const plugins2 = comparePlugins[1];
const prof = opt('--prof', '');
const only = opt('--only', 'floor,relay').split(',');
/** Another checkout (built) whose relay runs beside this one's, as `base`: a before/after pair in one run. */
const base = opt('--base', '');
/** Every relay's run at the same time (see runAll). */
const parallel = args.includes('--parallel');
const relayArgs = opt('--relay-args', '').split(' ').filter(Boolean);
const baseArgs = opt('--base-args', '').split(' ').filter(Boolean);
const perProcess = args.includes('--per-process');
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim() || 100);
const LOOP = '127.0.0.1';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, LOOP, () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}
function ownTicks(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0; // gone between the listing and the read
  }
}
/** `pid` and every descendant, each with its depth (0: the relay-main process). */
function tree(pid: number, depth = 0): Array<{ pid: number; depth: number }> {
  let kids: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) kids.push(...readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
  } catch {
    kids = [];
  }
  return [{ pid, depth }, ...kids.flatMap((k) => tree(k, depth + 1))];
}
/** CPU ticks of every process of a relay, by pid (a worker replaced mid-run would be missed: none is). */
function treeTicks(pid: number): Map<number, { depth: number; ticks: number }> {
  return new Map(tree(pid).map((p) => [p.pid, { depth: p.depth, ticks: ownTicks(p.pid) }]));
}
function cpuTicks(pid: number): number {
  let n = 0;
  for (const p of treeTicks(pid).values()) n += p.ticks;
  return n;
}
/** The CPU ms of each role between two snapshots: depth 0 main, 1 the primary (or nothing), 2+ the workers. */
function roles(a: Map<number, { depth: number; ticks: number }>, b: Map<number, { depth: number; ticks: number }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [pid, x] of b) {
    const role = x.depth === 0 ? 'main' : x.depth === 1 ? 'primary' : 'workers';
    out[role] = (out[role] ?? 0) + ((x.ticks - (a.get(pid)?.ticks ?? 0)) * 1000) / CLK_TCK;
  }
  return out;
}
async function waitPort(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: LOOP, port }, () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on ${port} after ${ms} ms`);
}

const children: ChildProcess[] = [];
function start(cmd: string, argv: string[], label: string): ChildProcess {
  const p = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_ENV: 'production' } });
  let err = '';
  p.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
  p.on('exit', (code, sig) => {
    if (!stopping) process.stderr.write(`cpu-loop: ${label} exited (${code ?? sig}): ${err}\n`);
  });
  children.push(p);
  return p;
}
let stopping = false;
async function stopAll(): Promise<void> {
  stopping = true;
  for (const c of children) if (c.exitCode === null && c.pid) c.kill('SIGTERM');
  const end = Date.now() + 12_000;
  while (children.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < end) await sleep(100);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/** smtp-sink -c writes "sess=N quit=N mesg=N\r" records; the last one holds the count. */
class SinkCount {
  private fd: number;
  constructor(file: string) {
    this.fd = openSync(file, 'r');
  }
  count(): number {
    const size = fstatSync(this.fd).size;
    const len = Math.min(size, 256);
    if (!len) return 0;
    const buf = Buffer.alloc(len);
    readSync(this.fd, buf, 0, len, size - len);
    const recs = buf.toString('latin1').split('\r');
    recs.pop();
    for (let i = recs.length - 1; i >= 0; i--) {
      const m = /^sess=.*mesg=(\d+)$/.exec(recs[i]!);
      if (m) return Number(m[1]);
    }
    return 0;
  }
  close(): void {
    closeSync(this.fd);
  }
}

/**
 * All relays at once, each with its own smtp-source (--parallel): they share the machine's load of
 * the moment, which on a shared machine moves more between sequential runs than a cut moves the CPU.
 */
async function runAll(targets: Array<{ port: number; pid: number }>, sink: SinkCount, size: number, count: number): Promise<Array<{ cpuMs: number; seconds: number; roles?: Record<string, number> }>> {
  const before = sink.count();
  const c0 = targets.map((t) => cpuTicks(t.pid));
  const t0 = performance.now();
  const ends: number[] = [];
  await Promise.all(targets.map(async (t, i) => {
    const src = spawn('/usr/sbin/smtp-source', ['-s', String(conc), '-m', String(count), '-l', String(size), '-f', 'bench@source.example', '-t', 'rcpt@hosted.example', '-N', '-M', 'client.example', `${LOOP}:${t.port}`], { stdio: 'ignore' });
    const killer = setTimeout(() => src.kill('SIGKILL'), 180_000);
    await new Promise((r) => src.on('exit', r));
    clearTimeout(killer);
    ends[i] = performance.now();
  }));
  const end = Date.now() + 60_000;
  while (sink.count() < before + count * targets.length && Date.now() < end) await sleep(20);
  await sleep(150);
  const got = sink.count() - before;
  if (got < count * targets.length) throw new Error(`the sink counted ${got} of ${count * targets.length}`);
  return targets.map((t, i) => ({ cpuMs: ((cpuTicks(t.pid) - c0[i]!) * 1000) / CLK_TCK, seconds: (ends[i]! - t0) / 1000 }));
}

async function run(port: number, pid: number, sink: SinkCount, size: number, count: number): Promise<{ cpuMs: number; seconds: number; roles: Record<string, number> }> {
  const before = sink.count();
  const t0s = treeTicks(pid);
  const t0 = performance.now();
  const src = spawn('/usr/sbin/smtp-source', ['-s', String(conc), '-m', String(count), '-l', String(size), '-f', 'bench@source.example', '-t', 'rcpt@hosted.example', '-N', '-M', 'client.example', `${LOOP}:${port}`], { stdio: 'ignore' });
  const killer = setTimeout(() => src.kill('SIGKILL'), 120_000);
  await new Promise((r) => src.on('exit', r));
  clearTimeout(killer);
  const end = Date.now() + 60_000;
  while (sink.count() < before + count && Date.now() < end) await sleep(20);
  const seconds = (performance.now() - t0) / 1000;
  // The last delivery's acknowledgement and the relay's bookkeeping after it.
  await sleep(150);
  const got = sink.count() - before;
  if (got < count) throw new Error(`the sink counted ${got} of ${count}`);
  const r = roles(t0s, treeTicks(pid));
  return { cpuMs: Object.values(r).reduce((a, b) => a + b, 0), seconds, roles: r };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'cpu-loop-'));
  const [sinkPort, floorPort, relayPort] = [await freePort(), await freePort(), await freePort()];
  const counters = path.join(work, 'sink.counters');
  const out = openSync(counters, 'w');
  const sinkArgs = ['-c', ...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), '-m', '1024', `${LOOP}:${sinkPort}`, '1024'];
  const sinkProc = spawn('/usr/sbin/smtp-sink', sinkArgs, { stdio: ['ignore', out, 'ignore'] });
  children.push(sinkProc);
  closeSync(out);
  await waitPort(sinkPort, 10_000);
  const sink = new SinkCount(counters);
  const relays: Array<{ name: string; port: number; proc: ChildProcess }> = [];
  if (only.includes('floor')) relays.push({ name: 'floor', port: floorPort, proc: start(process.execPath, [...(prof ? ['--cpu-prof', '--cpu-prof-dir', path.join(prof, 'floor')] : []), path.join(HERE, 'floor-relay.js'), '--listen', `${LOOP}:${floorPort}`, '--upstream', `${LOOP}:${sinkPort}`], 'floor') });
  const relayFlags = (name: string) => [...(process.env['RELAY_NODE_FLAGS'] ?? RELAY_NODE_FLAGS.join(' ')).split(' ').filter(Boolean), ...(prof ? ['--cpu-prof', '--cpu-prof-dir', path.join(prof, name)] : [])];
  if (base) {
    const basePort = await freePort();
    relays.push({ name: 'base', port: basePort, proc: start(process.execPath, [...relayFlags('base'), path.join(path.resolve(base), 'bench/dist/relay-main.js'), '--listen', `${LOOP}:${basePort}`, '--upstream', `${LOOP}:${sinkPort}`, '--plugins', plugins, ...baseArgs], 'base') });
  }
  if (only.includes('relay')) {
    relays.push({ name: 'relay', port: relayPort, proc: start(process.execPath, [...relayFlags('relay'), path.join(HERE, 'relay-main.js'), '--listen', `${LOOP}:${relayPort}`, '--upstream', `${LOOP}:${sinkPort}`, '--plugins', plugins, ...relayArgs], 'relay') });
    if (plugins2) {
      const port2 = await freePort();
      relays.push({ name: 'relay2', port: port2, proc: start(process.execPath, [...relayFlags('relay2'), path.join(HERE, 'relay-main.js'), '--listen', `${LOOP}:${port2}`, '--upstream', `${LOOP}:${sinkPort}`, '--plugins', plugins2, ...relayArgs], 'relay2') });
    }
  }
  for (const r of relays) await waitPort(r.port, 90_000);
  // CPU_LOOP_STRACE=DIR: `strace -c -f` attached to each process of each relay (syscall counts into DIR,
  // written when strace is interrupted at the end; the CPU figures then include strace's overhead).
  const straceDir = process.env['CPU_LOOP_STRACE'];
  // One strace per process of each relay's tree (-f follows only children forked after the attach):
  // DIR/<relay>-<role>-<pid>.strace, so the primary's syscalls and each worker's are apart.
  const roleName = (d: number) => (d === 0 ? 'main' : d === 1 ? 'primary' : 'worker');
  const tracers = straceDir ? relays.flatMap((r) => tree(r.proc.pid!).map((p) => spawn('strace', ['-c', '-f', '-o', path.join(straceDir, `${r.name}-${roleName(p.depth)}-${p.pid}.strace`), '-p', String(p.pid)], { stdio: 'ignore' }))) : [];
  if (tracers.length) await sleep(1000);
  process.stdout.write(`# cpu-loop: ${n} messages per run, ${conc} connections, plugins ${plugins}${plugins2 ? ` (relay2: ${plugins2})` : ''}, CPU = utime+stime of every process of the relay (its process tree) from smtp-source's start to the last message at the sink\n`);
  const others = relays.slice(1).map((r) => r.name);
  // The last ratio, when there is one, is of the last two relays: relay/base, or relay2/relay.
  // (With two relays only, the first ratio is that pair already.)
  const pairName = relays.length < 3 ? '' : plugins2 && only.includes('relay') ? 'relay2/relay' : base && only.includes('relay') ? 'relay/base' : '';
  const ratioNames = [...others.map((o) => `${o}/${relays[0]!.name}`), ...(pairName ? [pairName] : [])];
  process.stdout.write(`size\tround\t${relays.map((r) => `${r.name}_ms/msg\t${r.name}_msg/s`).join('\t')}\t${ratioNames.join('\t')}\n`);
  const summary: string[] = [];
  for (const size of sizes) {
    // Warm-up: JIT, pools, the spool's first segment.
    for (const r of relays) await run(r.port, r.proc.pid!, sink, size, Math.min(300, n));
    const per: Record<string, number[]> = {};
    const ratios: number[][] = ratioNames.map(() => []);
    for (let round = 1; round <= rounds; round++) {
      const cells: string[] = [];
      const ms: number[] = [];
      // Every other round in the reverse order, so a drift of the machine's load favours no one.
      const results = new Map<string, { cpuMs: number; seconds: number; roles?: Record<string, number> }>();
      if (parallel) (await runAll(relays.map((r) => ({ port: r.port, pid: r.proc.pid! })), sink, size, n)).forEach((x, i) => results.set(relays[i]!.name, x));
      else for (const r of round % 2 ? relays : [...relays].reverse()) results.set(r.name, await run(r.port, r.proc.pid!, sink, size, n));
      for (const r of relays) {
        const { cpuMs, seconds } = results.get(r.name)!;
        (per[r.name] ??= []).push(cpuMs / n);
        ms.push(cpuMs / n);
        cells.push((cpuMs / n).toFixed(3), (n / seconds).toFixed(0));
      }
      const rs = [...ms.slice(1).map((m) => m / ms[0]!), ...(ratioNames.length > others.length ? [ms[ms.length - 1]! / ms[ms.length - 2]!] : [])];
      rs.forEach((r, i) => ratios[i]!.push(r));
      process.stdout.write(`${size}\t${round}\t${cells.join('\t')}\t${rs.map((r) => r.toFixed(3)).join('\t')}\n`);
      if (perProcess) for (const r of relays) { const ro = results.get(r.name)!.roles; if (ro && Object.keys(ro).length > 1) process.stdout.write(`#   ${r.name} ms/msg by role: ${Object.entries(ro).map(([k, v]) => `${k} ${(v / n).toFixed(3)}`).join(', ')}\n`); }
    }
    summary.push(`${size}\tmedian\t${relays.map((r) => `${median(per[r.name]!).toFixed(3)}\t`).join('\t')}\t${ratios.map((r) => median(r).toFixed(3)).join('\t')}`);
  }
  for (const s of summary) process.stdout.write(s + '\n');
  for (const t of tracers) t.kill('SIGINT');
  await Promise.all(tracers.map((t) => new Promise((r) => (t.exitCode !== null ? r(null) : t.on('exit', r)))));
  sink.close();
  await stopAll();
  rmSync(work, { recursive: true, force: true });
}

process.on('SIGINT', () => void stopAll().then(() => process.exit(130)));
main().catch(async (err: unknown) => {
  process.stderr.write(`cpu-loop: ${err instanceof Error ? err.message : String(err)}\n`);
  await stopAll();
  process.exit(1);
});
