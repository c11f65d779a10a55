import assert from 'node:assert/strict';
import type { Resolver } from 'node:dns/promises';
import { accept, definePlugin, reject, tempfail, Tokens, z, type Clock } from '@portcullis/core';
import { buildMessage, fakeClock, inject, InMemoryRelay, ScriptedResolver } from '../src/index.js';

const hosted = definePlugin({
  name: 'hosted',
  setup: () => ({
    rcpt: (_txn, to) => (to.domain.endsWith('.test') ? accept() : undefined),
    route: (domain) => ({ hosts: [{ host: `mx.${domain}`, port: 25 }], name: `static:${domain}` }),
  }),
});

describe('inject(): a whole relay in memory', () => {
  it('returns the greeting and every reply, what was spooled and what each next hop got', async () => {
    const message = await buildMessage({ subject: 'Hello', text: 'line one\nline two\n' });
    const r = await inject({ plugins: [hosted], mail: { from: 'a@sender.example', to: ['b@one.test', 'c@two.test', 'd@one.test'], message } });
    assert.deepEqual(r.replies.map((x) => x.code), [220, 250, 250, 250, 250, 250, 354, 250, 221]);
    assert.match(r.replies[0]!.text, /relay\.test ESMTP Portcullis/);
    assert.equal(r.replies[7]!.enhanced, '2.0.0');
    assert.equal(r.spooled.length, 1);
    const spooled = r.spooled[0]!;
    assert.deepEqual([spooled.mailFrom, spooled.recipients], ['a@sender.example', ['b@one.test', 'c@two.test', 'd@one.test']]);
    assert.match(spooled.bytes.toString(), /^Received: from client\.test \(\[127\.0\.0\.1\]\)/);
    assert.ok(spooled.bytes.subarray(spooled.bytes.length - message.length).equals(message), 'the message is stored byte for byte after our Received header');
    const byHop = Object.fromEntries(r.deliveries.map((d) => [d.hop, d.recipients]));
    assert.deepEqual(byHop, { 'static:one.test': ['b@one.test', 'd@one.test'], 'static:two.test': ['c@two.test'] });
    for (const d of r.deliveries) assert.ok(d.bytes.equals(spooled.bytes), 'the next hop gets exactly what was spooled');
  });

  it('is closed with no policy plugin: every recipient gets 550 5.7.1 and nothing is spooled', async () => {
    const r = await inject({ transcript: ['EHLO c.test', 'MAIL FROM:<a@x.test>', 'RCPT TO:<b@y.test>', 'DATA', { message: 'Subject: x\r\n\r\nbody\r\n' }, 'QUIT'] });
    assert.deepEqual(r.replies.map((x) => x.code), [220, 250, 250, 550, 503, 221]);
    assert.equal(`${r.replies[3]!.enhanced} ${r.replies[3]!.text}`, '5.7.1 Unable to relay');
    assert.deepEqual([r.spooled.length, r.deliveries.length], [0, 0]);
  });

  it('plays the next hop: a 4xx defers the recipient, a 5xx bounces it to the sender', async () => {
    const r = await inject({
      plugins: [hosted],
      nextHop: (rcpt) => (rcpt.startsWith('busy@') ? '451 4.3.0 busy' : rcpt.startsWith('gone@') ? '550 5.1.1 no such user' : '250 2.0.0 ok'),
      mail: { from: 'a@sender.test', to: ['ok@one.test', 'busy@one.test', 'gone@one.test'], message: 'Subject: x\r\n\r\nbody\r\n' },
    });
    const bounce = r.spooled.find((s) => s.isBounce);
    assert.ok(bounce, 'a bounce was queued');
    // The message went to ok@ only; then the bounce went to the sender's next hop.
    assert.deepEqual(r.deliveries.map((d) => [d.hop, d.recipients]), [['static:one.test', ['ok@one.test']], ['static:sender.test', ['a@sender.test']]]);
    assert.ok(r.deliveries[1]!.bytes.toString().endsWith(bounce.bytes.toString()));
    assert.deepEqual([bounce.mailFrom, bounce.recipients], ['', ['a@sender.test']]);
    assert.match(bounce.bytes.toString(), /gone@one\.test/);
    assert.doesNotMatch(bounce.bytes.toString(), /Final-Recipient: rfc822;\s*busy@one\.test/);
  });

  it('answers DNS from the script through Tokens.Resolver and records the queries', async () => {
    const mx = definePlugin({
      name: 'mx-lookup',
      setup: (_o, ctx) => {
        const resolver = ctx.container.resolve<Resolver>(Tokens.Resolver);
        return {
          rcpt: () => accept(),
          route: async (domain) => {
            try {
              const records = await resolver.resolveMx(domain);
              return { hosts: records.sort((a, b) => a.priority - b.priority).map((m) => ({ host: m.exchange, port: 25 })), name: `mx:${domain}` };
            } catch (err) {
              return (err as { code?: string }).code === 'ENOTFOUND' ? reject(550, '5.1.2', `no domain ${domain}`) : tempfail(451, '4.4.3', 'DNS failure');
            }
          },
        };
      },
    });
    const dns = new ScriptedResolver({ 'good.test': { MX: [{ exchange: 'mx2.good.test', priority: 20 }, { exchange: 'mx1.good.test', priority: 10 }] } });
    const r = await inject({ plugins: [mx], dns, mail: { from: 'a@sender.test', to: ['x@good.test', 'y@missing.test'], message: 'Subject: x\r\n\r\nb\r\n' } });
    assert.deepEqual(r.deliveries.map((d) => [d.hop, d.host, d.nextHop.hosts.map((h) => h.host)]), [['mx:good.test', 'mx1.good.test:25', ['mx1.good.test', 'mx2.good.test']]]);
    assert.deepEqual(r.dnsQueries.slice(0, 2), [{ name: 'good.test', type: 'MX' }, { name: 'missing.test', type: 'MX' }]);
    assert.ok(r.spooled.some((s) => s.isBounce && /y@missing\.test/.test(s.bytes.toString())), 'NXDOMAIN bounced');
  });

  it('gives plugins the fake clock through Tokens.Clock', async () => {
    const clock = fakeClock(Date.UTC(2030, 5, 1));
    const seen: number[] = [];
    const stamp = definePlugin({
      name: 'stamp',
      setup: (_o, ctx) => {
        const now = ctx.container.resolve<Clock>(Tokens.Clock);
        return { rcpt: () => (seen.push(now()), accept()) };
      },
    });
    const relay = await InMemoryRelay.create({ plugins: [stamp], clock });
    try {
      await relay.session(['EHLO c.test', 'MAIL FROM:<a@x.test>', 'RCPT TO:<b@y.test>']);
      clock.advance('90m');
      await relay.session(['EHLO c.test', 'MAIL FROM:<a@x.test>', 'RCPT TO:<b@y.test>']);
    } finally {
      await relay.close();
    }
    assert.deepEqual(seen, [Date.UTC(2030, 5, 1), Date.UTC(2030, 5, 1) + 90 * 60_000]);
  });

  it('offers AUTH only to a client marked secure, as after TLS', async () => {
    const users = definePlugin({ name: 'users', setup: () => ({ auth: (_s, a) => (a.username === 'u' && a.password === 'p' ? accept() : undefined) }) });
    const config = { listen: [{ host: '127.0.0.1', port: 587, auth: 'optional' as const }] };
    const plain = await inject({ config, plugins: [users], transcript: ['EHLO c.test'] });
    assert.doesNotMatch(plain.replies[1]!.lines.join('\n'), /AUTH/);
    const secure = await inject({ config, plugins: [users], client: { secure: true }, transcript: ['EHLO c.test', `AUTH PLAIN ${Buffer.from('\0u\0p').toString('base64')}`, `AUTH PLAIN ${Buffer.from('\0u\0wrong').toString('base64')}`] });
    assert.match(secure.replies[1]!.lines.join('\n'), /AUTH PLAIN LOGIN/);
    assert.equal(secure.replies[2]!.code, 235);
    assert.equal(secure.replies[3]!.code, 503); // already authenticated
  });

  it('closes an idle in-memory session after limits.idleTimeout with 421, like a socket', async () => {
    const relay = await InMemoryRelay.create({ config: { limits: { idleTimeout: '300ms' } } });
    try {
      const started = Date.now();
      const r = await relay.session(['EHLO c.test', { raw: '' }]);
      assert.equal(r.replies.at(-1)!.code, 421);
      assert.ok(Date.now() - started >= 250, 'not before the idle time');
    } finally {
      await relay.close();
    }
  });

  it('runs a hook that throws as the relay does: 451 4.3.0 naming nothing to the client, the plugin and hook in the log', async () => {
    const broken = definePlugin({ name: 'broken', setup: () => ({ mail: () => { throw new Error('boom'); } }) });
    const r = await inject({ plugins: [broken], transcript: ['EHLO c.test', 'MAIL FROM:<a@x.test>'] });
    assert.equal(`${r.replies[2]!.code} ${r.replies[2]!.enhanced}`, '451 4.3.0');
    assert.ok(r.logs.some((l) => l.plugin === 'broken' && l.hook === 'mail' && l.level === 50));
  });

  it('rejects bad plugin options before the session, naming the key path', async () => {
    const strict = definePlugin({ name: 'strict', options: z.strictObject({ max: z.number().int() }), setup: () => ({}) });
    await assert.rejects(inject({ plugins: [{ use: strict, with: { max: 'ten' } }] }), /plugins\[0\]\.with\.max: /);
  });
});
