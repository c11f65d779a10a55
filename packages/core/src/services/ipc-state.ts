import type { Logger } from 'pino';
import { MemoryState, type ConcurrencySlots, type CounterResult, type SharedCounter, type SharedState, type SharedStateStatus, type SlotLease } from './shared-state.js';

/**
 * What a worker process needs of its pipe to the primary: requests with an answer and a timeout,
 * and fire-and-forget notices. `cluster/ipc-channel.ts`'s IpcChannel is one; it is injected (the
 * layers below `cluster/` never import it).
 */
export interface StateTransport {
  request<T = unknown>(type: string, payload?: unknown, timeoutMs?: number): Promise<T>;
  notify(type: string, payload?: unknown): void;
}

/** The message types between IpcState (worker) and ClusterStateHost (primary), and their payloads. */
export const StateMessages = {
  consume: 'state.consume', // { name, limit, windowMs, key, points } → CounterResult
  peek: 'state.peek', // { name, limit, windowMs, key } → number
  get: 'state.get', // { key } → string | null
  set: 'state.set', // { key, value, ttlMs } → true
  acquire: 'state.acquire', // { name, limit, key, token, releases? } → boolean (the lease is `token`; `releases` are freed first)
  release: 'state.release', // notice: { tokens: number[] } (the releases of one event-loop turn together, unless an acquire took them)
  held: 'state.held', // { name, limit, key } → number
} as const;

export interface IpcStateOptions {
  /** Longest the primary may take to answer before this worker answers from its own memory. */
  readonly timeoutMs?: number;
}

/**
 * Slot releases for the primary, batched per event-loop turn: the turn's tokens go as one
 * `state.release` notice at its end (`setImmediate`), unless a message sent before then took them
 * (`take`). The worker's own leases (IpcState) and the slots the primary granted with a handed
 * connection (cluster/worker-side.ts) each have one.
 */
export class ReleaseBatch {
  private tokens: number[] = [];

  constructor(private readonly send: (tokens: number[]) => void) {}

  add(token: number): void {
    this.tokens.push(token);
    if (this.tokens.length > 1) return;
    setImmediate(() => {
      const tokens = this.take();
      if (tokens) this.send(tokens);
    });
  }

  /** The queued tokens, for a message that carries them (and so no longer queued). */
  take(): number[] | undefined {
    if (!this.tokens.length) return undefined;
    const tokens = this.tokens;
    this.tokens = [];
    return tokens;
  }
}

/**
 * Shared state for a worker process when no Redis is configured: the primary holds one memory
 * store for every worker (ClusterStateHost) and answers over IPC, so a limit of N per address is N
 * across all workers, not N × workers.
 *
 * The fallback rule is the Redis store's: when the primary does not answer in time (or the pipe is
 * gone), the worker answers from its own memory, counts it in `status().fallbacks`, logs once per
 * outage, and never refuses a client because of it. A slot acquired locally that way is released
 * locally; a late grant from the primary for the same request is given back by a release notice
 * for its token (tokens make that release a no-op when the primary had refused).
 */
export class IpcState implements SharedState {
  readonly store = 'cluster' as const;
  private readonly local = new MemoryState();
  private readonly timeoutMs: number;
  private fallbacks = 0;
  private outage = false;
  private nextToken = 1;
  /**
   * Release notices waiting for the end of this event-loop turn (a closing connection gives back up
   * to three slots at once), or riding on an acquire sent before then (under load a connection closes
   * and the next one is admitted in the same turn: one message to the primary instead of two, and the
   * slots are freed before that acquire is counted, never later than the notice would have freed them).
   */
  private readonly releases = new ReleaseBatch((tokens) => this.transport.notify(StateMessages.release, { tokens }));

  constructor(private readonly transport: StateTransport, private readonly log: Logger, opts: IpcStateOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 1000;
  }

  private ask<T>(type: string, payload: unknown): Promise<T> {
    return this.transport.request<T>(type, payload, this.timeoutMs).then((v) => {
      if (this.outage) {
        this.outage = false;
        this.log.warn({ fallbacks: this.fallbacks }, 'cluster primary answering again: state shared across workers resumes');
      }
      return v;
    });
  }

  private degraded(err: unknown): void {
    this.fallbacks++;
    if (this.outage) return;
    this.outage = true;
    this.log.error({ err }, 'cluster primary not answering: this worker enforces its own local limits until it does');
  }

  counter(name: string, limit: number, windowMs: number): SharedCounter {
    const local = this.local.counter(name, limit, windowMs);
    return {
      consume: async (key, points = 1) => {
        try {
          return await this.ask<CounterResult>(StateMessages.consume, { name, limit, windowMs, key, points });
        } catch (err) {
          this.degraded(err);
          return local.consume(key, points);
        }
      },
      peek: async (key) => {
        try {
          return await this.ask<number>(StateMessages.peek, { name, limit, windowMs, key });
        } catch (err) {
          this.degraded(err);
          return local.peek(key);
        }
      },
    };
  }

  slots(name: string, limit: number): ConcurrencySlots {
    const local = this.local.slots(name, limit);
    return {
      name,
      limit,
      acquire: async (key) => {
        const token = this.nextToken++;
        const releases = this.releases.take();
        let granted: boolean;
        try {
          granted = await this.ask<boolean>(StateMessages.acquire, releases ? { name, limit, key, token, releases } : { name, limit, key, token });
        } catch (err) {
          this.degraded(err);
          // A grant that arrives after the timeout must not hold a slot for ever; and the releases
          // this request carried go again as a notice (a release the primary already applied is a no-op).
          for (const t of releases ?? []) this.releases.add(t);
          this.releases.add(token);
          return local.acquire(key);
        }
        if (!granted) return undefined;
        let held = true;
        const lease: SlotLease = {
          shared: true,
          release: () => {
            if (!held) return;
            held = false;
            this.releases.add(token);
          },
        };
        return lease;
      },
      held: async (key) => {
        try {
          return await this.ask<number>(StateMessages.held, { name, limit, key });
        } catch (err) {
          this.degraded(err);
          return local.held(key);
        }
      },
    };
  }

  async get(key: string): Promise<string | undefined> {
    try {
      return (await this.ask<string | null>(StateMessages.get, { key })) ?? undefined;
    } catch (err) {
      this.degraded(err);
      return this.local.get(key);
    }
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    // The local copy answers while the primary does not (as the Redis store's does).
    await this.local.set(key, value, ttlMs);
    try {
      await this.ask(StateMessages.set, { key, value, ttlMs });
    } catch (err) {
      this.degraded(err);
    }
  }

  status(): SharedStateStatus {
    return { store: 'cluster', connected: !this.outage, fallbacks: this.fallbacks };
  }

  async close(): Promise<void> {}
}
