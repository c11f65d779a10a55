import type { ReadinessReport } from '../ops/readiness.js';
import type { IpcChannel } from './ipc-channel.js';
import type { WorkerLink } from './metrics-aggregate.js';

/** The message a worker answers with its own readiness report. */
export const READINESS_GET = 'readiness.get';

/** Worker side: answers the primary's `readiness.get` with the worker's own report (Relay#readiness). */
export function answerReadiness(channel: Pick<IpcChannel, 'handle'>, readiness: () => Promise<ReadinessReport>): void {
  channel.handle(READINESS_GET, () => readiness());
}

export interface ClusterReadinessOptions {
  readonly workers: () => readonly WorkerLink[];
  /** How many workers should be running (`workers: N`); fewer alive is not ready. */
  readonly expected: () => number;
  /** Longest one worker may take; past it that worker counts as not ready. */
  readonly timeoutMs?: number;
  /** The primary's own checks (e.g. "listeners bound"), run beside the workers'. */
  readonly own?: () => Promise<ReadinessReport>;
}

/**
 * `/readyz` for all workers (the primary's admin server serves it): asks every worker at once and
 * is ready only when every worker is, enough of them are running, and the primary's own checks
 * pass. Each worker's checks are listed under its name (`worker 2: spool`), so a 503 names the
 * worker and the check that failed; a worker that does not answer in time is `worker 2` with
 * "no answer within N ms".
 */
export async function clusterReadiness(opts: ClusterReadinessOptions): Promise<ReadinessReport> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const workers = opts.workers();
  const checks: Array<ReadinessReport['checks'][number]> = [];
  const expected = opts.expected();
  checks.push({ name: 'workers', ready: workers.length >= expected, ...(workers.length < expected ? { detail: `${workers.length} of ${expected} workers running` } : {}), ms: 0 });
  const [own, ...answers] = await Promise.all([
    opts.own?.(),
    ...workers.map(async (w) => {
      const t0 = performance.now();
      try {
        return { w, report: await w.channel.request<ReadinessReport>(READINESS_GET, undefined, timeoutMs) };
      } catch (err) {
        return { w, error: (err as Error).message.replace(/^IPC request \S+ got /, ''), ms: Math.round(performance.now() - t0) };
      }
    }),
  ]);
  if (own) checks.push(...own.checks);
  for (const a of answers as Array<{ w: WorkerLink; report?: ReadinessReport; error?: string; ms?: number }>) {
    const name = `worker ${a.w.id}`;
    if (!a.report) {
      checks.push({ name, ready: false, detail: a.error ?? 'no answer', ms: a.ms ?? timeoutMs });
      continue;
    }
    for (const c of a.report.checks) checks.push({ ...c, name: `${name}: ${c.name}` });
    if (!a.report.checks.length) checks.push({ name, ready: a.report.ready, ms: 0 });
  }
  return { ready: checks.every((c) => c.ready), checks };
}
