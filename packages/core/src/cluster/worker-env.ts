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
