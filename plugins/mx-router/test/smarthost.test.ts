import assert from 'node:assert/strict';
import { sendMail, startTestRelay, type CaptureServer, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import mxRouter from '../src/index.js';
import { Dnsmasq } from './support/dnsmasq.js';
import { recordingObserver, waitUntil, type ObservedEvent } from './support/observer.js';
import { startCapturesOnSharedPort } from './support/shared-port.js';

/*
 * Smart host (with AUTH) and static routes. The relay's own `dns.servers` points at a port where
 * nothing answers; the plugin's `dnsServers` points at dnsmasq, so every lookup that works proves
 * the plugin's option wins.
 *
 *   smarthost.test     A 127.0.0.27: the smart host, requires AUTH relay / s3cret
 *   static.test, .static.test → 127.0.0.28 (static route)
 *   example.test       MX → 127.0.0.21 (would be used without the smart host; nothing listens)
 */
describe('mx-router end to end: smart host with AUTH, static routes, own DNS servers', function () {
  this.timeout(20_000);
  let port: number;
  let hosts: Map<string, CaptureServer>;
  let dns: Dnsmasq;
  let relay: TestRelay;
  const logins: string[] = [];
  const events: ObservedEvent[] = [];

  before(async () => {
    ({ port, servers: hosts } = await startCapturesOnSharedPort(['127.0.0.27', '127.0.0.28'], (host) =>
      host === '127.0.0.27'
        ? {
            server: {
              disabledCommands: ['STARTTLS'],
              authOptional: false,
              allowInsecureAuth: true,
              onAuth(auth, _session, cb) {
                logins.push(`${auth.method} ${auth.username}`);
                if (auth.username === 'relay' && auth.password === 's3cret') cb(null, { user: auth.username });
                else cb(Object.assign(new Error('5.7.8 Invalid credentials'), { responseCode: 535 }));
              },
            },
          }
        : {},
    ));
    dns = await Dnsmasq.start({
      lines: ['host-record=smarthost.test,127.0.0.27', 'mx-host=example.test,mx1.example.test,10', 'host-record=mx1.example.test,127.0.0.21'],
    });
    relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, 'mx-router': mxRouter, 'test-observer': recordingObserver(events) },
      config: {
        dns: { servers: ['127.0.0.1:9'], timeout: '300ms' },
        delivery: { retrySchedule: ['1s'], connectTimeout: '2s' },
        plugins: [
          { use: 'relay-policy', with: { trustedNetworks: ['127.0.0.0/8'] } },
          {
            use: 'mx-router',
            with: {
              port,
              dnsServers: [dns.server],
              smarthost: { nexthop: `smarthost.test:${port}`, tls: 'none', auth: { user: 'relay', pass: 's3cret' } },
              routes: {
                'static.test': { nexthop: `127.0.0.28:${port}`, tls: 'none' },
                '.static.test': { nexthop: `127.0.0.28:${port}`, tls: 'none' },
              },
            },
          },
          { use: 'test-observer' },
        ],
      },
    });
  });
  after(async () => {
    await relay?.stop();
    await dns?.stop();
    await Promise.all([...(hosts?.values() ?? [])].map((s) => s.close()));
  });

  const send = (to: string) => sendMail({ port: relay.port, localAddress: '127.0.0.5', from: 'alice@sender.test', to, text: 'hello' });

  it('sends everything without a static route to the smart host, logged in with AUTH', async () => {
    assert.match((await send('bob@example.test')).response, /^250 /);
    const msg = await waitUntil('the message at the smart host', () => hosts.get('127.0.0.27')!.messages.find((m) => m.to.includes('bob@example.test')));
    assert.equal(msg.from, 'alice@sender.test');
    assert.deepEqual(logins, ['PLAIN relay']);
    const delivered = events.find((e) => e.kind === 'delivered' && e.recipient === 'bob@example.test');
    assert.equal(delivered?.host, `127.0.0.27:${port}`);
  });

  it('sends a domain with a static route, and its subdomains, to that route instead of the smart host', async () => {
    assert.match((await send('carol@static.test')).response, /^250 /);
    assert.match((await send('dave@eu.static.test')).response, /^250 /);
    await waitUntil('both messages at the static next hop', () => {
      const to = hosts.get('127.0.0.28')!.messages.flatMap((m) => m.to);
      return to.includes('carol@static.test') && to.includes('dave@eu.static.test');
    });
    assert.equal(hosts.get('127.0.0.27')!.messages.some((m) => m.to.some((t) => t.endsWith('static.test'))), false);
  });
});
