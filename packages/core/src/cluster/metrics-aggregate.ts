import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import type { IpcChannel } from './ipc-channel.js';

/** The message a worker answers with its registry's metrics as JSON. */
export const METRICS_GET = 'metrics.get';

/** A metric as getMetricsAsJSON gives it (what crosses the IPC pipe: `collect` does not survive it). */
type MetricJson = Omit<MetricObjectWithValues<MetricValue<string>>, 'collect'>;

/** A worker as the primary's aggregators see it: an id for labels and messages, and its channel. */
export interface WorkerLink {
  readonly id: number | string;
  readonly channel: Pick<IpcChannel, 'request'>;
}

/** What the admin server's `/metrics` needs (a prom-client Registry is one; so is ClusterMetrics). */
export interface MetricsSource {
  metrics(): Promise<string>;
  readonly contentType: string;
}

/**
 * How each of the relay's gauges combines across workers where a sum would mislead; everything not
 * named here is summed (counters, histogram buckets/sums/counts, and gauges that count things:
 * connections open, queued messages, spool bytes). prom-client's own default metrics carry their
 * aggregator already (process_start_time omitted, event-loop lag averaged, version first).
 */
export const GAUGE_AGGREGATORS: Readonly<Record<string, 'first' | 'min' | 'max' | 'average' | 'omit'>> = {
  portcullis_build_info: 'first', // always 1 with the version labels: every worker runs the same build
  portcullis_config_last_reload_success_timestamp_seconds: 'min', // the oldest config any worker runs
  portcullis_queue_oldest_message_age_seconds: 'max', // the oldest message of any shard
  portcullis_ready: 'min', // ready only when every worker is
  portcullis_shared_state_connected: 'min', // 0 when any worker counts locally
  portcullis_disk_free_bytes: 'min', // one file system seen by every worker: the lowest reading
};

/** Worker side: answers the primary's `metrics.get` with `registry`'s metrics (read per request: a reload may replace nothing here, but plugins register into it). */
export function answerMetrics(channel: Pick<IpcChannel, 'handle'>, registry: () => Registry): void {
  channel.handle(METRICS_GET, () => registry().getMetricsAsJSON());
}

export interface ClusterMetricsOptions {
  /** The workers alive now (read per scrape). */
  readonly workers: () => readonly WorkerLink[];
  /** The primary's own metrics (worker restarts, say), merged in with the same rules. */
  readonly own?: Registry;
  /** Longest a scrape waits for one worker; a worker past it is left out of the totals and shows `portcullis_worker_up 0`. */
  readonly timeoutMs?: number;
}

/**
 * One `/metrics` for all workers (the primary's admin server serves it): every worker's registry,
 * read over the IPC channel, merged by prom-client's `AggregatorRegistry.aggregate` (counters and
 * histograms summed per label set; gauges per GAUGE_AGGREGATORS), plus per worker only what an
 * operator needs per worker: `portcullis_worker_up{worker}` (answered this scrape) and
 * `portcullis_worker_connections_open{worker}` (how evenly the kernel spreads connections).
 *
 * Not prom-client's `clusterMetrics()`: it fails the whole scrape when one worker does not answer
 * in 5 s, and cannot say which worker that was. A worker that restarts starts its counters at zero,
 * so the totals drop by what it had counted: Prometheus treats that as a counter reset (rate() and
 * increase() stay right).
 */
export class ClusterMetrics implements MetricsSource {
  readonly contentType = 'text/plain; version=0.0.4; charset=utf-8';
  private readonly timeoutMs: number;

  constructor(private readonly opts: ClusterMetricsOptions) {
    this.timeoutMs = opts.timeoutMs ?? 2000;
  }

  /** Every worker's metrics as JSON, or undefined for a worker that did not answer. */
  async collect(): Promise<Array<{ id: number | string; metrics?: MetricJson[]; error?: string }>> {
    return Promise.all(
      this.opts.workers().map(async (w) => {
        try {
          return { id: w.id, metrics: await w.channel.request<MetricJson[]>(METRICS_GET, undefined, this.timeoutMs) };
        } catch (err) {
          return { id: w.id, error: (err as Error).message };
        }
      }),
    );
  }

  /** The merged registry: totals across workers, with the per-worker gauges. */
  async registry(): Promise<Registry> {
    const answers = await this.collect();
    const sets: MetricJson[][] = [];
    for (const a of answers) if (a.metrics) sets.push(a.metrics.map(withAggregator));
    if (this.opts.own) sets.push((await this.opts.own.getMetricsAsJSON()).map(withAggregator));
    sets.push([
      perWorker('portcullis_worker_up', 'Whether the worker answered this scrape (1) or was left out of the totals (0)', answers.map((a) => [a.id, a.metrics ? 1 : 0])),
      perWorker('portcullis_worker_connections_open', 'SMTP connections open now in each worker (all listeners)', answers.filter((a) => a.metrics).map((a) => [a.id, sumOf(a.metrics!, 'portcullis_connections_open')])),
    ]);
    return AggregatorRegistry.aggregate(sets);
  }

  async metrics(): Promise<string> {
    return (await this.registry()).metrics();
  }
}

const withAggregator = (m: MetricJson): MetricJson => {
  const a = GAUGE_AGGREGATORS[m.name];
  return a ? { ...m, aggregator: a } : m;
};

const sumOf = (metrics: MetricJson[], name: string): number => metrics.find((m) => m.name === name)?.values.reduce((s, v) => s + v.value, 0) ?? 0;

function perWorker(name: string, help: string, values: Array<[number | string, number]>): MetricJson {
  return { name, help, type: 'gauge' as unknown as MetricJson['type'], aggregator: 'sum', values: values.map(([worker, value]) => ({ value, labels: { worker: String(worker) } })) };
}
