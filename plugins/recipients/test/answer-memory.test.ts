import assert from 'node:assert/strict';
import { MemoryState } from '@portcullis/core/internal';
import { AnswerCache } from '../src/answer-cache.js';
import { ExpiringMemo } from '../src/expiring-memo.js';

const T0 = 1_000_000;

describe("recipients: a node's memory of answers (ExpiringMemo)", () => {
  it('drops the key remembered longest ago when full, and counts a key set again as remembered now', () => {
    const memo = new ExpiringMemo<string>(3, 30_000);
    for (const k of ['a', 'b', 'c']) memo.set(k, k.toUpperCase(), 'g1', undefined, T0);
    memo.set('a', 'A2', 'g1', undefined, T0 + 1); // a is now the newest
    memo.set('d', 'D', 'g1', undefined, T0 + 2); // b, the oldest, goes
    assert.equal(memo.size, 3);
    assert.deepEqual(['a', 'b', 'c', 'd'].map((k) => memo.get(k, 'g1', T0 + 3)), ['A2', undefined, 'C', 'D']);
  });

  it("keeps a value until its own expiry, at most maxAge, and not at all when that is already past", () => {
    const memo = new ExpiringMemo<number>(10, 30_000);
    memo.set('own', 1, 'g1', T0 + 5_000, T0);
    memo.set('capped', 2, 'g1', T0 + 90_000, T0);
    memo.set('none', 3, 'g1', undefined, T0);
    memo.set('past', 4, 'g1', T0, T0);
    assert.equal(memo.size, 3);
    assert.deepEqual(['own', 'capped', 'none'].map((k) => memo.get(k, 'g1', T0 + 4_999)), [1, 2, 3]);
    assert.equal(memo.get('own', 'g1', T0 + 5_000), undefined);
    assert.deepEqual(['capped', 'none'].map((k) => memo.get(k, 'g1', T0 + 29_999)), [2, 3]);
    assert.deepEqual(['capped', 'none'].map((k) => memo.get(k, 'g1', T0 + 30_000)), [undefined, undefined]);
    assert.equal(memo.size, 0, 'expired entries are dropped when looked up');
  });

  it('answers only for the generation a value was learnt in, and drops it when asked for another', () => {
    const memo = new ExpiringMemo<boolean>(10, 30_000);
    memo.set('example.net', true, 'g1', undefined, T0);
    assert.equal(memo.get('example.net', 'g2', T0 + 1), undefined);
    assert.equal(memo.size, 0);
    assert.equal(memo.get('example.net', 'g1', T0 + 2), undefined, 'an entry dropped for an old generation stays dropped');
  });
});

describe("recipients: AnswerCache's catch-all memory", () => {
  it('drops the oldest catch-all domain when 10,000 are held, instead of forgetting them all', async () => {
    const cache = new AnswerCache(new MemoryState(), 'fp', { positive: 60_000, negative: 10_000, lastKnownGood: 86_400_000 });
    for (let i = 0; i <= 10_000; i++) await cache.setCatchAll(`d${i}.example`, i % 2 === 0);
    assert.equal(cache.catchAllNow('d0.example'), undefined, 'the first domain remembered is dropped');
    assert.equal(cache.catchAllNow('d1.example'), false);
    assert.equal(cache.catchAllNow('d9999.example'), false);
    assert.equal(cache.catchAllNow('d10000.example'), true);
    assert.equal(await cache.catchAll('d0.example'), true, 'the shared state still holds it');
    assert.equal(cache.catchAllNow('d0.example'), true, 'and reading it remembers it again');
  });

  it('forgets catch-all domains and known addresses at a flush', async () => {
    const cache = new AnswerCache(new MemoryState(), 'fp', { positive: 60_000, negative: 10_000, lastKnownGood: 86_400_000 });
    await cache.setCatchAll('example.net', true);
    await cache.put('a@example.org', { result: 'known', source: 'list', detail: 'listed' });
    assert.equal(cache.catchAllNow('example.net'), true);
    assert.equal(cache.knownNow('a@example.org')?.result, 'known');
    await cache.flush();
    assert.equal(cache.catchAllNow('example.net'), undefined);
    assert.equal(cache.knownNow('a@example.org'), undefined);
  });
});
