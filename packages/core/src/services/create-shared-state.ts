import type { Logger } from 'pino';
import { IpcState, type StateTransport } from './ipc-state.js';
import { RedisState, type RedisStateOptions } from './redis-state.js';
import { MemoryState, type SharedState } from './shared-state.js';

/**
 * The store a process uses (`Tokens.SharedState`):
 *   - Redis configured: Redis, as on a single process; in a worker its local twin (the outage
 *     fallback, and the concurrency slots) is the primary's store, so both stay one per machine;
 *   - else in a worker (a `cluster` transport to the primary is given): the primary's store over IPC;
 *   - else this process's memory.
 */
export function createSharedState(config: { redis?: RedisStateOptions | undefined }, log: Logger, cluster?: StateTransport): SharedState {
  const stateLog = log.child({ part: 'shared-state' });
  const local = cluster ? new IpcState(cluster, stateLog) : new MemoryState();
  return config.redis ? new RedisState(config.redis, stateLog, local) : local;
}
