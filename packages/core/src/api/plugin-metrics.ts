import type { Counter, Gauge, Histogram } from 'prom-client';

// The metrics API as a plugin author sees it; the implementation (`pluginMetrics`) is telemetry/metrics.ts.

/** What a plugin asks for when it registers a metric. */
export interface PluginMetricSpec<L extends string = string> {
  /** Name after the `portcullis_<plugin>_` prefix, e.g. `scans_total`. */
  readonly name: string;
  readonly help: string;
  /** Label names: keep their values bounded (never an address, a host or a user). */
  readonly labelNames?: readonly L[];
  /** Histogram buckets (seconds or bytes). */
  readonly buckets?: readonly number[];
}

/**
 * The metrics API a plugin gets in `setup` (`ctx.metrics`): counters, gauges and histograms named
 * `portcullis_<plugin>_<name>`, registered with the relay's registry and served on `/metrics`.
 * Asking twice for the same metric (after a configuration reload sets the plugin up again) returns
 * the same metric, so counts carry on.
 */
export interface PluginMetrics {
  counter<L extends string = string>(spec: PluginMetricSpec<L>): Counter<L>;
  gauge<L extends string = string>(spec: PluginMetricSpec<L>): Gauge<L>;
  histogram<L extends string = string>(spec: PluginMetricSpec<L>): Histogram<L>;
}
