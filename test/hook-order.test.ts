import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { accept, definePlugin } from '@portcullis/core';
import { hostedRelay, selfSignedFiles, waitUntil, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

const here = path.dirname(fileURLToPath(import.meta.url));
const DELIVERY = new Set(['route', 'delivered', 'deferred', 'bounced']);

/**
 * The hooks docs/hooks.md lists under "## Lifecycle", in its order: the numbered items whose first
 * word is a hook in backticks; the session's list, then (after the "Delivery" paragraph) delivery's.
 */
function documentedOrder(): { session: string[]; delivery: string[] } {
  const doc = readFileSync(path.join(here, '..', 'docs', 'hooks.md'), 'utf8');
  const section = doc.slice(doc.indexOf('\n## Lifecycle'), doc.indexOf('\n## ', doc.indexOf('\n## Lifecycle') + 4));
  const [sessionPart, deliveryPart] = section.split(/\n\*\*Delivery\*\*/);
  const hooks = (text = '') => [...text.matchAll(/^\d+\. `([a-z.]+)`/gm)].map((m) => m[1]!);
  return { session: hooks(sessionPart), delivery: hooks(deliveryPart) };
}

/** Consecutive repeats folded into one (`rcpt` × 2, `delivered` per recipient: one documented step each). */
const folded = (list: readonly string[]) => list.filter((h, i) => h !== list[i - 1]);

describe('the hook order of one whole session is the order docs/hooks.md documents', function () {
  this.timeout(60_000);
  const seen: string[] = [];
  let t: HostedRelay;
  const recorder = definePlugin({
    name: 'recorder',
    setup: () => ({
      connect: () => void seen.push('connect'),
      helo: () => void seen.push('helo'),
      auth: (_s, a) => {
        seen.push('auth');
        return a.username === 'alice' && a.password === 'secret' ? accept() : undefined;
      },
      mail: () => void seen.push('mail'),
      rcpt: () => void seen.push('rcpt'),
      data: () => {
        seen.push('data');
        return {
          raw: async (stream) => {
            seen.push('data.raw');
            for await (const chunk of stream) void chunk;
          },
          part: () => {
            seen.push('data.part');
            return { update: () => undefined, done: async () => undefined };
          },
        };
      },
      message: () => void seen.push('message'),
      route: () => void seen.push('route'),
      delivered: () => void seen.push('delivered'),
      deferred: () => void seen.push('deferred'),
      bounced: () => void seen.push('bounced'),
      disconnect: () => void seen.push('disconnect'),
    }),
  });

  before(async () => {
    const tls = await selfSignedFiles('relay.test');
    // Implicit TLS: AUTH is offered on it without STARTTLS (never on a plain connection).
    t = await hostedRelay({
      builtins: { 'relay-policy': relayPolicy, recorder },
      domain: 'example.com',
      pluginsBefore: [{ use: 'recorder' }],
      config: { tls: { key: tls.key, cert: tls.cert }, listen: [{ host: '127.0.0.1', port: 0, tls: 'implicit', auth: 'optional', greetingDelay: 0 }] },
    });
  });
  after(() => t?.close());

  it('runs connect, auth, helo (at the first MAIL), mail, rcpt × 2, data, its raw reader and part screener, message, disconnect; then route and delivered, as listed', async () => {
    const r = await t.send({ secure: true, auth: { user: 'alice', pass: 'secret' }, to: ['bob@example.com', 'carol@example.com'], raw: 'From: alice@remote.test\r\nTo: bob@example.com\r\nSubject: order\r\n\r\nhello\r\n' });
    assert.equal(r.code, 250, r.response);
    await waitUntil(() => seen.includes('delivered') && seen.includes('disconnect'), 'the delivery and the disconnect');
    const [msg] = await t.waitFor(1);
    assert.deepEqual(msg!.to, ['bob@example.com', 'carol@example.com']);
    assert.equal(seen.filter((h) => h === 'rcpt').length, 2);

    const documented = documentedOrder();
    // The list was found and names each hook once (its order is what the next lines check).
    assert.deepEqual([...documented.session].sort(), ['auth', 'connect', 'data', 'data.part', 'data.raw', 'disconnect', 'helo', 'mail', 'message', 'rcpt'], 'docs/hooks.md lists the session hooks');
    assert.deepEqual([...documented.delivery].sort(), ['delivered', 'route'], 'docs/hooks.md lists the delivery hooks');
    assert.deepEqual(folded(seen.filter((h) => !DELIVERY.has(h))), documented.session, `recorded: ${seen.join(' ')}`);
    assert.deepEqual(folded(seen.filter((h) => DELIVERY.has(h))), documented.delivery, `recorded: ${seen.join(' ')}`);
    // route once for the one domain, delivered once per recipient.
    assert.deepEqual([seen.filter((h) => h === 'route').length, seen.filter((h) => h === 'delivered').length], [1, 2]);
    // Delivery starts at the commit: after the message hook, whenever the client leaves.
    assert.ok(seen.indexOf('route') > seen.indexOf('message'));
  });
});
