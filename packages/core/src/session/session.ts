import type { SMTPServerSession } from 'smtp-server';
import type { DependencyContainer } from 'tsyringe';
import type { Logger } from 'pino';
import type { Address, MessageEdits, Session, Transaction } from '../api/types.js';
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
  private views: Map<string, this> | undefined;
  /** The transaction itself, also as read through a plugin's view. */
  private readonly root: TransactionState = this;
  constructor(readonly id: string, readonly session: SessionState, readonly mailFrom: Address, readonly edits: EditRecorder) {}
  /**
   * The transaction as plugin `name` sees it (the driver hands it to the plugin's hooks): the same
   * object in every hook, everything read through to this one, except `edits`, which records the
   * plugin's name with each change (the transaction log line says who changed what).
   */
  [FOR_PLUGIN](name: string): this {
    // Called on a view too (the milter records as `milter/<name>`): views are made from the root.
    const root = this.root as this;
    let v = root.views?.get(name);
    if (!v) {
      v = Object.create(root, { edits: { value: root.edits.as(name), enumerable: true } }) as this;
      (root.views ??= new Map()).set(name, v);
    }
    return v;
  }
  addHeader(name: string, value: string): void {
    if (!/^[!-9;-~]+$/.test(name)) throw new TypeError(`addHeader: invalid header name ${JSON.stringify(name)}`);
    this.added.push(`${name}: ${value.replace(/\r?\n(?![ \t])/g, '\r\n ').replace(/\r(?!\n)/g, ' ')}\r\n`);
  }
}
