import { Transform, type TransformCallback } from 'node:stream';

/** One field of the top-level header, as `HeaderFilter` hands it to the predicate. */
export interface HeaderField {
  /** The field name as written (case kept), e.g. `Authentication-Results`. */
  readonly name: string;
  /** The text after the colon, unfolded (CRLF before whitespace removed), not trimmed of inner space. */
  readonly value: string;
}

/**
 * Drops fields of the top-level header section from the bytes on their way to the spool file: a
 * field is held until its last folded line is seen (the next line does not start with space or
 * tab), then either passed on untouched or left out. The body passes through without a look.
 *
 * Only the header section is ever held, one field at a time; the header scanner in front of this
 * bounds its size (limits.headerSize), so memory stays flat. Lines end in CRLF here (the
 * line-ending guard has rejected everything else before a byte reaches this stream).
 */
export class HeaderFilter extends Transform {
  private inBody = false;
  /** Bytes of the field being collected (all its lines, CRLFs included). */
  private field: Buffer[] = [];
  private fieldLen = 0;
  /** The line being collected (not yet ended by LF). */
  private line: Buffer[] = [];
  /** Fields left out so far, for logs and tests. */
  readonly dropped: HeaderField[] = [];

  constructor(private readonly shouldDrop: (field: HeaderField) => boolean) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.inBody) return cb(null, chunk);
    let start = 0;
    while (start < chunk.length && !this.inBody) {
      const lf = chunk.indexOf(0x0a, start);
      if (lf < 0) {
        this.line.push(chunk.subarray(start));
        start = chunk.length;
        break;
      }
      this.line.push(chunk.subarray(start, lf + 1));
      start = lf + 1;
      this.endLine(Buffer.concat(this.line));
      this.line = [];
    }
    if (this.inBody && start < chunk.length) this.push(chunk.subarray(start));
    cb();
  }

  override _flush(cb: TransformCallback): void {
    // A message that ends inside its header (no empty line): decide on the last field, then pass
    // on whatever partial line is left.
    this.endField();
    if (this.line.length) this.push(Buffer.concat(this.line));
    cb();
  }

  private endLine(line: Buffer): void {
    const first = line[0];
    if (first === 0x20 || first === 0x09) {
      // A folded continuation of the current field (or, with no field, a malformed first line: kept).
      if (this.fieldLen) {
        this.field.push(line);
        this.fieldLen += line.length;
      } else this.push(line);
      return;
    }
    this.endField();
    if (line.length <= 2 && (first === 0x0d || first === 0x0a)) {
      this.inBody = true;
      this.push(line);
      return;
    }
    this.field.push(line);
    this.fieldLen += line.length;
  }

  private endField(): void {
    if (!this.fieldLen) return;
    const bytes = Buffer.concat(this.field, this.fieldLen);
    this.field = [];
    this.fieldLen = 0;
    const text = bytes.toString('latin1');
    const colon = text.indexOf(':');
    if (colon > 0) {
      const field: HeaderField = { name: text.slice(0, colon).trim(), value: text.slice(colon + 1).replace(/\r?\n(?=[ \t])/g, '').replace(/\r?\n$/, '') };
      let remove = false;
      try {
        remove = this.shouldDrop(field);
      } catch {
        remove = false; // a failing predicate keeps the field: never lose data on a plugin bug
      }
      if (remove) {
        this.dropped.push(field);
        return;
      }
    }
    this.push(bytes);
  }
}
