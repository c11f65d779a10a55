export interface SinkRelayConfigOptions {
  /** The SMTP listener's port on 127.0.0.1 (no greeting delay). */
  readonly port: number;
  readonly spoolDir: string;
  /** `host:port` of the next hop for example.com (a CaptureServer's `address`), plain SMTP. */
  readonly nexthop: string;
  /** `limits.connectionsPerIp`: the load tests open many connections from 127.0.0.1 (default 200). */
  readonly connectionsPerIp?: number;
  /** `log.level` (default warn). */
  readonly level?: string;
}

/**
 * The config (as the file holds it) of a relay for the process-level fault and load tests: relay-policy
 * hosting example.com in front of one next hop, a retry a second after a failed delivery (a queue
 * left by a crash drains within the test), relay.test as its name. `extra` keys replace the top-level
 * keys of the same name (`workers`, `delivery`, `plugins`, ...).
 */
export function sinkRelayConfig(o: SinkRelayConfigOptions, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    hostname: 'relay.test',
    listen: [{ host: '127.0.0.1', port: o.port, greetingDelay: 0 }],
    spool: { dir: o.spoolDir },
    limits: { connectionsPerIp: o.connectionsPerIp ?? 200 },
    delivery: { retrySchedule: ['1s'] },
    log: { level: o.level ?? 'warn' },
    plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: o.nexthop, tls: 'none' } } } }],
    ...extra,
  };
}
