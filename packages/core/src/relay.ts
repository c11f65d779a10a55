import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { DependencyContainer } from 'tsyringe';
import type { Logger } from 'pino';
import { coreVersion } from './api/core-version.js';
import { Tokens, type Clock } from './api/tokens.js';
import type { RelayConfig } from './config/schema.js';
import { createLogger } from './telemetry/logger.js';
import { RelayMetrics } from './telemetry/metrics.js';
import { PluginDriver } from './plugins/driver.js';
import { DriverGenerations } from './plugins/generations.js';
import { loadPlugins } from './plugins/loader.js';
import type { ConnectionGate } from './listen/connection-gate.js';
import { Connections, goodbye } from './listen/connections.js';
import { canOverrideGreetingDelay } from './adapter/smtp-server.js';
import { Listeners, type StreamClient } from './listen/listeners.js';
import { checkProxyTrust } from './listen/proxy-trust.js';
import type { DiskGuard } from './spool/disk-guard.js';
import type { Spool } from './spool/spool.js';
import { SpoolLock } from './spool/spool-lock.js';
import { canRewriteReplies } from './adapter/smtp-server-replies.js';
import { canGuardPipelining } from './session/pipelining-guard.js';
import { postmasterAddress } from './session/postmaster.js';
import { Sessions } from './session/sessions.js';
import { DataPhase } from './intake/data-phase.js';
import { MessageEditRecorder } from './intake/edits/message-edits.js';
import { DeliveryQueue } from './delivery/queue.js';
import { createContainer } from './services/container.js';
import type { SharedState } from './services/shared-state.js';
import { AdminServer } from './ops/admin-server.js';
import { answerControl, ControlServer, type ControlAnswer, type ControlRequest, type ControlResponse } from './ops/control-server.js';
import type { ReadinessReport } from './ops/readiness.js';
import { registerGauges } from './ops/relay-gauges.js';
import { applyConfig } from './ops/reload.js';
import { relayReadiness, relayStatus } from './ops/status.js';
import type { RelayOptions } from './relay-options.js';

export type { StreamClient } from './listen/listeners.js';
export type { RelayOptions } from './relay-options.js';
export { installedVersion } from './ops/status.js';

/**
 * The relay, composed of its phases (packages/core/README.md has the lifecycle, stage by stage):
 *
 *   listen/ ─▶ session/ (connect, [auth], mail + helo, rcpt) ─▶ intake/ (data, message) ─▶ spool/ (fsync) ─▶ 250
 *   delivery/: route ─▶ next hop ─▶ delivered | deferred (retry) | bounced (DSN)
 *   ops/: admin and control servers, readiness, status, reload
 */
export class Relay {
  readonly queue: DeliveryQueue;
  readonly spool: Spool;
  readonly sharedState: SharedState;
  /** Replaced on a reload (new plugins add their checks to a new gate); a connection is released by the gate that admitted it. */
  gate: ConnectionGate;
  /** The MAIL FROM disk guard; /readyz asks it too. Replaced on a reload (spool.minFree may change). */
  diskGuard: DiskGuard;
  readonly generations: DriverGenerations;
  readonly listeners: Listeners;
  readonly pluginSources: RelayOptions;
  private readonly connections: Connections;
  private readonly sessions: Sessions;
  private readonly dataPhase: DataPhase;
  private admin?: AdminServer;
  private control?: ControlServer;
  private lock?: SpoolLock;
  private reloading?: Promise<unknown>;
  /** Set when this relay also delivers adopted spool shards (cluster/): queue commands reach those too. */
  controlRoute?: (req: ControlRequest, own: ControlAnswer) => Promise<ControlResponse>;
  private liveConfig: RelayConfig;
  private isStopping = false;

  private constructor(config: RelayConfig, readonly configDir: string, readonly container: DependencyContainer, readonly log: Logger, driver: PluginDriver, readonly metrics: RelayMetrics, readonly configFile: string, private readonly opts: RelayOptions) {
    this.liveConfig = config;
    this.pluginSources = opts;
    this.generations = new DriverGenerations(driver);
    container.registerInstance(Tokens.PluginDriver, driver);
    this.spool = container.resolve<Spool>(Tokens.Spool);
    this.gate = container.resolve<ConnectionGate>(Tokens.ConnectionGate);
    this.diskGuard = container.resolve<DiskGuard>(Tokens.DiskGuard);
    this.sharedState = container.resolve<SharedState>(Tokens.SharedState);
    this.queue = new DeliveryQueue(this.spool, driver, { hostname: config.hostname, ...config.delivery }, log.child({ part: 'delivery' }), container.resolve<Clock>(Tokens.Clock), opts.transport);
    this.queue.metrics = metrics;
    const onSpooled = opts.onSpooled;
    if (onSpooled) {
      // Everything that enters the queue: received messages and the bounces and warnings we write.
      const add = this.queue.add.bind(this.queue);
      this.queue.add = (m) => {
        onSpooled(m);
        add(m);
      };
    }
    this.connections = new Connections(() => this.gate, metrics, log);
    this.sessions = new Sessions(this, this.connections, this.generations, (tmpDir, id) => new MessageEditRecorder(tmpDir, id));
    this.dataPhase = new DataPhase(this, this.sessions, this.connections, opts.onDataReply);
    const s = this.sessions;
    const handlers = { connect: s.connect.bind(s), auth: s.auth.bind(s), mail: s.mail.bind(s), rcpt: s.rcpt.bind(s), data: this.dataPhase.data.bind(this.dataPhase), close: s.close.bind(s) };
    this.listeners = new Listeners(() => this.liveConfig, configDir, this.connections, handlers, { opened: (c) => s.opened(c), closed: (id) => s.closed(id) }, metrics, log);
    registerGauges(metrics, this, opts.logFile);
  }

  /** The running configuration (a reload replaces it; sessions keep the one they started with). */
  get config(): RelayConfig {
    return this.liveConfig;
  }

  /** The plugins new sessions and delivery attempts use. */
  get driver(): PluginDriver {
    return this.generations.current;
  }

  get stopping(): boolean {
    return this.isStopping;
  }

  /** Validates plugins and sets them up; opens no port. Config errors are thrown as ConfigError. */
  static async create(opts: RelayOptions): Promise<Relay> {
    const config = opts.config;
    const file = opts.configFile ? path.resolve(opts.configFile) : '<inline config>';
    const configDir = opts.configFile ? path.dirname(file) : process.cwd();
    const log = opts.logger ?? createLogger(config.log.level);
    const container = await createContainer(config, configDir, log, opts.services, opts.stateTransport);
    const metrics = new RelayMetrics({ enabled: config.admin.enabled, version: coreVersion });
    const plugins = await loadPlugins(config.plugins, { file, configDir, container, log, builtins: opts.builtins, resolveFrom: opts.resolveFrom, registry: metrics.registry });
    return new Relay(config, configDir, container, log, new PluginDriver(plugins, log, metrics), metrics, file, opts);
  }

  /** Opens the spool, starts delivery, then the listeners. */
  async start(): Promise<void> {
    try {
      await this.startParts();
    } catch (err) {
      // A port in use, say: leave nothing running, and the spool unlocked for the next try.
      await this.admin?.stop().catch(() => undefined);
      await this.control?.stop().catch(() => undefined);
      await this.queue.stop().catch(() => undefined);
      await this.lock?.release();
      this.lock = undefined;
      throw err;
    }
  }

  private async startParts(): Promise<void> {
    await this.spool.init();
    const listen = this.opts.listen ?? true;
    if (this.opts.deliver !== false && !listen) await this.queue.start();
    if (this.opts.deliver !== false && listen) {
      // One writer per spool: a second relay, or an offline `portcullis queue` command, waits or fails.
      this.lock = await SpoolLock.acquire(this.spool.dir, 'relay', this.log);
      await this.queue.start();
      const cl = this.log.child({ part: 'control' });
      const handlers = { reload: () => this.reloadFromFile(), status: () => this.status() };
      const own = (req: ControlRequest) => answerControl(this.queue, req, cl, handlers);
      this.control = new ControlServer(path.join(this.spool.dir, 'control.sock'), (req) => (this.controlRoute ? this.controlRoute(req, own) : own(req)), cl, handlers);
      await this.control.start();
    }
    checkProxyTrust(this.config.listen, this.log);
    const override = await canOverrideGreetingDelay();
    if (!override) this.log.warn('smtp-server is not the pinned version: greetingDelay settings are ignored, the library waits 100 ms');
    if (!canRewriteReplies()) this.log.warn('smtp-server is not the pinned version: its own replies keep their wording and get no enhanced status code');
    if (!canGuardPipelining()) this.log.warn('smtp-server is not the pinned version: message content sent before the 354 reply is not refused');
    if (!postmasterAddress(this.config.postmaster, this.container)) this.log.warn('no postmaster address: RCPT TO:<postmaster> will be refused (set postmaster: or host a domain with relay-policy)');
    await this.listeners.start(listen, override, this.opts.handed);
    // The real ports (a listener may ask for port 0), in host:port / [v6]:port form, for loop checks.
    this.container.registerInstance(Tokens.ListenAddresses, this.addresses().map((a) => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`)));
    if (this.config.admin.enabled && listen && this.opts.adminServer !== false) {
      const a = this.config.admin;
      const token = a.token ?? (a.tokenFile ? readFileSync(path.resolve(this.configDir, a.tokenFile), 'utf8').split(/\r?\n/)[0]!.trim() : undefined);
      this.admin = new AdminServer({ host: a.host, port: a.port, token, registry: this.metrics.registry, readiness: () => this.readiness(), log: this.log.child({ part: 'admin' }) });
      await this.admin.start();
    }
  }

  /**
   * Serves one SMTP client over any duplex stream, as if it had connected to a listener (smtp-server
   * accepts any stream that behaves like a socket). With `listen: false` this is how clients come in.
   */
  connectStream(stream: Duplex, client: StreamClient = {}): void {
    this.listeners.connectStream(stream, client);
  }

  /** Where the admin listener ended up (`admin.port: 0` picks a free port), when it is on. */
  adminAddress(): { host: string; port: number } | undefined {
    return this.admin ? { host: this.config.admin.host, port: this.admin.address().port } : undefined;
  }

  /** Readiness (`/readyz`, `portcullis status`): see ops/status.ts. */
  readiness(): Promise<ReadinessReport> {
    return relayReadiness(this);
  }

  /** What `portcullis status` shows. */
  status(): Promise<Record<string, unknown>> {
    return relayStatus(this, this.configFile, this.opts.logFile);
  }

  /** Where each listener ended up (useful with `port: 0`). */
  addresses(): Array<{ name: string; host: string; port: number }> {
    return this.listeners.addresses();
  }

  openListeners(): number {
    return this.listeners.openCount();
  }

  sessionCount(): number {
    return this.sessions.size;
  }

  /**
   * Graceful stop that keeps its word: listeners close (new clients get nothing); sessions between
   * transactions get `421 4.3.2` at once; a transaction in DATA may finish within
   * `shutdown.drainTime` and gets its real reply (250 once spooled) before its connection closes
   * with 421. When the drain time is over, a message still arriving or not yet committed is dropped
   * and answered 421 (the client retries; nothing was queued), one whose commit has begun is
   * finished and answered 250. Deliveries in progress get the same drain time; the spool keeps
   * what was not delivered.
   */
  async stop(): Promise<void> {
    if (this.isStopping) return;
    this.isStopping = true;
    const deadline = Date.now() + this.config.shutdown.drainTime;
    const left = () => Math.max(1000, deadline - Date.now());
    await this.listeners.close();
    for (const c of this.connections.all()) if (!this.dataPhase.has(c.id)) goodbye(c);
    if (this.dataPhase.size) {
      this.log.info({ transactions: this.dataPhase.size, drainMs: deadline - Date.now() }, 'waiting for transactions in DATA');
      await waitAtMost(this.dataPhase.settled(), deadline - Date.now());
    }
    this.dataPhase.abortAll();
    // Aborted intakes end at once (the data pass and every wait after end-of-data watch the signal);
    // one whose commit had begun gets what is left of the drain time, at least a second, never more.
    await waitAtMost(this.dataPhase.settled(), left());
    for (const c of this.connections.all()) goodbye(c);
    await waitAtMost(this.listeners.running(), left());
    await this.control?.stop();
    await this.admin?.stop();
    await waitAtMost(this.queue.stop(), left());
    await this.reloading?.catch(() => undefined);
    await this.generations.closeAll();
    // Segment files stay open while the relay runs; a stopped relay holds no descriptor on the spool.
    await this.spool.close().catch((err: unknown) => this.log.warn({ err }, 'closing the spool failed'));
    await this.sharedState.close();
    await this.lock?.release();
  }

  /** Re-reads the TLS key and certificate (SIGHUP): new handshakes use them, sessions stay up. */
  reloadTls(): void {
    if (!this.config.tls) return;
    this.listeners.updateSecureContext({ key: readFileSync(path.resolve(this.configDir, this.config.tls.key)), cert: readFileSync(path.resolve(this.configDir, this.config.tls.cert)) });
    this.log.info('TLS key and certificate reloaded');
  }

  /** Re-reads the config file this relay was started with and applies it (see `reload`). */
  async reloadFromFile(): Promise<{ plugins: string[] }> {
    const { loadConfigFile } = await import('./config/load.js');
    return this.reload(loadConfigFile(this.configFile).config);
  }

  /**
   * Applies a new configuration without a restart (SIGHUP, `portcullis reload`). Everything is
   * validated and every plugin set up first; on any error the running configuration stays and the
   * error (a ConfigError naming file and key) is thrown. Then new sessions get the new plugins and
   * options; sessions already open finish with what they started with (nothing is dropped), and
   * delivery attempts from now on route with the new plugins. The old plugins are closed once no
   * session uses them. Listeners, the spool folder, the admin listener and the log destination
   * cannot change while running: a change there is refused (restart for those).
   */
  async reload(next: RelayConfig): Promise<{ plugins: string[] }> {
    const prev = this.reloading ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(() => applyConfig(this, next));
    this.reloading = run;
    return run;
  }

  /** Used by ops/reload.ts once the new configuration's plugins are set up. */
  adopt(next: RelayConfig, gate: ConnectionGate, diskGuard: DiskGuard): void {
    this.liveConfig = next;
    this.gate = gate;
    this.diskGuard = diskGuard;
  }
}

/** Resolves when `p` settles or after `ms`, whichever comes first (never rejects). */
function waitAtMost(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(resolve, Math.max(0, ms));
    t.unref();
    p.then(
      () => (clearTimeout(t), resolve()),
      () => (clearTimeout(t), resolve()),
    );
  });
}
