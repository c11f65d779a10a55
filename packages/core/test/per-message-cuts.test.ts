import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pino from 'pino';
import { lazyChild } from '../src/telemetry/lazy-logger.js';
import { newQueueId } from '../src/spool/spool.js';
import { toAddress } from '../src/session/address.js';
import { PluginDriver, type LoadedPlugin } from '../src/plugins/driver.js';
import { currentPlugin } from '../src/plugins/scope.js';

// The per-message cuts of issue 22 keep what they replace: the lazy child logger writes what a child
// writes, queue ids stay unique and of the same shape, the domain cache answers as domainToASCII, and
// a synchronous hook runs as its plugin and fails closed as before.

function captured(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level }, out), lines };
}

describe('per-message cuts (issue 22)', () => {
  it('a lazy child logger builds no child for a level that is off, and writes a line with its bindings for one that is on', () => {
    const { log, lines } = captured('warn');
    let children = 0;
    const child = log.child.bind(log);
    (log as unknown as { child: typeof log.child }).child = ((b: pino.Bindings) => (children++, child(b))) as typeof log.child;
    const lazy = lazyChild(log, { session: 'S1' });
    lazy.info({ a: 1 }, 'not written');
    assert.equal(lazy.isLevelEnabled('info'), false);
    assert.equal(lazy.level, 'warn');
    assert.equal(children, 0);
    lazy.warn({ a: 2 }, 'written');
    lazy.error('also written');
    assert.equal(children, 1);
    assert.equal(lines.length, 2);
    assert.equal(lines[0]!['session'], 'S1');
    assert.equal(lines[0]!['a'], 2);
    assert.equal(lines[0]!['msg'], 'written');
    assert.equal(lines[1]!['session'], 'S1');
    delete (log as unknown as { child?: unknown }).child; // the counting spy off: pino's own child() again
    const grand = lazy.child({ txn: 'T1' });
    grand.warn('nested');
    assert.equal(lines[2]!['session'], 'S1');
    assert.equal(lines[2]!['txn'], 'T1');
  });

  it('queue ids are 19 upper-case characters, time first, and 5,000 in a row are all different', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const id = newQueueId();
      assert.match(id, /^[0-9A-Z]{9}[0-9A-F]{10}$/);
      ids.add(id);
    }
    assert.equal(ids.size, 5000);
  });

  it('an address domain is put into ASCII the same way the first and the second time (remembered), IDN and IPv4 forms included', () => {
    for (let round = 0; round < 2; round++) {
      assert.equal(toAddress('a@Bücher.Example', {}).address, 'a@xn--bcher-kva.example');
      assert.equal(toAddress('a@Bücher.Example', {}).domain, 'xn--bcher-kva.example');
      assert.equal(toAddress('b@HOSTED.example', {}).address, 'b@hosted.example');
      assert.equal(toAddress('c@0x7f.1', {}).domain, '127.0.0.1');
    }
  });

  it('a synchronous hook runs as its plugin, and one that throws gives 451 4.3.0 naming nobody else', async () => {
    const { log } = captured('fatal');
    let seen: string | undefined;
    const plugin = (name: string, rcpt: () => unknown): LoadedPlugin => ({ instance: { name, hooks: { rcpt } } as unknown as LoadedPlugin['instance'], timeoutMs: 1000, source: name });
    const ok = new PluginDriver([plugin('sync-ok', () => ((seen = currentPlugin()), { kind: 'accept' }))], log);
    const d = await ok.verdict('rcpt', [{} as never, {} as never]);
    assert.equal(seen, 'sync-ok');
    assert.equal(d.verdict?.kind, 'accept');
    const bad = new PluginDriver([plugin('sync-throws', () => { throw new Error('boom'); })], log);
    const f = await bad.verdict('rcpt', [{} as never, {} as never]);
    assert.equal(f.plugin, 'sync-throws');
    assert.equal(f.verdict?.kind, 'tempfail');
    assert.equal(f.verdict?.reply?.code, 451);
    assert.equal(f.verdict?.reply?.enhanced, '4.3.0');
  });
});
