import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { DataTee } from '../src/intake/data-tee.js';

const chunk = Buffer.alloc(64 * 1024, 0x61);
/** A writable that takes everything at once. */
const sink = () => new Writable({ highWaterMark: 1024, write: (_c, _e, cb) => cb() });

describe('DataTee: the data pass never waits on a reader that stopped', () => {
  it('goes on at once when a branch it waits on is detached (its reader settled)', async () => {
    const tee = new DataTee(60_000);
    const stuck = new PassThrough({ highWaterMark: 1024 }); // nobody reads it
    tee.add(sink(), undefined, false);
    const b = tee.add(stuck, 'reader');
    const w = tee.write(chunk);
    assert.ok(w instanceof Promise, 'the full branch applies backpressure');
    const t0 = Date.now();
    setTimeout(() => tee.detach(b), 20);
    await w;
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(tee.write(chunk), undefined, 'a detached branch is never written again');
    assert.equal(tee.stalled, undefined);
  });

  it('detaches a stallable branch that takes nothing for stallMs and reports it', async () => {
    const tee = new DataTee(100);
    tee.add(sink(), undefined, false);
    tee.add(new PassThrough({ highWaterMark: 1024 }), 'slow-reader');
    const t0 = Date.now();
    await tee.write(chunk);
    const ms = Date.now() - t0;
    assert.ok(ms >= 90 && ms < 2000, `${ms} ms`);
    assert.equal(tee.stalled?.owner, 'slow-reader');
  });

  it('waits on the spool branch (not stallable) without a deadline, until it drains', async () => {
    const tee = new DataTee(50);
    let release!: () => void;
    const slowDisk = new Writable({ highWaterMark: 1024, write: (_c, _e, cb) => void (release = () => cb()) });
    tee.add(slowDisk, undefined, false);
    const w = tee.write(chunk);
    assert.ok(w instanceof Promise);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(tee.stalled, undefined);
    release();
    await w;
  });

  it('wakes every waiting write when the stop signal aborts', async () => {
    const ac = new AbortController();
    const tee = new DataTee(0, ac.signal);
    tee.add(new PassThrough({ highWaterMark: 1024 }), 'reader');
    const w = tee.write(chunk);
    setTimeout(() => ac.abort(), 20);
    await w;
  });
});
