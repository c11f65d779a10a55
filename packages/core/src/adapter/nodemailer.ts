import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';

/**
 * The nodemailer adapter: the library internals the delivery client uses, each beside its pin.
 * One test (`test/adapter-pins.test.ts`) compares `nodemailerHashes()` with this table, so an
 * upgrade cannot silently change what the relay does on the wire.
 *
 *   SMTPConnection#_sendCommand       wrapped ONCE per transaction here (tapSentCommands): delivery/reply-timeouts.ts
 *   SMTPConnection#_createSendStream  replaced by delivery/outbound-stuffing.ts (DotStuffer); two hashes:
 *                                     the ESM build (node) and the CommonJS build (tsx in the tests)
 *   SMTPConnection#_destroyed         read here (isReusable): delivery/smtp-client.ts's connection pool
 */
export const NODEMAILER_PINS = {
  version: '10.6.0',
  'SMTPConnection#_sendCommand': ['b29b99802a5a051a7f20eaf2e4fd6065dd3b23304cb1d0dab8858aa4402fa55d'],
  'SMTPConnection#_createSendStream': [
    'ff8d726d825191a4ffa9f7e04d6987373afdd0ba3b32fb95e2e0c66feadbf053', // dist/esm
    'c6cbc8e2dd8f3f6e5275e2af0a20dc2d4597e320eec4d0960d3a4a4ad1035d26', // dist/cjs
  ],
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
  _socket?: { writable?: boolean };
  _sendCommand(str: string, logStr?: string): void;
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
