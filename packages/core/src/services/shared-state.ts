import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';

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

export interface SharedStateStatus {
  readonly store: 'memory' | 'redis';
  /** Redis answering right now (always true for the memory store). */
  readonly connected: boolean;
  /** Operations answered locally because Redis failed, since start. */
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
  readonly store: 'memory' | 'redis';
  /** A counter named `name` (the key namespace); the same name and window on every node share counts. */
  counter(name: string, limit: number, windowMs: number): SharedCounter;
  /** A cached value, or undefined when missing or expired. */
  get(key: string): Promise<string | undefined>;
  /** Caches `value` under `key` for `ttlMs`. */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  status(): SharedStateStatus;
  close(): Promise<void>;
}

export interface RedisStateOptions {
  /** `redis://host:port/db` */
  readonly url: string;
  /** Prefix of every key this relay writes. */
  readonly keyPrefix: string;
  /** Longest a Redis command may take before the node answers locally. */
  readonly timeoutMs: number;
}

/** rate-limiter-flexible counts in whole seconds; shorter windows round up to one second. */
const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

const toResult = (r: RateLimiterRes, limit: number, shared: boolean, allowed: boolean): CounterResult => ({
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

/** In-process state: the default, and what a node uses alone. */
export class MemoryState implements SharedState {
  readonly store = 'memory' as const;
  private readonly cache = new ExpiringCache();
  counter(name: string, limit: number, windowMs: number): SharedCounter {
    return new MemoryCounter(name, limit, windowMs);
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

/**
 * Redis through ioredis, counters through rate-limiter-flexible's RateLimiterRedis (atomic
 * INCRBY + expiry in one Lua script). Every operation has a local twin used while Redis is down.
 */
export class RedisState implements SharedState {
  readonly store = 'redis' as const;
  readonly client: Redis;
  private readonly local = new MemoryState();
  private fallbacks = 0;
  private outage = false;

  constructor(private readonly opts: RedisStateOptions, private readonly log: Logger) {
    this.client = new Redis(opts.url, {
      keyPrefix: opts.keyPrefix,
      // Fail at once while disconnected (the local twin answers) instead of queueing commands,
      // which would stall SMTP replies for the whole outage.
      enableOfflineQueue: false,
      commandTimeout: opts.timeoutMs,
      connectTimeout: Math.max(opts.timeoutMs, 1000),
      maxRetriesPerRequest: 0,
      // Reconnect forever, at most every 2 s: sharing resumes by itself when Redis returns.
      retryStrategy: (times) => Math.min(times * 100, 2000),
      lazyConnect: false,
    });
    this.client.on('error', () => undefined); // reported through `degraded` and 'ready' below
    this.client.on('ready', () => {
      if (this.outage) this.log.warn({ redis: this.redacted(), fallbacks: this.fallbacks }, 'Redis reachable again: shared state resumes');
      else this.log.info({ redis: this.redacted() }, 'Redis connected: state shared across nodes');
      this.outage = false;
    });
    this.client.on('close', () => {
      if (!this.closing) this.degraded(new Error('connection closed'));
    });
  }
  private closing = false;

  private redacted(): string {
    return this.opts.url.replace(/\/\/[^@/]*@/, '//***@');
  }

  private get ready(): boolean {
    return this.client.status === 'ready';
  }

  /** Counts a local answer; logs once per outage, not once per operation (a flood would fill the disk). */
  private degraded(err: unknown): void {
    this.fallbacks++;
    if (this.outage) return;
    this.outage = true;
    this.log.error({ err, redis: this.redacted() }, 'Redis unreachable: this node enforces its own local limits until it returns');
  }

  counter(name: string, limit: number, windowMs: number): SharedCounter {
    const shared = new RateLimiterRedis({ storeClient: this.client, keyPrefix: `rl:${name}`, points: limit, duration: seconds(windowMs), rejectIfRedisNotReady: true });
    const local = this.local.counter(name, limit, windowMs);
    return {
      consume: async (key, points = 1) => {
        if (this.ready) {
          try {
            return toResult(await shared.consume(key, points), limit, true, true);
          } catch (res) {
            if (res instanceof RateLimiterRes) return toResult(res, limit, true, false);
            this.degraded(res);
          }
        } else this.degraded(new Error(`Redis ${this.client.status}`));
        return local.consume(key, points);
      },
      peek: async (key) => {
        if (this.ready) {
          try {
            return (await shared.get(key))?.consumedPoints ?? 0;
          } catch (err) {
            this.degraded(err);
          }
        } else this.degraded(new Error(`Redis ${this.client.status}`));
        return local.peek(key);
      },
    };
  }

  async get(key: string): Promise<string | undefined> {
    if (this.ready) {
      try {
        return (await this.client.get(`kv:${key}`)) ?? undefined;
      } catch (err) {
        this.degraded(err);
      }
    } else this.degraded(new Error(`Redis ${this.client.status}`));
    return this.local.get(key);
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    // The local copy is kept too: it answers during an outage.
    await this.local.set(key, value, ttlMs);
    if (!this.ready) return this.degraded(new Error(`Redis ${this.client.status}`));
    try {
      await this.client.set(`kv:${key}`, value, 'PX', Math.max(1, Math.round(ttlMs)));
    } catch (err) {
      this.degraded(err);
    }
  }

  status(): SharedStateStatus {
    return { store: 'redis', connected: this.ready, fallbacks: this.fallbacks };
  }

  async close(): Promise<void> {
    this.closing = true;
    this.client.disconnect();
  }
}

/** The store the config asks for: Redis when `sharedState.redis` is set, else memory. */
export function createSharedState(config: { redis?: RedisStateOptions | undefined }, log: Logger): SharedState {
  return config.redis ? new RedisState(config.redis, log.child({ part: 'shared-state' })) : new MemoryState();
}
