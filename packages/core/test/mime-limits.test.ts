import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createMimeSplitter, isMimeLimitError, mimeLimitReply, MimeLimitError } from '../src/intake/mime-limits.js';

const limits = { headerSize: 64 * 1024, mime: { parts: 10, depth: 3, partHeaderFields: 5 } };
const head = (ct: string) => `From: a@b.test\r\nContent-Type: ${ct}\r\n\r\n`;
const flat = (n: number) => head('multipart/mixed; boundary="b"') + Array.from({ length: n }, (_, i) => `--b\r\nContent-Type: text/plain\r\n\r\npart ${i}\r\n`).join('') + '--b--\r\n';
function nested(depth: number): string {
  let s = head('multipart/mixed; boundary="d0"');
  for (let i = 1; i < depth; i++) s += `--d${i - 1}\r\nContent-Type: multipart/mixed; boundary="d${i}"\r\n\r\n`;
  s += `--d${depth - 1}\r\nContent-Type: text/plain\r\n\r\nbottom\r\n--d${depth - 1}--\r\n`;
  for (let i = depth - 2; i >= 0; i--) s += `--d${i}--\r\n`;
  return s;
}

/** Runs `text` through a limited splitter; resolves with the node count seen downstream, or the error. */
async function parse(text: string): Promise<{ nodes: number; error?: unknown }> {
  let nodes = 0;
  const sink = new Writable({ objectMode: true, write: (c: { type: string }, _e, cb) => (c.type === 'node' && nodes++, cb()) });
  try {
    await pipeline(Readable.from([Buffer.from(text, 'latin1')]), createMimeSplitter(limits), sink);
    return { nodes };
  } catch (error) {
    return { nodes, error };
  }
}

describe('createMimeSplitter: a plugin MIME parse with the relay limits', () => {
  it('passes a message within every limit, node for node', async () => {
    const r = await parse(flat(9));
    assert.equal(r.error, undefined);
    assert.equal(r.nodes, 10);
  });

  it('fails with a MimeLimitError for the parts limit, without passing the node over it downstream', async () => {
    const r = await parse(flat(10));
    assert.ok(isMimeLimitError(r.error));
    assert.deepEqual((r.error as MimeLimitError).hit, { limit: 'parts', at: 11 });
    assert.equal(r.nodes, 10);
    assert.deepEqual(mimeLimitReply((r.error as MimeLimitError).hit, limits.mime), { code: 552, enhanced: '5.3.4', text: 'Message has too many MIME parts (limit 10)' });
  });

  it('fails with a MimeLimitError for the depth limit (554 5.6.0)', async () => {
    const r = await parse(nested(5));
    assert.ok(isMimeLimitError(r.error));
    assert.equal((r.error as MimeLimitError).hit.limit, 'depth');
    assert.equal(mimeLimitReply((r.error as MimeLimitError).hit, limits.mime).code, 554);
  });

  it('fails with a MimeLimitError for a part header with too many fields', async () => {
    const many = head('multipart/mixed; boundary="h"') + '--h\r\nContent-Type: text/plain\r\n' + Array.from({ length: 6 }, (_, i) => `X-F${i}: ${i}\r\n`).join('') + '\r\nbody\r\n--h--\r\n';
    const r = await parse(many);
    assert.ok(isMimeLimitError(r.error));
    assert.equal((r.error as MimeLimitError).hit.limit, 'header');
  });

  it('turns mailsplit own limit (a part header over headerSize) into a MimeLimitError too', async () => {
    const small = { headerSize: 200, mime: { parts: 10, depth: 3, partHeaderFields: 500 } };
    const big = head('multipart/mixed; boundary="h"') + '--h\r\nContent-Type: text/plain\r\nX-Long: ' + 'x'.repeat(400) + '\r\n\r\nbody\r\n--h--\r\n';
    let error: unknown;
    await pipeline(Readable.from([Buffer.from(big, 'latin1')]), createMimeSplitter(small), new Writable({ objectMode: true, write: (_c, _e, cb) => cb() })).catch((e: unknown) => (error = e));
    assert.ok(isMimeLimitError(error), String(error));
  });

  it('recognises a MimeLimitError by its shape only, not any error', () => {
    assert.equal(isMimeLimitError(new Error('x')), false);
    assert.equal(isMimeLimitError({ code: 'EMIMELIMIT', hit: { limit: 'parts', at: 3 } }), true);
    assert.equal(isMimeLimitError(undefined), false);
  });
});
