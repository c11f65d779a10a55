/**
 * Finds `rfc822` or `filename` in any letter case (what `/rfc822|filename/i` finds in the bytes read
 * as latin1) in a stream of chunks, without making a string of them: the raw pass's prefilter reads
 * every byte of most messages, and a latin1 copy of each chunk was a few per cent of all the bytes the
 * relay allocates per message. Matches across chunk boundaries count (the last 7 bytes are carried).
 */
export class MentionScanner {
  /** The carried tail of earlier chunks, then the start of the current one. */
  private readonly window = Buffer.alloc(2 * CARRY);
  private carried = 0;

  /** True once the chunks so far (this one included) hold a mention. */
  push(chunk: Buffer): boolean {
    const head = Math.min(CARRY, chunk.length);
    chunk.copy(this.window, this.carried, 0, head);
    if (this.carried && mentions(this.window, this.carried + head)) return true;
    if (mentions(chunk, chunk.length)) return true;
    if (chunk.length >= CARRY) {
      chunk.copy(this.window, 0, chunk.length - CARRY);
      this.carried = CARRY;
    } else {
      const total = this.carried + head; // the window holds the carried bytes and all of this chunk
      const keep = Math.min(CARRY, total);
      this.window.copy(this.window, 0, total - keep, total);
      this.carried = keep;
    }
    return false;
  }
}

/** One less than the longer needle: enough to see a match across a boundary. */
const CARRY = 7;

const FILENAME = Buffer.from('filename', 'latin1');
/** Horspool shifts for `filename`, both letter cases. */
const SHIFT = (() => {
  const t = new Uint8Array(256).fill(FILENAME.length);
  for (let i = 0; i < FILENAME.length - 1; i++) {
    const c = FILENAME[i]!;
    t[c] = t[c ^ 0x20] = FILENAME.length - 1 - i;
  }
  return t;
})();

/** `filename` or `rfc822`, any case, in `b[0, end)`. */
export function mentions(b: Buffer, end: number): boolean {
  return hasRfc822(b, end) || hasFilename(b, end);
}

function hasRfc822(b: Buffer, end: number): boolean {
  // "822" has no case: the native search finds it, then "rfc" before it is checked by hand.
  for (let at = b.indexOf(DIGITS, 3); at >= 0 && at + 3 <= end; at = b.indexOf(DIGITS, at + 1)) {
    if ((b[at - 3]! | 0x20) === 0x72 && (b[at - 2]! | 0x20) === 0x66 && (b[at - 1]! | 0x20) === 0x63) return true;
  }
  return false;
}
const DIGITS = Buffer.from('822', 'latin1');

function hasFilename(b: Buffer, end: number): boolean {
  const m = FILENAME.length;
  // `| 0x20` folds a letter's case exactly (every byte of the needle is a letter).
  for (let last = m - 1; last < end; last += SHIFT[b[last]!]!) {
    let j = m - 1;
    while (j >= 0 && (b[last - (m - 1 - j)]! | 0x20) === FILENAME[j]) j--;
    if (j < 0) return true;
  }
  return false;
}
