import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { StopSignal } from '../src/intake/stop-signal.js';
import { DataTee } from '../src/intake/data-tee.js';
import { untilAborted } from '../src/intake/data-verdicts.js';

describe('StopSignal: the data pass stop flag', () => {
  it('calls each listener once, in the order added, when first aborted, and not again', () => {
    const s = new StopSignal();
    const calls: string[] = [];
    s.addEventListener('abort', () => calls.push('a'), { once: true });
    s.addEventListener('abort', () => calls.push('b'));
    assert.equal(s.aborted, false);
    s.abort();
    s.abort();
    assert.equal(s.aborted, true);
    assert.deepEqual(calls, ['a', 'b']);
  });

  it('does not call a removed listener, nor one added after the abort', () => {
    const s = new StopSignal();
    const calls: string[] = [];
    const removed = () => calls.push('removed');
    s.addEventListener('abort', removed);
    s.removeEventListener('abort', removed);
    s.abort();
    s.addEventListener('abort', () => calls.push('late'));
    assert.deepEqual(calls, []);
  });

  it('ends untilAborted with undefined at the abort, and gives the value when it comes first', async () => {
    const s = new StopSignal();
    const never = new Promise<string>(() => undefined);
    const waiting = untilAborted(never, s);
    s.abort();
    assert.equal(await waiting, undefined);
    assert.equal(await untilAborted(Promise.resolve('v'), new StopSignal()), 'v');
    assert.equal(await untilAborted(Promise.resolve('v'), s), undefined); // aborted already
  });

  it('wakes a DataTee write that waits on a branch nobody reads', async () => {
    const s = new StopSignal();
    const tee = new DataTee(60_000, s);
    tee.add(new PassThrough({ highWaterMark: 16 }), 'reader');
    const w = tee.write(Buffer.alloc(1024, 0x61));
    assert.ok(w instanceof Promise);
    s.abort();
    await w;
  });
});
