import { Writable } from 'node:stream';
import libmime from 'libmime';
import type { MimeNode, SplitterChunk } from 'mailsplit';
import type { MimePart, PartDecision, PartScreener } from '../api/hooks.js';
import { partParams } from '../adapter/mailsplit.js';

/** A screener attached to a part, with the plugin that owns it. */
export interface AttachedScreener<Owner> {
  readonly owner: Owner;
  readonly part: MimePart;
  readonly screener: PartScreener;
}

/** Limits on the MIME structure (see limits.mime in the config). */
export interface MimeLimits {
  readonly parts: number;
  readonly depth: number;
  readonly partHeaderFields: number;
}

/** Which MIME limit a message went past. `header` also covers a part header mailsplit found too large. */
export type MimeLimitHit = { readonly limit: 'parts' | 'depth' | 'header'; readonly at: number };

/** A finished part screener's outcome (or failure), in document order. */
export interface PartOutcome<Owner> {
  readonly owner: Owner;
  readonly part: MimePart;
  readonly decision?: PartDecision;
  readonly error?: unknown;
}

function decodeName(value: string | undefined): string | undefined {
  if (!value) return undefined;
  try {
    return libmime.decodeWords(value);
  } catch {
    return value;
  }
}

function isNested(node: MimeNode): boolean {
  for (let p = node.parentNode; p; p = p.parentNode) if (p.rfc822) return true;
  return false;
}

/**
 * Consumes mailsplit's object stream: for each leaf part, asks `attach` for screeners and feeds them
 * the decoded body. Decoding goes through mailsplit's own decoder streams (base64, quoted-printable),
 * awaited chunk by chunk, so memory stays bounded by one chunk per part.
 */
export class MimeWalker<Owner> extends Writable {
  private index = -1;
  /** Screeners whose `update` threw, with what it threw (see `feed`). */
  private readonly failed = new Map<AttachedScreener<Owner>, unknown>();
  /**
   * The leaf being read. A part in base64 or quoted-printable goes through mailsplit's decoder; any
   * other (7bit, 8bit, binary, unknown: mailsplit's own decoder for those is a PassThrough) goes
   * to the screeners as it comes, with no stream in between.
   */
  private current?: { node: MimeNode; decoder?: NodeJS.ReadWriteStream & { end(cb?: () => void): void }; screeners: AttachedScreener<Owner>[]; ended?: Promise<void> };
  private readonly outcomes: Array<Promise<PartOutcome<Owner>>> = [];
  /** Set once the message went past a limit: from then on the walker only discards what comes. */
  overLimit?: MimeLimitHit;

  constructor(
    private readonly attach: (part: MimePart) => AttachedScreener<Owner>[],
    private readonly runDone: (s: AttachedScreener<Owner>) => Promise<PartDecision>,
    private readonly limits: MimeLimits = { parts: 500, depth: 50, partHeaderFields: 200 },
    /** Called once, when a limit is first passed (the intake stops feeding the splitter). */
    private readonly onLimit: (hit: MimeLimitHit) => void = () => undefined,
  ) {
    super({ objectMode: true, highWaterMark: 16 });
    // Errors surface through finished()/results(); an 'error' with no listener would end the process.
    this.on('error', () => undefined);
  }

  /** Marks the message as past a limit (also used by the intake for mailsplit's own limit errors). */
  limitReached(hit: MimeLimitHit): void {
    if (this.overLimit) return;
    this.overLimit = hit;
    this.onLimit(hit);
  }

  /** Every part's outcome, once the walker has finished. */
  results(): Promise<PartOutcome<Owner>[]> {
    return Promise.all(this.outcomes);
  }

  override _write(chunk: SplitterChunk, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.overLimit) return cb();
    if (chunk.type === 'node') {
      const hit = this.check(chunk);
      if (hit) {
        this.limitReached(hit);
        this.closeCurrent().then(() => cb(), cb);
        return;
      }
      this.closeCurrent()
        .then(() => {
          this.index++;
          this.openNode(chunk);
          cb();
        })
        .catch(cb);
      return;
    }
    if (chunk.type === 'body' && this.current && !this.current.decoder) {
      const data = chunk.value;
      if (data.length) this.feed(this.current.screeners, data);
      return cb();
    }
    if (chunk.type === 'body' && this.current?.decoder) {
      const decoder = this.current.decoder;
      if (!decoder.write(chunk.value)) {
        // A decoder that failed never drains: its 'close' lets the walk go on (the part fails at done).
        const go = () => {
          decoder.off('drain', go);
          decoder.off('close', go);
          cb();
        };
        decoder.on('drain', go);
        decoder.on('close', go);
      } else cb();
      return;
    }
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.closeCurrent().then(() => cb(), cb);
  }

  private check(node: MimeNode): MimeLimitHit | undefined {
    if (this.index + 2 > this.limits.parts) return { limit: 'parts', at: this.index + 2 };
    let depth = 0;
    for (let p = node.parentNode; p; p = p.parentNode) depth++;
    if (depth > this.limits.depth) return { limit: 'depth', at: depth };
    const fields = node.headers.getList().length;
    if (fields > this.limits.partHeaderFields) return { limit: 'header', at: fields };
    return undefined;
  }

  private openNode(node: MimeNode): void {
    // mailsplit opens an attached message only when it is inline and not transfer-encoded; any
    // other message/rfc822 part stays closed and is screened as a leaf (its bytes are the message).
    if (node.multipart || (node.rfc822 && node.messageNode)) {
      this.current = undefined;
      return;
    }
    const part = this.describe(node);
    const screeners = this.attach(part);
    if (!screeners.length) {
      this.current = undefined;
      return;
    }
    if (node.encoding !== 'base64' && node.encoding !== 'quoted-printable') {
      this.current = { node, screeners };
      return;
    }
    const decoder = node.getDecoder() as unknown as NodeJS.ReadWriteStream & { end(cb?: () => void): void };
    decoder.on('data', (data: Buffer) => this.feed(screeners, data));
    // A listener for the decoder's whole life: bad base64 may error more than once.
    const ended = new Promise<void>((resolve, reject) => {
      decoder.once('end', resolve);
      decoder.on('error', reject);
    });
    this.current = { node, decoder, screeners, ended };
  }

  /**
   * Gives a chunk to each screener. A plugin's `update` that throws fails that screener alone: its
   * outcome is the error (the intake answers it as any plugin failure, fail closed), it gets nothing
   * more, and `done` is not asked. Thrown out of `_write` or a decoder's 'data' listener, the error
   * would be an uncaught exception and end the process.
   */
  private feed(screeners: readonly AttachedScreener<Owner>[], data: Buffer): void {
    for (const s of screeners) {
      if (!s.screener.update || this.failed.has(s)) continue;
      try {
        s.screener.update(data);
      } catch (err) {
        // Not a falsy value: an outcome without a decision or an error would read as "keep".
        this.failed.set(s, err || new Error(`a part screener's update threw ${String(err)}`));
      }
    }
  }

  private async closeCurrent(): Promise<void> {
    const cur = this.current;
    this.current = undefined;
    if (!cur) return;
    let decodeError: unknown;
    if (cur.decoder) {
      cur.decoder.end();
      await cur.ended!.catch((e: unknown) => {
        decodeError = e;
      });
    }
    for (const s of cur.screeners) {
      const error = this.failed.get(s) ?? decodeError;
      this.outcomes.push(
        error
          ? Promise.resolve({ owner: s.owner, part: s.part, error })
          : this.runDone(s).then(
              (decision) => ({ owner: s.owner, part: s.part, decision }),
              (error: unknown) => ({ owner: s.owner, part: s.part, error }),
            ),
      );
    }
  }

  private describe(node: MimeNode): MimePart {
    const params = partParams(node);
    return {
      index: this.index,
      path: node.partNr ? node.partNr.join('.') || '1' : String(this.index),
      contentType: (node.contentType || 'text/plain').toLowerCase(),
      disposition: node.disposition || undefined,
      filename: decodeName(params.disposition.filename),
      name: decodeName(params.contentType.name),
      transferEncoding: node.encoding ? String(node.encoding).toLowerCase() : undefined,
      nested: isNested(node),
      header: (name: string) =>
        node.headers.get(name).map((line) => {
          const i = line.indexOf(':');
          return (i >= 0 ? line.slice(i + 1) : line).replace(/\r?\n[ \t]+/g, ' ').trim();
        }),
    };
  }
}
