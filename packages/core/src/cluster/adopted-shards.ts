import type { Logger } from 'pino';
import type { RelayConfig } from '../config/schema.js';
import type { RelayMetrics } from '../telemetry/metrics.js';
import type { PluginDriver } from '../plugins/driver.js';
import { Spool } from '../spool/spool.js';
import { SpoolLock } from '../spool/spool-lock.js';
import { DeliveryQueue } from '../delivery/queue.js';
import { queueRequest } from '../ops/control-server.js';
import type { QueueTarget } from './fan-out.js';
import { shardDir } from './shards.js';

interface Adopted {
  readonly shard: number;
  readonly lock: SpoolLock;
  readonly spool: Spool;
  readonly queue: DeliveryQueue;
}

/**
 * Shards no worker owns (see shards.ts), delivered by the worker that adopted them: each under its
 * own spool lock (so no two processes ever deliver one shard), recovered by the spool's own crash
 * recovery, delivered with the adopter's plugins (routes), and listed by the queue commands. Nothing
 * new is written into an adopted shard except the state of its own messages (and their bounces);
 * once empty it stays an empty folder, which adopts nothing next time.
 */
export class AdoptedShards {
  private readonly shards: Adopted[] = [];
  private follow?: NodeJS.Timeout;

  private constructor(private readonly log: Logger) {}

  /**
   * `current`: the adopter's running plugins and config. A reload replaces them (SIGHUP in a
   * single-process relay reaches only the relay), and the old plugins are closed once unused, so
   * the adopted queues follow: checked every second, swapped like the relay's own queue.
   */
  static async open(spoolRoot: string, indexes: readonly number[], config: RelayConfig, driver: PluginDriver, log: Logger, metrics?: RelayMetrics, current?: () => { driver: PluginDriver; config: RelayConfig }): Promise<AdoptedShards> {
    const a = new AdoptedShards(log);
    if (current && indexes.length) {
      let last = driver;
      a.follow = setInterval(() => {
        const now = current();
        if (now.driver !== last) a.setDriver((last = now.driver), now.config);
      }, 1000);
      a.follow.unref();
    }
    try {
      for (const shard of indexes) {
        const dir = shardDir(spoolRoot, shard);
        const lock = await SpoolLock.acquire(dir, `adopted shard ${shard} (pid ${process.pid})`, log);
        const spool = new Spool(dir, { inlineMax: config.spool.inlineMax, segmentSize: config.spool.segmentSize });
        const queue = new DeliveryQueue(spool, driver, { hostname: config.hostname, ...config.delivery }, log.child({ part: 'delivery', shard }));
        queue.metrics = metrics;
        try {
          await spool.init();
          await queue.start();
        } catch (err) {
          await lock.release();
          throw err;
        }
        a.shards.push({ shard, lock, spool, queue });
        log.info({ shard, dir, messages: queue.stats().messages }, 'adopted a spool shard no worker owns: delivering what it holds');
      }
    } catch (err) {
      await a.close();
      throw err;
    }
    return a;
  }

  get count(): number {
    return this.shards.length;
  }

  /** A reload: attempts from now on route with the new plugins (as the worker's own queue does). */
  setDriver(driver: PluginDriver, config: RelayConfig): void {
    for (const s of this.shards) s.queue.setDriver(driver, { hostname: config.hostname, ...config.delivery });
  }

  targets(): QueueTarget[] {
    return this.shards.map((s) => ({ shard: s.shard, answer: async (req) => (await queueRequest(s.queue, req)) ?? { ok: false, error: `${req.cmd} is not a queue command` } }));
  }

  stats(): Array<ReturnType<DeliveryQueue['stats']> & { shard: number }> {
    return this.shards.map((s) => ({ shard: s.shard, ...s.queue.stats() }));
  }

  /** Deliveries in progress finish (bounded by the caller), then each shard is unlocked. */
  async close(): Promise<void> {
    if (this.follow) clearInterval(this.follow);
    for (const s of this.shards.splice(0)) {
      await s.queue.stop().catch((err: unknown) => this.log.warn({ err, shard: s.shard }, 'stopping an adopted shard failed'));
      await s.spool.close().catch(() => undefined);
      await s.lock.release();
    }
  }
}
