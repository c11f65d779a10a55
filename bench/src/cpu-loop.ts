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
 *
 * When the sink counts fewer messages than a run sent, the run stops with an error naming the relay
 * (floor, base, relay, relay2), the size and the round (or the warm-up), smtp-source's exit and its
 * stderr lines (its errors), and, once the relays are stopped, each relay's own count of accepted
 * messages where it has one: the floor prints it on exit; relay-main writes it to its `--stats FILE`
 * when that is among `--relay-args` / `--base-args`; with its last log lines (warn and above).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync } from 'node:fs';
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
/** The last 4,000 characters a relay wrote to stdout (its log lines at warn and above; the floor's count on exit). */
const stdoutTail = new Map<ChildProcess, string>();
/** Resolves when a relay's output has been read to its end (after it exits). */
const closed = new Map<ChildProcess, Promise<void>>();
function start(cmd: string, argv: string[], label: string): ChildProcess {
  const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: 'production' } });
  let err = '';
  p.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
  stdoutTail.set(p, '');
  p.stdout!.on('data', (d: Buffer) => stdoutTail.set(p, (stdoutTail.get(p)! + d.toString()).slice(-4000)));
  closed.set(p, new Promise((r) => p.on('close', () => r())));
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

/** One smtp-source run: how it ended and its stderr lines (its errors and warnings: the first 40, then a count). */
interface SourceRun {
  readonly exit: string;
  readonly lines: string[];
  readonly more: number;
}
const SOURCE_LINES = 40;

/** `count` messages of `size` bytes over `conc` connections to `port`; SIGKILL after `killAfterMs`. */
async function smtpSource(port: number, size: number, count: number, killAfterMs: number): Promise<SourceRun> {
  const src = spawn('/usr/sbin/smtp-source', ['-s', String(conc), '-m', String(count), '-l', String(size), '-f', 'bench@source.example', '-t', 'rcpt@hosted.example', '-N', '-M', 'client.example', `${LOOP}:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines: string[] = [];
  let more = 0;
  let partial = '';
  const keep = (l: string) => (lines.length < SOURCE_LINES ? lines.push(l) : more++);
  src.stderr!.setEncoding('utf8');
  src.stderr!.on('data', (d: string) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop()!;
    for (const l of parts) if (l.trim()) keep(l);
  });
  let killed = false;
  const killer = setTimeout(() => ((killed = true), src.kill('SIGKILL')), killAfterMs);
  const exit = await new Promise<string>((resolve) => {
    src.on('error', (err) => resolve(`could not run: ${err.message}`));
    src.on('close', (code, sig) => resolve(killed ? `killed after ${killAfterMs / 1000} s` : sig ? `ended by ${sig}` : `exit ${code}`));
  });
  clearTimeout(killer);
  if (partial.trim()) keep(partial);
  return { exit, lines, more };
}

/** What the sink, smtp-source and the relays sent or counted, for the error of a short count. */
const offered = new Map<string, number>();
const sinkCounted = new Map<string, number>();

/** The error of a run whose messages did not all reach the sink: who, where, and what smtp-source said. */
function shortCount(who: string, got: number, want: number, sources: Array<{ name: string; run: SourceRun }>): Error {
  const said = sources.map(({ name, run }) => `  smtp-source to ${name}: ${run.exit}${run.lines.length ? `, stderr:\n${run.lines.map((l) => `    ${l}`).join('\n')}${run.more ? `\n    (${run.more} more lines)` : ''}` : ', nothing on stderr'}`);
  return new Error(`the sink counted ${got} of ${want} for ${who}\n${said.join('\n')}`);
}

/**
 * All relays at once, each with its own smtp-source (--parallel): they share the machine's load of
 * the moment, which on a shared machine moves more between sequential runs than a cut moves the CPU.
 */
async function runAll(targets: Array<{ name: string; port: number; pid: number }>, sink: SinkCount, size: number, count: number, what: string): Promise<Array<{ cpuMs: number; seconds: number; roles?: Record<string, number> }>> {
  const before = sink.count();
  const c0 = targets.map((t) => cpuTicks(t.pid));
  const t0 = performance.now();
  const ends: number[] = [];
  const sources: SourceRun[] = [];
  await Promise.all(targets.map(async (t, i) => {
    offered.set(t.name, (offered.get(t.name) ?? 0) + count);
    sources[i] = await smtpSource(t.port, size, count, 180_000);
    ends[i] = performance.now();
  }));
  const end = Date.now() + 60_000;
  while (sink.count() < before + count * targets.length && Date.now() < end) await sleep(20);
  await sleep(150);
  const got = sink.count() - before;
  // One sink for all: a short count cannot be put on one relay here.
  if (got < count * targets.length) throw shortCount(`${targets.map((t) => t.name).join(' + ')} together (--parallel), ${what}`, got, count * targets.length, targets.map((t, i) => ({ name: t.name, run: sources[i]! })));
  return targets.map((t, i) => ({ cpuMs: ((cpuTicks(t.pid) - c0[i]!) * 1000) / CLK_TCK, seconds: (ends[i]! - t0) / 1000 }));
}

async function run(name: string, port: number, pid: number, sink: SinkCount, size: number, count: number, what: string): Promise<{ cpuMs: number; seconds: number; roles: Record<string, number> }> {
  const before = sink.count();
  const t0s = treeTicks(pid);
  const t0 = performance.now();
  offered.set(name, (offered.get(name) ?? 0) + count);
  const source = await smtpSource(port, size, count, 120_000);
  const end = Date.now() + 60_000;
  while (sink.count() < before + count && Date.now() < end) await sleep(20);
  const seconds = (performance.now() - t0) / 1000;
  // The last delivery's acknowledgement and the relay's bookkeeping after it.
  await sleep(150);
  const got = sink.count() - before;
  sinkCounted.set(name, (sinkCounted.get(name) ?? 0) + got);
  if (got < count) throw shortCount(`${name}, ${what}`, got, count, [{ name, run: source }]);
  const r = roles(t0s, treeTicks(pid));
  return { cpuMs: Object.values(r).reduce((a, b) => a + b, 0), seconds, roles: r };
}

/** A relay (or the floor) of this run: node with `argv`, listening on `port`. */
function spawnRelay(name: string, port: number, argv: string[]): { name: string; port: number; proc: ChildProcess; argv: string[] } {
  return { name, port, argv, proc: start(process.execPath, argv, name) };
}

/** The relays of this run (for the report of a short count). */
const started: Array<{ name: string; port: number; proc: ChildProcess; argv: string[] }> = [];

/**
 * Each relay's own count of the messages it accepted (250 to DATA) in its life, where it keeps one,
 * beside what smtp-source offered it and the sink counted for it; read after the relays stopped
 * (the floor prints its count on exit, relay-main writes its --stats lines on exit).
 */
async function relayCounts(): Promise<string> {
  const out: string[] = [];
  for (const r of started) {
    await Promise.race([closed.get(r.proc), sleep(5_000)]);
    const tail = stdoutTail.get(r.proc) ?? '';
    const statsAt = r.argv.indexOf('--stats');
    const statsFile = statsAt >= 0 ? r.argv[statsAt + 1] : undefined;
    let own = 'not available (relay-main keeps it only with --stats FILE in --relay-args / --base-args)';
    if (r.name === 'floor') {
      const line = tail.split('\n').reverse().find((l) => l.startsWith('{"messages"'));
      own = line ? `${(JSON.parse(line) as { messages: number }).messages} accepted (250, its exit line)` : 'not printed (did it exit on SIGTERM?)';
    } else if (statsFile && existsSync(statsFile)) {
      const lines = readFileSync(statsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { pid?: number; messages?: number });
      // With workers relay-main writes one line from the primary's metrics; else one per burst (summed).
      const mine = lines.filter((l) => l.pid === r.proc.pid);
      own = mine.length ? `${mine.reduce((a, l) => a + (l.messages ?? 0), 0)} answered at the end of DATA, accepted or refused (its --stats lines count both)` : `no line of pid ${r.proc.pid} in ${statsFile}`;
    }
    // The first line of the tail may be cut: dropped when there are others; each line at most 300 characters.
    const logLines = r.name === 'floor' ? [] : tail.trim().split('\n').filter(Boolean);
    const logs = logLines.length ? `\n    its last log lines:\n${logLines.slice(logLines.length > 1 ? 1 : 0).slice(-5).map((l) => `      ${l.slice(0, 300)}`).join('\n')}` : '';
    out.push(`  ${r.name}: offered ${offered.get(r.name) ?? 0} by smtp-source, ${sinkCounted.get(r.name) ?? 0} counted at the sink${parallel ? ' in its warm-ups (the --parallel rounds are counted for all relays together)' : ''}; its own count: ${own}${logs}`);
  }
  return out.join('\n');
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
  const relays = started;
  if (only.includes('floor')) relays.push(spawnRelay('floor', floorPort, [...(prof ? ['--cpu-prof', '--cpu-prof-dir', path.join(prof, 'floor')] : []), path.join(HERE, 'floor-relay.js'), '--listen', `${LOOP}:${floorPort}`, '--upstream', `${LOOP}:${sinkPort}`]));
  const relayFlags = (name: string) => [...(process.env['RELAY_NODE_FLAGS'] ?? RELAY_NODE_FLAGS.join(' ')).split(' ').filter(Boolean), ...(prof ? ['--cpu-prof', '--cpu-prof-dir', path.join(prof, name)] : [])];
  if (base) {
    const basePort = await freePort();
    relays.push(spawnRelay('base', basePort, [...relayFlags('base'), path.join(path.resolve(base), 'bench/dist/relay-main.js'), '--listen', `${LOOP}:${basePort}`, '--upstream', `${LOOP}:${sinkPort}`, '--plugins', plugins, ...baseArgs]));
  }
  if (only.includes('relay')) {
    relays.push(spawnRelay('relay', relayPort, [...relayFlags('relay'), path.join(HERE, 'relay-main.js'), '--listen', `${LOOP}:${relayPort}`, '--upstream', `${LOOP}:${sinkPort}`, '--plugins', plugins, ...relayArgs]));
    if (plugins2) {
      const port2 = await freePort();
      relays.push(spawnRelay('relay2', port2, [...relayFlags('relay2'), path.join(HERE, 'relay-main.js'), '--listen', `${LOOP}:${port2}`, '--upstream', `${LOOP}:${sinkPort}`, '--plugins', plugins2, ...relayArgs]));
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
    for (const r of relays) await run(r.name, r.port, r.proc.pid!, sink, size, Math.min(300, n), `size ${size}, warm-up`);
    const per: Record<string, number[]> = {};
    const ratios: number[][] = ratioNames.map(() => []);
    for (let round = 1; round <= rounds; round++) {
      const cells: string[] = [];
      const ms: number[] = [];
      // Every other round in the reverse order, so a drift of the machine's load favours no one.
      const results = new Map<string, { cpuMs: number; seconds: number; roles?: Record<string, number> }>();
      const what = `size ${size}, round ${round}`;
      if (parallel) (await runAll(relays.map((r) => ({ name: r.name, port: r.port, pid: r.proc.pid! })), sink, size, n, what)).forEach((x, i) => results.set(relays[i]!.name, x));
      else for (const r of round % 2 ? relays : [...relays].reverse()) results.set(r.name, await run(r.name, r.port, r.proc.pid!, sink, size, n, what));
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
  if (err instanceof Error && err.message.startsWith('the sink counted')) process.stderr.write(`cpu-loop: after the relays stopped:\n${await relayCounts()}\n`);
  process.exit(1);
});
