import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { DotStuffer } from './dot-stuffer.js';
import { NODEMAILER_PINS } from '../adapter/nodemailer.js';

/**
 * nodemailer's smtp-connection encodes DATA with its own DataStream, a per-byte JavaScript loop,
 * and has no option to take data that is already encoded. `useFastDotStuffing` gives one
 * connection a `_createSendStream` that lets the library set up the transaction as usual (reply
 * handlers, the pipe into the socket) and then swaps the library's encoder for DotStuffer, whose
 * output is the same byte for byte (dot-stuffer.test.ts compares the two on every case).
 *
 * The swap depends on the library's internals (`_createSendStream`, `_socket`,
 * `_currentDataStream`), so it is pinned to the exact source: `PINNED_CREATE_SEND_STREAM_SHA256`
 * holds the hashes of that method in nodemailer 10.6.0 (its ESM build, which node loads, and its
 * CommonJS build, which tsx loads in the tests). With another version `canUseFastDotStuffing()`
 * is false, connections keep the library's encoder, and the pin test fails, so an upgrade cannot
 * silently change what goes on the wire.
 */
// The pins live in the adapter's table (adapter/nodemailer.ts); these names are kept for the tests.
export const PINNED_NODEMAILER_VERSION: string = NODEMAILER_PINS.version;
export const PINNED_CREATE_SEND_STREAM_SHA256: readonly string[] = NODEMAILER_PINS['SMTPConnection#_createSendStream'];

const require = createRequire(import.meta.url);

interface ConnectionInternals {
  _socket: Writable;
  _currentDataStream: Writable | false;
  _createSendStream(callback: (err: Error | null, str?: string) => void): Writable & Pick<Readable, 'unpipe'>;
}

const proto = SMTPConnection.prototype as unknown as ConnectionInternals;

export function installedNodemailerVersion(): string {
  return (require('nodemailer/package.json') as { version: string }).version;
}

/** Hash of the installed library's `_createSendStream` source (whitespace-normalised). */
export function createSendStreamHash(): string {
  return createHash('sha256').update(proto._createSendStream.toString().replace(/\s+/g, ' ')).digest('hex');
}

let checked: boolean | undefined;
/** True when the installed nodemailer is the version whose internals the swap relies on. */
export function canUseFastDotStuffing(): boolean {
  checked ??= installedNodemailerVersion() === PINNED_NODEMAILER_VERSION && PINNED_CREATE_SEND_STREAM_SHA256.includes(createSendStreamHash());
  return checked;
}

/** Makes `conn` encode DATA with DotStuffer (no-op when the library is not the pinned one). */
export function useFastDotStuffing(conn: InstanceType<typeof SMTPConnection>): boolean {
  if (!canUseFastDotStuffing()) return false;
  const c = conn as unknown as ConnectionInternals;
  c._createSendStream = function createSendStream(this: ConnectionInternals, callback) {
    const stock = proto._createSendStream.call(this, callback);
    // The library's encoder was piped into the socket and nothing has been written to it yet:
    // detach it (it is never written or ended, and is collected) and put ours in its place.
    stock.unpipe(this._socket);
    const fast = new DotStuffer();
    this._currentDataStream = fast;
    fast.pipe(this._socket, { end: false });
    fast.once('end', () => {
      if (this._currentDataStream === fast) this._currentDataStream = false;
    });
    return fast;
  };
  return true;
}
