import { AggregatorRegistry, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { ReadinessReport } from '../ops/readiness.js';
import type { IpcChannel } from './ipc-channel.js';

type Live = () => ReadonlyArray<{ index: number; channel: IpcChannel }>;
type Workers = ReadonlyArray<{ index: number; channel: IpcChannel }>;

/**
 * `/metrics` of the primary: every live worker's registry (as JSON, over IPC) summed by
 * prom-client's own cluster aggregator (`AggregatorRegistry.aggregate`: counters and histograms add
 * up, each metric's `aggregator` setting decides gauges), so message totals are totals of the relay.
 */
export function clusterMetrics(live: Live): Pick<Registry, 'contentType' | 'metrics'> {
  return {
    contentType: Registry.PROMETHEUS_CONTENT_TYPE,
    async metrics() {
      const parts = await Promise.all(live().map((w) => w.channel.request<Array<MetricObjectWithValues<MetricValue<string>>>>('metrics', undefined, 5_000)));
      return AggregatorRegistry.aggregate(parts).metrics();
    },
  };
}

/** `/readyz`: every configured worker running, and each one's own checks (listeners, spool, disk, plugins), named by worker. */
export async function clusterReadiness(configured: number, workers: Workers, stopping: boolean): Promise<ReadinessReport> {
  const own = { name: 'workers', ready: !stopping && workers.length === configured, detail: stopping ? 'stopping' : `${workers.length} of ${configured} running`, ms: 0 };
  const reports = await Promise.all(
    workers.map(async (w) => {
      const t0 = performance.now();
      try {
        const r = await w.channel.request<ReadinessReport>('readiness', undefined, 5_000);
        return r.checks.map((c) => ({ ...c, name: `worker ${w.index}: ${c.name}` }));
      } catch (err) {
        return [{ name: `worker ${w.index}`, ready: false, detail: `no answer: ${(err as Error).message}`, ms: Math.round(performance.now() - t0) }];
      }
    }),
  );
  const checks = [own, ...reports.flat()];
  return { ready: checks.every((c) => c.ready), checks };
}

interface WorkerStatus {
  worker: number;
  pid: number;
  sessions: number;
  queue: { messages: number; due: number; deferred: number; held: number; sending: number; bytes: number; oldestAgeSeconds: number };
  adopted: Array<{ shard: number; messages: number; due: number; deferred: number; held: number; sending: number; bytes: number }>;
  [k: string]: unknown;
}

/** `portcullis status` with workers: the relay's totals (queue, sessions) and one line per worker. */
export async function clusterStatus(configured: number, workers: Workers, o: { configFile: string; logFile: string; admin?: { host: string; port: number }; readiness: () => Promise<ReadinessReport> }): Promise<Record<string, unknown>> {
  const each = (await Promise.all(workers.map((w) => w.channel.request<WorkerStatus>('status', undefined, 15_000).catch(() => undefined)))).filter((s): s is WorkerStatus => !!s);
  const first = each[0];
  const sum = (k: 'messages' | 'due' | 'deferred' | 'held' | 'sending' | 'bytes') => each.reduce((n, s) => n + s.queue[k] + s.adopted.reduce((m, a) => m + a[k], 0), 0);
  return {
    pid: process.pid,
    uptimeSeconds: Math.round(process.uptime()),
    versions: first?.['versions'],
    configFile: o.configFile,
    listeners: first?.['listeners'] ?? [],
    admin: o.admin,
    plugins: first?.['plugins'] ?? [],
    readiness: await o.readiness(),
    sharedState: first?.['sharedState'],
    queue: { messages: sum('messages'), due: sum('due'), deferred: sum('deferred'), held: sum('held'), sending: sum('sending'), bytes: sum('bytes'), oldestAgeSeconds: Math.max(0, ...each.map((s) => s.queue.oldestAgeSeconds)) },
    diskFreeBytes: first?.['diskFreeBytes'] ?? { spool: null },
    log: { file: o.logFile },
    sessions: each.reduce((n, s) => n + s.sessions, 0),
    workers: { configured, running: workers.length, each: each.map((s) => ({ worker: s.worker, pid: s.pid, sessions: s.sessions, queue: s.queue, adopted: s.adopted })) },
  };
}
