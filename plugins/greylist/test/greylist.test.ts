import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { accept, definePlugin } from '@portcullis/core';
import { CaptureServer, selfSignedFiles, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import greylist, { type GreylistOptions } from '../src/index.js';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The delay these tests use: real time, short (the default is 5 minutes). */
const DELAY = 2_000;
const GREYLISTED = /^451 4\.7\.1 Greylisted, try again in (\d+) seconds?$/;

describe('greylist over SMTP', function () {
  this.timeout(60_000);
  let sink: CaptureServer;
  const relays: TestRelay[] = [];
  let client = 10;
  /** A fresh client network per test (127.0.<n>.0/24), so the tests' triplets never meet. */
  const nextNet = () => `127.0.${++client}`;

  async function relayWith(opts: GreylistOptions): Promise<TestRelay> {
    const relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, greylist },
      config: {
        plugins: [
          { use: 'greylist', with: { delay: `${DELAY}ms`, ...opts } },
          { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } }, trustedNetworks: ['127.0.200.0/24'] } },
        ],
      },
    });
    relays.push(relay);
    return relay;
  }
  const send = (relay: TestRelay, localAddress: string, from: string, to: string | string[]) => sendMail({ port: relay.port, localAddress, from, to, subject: 'greylist', text: 'hello' });
  const counted = async (relay: TestRelay, name: string, result?: string) => {
    const values = (await relay.relay.metrics.registry.getSingleMetric(`portcullis_greylist_${name}`)!.get()).values;
    return (result ? values.find((v) => v.labels['result'] === result) : values[0])?.value;
  };

  before(async () => {
    sink = await CaptureServer.start({ host: '127.0.0.1' });
  });
  after(async () => {
    for (const r of relays) await r.stop();
    await sink?.close();
  });

  describe('one node, memory state', () => {
    let relay: TestRelay;
    before(async () => {
      relay = await relayWith({ autoAllowAfter: 1 });
    });

    it('answers a new triplet 451 4.7.1 with the wait, a retry before the delay 451 with the time left, and a retry after the delay 250', async () => {
      const ip = `${nextNet()}.1`;
      const before = sink.messages.length;
      const first = await send(relay, ip, 'news@sender.test', 'bob@example.com');
      assert.equal(first.response, `451 4.7.1 Greylisted, try again in ${DELAY / 1000} seconds`);
      await pause(600);
      const early = await send(relay, ip, 'news@sender.test', 'bob@example.com');
      const m = GREYLISTED.exec(early.response);
      assert.ok(m, early.response);
      assert.ok(Number(m[1]) >= 1 && Number(m[1]) <= 2, `wait ${m[1]} s`);
      await pause(300);
      assert.equal(sink.messages.length, before, 'nothing was delivered while greylisted');
      await pause(DELAY - 900 + 200);
      const later = await send(relay, ip, 'news@sender.test', 'bob@example.com');
      assert.match(later.response, /^250 2\.0\.0 Ok: queued as /);
      await sink.waitFor(before + 1);
      assert.equal(await counted(relay, 'results_total', 'greylisted'), 1);
      assert.equal(await counted(relay, 'results_total', 'early'), 1);
      assert.equal(await counted(relay, 'results_total', 'passed'), 1);
    });

    it('accepts a second recipient of a client auto allow-listed after its pass at once, from another address of its /24', async () => {
      const net = nextNet();
      assert.match((await send(relay, `${net}.1`, 'a@sender.test', 'bob@example.com')).response, GREYLISTED);
      await pause(DELAY + 200);
      assert.match((await send(relay, `${net}.1`, 'a@sender.test', 'bob@example.com')).response, /^250 /);
      const t0 = Date.now();
      const other = await send(relay, `${net}.77`, 'someone-else@other.test', 'carol@example.com');
      assert.match(other.response, /^250 /);
      assert.ok(Date.now() - t0 < DELAY, 'accepted without waiting');
      assert.ok((await counted(relay, 'results_total', 'auto_allowed'))! >= 1);
      // A different /24 is a different client.
      assert.match((await send(relay, `${nextNet()}.1`, 'someone-else@other.test', 'carol@example.com')).response, GREYLISTED);
    });

    it('never greylists trusted networks, allow-listed senders, networks or recipients, and leaves unhosted domains to relay-policy', async () => {
      const allowing = await relayWith({ trustedNetworks: ['127.0.200.0/24'], allow: { networks: ['127.0.201.0/24'], senderDomains: ['.partner.test'], recipients: ['postmaster@example.com'] } });
      assert.match((await send(allowing, '127.0.200.5', 'x@inside.test', 'bob@example.com')).response, /^250 /, 'trusted network');
      assert.match((await send(allowing, '127.0.201.5', 'x@any.test', 'bob@example.com')).response, /^250 /, 'allowed network');
      const ip = `${nextNet()}.1`;
      assert.match((await send(allowing, ip, 'x@mail.partner.test', 'bob@example.com')).response, /^250 /, 'allowed sender domain (subdomain)');
      assert.match((await send(allowing, ip, 'x@stranger.test', 'postmaster@example.com')).response, /^250 /, 'allowed recipient');
      assert.match((await send(allowing, ip, 'x@stranger.test', 'bob@example.com')).response, GREYLISTED, 'everything else is greylisted');
      assert.equal((await send(allowing, ip, 'x@stranger.test', 'someone@elsewhere.test')).response, '550 5.7.1 Unable to relay', 'not hosted: relay-policy decides');
      assert.equal(await counted(allowing, 'results_total', 'allowed'), 4);
    });

    it('never greylists an authenticated user', async () => {
      const tls = await selfSignedFiles('relay.test');
      const users = definePlugin({ name: 'users', setup: () => ({ auth: (_s, a) => (a.username === 'alice' && a.password === 'secret' ? accept() : undefined) }) });
      try {
        const relay = await startTestRelay({
          builtins: { 'relay-policy': relayPolicy, greylist, users },
          config: {
            tls: { key: tls.key, cert: tls.cert },
            listen: [{ host: '127.0.0.1', port: 0, tls: 'starttls', auth: 'optional', greetingDelay: 0 }],
            plugins: [{ use: 'users' }, { use: 'greylist', with: { delay: '10m' } }, { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } } } }],
          },
        });
        relays.push(relay);
        const ip = `${nextNet()}.1`;
        const authed = await sendMail({ port: relay.port, localAddress: ip, from: 'alice@remote.test', to: 'bob@example.com', auth: { user: 'alice', pass: 'secret' } });
        assert.match(authed.response, /^250 /);
        assert.equal((await send(relay, ip, 'alice@remote.test', 'bob@example.com')).response, '451 4.7.1 Greylisted, try again in 600 seconds', 'the same client without AUTH is greylisted');
      } finally {
        rmSync(tls.dir, { recursive: true, force: true });
      }
    });
  });
  // Two nodes on one redis-server, and Redis going away: redis-cluster.test.ts (relay processes).
});
