import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Splitter } from 'mailsplit';
import { MimeWalker } from '../src/intake/mime-walker.js';
// The reference: each leaf's body as mailsplit's own decoder (getDecoder) gives it.
import { walk } from './mime-splitter.test.js';

/** Each leaf's body as the core's walker hands it to a screener, and the order of done() calls. */
async function byWalker(chunks: Buffer[]): Promise<string[]> {
  const out: string[] = [];
  const walker = new MimeWalker<string>(
    (part) => {
      const parts: Buffer[] = [];
      return [{ owner: 't', part, screener: { update: (b: Buffer) => void parts.push(b), done: () => (out.push(Buffer.concat(parts).toString('latin1')), { action: 'keep' as const }) } }];
    },
    (s) => Promise.resolve(s.screener.done()),
  );
  await pipeline(Readable.from(chunks), new Splitter(), walker);
  await walker.results();
  return out;
}

describe('MimeWalker: what part screeners see', () => {
  it('hands every leaf the bytes mailsplit decodes, 7bit/8bit/binary/unknown without a decoder stream, base64 and QP through one', async () => {
    const b64 = Buffer.from('MZ\x90\x00 binary '.repeat(30), 'latin1').toString('base64').replace(/.{76}/g, '$&\r\n');
    const part = (headers: string, body: string) => `--b\r\n${headers}\r\n\r\n${body}\r\n`;
    const raw = Buffer.from(
      'From: a@b.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\npreamble\r\n' +
        part('Content-Type: text/plain', 'no transfer encoding\r\n.line\r\n') +
        part('Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit', 'seven bit\r\n') +
        part('Content-Type: text/plain; charset=latin1\r\nContent-Transfer-Encoding: 8BIT', 'Gr\xfc\xdfe\r\n') +
        part('Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary', '\x00\x01\xff\r\nbin') +
        part('Content-Type: text/plain\r\nContent-Transfer-Encoding: x-unknown (comment)', 'as is=3D\r\n') +
        part('Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64', b64) +
        part('Content-Type: text/plain\r\nContent-Transfer-Encoding: Quoted-Printable', 'soft=\r\nbreak =3D equals\r\n') +
        part('Content-Type: message/rfc822', 'Subject: inner\r\nContent-Type: text/plain\r\n\r\ninner body\r\n') +
        part('Content-Type: text/plain', '') +
        '--b--\r\nepilogue\r\n',
      'latin1',
    );
    const want = (await walk(() => new Splitter(), [raw])).bodies;
    assert.equal(want.length, 9);
    const cuts: Buffer[][] = [[raw], [...raw].map((b) => Buffer.from([b]))];
    for (let i = 1; i < raw.length; i += 37) cuts.push([raw.subarray(0, i), raw.subarray(i)]);
    for (const chunks of cuts) assert.deepEqual(await byWalker(chunks), want, `in ${chunks.length} chunks`);
  });

  it("fails only the screener whose update throws: its outcome is the error, its done is not asked, the others finish, nothing is thrown out of the walk", async () => {
    const raw = Buffer.from(
      'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' +
        '--b\r\nContent-Type: text/plain\r\n\r\nplain part\r\n' +
        '--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n',
      'latin1',
    );
    const dones: string[] = [];
    const screener = (owner: string, part: { index: number }) => ({
      owner,
      part,
      screener: {
        update: () => {
          if (owner === 'thrower') throw new Error(`update threw in part ${part.index}`);
        },
        done: () => (dones.push(`${owner}@${part.index}`), { action: 'keep' as const }),
      },
    });
    const walker = new MimeWalker<string>((part) => [screener('thrower', part), screener('fine', part)] as never, (s) => Promise.resolve(s.screener.done()));
    await pipeline(Readable.from([raw]), new Splitter(), walker);
    const results = await walker.results();
    assert.deepEqual(
      results.map((r) => [r.owner, r.part.index, r.error instanceof Error ? r.error.message : r.decision?.action]),
      [
        ['thrower', 1, 'update threw in part 1'],
        ['fine', 1, 'keep'],
        ['thrower', 2, 'update threw in part 2'],
        ['fine', 2, 'keep'],
      ],
    );
    assert.deepEqual(dones, ['fine@1', 'fine@2']);
  });
});
