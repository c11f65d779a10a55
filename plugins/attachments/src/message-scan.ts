import { createReadStream } from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import libmime from 'libmime';
import { Splitter, type MimeNode, type SplitterChunk } from 'mailsplit';
import { ContentInspector, emptyInspection, merge, type Budget, type InspectContext, type Inspection } from './inspector.js';
import { candidateNames, displayName } from './names.js';

/** A leaf part as our own walk sees it (the same facts the core's MimePart gives). */
export interface LeafInfo {
  readonly node: MimeNode;
  readonly contentType: string;
  readonly names: string[];
  /** Inside a message/rfc822 that mailsplit descended into. */
  readonly nested: boolean;
}

/** What a walk does with one leaf's decoded bytes. */
export interface LeafSink {
  update(chunk: Buffer): void;
  end(): void;
}

export function headerValues(node: MimeNode, name: string): string[] {
  return node.headers.get(name).map((line) => {
    const i = line.indexOf(':');
    return (i >= 0 ? line.slice(i + 1) : line).replace(/\r?\n[ \t]+/g, ' ').trim();
  });
}

function decodeWords(v: string | undefined): string | undefined {
  if (!v) return undefined;
  try {
    return libmime.decodeWords(v);
  } catch {
    return v;
  }
}

export function leafInfo(node: MimeNode): LeafInfo {
  const names = candidateNames([decodeWords(node._parsedContentDisposition?.params.filename), decodeWords(node._parsedContentType?.params.name)], {
    contentType: headerValues(node, 'content-type'),
    contentDisposition: headerValues(node, 'content-disposition'),
  });
  let nested = false;
  for (let p = node.parentNode; p; p = p.parentNode) if (p.rfc822) nested = true;
  return { node, contentType: (node.contentType || 'text/plain').toLowerCase(), names, nested };
}

/**
 * Our own pass over a message with mailsplit, for what the core's walk does not cover: the parts of
 * an attached message we wrote to a temp file, and attached messages mailsplit does not descend
 * into. Leaves are the parts that are neither multipart nor a message mailsplit opened; a
 * message/rfc822 it left closed (an attachment, or base64-encoded) is a leaf too.
 */
export class LeafWalker extends Writable {
  /** Called with the message's root node (its headers), once. */
  onRoot?: (node: MimeNode) => void;
  private seenRoot = false;
  private current?: { decoder: NodeJS.ReadWriteStream & { end(cb?: () => void): void }; ended: Promise<void> };

  constructor(private readonly onLeaf: (leaf: LeafInfo) => LeafSink | undefined) {
    super({ objectMode: true, highWaterMark: 16 });
  }

  override _write(chunk: SplitterChunk, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (chunk.type === 'node') {
      if (!this.seenRoot) {
        this.seenRoot = true;
        this.onRoot?.(chunk);
      }
      this.close()
        .then(() => {
          this.open(chunk);
          cb();
        })
        .catch(cb);
      return;
    }
    if (chunk.type === 'body' && this.current) {
      const d = this.current.decoder;
      if (!d.write(chunk.value)) d.once('drain', () => cb());
      else cb();
      return;
    }
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.close().then(() => cb(), cb);
  }

  private open(node: MimeNode): void {
    if (node.multipart || (node.rfc822 && node.messageNode)) return;
    const sink = this.onLeaf(leafInfo(node));
    if (!sink) return;
    const decoder = node.getDecoder() as unknown as NodeJS.ReadWriteStream & { end(cb?: () => void): void };
    decoder.on('data', (d: Buffer) => sink.update(d));
    const ended = new Promise<void>((resolve) => {
      decoder.once('end', () => (sink.end(), resolve()));
      decoder.once('error', () => (sink.end(), resolve())); // a broken encoding: what was decoded is screened
    });
    this.current = { decoder, ended };
  }

  private async close(): Promise<void> {
    const cur = this.current;
    this.current = undefined;
    if (!cur) return;
    cur.decoder.end();
    await cur.ended;
  }
}

/**
 * Screens a message stored in a file (an attached message/rfc822 or `.eml`), every leaf with the
 * same inspection as a top-level part, one level deeper.
 */
export async function scanMessageFile(file: string, ctx: InspectContext, depth: number, budget: Budget, label: string): Promise<Inspection> {
  const out = emptyInspection();
  const pending: Array<Promise<void>> = [];
  const walker = new LeafWalker((leaf) => {
    const name = leaf.names[0];
    const partLabel = name ? `attachment "${displayName(name)}" in ${label}` : `a part of ${label}`;
    for (const n of leaf.names) out.names.push({ name: n, label: `attachment "${displayName(n)}" in ${label}` });
    out.types.push(leaf.contentType);
    const inspector = new ContentInspector(ctx, {
      isMessage: leaf.contentType === 'message/rfc822' || leaf.names.some((n) => /\.eml$/i.test(n)),
      isText: leaf.contentType.startsWith('text/'),
      named: leaf.names.length > 0,
      depth,
      budget,
      label: partLabel,
    });
    return {
      update: (c) => inspector.update(c),
      end: () => {
        pending.push(
          inspector
            .finish()
            .then((inner) => merge(out, inner))
            .finally(() => inspector.cleanup()),
        );
      },
    };
  });
  await pipeline(createReadStream(file), new Splitter(), walker);
  await Promise.all(pending);
  return out;
}
