// One worker process of the cluster harness (test/support/cluster-harness.ts): a full relay on the
// port the primary shares, counting its shared state in the primary over the IPC channel, and
// answering the primary's metrics and readiness requests. Config: PORTCULLIS_WORKER_CONFIG (JSON).
import cluster from 'node:cluster';
import path from 'node:path';
import { accept, createLogger, definePlugin, parseConfig, Relay } from '@portcullis/core';
import { answerMetrics, answerReadiness, IpcChannel } from '@portcullis/core/internal';
import limits from '@portcullis/limits';

const acceptAll = definePlugin({ name: 'accept-all', setup: () => ({ rcpt: () => accept() }) });
const input = JSON.parse(process.env['PORTCULLIS_WORKER_CONFIG'] ?? '{}') as Record<string, unknown> & { spool: { dir: string } };
const id = cluster.worker?.id ?? 0;
const channel = new IpcChannel(process as unknown as ConstructorParameters<typeof IpcChannel>[0], { timeoutMs: 2000 });
const config = parseConfig({ ...input, spool: { ...input.spool, dir: path.join(input.spool.dir, `w${id}`) } });
const level = process.env['PORTCULLIS_TEST_LOG'];
// PORTCULLIS_WORKER_LOCAL_STATE=1: each worker counts alone (the comparison in support/gate-ipc-cost.ts).
const local = process.env['PORTCULLIS_WORKER_LOCAL_STATE'] === '1';
const relay = await Relay.create({ config, builtins: { limits, 'accept-all': acceptAll }, logger: createLogger(level || 'silent', level ? 2 : undefined), deliver: false, ...(local ? {} : { stateTransport: channel }) });
answerMetrics(channel, () => relay.metrics.registry);
answerReadiness(channel, () => relay.readiness());
// A worker's own readiness can be made to fail (the aggregation test).
let failing = false;
channel.handle('test.fail-readiness', (v) => {
  failing = Boolean(v);
  return failing;
});
const readiness = relay.readiness.bind(relay);
relay.readiness = async () => {
  const r = await readiness();
  return failing ? { ready: false, checks: [...r.checks, { name: 'test', ready: false, detail: 'made to fail by the test', ms: 0 }] } : r;
};
// n sequential acquire + release pairs on the relay's own store: the cost of one slot round trip.
channel.handle('test.slot-loop', async (n) => {
  const slots = relay.sharedState.slots('bench:loop', 1_000_000);
  const t0 = performance.now();
  for (let i = 0; i < Number(n); i++) (await slots.acquire('k'))?.release();
  return performance.now() - t0;
});
channel.handle('test.cpu', () => {
  const u = process.cpuUsage();
  return u.user + u.system;
});
await relay.start();
let stopping = false;
process.on('disconnect', () => {
  if (stopping) return;
  stopping = true;
  void relay.stop().finally(() => process.exit(0));
});
channel.notify('worker.ready', { id, pid: process.pid });
