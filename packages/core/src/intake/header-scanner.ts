/**
 * Watches the top-level header section as it streams by (nothing is buffered): its size, its
 * number of fields, and its Received fields (many hops means a mail loop). Lines end in CRLF (the
 * line-ending guard rejects anything else), so an empty line is a lone CR before LF.
 */
export class HeaderScanner {
  done = false;
  bytes = 0;
  fields = 0;
  received = 0;
  /** Bytes of the current line before its CR LF. */
  private lineLen = 0;
  /** The current line's first bytes, lower-cased, until `received:` can be told. */
  private head = '';

  constructor(private readonly limits: { readonly headerSize: number; readonly headerFields: number; readonly maxReceived: number }) {}

  /** Returns the limit passed, if any. */
  update(chunk: Buffer): 'size' | 'fields' | 'hops' | undefined {
    for (let i = 0; i < chunk.length && !this.done; i++) {
      const b = chunk[i]!;
      this.bytes++;
      if (b === 0x0a) {
        // "\r\n" alone (lineLen counts the CR) ends the header section.
        if (this.lineLen <= 1) this.done = true;
        this.lineLen = 0;
        this.head = '';
        continue;
      }
      if (this.lineLen === 0 && b !== 0x20 && b !== 0x09 && b !== 0x0d) this.fields++;
      if (this.lineLen < 9) {
        this.head += String.fromCharCode(b | 0x20);
        if (this.lineLen === 8 && this.head === 'received:') this.received++;
      }
      this.lineLen++;
      if (this.bytes > this.limits.headerSize) return 'size';
      if (this.fields > this.limits.headerFields) return 'fields';
      if (this.received > this.limits.maxReceived) return 'hops';
    }
    return undefined;
  }
}
