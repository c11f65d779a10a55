import type { Transaction } from '@portcullis/core';
import { httpHeaderValue } from './header-values.js';
import type { RequestHeaders } from './rspamd-client.js';

/**
 * The envelope and session facts rspamd's protocol takes as request headers (rspamd.com/doc
 * "Rspamd protocol"). Every value passes through `httpHeaderValue`: HELO and addresses come from
 * the client and may hold control characters, 8-bit bytes or kilobytes of text.
 *
 * `Hostname` (the client's reverse DNS name) is not sent: the core does no reverse lookups, and a
 * name taken from XFORWARD or HELO would let the client choose it.
 */
export function requestHeaders(
  txn: Transaction,
  direction: 'inbound' | 'outbound',
  opts: { readonly settingsId?: string; readonly mtaTag?: string },
  mtaName: string,
  maxBytes: number,
): RequestHeaders {
  const s = txn.session;
  const out: Array<[string, string]> = [];
  const add = (name: string, value: string | undefined) => {
    if (value === undefined) return;
    const v = httpHeaderValue(value, maxBytes);
    if (v) out.push([name, v]);
  };
  add('IP', s.remoteAddress);
  add('Helo', s.helo);
  // The null sender as rspamd's own MTA integrations send it.
  add('From', txn.mailFrom.address ? txn.mailFrom.address : '<>');
  for (const r of txn.recipients) add('Rcpt', r.address);
  add('Queue-Id', txn.id);
  add('MTA-Name', mtaName);
  if (direction === 'outbound') add('User', s.user);
  add('Settings-ID', opts.settingsId);
  add('MTA-Tag', opts.mtaTag);
  if (s.tls) {
    add('TLS-Version', s.tls.protocol);
    add('TLS-Cipher', s.tls.cipher);
  }
  return out;
}
