import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { IpcChannel, IpcError } from '../src/cluster/ipc-channel.js';

const here = path.dirname(fileURLToPath(import.meta.url));

async function startChild(): Promise<ChildProcess> {
  const child = fork(path.join(here, 'fixtures/ipc-child.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.on('error', () => undefined); // a send after exit surfaces here; the channel reports it to its caller
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`child exited ${code} before ready`)));
    child.on('message', function ready(m) {
      if ((m as { ready?: boolean }).ready) {
        child.off('message', ready);
        resolve();
      }
    });
  });
  return child;
}

describe('IPC channel between a primary and a real forked child', function () {
  this.timeout(20_000);
  let child: ChildProcess;
  let ch: IpcChannel;
  before(async () => {
    child = await startChild();
    ch = new IpcChannel(child, { timeoutMs: 1000 });
    ch.handle('parent-echo', (p) => `<${String(p)}>`);
  });
  after(() => {
    ch.close();
    if (child.exitCode === null) child.kill();
  });

  it('answers a request with what the child handler returned', async () => {
    assert.deepEqual(await ch.request('echo', { a: [1, 'x'], b: null }), { a: [1, 'x'], b: null });
    assert.equal(await ch.request('add', { a: 2, b: 40 }), 42);
  });

  it('keeps many concurrent requests apart by id', async () => {
    const n = 500;
    const out = await Promise.all(Array.from({ length: n }, (_, i) => ch.request<number>('add', { a: i, b: 1 })));
    assert.deepEqual(out, Array.from({ length: n }, (_, i) => i + 1));
    assert.equal(ch.pendingCount, 0);
  });

  it('rejects with the handler error text when the child handler throws or rejects', async () => {
    await assert.rejects(ch.request('fail'), (e: IpcError) => e.code === 'remote' && e.message === 'handler says no');
    await assert.rejects(ch.request('reject'), (e: IpcError) => e.code === 'remote' && e.message === 'async handler says no');
  });

  it('rejects a request for a type nobody handles', async () => {
    await assert.rejects(ch.request('nobody'), (e: IpcError) => e.code === 'no-handler' && /no handler for nobody/.test(e.message));
  });

  it('rejects on timeout and drops the late answer without disturbing the next request', async () => {
    const t0 = Date.now();
    await assert.rejects(ch.request('slow', 400, 100), (e: IpcError) => e.code === 'timeout' && /within 100 ms/.test(e.message));
    assert.ok(Date.now() - t0 < 380, 'the timeout fired before the slow answer');
    await new Promise((r) => setTimeout(r, 450)); // the late 'late' arrives now and is dropped
    assert.equal(await ch.request('echo', 'after'), 'after');
  });

  it('carries requests both ways on one pipe', async () => {
    assert.equal(await ch.request('ask-parent', 'hi'), 'parent said <hi>');
  });

  it('ignores untagged messages from node:cluster and prom-client on the same pipe', async () => {
    const foreign: unknown[] = [];
    const spy = (m: unknown) => foreign.push(m);
    child.on('message', spy);
    assert.equal(await ch.request('noise'), 'sent');
    assert.equal(await ch.request('echo', 'still fine'), 'still fine');
    child.off('message', spy);
    // Node keeps `cmd: 'NODE_…'` messages internal; the other two reach 'message' and were ignored.
    assert.deepEqual(
      foreign.filter((m) => (m as { portcullis?: number }).portcullis !== 1),
      [{ type: 'prom-client:getMetricsReq', requestId: 1 }, { id: 1, re: 1, ok: true, result: 'not ours' }],
    );
  });

  it('delivers notifications without an answer', async () => {
    for (let i = 0; i < 5; i++) ch.notify('note');
    assert.equal(await ch.request('notes'), 5);
  });

  it('rejects every pending request on close, and later requests at once', async () => {
    const local = new IpcChannel(child);
    const pending = local.request('slow', 300, 5000);
    local.close();
    await assert.rejects(pending, (e: IpcError) => e.code === 'closed');
    await assert.rejects(local.request('echo', 1), (e: IpcError) => e.code === 'closed');
    local.notify('note'); // no throw
  });

  it('never throws out of request or notify once the child is gone', async () => {
    const other = await startChild();
    const oc = new IpcChannel(other, { timeoutMs: 500 });
    assert.equal(await oc.request('exit'), 'bye');
    await once(other, 'exit');
    await assert.rejects(oc.request('echo', 1), (e: IpcError) => e.code === 'send-failed' || e.code === 'timeout');
    assert.doesNotThrow(() => oc.notify('note'));
    oc.close();
  });
});
