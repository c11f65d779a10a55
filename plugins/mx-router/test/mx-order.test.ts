import assert from 'node:assert/strict';
import { orderAddresses, orderMx, shuffle } from '../src/mx-order.js';

/** A fixed sequence of "random" numbers, repeating. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

describe('MX ordering', () => {
  it('sorts MX records by preference, lowest first', () => {
    const ordered = orderMx([
      { exchange: 'c.test', priority: 30 },
      { exchange: 'a.test', priority: 10 },
      { exchange: 'b.test', priority: 20 },
    ]);
    assert.deepEqual(ordered.map((r) => r.exchange), ['a.test', 'b.test', 'c.test']);
  });

  it('shuffles records of equal preference and keeps them between the lower and higher ones', () => {
    const records = [
      { exchange: 'high.test', priority: 50 },
      { exchange: 'eq1.test', priority: 10 },
      { exchange: 'eq2.test', priority: 10 },
      { exchange: 'eq3.test', priority: 10 },
      { exchange: 'low.test', priority: 5 },
    ];
    // Fisher-Yates from the end: random 0 swaps each element with the first one.
    assert.deepEqual(orderMx(records, sequence(0)).map((r) => r.exchange), ['low.test', 'eq2.test', 'eq3.test', 'eq1.test', 'high.test']);
    // random just under 1 swaps each element with itself: input order.
    assert.deepEqual(orderMx(records, sequence(0.999)).map((r) => r.exchange), ['low.test', 'eq1.test', 'eq2.test', 'eq3.test', 'high.test']);
  });

  it('gives every order of equal-preference hosts with Math.random, never mixing preferences', () => {
    const records = [
      { exchange: 'a.test', priority: 10 },
      { exchange: 'b.test', priority: 10 },
      { exchange: 'c.test', priority: 10 },
      { exchange: 'backup.test', priority: 20 },
    ];
    const seen = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const names = orderMx(records).map((r) => r.exchange);
      assert.equal(names[3], 'backup.test');
      seen.set(names.slice(0, 3).join(','), (seen.get(names.slice(0, 3).join(',')) ?? 0) + 1);
    }
    assert.equal(seen.size, 6, `orders seen: ${[...seen.keys()].join(' | ')}`);
    // Uniform would be 500 each; a biased shuffle (e.g. sort with a random comparator) is far off.
    for (const [order, n] of seen) assert.ok(n > 350 && n < 650, `${order} came ${n} times of 3000`);
  });

  it('lower-cases names, drops the trailing dot and keeps the best preference of a name listed twice', () => {
    const ordered = orderMx([
      { exchange: 'MX.Example.TEST.', priority: 20 },
      { exchange: 'mx.example.test', priority: 10 },
      { exchange: 'other.test', priority: 15 },
    ]);
    assert.deepEqual(ordered, [
      { exchange: 'mx.example.test', priority: 10 },
      { exchange: 'other.test', priority: 15 },
    ]);
  });

  it('shuffle returns a permutation and leaves its input alone', () => {
    const input = [1, 2, 3, 4, 5];
    const out = shuffle(input, sequence(0.3, 0.7, 0.1, 0.9));
    assert.deepEqual(input, [1, 2, 3, 4, 5]);
    assert.deepEqual([...out].sort(), [1, 2, 3, 4, 5]);
    assert.notDeepEqual(out, input);
  });

  it('orders a host\'s addresses by the IP preference, keeping the DNS order within a family', () => {
    const v4 = ['192.0.2.2', '192.0.2.1'];
    const v6 = ['2001:db8::2', '2001:db8::1'];
    assert.deepEqual(orderAddresses(v4, v6, 'ipv4-first'), ['192.0.2.2', '192.0.2.1', '2001:db8::2', '2001:db8::1']);
    assert.deepEqual(orderAddresses(v4, v6, 'ipv6-first'), ['2001:db8::2', '2001:db8::1', '192.0.2.2', '192.0.2.1']);
    assert.deepEqual(orderAddresses(v4, v6, 'ipv4-only'), ['192.0.2.2', '192.0.2.1']);
    assert.deepEqual(orderAddresses(v4, v6, 'ipv6-only'), ['2001:db8::2', '2001:db8::1']);
  });
});
