import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { accept, definePlugin, tempfail, z } from '@portcullis/core';
import { SessionState, TransactionState } from '@portcullis/core/internal';
import { buildMessage, callHook, inject } from '../src/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));

const maxRcpt = definePlugin({
  name: 'max-recipients',
  options: z.strictObject({ max: z.number().int().positive() }),
  setup: (opts) => ({
    rcpt: (txn) => (txn.recipients.length >= opts.max ? tempfail(452, '4.5.3', 'Too many recipients') : undefined),
    connect: (session) => (session.remoteAddress.startsWith('127.') ? accept() : undefined),
  }),
});

describe('callHook(): one hook of one plugin', () => {
  it('runs rcpt with a built transaction and gives the verdict and the reply', async () => {
    const under = await callHook(maxRcpt, 'rcpt', { options: { max: 2 }, recipients: ['a@x.test'] });
    assert.equal(under.verdict, undefined);
    const over = await callHook(maxRcpt, 'rcpt', { options: { max: 2 }, recipients: ['a@x.test', 'b@x.test'], address: 'c@x.test' });
    assert.deepEqual(over.reply, { code: 452, enhanced: '4.5.3', text: 'Too many recipients' });
  });

  it('builds the session from what the test gives', async () => {
    assert.equal((await callHook(maxRcpt, 'connect', { options: { max: 1 } })).verdict?.kind, 'accept');
    assert.equal((await callHook(maxRcpt, 'connect', { options: { max: 1 }, session: { remoteAddress: '192.0.2.7' } })).verdict, undefined);
  });

  it("gives the hook the relay's own SessionState and TransactionState, with the session's getters over what the test gave", async () => {
    const seen = definePlugin({ name: 'seen', setup: () => ({ rcpt: () => undefined }) });
    const r = await callHook(seen, 'rcpt', { session: { remoteAddress: '192.0.2.9', helo: 'mx.client.test', user: 'alice', secure: true, notes: { k: 1 } }, mailFrom: 'a@x.test', recipients: ['b@x.test'] });
    assert.ok(r.session instanceof SessionState);
    assert.ok(r.transaction instanceof TransactionState);
    assert.deepEqual([r.session.id, r.session.remoteAddress, r.session.helo, r.session.user, r.session.secure, r.session.notes], ['test-session', '192.0.2.9', 'mx.client.test', 'alice', true, { k: 1 }]);
    assert.deepEqual([r.transaction.mailFrom.address, r.transaction.recipients.map((x) => x.address), r.transaction.session], ['a@x.test', ['b@x.test'], r.session]);
  });

  it('validates options as the relay does, naming the key path', async () => {
    await assert.rejects(callHook(maxRcpt, 'rcpt', { options: { max: 0 } }), /plugins\[0\]\.with\.max: /);
  });

  it('turns a throw, a non-verdict and a timeout into 451 4.3.0', async () => {
    const bad = definePlugin({
      name: 'bad',
      setup: () => ({
        mail: () => { throw new Error('bug'); },
        rcpt: () => 'yes' as never,
        helo: () => new Promise(() => undefined),
      }),
    });
    const thrown = await callHook(bad, 'mail');
    assert.deepEqual([thrown.reply?.code, thrown.reply?.enhanced, (thrown.error as Error).message], [451, '4.3.0', 'bug']);
    assert.equal((await callHook(bad, 'rcpt')).reply?.code, 451);
    const started = Date.now();
    const slow = await callHook(bad, 'helo', { timeout: 200 });
    assert.equal(slow.reply?.code, 451);
    assert.match((slow.error as Error).message, /did not finish within 200 ms/);
    assert.ok(Date.now() - started < 2000);
  });

  it('folds an added header exactly as the relay does: the bytes callHook records are the bytes a real relay delivers', async () => {
    const values = ['one\ntwo', 'one\r\ntwo', 'already\r\n\tfolded', 'lone\rcr', 'end\n', 'plain'];
    const adder = definePlugin({ name: 'adder', setup: () => ({ message: (txn) => values.forEach((v, i) => txn.addHeader(`X-Fold-${i}`, v)) }) });
    const hooked = await callHook(adder, 'message', { message: 'Subject: t\r\n\r\nbody\r\n' });
    const recorded = (hooked.transaction as unknown as { added: string[] }).added.join('');
    assert.equal(recorded, 'X-Fold-0: one\r\n two\r\nX-Fold-1: one\r\n two\r\nX-Fold-2: already\r\n\tfolded\r\nX-Fold-3: lone cr\r\nX-Fold-4: end\r\n \r\nX-Fold-5: plain\r\n');
    const policy = definePlugin({ name: 'to-hop', setup: () => ({ rcpt: () => accept(), route: () => ({ hosts: [{ host: '10.0.0.5', port: 25 }], tls: 'none' as const }) }) });
    const real = await inject({ plugins: [{ use: policy }, { use: adder }], mail: { from: 'a@x.test', to: 'b@example.com', message: 'Subject: t\r\n\r\nbody\r\n' } });
    assert.equal(real.deliveries.length, 1, JSON.stringify(real.replies));
    const delivered = real.deliveries[0]!.bytes.toString('latin1');
    assert.ok(delivered.includes(recorded), `relay delivered:\n${delivered}`);
    assert.throws(() => (hooked.transaction as { addHeader(n: string, v: string): void }).addHeader('Bad Name', 'x'), /invalid header name/);
  });

  it('gives the message hook the parsed headers of the message given', async () => {
    const subject = definePlugin({ name: 'subject', setup: () => ({ message: (_t, info) => (/viagra/i.test(info.headers.get('subject') ?? '') ? tempfail(451, '4.7.1', 'held') : undefined) }) });
    const r = await callHook(subject, 'message', { message: await buildMessage({ subject: 'VIAGRA für alle' }) });
    assert.equal(r.reply?.code, 451);
  });

  it('works from a plain script that imports only the test kit (no reflect polyfill error)', () => {
    const script = `
      import { callHook } from '@portcullis/testkit';
      import { definePlugin, accept } from '@portcullis/core';
      const p = definePlugin({ name: 'p', setup: () => ({ rcpt: () => accept() }) });
      const r = await callHook(p, 'rcpt');
      console.log(r.verdict.kind);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: path.join(here, '..'), encoding: 'utf8' });
    assert.equal(r.stderr, '');
    assert.equal(r.stdout.trim(), 'accept');
  });
});
