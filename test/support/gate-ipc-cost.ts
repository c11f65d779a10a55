// What counting connections in the primary costs: two node:cluster workers on one port, with the
// connection gate's slots held by the primary over IPC ("ipc") and with each worker counting alone
// ("local", what N workers would do without the primary: N × the limit). Prints connections/s for
// each, in alternating rounds of the same run, and the round trip of one slot acquire + release.
// Run: cd test && npx tsx support/gate-ipc-cost.ts [connections per round, default 3000] [rounds, default 2]
import net from 'node:net';
import { freePort } from '@portcullis/testkit';
import { ClusterHarness } from './cluster-harness.js';

const PER_ROUND = Number(process.argv[2] ?? 3000);
const ROUNDS = Number(process.argv[3] ?? 2);
const CONCURRENCY = 20;
const DEADLINE_MS = 120_000;

function config(port: number, withLimits: boolean): Record<string, unknown> {
  return {
    hostname: 'relay.test',
    listen: [{ host: '127.0.0.1', port, greetingDelay: 0 }],
    limits: { connectionsPerIp: 50, connections: 2000 },
    admin: { enabled: false },
    plugins: withLimits ? [{ use: 'limits', with: { reservedConnections: 10, perIp: { connections: 20, connectionRate: false, messageRate: false, recipientRate: false, nullSenderRate: false }, perSender: { messageRate: false, recipientRate: false }, perUser: { messageRate: false, recipientRate: false } } }] : [],
  };
}

/** One connection: connect, read the greeting, QUIT, wait for the close. */
function oneConnection(port: number, localAddress: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    let buf = '';
    const t = setTimeout(() => s.destroy(), 10_000);
    s.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.startsWith('220 ') && buf.endsWith('\r\n') && !buf.includes('221')) s.write('QUIT\r\n');
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(t);
      resolve(buf.startsWith('220 '));
    });
  });
}

async function load(port: number, n: number): Promise<{ perSecond: number; ok: number }> {
  let next = 0;
  let ok = 0;
  const t0 = performance.now();
  const stopAt = Date.now() + DEADLINE_MS;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      while (next < n && Date.now() < stopAt) {
        const i = next++;
        if (await oneConnection(port, `127.0.1.${(i % 50) + 1}`)) ok++;
        void w;
      }
    }),
  );
  return { perSecond: (next / (performance.now() - t0)) * 1000, ok };
}

/** CPU µs used so far by the workers and by this process (the primary and the load generator). */
async function cpu(h: ClusterHarness): Promise<number> {
  const workers = await Promise.all(h.links().map((w) => w.channel.request<number>('test.cpu')));
  const u = process.cpuUsage();
  return workers.reduce((a, b) => a + b, 0) + u.user + u.system;
}

async function measure(mode: 'ipc' | 'local', withLimits: boolean): Promise<{ perSecond: number; ok: number; slotUs: number; cpuUs: number; slotCpuUs: number }> {
  const port = await freePort();
  const h = await ClusterHarness.start(config(port, withLimits), 2, mode === 'local' ? { PORTCULLIS_WORKER_LOCAL_STATE: '1' } : {});
  try {
    await load(port, 200); // warm-up
    const c0 = await cpu(h);
    const r = await load(port, PER_ROUND);
    const cpuUs = ((await cpu(h)) - c0) / PER_ROUND;
    const c1 = await cpu(h);
    const ms = await h.links()[0]!.channel.request<number>('test.slot-loop', 5000, 30_000);
    const slotCpuUs = ((await cpu(h)) - c1) / 5000;
    return { ...r, slotUs: (ms * 1000) / 5000, cpuUs, slotCpuUs };
  } finally {
    await h.stop();
  }
}

for (const withLimits of [false, true]) {
  const rows: Record<string, number[]> = { ipc: [], local: [] };
  const slot: Record<string, number[]> = { ipc: [], local: [] };
  const cpuUs: Record<string, number[]> = { ipc: [], local: [] };
  const slotCpu: Record<string, number[]> = { ipc: [], local: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of ['local', 'ipc'] as const) {
      const r = await measure(mode, withLimits);
      if (r.ok < PER_ROUND * 0.99) console.log(`  (${mode}: only ${r.ok} of ${PER_ROUND} connections greeted)`);
      rows[mode]!.push(r.perSecond);
      slot[mode]!.push(r.slotUs);
      cpuUs[mode]!.push(r.cpuUs);
      slotCpu[mode]!.push(r.slotCpuUs);
    }
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  const fmt = (a: number[]) => a.map((x) => x.toFixed(0)).join(' / ');
  console.log(`${withLimits ? 'core check + @portcullis/limits (3 slots per connection)' : 'core connectionsPerIp only (1 slot per connection)'}:`);
  console.log(`  connections/s, 2 workers, slots per worker (local): ${fmt(rows['local']!)}`);
  console.log(`  connections/s, 2 workers, slots in the primary (ipc): ${fmt(rows['ipc']!)}   ratio ipc/local ${(med(rows['ipc']!) / med(rows['local']!)).toFixed(2)}`);
  console.log(`  CPU µs per connection, all processes (workers, primary, load generator): local ${fmt(cpuUs['local']!)}, ipc ${fmt(cpuUs['ipc']!)}   difference ${(med(cpuUs['ipc']!) - med(cpuUs['local']!)).toFixed(0)} µs`);
  const f1 = (a: number[]) => a.map((x) => x.toFixed(1)).join(' / ');
  console.log(`  one slot acquire + release (5,000 in a row in one worker): wall µs local ${f1(slot['local']!)}, ipc ${f1(slot['ipc']!)}; CPU µs (worker + primary) local ${f1(slotCpu['local']!)}, ipc ${f1(slotCpu['ipc']!)}`);
}
process.exit(0);
