import assert from 'node:assert/strict';
import { accept, definePlugin, reject, z, type PluginDefinition } from '@portcullis/core';
import { describePluginConformance, type ConformanceFixtures } from '../src/index.js';

/** Runs the suite with a recording mocha: which of its tests pass and how the others fail. */
async function runSuite(def: PluginDefinition, fixtures: ConformanceFixtures = {}): Promise<Record<string, string>> {
  const tests: Array<{ title: string; fn: () => unknown }> = [];
  describePluginConformance(def, { ...fixtures, mocha: { describe: (_t, fn) => fn(), it: (title, fn) => tests.push({ title, fn }) } });
  const out: Record<string, string> = {};
  for (const t of tests) {
    try {
      await t.fn();
      out[t.title] = 'pass';
    } catch (err) {
      out[t.title] = `fail: ${(err as Error).message}`;
    }
  }
  return out;
}

const THROWS = 'answers 451 4.3.0 for a hook that throws, and never turns the failure into an accept';
const LEAKS = 'leaves no handle or timer behind after setup and close';
const UNKNOWN = 'rejects an unknown option key, naming it';

const good = definePlugin({
  name: 'good-screener',
  options: z.strictObject({ word: z.string().min(1) }),
  setup: (opts) => ({
    rcpt: (txn) => (txn.session.remoteAddress === '192.0.2.66' ? reject(550, '5.7.1', 'no') : undefined),
    message: (_txn, info) => (info.headers.get('subject')?.includes(opts.word) ? reject(550, '5.7.1', 'spam') : undefined),
  }),
});

describe('describePluginConformance', () => {
  // The suite itself, run as a plugin package would run it.
  describePluginConformance(good, { options: { word: 'viagra' }, invalid: [{ options: { word: '' }, path: 'word' }, { options: {}, path: 'word' }] });

  it('passes a well-behaved plugin on every test', async () => {
    const r = await runSuite(good, { options: { word: 'x' }, invalid: [{ options: { word: 3 }, path: 'word' }] });
    assert.deepEqual(Object.values(r).filter((v) => v !== 'pass'), []);
    assert.equal(Object.keys(r).length, 7);
  });

  it('fails a plugin that turns its own failure into an accept (fails open)', async () => {
    const failOpen = definePlugin({
      name: 'fail-open',
      setup: () => ({
        rcpt: (txn) => {
          try {
            return txn.session.remoteAddress === '10.0.0.1' ? accept() : reject(550, '5.7.1', 'not from here');
          } catch {
            return accept(); // the bug the suite is there to catch
          }
        },
      }),
    });
    const r = await runSuite(failOpen, { companions: [] });
    assert.match(r[THROWS]!, /^fail: rcpt with failing arguments turned 550 into 250/);
  });

  it('fails a plugin that leaves a timer running after close', async () => {
    const leaky = definePlugin({ name: 'leaky', setup: () => { setInterval(() => undefined, 60_000).unref(); return {}; } });
    assert.match((await runSuite(leaky))[LEAKS]!, /^fail: still open after close\(\): 1 × Timeout/);
    const tidy = definePlugin({ name: 'tidy', setup: () => { const t = setInterval(() => undefined, 60_000); return { hooks: {}, close: () => clearInterval(t) }; } });
    assert.equal((await runSuite(tidy))[LEAKS], 'pass');
  });

  it('fails a plugin whose options schema drops unknown keys silently, and bad options without a key path', async () => {
    const loose = definePlugin({ name: 'loose', options: z.object({ max: z.number() }), setup: () => ({}) });
    const r = await runSuite(loose, { options: { max: 1 }, invalid: [{ options: { max: 1 }, path: 'max' }] });
    assert.match(r[UNKNOWN]!, /^fail: an unknown key under with: was accepted silently/);
    assert.match(r['rejects bad options at with.max with that key path']!, /^fail: options \{"max":1\} were accepted/);
  });

  it('fails a plugin whose setup throws something other than a config error for bad options', async () => {
    const crashing = definePlugin({ name: 'crashing', options: z.strictObject({ n: z.number() }), setup: (o) => { if (o.n < 0) throw new TypeError('negative'); return {}; } });
    const r = await runSuite(crashing, { options: { n: 1 }, invalid: [{ options: { n: -1 }, path: 'n' }] });
    assert.match(r['rejects bad options at with.n with that key path']!, /fail: expected the error to name "plugins\[0\]\.with\.n", got: .*failed to start: negative/);
  });
});
