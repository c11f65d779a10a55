/**
 * How node:cluster spreads connections over workers: round-robin in the primary (SCHED_RR, the
 * default on Linux) against the kernel's (SCHED_NONE: every worker accepts on the shared socket).
 * `portcullis start` with `workers: 2`, relay-policy to a counting sink, smtp-source as the client
 * (one message per connection). Prints msg/s, CPU ms per message of all relay processes, and how
 * many messages each worker took. Usage: node dist/workers-balance.js [messages] [sessions] [rounds] [log level]
 */
import { execFileSync, fork, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitForPort } from '@portcullis/testkit';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, '../../packages/cli/dist/main.js');
const [messages, sessions, rounds] = [Number(process.argv[2] ?? 2000), Number(process.argv[3] ?? 20), Number(process.argv[4] ?? 2)];
// info: one line per transaction, so the split per worker can be counted; warn: the cost without those lines.
const level = process.argv[5] ?? 'info';
const TICK = 100; // clock ticks per second (getconf CLK_TCK on Linux)

const cpuMs = (pid: number) => {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / TICK;
  } catch {
    return 0;
  }
};
const children = (pid: number) => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);

const sinkPort = await freePort();
const sink = fork(path.join(here, 'sink.js'), [`127.0.0.1:${sinkPort}`], { stdio: 'ignore' });
let delivered = 0;
sink.on('message', (m) => (delivered = typeof m === 'number' ? m : Number((m as { count?: number }).count ?? delivered)));
await waitForPort(sinkPort);

const results: Array<Record<string, string | number>> = [];
for (let r = 0; r < rounds; r++) {
  for (const sched of ['rr', 'none']) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pc-balance-'));
    const port = await freePort();
    const file = path.join(dir, 'relay.json');
    writeFileSync(file, JSON.stringify({ hostname: 'relay.bench', workers: 2, listen: [{ host: '127.0.0.1', port, greetingDelay: 0 }], spool: { dir: path.join(dir, 'spool') }, limits: { connectionsPerIp: 1000 }, log: { level }, plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: `127.0.0.1:${sinkPort}`, tls: 'none' } } } }] }));
    const logFile = path.join(dir, 'relay.log');
    const out = (await import('node:fs')).openSync(logFile, 'a');
    const relay = spawn(process.execPath, [CLI, 'start', '--config', file], { stdio: ['ignore', out, out], env: { ...process.env, PORTCULLIS_CLUSTER_SCHED: sched } });
    await waitForPort(port, '127.0.0.1', 60_000);
    for (let i = 0; i < 600 && !readFileSync(logFile, 'utf8').includes('every worker is listening'); i++) await new Promise((res) => setTimeout(res, 100));
    const pids = [relay.pid!, ...children(relay.pid!)];
    const cpu0 = pids.reduce((n, p) => n + cpuMs(p), 0);
    const primary0 = cpuMs(relay.pid!);
    const before = delivered;
    const t0 = performance.now();
    execFileSync('smtp-source', ['-s', String(sessions), '-m', String(messages), '-l', '10240', '-f', 'load@client.test', '-t', 'sink@example.com', `127.0.0.1:${port}`], { stdio: 'ignore' });
    const wall = performance.now() - t0;
    for (let i = 0; i < 600 && delivered - before < messages; i++) await new Promise((res) => setTimeout(res, 50));
    const cpu = pids.reduce((n, p) => n + cpuMs(p), 0) - cpu0;
    const perWorker = new Map<number, number>();
    for (const l of readFileSync(logFile, 'utf8').split('\n')) {
      if (!l.includes('"verdict":"accepted"')) continue;
      const w = Number(/"worker":(\d+)/.exec(l)?.[1]);
      perWorker.set(w, (perWorker.get(w) ?? 0) + 1);
    }
    const primaryCpu = cpuMs(relay.pid!) - primary0;
    relay.kill('SIGTERM');
    await new Promise((res) => relay.once('exit', res));
    rmSync(dir, { recursive: true, force: true });
    const shares = [...perWorker.entries()].sort((a, b) => a[0] - b[0]).map(([, n]) => n);
    results.push({ sched, msgPerSec: Math.round((messages / wall) * 1000), cpuMsPerMsg: +(cpu / messages).toFixed(2), primaryCpuMsPerMsg: +(primaryCpu / messages).toFixed(2), perWorker: shares.join(' / '), imbalance: +(Math.max(...shares) / Math.max(1, Math.min(...shares))).toFixed(2) });
    console.log(JSON.stringify(results.at(-1)));
  }
}
sink.kill();
console.table(results);
