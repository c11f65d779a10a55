import { strict as assert } from 'node:assert';
import { PassThrough, Readable } from 'node:stream';
import { eachChunk } from '../src/intake/data-chunks.js';

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('eachChunk: the DATA loop without for await', () => {
  it('hands over every byte in order and resolves at the end, with a handler that finishes at once', async () => {
    const s = new PassThrough();
    const seen: Buffer[] = [];
    const done = eachChunk(s, (c) => {
      seen.push(c);
    });
    for (let i = 0; i < 50; i++) {
      s.write(Buffer.from(`line ${i}\r\n`));
      if (i % 7 === 0) await tick();
    }
    s.end(Buffer.from('.\r\n'));
    await done;
    const want = Array.from({ length: 50 }, (_, i) => `line ${i}\r\n`).join('') + '.\r\n';
    assert.equal(Buffer.concat(seen).toString(), want);
  });

  it('reads the next chunk only once the handler is done with the one before (one at a time, in order)', async () => {
    const s = new PassThrough({ highWaterMark: 4 });
    let inFlight = 0;
    let most = 0;
    const seen: string[] = [];
    const done = eachChunk(s, async (c) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await tick();
      seen.push(c.toString());
      inFlight--;
    });
    for (let i = 0; i < 20; i++) {
      if (!s.write(Buffer.from(String.fromCharCode(97 + i)))) await new Promise((r) => s.once('drain', r));
    }
    s.end();
    await done;
    assert.equal(most, 1);
    assert.equal(seen.join(''), 'abcdefghijklmnopqrst');
  });

  it('ends after the last chunk when the end arrives while the handler still waits on that chunk', async () => {
    const s = new PassThrough();
    let release!: () => void;
    const order: string[] = [];
    const done = eachChunk(s, (c) => {
      order.push(`take ${c}`);
      return new Promise<void>((r) => (release = r));
    });
    s.end(Buffer.from('last'));
    await tick();
    await tick();
    let resolved = false;
    void done.then(() => (resolved = true));
    await tick();
    assert.equal(resolved, false, 'resolved before the handler was done with the last chunk');
    release();
    await done;
    assert.deepEqual(order, ['take last']);
  });

  it("rejects with the stream's error, after the busy handler is done, and hands over nothing more", async () => {
    const s = new PassThrough();
    s.on('error', () => undefined);
    let release!: () => void;
    const taken: string[] = [];
    const done = eachChunk(s, (c) => {
      taken.push(c.toString());
      return new Promise<void>((r) => (release = r));
    });
    s.write(Buffer.from('one'));
    await tick();
    s.write(Buffer.from('two'));
    s.destroy(Object.assign(new Error('Connection closed before the message was received in full'), { code: 'ECONNECTION' }));
    await tick();
    let settled = false;
    void done.catch(() => (settled = true));
    await tick();
    assert.equal(settled, false, 'settled while the handler was still busy');
    release();
    await assert.rejects(done, { code: 'ECONNECTION' });
    assert.deepEqual(taken, ['one']);
  });

  it('rejects with a premature close when the stream is destroyed without an error before its end', async () => {
    const s = new PassThrough();
    const done = eachChunk(s, () => undefined);
    s.write(Buffer.from('half a message'));
    await tick();
    s.destroy();
    await assert.rejects(done, { code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });

  it("rejects with the handler's throw or rejection", async () => {
    const a = new PassThrough();
    const thrown = eachChunk(a, () => {
      throw new Error('sync failure');
    });
    a.write(Buffer.from('x'));
    await assert.rejects(thrown, /sync failure/);
    const b = new PassThrough();
    const rejected = eachChunk(b, () => Promise.reject(new Error('async failure')));
    b.write(Buffer.from('x'));
    await assert.rejects(rejected, /async failure/);
  });

  it('handles a stream that has already ended, and one already destroyed', async () => {
    const ended = Readable.from([Buffer.from('a')]);
    ended.resume();
    await new Promise((r) => ended.once('end', r));
    await eachChunk(ended, () => assert.fail('no chunk expected'));
    const destroyed = new PassThrough();
    destroyed.destroy();
    await new Promise((r) => destroyed.once('close', r));
    await assert.rejects(eachChunk(destroyed, () => undefined), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });

  it('gives the same bytes as for await, for every way of cutting a message', async () => {
    const message = Buffer.from('Subject: t\r\n\r\n' + 'body line\r\n'.repeat(40) + '..dot\r\n');
    for (const size of [1, 2, 3, 7, 64, 1000]) {
      const pieces: Buffer[] = [];
      for (let i = 0; i < message.length; i += size) pieces.push(message.subarray(i, i + size));
      const a = Readable.from(pieces);
      const viaFor: Buffer[] = [];
      for await (const c of a) viaFor.push(c as Buffer);
      const b = Readable.from(pieces);
      const viaEach: Buffer[] = [];
      await eachChunk(b, (c) => {
        viaEach.push(c);
      });
      assert.ok(Buffer.concat(viaEach).equals(Buffer.concat(viaFor)), `pieces of ${size}`);
      assert.ok(Buffer.concat(viaEach).equals(message));
    }
  });
});
