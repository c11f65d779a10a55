import { Counter } from 'prom-client';
import type { RelayMetrics } from '../telemetry/metrics.js';
import type { LogFileDestination } from '../telemetry/log-destination.js';
import { freeBytes } from '../spool/disk-space.js';
import type { DeliveryQueue } from '../delivery/queue.js';
import type { SharedState } from '../services/shared-state.js';
import type { ReadinessReport } from './readiness.js';

/** What the gauges read, each time `/metrics` is scraped. */
export interface GaugeSource {
  readonly queue: DeliveryQueue;
  readonly sharedState: SharedState;
  readonly spool: { readonly dir: string };
  readiness(): Promise<ReadinessReport>;
}

/** The relay's gauges (queue, spool, readiness, shared state, disk) and the log file's counters. */
export function registerGauges(m: RelayMetrics, r: GaugeSource, logFile: LogFileDestination | undefined): void {
  if (logFile) {
    for (let i = 0; i < logFile.dropped; i++) m.logLineDropped();
    logFile.onDrop = () => m.logLineDropped();
    logFile.onError = () => m.logWriteError();
  }
  if (!m.enabled) return;
  m.addCollector({ name: 'portcullis_queue_messages', help: 'Queued messages by state: due (waiting for a delivery slot), deferred (waiting for a retry), held, sending', labelNames: ['state'], collect: (set) => {
    const q = r.queue.stats();
    for (const state of ['due', 'deferred', 'held', 'sending'] as const) set({ state }, q[state]);
  } });
  m.addCollector({ name: 'portcullis_spool_messages', help: 'Messages in the spool (queued, not yet delivered or bounced)', collect: (set) => set({}, r.queue.stats().messages) });
  m.addCollector({ name: 'portcullis_spool_bytes', help: 'Bytes of message data in the spool', collect: (set) => set({}, r.queue.stats().bytes) });
  m.addCollector({ name: 'portcullis_queue_oldest_message_age_seconds', help: 'Age of the oldest queued message (0 when the queue is empty)', collect: (set) => {
    const t = r.queue.stats().oldestReceivedAt;
    set({}, t ? Math.max(0, (Date.now() - t) / 1000) : 0);
  } });
  m.addCollector({ name: 'portcullis_ready', help: 'Readiness checks as /readyz runs them (1 ready, 0 not): listeners, spool, disk, plugin:<name>; the check label also has the value "all"', labelNames: ['check'], collect: async (set) => {
    const rr = await r.readiness();
    for (const c of rr.checks) set({ check: c.name }, c.ready ? 1 : 0);
    set({ check: 'all' }, rr.ready ? 1 : 0);
  } });
  // Shared state (rate counters, AUTH throttle, DNSBL cache): a Redis outage never fails readiness
  // (every node would leave the balancer at once); it shows here, and in the node's log.
  m.addCollector({ name: 'portcullis_shared_state_connected', help: 'Whether the shared state store answers (1) or this node counts locally (0), by store: memory (always 1) or redis', labelNames: ['store'], collect: (set) => {
    const st = r.sharedState.status();
    set({ store: st.store }, st.connected ? 1 : 0);
  } });
  const sharedState = () => r.sharedState;
  new Counter({ name: 'portcullis_shared_state_fallbacks_total', help: 'Shared-state operations answered from local memory because Redis did not answer', registers: [m.registry], collect() {
    this.reset();
    this.inc(sharedState().status().fallbacks);
  } });
  m.addCollector({ name: 'portcullis_disk_free_bytes', help: 'Bytes free for the relay on the file system of its spool and, when logging to a file, of its log', labelNames: ['volume'], collect: async (set) => {
    const spool = await freeBytes(r.spool.dir).catch(() => undefined);
    if (spool !== undefined) set({ volume: 'spool' }, spool);
    if (logFile) {
      const log = await freeBytes(logFile.dir).catch(() => undefined);
      if (log !== undefined) set({ volume: 'log' }, log);
    }
  } });
}
