import type { TransformCallback } from 'node:stream';
import { Splitter, type MimeNode } from 'mailsplit';

type SplitterOptions = ConstructorParameters<typeof Splitter>[0] & { maxChildNodes?: number };

interface SplitterInternals {
  node: MimeNode & { addHeaderChunk(line: Buffer): void; parseHeaders(): void; constructor: new (parent: false, config: object) => MimeNode };
  config: object;
  maxHeadSize: number;
  _transform(chunk: Buffer, enc: BufferEncoding, cb: TransformCallback): void;
  _flush(cb: TransformCallback): void;
}

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');

/**
 * mailsplit's Splitter with a fast path for the commonest message of all: one that is not
 * multipart and not an attached message, i.e. whose MIME tree is its root alone. mailsplit walks
 * every byte of the body in JavaScript, line by line, to look for boundaries such a message cannot
 * have. Here the header block is held until its blank line; mailsplit's own MimeNode parses it; if
 * the root is a leaf, the node and then every body chunk go out as mailsplit would send them (the
 * same node facts, the same body bytes, in larger chunks); anything else (multipart,
 * message/rfc822, a header without an end or longer than the head-size limit) is handed to
 * mailsplit unchanged from the first byte, so its behaviour and errors stay exactly its own.
 */
export class MimeSplitter extends Splitter {
  private mode: 'head' | 'leaf' | 'mailsplit' = 'head';
  private held: Buffer[] = [];
  private heldBytes = 0;
  private leaf?: MimeNode;

  constructor(options?: SplitterOptions) {
    super(options as never);
  }

  override _transform(chunk: Buffer, enc: BufferEncoding, cb: TransformCallback): void {
    const self = this as unknown as SplitterInternals;
    if (this.mode === 'mailsplit') return Splitter.prototype._transform.call(this, chunk, enc, cb);
    if (this.mode === 'leaf') {
      this.push({ type: 'body', value: chunk, node: this.leaf });
      return cb();
    }
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    const all = this.held.length === 1 ? chunk : Buffer.concat(this.held, this.heldBytes);
    this.held = [all];
    // The header ends at the first empty line: at the very start, or at CRLF CRLF.
    const end = all.subarray(0, 2).equals(CRLF) ? 2 : ((i) => (i < 0 ? -1 : i + 4))(all.indexOf(HEADER_END));
    if (end < 0) {
      if (this.heldBytes > self.maxHeadSize) return this.toMailsplit(enc, cb);
      return cb();
    }
    if (end > self.maxHeadSize) return this.toMailsplit(enc, cb);
    const probe = new self.node.constructor(false, self.config) as SplitterInternals['node'];
    probe.addHeaderChunk(all.subarray(0, end));
    probe.parseHeaders();
    if (probe.multipart || probe.contentType === 'message/rfc822') return this.toMailsplit(enc, cb);
    this.mode = 'leaf';
    this.leaf = probe;
    this.held = [];
    this.push(probe);
    if (end < all.length) this.push({ type: 'body', value: all.subarray(end), node: probe });
    cb();
  }

  override _flush(cb: TransformCallback): void {
    if (this.mode === 'leaf') return cb();
    if (this.mode === 'head' && this.heldBytes) {
      // The data ended inside the header: mailsplit's way of ending a header-only message.
      return this.toMailsplit('buffer' as BufferEncoding, (err) => (err ? cb(err) : Splitter.prototype._flush.call(this, cb)));
    }
    Splitter.prototype._flush.call(this, cb);
  }

  /** From now on mailsplit does everything, starting with what was held. */
  private toMailsplit(enc: BufferEncoding, cb: TransformCallback): void {
    this.mode = 'mailsplit';
    const held = this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held, this.heldBytes);
    this.held = [];
    Splitter.prototype._transform.call(this, held, enc, cb);
  }
}
