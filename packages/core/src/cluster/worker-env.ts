/**
 * The environment the primary sets on each worker it forks: the worker's shard index and the orphan
 * shards it adopts. Apart from worker-side.ts so that the primary (which imports only what it runs:
 * see primary-entry.ts) reads them without loading the worker's spool and delivery parts.
 */
export const WORKER_ENV = 'PORTCULLIS_WORKER';
export const ADOPT_ENV = 'PORTCULLIS_ADOPT';

/** This process's worker index when the primary forked it, else undefined. */
export function workerIndexFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env[WORKER_ENV];
  return v && /^[1-9]\d*$/.test(v) ? Number(v) : undefined;
}

export function adoptedFromEnv(env: NodeJS.ProcessEnv = process.env): number[] {
  return (env[ADOPT_ENV] ?? '').split(',').filter((s) => /^\d+$/.test(s)).map(Number);
}

/**
 * The listeners whose connections the primary accepts and hands to this worker (handoff.ts), as
 * `index=port` pairs (the port the primary bound: a listener may ask for port 0). The worker opens
 * no socket for them; every other listener it opens as before (node:cluster shares it).
 */
export const HANDOFF_ENV = 'PORTCULLIS_HANDOFF';

export function handedFromEnv(env: NodeJS.ProcessEnv = process.env): Map<number, number> {
  const out = new Map<number, number>();
  for (const pair of (env[HANDOFF_ENV] ?? '').split(',')) {
    const m = /^(\d+)=(\d+)$/.exec(pair);
    if (m) out.set(Number(m[1]), Number(m[2]));
  }
  return out;
}

/** The message a handed socket comes with: its listener (index in `listen`) and the slot's token (0: refused, over the limit). */
export interface HandoffMessage {
  readonly portcullisHandoff: 1;
  readonly listener: number;
  readonly token: number;
}

export const isHandoff = (m: unknown): m is HandoffMessage => typeof m === 'object' && m !== null && (m as { portcullisHandoff?: unknown }).portcullisHandoff === 1;
