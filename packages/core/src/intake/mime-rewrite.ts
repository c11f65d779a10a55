import { createReadStream, createWriteStream } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import libqp from 'libqp';
import { Joiner, Splitter, type MimeNode, type SplitterChunk } from 'mailsplit';

/**
 * The second pass, run only when a screener replaced a part: reads the spooled message from disk
 * and writes a copy in which those parts (by document-order index, as the first pass counted them)
 * become a short text/plain notice. Everything else passes through mailsplit byte for byte.
 */
export async function rewriteParts(src: string, dest: string, notices: ReadonlyMap<number, string>): Promise<void> {
  let index = -1;
  let replacing = false;
  const replacer = new Transform({
    objectMode: true,
    transform(chunk: SplitterChunk, _enc: BufferEncoding, cb: TransformCallback) {
      if (chunk.type === 'node') {
        index++;
        const notice = notices.get(index);
        replacing = notice !== undefined;
        if (replacing) {
          replaceHeaders(chunk);
          this.push(chunk);
          this.push({ type: 'body', node: chunk, value: Buffer.from(encodeNotice(notice!)) });
          return cb();
        }
        return cb(null, chunk);
      }
      if (chunk.type === 'body' && replacing) return cb();
      cb(null, chunk);
    },
  });
  await pipeline(createReadStream(src), new Splitter(), replacer, new Joiner(), createWriteStream(dest));
}

function replaceHeaders(node: MimeNode): void {
  const h = node.headers;
  for (const key of ['content-type', 'content-disposition', 'content-transfer-encoding', 'content-description', 'content-id', 'content-md5']) {
    if (h.hasHeader(key)) h.remove(key);
  }
  h.add('Content-Transfer-Encoding', 'quoted-printable');
  h.add('Content-Disposition', 'inline');
  h.add('Content-Type', 'text/plain; charset=utf-8');
}

/** Quoted-printable (libqp), ending with CRLF so the next boundary starts on its own line. */
function encodeNotice(text: string): string {
  return libqp.wrap(libqp.encode(Buffer.from(text.replace(/\r?\n/g, '\r\n'), 'utf8')), 76).replace(/\r?\n/g, '\r\n') + '\r\n';
}
