import type { Transform, TransformCallback } from 'node:stream';
import type { MimeNode } from 'mailsplit';
import { MimeSplitter } from './mime-splitter.js';
import type { MimeLimitHit, MimeLimits } from './mime-walker.js';
import { Replies, type Reply } from '../api/verdicts.js';

/**
 * A MIME parser's limit, thrown (or given as the stream's error) by `createMimeSplitter`. A raw reader
 * that lets it reject its promise gets the core's own verdict for that limit (552 5.3.4 / 554 5.6.0),
 * not a plugin failure.
 */
export class MimeLimitError extends Error {
  readonly code = 'EMIMELIMIT';
  constructor(readonly hit: MimeLimitHit) {
    super(`MIME structure over limits.mime (${hit.limit}: ${hit.at})`);
    this.name = 'MimeLimitError';
  }
}

/** Checked by shape, so a plugin built against another copy of the core is understood too. */
export function isMimeLimitError(err: unknown): err is MimeLimitError {
  const e = err as { code?: unknown; hit?: { limit?: unknown } } | null;
  return !!e && e.code === 'EMIMELIMIT' && typeof e.hit?.limit === 'string';
}

/** The limits a plugin's own MIME parse must keep: the relay's `limits.mime` and `limits.headerSize`. */
export interface MimeParseLimits {
  readonly headerSize: number;
  readonly mime: MimeLimits;
}

/** The core's reply for a message past `hit` (the same everywhere: core walk or a plugin's parse). */
export function mimeLimitReply(hit: MimeLimitHit, limits: MimeLimits): Reply {
  const reply = hit.limit === 'parts' ? Replies.mimeTooManyParts : hit.limit === 'depth' ? Replies.mimeTooDeep : Replies.mimePartHeaders;
  const limit = hit.limit === 'parts' ? limits.parts : hit.limit === 'depth' ? limits.depth : limits.partHeaderFields;
  return { ...reply, text: `${reply.text} (limit ${limit})` };
}

/**
 * mailsplit's Splitter (the core's fast-path MimeSplitter) that keeps the relay's MIME limits: the
 * part count, the nesting depth, the fields of a part header and the size of a part header. Past one
 * it emits no further node and fails with a `MimeLimitError`, at once, so a plugin's own MIME pass
 * stops where the core's does instead of at mailsplit's built-in 1,000 nodes (or never). Use it in a
 * raw reader as `pipeline(stream, createMimeSplitter(limits), yourWalker)` and let the error reject
 * the reader's promise: the client gets the same 552 5.3.4 / 554 5.6.0 as from the core's own walk.
 * `limits` is the relay config's `limits` (resolve `Tokens.Config` in `setup`).
 */
export function createMimeSplitter(limits: MimeParseLimits): Transform {
  return new LimitedSplitter(limits);
}

class LimitedSplitter extends MimeSplitter {
  private nodes = 0;
  private hit?: MimeLimitHit;

  constructor(private readonly limits: MimeParseLimits) {
    // mailsplit's own node limit sits just above ours, so it only fires if our count missed.
    super({ maxChildNodes: limits.mime.parts + 1, maxHeadSize: limits.headerSize });
  }

  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (this.hit) return false;
    const node = chunk as MimeNode | null;
    if (node && node.type === 'node') {
      this.hit = this.check(node);
      if (this.hit) return false;
    }
    return super.push(chunk, encoding);
  }

  override _transform(chunk: Buffer, enc: BufferEncoding, cb: TransformCallback): void {
    if (this.hit) return cb(new MimeLimitError(this.hit));
    super._transform(chunk, enc, (err, data) => cb(this.failure(err), data));
  }

  override _flush(cb: TransformCallback): void {
    if (this.hit) return cb(new MimeLimitError(this.hit));
    super._flush((err, data) => cb(this.failure(err), data));
  }

  /** Our limit first; mailsplit's own limits (EMAXLEN: child nodes, head size) become ours too. */
  private failure(err: Error | null | undefined): Error | null | undefined {
    if (this.hit) return new MimeLimitError(this.hit);
    const code = (err as { code?: string } | null | undefined)?.code;
    if (err && code === 'EMAXLEN') return new MimeLimitError({ limit: /header/i.test(err.message) ? 'header' : 'parts', at: 0 });
    return err;
  }

  private check(node: MimeNode): MimeLimitHit | undefined {
    this.nodes++;
    if (this.nodes > this.limits.mime.parts) return { limit: 'parts', at: this.nodes };
    let depth = 0;
    for (let p = node.parentNode; p; p = p.parentNode) depth++;
    if (depth > this.limits.mime.depth) return { limit: 'depth', at: depth };
    const fields = node.headers.getList().length;
    if (fields > this.limits.mime.partHeaderFields) return { limit: 'header', at: fields };
    return undefined;
  }
}
