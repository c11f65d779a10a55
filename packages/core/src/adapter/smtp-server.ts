import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { sourceHash } from './source-hash.js';

/**
 * The smtp-server adapter: every library internal the core wraps, replaces, calls or reads, each
 * beside its pin. Nothing outside `adapter/` names an smtp-server member that starts with `_`
 * (`scripts/check-imports.mjs` fails the build otherwise); the rest of core sees a connection through
 * `Conn` (public members only) and the functions below.
 *
 * Methods, pinned by the hash of their source in the installed version (`PINS`):
 *   SMTPConnection#init                  replaced here (setGreetingDelay), reproduced with our delay
 *   SMTPConnection#send                  wrapped ONCE here (installConnectionTaps): send taps, in order
 *   SMTPConnection#_onCommand            wrapped ONCE here (installConnectionTaps): command taps, in order
 *   SMTPConnection#_createParser         wrapped ONCE here: each new parser's _write gets the write taps
 *   SMTPStream#_write                    wrapped ONCE per parser here: parser-write taps, in order
 *   SMTPConnection#_isSupported          called here (isCommandSupported): the session guard
 *   SMTPConnection#_setListeners         called by our init (setGreetingDelay)
 *   SMTPConnection#_proxyCommandAllowed  replaced here (replaceProxyCommandCheck); the CIDR lists: listen/proxy-trust.ts
 *   SMTPServer#_expectsProxyHeader       replaced here (replaceProxyHeaderCheck); the CIDR lists: listen/proxy-trust.ts
 *   SMTPServer#connections (a Set)       its add/delete hooked here (hookConnections): listen/listeners.ts
 * Fields, pinned by their type on a live connection (`FIELDS`, checked by the same test): see FIELDS.
 *
 * The order of the taps (listen/listeners.ts collects them, installConnectionTaps installs them):
 *   send:        session/session-guard.ts (error count, tarpit, line too long), then
 *                adapter/smtp-server-replies.ts (our wording, one enhanced code), then the library
 *   _onCommand:  session/session-guard.ts (limits, tarpit), then session/pipelining-guard.ts (554 5.5.0)
 *   parser write: session/session-guard.ts (command-line timer), then session/pipelining-guard.ts
 *
 * One test (`test/adapter-pins.test.ts`) compares `libraryHashes()` with PINS and `libraryFields()`
 * of a real connection with FIELDS. With another library version the module that needs a member turns
 * itself off (with a warning at start) or, for proxy trust, the relay refuses to start; see each user.
 */
export const PINS = {
  version: '3.21.6',
  'SMTPConnection#init': '67b68fcaf9a0a35f2c2a118d31a3dc780c982d1f0ce83d654df4f4e92d4269d3',
  'SMTPConnection#send': 'ef984a1c077daba820a3d8a7975a3bb4e8a066ba0b321f26d0f73d5e612a5d5a',
  'SMTPConnection#_onCommand': 'ec126bdb02258772f8ae0d78087fdff99b027e2cad826f9a6bd3c4f818b525be',
  'SMTPConnection#_createParser': '969851c58da15fb6610e1c84759403dafde70969a5e77186810d1ec8d0c6ab7c',
  'SMTPStream#_write': '320ae0c4e7187c0045dc5df822505967e94fe6c97b5b3d95cde2feeff74d3ddc',
  'SMTPConnection#_isSupported': 'a05c902128e50e6c0eb9951f5e8f2501787868163881272b0868ce8a024c65d9',
  'SMTPConnection#_setListeners': 'cbf83a7bef4c02a38193abb50ec60b57b458975e85da3a2c8d4a4bcf8a77c1a4',
  'SMTPConnection#_proxyCommandAllowed': '1ab2c3fcd83ebec6bf0d0968e53855f760c942767374e1447d594a0bf52af106',
  'SMTPServer#_expectsProxyHeader': '19b909b66bd36da3b63b5dbf9b92a2f97064c0bfa4784812dfebef610c7e19b6',
} as const;

/**
 * The library fields the adapter reads or writes, with their type on a connection that has sent
 * its greeting (what `libraryFields` reports). Where they are used:
 *   _socket                 socketPeerAddress, tlsProtocol, setNoDelay, socketTag, destroyConnection, hasPendingInput
 *   _parser                 hasPendingInput; the parser-write taps (installConnectionTaps)
 *   _server                 setGreetingDelay (options.maxClients, connections)
 *   _nextHandler            awaitsContinuation (false, or the handler of an AUTH exchange)
 *   _handlerPending         answering
 *   _closing, _closed       isClosing
 *   _unrecognizedCommands   resetUnrecognizedCommands (the session guard's limit replaces the library's 10)
 *   _xClient, _originalRemoteAddress   replaceProxyCommandCheck
 *   SMTPStream#_dataMode, _remainder   the parser view the write taps get (ParserView)
 *   SMTPStream#_writableState.getBuffer  hasPendingInput (Node's Writable: chunks queued behind the one being written)
 */
export const FIELDS = {
  'SMTPConnection#_socket': 'object',
  'SMTPConnection#_parser': 'object',
  'SMTPConnection#_server': 'object',
  'SMTPConnection#_nextHandler': 'boolean',
  'SMTPConnection#_handlerPending': 'boolean',
  'SMTPConnection#_closing': 'boolean',
  'SMTPConnection#_closed': 'boolean',
  'SMTPConnection#_unrecognizedCommands': 'number',
  'SMTPConnection#_xClient': 'object',
  'SMTPConnection#_originalRemoteAddress': 'string',
  'SMTPStream#_dataMode': 'boolean',
  'SMTPStream#_remainder': 'string',
  'SMTPStream#_writableState.getBuffer': 'function',
} as const;

type Proto = Record<string, unknown>;
const connectionProto = SMTPConnection.prototype as unknown as Proto;
const serverProto = SMTPServer.prototype as unknown as Proto;
const streamProto = SMTPStream.prototype as unknown as Proto;

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
    'SMTPStream#_write': sourceHash(streamProto['_write']),
    'SMTPConnection#_isSupported': sourceHash(connectionProto['_isSupported']),
    'SMTPConnection#_setListeners': sourceHash(connectionProto['_setListeners']),
    'SMTPConnection#_proxyCommandAllowed': sourceHash(connectionProto['_proxyCommandAllowed']),
    'SMTPServer#_expectsProxyHeader': sourceHash(serverProto['_expectsProxyHeader']),
  };
}

/** The type of every FIELDS entry on `connection` (a real one, after its greeting: the pin test). */
export function libraryFields(connection: unknown): Record<keyof typeof FIELDS, string> {
  const c = connection as Internals;
  const p = (c._parser || {}) as Partial<ParserInternals>;
  return {
    'SMTPConnection#_socket': typeof c._socket,
    'SMTPConnection#_parser': typeof c._parser,
    'SMTPConnection#_server': typeof c._server,
    'SMTPConnection#_nextHandler': typeof c._nextHandler,
    'SMTPConnection#_handlerPending': typeof c._handlerPending,
    'SMTPConnection#_closing': typeof c._closing,
    'SMTPConnection#_closed': typeof c._closed,
    'SMTPConnection#_unrecognizedCommands': typeof c._unrecognizedCommands,
    'SMTPConnection#_xClient': typeof c._xClient,
    'SMTPConnection#_originalRemoteAddress': typeof c._originalRemoteAddress,
    'SMTPStream#_dataMode': typeof p._dataMode,
    'SMTPStream#_remainder': typeof p._remainder,
    'SMTPStream#_writableState.getBuffer': typeof p._writableState?.getBuffer,
  };
}

/** True when the installed methods the command and parser taps wrap are the pinned ones. */
export function canTapCommands(): boolean {
  const h = libraryHashes();
  return h['SMTPConnection#_onCommand'] === PINS['SMTPConnection#_onCommand'] && h['SMTPConnection#_createParser'] === PINS['SMTPConnection#_createParser'];
}

// ── The library's connection, and the neutral view the rest of core gets ───────────────────────

/** The command parser (an SMTPStream) as the adapter reads it. */
interface ParserInternals {
  _dataMode?: boolean;
  _remainder?: string;
  /** Node's writable state: getBuffer() lists the chunks queued behind the one being written. */
  _writableState?: { getBuffer?(): unknown[] };
  _write(chunk: Buffer, encoding: BufferEncoding, next: (err?: Error | null) => void): void;
}

interface Internals {
  name: string;
  id: string;
  remoteAddress: string;
  secure?: boolean;
  session: { secure: boolean };
  send(code: number, data?: unknown, context?: unknown): void;
  close(): void;
  _socket?: { remoteAddress?: string; remotePort?: number; readableLength?: number; getProtocol?(): string | null; setNoDelay?(v: boolean): void; destroy(err?: Error): void };
  _parser?: ParserInternals | false;
  _server: { options: { maxClients?: number }; connections: Set<unknown> };
  _nextHandler?: unknown;
  _handlerPending?: boolean;
  _closing?: boolean;
  _closed?: boolean;
  _unrecognizedCommands: number;
  _xClient: Map<string, unknown>;
  _originalRemoteAddress: string;
  _isSupported(command: string): boolean;
  _onCommand(command: Buffer, callback?: () => void): void;
  _createParser(): ParserInternals;
  _setListeners(cb: () => void): void;
  init(): void;
  connectionReady(next?: () => void): void;
}

/** What the core uses of an smtp-server connection: its public members. The rest goes through the functions below. */
export interface Conn {
  readonly id: string;
  readonly remoteAddress: string;
  readonly secure?: boolean;
  send(code: number, data?: string | string[], context?: unknown): void;
  close(): void;
}

const internals = (conn: unknown) => conn as Internals;

/** The TCP peer's address (a PROXY header or XCLIENT change `remoteAddress`, never this). */
export function socketPeerAddress(conn: unknown): string | undefined {
  return internals(conn)._socket?.remoteAddress;
}

/** `address|port` of a socket's TCP peer (`socketPeer`: of a connection's socket): what names a socket handed over by the worker mode's primary (listen/listeners.ts). */
export const peerOf = (socket: { remoteAddress?: string; remotePort?: number } | undefined): string => `${socket?.remoteAddress}|${socket?.remotePort}`;
export const socketPeer = (conn: unknown): string => peerOf(internals(conn)._socket);

/** Serves an accepted socket (handed over by the worker mode's primary) as the library's own listener would: proxy check, implicit TLS, connect. */
export const serveSocket = (server: SMTPServer, socket: unknown): unknown => (server as unknown as { server: { emit(ev: string, s: unknown): unknown } }).server.emit('connection', socket);

/** The TLS protocol in use (`TLSv1.3`), when the connection's socket is a TLS one. */
export function tlsProtocol(conn: unknown): string | undefined {
  return internals(conn)._socket?.getProtocol?.() ?? undefined;
}

/** Replies go out as they are written (no Nagle delay). */
export function setNoDelay(conn: unknown): void {
  internals(conn)._socket?.setNoDelay?.(true);
}

/** A value the relay stored on the socket it handed to the library (connectStream), by key. */
export function socketTag<T>(conn: unknown, key: symbol): T | undefined {
  const socket = internals(conn)._socket as unknown as Record<symbol, T | undefined> | undefined;
  return socket?.[key];
}

/** Treats the connection as encrypted already (an in-memory client that says so): AUTH is offered. */
export function markSecure(conn: unknown): void {
  const c = internals(conn);
  c.secure = c.session.secure = true;
}

/** Closes the connection at once, without a reply (smtp-server cleans up on the socket's close). */
export function destroyConnection(conn: unknown): void {
  internals(conn)._socket?.destroy();
}

/** Bytes the client sent that no command has read yet: queued behind the parser's write, or in the socket. */
export function hasPendingInput(conn: unknown): boolean {
  const c = internals(conn);
  const parser = c._parser;
  return (parser ? (parser._writableState?.getBuffer?.().length ?? 0) > 0 : false) || (c._socket?.readableLength ?? 0) > 0;
}

/** Whether the library knows (and has not disabled) the command `name`. */
export function isCommandSupported(conn: unknown, name: string): boolean {
  return internals(conn)._isSupported(name);
}

/** The next line belongs to a command in progress (an AUTH exchange), not a new command. */
export function awaitsContinuation(conn: unknown): boolean {
  return !!internals(conn)._nextHandler;
}

/** The library is still answering an earlier (pipelined) command. */
export function answering(conn: unknown): boolean {
  return !!internals(conn)._handlerPending;
}

/** The connection is closing or closed. */
export function isClosing(conn: unknown): boolean {
  const c = internals(conn);
  return !!c._closing || !!c._closed;
}

/** Zeroes the library's own count of unrecognised commands (it closes at a fixed 10; our limit decides). */
export function resetUnrecognizedCommands(conn: unknown): void {
  internals(conn)._unrecognizedCommands = 0;
}

// ── The taps: send, _onCommand, _createParser and each parser's _write, each wrapped once ──────

/** Sees each reply before it is written: call `next` (maybe with other values) to go on, or not. */
export type SendTap = (code: number, data: unknown, context: unknown, next: (code: number, data: unknown, context?: unknown) => void) => void;
/** A policy module's hook into command dispatch: call `next` to go on (now or later), or answer and not. */
export type CommandTap = (command: Buffer, callback: (() => void) | undefined, next: (command: Buffer, callback?: () => void) => void) => void;
/** What a parser-write tap sees of the command parser. */
export interface ParserView {
  /** The parser is reading message content (after the 354), not command lines. */
  readonly dataMode: boolean;
  /** The start of a command line the parser holds from an earlier chunk. */
  readonly remainder: string;
}
/** Sees each chunk the parser is about to read, before it does. */
export type ParserWriteTap = (chunk: Buffer, parser: ParserView) => void;

/** Every tap of one connection, each list in the order it runs (see the table at the top). */
export interface ConnectionTaps {
  readonly send: readonly SendTap[];
  readonly command: readonly CommandTap[];
  readonly parserWrite: readonly ParserWriteTap[];
}

/**
 * Wraps `send`, `_onCommand` and `_createParser` (and each parser's `_write`) of one connection ONCE,
 * calling the taps in the order given: `send[0]` and `command[0]` see a reply or a command first and
 * decide whether the next tap (and in the end the library) gets it; every write tap sees a chunk, in
 * order, before the parser. A list left empty leaves that method as the library's.
 */
export function installConnectionTaps(connection: unknown, taps: ConnectionTaps): void {
  const conn = internals(connection);
  // Each tap's `next` is made once per connection, last tap first, not per reply or command (a
  // closure per tap per call was some 40 allocations a message).
  if (taps.send.length) {
    let next: Internals['send'] = conn.send.bind(conn);
    for (const tap of [...taps.send].reverse()) next = ((after) => (code, data, context) => tap(code, data, context, after))(next);
    conn.send = next;
  }
  if (taps.command.length) {
    let next: Internals['_onCommand'] = conn._onCommand.bind(conn);
    for (const tap of [...taps.command].reverse()) next = ((after) => (command, callback) => tap(command, callback, after))(next);
    conn._onCommand = next;
  }
  if (taps.parserWrite.length) {
    const tapParser = (parser: ParserInternals): ParserInternals => {
      const write = parser._write;
      const view: ParserView = {
        get dataMode() { return !!parser._dataMode; },
        get remainder() { return parser._remainder ?? ''; },
      };
      parser._write = function tappedWrite(this: ParserInternals, chunk, encoding, next) {
        for (const tap of taps.parserWrite) tap(chunk, view);
        return write.call(this, chunk, encoding, next);
      };
      return parser;
    };
    if (conn._parser) tapParser(conn._parser);
    // STARTTLS gives the TLS socket a new parser: tap that one too.
    const createParser = conn._createParser;
    conn._createParser = function tappedCreateParser(this: Internals) {
      return tapParser(createParser.call(this));
    };
  }
}

/** True when a connection object has the internals installConnectionTaps wraps (and a parser). */
export function canTapConnection(connection: unknown): boolean {
  const c = connection as Partial<Internals>;
  return typeof c._onCommand === 'function' && typeof c._createParser === 'function' && !!c._parser;
}

/** True when the session guard's reads are there too (`send`, `_isSupported`), besides the taps. */
export function canGuardConnection(connection: unknown): boolean {
  const c = connection as Partial<Internals>;
  return canTapConnection(connection) && typeof c.send === 'function' && typeof c._isSupported === 'function';
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
  const conn = internals(connection);
  conn.init = function init(this: Internals) {
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

interface ProxyConnectionInternals extends Internals {
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
