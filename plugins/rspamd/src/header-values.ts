/**
 * Values that go into HTTP request headers and into the message's header section. Both come from
 * the client (HELO, MAIL FROM, RCPT TO) or from rspamd: either can hold bytes the other side
 * cannot carry, and Node's http module throws on some of them (a crash Haraka's rspamd plugin had).
 */

/**
 * An HTTP header value that Node will send as is: UTF-8 bytes kept (obs-text, which rspamd reads as
 * UTF-8, e.g. SMTPUTF8 addresses), control characters (NUL, CR, LF, DEL...) percent-encoded
 * (`%0D`), cut to `maxBytes` at a character boundary. Returned as a latin1 string because that is
 * how Node puts a header string on the wire, one char per byte.
 */
export function httpHeaderValue(value: string, maxBytes: number): string {
  const bytes = Buffer.from(value, 'utf8');
  let out = '';
  let used = 0;
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    // Length of this UTF-8 sequence (invalid lead bytes cannot occur: Buffer.from wrote valid UTF-8).
    const len = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
    const piece = b < 0x20 || b === 0x7f ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : bytes.subarray(i, i + len).toString('latin1');
    if (used + piece.length > maxBytes) break;
    out += piece;
    used += piece.length;
    i += len;
  }
  // HTTP trims surrounding whitespace anyway; a value of spaces only is left out by the caller.
  return out.trim();
}

/**
 * A header field value for the message, from rspamd's reply: folding (CRLF + space or tab) kept,
 * any other CR, LF or control character becomes a space, so no value can end the header section
 * early or smuggle a field.
 */
export function messageHeaderValue(value: string): string {
  return value
    .split(/\r\n(?=[ \t])/)
    .map((line) => line.replace(/[\u0000-\u0008\u000a-\u001f\u007f]/g, ' '))
    .join('\r\n');
}

/** A header field name as RFC 5322 allows it (printable ASCII, no colon, no space). */
export const headerName = /^[!-9;-~]+$/;
