/**
 * Finds bare CR, bare LF or NUL in DATA: the raw material of SMTP smuggling (a `\n.\n` that one
 * server reads as end-of-data and another does not). smtp-server passes them through; we reject the
 * message. NUL is not text either (RFC 5321 2.3.8) and some servers drop it, which would turn
 * "\r\n.\0\r\n" into an end of data further down the line. State carries over chunk boundaries.
 *
 * The scan jumps from one CR/LF/NUL to the next with Buffer#indexOf (native code) instead of
 * looking at every byte in JavaScript: this runs on every byte of every message.
 */
export class LineEndingGuard {
  /** The previous chunk ended in CR: the next byte must be LF. */
  private pendingCR = false;
  /** Byte offset of the first offending byte, or -1. */
  violationAt = -1;
  private seen = 0;

  /** Returns false once a violation was seen. */
  check(chunk: Buffer): boolean {
    if (this.violationAt >= 0) return false;
    let i = 0;
    if (this.pendingCR) {
      if (chunk.length === 0) return true;
      if (chunk[0] !== 0x0a) return this.fail(-1);
      this.pendingCR = false;
      i = 1;
    }
    if (chunk.indexOf(0x00, i) >= 0) return this.fail(chunk.indexOf(0x00, i));
    // Every LF must follow a CR, every CR must precede an LF.
    for (let lf = chunk.indexOf(0x0a, i); lf >= 0; lf = chunk.indexOf(0x0a, lf + 1)) {
      if (lf === 0 || chunk[lf - 1] !== 0x0d) return this.fail(lf);
    }
    for (let cr = chunk.indexOf(0x0d, i); cr >= 0; cr = chunk.indexOf(0x0d, cr + 1)) {
      if (cr === chunk.length - 1) {
        this.pendingCR = true;
        break;
      }
      if (chunk[cr + 1] !== 0x0a) return this.fail(cr);
    }
    this.seen += chunk.length;
    return true;
  }

  /** Call at end of data: a trailing lone CR is a violation too. */
  finish(): boolean {
    if (this.violationAt < 0 && this.pendingCR) this.violationAt = this.seen - 1;
    return this.violationAt < 0;
  }

  private fail(offset: number): false {
    this.violationAt = this.seen + offset;
    return false;
  }
}
