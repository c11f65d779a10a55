import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
// Loaded with the rest of the relay, not on demand: a dynamic import at start-up raced with the
// delivery queue's first connections after a crash and failed to resolve smtp-server's own deps.
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { PINS } from '../adapter/smtp-server.js';

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
// The pins live in the adapter's one table (adapter/smtp-server.ts); these names are kept for the tests that use them.
export const PINNED_SMTP_SERVER_VERSION: string = PINS.version;
export const PINNED_INIT_SHA256: string = PINS['SMTPConnection#init'];

const require = createRequire(import.meta.url);

interface ConnectionLike {
  _server: { options: { maxClients?: number }; connections: Set<unknown> };
  name: string;
  init(): void;
  _setListeners(cb: () => void): void;
  connectionReady(next?: () => void): void;
  send(code: number, text: string, context?: unknown): void;
}

export function installedSmtpServerVersion(): string {
  return (require('smtp-server/package.json') as { version: string }).version;
}

/** Hash of the installed library's SMTPConnection#init source (whitespace-normalised). */
export async function libraryInitHash(): Promise<string> {
  const src = (SMTPConnection.prototype as unknown as { init: () => void }).init.toString().replace(/\s+/g, ' ');
  return createHash('sha256').update(src).digest('hex');
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
