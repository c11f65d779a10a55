/**
 * Turns bare LF and bare CR into CRLF, for clients an operator listed in
 * `bareLineEndings.normalize` (legacy internal applications that write Unix line endings). The
 * output then has only CRLF line endings, so the line-ending guard that follows passes it and the
 * next hop sees one unambiguous line structure: nothing can be smuggled. NUL is left alone (the
 * guard still refuses it). State carries over chunk boundaries.
 */
export class LineEndingNormalizer {
  /** The previous chunk ended in CR, already written: an LF starting the next chunk completes it. */
  private pendingCR = false;
  /** How many line endings were rewritten (for the log). */
  fixed = 0;

  push(chunk: Buffer): Buffer {
    let start = 0;
    const out: Buffer[] = [];
    if (this.pendingCR) {
      this.pendingCR = false;
      if (chunk.length && chunk[0] === 0x0a) {
        out.push(chunk.subarray(0, 1));
        start = 1;
      } else if (chunk.length) {
        out.push(LF);
        this.fixed++;
      } else {
        this.pendingCR = true;
        return chunk;
      }
    }
    let from = start;
    for (let i = start; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === 0x0a && (i === 0 || chunk[i - 1] !== 0x0d)) {
        // A bare LF (an LF after a CR that ended the previous chunk was handled above).
        out.push(chunk.subarray(from, i), CRLF);
        from = i + 1;
        this.fixed++;
      } else if (b === 0x0d) {
        if (i === chunk.length - 1) {
          this.pendingCR = true;
        } else if (chunk[i + 1] !== 0x0a) {
          out.push(chunk.subarray(from, i), CRLF);
          from = i + 1;
          this.fixed++;
        }
      }
    }
    if (from === 0 && !out.length) return chunk;
    out.push(chunk.subarray(from));
    return Buffer.concat(out);
  }

  /** At end of data: a trailing lone CR gets its LF. */
  finish(): Buffer | undefined {
    if (!this.pendingCR) return undefined;
    this.pendingCR = false;
    this.fixed++;
    return LF;
  }
}

const LF = Buffer.from('\n');
const CRLF = Buffer.from('\r\n');
