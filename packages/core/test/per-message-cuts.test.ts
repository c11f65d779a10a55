import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pino from 'pino';
import { lazyChild } from '../src/telemetry/lazy-logger.js';
import { newQueueId } from '../src/spool/spool.js';
import { toAddress } from '../src/session/address.js';
import { PluginDriver, type LoadedPlugin } from '../src/plugins/driver.js';
import { asPlugin } from '../src/plugins/scope.js';
import { TransactionState } from '../src/session/session.js';
import { MessageEditRecorder } from '../src/intake/edits/message-edits.js';
import type { Transaction } from '../src/api/types.js';
import { parseHeaderSection } from '../src/api/message-headers.js';

// The per-message cuts of issue 22 keep what they replace: the lazy child logger writes what a child
// writes, queue ids stay unique and of the same shape, the domain cache answers as domainToASCII, and
// a synchronous hook runs as its plugin and fails closed as before; without an AsyncLocalStorage, each
// plugin's edits still carry its name, however late it makes them.

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

  const txnOf = () => new TransactionState('Q1', {} as never, { address: 'a@remote.test' } as never, new MessageEditRecorder('/tmp', 'Q1'));
  const plugin = (name: string, hooks: Record<string, unknown>): LoadedPlugin => ({ instance: { name, hooks } as unknown as LoadedPlugin['instance'], timeoutMs: 1000, source: name });

  it('a synchronous hook runs as its plugin, and one that throws gives 451 4.3.0 naming nobody else', async () => {
    const { log } = captured('fatal');
    const txn = txnOf();
    const ok = new PluginDriver([plugin('sync-ok', { rcpt: (t: Transaction) => (t.edits.appendHeader('X-Sync', '1'), { kind: 'accept' }) })], log);
    const d = await ok.verdict('rcpt', [txn, {} as never]);
    assert.deepEqual(txn.edits.summary(), [{ plugin: 'sync-ok', edits: ['appendHeader X-Sync'] }]);
    assert.equal(d.verdict?.kind, 'accept');
    const rcpt = () => {
      throw new Error('boom');
    };
    const bad = new PluginDriver([plugin('sync-throws', { rcpt })], log);
    const f = await bad.verdict('rcpt', [txnOf(), {} as never]);
    assert.equal(f.plugin, 'sync-throws');
    assert.equal(f.verdict?.kind, 'tempfail');
    assert.equal(f.verdict?.reply?.code, 451);
    assert.equal(f.verdict?.reply?.enhanced, '4.3.0');
  });
  it('each plugin edits under its own name: in its hooks, after an await, and from the raw reader and part screener it handed back', async () => {
    const { log } = captured('fatal');
    const txn = txnOf();
    const seen = new Map<string, Transaction[]>();
    const keep = (name: string, t: Transaction) => seen.set(name, [...(seen.get(name) ?? []), t]);
    const first = plugin('first', {
      mail: (t: Transaction) => (keep('first', t), t.edits.appendHeader('X-First-Mail', '1'), undefined),
      data: (t: Transaction) => (keep('first', t), {
        raw: async () => {
          await new Promise((r) => setTimeout(r, 5));
          t.edits.appendHeader('X-First-Raw', '1');
        },
      }),
    });
    const second = plugin('second', {
      mail: async (t: Transaction) => {
        keep('second', t);
        await new Promise((r) => setTimeout(r, 1));
        t.edits.setSender('b@remote.test');
        return undefined;
      },
      data: (t: Transaction) => (keep('second', t), { part: () => ({ done: () => (t.edits.removeHeader('X-Second-Part'), undefined) }) }),
    });
    const driver = new PluginDriver([first, second], log);
    await driver.verdict('mail', [txn, txn.mailFrom]);
    const { handlers } = await driver.data([txn]);
    // Run in the intake's way: interleaved, the raw reader's edit after the part screener's.
    const raw = handlers[0]!.handlers.raw!(null as never);
    await handlers[1]!.handlers.part!({} as never)!.done();
    await raw;
    assert.deepEqual(txn.edits.summary(), [
      { plugin: 'first', edits: ['appendHeader X-First-Mail'] },
      { plugin: 'second', edits: ['setSender <b@remote.test>', 'removeHeader X-Second-Part'] },
      { plugin: 'first', edits: ['appendHeader X-First-Raw'] },
    ]);
    // One view per plugin, the same in every hook (a plugin may key its state by the transaction).
    assert.equal(seen.get('first')![0], seen.get('first')![1]);
    assert.notEqual(seen.get('first')![0], seen.get('second')![0]);
  });

  it('a plugin view reads through to the transaction, and asPlugin on it records under another name (the milter\'s milter/<name>)', () => {
    const txn = txnOf();
    const view = asPlugin(txn as Transaction, 'milter');
    txn.recipients.push({ address: 'r@example.com' } as never);
    (txn as { headers?: unknown }).headers = { raw: 'x' };
    view.notes['milter'] = 1;
    assert.equal(view.id, 'Q1');
    assert.equal(view.recipients.length, 1);
    assert.deepEqual(view.headers, { raw: 'x' });
    assert.equal(txn.notes['milter'], 1);
    view.addHeader('X-Added', 'v');
    assert.deepEqual(txn.added, ['X-Added: v\r\n']);
    asPlugin(view, 'milter/one').edits.appendHeader('X-One', '1');
    view.edits.hold('spam');
    txn.edits.appendHeader('X-Core', '1');
    assert.deepEqual(txn.edits.summary(), [
      { plugin: 'milter/one', edits: ['appendHeader X-One'] },
      { plugin: 'milter', edits: ['hold (spam)'] },
      { plugin: 'unknown', edits: ['appendHeader X-Core'] },
    ]);
    assert.equal(asPlugin({ plain: true }, 'x').plain, true);
  });
  it('a hook no plugin implements decides nothing (the hook default applies) and an observer hook without plugins settles; one that is implemented still runs', async () => {
    const { log } = captured('fatal');
    const calls: string[] = [];
    const driver = new PluginDriver([plugin('mail-only', { mail: () => (calls.push('mail'), undefined), disconnect: () => void calls.push('disconnect') })], log);
    for (const hook of ['connect', 'helo', 'message'] as const) {
      const d = await driver.verdict(hook, [txnOf(), {}] as never);
      assert.equal(d.verdict, undefined, hook);
      assert.equal(d.plugin, undefined, hook);
    }
    // rcpt denies by default: with no plugin it still decides nothing here, and the session maps that to 550.
    assert.deepEqual(await driver.verdict('rcpt', [txnOf(), {} as never]), {});
    assert.equal(await driver.observe('delivered', [{} as never]), undefined);
    assert.deepEqual(await driver.verdict('mail', [txnOf(), {} as never]), {});
    await driver.observe('disconnect', [{} as never]);
    assert.deepEqual(calls, ['mail', 'disconnect']);
  });
  it('message headers are parsed on first use, and read the same as a parse made at once (fields, decoding, addresses, structure, JSON)', () => {
    const raw = 'Subject: =?UTF-8?B?SGVsbG8gd8O2cmxk?=\r\nFrom: "A" <a@example.org>, b@example.org\r\nContent-Type: text/plain;\r\n charset=utf-8\r\nX-Two: 1\r\nX-Two: 2\r\n\r\nbody\r\n';
    const h = parseHeaderSection(Buffer.from(raw));
    assert.equal((h as unknown as { parsed?: unknown }).parsed, undefined, 'parsed before anything was read');
    assert.equal(h.get('subject'), 'Hello wörld');
    assert.deepEqual(h.getAll('x-two'), ['1', '2']);
    assert.deepEqual(h.getRaw('X-TWO'), ['1', '2']);
    assert.equal(h.has('content-type'), true);
    assert.equal(h.has('cc'), false);
    assert.deepEqual(h.addresses('from'), [
      { name: 'A', address: 'a@example.org' },
      { name: '', address: 'b@example.org' },
    ]);
    assert.deepEqual(h.structured('content-type'), { value: 'text/plain', params: { charset: 'utf-8' } });
    assert.equal(h.fields.length, 5);
    assert.equal(h.fields[2]!.raw, 'Content-Type: text/plain;\r\n charset=utf-8');
    assert.equal(h.raw, raw.slice(0, raw.indexOf('\r\n\r\n')));
    const json = JSON.parse(JSON.stringify(h)) as { raw: string; fields: unknown[] };
    assert.equal(json.raw, h.raw);
    assert.equal(json.fields.length, 5);
    assert.equal(parseHeaderSection('').fields.length, 0);
    // A method taken off the object still works (they were closures before the parse became lazy).
    const { get, addresses } = parseHeaderSection(raw);
    assert.equal(get('subject'), 'Hello wörld');
    assert.equal(addresses('from').length, 2);
  });
});
