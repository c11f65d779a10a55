/**
 * Finds bare CR, bare LF or NUL in DATA: the raw material of SMTP smuggling (a `\n.\n` that one server
 * reads as end-of-data and another does not). smtp-server passes them through; we reject the
 * message. State carries over chunk boundaries.
 */
export class LineEndingGuard {
  private prevCR = false;
  /** Byte offset of the first offending byte, or -1. */
  violationAt = -1;
  private seen = 0;

  /** Returns false once a violation was seen. */
  check(chunk: Buffer): boolean {
    if (this.violationAt >= 0) return false;
    let prevCR = this.prevCR;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (prevCR && b !== 0x0a) {
        this.violationAt = this.seen + i - 1;
        return false;
      }
      // NUL is not text (RFC 5321 2.3.8) and some servers drop it, turning "\r\n.\0\r\n" into an
      // end of data further down the line: a smuggling vector too.
      if (b === 0x00 || (b === 0x0a && !prevCR)) {
        this.violationAt = this.seen + i;
        return false;
      }
      prevCR = b === 0x0d;
    }
    this.prevCR = prevCR;
    this.seen += chunk.length;
    return true;
  }

  /** Call at end of data: a trailing lone CR is a violation too. */
  finish(): boolean {
    if (this.violationAt < 0 && this.prevCR) this.violationAt = this.seen - 1;
    return this.violationAt < 0;
  }
}
