import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { domainToASCII } from 'node:url';
import { Resolver } from 'node:dns/promises';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import type { Logger } from 'pino';
import { Counter } from 'prom-client';
import { toAddress } from './address.js';
import type { ListenerConfig, RelayConfig } from './config-schema.js';
import { DeliveryQueue } from './delivery-queue.js';
import { ControlServer } from './control-server.js';
import { ConnectionGate, perAddressCheck, type ConnectionInfo } from './connection-gate.js';
import { defaultMinFree, DiskGuard } from './disk-guard.js';
import { canGuardSessions, SessionGuard } from './session-guard.js';
import { replaceRegistrations } from './replacing-registrations.js';
import { createSharedState, type SharedState } from './shared-state.js';
import { canOverrideGreetingDelay, setGreetingDelay } from './greeting-delay.js';
import { canUseProxyTrust, installProxyCommandTrust, installProxyHeaderTrust, proxyServerOptions } from './proxy-trust.js';
import { canRewriteReplies, installReplyCodes } from './reply-codes.js';
import { canGuardPipelining, installPipeliningGuard } from './pipelining-guard.js';
import { unadvertisedParameter } from './esmtp-params.js';
import { isBarePostmaster, postmasterAddress } from './postmaster.js';
import { clientOrigin, type ClientOrigin } from './client-origin.js';
import type { NetworkList } from './networks.js';
import { createLogger } from './logger.js';
import { receiveMessage } from './message-intake.js';
import { MessageEditRecorder } from './message-edits.js';
import { asSocket } from './stream-socket.js';
import type { DeliveryTransport } from './smtp-client.js';
import type { PluginDefinition } from './plugin.js';
import { PluginDriver, type LoadedPlugin } from './plugin-driver.js';
import { loadPlugins } from './plugin-loader.js';
import { newQueueId, Spool, type SpooledMessage } from './spool.js';
import { Tokens, type Clock } from './tokens.js';
import type { Address, Session, Transaction } from './types.js';
import { formatReply, replyError, Replies, type Reply, type Verdict } from './verdicts.js';
import { RelayMetrics } from './metrics.js';
import { AdminServer } from './admin-server.js';
import { runReadiness, type ReadinessCheck, type ReadinessReport } from './readiness.js';
import { freeBytes } from './disk-space.js';
import { coreVersion } from './core-version.js';
import type { LogFileDestination } from './log-destination.js';
import { SpoolLock } from './spool-lock.js';
import { RepeatLog } from './repeat-log.js';

export interface RelayOptions {
  readonly config: RelayConfig;
  /** The config file, named in errors; relative paths resolve against its folder. */
  readonly configFile?: string;
  readonly logger?: Logger;
  /** Plugin definitions given in code, looked up by `use:` before any import. */
  readonly builtins?: Readonly<Record<string, PluginDefinition>>;
  /** Extra folders to resolve plugin packages from. */
  readonly resolveFrom?: readonly string[];
  /** Run the delivery side (default true). */
  readonly deliver?: boolean;
  /** The log file the logger writes to, when not stdout: its drops and errors are counted in /metrics. */
  readonly logFile?: LogFileDestination;
  /**
   * Bind the listeners' ports and the queue control socket (default true). With `false` the relay
   * opens no socket at all: clients come in through `connectStream` (the test kit's `inject`).
   */
  readonly listen?: boolean;
  /** Delivers to next hops instead of the SMTP client (the test kit's delivery capture). */
  readonly transport?: DeliveryTransport;
  /** Called for each message durably in the spool (received ones, and the bounces we write), before delivery sees it. */
  readonly onSpooled?: (message: SpooledMessage) => void;
  /** Services registered after the defaults and before plugins set up (e.g. `Tokens.Resolver`, `Tokens.Clock`). */
  readonly services?: ReadonlyArray<readonly [symbol, unknown]>;
  /** Called after each reply to DATA: ms from the end of the data to the reply, bytes received (benchmarks). */
  readonly onDataReply?: (reply: { ms: number; accepted: boolean; size: number; sessions: number }) => void;
}

/** How an in-memory client looks to the relay (`connectStream`). */
export interface StreamClient {
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  readonly localAddress?: string;
  readonly localPort?: number;
  /** Treat the stream as already encrypted (like implicit TLS): AUTH is offered. */
  readonly secure?: boolean;
  /** Which listener the client reached (index in `listen`, or its name); default the first. */
  readonly listener?: number | string;
}

const STREAM_CLIENT = Symbol('portcullis.streamClient');

/**
 * SMTPUTF8 is not offered, so a local part must be ASCII (RFC 6531 section 3.5). Domains are
 * checked after IDN conversion (smtp-server decodes punycode; toAddress re-encodes it).
 */
const nonAscii = (address: string) => {
  const at = address.lastIndexOf('@');
  if (/[^\x00-\x7f]/.test(at >= 0 ? address.slice(0, at) : address)) return true;
  const domain = at >= 0 ? address.slice(at + 1) : '';
  return /[^\x00-\x7f]/.test(domain) && !domainToASCII(domain);
};

interface ConnectionLike {
  id: string;
  remoteAddress: string;
  _socket: { setNoDelay?(v: boolean): void; remoteAddress?: string };
  send(code: number, text: string): void;
  close(): void;
}

class SessionState implements Session {
  readonly notes: Record<string, unknown> = {};
  txn?: TransactionState;
  heloChecked?: string;
  /** The client address the connect hook last judged (XCLIENT can change it). */
  connectChecked?: string;
  timer?: NodeJS.Timeout;
  metricsLabel = '';
  constructor(
    readonly raw: SMTPServerSession,
    readonly listener: Session['listener'],
    readonly container: DependencyContainer,
    readonly log: Logger,
    readonly connection: ConnectionLike | undefined,
    /** The plugins and config this session started with: a reload moves new sessions only. */
    readonly driver: PluginDriver,
    readonly config: RelayConfig,
    private readonly viaProxyHeader: boolean,
  ) {}
  get id() { return this.raw.id; }
  /** The address policy trusts: the TCP peer, a listed proxy's PROXY header or XCLIENT, never XFORWARD. */
  get remoteAddress() { return this.origin.client; }
  get peerAddress() { return this.origin.peer; }
  get proxied() { return this.origin.proxied; }
  get forwarded() { return this.origin.forwarded; }
  get origin(): ClientOrigin { return clientOrigin(this.raw, this.connection?._socket.remoteAddress, this.viaProxyHeader); }
  get remotePort() { return this.raw.remotePort; }
  get localAddress() { return this.raw.localAddress; }
  get localPort() { return this.raw.localPort; }
  get secure() { return this.raw.secure; }
  get helo() { return (this.raw.hostNameAppearsAs as string | false) || undefined; }
  get user() { return (this.raw.user as string | undefined) || undefined; }
  /** Set by onAuth on success. */
  authMethod?: string;
  get tls(): Session['tls'] {
    const c = (this.raw as { tlsOptions?: { name?: string; version?: string } | false }).tlsOptions;
    if (!this.raw.secure || !c || !c.name) return undefined;
    // The protocol in use (getProtocol), not the cipher's minimum version that getCipher reports.
    const socket = this.connection?._socket as { getProtocol?: () => string | null } | undefined;
    const protocol = socket?.getProtocol?.() ?? c.version ?? undefined;
    const bits = /CHACHA20/i.test(c.name) ? 256 : Number(/(?:AES|CAMELLIA|ARIA)[_-]?(128|192|256)/i.exec(c.name)?.[1]) || undefined;
    return { protocol, cipher: c.name, ...(bits ? { bits } : {}) };
  }
}

class TransactionState implements Transaction {
  readonly recipients: Address[] = [];
  readonly notes: Record<string, unknown> = {};
  readonly started = Date.now();
  readonly added: string[] = [];
  readonly edits: MessageEditRecorder;
  summarized = false;
  constructor(readonly id: string, readonly session: SessionState, readonly mailFrom: Address, tmpDir: string) {
    this.edits = new MessageEditRecorder(tmpDir, id);
  }
  addHeader(name: string, value: string): void {
    if (!/^[!-9;-~]+$/.test(name)) throw new TypeError(`addHeader: invalid header name ${JSON.stringify(name)}`);
    this.added.push(`${name}: ${value.replace(/\r?\n(?![ \t])/g, '\r\n ').replace(/\r(?!\n)/g, ' ')}\r\n`);
  }
}

/**
 * The relay: one smtp-server per listener, the plugin pipeline, the spool and the delivery queue.
 *
 *   connect ─▶ helo ─▶ [auth] ─▶ mail ─▶ rcpt ─▶ data (stream) ─▶ message ─▶ spool (fsync) ─▶ 250
 *      │         │        │        │        │          │               │            │
 *      └─ reject/tempfail/disconnect at any stage: the reply goes out, nothing is queued
 *   delivery: route ─▶ next hop ─▶ delivered | deferred (retry) | bounced (DSN)
 */
export class Relay {
  readonly container: DependencyContainer;
  readonly log: Logger;
  readonly spool: Spool;
  readonly metrics: RelayMetrics;
  private admin?: AdminServer;
  private lock?: SpoolLock;
  private _driver: PluginDriver;
  private _config: RelayConfig;
  /** Sessions still using each driver: a replaced driver is closed once none does. */
  private readonly driverUsers = new Map<PluginDriver, number>();
  /** Replaced drivers, closed once no session uses them and their grace period (for deliveries that started with them) is over. */
  private readonly retired = new Map<PluginDriver, { graceOver: boolean }>();
  private reloading?: Promise<unknown>;
  readonly queue: DeliveryQueue;
  private readonly servers: Array<{ listener: ListenerConfig; server: SMTPServer; address?: AddressInfo }> = [];
  private readonly sessions = new Map<string, SessionState>();
  private readonly connections = new Map<string, ConnectionLike>();
  /** Connections the gate admitted (each owes it a release when it closes), and those it refused. */
  private readonly admitted = new Map<string, { info: ConnectionInfo; gate: ConnectionGate }>();
  private readonly refused = new Map<string, Reply>();
  private readonly ungated = new Set<string>();
  private readonly guards = new Map<string, SessionGuard>();
  /** Replaced on a reload (new plugins add their checks to a new gate); a connection is released by the gate that admitted it. */
  gate: ConnectionGate;
  /** The MAIL FROM disk guard; /readyz asks it too. Replaced on a reload (spool.minFree may change). */
  diskGuard: DiskGuard;
  readonly sharedState: SharedState;
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Transactions in DATA, by session id: what a graceful stop waits for (and aborts at drainTime). */
  private readonly intakes = new Map<string, { abort: AbortController; stream: SMTPServerDataStream; done: Promise<unknown> }>();
  private stopping = false;
  private control?: ControlServer;
  private readonly onDataReply?: RelayOptions['onDataReply'];

  private constructor(
    config: RelayConfig,
    readonly configDir: string,
    container: DependencyContainer,
    log: Logger,
    plugins: LoadedPlugin[],
    private readonly deliver: boolean,
    metrics: RelayMetrics,
    private readonly configFile: string,
    private readonly opts: RelayOptions,
  ) {
    this.onDataReply = opts.onDataReply;
    this._config = config;
    this.container = container;
    this.log = log;
    this.metrics = metrics;
    this._driver = new PluginDriver(plugins, log, metrics);
    container.registerInstance(Tokens.PluginDriver, this._driver);
    this.spool = container.resolve<Spool>(Tokens.Spool);
    this.gate = container.resolve<ConnectionGate>(Tokens.ConnectionGate);
    this.diskGuard = container.resolve<DiskGuard>(Tokens.DiskGuard);
    this.sharedState = container.resolve<SharedState>(Tokens.SharedState);
    this.queue = new DeliveryQueue(this.spool, this._driver, { hostname: config.hostname, ...config.delivery }, log.child({ part: 'delivery' }), container.resolve<Clock>(Tokens.Clock), opts.transport);
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
    this.registerGauges(opts.logFile);
  }

  /** The running configuration (a reload replaces it; sessions keep the one they started with). */
  get config(): RelayConfig {
    return this._config;
  }

  /** The plugins new sessions and delivery attempts use. */
  get driver(): PluginDriver {
    return this._driver;
  }

  /** Validates plugins and sets them up; opens no port. Config errors are thrown as ConfigError. */
  static async create(opts: RelayOptions): Promise<Relay> {
    const config = opts.config;
    const file = opts.configFile ? path.resolve(opts.configFile) : '<inline config>';
    const configDir = opts.configFile ? path.dirname(file) : process.cwd();
    const log = opts.logger ?? createLogger(config.log.level);
    // One registration per token: a reload replaces them (see replacing-registrations.ts).
    const container = replaceRegistrations(rootContainer.createChildContainer());
    container.registerInstance(Tokens.Config, config);
    container.registerInstance(Tokens.Logger, log);
    container.registerInstance<Clock>(Tokens.Clock, Date.now);
    container.registerInstance(Tokens.Spool, new Spool(path.resolve(configDir, config.spool.dir), { inlineMax: config.spool.inlineMax, segmentSize: config.spool.segmentSize }));
    const resolver = new Resolver({ timeout: config.dns.timeout, tries: 2 });
    if (config.dns.servers?.length) resolver.setServers(config.dns.servers);
    container.registerInstance(Tokens.Resolver, resolver);
    container.registerInstance(Tokens.ListenAddresses, config.listen.map((l) => (l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`)));
    Relay.registerGateAndGuard(container, config, configDir, log);
    container.registerInstance(Tokens.SharedState, createSharedState({ redis: config.sharedState.redis && { url: config.sharedState.redis.url, keyPrefix: config.sharedState.redis.keyPrefix, timeoutMs: config.sharedState.redis.timeout } }, log));
    for (const [token, value] of opts.services ?? []) container.registerInstance(token, value);
    const metrics = new RelayMetrics({ enabled: config.admin.enabled, version: coreVersion });
    const plugins = await loadPlugins(config.plugins, { file, configDir, container, log, builtins: opts.builtins, resolveFrom: opts.resolveFrom, registry: metrics.registry });
    return new Relay(config, configDir, container, log, plugins, opts.deliver ?? true, metrics, file, opts);
  }

  /**
   * A new connection gate (the core's per-address check first; plugins add theirs in setup) and
   * disk guard, registered for the plugins being set up: at start, and again on a reload, so the
   * new plugins' checks do not pile up on the old gate.
   */
  private static registerGateAndGuard(container: DependencyContainer, config: RelayConfig, configDir: string, log: Logger): void {
    const gate = new ConnectionGate();
    gate.add(perAddressCheck(config.limits.connectionsPerIp, Replies.tooManyConnections));
    container.registerInstance(Tokens.ConnectionGate, gate);
    const spoolDir = path.resolve(configDir, config.spool.dir);
    const minFree = config.spool.minFree ?? defaultMinFree(config.limits.messageSize);
    const reserve = config.spool.reserve ?? Math.floor(minFree / 2);
    container.registerInstance(Tokens.DiskGuard, new DiskGuard(spoolDir, minFree, log.child({ part: 'disk-guard' }), 0, config.limits.messageSize, 100, reserve));
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
    if (this.deliver && !listen) await this.queue.start();
    if (this.deliver && listen) {
      // One writer per spool: a second relay, or an offline `portcullis queue` command, waits or fails.
      this.lock = await SpoolLock.acquire(this.spool.dir, 'relay', this.log);
      await this.queue.start();
      this.control = new ControlServer(path.join(this.spool.dir, 'control.sock'), this.queue, this.log.child({ part: 'control' }), {
        reload: () => this.reloadFromFile(),
        status: () => this.status(),
      });
      await this.control.start();
    }
    this.checkProxyTrust();
    const override = await canOverrideGreetingDelay();
    if (!override) this.log.warn('smtp-server is not the pinned version: greetingDelay settings are ignored, the library waits 100 ms');
    if (!canRewriteReplies()) this.log.warn('smtp-server is not the pinned version: its own replies keep their wording and get no enhanced status code');
    if (!canGuardPipelining()) this.log.warn('smtp-server is not the pinned version: message content sent before the 354 reply is not refused');
    if (!postmasterAddress(this.config.postmaster, this.container)) this.log.warn('no postmaster address: RCPT TO:<postmaster> will be refused (set postmaster: or host a domain with relay-policy)');
    const tls = this.config.tls ? { key: readFileSync(path.resolve(this.configDir, this.config.tls.key)), cert: readFileSync(path.resolve(this.configDir, this.config.tls.cert)) } : undefined;
    for (const listener of this.config.listen) {
      const server = this.createServer(listener, tls, override);
      if (!listen) {
        this.servers.push({ listener, server, address: { address: listener.host, family: listener.host.includes(':') ? 'IPv6' : 'IPv4', port: listener.port } });
        continue;
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(listener.port, listener.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', (err) => this.log.warn({ err, listener: listener.name }, 'listener error'));
      const address = (server as unknown as { server: { address(): AddressInfo } }).server.address();
      this.servers.push({ listener, server, address });
      this.log.info({ listener: listener.name ?? `${listener.host}:${address.port}`, tls: listener.tls, auth: listener.auth }, 'listening');
    }
    // The real ports (a listener may ask for port 0), in host:port / [v6]:port form, for loop checks.
    this.container.registerInstance(Tokens.ListenAddresses, this.addresses().map((a) => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`)));
    if (this.config.admin.enabled && listen) {
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
  connectStream(stream: import('node:stream').Duplex, client: StreamClient = {}): void {
    const entry = typeof client.listener === 'string'
      ? this.servers.find((s) => (s.listener.name ?? `${s.listener.host}:${s.listener.port}`) === client.listener)
      : this.servers[client.listener ?? 0];
    if (!entry) throw new Error(`connectStream: no listener ${String(client.listener ?? 0)} (start() the relay first)`);
    const addresses = {
      remoteAddress: client.remoteAddress ?? '127.0.0.1',
      remotePort: client.remotePort ?? 50000,
      localAddress: client.localAddress ?? (entry.listener.host === '0.0.0.0' || entry.listener.host === '::' ? '127.0.0.1' : entry.listener.host),
      localPort: client.localPort ?? entry.address?.port ?? entry.listener.port,
    };
    const socket = asSocket(stream, addresses);
    (socket as unknown as Record<symbol, StreamClient>)[STREAM_CLIENT] = client;
    (entry.server as unknown as { connect(socket: unknown, opts: object): void }).connect(socket, addresses);
  }

  /** Where the admin listener ended up (`admin.port: 0` picks a free port), when it is on. */
  adminAddress(): { host: string; port: number } | undefined {
    return this.admin ? { host: this.config.admin.host, port: this.admin.address().port } : undefined;
  }

  /**
   * Readiness (`/readyz`, `portcullis status`): listeners open, spool writable, disk guard clear,
   * and each plugin's own `ready()` (clamd reachable, ...). All run at once, each bounded.
   */
  readiness(): Promise<ReadinessReport> {
    const checks: ReadinessCheck[] = [
      {
        name: 'listeners',
        check: () => {
          const open = this.servers.filter((s) => (s.server as unknown as { server: { listening: boolean } }).server.listening).length;
          return { ready: !this.stopping && open === this.config.listen.length && open > 0, detail: this.stopping ? 'stopping' : `${open} of ${this.config.listen.length} open` };
        },
      },
      { name: 'spool', check: () => this.spool.probeWritable().then(() => ({ ready: true }), (err: Error) => ({ ready: false, detail: `not writable: ${err.message}` })) },
      {
        name: 'disk',
        check: async () => {
          const s = await this.diskGuard.status();
          return { ready: !s.tripped, detail: `${s.free} bytes free on the spool's file system${s.tripped ? `, below ${s.minFree}: MAIL FROM gets 452 4.3.1` : ''}` };
        },
      },
      ...this.driver.plugins.filter((p) => typeof p.instance.ready === 'function').map((p) => ({ name: `plugin:${p.instance.name}`, check: () => p.instance.ready!() })),
    ];
    return runReadiness(checks, this.config.admin.readyTimeout);
  }

  /** What `portcullis status` shows. */
  async status(): Promise<Record<string, unknown>> {
    const q = this.queue.stats();
    return {
      pid: process.pid,
      uptimeSeconds: Math.round(process.uptime()),
      versions: { core: coreVersion, node: process.versions.node, smtpServer: await installedVersion('smtp-server') },
      configFile: this.configFile,
      listeners: this.addresses(),
      admin: this.adminAddress(),
      plugins: this.driver.plugins.map((p) => ({ name: p.instance.name, use: p.source })),
      readiness: await this.readiness(),
      sharedState: this.sharedState.status(),
      queue: { ...q, oldestAgeSeconds: q.oldestReceivedAt ? Math.round((Date.now() - q.oldestReceivedAt) / 1000) : 0 },
      diskFreeBytes: { spool: await freeBytes(this.spool.dir).catch(() => null), ...(this.opts.logFile ? { log: await freeBytes(this.opts.logFile.dir).catch(() => null) } : {}) },
      log: this.opts.logFile ? { file: this.opts.logFile.file, droppedLines: this.opts.logFile.dropped, writeErrors: this.opts.logFile.writeErrors } : { file: 'stdout' },
      sessions: this.sessions.size,
    };
  }

  private registerGauges(logFile: LogFileDestination | undefined): void {
    const m = this.metrics;
    if (logFile) {
      for (let i = 0; i < logFile.dropped; i++) m.logLineDropped();
      logFile.onDrop = () => m.logLineDropped();
      logFile.onError = () => m.logWriteError();
    }
    if (!m.enabled) return;
    m.addCollector({ name: 'portcullis_queue_messages', help: 'Queued messages by state: due (waiting for a delivery slot), deferred (waiting for a retry), held, sending', labelNames: ['state'], collect: (set) => {
      const q = this.queue.stats();
      for (const state of ['due', 'deferred', 'held', 'sending'] as const) set({ state }, q[state]);
    } });
    m.addCollector({ name: 'portcullis_spool_messages', help: 'Messages in the spool (queued, not yet delivered or bounced)', collect: (set) => set({}, this.queue.stats().messages) });
    m.addCollector({ name: 'portcullis_spool_bytes', help: 'Bytes of message data in the spool', collect: (set) => set({}, this.queue.stats().bytes) });
    m.addCollector({ name: 'portcullis_queue_oldest_message_age_seconds', help: 'Age of the oldest queued message (0 when the queue is empty)', collect: (set) => {
      const t = this.queue.stats().oldestReceivedAt;
      set({}, t ? Math.max(0, (Date.now() - t) / 1000) : 0);
    } });
    m.addCollector({ name: 'portcullis_ready', help: 'Readiness checks as /readyz runs them (1 ready, 0 not): listeners, spool, disk, plugin:<name>; the check label also has the value "all"', labelNames: ['check'], collect: async (set) => {
      const r = await this.readiness();
      for (const c of r.checks) set({ check: c.name }, c.ready ? 1 : 0);
      set({ check: 'all' }, r.ready ? 1 : 0);
    } });
    // Shared state (rate counters, AUTH throttle, DNSBL cache): a Redis outage never fails readiness
    // (every node would leave the balancer at once); it shows here, and in the node's log.
    m.addCollector({ name: 'portcullis_shared_state_connected', help: 'Whether the shared state store answers (1) or this node counts locally (0), by store: memory (always 1) or redis', labelNames: ['store'], collect: (set) => {
      const st = this.sharedState.status();
      set({ store: st.store }, st.connected ? 1 : 0);
    } });
    const sharedState = () => this.sharedState;
    new Counter({ name: 'portcullis_shared_state_fallbacks_total', help: 'Shared-state operations answered from local memory because Redis did not answer', registers: [m.registry], collect() {
      this.reset();
      this.inc(sharedState().status().fallbacks);
    } });
    m.addCollector({ name: 'portcullis_disk_free_bytes', help: 'Bytes free for the relay on the file system of its spool and, when logging to a file, of its log', labelNames: ['volume'], collect: async (set) => {
      const spool = await freeBytes(this.spool.dir).catch(() => undefined);
      if (spool !== undefined) set({ volume: 'spool' }, spool);
      if (logFile) {
        const log = await freeBytes(logFile.dir).catch(() => undefined);
        if (log !== undefined) set({ volume: 'log' }, log);
      }
    } });
  }

  /**
   * Proxy lists need our CIDR matching (proxy-trust.ts), pinned to the smtp-server source: with
   * another library version the relay refuses to start rather than trust differently. A list that
   * trusts every address starts, with a loud warning per listener and list.
   */
  private checkProxyTrust(): void {
    const keys = ['xclient', 'xforward', 'proxyProtocol'] as const;
    const used = this.config.listen.some((l) => keys.some((k) => l[k].size > 0));
    if (used && !canUseProxyTrust()) {
      throw new Error('smtp-server is not the version Portcullis pins for proxy trust (xclient/xforward/proxyProtocol); refusing to start with proxy peers configured');
    }
    this.config.listen.forEach((l, i) => {
      for (const k of keys) {
        if (l[k].everything) {
          this.log.warn({ listener: l.name ?? `${l.host}:${l.port}`, key: `listen[${i}].${k}`, networks: l[k].toStrings() }, `WARNING: listen[${i}].${k} trusts EVERY address: any client can claim any identity through ${k}`);
        }
      }
    });
  }

  /** Where each listener ended up (useful with `port: 0`). */
  addresses(): Array<{ name: string; host: string; port: number }> {
    return this.servers.map((s) => ({ name: s.listener.name ?? `${s.listener.host}:${s.address!.port}`, host: s.listener.host, port: s.address!.port }));
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
    if (this.stopping) return;
    this.stopping = true;
    const deadline = Date.now() + this.config.shutdown.drainTime;
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => {
      (s.server as unknown as { server: { close(cb: () => void): void } }).server.close(() => resolve());
      setTimeout(resolve, 100).unref();
    })));
    for (const c of [...this.connections.values()]) if (!this.intakes.has(c.id)) this.goodbye(c);
    if (this.intakes.size) {
      this.log.info({ transactions: this.intakes.size, drainMs: deadline - Date.now() }, 'waiting for transactions in DATA');
      await waitAtMost(Promise.allSettled([...this.intakes.values()].map((i) => i.done)), deadline - Date.now());
    }
    for (const [id, intake] of this.intakes) {
      intake.abort.abort();
      if (!intake.stream.readableEnded) {
        // Still arriving: nothing is queued, so 421 is the truth. The stream's end lets the intake clean up.
        const c = this.connections.get(id);
        if (c) this.goodbye(c);
        intake.stream.destroy();
      }
    }
    // Aborted intakes end at once (the data pass and every wait after end-of-data watch the signal);
    // one whose commit had begun gets what is left of the drain time, at least a second, never more.
    await waitAtMost(Promise.allSettled([...this.intakes.values()].map((i) => i.done)), Math.max(1000, deadline - Date.now()));
    for (const c of [...this.connections.values()]) this.goodbye(c);
    await waitAtMost(Promise.allSettled([...this.inFlight]), Math.max(1000, deadline - Date.now()));
    await this.control?.stop();
    await this.admin?.stop();
    await waitAtMost(this.queue.stop(), Math.max(1000, deadline - Date.now()));
    await this.reloading?.catch(() => undefined);
    await this.driver.close();
    for (const d of this.retired.keys()) await d.close();
    this.retired.clear();
    // Segment files stay open while the relay runs; a stopped relay holds no descriptor on the spool.
    await this.spool.close().catch((err: unknown) => this.log.warn({ err }, 'closing the spool failed'));
    await this.sharedState.close();
    await this.lock?.release();
  }

  /** 421 4.3.2 and close (smtp-server writes nothing once the socket is closed). */
  private goodbye(c: ConnectionLike): void {
    try {
      c.send(Replies.shuttingDown.code, `${Replies.shuttingDown.enhanced} ${Replies.shuttingDown.text}`);
      c.close();
    } catch {
      /* already gone */
    }
  }

  private createServer(listener: ListenerConfig, tls: { key: Buffer; cert: Buffer } | undefined, override: boolean): SMTPServer {
    const rewriteReplies = canRewriteReplies();
    const guardPipelining = canGuardPipelining();
    const info: Session['listener'] = { name: listener.name ?? `${listener.host}:${listener.port}`, port: listener.port, tls: listener.tls, auth: listener.auth };
    // The metrics label: the listener's name, else its port; never its address (see metrics.ts).
    const label = listener.name ?? String(listener.port);
    const limits = this.config.limits;
    const disabled: string[] = [];
    if (listener.tls !== 'starttls') disabled.push('STARTTLS');
    if (listener.auth === 'off') disabled.push('AUTH');
    const server = new SMTPServer({
      name: this.config.hostname,
      banner: 'Portcullis',
      secure: listener.tls === 'implicit',
      ...(tls ?? {}),
      minVersion: this.config.tls?.minVersion ?? 'TLSv1.2',
      hideSTARTTLS: listener.tls !== 'starttls',
      disabledCommands: disabled,
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: true, // enforced in onMailFrom with our own reply text
      allowInsecureAuth: false,
      size: limits.messageSize,
      maxClients: limits.connections, // the hard ceiling for everyone; the gate keeps room for trusted clients below it
      socketTimeout: limits.idleTimeout,
      closeTimeout: 30_000,
      disableReverseLookup: true, // never ask a resolver we did not configure
      // We write every enhanced code ourselves, once (reply-codes.ts); the keyword is advertised only
      // where that rewriting is in place, else the library's own replies would carry none.
      hideENHANCEDSTATUSCODES: !rewriteReplies,
      hideSMTPUTF8: true,
      hideREQUIRETLS: true,
      hideDSN: true,
      // Proxy commands only from the networks an operator named; the matching is ours (proxy-trust.ts).
      ...proxyServerOptions(listener),
      logger: false,
      onConnect: (session, cb) => this.track(this.onConnect(session, info, label, disabled, this.counted('connect', cb, false), listener.proxyProtocol)),
      onSecure: (socket, session, cb) => {
        // AUTH is offered once the connection is encrypted (never before: see onConnect).
        session.disabledCommands = [...disabled];
        this.metrics.tlsHandshake(label, (socket as { getProtocol?(): string | null }).getProtocol?.() ?? 'unknown');
        cb();
      },
      onAuth: (auth, session, cb) => this.track(this.onAuth(auth, session, this.counted('auth', cb as (err?: Error | null) => void, false) as typeof cb)),
      onMailFrom: (address, session, cb) => this.track(this.onMailFrom(address, session, this.counted('mail', cb))),
      onRcptTo: (address, session, cb) => this.track(this.onRcptTo(address, session, this.counted('rcpt', cb))),
      onData: (stream, session, cb) => this.track(this.onData(stream, session, this.counted('data', cb as (err?: Error | null) => void) as typeof cb)),
      onClose: (session) => void this.onClose(session),
    } as ConstructorParameters<typeof SMTPServer>[0]);

    // smtp-server adds each new connection to this Set right before init(): the one place to
    // reach the connection object (socket options, greeting delay, per-IP accounting).
    installProxyHeaderTrust(server, listener);
    const conns = (server as unknown as { connections: Set<ConnectionLike> }).connections;
    const add = conns.add.bind(conns);
    const del = conns.delete.bind(conns);
    const delay = listener.greetingDelay ?? (listener.auth === 'required' ? 0 : 100);
    this.metrics.listenerKnown(label);
    // Behind a PROXY protocol balancer the client's address is known only after the header is read:
    // the gate then runs in onConnect instead.
    const gateEarly = !listener.proxyProtocol.size;
    conns.add = (c: ConnectionLike) => {
      c._socket?.setNoDelay?.(true);
      const streamClient = (c._socket as unknown as Record<symbol, StreamClient | undefined>)[STREAM_CLIENT];
      if (streamClient?.secure) {
        const conn = c as unknown as { secure: boolean; session: { secure: boolean } };
        conn.secure = conn.session.secure = true;
      }
      // An XCLIENT proxy the operator named speaks for many clients (and limits them itself): the
      // gate would count them all as one address. Their rates still count, per client, in the hooks.
      if (listener.xclient.contains(c.remoteAddress)) this.ungated.add(c.id);
      if (gateEarly) this.admit(c, info, label);
      // An in-memory client is a test: no early-talker pause.
      if (override) setGreetingDelay(c, streamClient ? 0 : delay, () => this.refused.get(c.id));
      installProxyCommandTrust(c, listener);
      if (rewriteReplies) installReplyCodes(c);
      if (guardPipelining) installPipeliningGuard(c, () => this.log.warn({ session: c.id, client: c.remoteAddress }, 'improper pipelining: message content sent before the 354 reply; DATA refused, connection closed'));
      if (canGuardSessions(c)) this.guards.set(c.id, SessionGuard.install(c, this.config.limits, this.log.child({ session: c.id })));
      this.connections.set(c.id, c);
      this.metrics.connectionOpened(label);
      const r = add(c);
      // smtp-server answers 421 itself in init() past maxClients: count it here, where it decides.
      if (conns.size > this.config.limits.connections) this.metrics.connectionRefused(label, 'max_clients');
      return r;
    };
    conns.delete = (c: ConnectionLike) => {
      if (this.connections.has(c.id)) this.metrics.connectionClosed(label);
      if (this.connections.delete(c.id)) {
        this.refused.delete(c.id);
        this.ungated.delete(c.id);
        this.guards.get(c.id)?.dispose();
        this.guards.delete(c.id);
        const admitted = this.admitted.get(c.id);
        if (admitted) {
          this.admitted.delete(c.id);
          admitted.gate.release(admitted.info);
        }
      }
      return del(c);
    };
    server.on('error', (err: Error & { meta?: { tlsProtocol?: unknown }; code?: string }) => {
      if ((err.meta && 'tlsProtocol' in err.meta) || /^ERR_(SSL|TLS)/.test(err.code ?? '') || err.code === 'TLSError') this.metrics.tlsFailure(label);
    });
    return server;
  }

  /**
   * Wraps an smtp-server callback to count the reply it carries (`/metrics`): an error with
   * `responseCode` is a refusal with our `enhanced text`; no error is the stage's success reply.
   */
  private counted<F extends (err?: Error | null, ...rest: never[]) => void>(stage: string, cb: F, countSuccess = true): F {
    if (!this.metrics.enabled) return cb;
    const m = this.metrics;
    return ((err?: (Error & { responseCode?: number }) | null, ...rest: never[]) => {
      if (err && err.responseCode) m.reply(stage, err.responseCode, /^([245]\.\d{1,3}\.\d{1,3}) /.exec(err.message)?.[1] ?? '');
      else if (!err && countSuccess) m.reply(stage, 250, stage === 'data' ? '2.0.0' : '2.1.0');
      cb(err, ...rest);
    }) as F;
  }

  /** Runs the connection gate once per connection; a refusal is answered before any greeting. */
  private admit(c: { id: string; remoteAddress: string }, listener: Session['listener'], label: string): Reply | undefined {
    if (this.ungated.has(c.id) || this.admitted.has(c.id) || this.refused.has(c.id)) return this.refused.get(c.id);
    const info: ConnectionInfo = { id: c.id, remoteAddress: c.remoteAddress, listener };
    const gate = this.gate;
    const decided = gate.decide(info);
    const reply = decided?.reply;
    if (decided && reply) {
      this.metrics.connectionRefused(label, decided.check);
      this.refused.set(c.id, reply);
      this.refusals.log(this.log, 'warn', `${formatReply(reply)} ${c.remoteAddress}`, { client: c.remoteAddress, listener: listener.name, reply: formatReply(reply) }, 'connection refused at the gate');
    } else this.admitted.set(c.id, { info, gate });
    return reply;
  }
  private readonly refusals = new RepeatLog(10_000);

  private track(p: Promise<unknown>): void {
    this.inFlight.add(p);
    p.finally(() => this.inFlight.delete(p)).catch(() => undefined);
  }

  private async onConnect(raw: SMTPServerSession, listener: Session['listener'], label: string, disabled: readonly string[], cb: (err?: Error | null) => void, proxyPeers: NetworkList): Promise<void> {
    const connection = this.connections.get(raw.id);
    const container = this.container.createChildContainer();
    const log = this.log.child({ session: raw.id });
    const driver = this.driver;
    const s = new SessionState(raw, listener, container, log, connection, driver, this.config, proxyPeers.contains(connection?._socket.remoteAddress ?? ''));
    s.metricsLabel = label;
    this.driverUsers.set(driver, (this.driverUsers.get(driver) ?? 0) + 1);
    container.registerInstance(Tokens.Session, s);
    this.sessions.set(raw.id, s);
    // A session list replaces the server-wide one in smtp-server, so it repeats it. AUTH is neither
    // advertised nor accepted before TLS: credentials never cross the wire in clear.
    if (!raw.secure && !disabled.includes('AUTH')) raw.disabledCommands = [...disabled, 'AUTH'];
    try {
      // Normally decided before the greeting (conns.add); here for PROXY protocol listeners, whose
      // client address is known only now, and when the greeting override is unavailable.
      const refused = connection ? this.admit({ id: raw.id, remoteAddress: raw.remoteAddress }, listener, label) : undefined;
      if (refused) return cb(replyError(refused));
      s.timer = setTimeout(() => {
        log.warn({ client: raw.remoteAddress }, 'session time limit reached');
        connection?.send(Replies.sessionTimeout.code, `${Replies.sessionTimeout.enhanced} ${Replies.sessionTimeout.text}`);
        connection?.close();
      }, s.config.limits.sessionTimeout);
      s.timer.unref();
      s.connectChecked = s.remoteAddress;
      const d = await s.driver.verdict('connect', [s], log);
      if (d.verdict && d.verdict.kind !== 'accept') this.metrics.connectionRefused(label, 'policy');
      this.answer(s, d.verdict, cb);
    } catch (err) {
      log.error({ err }, 'connect failed');
      cb(replyError(Replies.pluginFailure));
    }
  }

  private async onAuth(auth: SMTPServerAuthentication, raw: SMTPServerSession, cb: (err: Error | null | undefined, response?: { user: string }) => void): Promise<void> {
    const s = this.sessions.get(raw.id)!;
    try {
      const d = await s.driver.verdict('auth', [s, { method: auth.method, username: auth.username ?? '', password: auth.password ?? '', authzid: (auth as { authzid?: string }).authzid || undefined }], s.log);
      if (d.verdict?.kind === 'accept') {
        s.log.info({ user: auth.username, plugin: d.plugin }, 'authenticated');
        s.authMethod = auth.method;
        this.metrics.authResult(s.metricsLabel, 'success');
        return cb(null, { user: auth.username ?? '' });
      }
      s.log.warn({ user: auth.username, client: raw.remoteAddress }, 'authentication failed');
      this.metrics.authResult(s.metricsLabel, 'failure');
      this.answer(s, d.verdict ?? { kind: 'reject', reply: Replies.authFailed }, cb);
    } catch (err) {
      s.log.error({ err }, 'auth failed');
      cb(replyError(Replies.pluginFailure));
    }
  }

  private async onMailFrom(address: SMTPServerAddress, raw: SMTPServerSession, cb: (err?: Error | null) => void): Promise<void> {
    const s = this.sessions.get(raw.id)!;
    try {
      this.summarize(s, 'abandoned');
      if (s.listener.auth === 'required' && !raw.user) {
        return cb(replyError({ code: 530, enhanced: '5.7.0', text: 'Authentication required' }));
      }
      const badParam = unadvertisedParameter('MAIL', address.args, this.authOffered(raw, s));
      if (badParam) return cb(replyError(badParam));
      if (s.connectChecked !== s.remoteAddress) {
        // XCLIENT from a listed proxy replaced the client: judge the new client as at connect.
        s.log.info({ peer: s.peerAddress, client: s.remoteAddress, proxied: s.proxied }, 'client address from XCLIENT');
        s.connectChecked = s.remoteAddress;
        const c = await s.driver.verdict('connect', [s], s.log);
        if (c.verdict && c.verdict.kind !== 'accept') return this.answer(s, c.verdict, cb);
      }
      const privileged = this.diskGuard.isPrivileged({ remoteAddress: raw.remoteAddress, user: s.user });
      if (!(await this.diskGuard.hasRoom(raw.remoteAddress, privileged))) return cb(replyError(Replies.insufficientStorage));
      const helo = s.helo ?? '';
      if (s.heloChecked !== helo) {
        const d = await s.driver.verdict('helo', [s, helo], s.log);
        if (d.verdict && d.verdict.kind !== 'accept') return this.answer(s, d.verdict, cb);
        s.heloChecked = helo;
      }
      if (nonAscii(address.address)) return cb(replyError(Replies.nonAsciiAddress));
      const txn = new TransactionState(newQueueId(), s, toAddress(address.address, address.args), this.spool.tmpDir);
      s.txn = txn;
      const d = await s.driver.verdict('mail', [txn, txn.mailFrom], s.log);
      if (d.verdict && d.verdict.kind !== 'accept') {
        s.txn = undefined;
        return this.answer(s, d.verdict, cb);
      }
      cb();
    } catch (err) {
      s.log.error({ err }, 'MAIL FROM failed');
      cb(replyError(Replies.pluginFailure));
    }
  }

  private async onRcptTo(address: SMTPServerAddress, raw: SMTPServerSession, cb: (err?: Error | null) => void): Promise<void> {
    const s = this.sessions.get(raw.id)!;
    const txn = s.txn;
    try {
      if (!txn) return cb(replyError({ code: 503, enhanced: '5.5.1', text: 'Need MAIL command first' }));
      const badParam = unadvertisedParameter('RCPT', address.args, false);
      if (badParam) return cb(replyError(badParam));
      if (txn.recipients.length >= s.config.limits.recipients) {
        this.guards.get(raw.id)?.noteOvershoot();
        return cb(replyError(Replies.tooManyRecipients));
      }
      if (isBarePostmaster(address.address)) return this.acceptPostmaster(s, txn, address, cb);
      if (nonAscii(address.address)) return cb(replyError(Replies.nonAsciiAddress));
      const to = toAddress(address.address, address.args);
      const d = await s.driver.verdict('rcpt', [txn, to], s.log);
      if (d.verdict?.kind === 'accept') {
        txn.recipients.push(to);
        return cb();
      }
      // Deny by default: a recipient nobody accepted is not relayed.
      const v: Verdict = d.verdict ?? { kind: 'reject', reply: Replies.unableToRelay };
      if (!d.verdict) s.log.info({ rcpt: to.address, client: raw.remoteAddress }, 'no plugin accepted the recipient: unable to relay');
      (txn.notes as Record<string, unknown>)['rejectedRecipients'] = [...((txn.notes['rejectedRecipients'] as string[]) ?? []), to.address];
      this.answer(s, v, cb);
    } catch (err) {
      s.log.error({ err }, 'RCPT TO failed');
      cb(replyError(Replies.pluginFailure));
    }
  }

  private onData(stream: SMTPServerDataStream, raw: SMTPServerSession, cb: (err?: Error | null, message?: string) => void): Promise<void> {
    stream.on('error', () => undefined); // a client that leaves mid-DATA: handled by the intake
    const abort = new AbortController();
    const done = this.receive(stream, raw, abort.signal, cb).finally(() => {
      this.intakes.delete(raw.id);
      // Stopping: the real reply has gone out; now the connection closes.
      const c = this.connections.get(raw.id);
      if (this.stopping && c) setImmediate(() => this.goodbye(c));
    });
    this.intakes.set(raw.id, { abort, stream, done });
    return done;
  }

  private async receive(stream: SMTPServerDataStream, raw: SMTPServerSession, signal: AbortSignal, cb: (err?: Error | null, message?: string) => void): Promise<void> {
    const s = this.sessions.get(raw.id)!;
    const txn = s.txn!;
    const progress: { bytes: number; endedAt?: number } = { bytes: 0 };
    const watchdog = this.dataRateWatchdog(s, progress);
    try {
      const result = await receiveMessage(stream, txn, {
        signal,
        normalizeLineEndings: s.config.bareLineEndings.normalize.contains(raw.remoteAddress),
        limits: s.config.limits,
        progress,
        driver: s.driver,
        spool: this.spool,
        log: s.log.child({ txn: txn.id }),
        headers: () => this.receivedHeader(s, txn) + txn.added.join(''),
        onCommitted: (m) => this.queue.add(m),
        meta: {
          id: txn.id,
          mailFrom: txn.mailFrom.address,
          recipients: txn.recipients.map((r) => r.address),
          client: { ip: raw.remoteAddress, helo: s.helo, user: s.user },
        },
      });
      this.summarize(s, result.accepted ? 'accepted' : 'rejected', result.reply, result.size);
      if (progress.endedAt !== undefined) this.metrics.dataReplied((performance.now() - progress.endedAt) / 1000);
      s.txn = undefined;
      if (result.accepted) cb(null, `${result.reply.enhanced} ${result.reply.text}`);
      else cb(replyError(result.reply));
      if (progress.endedAt !== undefined) this.onDataReply?.({ ms: performance.now() - progress.endedAt, accepted: result.accepted, size: result.size, sessions: this.sessions.size });
    } catch (err) {
      s.log.error({ err }, 'DATA failed');
      this.summarize(s, 'rejected', Replies.pluginFailure, 0);
      s.txn = undefined;
      cb(replyError(Replies.pluginFailure));
    } finally {
      if (watchdog) clearInterval(watchdog);
    }
  }

  /** `RCPT TO:<postmaster>`: accepted from anyone, routed to the postmaster address (postmaster.ts). */
  private acceptPostmaster(s: SessionState, txn: TransactionState, address: SMTPServerAddress, cb: (err?: Error | null) => void): void {
    const target = postmasterAddress(this.config.postmaster, this.container);
    if (!target) {
      s.log.warn({ client: s.remoteAddress }, 'RCPT TO:<postmaster> refused: no postmaster address (set postmaster: in the config, or host a domain)');
      return cb(replyError({ code: 550, enhanced: '5.1.1', text: 'No postmaster mailbox is configured here' }));
    }
    // `<postmaster>` twice (or beside the address itself) is one recipient.
    if (!txn.recipients.some((r) => r.address.toLowerCase() === target.toLowerCase())) txn.recipients.push(toAddress(target, address.args));
    s.log.info({ rcpt: address.address, routedTo: target, client: s.remoteAddress }, 'postmaster recipient accepted');
    cb();
  }

  /** Whether AUTH is offered on this connection now (then MAIL FROM's AUTH= parameter is allowed). */
  private authOffered(raw: SMTPServerSession, s: SessionState): boolean {
    const disabled = (raw as { disabledCommands?: string[] }).disabledCommands;
    return s.listener.auth !== 'off' && !(disabled ?? []).includes('AUTH');
  }

  /** Closes a connection whose DATA arrives slower than limits.minDataRate (slowloris). */
  private dataRateWatchdog(s: SessionState, progress: { bytes: number }): NodeJS.Timeout | undefined {
    const { minDataRate, dataRateWindow } = s.config.limits;
    if (!minDataRate || !dataRateWindow) return undefined;
    let last = 0;
    const timer = setInterval(() => {
      const got = progress.bytes - last;
      last = progress.bytes;
      if (got * 1000 < minDataRate * dataRateWindow) {
        s.log.warn({ client: s.remoteAddress, bytes: got, windowMs: dataRateWindow }, 'DATA too slow, closing connection');
        clearInterval(timer);
        s.connection?.send(Replies.tooSlow.code, `${Replies.tooSlow.enhanced} ${Replies.tooSlow.text}`);
        s.connection?.close();
      }
    }, dataRateWindow);
    timer.unref();
    return timer;
  }

  /** Re-reads the TLS key and certificate (SIGHUP): new handshakes use them, sessions stay up. */
  reloadTls(): void {
    if (!this.config.tls) return;
    const key = readFileSync(path.resolve(this.configDir, this.config.tls.key));
    const cert = readFileSync(path.resolve(this.configDir, this.config.tls.cert));
    for (const { server } of this.servers) (server as unknown as { updateSecureContext(o: object): void }).updateSecureContext({ key, cert });
    this.log.info('TLS key and certificate reloaded');
  }

  private async onClose(raw: SMTPServerSession): Promise<void> {
    const s = this.sessions.get(raw.id);
    if (!s) return;
    this.sessions.delete(raw.id);
    if (s.timer) clearTimeout(s.timer);
    this.summarize(s, 'abandoned');
    try {
      await s.driver.observe('disconnect', [s], s.log);
    } finally {
      s.container.dispose?.();
      this.releaseDriver(s.driver);
    }
  }

  private releaseDriver(driver: PluginDriver): void {
    const n = (this.driverUsers.get(driver) ?? 1) - 1;
    if (n > 0) this.driverUsers.set(driver, n);
    else this.driverUsers.delete(driver);
    this.closeIfUnused(driver);
  }

  private closeIfUnused(driver: PluginDriver): void {
    const r = this.retired.get(driver);
    if (!r || !r.graceOver || this.driverUsers.has(driver)) return;
    this.retired.delete(driver);
    void driver.close();
  }

  /** Re-reads the config file this relay was started with and applies it (see `reload`). */
  async reloadFromFile(): Promise<{ plugins: string[] }> {
    const { loadConfigFile } = await import('./config.js');
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
    const run = prev.catch(() => undefined).then(() => this.applyConfig(next));
    this.reloading = run;
    return run;
  }

  private async applyConfig(next: RelayConfig): Promise<{ plugins: string[] }> {
    try {
      const { ConfigError } = await import('./config.js');
      const fixed: Array<[string, unknown, unknown]> = [
        ['listen', this.config.listen, next.listen],
        ['spool.dir', path.resolve(this.configDir, this.config.spool.dir), path.resolve(this.configDir, next.spool.dir)],
        ['admin', this.config.admin, next.admin],
        ['log.file', this.config.log.file, next.log.file],
        ['sharedState', this.config.sharedState, next.sharedState],
      ];
      const problems = fixed.filter(([, a, b]) => JSON.stringify(a) !== JSON.stringify(b)).map(([key]) => ({ path: key, message: 'cannot change while the relay runs; restart it to apply this change (the running configuration is kept)' }));
      let tls: { key: Buffer; cert: Buffer } | undefined;
      if (next.tls) {
        try {
          tls = { key: readFileSync(path.resolve(this.configDir, next.tls.key)), cert: readFileSync(path.resolve(this.configDir, next.tls.cert)) };
        } catch (err) {
          problems.push({ path: 'tls', message: `cannot read the key or certificate: ${(err as Error).message}` });
        }
      }
      if (problems.length) throw new ConfigError(this.configFile, problems);
      // The new plugins see the new config and add their checks to a new gate; on failure the
      // running ones are put back.
      this.container.registerInstance(Tokens.Config, next);
      Relay.registerGateAndGuard(this.container, next, this.configDir, this.log);
      let plugins: LoadedPlugin[];
      try {
        plugins = await loadPlugins(next.plugins, { file: this.configFile, configDir: this.configDir, container: this.container, log: this.log, builtins: this.opts.builtins, resolveFrom: this.opts.resolveFrom, registry: this.metrics.registry });
      } catch (err) {
        this.container.registerInstance(Tokens.Config, this._config);
        this.container.registerInstance(Tokens.ConnectionGate, this.gate);
        this.container.registerInstance(Tokens.DiskGuard, this.diskGuard);
        throw err;
      }
      const driver = new PluginDriver(plugins, this.log, this.metrics);
      const old = this._driver;
      this._driver = driver;
      this._config = next;
      this.gate = this.container.resolve<ConnectionGate>(Tokens.ConnectionGate);
      this.diskGuard = this.container.resolve<DiskGuard>(Tokens.DiskGuard);
      this.container.registerInstance(Tokens.PluginDriver, driver);
      this.queue.setDriver(driver, { hostname: next.hostname, ...next.delivery });
      for (const { server } of this.servers) {
        const o = (server as unknown as { options: Record<string, unknown> }).options;
        o['name'] = next.hostname;
        o['size'] = next.limits.messageSize;
        o['maxClients'] = next.limits.connections;
        o['socketTimeout'] = next.limits.idleTimeout;
        if (tls) (server as unknown as { updateSecureContext(o: object): void }).updateSecureContext(tls);
      }
      const entry = { graceOver: false };
      this.retired.set(old, entry);
      setTimeout(() => {
        entry.graceOver = true;
        this.closeIfUnused(old);
      }, 30_000).unref();
      this.metrics.reloaded(true);
      const names = plugins.map((p) => p.instance.name);
      this.log.info({ plugins: names, openSessions: this.driverUsers.get(old) ?? 0 }, 'configuration reloaded: new sessions use it');
      return { plugins: names };
    } catch (err) {
      this.metrics.reloaded(false);
      this.log.error({ err: { message: (err as Error).message } }, `configuration reload failed, keeping the running configuration: ${(err as Error).message}`);
      throw err;
    }
  }

  /** Turns a verdict into the smtp-server callback, with our exact reply text. */
  private answer(s: SessionState, v: Verdict | undefined, cb: (err?: Error | null) => void): void {
    if (!v || v.kind === 'accept') return cb();
    cb(replyError(v.reply));
    if (v.kind === 'disconnect') setImmediate(() => s.connection?.close());
  }

  /** One log line per transaction: who, what, the verdict and the reply. */
  private summarize(s: SessionState, verdict: 'accepted' | 'rejected' | 'abandoned', reply?: Reply, size?: number): void {
    const txn = s.txn;
    if (!txn || txn.summarized) return;
    txn.summarized = true;
    this.metrics.transaction(verdict === 'rejected' && reply && reply.code < 500 ? 'tempfailed' : verdict, size);
    s.log.info(
      {
        txn: txn.id,
        client: s.remoteAddress,
        // The real TCP peer is always logged beside the client; how the client was learnt when they differ.
        peer: s.peerAddress,
        proxied: s.proxied,
        forwarded: s.forwarded,
        helo: s.helo,
        user: s.user,
        from: txn.mailFrom.address,
        rcpts: txn.recipients.map((r) => r.address),
        rejectedRcpts: txn.notes['rejectedRecipients'],
        // What plugins changed (txn.edits), by plugin, in order; the envelope above is as received.
        edits: txn.edits.edits.length ? txn.edits.summary() : undefined,
        size,
        verdict,
        reply: reply ? formatReply(reply) : undefined,
        durationMs: Date.now() - txn.started,
      },
      'transaction',
    );
  }

  private receivedHeader(s: SessionState, txn: TransactionState): string {
    const clean = (v: string) => v.replace(/[^\x21-\x7e]/g, '?').slice(0, 255);
    const proto = (s.raw.openingCommand === 'HELO' ? 'SMTP' : 'ESMTP') + (s.secure ? 'S' : '') + (s.user ? 'A' : '');
    const forPart = txn.recipients.length === 1 ? `\r\n\tfor <${clean(txn.recipients[0]!.address)}>` : '';
    const date = new Date().toUTCString().replace(/GMT$/, '+0000');
    const origin = s.origin;
    const via = origin.proxied ? ` (via [${clean(origin.peer)}] ${origin.proxied === 'xclient' ? 'XCLIENT' : 'PROXY'})` : '';
    const fwd = origin.forwarded?.addr ? ` (XFORWARD from [${clean(origin.forwarded.addr)}] by [${clean(origin.peer)}])` : '';
    return `Received: from ${clean(s.helo ?? 'unknown')} ([${s.remoteAddress}])${via}${fwd}\r\n\tby ${clean(s.config.hostname)} (Portcullis) with ${proto} id ${txn.id}${forPart};\r\n\t${date}\r\n`;
  }
}

/** The version of an installed dependency (for `portcullis status` and `--version`). */
export async function installedVersion(pkg: string): Promise<string | undefined> {
  try {
    const { createRequire } = await import('node:module');
    const req = createRequire(import.meta.url);
    let dir = path.dirname(req.resolve(pkg));
    for (; dir !== path.dirname(dir); dir = path.dirname(dir)) {
      try {
        const json = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
        if (json.name === pkg) return json.version;
      } catch {
        /* keep looking upwards */
      }
    }
  } catch {
    /* not installed */
  }
  return undefined;
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
