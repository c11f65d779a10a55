import type { SessionState, TransactionState } from '../session/session.js';

const UNSAFE = /[^\x21-\x7e]/;
const UNSAFE_ALL = /[^\x21-\x7e]/g;
/** Printable ASCII without spaces, at most 255 characters (the usual value passes as it is). */
const clean = (v: string) => (UNSAFE.test(v) ? v.replace(UNSAFE_ALL, '?') : v).slice(0, 255);

/** The RFC 5322 date of the current second: built once a second, not once a message. */
let dateSecond = -1;
let dateText = '';
function dateNow(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString().replace(/GMT$/, '+0000');
  }
  return dateText;
}

/** Our Received line (RFC 5321 section 4.4), built once the data has ended. */
export function receivedHeader(s: SessionState, txn: TransactionState): string {
  const proto = (s.raw.openingCommand === 'HELO' ? 'SMTP' : 'ESMTP') + (s.secure ? 'S' : '') + (s.user ? 'A' : '');
  const forPart = txn.recipients.length === 1 ? `\r\n\tfor <${clean(txn.recipients[0]!.address)}>` : '';
  const origin = s.origin;
  const via = origin.proxied ? ` (via [${clean(origin.peer)}] ${origin.proxied === 'xclient' ? 'XCLIENT' : 'PROXY'})` : '';
  const fwd = origin.forwarded?.addr ? ` (XFORWARD from [${clean(origin.forwarded.addr)}] by [${clean(origin.peer)}])` : '';
  return `Received: from ${clean(s.helo ?? 'unknown')} ([${s.remoteAddress}])${via}${fwd}\r\n\tby ${clean(s.config.hostname)} (Portcullis) with ${proto} id ${txn.id}${forPart};\r\n\t${dateNow()}\r\n`;
}
