import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { sourceHash } from './source-hash.js';

/**
 * The smtp-server adapter: the library internals the core wraps or replaces, each beside its pin.
 *
 * Every method named here is pinned by the hash of its source in the installed version; one test
 * (`test/adapter-pins.test.ts`) compares `libraryHashes()` with this table. With another library
 * version the module that needs a method turns itself off (with a warning at start) or, for proxy
 * trust, the relay refuses to start; see each user.
 *
 *   SMTPConnection#init                  reproduced here with our delay (setGreetingDelay)
 *   SMTPConnection#send                  adapter/smtp-server-replies.ts wraps it (our reply texts)
 *   SMTPConnection#_onCommand            wrapped ONCE here (installCommandTaps): session guard, then pipelining guard
 *   SMTPConnection#_createParser         wrapped ONCE here: each new parser's _write gets the write taps
 *   SMTPConnection#_proxyCommandAllowed  replaced here (replaceProxyCommandCheck); the CIDR lists: listen/proxy-trust.ts
 *   SMTPServer#_expectsProxyHeader       replaced here (replaceProxyHeaderCheck); the CIDR lists: listen/proxy-trust.ts
 *   SMTPServer#connections (a Set)       its add/delete hooked here (hookConnections): listen/listeners.ts
 */
export const PINS = {
  version: '3.21.6',
  'SMTPConnection#init': '67b68fcaf9a0a35f2c2a118d31a3dc780c982d1f0ce83d654df4f4e92d4269d3',
  'SMTPConnection#send': 'ef984a1c077daba820a3d8a7975a3bb4e8a066ba0b321f26d0f73d5e612a5d5a',
  'SMTPConnection#_onCommand': 'ec126bdb02258772f8ae0d78087fdff99b027e2cad826f9a6bd3c4f818b525be',
  'SMTPConnection#_createParser': '969851c58da15fb6610e1c84759403dafde70969a5e77186810d1ec8d0c6ab7c',
  'SMTPConnection#_proxyCommandAllowed': '1ab2c3fcd83ebec6bf0d0968e53855f760c942767374e1447d594a0bf52af106',
  'SMTPServer#_expectsProxyHeader': '19b909b66bd36da3b63b5dbf9b92a2f97064c0bfa4784812dfebef610c7e19b6',
} as const;

type Proto = Record<string, unknown>;
const connectionProto = SMTPConnection.prototype as unknown as Proto;
const serverProto = SMTPServer.prototype as unknown as Proto;

export function installedSmtpServerVersion(): string {
  return (createRequire(import.meta.url)('smtp-server/package.json') as { version: string }).version;
}

/**
 * The installed library's value for every entry of PINS. `init` is hashed with whitespace
 * normalised only (its pin predates sourceHash's CommonJS folding and init names no module binding).
 */
export function libraryHashes(): Record<keyof typeof PINS, string> {
  return {
    version: installedSmtpServerVersion(),
    'SMTPConnection#init': createHash('sha256').update(String(connectionProto['init']).replace(/\s+/g, ' ')).digest('hex'),
    'SMTPConnection#send': sourceHash(connectionProto['send']),
    'SMTPConnection#_onCommand': sourceHash(connectionProto['_onCommand']),
    'SMTPConnection#_createParser': sourceHash(connectionProto['_createParser']),
    'SMTPConnection#_proxyCommandAllowed': sourceHash(connectionProto['_proxyCommandAllowed']),
    'SMTPServer#_expectsProxyHeader': sourceHash(serverProto['_expectsProxyHeader']),
  };
}

/** True when the installed methods the command taps wrap are the pinned ones. */
export function canTapCommands(): boolean {
  const h = libraryHashes();
  return h['SMTPConnection#_onCommand'] === PINS['SMTPConnection#_onCommand'] && h['SMTPConnection#_createParser'] === PINS['SMTPConnection#_createParser'];
}

/** The command parser (an SMTPStream) as the taps see it. */
export interface ParserLike {
  _dataMode?: boolean;
  _remainder?: string;
  /** Node's writable state: getBuffer() lists the chunks queued behind the one being written. */
  _writableState?: { getBuffer?(): unknown[] };
  _write(chunk: Buffer, encoding: BufferEncoding, next: (err?: Error | null) => void): void;
}

/** A policy module's hook into command dispatch: call `next` to go on (now or later), or answer and not. */
export type CommandTap = (command: Buffer, callback: (() => void) | undefined, next: (command: Buffer, callback?: () => void) => void) => void;
/** Sees each chunk the parser is about to read, before it does. */
export type ParserWriteTap = (chunk: Buffer, parser: ParserLike) => void;

interface TappedConnection {
  _parser?: ParserLike | false;
  _onCommand(command: Buffer, callback?: () => void): void;
  _createParser(): ParserLike;
}

/**
 * Wraps `_onCommand` and `_createParser` (and each parser's `_write`) of one connection ONCE, calling
 * the taps in the order given: `command[0]` sees a command first and decides whether the next tap
 * (and in the end the library) gets it; every write tap sees a chunk, in order, before the parser.
 * The session guard's taps come first (limits, tarpit), then the pipelining guard's (DATA checks).
 */
export function installCommandTaps(connection: unknown, taps: { command: readonly CommandTap[]; parserWrite: readonly ParserWriteTap[] }): void {
  const conn = connection as TappedConnection;
  if (taps.command.length) {
    const onCommand = conn._onCommand;
    const run = (i: number, command: Buffer, callback?: () => void): void => {
      if (i === taps.command.length) return onCommand.call(conn, command, callback);
      taps.command[i]!(command, callback, (c, cb) => run(i + 1, c, cb));
    };
    conn._onCommand = (command, callback) => run(0, command, callback);
  }
  if (taps.parserWrite.length) {
    const tapParser = (parser: ParserLike): ParserLike => {
      const write = parser._write;
      parser._write = function tappedWrite(this: ParserLike, chunk, encoding, next) {
        for (const tap of taps.parserWrite) tap(chunk, parser);
        return write.call(this, chunk, encoding, next);
      };
      return parser;
    };
    if (conn._parser) tapParser(conn._parser);
    // STARTTLS gives the TLS socket a new parser: tap that one too.
    const createParser = conn._createParser;
    conn._createParser = function tappedCreateParser(this: TappedConnection) {
      return tapParser(createParser.call(this));
    };
  }
}

/** True when a connection object has the internals installCommandTaps wraps (and a parser). */
export function canTapConnection(connection: unknown): boolean {
  const c = connection as Partial<TappedConnection>;
  return typeof c._onCommand === 'function' && typeof c._createParser === 'function' && !!c._parser;
}

// ── SMTPConnection#init: the greeting delay ──────────────────────────────────────────────────────

/**
 * smtp-server waits a hard-coded 100 ms before every 220 greeting ("early talker" detection) in
 * SMTPConnection#init, with no option to change it. That pause is a fair anti-spam default for
 * anonymous clients on port 25 and a pure cost for trusted networks and submission, so Portcullis
 * sets it per listener by giving each new connection its own `init` that does what the library's
 * does with another delay.
 *
 * This is pinned to the exact library source: `PINNED_INIT_SHA256` is the hash of the library's
 * `init` as shipped in smtp-server 3.21.6. If the installed version differs, `canOverrideGreetingDelay`
 * is false, the relay logs a warning and keeps the library's own 100 ms behaviour, and the test
 * `greeting-delay.test.ts` fails, so an upgrade cannot silently break it.
 */
// Names kept for the tests that use them; the values are the PINS table's.
export const PINNED_SMTP_SERVER_VERSION: string = PINS.version;
export const PINNED_INIT_SHA256: string = PINS['SMTPConnection#init'];


interface ConnectionLike {
  _server: { options: { maxClients?: number }; connections: Set<unknown> };
  name: string;
  init(): void;
  _setListeners(cb: () => void): void;
  connectionReady(next?: () => void): void;
  send(code: number, text: string, context?: unknown): void;
}


/** Hash of the installed library's SMTPConnection#init source (whitespace-normalised). */
export async function libraryInitHash(): Promise<string> {
  return libraryHashes()['SMTPConnection#init'];
}

let checked: boolean | undefined;
/** True when the installed smtp-server is the version whose `init` this module reproduces. */
export async function canOverrideGreetingDelay(expectedHash: string = PINNED_INIT_SHA256): Promise<boolean> {
  if (checked === undefined) {
    checked = installedSmtpServerVersion() === PINNED_SMTP_SERVER_VERSION && (await libraryInitHash()) === expectedHash;
  }
  return checked;
}

/**
 * Replaces `connection.init` with the library's logic and `delayMs` in place of its 100 ms. When
 * `refusal` returns a reply (the connection gate said no), it is sent at once, without the delay:
 * a refused flood costs one line per connection.
 */
export function setGreetingDelay(connection: unknown, delayMs: number, refusal?: () => { code: number; enhanced: string; text: string } | undefined): void {
  const conn = connection as ConnectionLike;
  conn.init = function init(this: ConnectionLike) {
    this._setListeners(() => {
      const refused = refusal?.();
      if (refused) return this.send(refused.code, `${refused.enhanced} ${refused.text}`, false);
      if (this._server.options.maxClients && this._server.connections.size > this._server.options.maxClients) {
        return this.send(421, this.name + ' Too many connected clients, try again in a moment', false);
      }
      if (delayMs <= 0) return this.connectionReady();
      const timer = setTimeout(() => this.connectionReady(), delayMs);
      timer.unref();
    });
  };
}

// ── SMTPConnection#_proxyCommandAllowed, SMTPServer#_expectsProxyHeader: proxy trust ──────────────
// The policy (which networks) is listen/proxy-trust.ts; the replacements are here, beside their pins.

// Names kept for the tests that use them; the values are the PINS table's.
export const PINNED_PROXY_ALLOWED_SHA256: string = PINS['SMTPConnection#_proxyCommandAllowed'];
export const PINNED_EXPECTS_PROXY_SHA256: string = PINS['SMTPServer#_expectsProxyHeader'];

type ProxyOption = 'useXClient' | 'useXForward';

interface ProxyConnectionInternals {
  _xClient: Map<string, unknown>;
  _originalRemoteAddress: string;
  _isSupported(command: string): boolean;
  _proxyCommandAllowed(command: string, option: ProxyOption): boolean;
}

/** Hashes of the two library methods the proxy trust replaces (whitespace-normalised source). */
export function proxyTrustLibraryHashes(): { proxyCommandAllowed: string; expectsProxyHeader: string } {
  const h = libraryHashes();
  return { proxyCommandAllowed: h['SMTPConnection#_proxyCommandAllowed'], expectsProxyHeader: h['SMTPServer#_expectsProxyHeader'] };
}

/** True when the installed smtp-server has exactly the methods the proxy trust replaces. */
export function canUseProxyTrust(): boolean {
  const h = proxyTrustLibraryHashes();
  return h.proxyCommandAllowed === PINNED_PROXY_ALLOWED_SHA256 && h.expectsProxyHeader === PINNED_EXPECTS_PROXY_SHA256;
}

/** Replaces `server`'s PROXY-header question: must a socket from `remoteAddress` start with one? */
export function replaceProxyHeaderCheck(server: SMTPServer, expects: (remoteAddress: string) => boolean): void {
  (server as unknown as { _expectsProxyHeader(socket: { remoteAddress?: string }): boolean })._expectsProxyHeader = (socket) => expects(socket.remoteAddress ?? '');
}

/**
 * Replaces one connection's XCLIENT / XFORWARD question: never once XCLIENT has replaced the address,
 * else `allowed(option, peer)` for the address the connection was accepted from, and the command enabled.
 */
export function replaceProxyCommandCheck(connection: unknown, allowed: (option: ProxyOption, peer: string) => boolean): void {
  const conn = connection as ProxyConnectionInternals;
  conn._proxyCommandAllowed = function proxyCommandAllowed(this: ProxyConnectionInternals, command: string, option: ProxyOption): boolean {
    return !this._xClient.has('ADDR') && allowed(option, this._originalRemoteAddress) && this._isSupported(command);
  };
}

// ── SMTPServer#connections: where a new connection object is reachable ──────────────────────────

/**
 * smtp-server adds each new connection to its `connections` Set right before `init()`, and deletes it
 * when it closes: the one place to reach the connection object (socket options, greeting delay,
 * per-IP accounting, the taps). `added` runs before the library's add and must call `add()` once;
 * `open()` is the library's count after it. `deleted` runs before the library's delete.
 */
export function hookConnections<C>(server: SMTPServer, hooks: { added(c: C, add: () => void, open: () => number): void; deleted(c: C): void }): void {
  const conns = (server as unknown as { connections: Set<C> }).connections;
  const add = conns.add.bind(conns);
  const del = conns.delete.bind(conns);
  conns.add = (c: C) => {
    hooks.added(c, () => void add(c), () => conns.size);
    return conns;
  };
  conns.delete = (c: C) => {
    hooks.deleted(c);
    return del(c);
  };
}
