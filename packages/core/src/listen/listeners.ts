import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Logger } from 'pino';
import type { Session } from '../api/types.js';
import type { ListenerConfig, RelayConfig } from '../config/schema.js';
import type { NetworkList } from '../config/networks.js';
import { canRewriteReplies, replyCodesTap } from '../adapter/smtp-server-replies.js';
import { hookConnections, installConnectionTaps, markSecure, peerOf, serveSocket, setGreetingDelay, setNoDelay, socketPeer, socketTag, type ConnectionTaps as Taps } from '../adapter/smtp-server.js';
import { formatReply, Replies } from '../api/verdicts.js';
import type { HandedSlot } from './connection-gate.js';
import type { RelayMetrics } from '../telemetry/metrics.js';
import { installProxyCommandTrust, installProxyHeaderTrust, proxyServerOptions } from './proxy-trust.js';
import { asSocket } from './stream-socket.js';
import type { ConnectionLike, Connections } from './connections.js';

type Callback = (err?: Error | null) => void;

/** The SMTP phase handlers a listener calls (the session and intake phases; the relay hands them over). */
export interface PhaseHandlers {
  connect(raw: SMTPServerSession, listener: Session['listener'], label: string, disabled: readonly string[], cb: Callback, proxyPeers: NetworkList): Promise<void>;
  auth(auth: SMTPServerAuthentication, raw: SMTPServerSession, cb: (err: Error | null | undefined, response?: { user: string }) => void): Promise<void>;
  mail(address: SMTPServerAddress, raw: SMTPServerSession, cb: Callback): Promise<void>;
  rcpt(address: SMTPServerAddress, raw: SMTPServerSession, cb: Callback): Promise<void>;
  data(stream: SMTPServerDataStream, raw: SMTPServerSession, cb: (err?: Error | null, message?: string) => void): Promise<void>;
  close(raw: SMTPServerSession): Promise<void>;
}

/** Per-connection policy of later phases (the session guards): their taps, each list in the order it runs. */
export interface ConnectionTaps {
  opened(c: ConnectionLike): Taps;
  closed(id: string): void;
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
const listenerName = (l: ListenerConfig, port = l.port) => l.name ?? `${l.host}:${port}`;
/** A handed socket's name until its connection object appears: listener index and TCP peer (unique on a listener while the socket is open). */
const handedKey = (index: number, peer: string): string => `${index}|${peer}`;

/** One smtp-server per `listen` entry: created, listening, reconfigured on a reload, closed. */
export class Listeners {
  readonly servers: Array<{ listener: ListenerConfig; server: SMTPServer; address?: AddressInfo }> = [];
  /** Handler calls still running: a stop waits for them. */
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Listeners (index in `listen`) whose sockets the worker mode's primary accepts and hands over (`take`). */
  private handed: ReadonlyMap<number, number> = new Map();
  /** Slots of handed sockets not yet seen as a connection, by listener and `address|port` (see `take`). */
  private readonly handedSlots = new Map<string, HandedSlot>();
  private closed = false;

  constructor(
    private readonly config: () => RelayConfig,
    private readonly configDir: string,
    private readonly connections: Connections,
    private readonly handlers: PhaseHandlers,
    private readonly taps: ConnectionTaps,
    private readonly metrics: RelayMetrics,
    private readonly log: Logger,
  ) {}

  /**
   * Creates every listener; with `listen` also opens its port (else clients come in through
   * connectStream). `handed`: listeners (index → the port the primary bound) that open no socket here: the worker
   * mode's primary accepts their connections and hands them over (`take`).
   */
  async start(listen: boolean, override: boolean, handed: ReadonlyMap<number, number> = new Map()): Promise<void> {
    const config = this.config();
    const tls = config.tls ? { key: readFileSync(path.resolve(this.configDir, config.tls.key)), cert: readFileSync(path.resolve(this.configDir, config.tls.cert)) } : undefined;
    this.handed = listen ? handed : new Map();
    for (const [i, listener] of config.listen.entries()) {
      const server = this.create(listener, tls, override, i);
      const port = this.handed.get(i);
      if (!listen || port !== undefined) {
        this.servers.push({ listener, server, address: { address: listener.host, family: listener.host.includes(':') ? 'IPv6' : 'IPv4', port: port ?? listener.port } });
        if (port !== undefined) this.log.info({ listener: listenerName(listener, port), tls: listener.tls, auth: listener.auth }, 'listening (connections accepted by the primary and handed over)');
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
      this.log.info({ listener: listenerName(listener, address.port), tls: listener.tls, auth: listener.auth }, 'listening');
    }
  }

  /** Serves one SMTP client over any duplex stream, as if it had connected to a listener. */
  connectStream(stream: Duplex, client: StreamClient = {}): void {
    const entry = typeof client.listener === 'string'
      ? this.servers.find((s) => listenerName(s.listener) === client.listener)
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

  /**
   * A connection the worker mode's primary accepted for listener `index`, with the per-address slot
   * it decided (cluster/handoff.ts). Served exactly as one this listener accepted; the gate takes the
   * slot instead of asking for one. A socket that arrives once the listeners are closed (a stop) gets
   * 421 4.3.2, as a client that connects just before a stop does.
   */
  take(index: number, socket: Socket, slot: HandedSlot): void {
    socket.on('error', () => undefined);
    const entry = this.servers[index];
    if (this.closed || !entry || !this.handed.has(index)) {
      slot.release();
      socket.end(`${formatReply(Replies.shuttingDown)}\r\n`);
      return;
    }
    // The connection object appears a turn later (after a TLS handshake on an implicit TLS
    // listener): keyed by the peer, which is unique on this listener while the socket is open.
    const key = handedKey(index, peerOf(socket));
    this.handedSlots.set(key, slot);
    // Closed before it became a connection (a failed handshake, a reset): the slot goes back here.
    socket.once('close', () => {
      if (this.handedSlots.get(key) === slot) this.handedSlots.delete(key), slot.release();
    });
    try {
      serveSocket(entry.server, socket);
    } catch (err) {
      this.log.warn({ err }, 'a handed connection could not be served');
      socket.destroy();
    }
  }

  /** The handed slot of a new connection on listener `index` (taken: from now on the gate owes its release). */
  private handedSlot(index: number, c: ConnectionLike): HandedSlot | undefined {
    if (!this.handedSlots.size) return undefined;
    const key = handedKey(index, socketPeer(c));
    const slot = this.handedSlots.get(key);
    if (slot) this.handedSlots.delete(key);
    return slot;
  }

  /** Where each listener ended up (useful with `port: 0`). */
  addresses(): Array<{ name: string; host: string; port: number }> {
    return this.servers.map((s) => ({ name: listenerName(s.listener, s.address!.port), host: s.listener.host, port: s.address!.port }));
  }

  openCount(): number {
    return this.servers.filter((s, i) => (this.handed.has(i) ? !this.closed : (s.server as unknown as { server: { listening: boolean } }).server.listening)).length;
  }

  /** A reload: the options smtp-server reads per connection, and new TLS material for new handshakes. */
  reconfigure(next: RelayConfig, tls: { key: Buffer; cert: Buffer } | undefined): void {
    for (const { server } of this.servers) {
      const o = (server as unknown as { options: Record<string, unknown> }).options;
      o['name'] = next.hostname;
      o['size'] = next.limits.messageSize;
      o['maxClients'] = next.limits.connections;
      o['socketTimeout'] = next.limits.idleTimeout;
      if (tls) (server as unknown as { updateSecureContext(o: object): void }).updateSecureContext(tls);
    }
  }

  updateSecureContext(tls: { key: Buffer; cert: Buffer }): void {
    for (const { server } of this.servers) (server as unknown as { updateSecureContext(o: object): void }).updateSecureContext(tls);
  }

  /** Stops accepting (new clients get nothing); open connections stay. */
  close(): Promise<unknown> {
    this.closed = true;
    return Promise.all(this.servers.map((s) => new Promise<void>((resolve) => {
      (s.server as unknown as { server: { close(cb: () => void): void } }).server.close(() => resolve());
      setTimeout(resolve, 100).unref();
    })));
  }

  /** Every handler call still running, settled or not. */
  running(): Promise<unknown> {
    return Promise.allSettled([...this.inFlight]);
  }

  private track(p: Promise<unknown>): void {
    this.inFlight.add(p);
    // One reaction for both outcomes (finally + catch made three promises per handler call).
    const done = () => void this.inFlight.delete(p);
    p.then(done, done);
  }

  private create(listener: ListenerConfig, tls: { key: Buffer; cert: Buffer } | undefined, override: boolean, index: number): SMTPServer {
    const config = this.config();
    const h = this.handlers;
    const rewriteReplies = canRewriteReplies();
    const info: Session['listener'] = { name: listenerName(listener), port: listener.port, tls: listener.tls, auth: listener.auth };
    // The metrics label: the listener's name, else its port; never its address (see metrics.ts).
    const label = listener.name ?? String(listener.port);
    const limits = config.limits;
    const disabled: string[] = [];
    if (listener.tls !== 'starttls') disabled.push('STARTTLS');
    if (listener.auth === 'off') disabled.push('AUTH');
    const server = new SMTPServer({
      name: config.hostname,
      banner: 'Portcullis',
      secure: listener.tls === 'implicit',
      ...(tls ?? {}),
      minVersion: config.tls?.minVersion ?? 'TLSv1.2',
      hideSTARTTLS: listener.tls !== 'starttls',
      disabledCommands: disabled,
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: true, // enforced in the MAIL phase with our own reply text
      allowInsecureAuth: false,
      size: limits.messageSize,
      maxClients: limits.connections, // the hard ceiling for everyone; the gate keeps room for trusted clients below it
      socketTimeout: limits.idleTimeout,
      closeTimeout: 30_000,
      disableReverseLookup: true, // never ask a resolver we did not configure
      // We write every enhanced code ourselves, once (adapter/smtp-server-replies.ts); the keyword is
      // advertised only where that rewriting is in place, else the library's own replies would carry none.
      hideENHANCEDSTATUSCODES: !rewriteReplies,
      hideSMTPUTF8: true,
      hideREQUIRETLS: true,
      hideDSN: true,
      // Proxy commands only from the networks an operator named; the matching is ours (proxy-trust.ts).
      ...proxyServerOptions(listener),
      logger: false,
      onConnect: (session, cb) => this.track(h.connect(session, info, label, disabled, this.counted('connect', cb, false), listener.proxyProtocol)),
      onSecure: (socket, session, cb) => {
        // AUTH is offered once the connection is encrypted (never before: see the connect phase).
        session.disabledCommands = [...disabled];
        this.metrics.tlsHandshake(label, (socket as { getProtocol?(): string | null }).getProtocol?.() ?? 'unknown');
        cb();
      },
      onAuth: (auth, session, cb) => this.track(h.auth(auth, session, this.counted('auth', cb as Callback, false) as typeof cb)),
      onMailFrom: (address, session, cb) => this.track(h.mail(address, session, this.counted('mail', cb))),
      onRcptTo: (address, session, cb) => this.track(h.rcpt(address, session, this.counted('rcpt', cb))),
      onData: (stream, session, cb) => this.track(h.data(stream, session, this.counted('data', cb as Callback) as typeof cb)),
      onClose: (session) => void h.close(session),
    } as ConstructorParameters<typeof SMTPServer>[0]);

    installProxyHeaderTrust(server, listener);
    const delay = listener.greetingDelay ?? (listener.auth === 'required' ? 0 : 100);
    this.metrics.listenerKnown(label);
    // Behind a PROXY protocol balancer the client's address is known only after the header is read:
    // the gate then runs in the connect phase instead.
    const gateEarly = !listener.proxyProtocol.size;
    const connections = this.connections;
    // Each new connection, before the library's init(): socket options, greeting delay, the gate, taps.
    hookConnections<ConnectionLike>(server, {
      added: (c, add, open) => {
        setNoDelay(c);
        const streamClient = socketTag<StreamClient>(c, STREAM_CLIENT);
        if (streamClient?.secure) markSecure(c);
        // An XCLIENT proxy the operator named speaks for many clients (and limits them itself): the
        // gate would count them all as one address. Their rates still count, per client, in the hooks.
        if (listener.xclient.contains(c.remoteAddress)) connections.bypassGate(c.id);
        if (gateEarly) connections.admit(c, info, label, this.handedSlot(index, c));
        // An in-memory client is a test: no early-talker pause.
        if (override) setGreetingDelay(c, streamClient ? 0 : delay, () => connections.refusal(c.id));
        installProxyCommandTrust(c, listener);
        // One wrapper per library method (adapter/smtp-server.ts): the later phases' taps, then our reply wording.
        const taps = this.taps.opened(c);
        installConnectionTaps(c, { ...taps, send: rewriteReplies ? [...taps.send, replyCodesTap(c)] : taps.send });
        connections.added(c);
        this.metrics.connectionOpened(label);
        add();
        // smtp-server answers 421 itself in init() past maxClients: count it here, where it decides.
        if (open() > this.config().limits.connections) this.metrics.connectionRefused(label, 'max_clients');
      },
      deleted: (c) => {
        if (connections.has(c.id)) this.metrics.connectionClosed(label);
        if (connections.removed(c.id)) this.taps.closed(c.id);
      },
    });
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
}
