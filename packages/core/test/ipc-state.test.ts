import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { IpcChannel } from '../src/cluster/ipc-channel.js';
import { IpcState } from '../src/services/ipc-state.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/**
 * For the tests of the describe block it is called in: forks `fixtures/<fixture>` (a child that plays
 * the primary and says `{ ready: true }` once it listens) and opens an IpcChannel to it (`.ch`),
 * closed and the child killed after them.
 */
function forkChannel(fixture: string): { readonly ch: IpcChannel } {
  let child: ChildProcess;
  const link = {} as { ch: IpcChannel };
  before(async () => {
    child = fork(path.join(here, 'fixtures', fixture), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('error', () => undefined);
    await new Promise<void>((resolve) => child.on('message', (m) => (m as { ready?: boolean }).ready && resolve()));
    link.ch = new IpcChannel(child);
  });
  after(() => {
    link.ch?.close();
    child?.kill();
  });
  return link;
}

/**
 * The worker's store when its primary misbehaves: a real forked child plays a primary that has no
 * handler for counters (every request fails) and never answers slot requests (every request times out).
 */
describe('IpcState when the primary does not answer', function () {
  this.timeout(20_000);
  const primary = forkChannel('ipc-child.ts');

  it('counts locally, never refuses because of the failure, and says so in status()', async () => {
    const state = new IpcState(primary.ch, pino({ level: 'silent' }), { timeoutMs: 200 });
    const c = state.counter('t:rate', 2, 60_000);
    const r = [await c.consume('k'), await c.consume('k'), await c.consume('k')];
    assert.deepEqual(r.map((x) => x.allowed), [true, true, false], 'the limit still holds, locally');
    assert.equal(r[0]!.shared, false);
    assert.equal(state.status().store, 'cluster');
    assert.equal(state.status().connected, false);
    assert.equal(state.status().fallbacks, 3);
  });

  it('gives a slot from local memory after the timeout, keeps the limit locally, and sends a release for the unanswered request', async () => {
    const state = new IpcState(primary.ch, pino({ level: 'silent' }), { timeoutMs: 150 });
    const slots = state.slots('t:conc', 1);
    const t0 = Date.now();
    const a = await slots.acquire('10.0.0.1');
    assert.ok(Date.now() - t0 >= 140, 'waited for the timeout');
    assert.ok(a, 'admitted: a silent primary is no reason to refuse');
    assert.equal(a.shared, false);
    assert.equal(await slots.acquire('10.0.0.1'), undefined, 'the local count still holds the limit of 1');
    a.release();
    assert.ok(await slots.acquire('10.0.0.1'), 'released locally');
    // A release notice went for each timed-out token, so a late grant in the primary is given back.
    // (Notices go at the end of an event-loop turn: let the last one leave before asking.)
    await new Promise((r) => setImmediate(r));
    // A release may go more than once (one carried by an acquire that timed out goes again as a
    // notice; the primary ignores a token it no longer holds): each token at least once.
    const released = await primary.ch.request<Array<{ tokens: number[] }>>('released');
    assert.deepEqual([...new Set(released.flatMap((r) => r.tokens))].sort(), [1, 2, 3]);
  });
});

/** The worker's store against a real ClusterStateHost in a forked child (the primary's half). */
describe('IpcState with the primary answering', function () {
  this.timeout(20_000);
  const primary = forkChannel('state-host-child.ts');

  it('sends a release queued in the same turn with the next acquire: the slot is free for it, and no separate notice goes', async () => {
    const state = new IpcState(primary.ch, pino({ level: 'silent' }));
    const slots = state.slots('t:one', 1);
    const a = await slots.acquire('192.0.2.1');
    assert.ok(a?.shared, 'granted by the primary');
    assert.equal(await slots.acquire('192.0.2.1'), undefined, 'the limit of 1 holds while the first is held');
    // A connection closes and the next one from the same address is admitted in the same turn.
    a.release();
    const b = await slots.acquire('192.0.2.1');
    assert.ok(b?.shared, 'the release rode on this acquire and was applied before it');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(await primary.ch.request('seen'), { 'state.acquire': 3 }, 'three acquires, no release notice');
    assert.equal(await primary.ch.request('held-by'), 1);
    b.release();
    // Nothing to ride on now: the notice goes at the end of the turn.
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await primary.ch.request('seen'), { 'state.acquire': 3, 'state.release': 1 });
    assert.equal(await primary.ch.request('held-by'), 0, 'every slot given back');
  });
});
