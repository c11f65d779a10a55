/**
 * The Postfix policy delegation protocol (SMTPD_POLICY_README) on the wire: a request is
 * `name=value` lines ending with an empty line; the answer is the same, with at least `action=`.
 * Written here rather than taken from npm: the few packages that speak it are servers, not clients,
 * and the framing is ten lines.
 */

/** Longest answer we read before calling the server broken (Postfix's own attribute limits are of this order). */
export const MAX_ANSWER_BYTES = 16 * 1024;

/**
 * A value as it may go on the wire: no CR, LF or NUL (each would end a line or the request early
 * and let a client inject attributes), no other control characters; each becomes `?`.
 */
export function sanitizeValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\x00-\x1f\x7f]/g, '?');
}

/** One request: attributes in order, then the empty line. Names are ours; values are sanitised. */
export function encodeRequest(attrs: ReadonlyArray<readonly [string, string]>): Buffer {
  let out = '';
  for (const [name, value] of attrs) out += `${name}=${sanitizeValue(value)}\n`;
  return Buffer.from(`${out}\n`, 'utf8');
}

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/**
 * Looks for one complete answer at the start of `buf`. Returns the attributes and the number of
 * bytes used, or undefined while the answer is incomplete. Throws ProtocolError for an answer that
 * is too long or has a line that is not `name=value`.
 */
export function parseAnswer(buf: Buffer): { attrs: Map<string, string>; used: number } | undefined {
  const end = findEnd(buf);
  if (end < 0) {
    if (buf.length > MAX_ANSWER_BYTES) throw new ProtocolError(`answer longer than ${MAX_ANSWER_BYTES} bytes without an empty line`);
    return undefined;
  }
  const text = buf.subarray(0, end).toString('utf8');
  const attrs = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (!line) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new ProtocolError(`answer line is not name=value: ${JSON.stringify(line.slice(0, 80))}`);
    attrs.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1));
  }
  return { attrs, used: end + 1 };
}

/**
 * Finds the end of an answer as its pieces arrive, each byte looked at once: `scan(piece)` gives the
 * index (from the answer's first byte) of the `\n` that ends it, the same one `parseAnswer` finds,
 * or -1 while there is none. The connection joins the pieces once, when the answer is whole; joining
 * and searching everything read so far for every piece made an answer that trickles in a byte at a
 * time cost its length squared (16 KB: 128 MB copied and searched on the relay's event loop).
 */
export class AnswerEnd {
  /** 0 inside a line, 1 at the start of a line (the answer starts there), 2 after a line start's CR. */
  private state = 1;
  private seen = 0;

  scan(piece: Buffer): number {
    let s = this.state;
    for (let i = 0; i < piece.length; i++) {
      const b = piece[i];
      if (b === 0x0a) {
        if (s !== 0) return this.seen + i;
        s = 1;
      } else s = s === 1 && b === 0x0d ? 2 : 0;
    }
    this.state = s;
    this.seen += piece.length;
    return -1;
  }
}

/** Index of the `\n` that ends the answer (the empty line), or -1. Accepts `\r\n` line ends too. */
function findEnd(buf: Buffer): number {
  // An answer that starts with an empty line is an empty answer (no action): complete at once.
  if (buf[0] === 0x0a) return 0;
  if (buf[0] === 0x0d && buf[1] === 0x0a) return 1;
  for (let i = buf.indexOf(0x0a); i >= 0 && i + 1 < buf.length; i = buf.indexOf(0x0a, i + 1)) {
    if (buf[i + 1] === 0x0a) return i + 1;
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 2;
  }
  return -1;
}
