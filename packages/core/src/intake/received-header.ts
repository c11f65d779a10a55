import type { SessionState, TransactionState } from '../session/session.js';

/** Our Received line (RFC 5321 section 4.4), built once the data has ended. */
export function receivedHeader(s: SessionState, txn: TransactionState): string {
  const clean = (v: string) => v.replace(/[^\x21-\x7e]/g, '?').slice(0, 255);
  const proto = (s.raw.openingCommand === 'HELO' ? 'SMTP' : 'ESMTP') + (s.secure ? 'S' : '') + (s.user ? 'A' : '');
  const forPart = txn.recipients.length === 1 ? `\r\n\tfor <${clean(txn.recipients[0]!.address)}>` : '';
  const date = new Date().toUTCString().replace(/GMT$/, '+0000');
  const origin = s.origin;
  const via = origin.proxied ? ` (via [${clean(origin.peer)}] ${origin.proxied === 'xclient' ? 'XCLIENT' : 'PROXY'})` : '';
  const fwd = origin.forwarded?.addr ? ` (XFORWARD from [${clean(origin.forwarded.addr)}] by [${clean(origin.peer)}])` : '';
  return `Received: from ${clean(s.helo ?? 'unknown')} ([${s.remoteAddress}])${via}${fwd}\r\n\tby ${clean(s.config.hostname)} (Portcullis) with ${proto} id ${txn.id}${forPart};\r\n\t${date}\r\n`;
}
