import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import { SegmentStore } from '../src/spool/segment-store.js';
import { Spool, type SpoolMeta } from '../src/spool/spool.js';

const dirs: string[] = [];
function tempSpool(opts?: ConstructorParameters<typeof Spool>[1]): Spool {
  const d = mkdtempSync(path.join(os.tmpdir(), 'portcullis-seg-test-'));
  dirs.push(d);
  return new Spool(d, opts);
}

function body(i: number, size = 2000): Buffer {
  const head = `Subject: message ${i}\r\n\r\n`;
  return Buffer.from(head + 'x'.repeat(Math.max(0, size - head.length - 2)) + '\r\n');
}

/** Receives `bytes` like the intake does (in chunks) and commits them. */
async function receive(spool: Spool, id: string, bytes: Buffer) {
  const inc = await spool.createIncoming(id);
  for (let i = 0; i < bytes.length; i += 700) inc.stream.write(bytes.subarray(i, i + 700));
  inc.stream.end();
  await finished(inc.stream);
  return spool.commit(inc, { id, mailFrom: 'a@example.org', recipients: [`r${id}@example.com`], receivedAt: Date.now(), headers: 'Received: test\r\n' });
}

async function read(spool: Spool, meta: SpoolMeta): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of spool.openMessage(meta)) parts.push(c as Buffer);
  return Buffer.concat(parts).toString('latin1');
}

function segFiles(spool: Spool): string[] {
  return readdirSync(spool.segmentDir).filter((f) => f.endsWith('.seg')).sort();
}

describe('spool segments (group commit)', () => {
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('commits small messages into a segment and recovers every one, envelope and bytes, after a restart', async () => {
    const a = tempSpool();
    await a.init();
    const ids = Array.from({ length: 20 }, (_, i) => `ID${String(i).padStart(3, '0')}`);
    await Promise.all(ids.map((id, i) => receive(a, id, body(i))));
    assert.deepEqual(readdirSync(a.queueDir), [], 'no file per message');
    assert.equal(segFiles(a).length, 1);
    await a.close();

    const b = new Spool(a.dir);
    await b.init();
    const listed = await b.list();
    assert.deepEqual(listed.map((m) => m.meta.id).sort(), ids);
    for (const m of listed) {
      const i = Number(m.meta.id.slice(2));
      assert.equal(m.meta.recipients[0], `r${m.meta.id}@example.com`);
      assert.equal(m.meta.bodySize, body(i).length);
      assert.equal(await read(b, m.meta), 'Received: test\r\n' + body(i).toString('latin1'));
    }
    await b.close();
  });

  it('drops a state write cut by a crash (a .state.tmp left before its rename) at start, keeping the state before it', async () => {
    const a = tempSpool();
    await a.init();
    await receive(a, 'CUT1', body(1));
    const [m] = await a.list();
    await a.writeState('CUT1', { ...m!.state, attempts: 1, nextAttemptAt: 0 });
    await a.close();
    writeFileSync(path.join(a.queueDir, 'CUT1.state.tmp'), '{"attempts":2,"nextAt'); // the crash
    const b = new Spool(a.dir);
    await b.init();
    assert.deepEqual(readdirSync(b.queueDir).filter((f) => f.endsWith('.tmp')), []);
    const [again] = await b.list();
    assert.equal(again!.state.attempts, 1);
    await b.close();
  });

  it('shares one write and one fdatasync among commits that arrive together', async () => {
    const s = tempSpool();
    await s.init();
    await Promise.all(Array.from({ length: 50 }, (_, i) => receive(s, `C${i}`, body(i))));
    assert.ok(s.segmentBatches < 50, `50 concurrent commits took ${s.segmentBatches} batches`);
    assert.ok(s.segmentBatches >= 1);
    await s.close();
  });

  it('writes the commits of one event-loop turn as one batch, on the loop, and through the thread pool after a slow fdatasync', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-seg-test-'));
    dirs.push(dir);
    const opts = { segmentSize: 1024 * 1024, compactBelow: 0.25, compactAge: 60_000 };
    // Every fdatasync counts as slow (limit -1 ms): the first batch is written on the loop, the
    // next ones (for the following 60 s) through the pool; both kinds come back after a restart.
    const a = new SegmentStore(dir, { ...opts, blockingSyncMax: -1, poolFor: 60_000 });
    await a.load();
    await Promise.all(Array.from({ length: 5 }, (_, i) => a.append(`T${i}`, { id: `T${i}` }, [Buffer.from(`turn one ${i}`)])));
    assert.deepEqual([a.batches, a.pooledBatches], [1, 0], 'five appends in one turn: one batch, written on the loop');
    for (let i = 0; i < 3; i++) await a.append(`P${i}`, { id: `P${i}` }, [Buffer.from(`pooled ${i}`)]);
    assert.deepEqual([a.batches, a.pooledBatches], [4, 3]);
    await a.close();
    const b = new SegmentStore(dir, opts);
    const back = await b.load();
    assert.deepEqual(back.map((r) => r.id), ['T0', 'T1', 'T2', 'T3', 'T4', 'P0', 'P1', 'P2']);
    assert.equal((await b.readBody(back[6]!.location, 100)).toString(), 'pooled 1');
    // A fast disk (the default limit, 50 ms) keeps every batch on the loop.
    await Promise.all([b.append('F0', { id: 'F0' }, [Buffer.from('x')]), b.append('F1', { id: 'F1' }, [Buffer.from('y')])]);
    assert.deepEqual([b.batches, b.pooledBatches], [1, 0]);
    await b.close();
  });

  it('recovers the records before a torn tail and never the torn record itself', async () => {
    const a = tempSpool();
    await a.init();
    for (let i = 0; i < 3; i++) await receive(a, `T${i}`, body(i));
    await a.close();
    const seg = path.join(a.segmentDir, segFiles(a)[0]!);
    truncateSync(seg, statSync(seg).size - 100); // a crash in the middle of the last write
    const b = new Spool(a.dir);
    await b.init();
    assert.deepEqual((await b.list()).map((m) => m.meta.id).sort(), ['T0', 'T1']);
    // New commits go to a new segment, never after the torn tail.
    await receive(b, 'T3', body(3));
    await b.close();
    const c = new Spool(a.dir);
    await c.init();
    assert.deepEqual((await c.list()).map((m) => m.meta.id).sort(), ['T0', 'T1', 'T3']);
    await c.close();
  });

  it('does not recover a record whose bytes were damaged (checksum)', async () => {
    const a = tempSpool();
    await a.init();
    await receive(a, 'D0', body(0));
    await receive(a, 'D1', body(1));
    await a.close();
    const seg = path.join(a.segmentDir, segFiles(a)[0]!);
    const bytes = readFileSync(seg);
    bytes[bytes.length - 10] ^= 0xff;
    writeFileSync(seg, bytes);
    const b = new Spool(a.dir);
    await b.init();
    assert.deepEqual((await b.list()).map((m) => m.meta.id), ['D0']);
    await b.close();
  });

  it('does not bring back finished messages after a restart, and deletes a segment once all its messages are done', async () => {
    const a = tempSpool({ segmentSize: 8 * 1024 });
    await a.init();
    for (let i = 0; i < 12; i++) await receive(a, `R${String(i).padStart(2, '0')}`, body(i));
    const before = segFiles(a);
    assert.ok(before.length >= 3, `expected several segments, got ${before.length}`);
    for (let i = 0; i < 12; i++) if (i !== 11) await a.remove(`R${String(i).padStart(2, '0')}`);
    await a.close();
    const after = segFiles(a);
    assert.ok(after.length < before.length, `segments before ${before.length}, after ${after.length}`);
    const b = new Spool(a.dir);
    await b.init();
    assert.deepEqual((await b.list()).map((m) => m.meta.id), ['R11']);
    await b.close();
  });

  it('moves the last live message of an old segment into the current one (compaction) and deletes the old segment', async () => {
    const a = tempSpool({ segmentSize: 16 * 1024 });
    await a.init();
    for (let i = 0; i < 12; i++) await receive(a, `K${i}`, body(i));
    // K0 stays (deferred, say); the rest of its segment (under a quarter of it live) is done.
    const first = segFiles(a)[0]!;
    for (let i = 1; i < 12; i++) await a.remove(`K${i}`);
    assert.ok(segFiles(a).includes(first), 'the old segment is pinned by K0');
    const moved = await a.compact(Date.now() + 3_600_000);
    assert.equal(moved, 1);
    assert.ok(!segFiles(a).includes(first), 'the old segment is gone');
    const m = (await a.list()).find((x) => x.meta.id === 'K0')!;
    assert.equal(await read(a, m.meta), 'Received: test\r\n' + body(0).toString('latin1'));
    await a.close();
    const b = new Spool(a.dir);
    await b.init();
    const again = await b.list();
    assert.deepEqual(again.map((x) => x.meta.id), ['K0']);
    assert.equal(await read(b, again[0]!.meta), 'Received: test\r\n' + body(0).toString('latin1'));
    await b.close();
  });

  it('gives a message larger than inlineMax its own file in queue/, written as it arrives', async () => {
    const s = tempSpool({ inlineMax: 4096 });
    await s.init();
    const big = body(1, 50_000);
    const m = await receive(s, 'BIG', big);
    assert.deepEqual(readdirSync(s.queueDir), ['BIG.msg']);
    assert.equal(await read(s, m.meta), 'Received: test\r\n' + big.toString('latin1'));
    await receive(s, 'SMALL', body(2));
    assert.deepEqual(readdirSync(s.queueDir), ['BIG.msg']);
    assert.deepEqual((await s.list()).map((x) => x.meta.id).sort(), ['BIG', 'SMALL']);
    await s.close();
  });

  it('keeps a deferred message\'s state, and forgets it with the message', async () => {
    const a = tempSpool();
    await a.init();
    await receive(a, 'S1', body(1));
    await a.writeState('S1', { attempts: 2, nextAttemptAt: 123, done: {}, lastError: '451 later' });
    await a.close();
    const b = new Spool(a.dir);
    await b.init();
    const [m] = await b.list();
    assert.equal(m!.state.attempts, 2);
    assert.equal(m!.state.lastError, '451 later');
    // The body is read from the segment now (not from memory).
    assert.equal(await read(b, m!.meta), 'Received: test\r\n' + body(1).toString('latin1'));
    await b.remove('S1');
    assert.deepEqual(readdirSync(b.queueDir), []);
    await b.close();
  });
});
