import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Readable, Writable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';

/**
 * The nodemailer adapter: every library internal the delivery client wraps, replaces or reads, each
 * beside its pin. Nothing outside `adapter/` names a nodemailer member that starts with `_`
 * (`scripts/check-imports.mjs` fails the build otherwise). One test (`test/adapter-pins.test.ts`)
 * compares `nodemailerHashes()` with NODEMAILER_PINS and `nodemailerFields()` of a real connection
 * with NODEMAILER_FIELDS, so an upgrade cannot silently change what the relay does on the wire.
 *
 *   SMTPConnection#_sendCommand       wrapped ONCE per transaction here (tapSentCommands): delivery/reply-timeouts.ts
 *   SMTPConnection#_createSendStream  replaced ONCE per connection here (swapDataEncoder); the encoder it puts in
 *                                     (DotStuffer) comes from delivery/outbound-stuffing.ts. Two hashes:
 *                                     the ESM build (node) and the CommonJS build (tsx in the tests)
 * Fields (NODEMAILER_FIELDS: their type on a connected client):
 *   _destroyed          read here (isReusable): delivery/smtp-client.ts's connection pool
 *   _socket             read here (isReusable, clientSocketWritable, setSocketTimeout), and the encoder's pipe target (swapDataEncoder)
 *   _currentDataStream  written here (swapDataEncoder): the library's 'end'/error handling finds our encoder there
 */
export const NODEMAILER_PINS = {
  version: '10.6.0',
  'SMTPConnection#_sendCommand': ['b29b99802a5a051a7f20eaf2e4fd6065dd3b23304cb1d0dab8858aa4402fa55d'],
  'SMTPConnection#_createSendStream': [
    'ff8d726d825191a4ffa9f7e04d6987373afdd0ba3b32fb95e2e0c66feadbf053', // dist/esm
    'c6cbc8e2dd8f3f6e5275e2af0a20dc2d4597e320eec4d0960d3a4a4ad1035d26', // dist/cjs
  ],
} as const;

export const NODEMAILER_FIELDS = {
  'SMTPConnection#_destroyed': 'boolean',
  'SMTPConnection#_socket': 'object',
  'SMTPConnection#_currentDataStream': 'boolean',
} as const;

const proto = SMTPConnection.prototype as unknown as Record<string, unknown>;
const hash = (fn: unknown) => createHash('sha256').update(String(fn).replace(/\s+/g, ' ')).digest('hex');

export function installedNodemailerVersion(): string {
  return (createRequire(import.meta.url)('nodemailer/package.json') as { version: string }).version;
}

/** The installed library's value for every entry of NODEMAILER_PINS (whitespace-normalised source hashes). */
export function nodemailerHashes(): { version: string; 'SMTPConnection#_sendCommand': string; 'SMTPConnection#_createSendStream': string } {
  return { version: installedNodemailerVersion(), 'SMTPConnection#_sendCommand': hash(proto['_sendCommand']), 'SMTPConnection#_createSendStream': hash(proto['_createSendStream']) };
}

interface Internals {
  _destroyed?: boolean;
  _socket?: Writable & { writable?: boolean; setTimeout?(ms: number): void };
  _currentDataStream?: Writable | false;
  _sendCommand(str: string, logStr?: string): void;
  _createSendStream(callback: (err: Error | null, str?: string) => void): Writable & Pick<Readable, 'unpipe'>;
}

/** The type of every NODEMAILER_FIELDS entry on `conn` (a real, connected one: the pin test). */
export function nodemailerFields(conn: unknown): Record<keyof typeof NODEMAILER_FIELDS, string> {
  const c = conn as Internals;
  return { 'SMTPConnection#_destroyed': typeof c._destroyed, 'SMTPConnection#_socket': typeof c._socket, 'SMTPConnection#_currentDataStream': typeof c._currentDataStream };
}

/**
 * Calls `tap` with each command line the connection is about to send (before it goes out), until
 * the returned function puts the library's method back.
 */
export function tapSentCommands(conn: unknown, tap: (command: string) => void): () => void {
  const c = conn as Internals;
  const original = c._sendCommand;
  c._sendCommand = function (this: Internals, str: string, logStr?: string) {
    tap(str);
    return original.call(this, str, logStr);
  };
  return () => {
    c._sendCommand = original;
  };
}

/** An idle pooled connection can carry another transaction: not destroyed, socket still writable. */
export function isReusable(conn: unknown): boolean {
  const c = conn as Internals;
  return !c._destroyed && !!c._socket?.writable;
}

/** The connection's socket can still be written to. */
export function clientSocketWritable(conn: unknown): boolean {
  return !!(conn as Internals)._socket?.writable;
}

/** Sets the inactivity timeout of the connection's socket (nodemailer's own 'timeout' handler stays the one that fires). */
export function setSocketTimeout(conn: unknown, ms: number): void {
  (conn as Internals)._socket?.setTimeout?.(ms);
}

let swappable: boolean | undefined;
/** True when the installed nodemailer is the version whose `_createSendStream` swapDataEncoder relies on. */
export function canSwapDataEncoder(): boolean {
  swappable ??= installedNodemailerVersion() === NODEMAILER_PINS.version && (NODEMAILER_PINS['SMTPConnection#_createSendStream'] as readonly string[]).includes(hash(proto['_createSendStream']));
  return swappable;
}

/**
 * Gives one connection a `_createSendStream` that lets the library set up the transaction as usual
 * (reply handlers, the pipe into the socket) and then swaps the library's DATA encoder for the one
 * `encoder()` makes (which must write the same bytes). No-op, false, when the library is not the
 * pinned one.
 */
export function swapDataEncoder(conn: unknown, encoder: () => Writable & Readable): boolean {
  if (!canSwapDataEncoder()) return false;
  const c = conn as Internals;
  const stockCreate = proto['_createSendStream'] as Internals['_createSendStream'];
  c._createSendStream = function createSendStream(this: Internals, callback) {
    const stock = stockCreate.call(this, callback);
    // The library's encoder was piped into the socket and nothing has been written to it yet:
    // detach it (it is never written or ended, and is collected) and put ours in its place.
    const socket = this._socket as Writable;
    stock.unpipe(socket);
    const fast = encoder();
    this._currentDataStream = fast;
    fast.pipe(socket, { end: false });
    fast.once('end', () => {
      if (this._currentDataStream === fast) this._currentDataStream = false;
    });
    return fast;
  };
  return true;
}
