import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable, type Transform } from 'node:stream';
import DataStream from 'nodemailer/lib/smtp-connection/data-stream.js';
import { DotStuffer, stuff } from '../src/delivery/dot-stuffer.js';
import { canUseFastDotStuffing } from '../src/delivery/outbound-stuffing.js';
import { installedNodemailerVersion, NODEMAILER_PINS, nodemailerHashes } from '../src/adapter/nodemailer.js';

/** Runs `chunks` through a DATA encoder and returns all it wrote, with its byte counters. */
async function encode(make: () => Transform & { inByteCount: number; outByteCount: number }, chunks: Buffer[]) {
  const t = make();
  const out: Buffer[] = [];
  t.on('data', (c: Buffer) => out.push(c));
  const ended = new Promise((r) => t.on('end', r));
  Readable.from(chunks, { objectMode: false }).pipe(t);
  await ended;
  return { bytes: Buffer.concat(out), inBytes: t.inByteCount, outBytes: t.outByteCount };
}

const theirs = () => new (DataStream as unknown as new () => Transform & { inByteCount: number; outByteCount: number })();
const ours = () => new DotStuffer();

async function same(chunks: Buffer[], label: string) {
  const a = await encode(theirs, chunks);
  const b = await encode(ours, chunks);
  assert.ok(a.bytes.equals(b.bytes), `${label}: output differs\n nodemailer ${JSON.stringify(a.bytes.toString('latin1'))}\n ours       ${JSON.stringify(b.bytes.toString('latin1'))}`);
  assert.equal(b.inBytes, a.inBytes, `${label}: inByteCount`);
  assert.equal(b.outBytes, a.outBytes, `${label}: outByteCount`);
}

/** Every way to cut `s` into two chunks, and into single bytes. */
function splits(s: string): Buffer[][] {
  const b = Buffer.from(s, 'latin1');
  const out: Buffer[][] = [[b], [...b].map((x) => Buffer.from([x]))];
  for (let i = 1; i < b.length; i++) out.push([b.subarray(0, i), b.subarray(i)]);
  return out;
}

describe('outbound DATA encoding (DotStuffer)', () => {
  const cases = [
    'plain\r\nlines\r\n',
    '.starts with a dot\r\n',
    'a\r\n.b\r\n..c\r\n.\r\n',
    'bare\nLF\n.dot after bare LF\n',
    'bare\rCR\r.dot after bare CR\r',
    '\r\n\r\n.\r\n',
    '\n.\n',
    '\r.\r',
    '\r\n.\r',
    '.',
    '..',
    '\r',
    '\n',
    '\r\r\n\n\r.\n.',
    'no line end at all',
    'ends in CR\r',
    'ends in LF\n',
    '\u00e9\u00e8 8-bit \xff\r\n.\xfe\r\n',
  ];
  for (const c of cases) {
    it(`writes the same bytes as nodemailer's encoder for ${JSON.stringify(c)}, however it is chunked`, async () => {
      for (const chunks of splits(c)) await same(chunks, `${JSON.stringify(c)} in ${chunks.length} chunks`);
    });
  }

  it('writes the same bytes as nodemailer for 300 random messages of CR, LF, dots and text in random chunks', async () => {
    const alphabet = Buffer.from('\r\n.\r\n.a\r\nb', 'latin1');
    for (let n = 0; n < 300; n++) {
      const len = 1 + (randomBytes(2).readUInt16BE(0) % 600);
      const msg = Buffer.from([...randomBytes(len)].map((r) => alphabet[r % alphabet.length]!));
      const chunks: Buffer[] = [];
      for (let i = 0; i < msg.length; ) {
        const step = 1 + (randomBytes(1)[0]! % 40);
        chunks.push(msg.subarray(i, i + step));
        i += step;
      }
      await same(chunks, `random message ${n}: ${JSON.stringify(msg.toString('latin1'))}`);
    }
  });

  it('passes a chunk with CRLF lines and no leading dot through uncopied', () => {
    const chunk = Buffer.from('Subject: x\r\n\r\nbody\r\n');
    assert.equal(stuff(chunk, 0x0a), chunk);
  });

  it('is only swapped into nodemailer when the library is the pinned version (fails when the library changes)', () => {
    // The pin lives in the nodemailer adapter's table (adapter/nodemailer.ts), beside the swap.
    const installed = nodemailerHashes()['SMTPConnection#_createSendStream'];
    assert.equal(installedNodemailerVersion(), NODEMAILER_PINS.version);
    assert.ok((NODEMAILER_PINS['SMTPConnection#_createSendStream'] as readonly string[]).includes(installed), installed);
    assert.equal(canUseFastDotStuffing(), true);
  });
});
