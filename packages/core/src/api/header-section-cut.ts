/**
 * Where a message's top-level header section ends, found in its bytes as they arrive in chunks: for
 * a raw reader (`data` hook's `raw`) that needs the header section before the body, and the core's
 * own edits (`intake/edits/content-edits.ts`, whose streamed copy the milter plugin's sequential mode
 * reads too). Bundled users: the milter plugin (its header fields to the milter) and mailauth's DKIM
 * signer (the From: domain picks the keys).
 *
 * Why a class and not "join and search again": a message can arrive in many small pieces (a client
 * that trickles its bytes, one TCP segment each). Joining what came so far and searching it again
 * for every piece costs the square of the pieces: a 256 KB header section in 1-byte pieces is about
 * 34 GB of copying. Here each piece is searched once (a blank line split across pieces shows in the last
 * three bytes before a piece and its first three), and the pieces are joined once, when the blank
 * line is in (usually the first piece alone, not copied).
 */

const EMPTY = Buffer.alloc(0);

/**
 * Where the top-level header section of `buf` ends: the index of the blank line's CRLF (0 when the
 * message starts with the blank line), or -1 when `buf` has no blank line (all header section).
 */
export function headerEnd(buf: Buffer): number {
  if (buf.length >= 2 && buf[0] === 0x0d && buf[1] === 0x0a) return 0;
  const i = buf.indexOf('\r\n\r\n');
  return i >= 0 ? i + 2 : -1;
}

/** The bytes fed so far, cut at the blank line. */
export interface HeaderSectionParts {
  /** The header section: its fields with their CRLFs, without the blank line (may be empty). */
  readonly head: Buffer;
  /** The rest of the bytes fed so far, from the blank line's CRLF on. */
  readonly rest: Buffer;
}

export class HeaderSectionCut {
  private chunks: Buffer[] = [];
  private seen = 0;
  /** The last (at most 3) bytes fed. */
  private tail: Buffer = EMPTY;
  private found = false;

  /** Bytes fed and held so far (the blank line not yet seen). */
  get size(): number {
    return this.seen;
  }

  /**
   * Feeds the next piece. Undefined while the blank line has not come; then the header section and
   * the rest of what was fed, once. Feeding after that is a programming error.
   */
  push(chunk: Buffer): HeaderSectionParts | undefined {
    if (this.found) throw new Error('HeaderSectionCut: the header section has already ended');
    this.chunks.push(chunk);
    if (!this.ends(chunk)) {
      this.tail = chunk.length >= 3 ? chunk.subarray(-3) : Buffer.concat([this.tail, chunk]).subarray(-3);
      this.seen += chunk.length;
      return undefined;
    }
    this.found = true;
    const all = this.take();
    const end = headerEnd(all);
    return { head: all.subarray(0, end), rest: all.subarray(end) };
  }

  /** Everything fed, joined (the input ended without a blank line: all of it is header section). */
  pending(): Buffer {
    return this.take();
  }

  /** Whether the blank line ends in `chunk`, given what came before it. */
  private ends(chunk: Buffer): boolean {
    // A message that starts with the blank line: the piece holding its second byte.
    if (this.seen < 2 && this.seen + chunk.length >= 2) {
      const start = this.seen === 0 ? chunk : Buffer.concat([this.tail, chunk.subarray(0, 2 - this.seen)]);
      if (start[0] === 0x0d && start[1] === 0x0a) return true;
    }
    if (chunk.indexOf('\r\n\r\n') >= 0) return true;
    // Split across the boundary: then this piece starts with its CR or LF.
    return this.tail.length > 0 && (chunk[0] === 0x0d || chunk[0] === 0x0a) && Buffer.concat([this.tail, chunk.subarray(0, 3)]).indexOf('\r\n\r\n') >= 0;
  }

  private take(): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    return all;
  }
}
