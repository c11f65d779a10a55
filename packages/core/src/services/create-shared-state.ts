import type { Logger } from 'pino';
import { IpcState, type StateTransport } from './ipc-state.js';
import type { RedisStateOptions } from './redis-state.js';
import { MemoryState, type SharedState } from './shared-state.js';

/**
 * The store a process uses (`Tokens.SharedState`):
 *   - Redis configured: Redis, as on a single process; in a worker its local twin (the outage
 *     fallback, and the concurrency slots) is the primary's store, so both stay one per machine;
 *   - else in a worker (a `cluster` transport to the primary is given): the primary's store over IPC;
 *   - else this process's memory.
 *
 * ioredis is imported only when Redis is configured: every worker and every single-process relay
 * without Redis would carry it for nothing (measured on Node 20, importing `@portcullis/core` and
 * `/internal`, 4 runs each: 96–102 MB resident and 17.7 MB of heap with it, 92–94 MB and 16.8 MB
 * without).
 */
export async function createSharedState(config: { redis?: RedisStateOptions | undefined }, log: Logger, cluster?: StateTransport): Promise<SharedState> {
  const stateLog = log.child({ part: 'shared-state' });
  const local = cluster ? new IpcState(cluster, stateLog) : new MemoryState();
  if (!config.redis) return local;
  const { RedisState } = await import('./redis-state.js');
  return new RedisState(config.redis, stateLog, local);
}
