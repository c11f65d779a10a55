import type { Transaction } from '@portcullis/core';

/** Printable ASCII without spaces or brackets, at most 255 characters: safe inside a Received line. */
const token = (s: string | undefined) => (s ?? '').replace(/[^\x21-\x7e]|[()[\]\\]/g, '').slice(0, 255) || 'unknown';

/**
 * The Received line the relay will put on top, as spamd should see it (Postfix's layout, which
 * SpamAssassin parses): without it spamd knows nothing of the client that handed us the message
 * (its relay rules and trusted_networks need that hop). Sent to spamd only; never spooled (the
 * core adds its own Received when it commits).
 */
export function receivedLine(txn: Transaction, hostname: string, now: Date): string {
  const s = txn.session;
  const ip = s.remoteAddress.replace(/^::ffff:(?=\d+\.)/, '');
  const literal = ip.includes(':') ? `IPv6:${ip}` : ip;
  const proto = `ESMTP${s.secure ? 'S' : ''}${s.user ? 'A' : ''}`;
  const rcpt = txn.recipients.length === 1 ? `\r\n\tfor <${token(txn.recipients[0]!.address)}>` : '';
  const date = now.toUTCString().replace(/GMT$/, '+0000');
  return `Received: from ${token(s.helo)} (unknown [${literal}])\r\n\tby ${token(hostname)} (Portcullis) with ${proto} id ${token(txn.id)}${rcpt};\r\n\t${date}\r\n`;
}
