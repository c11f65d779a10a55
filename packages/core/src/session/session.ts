import type { SMTPServerSession } from 'smtp-server';
import type { DependencyContainer } from 'tsyringe';
import type { Logger } from 'pino';
import type { Address, MessageEdits, Session, Transaction } from '../api/types.js';
import type { MessageHeaders } from '../api/message-headers.js';
import type { RelayConfig } from '../config/schema.js';
import type { PluginDriver } from '../plugins/driver.js';
import { FOR_PLUGIN, type PluginViews } from '../plugins/scope.js';
import type { ConnectionLike } from '../listen/connections.js';
import { socketPeerAddress, tlsProtocol } from '../adapter/smtp-server.js';
import { clientOrigin, type ClientOrigin } from './client-origin.js';

/** One SMTP session as plugins see it (`Session`), with the relay's own bookkeeping beside it. */
export class SessionState implements Session {
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
    /** The session's child container, or what makes it on first use (most sessions never ask). */
    private readonly containerOf: DependencyContainer | ((session: SessionState) => DependencyContainer),
    readonly log: Logger,
    readonly connection: ConnectionLike | undefined,
    /** The plugins and config this session started with: a reload moves new sessions only. */
    readonly driver: PluginDriver,
    readonly config: RelayConfig,
    private readonly viaProxyHeader: boolean,
  ) {}
  private child?: DependencyContainer;
  /**
   * Child container of this connection. Made on first read: tsyringe's child container (its maps, and
   * an async dispose at close) was a per-connection cost that no bundled plugin's hook reads.
   */
  get container(): DependencyContainer {
    return (this.child ??= typeof this.containerOf === 'function' ? this.containerOf(this) : this.containerOf);
  }
  /** The child container if something made it (what close disposes), else undefined. */
  get madeContainer(): DependencyContainer | undefined {
    return this.child;
  }
  get id() { return this.raw.id; }
  /** The address policy trusts: the TCP peer, a listed proxy's PROXY header or XCLIENT, never XFORWARD. */
  get remoteAddress() { return this.origin.client; }
  get peerAddress() { return this.origin.peer; }
  get proxied() { return this.origin.proxied; }
  get forwarded() { return this.origin.forwarded; }
  /** The origin while neither XCLIENT nor XFORWARD spoke (the usual session), for the address it was built from. */
  private plainOrigin?: { readonly remote: string; readonly origin: ClientOrigin };
  get origin(): ClientOrigin {
    // Read by every policy check (remoteAddress, several times a command): built once while only
    // the TCP peer (or a PROXY header) speaks; XCLIENT / XFORWARD can change it at any command.
    const raw = this.raw as SMTPServerSession & { xClient?: Map<string, unknown>; xForward?: Map<string, unknown> };
    const plain = !raw.xClient?.size && !raw.xForward?.size;
    if (plain && this.plainOrigin?.remote === raw.remoteAddress) return this.plainOrigin.origin;
    const origin = clientOrigin(this.raw, this.connection && socketPeerAddress(this.connection), this.viaProxyHeader);
    if (plain) this.plainOrigin = { remote: raw.remoteAddress, origin };
    return origin;
  }
  get remotePort() { return this.raw.remotePort; }
  get localAddress() { return this.raw.localAddress; }
  get localPort() { return this.raw.localPort; }
  get secure() { return this.raw.secure; }
  get helo() { return (this.raw.hostNameAppearsAs as string | false) || undefined; }
  get user() { return (this.raw.user as string | undefined) || undefined; }
  /** Set by the auth phase on success. */
  authMethod?: string;
  get tls(): Session['tls'] {
    const c = (this.raw as { tlsOptions?: { name?: string; version?: string } | false }).tlsOptions;
    if (!this.raw.secure || !c || !c.name) return undefined;
    // The protocol in use (getProtocol), not the cipher's minimum version that getCipher reports.
    const protocol = (this.connection && tlsProtocol(this.connection)) ?? c.version ?? undefined;
    const bits = /CHACHA20/i.test(c.name) ? 256 : Number(/(?:AES|CAMELLIA|ARIA)[_-]?(128|192|256)/i.exec(c.name)?.[1]) || undefined;
    return { protocol, cipher: c.name, ...(bits ? { bits } : {}) };
  }
}

/**
 * The transaction's edit recorder. Made by the intake's MessageEditRecorder (which also applies the
 * edits at end of data); the relay passes its factory in, so this phase does not import the intake.
 */
export interface EditRecorder extends MessageEdits {
  readonly edits: ReadonlyArray<unknown>;
  summary(): unknown;
  /** The edits as plugin `plugin` makes them (each change recorded with its name). */
  as(plugin: string): MessageEdits;
}

/** One mail transaction (MAIL FROM to the reply after DATA), as plugins see it (`Transaction`). */
export class TransactionState implements Transaction, PluginViews {
  readonly recipients: Address[] = [];
  readonly notes: Record<string, unknown> = {};
  readonly started = Date.now();
  readonly added: string[] = [];
  summarized = false;
  /** Set by the intake once the header section has arrived. */
  declare readonly headers?: MessageHeaders;
  private views: Map<string, TransactionView> | undefined;
  constructor(readonly id: string, readonly session: SessionState, readonly mailFrom: Address, readonly edits: EditRecorder) {}
  /**
   * The transaction as plugin `name` sees it (the driver hands it to the plugin's hooks): the same
   * object in every hook, every member read through to this one, except `edits`, which records the
   * plugin's name with each change (the transaction log line says who changed what).
   */
  [FOR_PLUGIN](name: string): Transaction {
    let v = this.views?.get(name);
    if (!v) (this.views ??= new Map()).set(name, (v = new TransactionView(this, name)));
    return v;
  }
  addHeader(name: string, value: string): void {
    if (!/^[!-9;-~]+$/.test(name)) throw new TypeError(`addHeader: invalid header name ${JSON.stringify(name)}`);
    this.added.push(`${name}: ${value.replace(/\r?\n(?![ \t])/g, '\r\n ').replace(/\r(?!\n)/g, ' ')}\r\n`);
  }
}

/**
 * One plugin's view of a transaction (TransactionState[FOR_PLUGIN]). A class of its own rather than
 * an `Object.create` of the transaction: a transaction made a prototype would turn every access to
 * it into a slow lookup (V8 prototype maps), which cost more than the AsyncLocalStorage it replaced.
 */
class TransactionView implements Transaction, PluginViews {
  private ownEdits: MessageEdits | undefined;
  constructor(
    private readonly root: TransactionState,
    private readonly plugin: string,
  ) {}
  get id(): string {
    return this.root.id;
  }
  get session(): Session {
    return this.root.session;
  }
  get mailFrom(): Address {
    return this.root.mailFrom;
  }
  get recipients(): readonly Address[] {
    return this.root.recipients;
  }
  get notes(): Record<string, unknown> {
    return this.root.notes;
  }
  get headers(): MessageHeaders | undefined {
    return this.root.headers;
  }
  /** Made on first use: most plugins never edit. */
  get edits(): MessageEdits {
    return (this.ownEdits ??= this.root.edits.as(this.plugin));
  }
  addHeader(name: string, value: string): void {
    this.root.addHeader(name, value);
  }
  /** Another name's view of the same transaction (the milter records as `milter/<name>`). */
  [FOR_PLUGIN](name: string): Transaction {
    return this.root[FOR_PLUGIN](name);
  }
}
