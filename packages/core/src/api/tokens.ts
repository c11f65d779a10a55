/**
 * Dependency-injection tokens for the relay's services (tsyringe). Plugins resolve them from
 * `ctx.container` in `setup`, or from `session.container` per connection. Explicit tokens (not
 * class types) so the code behaves the same under tsc and tsx, which emits no decorator metadata.
 */
export const Tokens = {
  /** The validated relay configuration (RelayConfig). */
  Config: Symbol.for('portcullis.Config'),
  /** The root pino logger. */
  Logger: Symbol.for('portcullis.Logger'),
  /** The durable spool (Spool). */
  Spool: Symbol.for('portcullis.Spool'),
  /** A clock: `() => number` in ms since the epoch; tests may replace it. */
  Clock: Symbol.for('portcullis.Clock'),
  /** A node:dns `Resolver` (promises API) whose servers follow the config's `dns.servers`. */
  Resolver: Symbol.for('portcullis.Resolver'),
  /** The hook dispatcher (PluginDriver). */
  PluginDriver: Symbol.for('portcullis.PluginDriver'),
  /** Per connection: the Session. */
  Session: Symbol.for('portcullis.Session'),
  /** The addresses the relay listens on (`host:port` strings): for mail-loop checks. */
  ListenAddresses: Symbol.for('portcullis.ListenAddresses'),
  /**
   * Hosted domains, in config order (`string[]`), registered by the policy plugin that hosts them
   * (relay-policy): the default `<postmaster>` goes to postmaster@ the first one.
   */
  HostedDomains: Symbol.for('portcullis.HostedDomains'),
  /** State shared by every node when Redis is configured, else in-process (SharedState). */
  SharedState: Symbol.for('portcullis.SharedState'),
  /** Admission checks run for each new connection before its greeting (ConnectionGate). */
  ConnectionGate: Symbol.for('portcullis.ConnectionGate'),
  /** The spool's free-space guard at MAIL FROM (DiskGuard); /readyz asks it too (`status()`). */
  DiskGuard: Symbol.for('portcullis.DiskGuard'),
} as const;

export type Clock = () => number;
