import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { MemoryState, seconds, toResult, type ConcurrencySlots, type SharedCounter, type SharedState, type SharedStateStatus } from './shared-state.js';

export interface RedisStateOptions {
  /** `redis://host:port/db` */
  readonly url: string;
  /** Prefix of every key this relay writes. */
  readonly keyPrefix: string;
  /** Longest a Redis command may take before the node answers locally. */
  readonly timeoutMs: number;
}

/**
 * Redis through ioredis, counters through rate-limiter-flexible's RateLimiterRedis (atomic
 * INCRBY + expiry in one Lua script). Every operation has a local twin used while Redis is down:
 * this process's memory, or in a worker process the cluster primary's (`local`), so that an outage
 * still leaves one count per machine. Concurrency slots are always the local twin's (see `slots`).
 */
export class RedisState implements SharedState {
  readonly store = 'redis' as const;
  readonly client: Redis;
  private fallbacks = 0;
  private outage = false;

  constructor(private readonly opts: RedisStateOptions, private readonly log: Logger, private readonly local: SharedState = new MemoryState()) {
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

  slots(name: string, limit: number): ConcurrencySlots {
    return this.local.slots(name, limit);
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
    return { store: 'redis', connected: this.ready, fallbacks: this.fallbacks + this.local.status().fallbacks };
  }

  async close(): Promise<void> {
    this.closing = true;
    this.client.disconnect();
    await this.local.close();
  }
}
