import { withTimeout } from '../plugins/timeout.js';

export type { Readiness } from '../api/plugin.js';
import type { Readiness } from '../api/plugin.js';

/** One named check: the core's own (listeners, spool, disk) and one per plugin that has `ready`. */
export interface ReadinessCheck {
  readonly name: string;
  check(): Readiness | boolean | Promise<Readiness | boolean>;
}

export interface ReadinessReport {
  readonly ready: boolean;
  readonly checks: ReadonlyArray<{ name: string; ready: boolean; detail?: string; ms: number }>;
}

/**
 * Runs every check at once, each bounded by `timeoutMs` (a check that hangs counts as not ready:
 * a readiness probe must answer, and fast). A check that throws is not ready, with its message.
 */
export async function runReadiness(checks: readonly ReadinessCheck[], timeoutMs = 2_000): Promise<ReadinessReport> {
  const results = await Promise.all(
    checks.map(async (c) => {
      const t0 = performance.now();
      try {
        const r = await withTimeout(Promise.resolve().then(() => c.check()), timeoutMs, () => new Error(`no answer within ${timeoutMs} ms`));
        const v = typeof r === 'boolean' ? { ready: r } : r;
        return { name: c.name, ready: !!v.ready, ...(v.detail ? { detail: v.detail } : {}), ms: Math.round(performance.now() - t0) };
      } catch (err) {
        return { name: c.name, ready: false, detail: (err as Error).message, ms: Math.round(performance.now() - t0) };
      }
    }),
  );
  return { ready: results.every((r) => r.ready), checks: results };
}
