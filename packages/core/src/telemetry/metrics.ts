import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The relay's Prometheus metrics (prom-client), served on the admin listener's `/metrics`.
 *
 * Every label set is bounded: listener names, plugin and hook names, reply codes, enhanced status
 * codes, outcome words. Never an address, a host name, a domain or a user: those would make one
 * time series per client and grow without bound (and leak who mails whom to whoever scrapes).
 *
 * When metrics are off (no admin listener) every recording method returns at once, so the SMTP
 * path pays one boolean test per event.
 */
export class RelayMetrics {
  readonly registry = new Registry();
  readonly enabled: boolean;

  private readonly connOpen: Gauge<'listener'>;
  private readonly connTotal: Counter<'listener'>;
  private readonly connRefused: Counter<'listener' | 'reason'>;
  private readonly txns: Counter<'outcome'>;
  private readonly replies: Counter<'stage' | 'code' | 'enhanced'>;
  private readonly verdicts: Counter<'plugin' | 'hook' | 'verdict' | 'reason'>;
  private readonly messageSize: Histogram;
  private readonly dataReply: Histogram;
  private readonly hookSeconds: Histogram<'plugin' | 'hook'>;
  private readonly pluginErrors: Counter<'plugin' | 'hook' | 'kind'>;
  private readonly deliveries: Counter<'outcome' | 'class'>;
  private readonly deliverySeconds: Histogram<'outcome' | 'class'>;
  private readonly dsn: Counter<'kind'>;
  private readonly tls: Counter<'listener' | 'version'>;
  private readonly tlsFailures: Counter<'listener'>;
  private readonly auth: Counter<'listener' | 'result'>;
  private readonly logDropped: Counter;
  private readonly logErrors: Counter;
  private readonly reloads: Counter<'result'>;
  private readonly lastReload: Gauge;

  constructor(opts: { enabled: boolean; version: string }) {
    this.enabled = opts.enabled;
    const r = [this.registry];
    this.connOpen = new Gauge({ name: 'portcullis_connections_open', help: 'SMTP connections open now, by listener', labelNames: ['listener'], registers: r });
    this.connTotal = new Counter({ name: 'portcullis_connections_total', help: 'SMTP connections accepted by a listener (before any check)', labelNames: ['listener'], registers: r });
    this.connRefused = new Counter({ name: 'portcullis_connections_refused_total', help: 'Connections refused before the greeting: max_clients, policy (a connect hook verdict), or the connection-gate check that refused (connectionsPerIp, or a plugin check), or check_failed (a check threw: 421 4.3.0)', labelNames: ['listener', 'reason'], registers: r });
    this.txns = new Counter({ name: 'portcullis_transactions_total', help: 'Mail transactions by outcome: accepted (250 after DATA), rejected (5xx), tempfailed (4xx), abandoned (RSET, QUIT or disconnect before the end)', labelNames: ['outcome'], registers: r });
    this.replies = new Counter({ name: 'portcullis_smtp_replies_total', help: 'Replies the relay decided, by SMTP stage, basic code and enhanced code', labelNames: ['stage', 'code', 'enhanced'], registers: r });
    this.verdicts = new Counter({ name: 'portcullis_verdicts_total', help: 'Plugin verdicts by plugin, hook, verdict kind and reason (the enhanced status code; empty for a plain accept)', labelNames: ['plugin', 'hook', 'verdict', 'reason'], registers: r });
    this.messageSize = new Histogram({ name: 'portcullis_message_size_bytes', help: 'Size of accepted messages as received', buckets: [1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 10485760, 26214400, 52428800], registers: r });
    this.dataReply = new Histogram({ name: 'portcullis_data_reply_seconds', help: 'Time from the end of DATA to the reply: screeners, message hook, spool commit', buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: r });
    this.hookSeconds = new Histogram({ name: 'portcullis_plugin_hook_duration_seconds', help: 'Time one plugin spent in one hook call (data.raw and data.part: from the end of data)', labelNames: ['plugin', 'hook'], buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers: r });
    this.pluginErrors = new Counter({ name: 'portcullis_plugin_errors_total', help: 'Plugin failures (each one a 451 4.3.0 or a logged observer error) by kind: error, timeout, invalid (not a verdict)', labelNames: ['plugin', 'hook', 'kind'], registers: r });
    this.deliveries = new Counter({ name: 'portcullis_deliveries_total', help: 'Delivery outcomes per recipient: delivered, deferred, bounced; class is the enhanced status class.subject (2.0, 4.4, 5.1, ...)', labelNames: ['outcome', 'class'], registers: r });
    this.deliverySeconds = new Histogram({ name: 'portcullis_delivery_duration_seconds', help: 'Time of one SMTP transaction to a next hop, per recipient, by outcome and status class', labelNames: ['outcome', 'class'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers: r });
    this.dsn = new Counter({ name: 'portcullis_dsn_total', help: 'Delivery status notifications: bounce, delay_warning, and not_sent (null sender or a bounce of a bounce)', labelNames: ['kind'], registers: r });
    this.tls = new Counter({ name: 'portcullis_tls_handshakes_total', help: 'Completed TLS handshakes (STARTTLS or implicit) by listener and protocol version', labelNames: ['listener', 'version'], registers: r });
    this.tlsFailures = new Counter({ name: 'portcullis_tls_handshake_failures_total', help: 'TLS handshakes that failed, by listener', labelNames: ['listener'], registers: r });
    this.auth = new Counter({ name: 'portcullis_auth_total', help: 'SMTP AUTH attempts by listener and result (success, failure)', labelNames: ['listener', 'result'], registers: r });
    this.logDropped = new Counter({ name: 'portcullis_log_lines_dropped_total', help: 'Log lines dropped because the log file could not take them (disk full or too slow)', registers: r });
    this.logErrors = new Counter({ name: 'portcullis_log_write_errors_total', help: 'Errors writing or rotating the log file', registers: r });
    this.reloads = new Counter({ name: 'portcullis_config_reloads_total', help: 'Configuration reloads (SIGHUP, portcullis reload) by result: ok, failed (the running config stays)', labelNames: ['result'], registers: r });
    this.lastReload = new Gauge({ name: 'portcullis_config_last_reload_success_timestamp_seconds', help: 'When the running configuration was loaded', registers: r });
    new Gauge({ name: 'portcullis_build_info', help: 'Always 1; the version labels say what runs', labelNames: ['version', 'node'], registers: r }).set({ version: opts.version, node: process.versions.node }, 1);
    this.lastReload.set(Date.now() / 1000);
    for (const outcome of ['accepted', 'rejected', 'tempfailed', 'abandoned']) this.txns.inc({ outcome }, 0);
    for (const kind of ['bounce', 'delay_warning', 'not_sent']) this.dsn.inc({ kind }, 0);
    this.logDropped.inc(0);
    if (this.enabled) {
      collectDefaultMetrics({ register: this.registry });
      // Gauges named *_total: `promtool check metrics` rightly flags them; the counts are in
      // nodejs_active_handles / nodejs_active_requests / nodejs_active_resources too.
      for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(name);
    }
  }

  listenerKnown(listener: string): void {
    if (!this.enabled) return;
    this.connOpen.set({ listener }, 0);
    this.connTotal.inc({ listener }, 0);
  }
  connectionOpened(listener: string): void {
    if (!this.enabled) return;
    this.connOpen.inc({ listener });
    this.connTotal.inc({ listener });
  }
  connectionClosed(listener: string): void {
    if (this.enabled) this.connOpen.dec({ listener });
  }
  /** `reason`: max_clients, policy (a connect hook verdict), or the name of the connection-gate check that refused. */
  connectionRefused(listener: string, reason: string): void {
    if (this.enabled) this.connRefused.inc({ listener, reason });
  }
  transaction(outcome: 'accepted' | 'rejected' | 'tempfailed' | 'abandoned', size?: number): void {
    if (!this.enabled) return;
    this.txns.inc({ outcome });
    if (outcome === 'accepted' && size !== undefined) this.messageSize.observe(size);
  }
  reply(stage: string, code: number, enhanced: string): void {
    if (this.enabled) this.replies.inc({ stage, code: String(code), enhanced });
  }
  verdict(plugin: string, hook: string, verdict: string, reason: string): void {
    if (this.enabled) this.verdicts.inc({ plugin, hook, verdict, reason });
  }
  dataReplied(seconds: number): void {
    if (this.enabled) this.dataReply.observe(seconds);
  }
  hookTime(plugin: string, hook: string, seconds: number): void {
    if (this.enabled) this.hookSeconds.observe({ plugin, hook }, seconds);
  }
  pluginError(plugin: string, hook: string, kind: 'error' | 'timeout' | 'invalid'): void {
    if (this.enabled) this.pluginErrors.inc({ plugin, hook, kind });
  }
  delivery(outcome: 'delivered' | 'deferred' | 'bounced', response: string, seconds?: number): void {
    if (!this.enabled) return;
    const cls = statusClass(outcome, response);
    this.deliveries.inc({ outcome, class: cls });
    if (seconds !== undefined) this.deliverySeconds.observe({ outcome, class: cls }, seconds);
  }
  dsnQueued(kind: 'bounce' | 'delay_warning' | 'not_sent'): void {
    if (this.enabled) this.dsn.inc({ kind });
  }
  tlsHandshake(listener: string, version: string): void {
    if (this.enabled) this.tls.inc({ listener, version });
  }
  tlsFailure(listener: string): void {
    if (this.enabled) this.tlsFailures.inc({ listener });
  }
  authResult(listener: string, result: 'success' | 'failure'): void {
    if (this.enabled) this.auth.inc({ listener, result });
  }
  /** Log accounting runs whether or not metrics are scraped: `status` reports it too. */
  logLineDropped(): void {
    this.logDropped.inc();
  }
  logWriteError(): void {
    this.logErrors.inc();
  }
  reloaded(ok: boolean): void {
    this.reloads.inc({ result: ok ? 'ok' : 'failed' });
    if (ok) this.lastReload.set(Date.now() / 1000);
  }

  /**
   * Gauges read when scraped (queue depth, spool size, disk free): computing them on demand costs
   * nothing between scrapes and is never stale.
   */
  addCollector(def: { name: string; help: string; labelNames?: string[]; collect: (set: (labels: Record<string, string>, value: number) => void) => void | Promise<void> }): void {
    new Gauge({
      name: def.name,
      help: def.help,
      labelNames: def.labelNames ?? [],
      registers: [this.registry],
      async collect() {
        this.reset();
        await def.collect((labels, value) => (Object.keys(labels).length ? this.set(labels, value) : this.set(value)));
      },
    });
  }
}

/**
 * `2.0` for a delivery, else the enhanced status class.subject (`4.4` network/routing, `5.1`
 * addressing, `5.7` policy ...) from the reply, or `4.4`/`5.0` when the reply carries none.
 */
export function statusClass(outcome: string, response: string): string {
  if (outcome === 'delivered') return '2.0';
  const m = /\b([245])\.(\d{1,3})\.\d{1,3}\b/.exec(response);
  if (m) return `${m[1]}.${m[2]}`;
  const code = /^\s*([245])\d\d\b/.exec(response);
  if (code) return `${code[1]}.0`;
  return outcome === 'deferred' ? '4.4' : '5.0';
}

export type { PluginMetricSpec, PluginMetrics } from '../api/plugin-metrics.js';
import type { PluginMetricSpec, PluginMetrics } from '../api/plugin-metrics.js';

export function pluginMetrics(registry: Registry, plugin: string): PluginMetrics {
  const prefix = `portcullis_${plugin.replace(/[^a-zA-Z0-9_]/g, '_')}_`;
  const get = <T>(kind: string, spec: PluginMetricSpec, make: (name: string) => T): T => {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(spec.name)) throw new TypeError(`plugin "${plugin}": metric name ${JSON.stringify(spec.name)} must match [a-zA-Z_][a-zA-Z0-9_]*`);
    const name = prefix + spec.name;
    const existing = registry.getSingleMetric(name) as (T & { constructor: { name: string } }) | undefined;
    if (existing) {
      if (existing.constructor.name !== kind) throw new TypeError(`plugin "${plugin}": metric ${name} is already registered as a ${existing.constructor.name}`);
      return existing;
    }
    return make(name);
  };
  const common = (name: string, spec: PluginMetricSpec) => ({ name, help: spec.help, labelNames: [...(spec.labelNames ?? [])], registers: [registry] });
  return {
    counter: (spec) => get('Counter', spec, (name) => new Counter(common(name, spec))) as never,
    gauge: (spec) => get('Gauge', spec, (name) => new Gauge(common(name, spec))) as never,
    histogram: (spec) => get('Histogram', spec, (name) => new Histogram({ ...common(name, spec), ...(spec.buckets ? { buckets: [...spec.buckets] } : {}) })) as never,
  };
}

export { Registry };
