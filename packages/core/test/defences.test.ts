import assert from 'node:assert/strict';
import net from 'node:net';
import { ConnectionGate, perAddressCheck, RepeatLog, Replies } from '../src/index.js';
import { MemoryState, defaultMinFree } from '../src/internal.js';
import { RedisState } from '../src/services/redis-state.js';

/** A stand-in for pino that records calls: RepeatLog's only contract is which calls it makes. */
function recorder() {
  const calls: Array<{ level: string; fields: Record<string, unknown>; msg: string }> = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => void calls.push({ level, fields, msg });
  return { calls, log: { warn: at('warn'), error: at('error'), info: at('info') } as never };
}

describe('bounded logging of repeated events', () => {
  it('logs 10,000 identical refusals as one line per interval, with the count of the rest', () => {
    const r = recorder();
    const repeats = new RepeatLog(60_000);
    const t0 = 1_000_000;
    for (let i = 0; i < 10_000; i++) repeats.log(r.log, 'warn', 'low-space', { n: i }, 'refused', t0 + i);
    assert.equal(r.calls.length, 1);
    repeats.log(r.log, 'warn', 'low-space', {}, 'refused', t0 + 60_000);
    assert.equal(r.calls.length, 2);
    assert.equal(r.calls[1]!.fields['suppressedSinceLast'], 9_999);
    assert.equal(r.calls[1]!.fields['repeated'], 10_001);
    assert.equal(repeats.count('low-space'), 10_001);
  });
  it('keeps different keys apart and forgets the oldest past its key limit', () => {
    const r = recorder();
    const repeats = new RepeatLog(60_000, 2);
    for (const k of ['a', 'b', 'a', 'c', 'a']) repeats.log(r.log, 'warn', k, {}, k, 5);
    assert.deepEqual(r.calls.map((c) => c.msg), ['a', 'b', 'c', 'a']); // 'a' was the oldest when 'c' came, so it was forgotten
    assert.equal(repeats.count('b'), 0);
  });
});

describe('shared state in memory', () => {
  it('counts a fixed window atomically: exactly `limit` of 50 concurrent consumes are allowed', async () => {
    const c = new MemoryState().counter('t', 10, 60_000);
    const results = await Promise.all(Array.from({ length: 50 }, () => c.consume('k')));
    assert.equal(results.filter((r) => r.allowed).length, 10);
    assert.equal(await c.peek('k'), 50);
    assert.equal((await c.consume('other')).allowed, true);
  });
  it('expires cached values after their TTL', async () => {
    const s = new MemoryState();
    await s.set('a', '1', 50);
    assert.equal(await s.get('a'), '1');
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(await s.get('a'), undefined);
  });
});

describe('connection gate and disk threshold', () => {
  it('undoes earlier checks when a later one refuses, and releases what it admitted', () => {
    const gate = new ConnectionGate();
    const perIp = perAddressCheck(1, Replies.tooManyConnections);
    let open = 0;
    gate.add(perIp);
    gate.add({ name: 'at-most-1', admit: () => (open >= 1 ? Replies.serverBusy : (open++, undefined)), release: () => void open-- });
    const listener = { name: 'l', port: 25, tls: 'none', auth: 'off' } as const;
    assert.equal(gate.admit({ id: '1', remoteAddress: '192.0.2.1', listener }), undefined);
    assert.equal(gate.admit({ id: '2', remoteAddress: '192.0.2.2', listener }), Replies.serverBusy);
    // 192.0.2.2 was counted by perIp, then released: it is not stuck.
    gate.release({ id: '1', remoteAddress: '192.0.2.1', listener });
    assert.equal(gate.admit({ id: '3', remoteAddress: '192.0.2.2', listener }), undefined);
  });
  it('defaults the free-space threshold to 1.5 × the size limit with a 100 MB floor', () => {
    assert.equal(defaultMinFree(25 * 1024 * 1024), 100 * 1024 * 1024);
    assert.equal(defaultMinFree(100 * 1024 * 1024), 150 * 1024 * 1024);
  });
});

describe('shared state on a Redis that does not answer', () => {
  it('answers every operation from local state, enforcing the limit, and counts the fallbacks', async () => {
    // A port nothing listens on (the kernel's pick, then closed): the real "connection refused".
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const silent = { error() {}, warn() {}, info() {}, child() { return this; } } as never;
    const state = new RedisState({ url: `redis://127.0.0.1:${port}`, keyPrefix: 't:', timeoutMs: 200 }, silent);
    try {
      const c = state.counter('x', 2, 60_000);
      const allowed = [];
      for (let i = 0; i < 3; i++) allowed.push((await c.consume('k')).allowed);
      assert.deepEqual(allowed, [true, true, false]);
      await state.set('a', 'b', 10_000);
      assert.equal(await state.get('a'), 'b');
      const status = state.status();
      assert.equal(status.connected, false);
      assert.ok(status.fallbacks >= 5, `fallbacks: ${status.fallbacks}`);
    } finally {
      await state.close();
    }
  });
});
