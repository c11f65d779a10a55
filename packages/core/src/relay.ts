import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { domainToASCII } from 'node:url';
import { Resolver } from 'node:dns/promises';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import type { Logger } from 'pino';
import { toAddress } from './address.js';
import type { ListenerConfig, RelayConfig } from './config-schema.js';
import { DeliveryQueue } from './delivery-queue.js';
import { ControlServer } from './control-server.js';
import { ConnectionGate, perAddressCheck, type ConnectionInfo } from './connection-gate.js';
import { defaultMinFree, DiskGuard } from './disk-guard.js';
import { canGuardSessions, SessionGuard } from './session-guard.js';
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
import type { PluginDefinition } from './plugin.js';
import { PluginDriver, type LoadedPlugin } from './plugin-driver.js';
import { loadPlugins } from './plugin-loader.js';
import { newQueueId, Spool } from './spool.js';
import { Tokens, type Clock } from './tokens.js';
import type { Address, Session, Transaction } from './types.js';
import { formatReply, replyError, Replies, type Reply, type Verdict } from './verdicts.js';
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
  /** Called after each reply to DATA: ms from the end of the data to the reply, bytes received (benchmarks). */
  readonly onDataReply?: (reply: { ms: number; accepted: boolean; size: number }) => void;
}

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
  constructor(
    readonly raw: SMTPServerSession,
    readonly listener: Session['listener'],
    readonly container: DependencyContainer,
    readonly log: Logger,
    readonly connection: ConnectionLike | undefined,
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
}

class TransactionState implements Transaction {
  readonly recipients: Address[] = [];
  readonly notes: Record<string, unknown> = {};
  readonly started = Date.now();
  readonly added: string[] = [];
  summarized = false;
  constructor(readonly id: string, readonly session: SessionState, readonly mailFrom: Address) {}
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
  readonly driver: PluginDriver;
  readonly spool: Spool;
  readonly queue: DeliveryQueue;
  private readonly servers: Array<{ listener: ListenerConfig; server: SMTPServer; address?: AddressInfo }> = [];
  private readonly sessions = new Map<string, SessionState>();
  private readonly connections = new Map<string, ConnectionLike>();
  /** Connections the gate admitted (each owes it a release when it closes), and those it refused. */
  private readonly admitted = new Map<string, ConnectionInfo>();
  private readonly refused = new Map<string, Reply>();
  private readonly ungated = new Set<string>();
  private readonly guards = new Map<string, SessionGuard>();
  readonly gate: ConnectionGate;
  readonly diskGuard: DiskGuard;
  readonly sharedState: SharedState;
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Transactions in DATA, by session id: what a graceful stop waits for (and aborts at drainTime). */
  private readonly intakes = new Map<string, { abort: AbortController; stream: SMTPServerDataStream; done: Promise<unknown> }>();
  private stopping = false;
  private control?: ControlServer;

  private constructor(
    readonly config: RelayConfig,
    readonly configDir: string,
    container: DependencyContainer,
    log: Logger,
    plugins: LoadedPlugin[],
    private readonly deliver: boolean,
    private readonly onDataReply?: RelayOptions['onDataReply'],
  ) {
    this.container = container;
    this.log = log;
    this.driver = new PluginDriver(plugins, log);
    container.registerInstance(Tokens.PluginDriver, this.driver);
    this.spool = container.resolve<Spool>(Tokens.Spool);
    this.gate = container.resolve<ConnectionGate>(Tokens.ConnectionGate);
    this.diskGuard = container.resolve<DiskGuard>(Tokens.DiskGuard);
    this.sharedState = container.resolve<SharedState>(Tokens.SharedState);
    this.queue = new DeliveryQueue(this.spool, this.driver, { hostname: config.hostname, ...config.delivery }, log.child({ part: 'delivery' }), container.resolve<Clock>(Tokens.Clock));
  }

  /** Validates plugins and sets them up; opens no port. Config errors are thrown as ConfigError. */
  static async create(opts: RelayOptions): Promise<Relay> {
    const config = opts.config;
    const file = opts.configFile ? path.resolve(opts.configFile) : '<inline config>';
    const configDir = opts.configFile ? path.dirname(file) : process.cwd();
    const log = opts.logger ?? createLogger(config.log.level);
    const container = rootContainer.createChildContainer();
    container.registerInstance(Tokens.Config, config);
    container.registerInstance(Tokens.Logger, log);
    container.registerInstance<Clock>(Tokens.Clock, Date.now);
    container.registerInstance(Tokens.Spool, new Spool(path.resolve(configDir, config.spool.dir), { inlineMax: config.spool.inlineMax, segmentSize: config.spool.segmentSize }));
    const resolver = new Resolver({ timeout: config.dns.timeout, tries: 2 });
    if (config.dns.servers?.length) resolver.setServers(config.dns.servers);
    container.registerInstance(Tokens.Resolver, resolver);
    container.registerInstance(Tokens.ListenAddresses, config.listen.map((l) => (l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`)));
    const gate = new ConnectionGate();
    // The core's own per-address limit runs first; plugins add their checks in setup.
    gate.add(perAddressCheck(config.limits.connectionsPerIp, Replies.tooManyConnections));
    container.registerInstance(Tokens.ConnectionGate, gate);
    const spoolDir = path.resolve(configDir, config.spool.dir);
    container.registerInstance(Tokens.DiskGuard, new DiskGuard(spoolDir, config.spool.minFree ?? defaultMinFree(config.limits.messageSize), log.child({ part: 'disk-guard' })));
    container.registerInstance(Tokens.SharedState, createSharedState({ redis: config.sharedState.redis && { url: config.sharedState.redis.url, keyPrefix: config.sharedState.redis.keyPrefix, timeoutMs: config.sharedState.redis.timeout } }, log));
    const plugins = await loadPlugins(config.plugins, { file, configDir, container, log, builtins: opts.builtins, resolveFrom: opts.resolveFrom });
    return new Relay(config, configDir, container, log, plugins, opts.deliver ?? true, opts.onDataReply);
  }

  /** Opens the spool, starts delivery, then the listeners. */
  async start(): Promise<void> {
    await this.spool.init();
    if (this.deliver) {
      await this.queue.start();
      this.control = new ControlServer(path.join(this.spool.dir, 'control.sock'), this.queue, this.log.child({ part: 'control' }));
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
    await Promise.allSettled([...this.intakes.values()].map((i) => i.done));
    for (const c of [...this.connections.values()]) this.goodbye(c);
    await waitAtMost(Promise.allSettled([...this.inFlight]), Math.max(1000, deadline - Date.now()));
    await this.control?.stop();
    await waitAtMost(this.queue.stop(), Math.max(1000, deadline - Date.now()));
    await this.driver.close();
    // Segment files stay open while the relay runs; a stopped relay holds no descriptor on the spool.
    await this.spool.close().catch((err: unknown) => this.log.warn({ err }, 'closing the spool failed'));
    await this.sharedState.close();
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
      onConnect: (session, cb) => this.track(this.onConnect(session, info, disabled, cb, listener.proxyProtocol)),
      onSecure: (_socket, session, cb) => {
        // AUTH is offered once the connection is encrypted (never before: see onConnect).
        session.disabledCommands = [...disabled];
        cb();
      },
      onAuth: (auth, session, cb) => this.track(this.onAuth(auth, session, cb)),
      onMailFrom: (address, session, cb) => this.track(this.onMailFrom(address, session, cb)),
      onRcptTo: (address, session, cb) => this.track(this.onRcptTo(address, session, cb)),
      onData: (stream, session, cb) => this.track(this.onData(stream, session, cb)),
      onClose: (session) => void this.onClose(session),
    } as ConstructorParameters<typeof SMTPServer>[0]);

    // smtp-server adds each new connection to this Set right before init(): the one place to
    // reach the connection object (socket options, greeting delay, per-IP accounting).
    installProxyHeaderTrust(server, listener);
    const conns = (server as unknown as { connections: Set<ConnectionLike> }).connections;
    const add = conns.add.bind(conns);
    const del = conns.delete.bind(conns);
    const delay = listener.greetingDelay ?? (listener.auth === 'required' ? 0 : 100);
    // Behind a PROXY protocol balancer the client's address is known only after the header is read:
    // the gate then runs in onConnect instead.
    const gateEarly = !listener.proxyProtocol.size;
    conns.add = (c: ConnectionLike) => {
      c._socket?.setNoDelay?.(true);
      // An XCLIENT proxy the operator named speaks for many clients (and limits them itself): the
      // gate would count them all as one address. Their rates still count, per client, in the hooks.
      if (listener.xclient.contains(c.remoteAddress)) this.ungated.add(c.id);
      if (gateEarly) this.admit(c, info);
      if (override) setGreetingDelay(c, delay, () => this.refused.get(c.id));
      installProxyCommandTrust(c, listener);
      if (rewriteReplies) installReplyCodes(c);
      if (guardPipelining) installPipeliningGuard(c, () => this.log.warn({ session: c.id, client: c.remoteAddress }, 'improper pipelining: message content sent before the 354 reply; DATA refused, connection closed'));
      if (canGuardSessions(c)) this.guards.set(c.id, SessionGuard.install(c, limits, this.log.child({ session: c.id })));
      this.connections.set(c.id, c);
      return add(c);
    };
    conns.delete = (c: ConnectionLike) => {
      if (this.connections.delete(c.id)) {
        this.refused.delete(c.id);
        this.ungated.delete(c.id);
        this.guards.get(c.id)?.dispose();
        this.guards.delete(c.id);
        const admitted = this.admitted.get(c.id);
        if (admitted) {
          this.admitted.delete(c.id);
          this.gate.release(admitted);
        }
      }
      return del(c);
    };
    return server;
  }

  /** Runs the connection gate once per connection; a refusal is answered before any greeting. */
  private admit(c: { id: string; remoteAddress: string }, listener: Session['listener']): Reply | undefined {
    if (this.ungated.has(c.id) || this.admitted.has(c.id) || this.refused.has(c.id)) return this.refused.get(c.id);
    const info: ConnectionInfo = { id: c.id, remoteAddress: c.remoteAddress, listener };
    const reply = this.gate.admit(info);
    if (reply) {
      this.refused.set(c.id, reply);
      this.refusals.log(this.log, 'warn', `${formatReply(reply)} ${c.remoteAddress}`, { client: c.remoteAddress, listener: listener.name, reply: formatReply(reply) }, 'connection refused at the gate');
    } else this.admitted.set(c.id, info);
    return reply;
  }
  private readonly refusals = new RepeatLog(10_000);

  private track(p: Promise<unknown>): void {
    this.inFlight.add(p);
    p.finally(() => this.inFlight.delete(p)).catch(() => undefined);
  }

  private async onConnect(raw: SMTPServerSession, listener: Session['listener'], disabled: readonly string[], cb: (err?: Error | null) => void, proxyPeers: NetworkList): Promise<void> {
    const connection = this.connections.get(raw.id);
    const container = this.container.createChildContainer();
    const log = this.log.child({ session: raw.id });
    const s = new SessionState(raw, listener, container, log, connection, proxyPeers.contains(connection?._socket.remoteAddress ?? ''));
    container.registerInstance(Tokens.Session, s);
    this.sessions.set(raw.id, s);
    // A session list replaces the server-wide one in smtp-server, so it repeats it. AUTH is neither
    // advertised nor accepted before TLS: credentials never cross the wire in clear.
    if (!raw.secure && !disabled.includes('AUTH')) raw.disabledCommands = [...disabled, 'AUTH'];
    try {
      // Normally decided before the greeting (conns.add); here for PROXY protocol listeners, whose
      // client address is known only now, and when the greeting override is unavailable.
      const refused = connection ? this.admit({ id: raw.id, remoteAddress: raw.remoteAddress }, listener) : undefined;
      if (refused) return cb(replyError(refused));
      s.timer = setTimeout(() => {
        log.warn({ client: raw.remoteAddress }, 'session time limit reached');
        connection?.send(Replies.sessionTimeout.code, `${Replies.sessionTimeout.enhanced} ${Replies.sessionTimeout.text}`);
        connection?.close();
      }, this.config.limits.sessionTimeout);
      s.timer.unref();
      s.connectChecked = s.remoteAddress;
      const d = await this.driver.verdict('connect', [s], log);
      this.answer(s, d.verdict, cb);
    } catch (err) {
      log.error({ err }, 'connect failed');
      cb(replyError(Replies.pluginFailure));
    }
  }

  private async onAuth(auth: SMTPServerAuthentication, raw: SMTPServerSession, cb: (err: Error | null | undefined, response?: { user: string }) => void): Promise<void> {
    const s = this.sessions.get(raw.id)!;
    try {
      const d = await this.driver.verdict('auth', [s, { method: auth.method, username: auth.username ?? '', password: auth.password ?? '', authzid: (auth as { authzid?: string }).authzid || undefined }], s.log);
      if (d.verdict?.kind === 'accept') {
        s.log.info({ user: auth.username, plugin: d.plugin }, 'authenticated');
        return cb(null, { user: auth.username ?? '' });
      }
      s.log.warn({ user: auth.username, client: raw.remoteAddress }, 'authentication failed');
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
        const c = await this.driver.verdict('connect', [s], s.log);
        if (c.verdict && c.verdict.kind !== 'accept') return this.answer(s, c.verdict, cb);
      }
      if (!(await this.diskGuard.hasRoom(raw.remoteAddress))) return cb(replyError(Replies.insufficientStorage));
      const helo = s.helo ?? '';
      if (s.heloChecked !== helo) {
        const d = await this.driver.verdict('helo', [s, helo], s.log);
        if (d.verdict && d.verdict.kind !== 'accept') return this.answer(s, d.verdict, cb);
        s.heloChecked = helo;
      }
      if (nonAscii(address.address)) return cb(replyError(Replies.nonAsciiAddress));
      const txn = new TransactionState(newQueueId(), s, toAddress(address.address, address.args));
      s.txn = txn;
      const d = await this.driver.verdict('mail', [txn, txn.mailFrom], s.log);
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
      if (txn.recipients.length >= this.config.limits.recipients) return cb(replyError(Replies.tooManyRecipients));
      if (isBarePostmaster(address.address)) return this.acceptPostmaster(s, txn, address, cb);
      if (nonAscii(address.address)) return cb(replyError(Replies.nonAsciiAddress));
      const to = toAddress(address.address, address.args);
      const d = await this.driver.verdict('rcpt', [txn, to], s.log);
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
        normalizeLineEndings: this.config.bareLineEndings.normalize.contains(raw.remoteAddress),
        limits: this.config.limits,
        progress,
        driver: this.driver,
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
      s.txn = undefined;
      if (result.accepted) cb(null, `${result.reply.enhanced} ${result.reply.text}`);
      else cb(replyError(result.reply));
      if (progress.endedAt !== undefined) this.onDataReply?.({ ms: performance.now() - progress.endedAt, accepted: result.accepted, size: result.size });
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
    const { minDataRate, dataRateWindow } = this.config.limits;
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
    await this.driver.observe('disconnect', [s], s.log);
    s.container.dispose?.();
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
    return `Received: from ${clean(s.helo ?? 'unknown')} ([${s.remoteAddress}])${via}${fwd}\r\n\tby ${clean(this.config.hostname)} (Portcullis) with ${proto} id ${txn.id}${forPart};\r\n\t${date}\r\n`;
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
