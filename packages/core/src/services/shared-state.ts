import type { Logger } from 'pino';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';

/** What one `consume` decided. */
export interface CounterResult {
  /** True while the window's count stays within the limit. */
  readonly allowed: boolean;
  /** Points consumed in the current window, this call included. */
  readonly count: number;
  readonly limit: number;
  /** Milliseconds until the window resets. */
  readonly retryAfterMs: number;
  /** True when the count came from the shared store (Redis), false when it was local. */
  readonly shared: boolean;
}

/**
 * A fixed-window counter: at most `limit` points per `windowMs` per key. Increments are atomic in
 * every store (one Lua script in Redis), so two nodes never both take the last point.
 */
export interface SharedCounter {
  /** Adds `points` (default 1) to `key` and says whether the limit still holds. */
  consume(key: string, points?: number): Promise<CounterResult>;
  /** Points consumed by `key` in its current window (0 when none). */
  peek(key: string): Promise<number>;
}

/** A held concurrency slot: give it back once (later calls do nothing). */
export interface SlotLease {
  release(): void;
  /** True when the slot is counted across worker processes (held by the primary), false when only here. */
  readonly shared: boolean;
}

/**
 * At most `limit` leases per key at once (simultaneous connections per address, say). `acquire`
 * answers synchronously where the count is in this process (one process: the connection gate's fast
 * path) and with a promise where it is held elsewhere (the primary, for workers).
 */
export interface ConcurrencySlots {
  readonly name: string;
  readonly limit: number;
  /** A lease, or undefined when `limit` leases for `key` are out. */
  acquire(key: string): SlotLease | undefined | Promise<SlotLease | undefined>;
  /** Leases out for `key` right now, in the store that counts them. */
  held(key: string): number | Promise<number>;
}

/** Slots counted in this process: they answer synchronously. */
export interface LocalSlots extends ConcurrencySlots {
  acquire(key: string): SlotLease | undefined;
  held(key: string): number;
}

/** Where a store keeps its state: this process, Redis, or the cluster primary (worker processes without Redis). */
export type StoreKind = 'memory' | 'redis' | 'cluster';

export interface SharedStateStatus {
  readonly store: StoreKind;
  /** Redis answering right now (always true for the memory store). */
  readonly connected: boolean;
  /** Operations answered locally because Redis (or the cluster primary) failed, since start. */
  readonly fallbacks: number;
}

/**
 * State that every relay node shares when Redis is configured (rate counters, the AUTH failure
 * throttle, the DNSBL cache), and that stays in this process otherwise. Resolve it with
 * `Tokens.SharedState`. Redis never holds message bodies.
 *
 * When Redis is unreachable, every operation falls back to this node's own memory (logged once per
 * outage, counted in `status().fallbacks`): limits stay enforced per node, never lifted and never
 * turned into refusals. When Redis answers again, shared counting resumes.
 */
export interface SharedState {
  readonly store: StoreKind;
  /** A counter named `name` (the key namespace); the same name and window on every node share counts. */
  counter(name: string, limit: number, windowMs: number): SharedCounter;
  /**
   * Concurrency slots named `name`: the same name shares one count per key (a reload's new gate
   * goes on counting the connections the old one admitted). Counted per machine: in this process,
   * or in the cluster primary for all its workers (a worker that exits gives back its leases). Never
   * in Redis: a slot there would outlive a node that crashed while holding it.
   */
  slots(name: string, limit: number): ConcurrencySlots;
  /** A cached value, or undefined when missing or expired. */
  get(key: string): Promise<string | undefined>;
  /** Caches `value` under `key` for `ttlMs`. */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  status(): SharedStateStatus;
  close(): Promise<void>;
}

// The Redis store is in redis-state.ts: ioredis is loaded only by what may use it (not the worker
// mode's primary, which holds the memory store for its workers: cluster/state-host.ts).

/** rate-limiter-flexible counts in whole seconds; shorter windows round up to one second. */
export const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

export const toResult = (r: RateLimiterRes, limit: number, shared: boolean, allowed: boolean): CounterResult => ({
  allowed,
  count: r.consumedPoints,
  limit,
  retryAfterMs: r.msBeforeNext,
  shared,
});

/** A bounded map with per-entry expiry: the memory store's cache and the Redis store's fallback cache. */
class ExpiringCache {
  private readonly map = new Map<string, { value: string; until: number }>();
  constructor(private readonly maxEntries = 100_000) {}
  get(key: string): string | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (e.until <= Date.now()) {
      this.map.delete(key);
      return undefined;
    }
    return e.value;
  }
  set(key: string, value: string, ttlMs: number): void {
    this.map.delete(key);
    this.map.set(key, { value, until: Date.now() + ttlMs });
    // Oldest first: Map keeps insertion order, so the first key is the least recently set.
    while (this.map.size > this.maxEntries) this.map.delete(this.map.keys().next().value!);
  }
}

class MemoryCounter implements SharedCounter {
  private readonly limiter: RateLimiterMemory;
  constructor(name: string, private readonly limit: number, windowMs: number) {
    this.limiter = new RateLimiterMemory({ keyPrefix: name, points: limit, duration: seconds(windowMs) });
  }
  async consume(key: string, points = 1): Promise<CounterResult> {
    try {
      return toResult(await this.limiter.consume(key, points), this.limit, false, true);
    } catch (res) {
      if (res instanceof RateLimiterRes) return toResult(res, this.limit, false, false);
      throw res;
    }
  }
  async peek(key: string): Promise<number> {
    return (await this.limiter.get(key))?.consumedPoints ?? 0;
  }
}

/** Slot counts by name, then key; a key with no lease out is deleted (no growth with address churn). */
class SlotTable {
  private readonly counts = new Map<string, Map<string, number>>();
  slots(name: string, limit: number): LocalSlots {
    let byKey = this.counts.get(name);
    if (!byKey) this.counts.set(name, (byKey = new Map()));
    const table = byKey;
    return {
      name,
      limit,
      acquire(key) {
        const n = table.get(key) ?? 0;
        if (n >= limit) return undefined;
        table.set(key, n + 1);
        let held = true;
        return {
          shared: false,
          release() {
            if (!held) return;
            held = false;
            const left = (table.get(key) ?? 1) - 1;
            if (left <= 0) table.delete(key);
            else table.set(key, left);
          },
        };
      },
      held: (key) => table.get(key) ?? 0,
    };
  }
}

/** In-process state: the default, and what a node uses alone. */
export class MemoryState implements SharedState {
  readonly store = 'memory' as const;
  private readonly cache = new ExpiringCache();
  private readonly slotTable = new SlotTable();
  counter(name: string, limit: number, windowMs: number): SharedCounter {
    return new MemoryCounter(name, limit, windowMs);
  }
  slots(name: string, limit: number): LocalSlots {
    return this.slotTable.slots(name, limit);
  }
  async get(key: string): Promise<string | undefined> {
    return this.cache.get(key);
  }
  async set(key: string, value: string, ttlMs: number): Promise<void> {
    this.cache.set(key, value, ttlMs);
  }
  status(): SharedStateStatus {
    return { store: 'memory', connected: true, fallbacks: 0 };
  }
  async close(): Promise<void> {}
}
