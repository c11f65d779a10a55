import type { ReadinessReport } from '../ops/readiness.js';
import type { IpcChannel } from './ipc-channel.js';

type Workers = ReadonlyArray<{ index: number; channel: IpcChannel }>;

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
