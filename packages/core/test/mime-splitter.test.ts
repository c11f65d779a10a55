import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Splitter, type MimeNode, type SplitterChunk } from 'mailsplit';
import { MimeSplitter } from '../src/intake/mime-splitter.js';

interface Seen {
  nodes: Array<{ contentType: string | false; encoding: string | false; partNr: string[] | false; filename: string | false; headers: string; multipart: string | false }>;
  /** Decoded body of every leaf, in order, as the walker would hand it to screeners. */
  bodies: string[];
}

/** What the core's walker sees from a splitter: the nodes and each leaf's body, decoded. */
export async function walk(make: () => Splitter, chunks: Buffer[]): Promise<Seen> {
  const seen: Seen = { nodes: [], bodies: [] };
  let decoder: (NodeJS.ReadWriteStream & { end(): void }) | undefined;
  let parts: Buffer[] = [];
  let done: Promise<void> = Promise.resolve();
  const close = async () => {
    if (!decoder) return;
    decoder.end();
    await done;
    seen.bodies.push(Buffer.concat(parts).toString('latin1'));
    decoder = undefined;
  };
  const sink = new Writable({
    objectMode: true,
    write(chunk: SplitterChunk, _e, cb) {
      if (chunk.type === 'node') {
        const n = chunk as MimeNode;
        close().then(() => {
          seen.nodes.push({ contentType: n.contentType, encoding: n.encoding, partNr: n.partNr, filename: n.filename, headers: n.getHeaders().toString('latin1'), multipart: n.multipart });
          if (!n.multipart && !(n.rfc822 && n.messageNode)) {
            parts = [];
            const d = n.getDecoder() as unknown as NodeJS.ReadWriteStream & { end(): void };
            d.on('data', (b: Buffer) => parts.push(b));
            done = new Promise((r) => d.once('end', r));
            decoder = d;
          }
          cb();
        }, cb);
        return;
      }
      if (chunk.type === 'body' && decoder) {
        decoder.write(chunk.value);
      }
      cb();
    },
    final(cb) {
      close().then(() => cb(), cb);
    },
  });
  await pipeline(Readable.from(chunks, { objectMode: false }), make(), sink);
  return seen;
}

async function same(raw: string, label: string) {
  const buf = Buffer.from(raw, 'latin1');
  const cuts: Buffer[][] = [[buf], [...buf].map((b) => Buffer.from([b]))];
  for (let i = 1; i < Math.min(buf.length, 120); i++) cuts.push([buf.subarray(0, i), buf.subarray(i)]);
  const theirs = await walk(() => new Splitter(), [buf]);
  for (const chunks of cuts) {
    const ours = await walk(() => new MimeSplitter(), chunks);
    assert.deepEqual(ours, theirs, `${label}, in ${chunks.length} chunks`);
  }
  return theirs;
}

describe('MimeSplitter (mailsplit with a fast path for single-part messages)', () => {
  it('gives the same node and body as mailsplit for a plain message without Content-Type', async () => {
    const seen = await same('From: a@b.example\r\nSubject: hi\r\n\r\nline one\r\n.line two\r\n\r\nlast', 'plain');
    assert.equal(seen.nodes[0]!.contentType, 'text/plain');
    assert.equal(seen.bodies[0], 'line one\r\n.line two\r\n\r\nlast');
  });

  it('decodes a base64 single-part body like mailsplit', async () => {
    const body = Buffer.from('MZ\x90\x00 binary payload '.repeat(20), 'latin1').toString('base64').replace(/.{76}/g, '$&\r\n');
    await same(`Content-Type: application/octet-stream; name="a.exe"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="a.exe"\r\n\r\n${body}\r\n`, 'base64');
  });

  it('decodes a quoted-printable body like mailsplit', async () => {
    await same('Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nsoft break\r\n', 'qp');
  });

  it('leaves a multipart message to mailsplit entirely', async () => {
    const seen = await same('Content-Type: multipart/mixed; boundary="b"\r\n\r\npre\r\n--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\nContent-Type: application/zip; name="z.zip"\r\nContent-Transfer-Encoding: base64\r\n\r\nUEsDBA==\r\n--b--\r\n', 'multipart');
    assert.equal(seen.nodes.length, 3);
  });

  it('leaves a message/rfc822 root to mailsplit', async () => {
    await same('Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n', 'rfc822');
  });

  it('handles a message that is only a header, or starts with its empty line, like mailsplit', async () => {
    await same('Subject: only a header\r\nX-A: b\r\n', 'header only');
    await same('\r\nno header at all\r\n', 'empty header');
    await same('Subject: folded\r\n continued\r\n\r\n', 'empty body');
  });

  it('hands an oversized header to mailsplit, which raises its own error', async () => {
    const raw = Buffer.from(`X-Big: ${'a'.repeat(5000)}\r\n\r\nbody\r\n`);
    await assert.rejects(walk(() => new MimeSplitter({ maxHeadSize: 1000 }), [raw]), /header/i);
    await assert.rejects(walk(() => new Splitter({ maxHeadSize: 1000 }), [raw]), /header/i);
  });
});
