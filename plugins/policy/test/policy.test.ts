import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaptureServer, freePort, RawSmtp, selfSignedFiles, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy, { userLine } from '@portcullis/relay-policy';
import policy, { type PolicyOptions } from '../src/index.js';
import { Postgrey } from './support/postgrey.js';
import { startSpawnedPolicyd, TinyPolicyServer } from './support/tiny-policy-server.js';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MESSAGE = 'From: <alice@remote.test>\r\nTo: <bob@example.com>\r\nSubject: policy test\r\nMessage-ID: <p1@remote.test>\r\n\r\nHello through the policy service.\r\n';

describe('policy (Postfix policy delegation over SMTP)', function () {
  this.timeout(60_000);
  let sink: CaptureServer;
  const relays: TestRelay[] = [];

  /** A relay hosting example.com: the policy plugin first, then relay-policy (see README: order). */
  async function relayWith(opts: PolicyOptions): Promise<TestRelay> {
    const relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, policy },
      config: {
        plugins: [
          { use: 'policy', with: { lookupClientName: false, ...opts } },
          { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } } } },
        ],
      },
    });
    relays.push(relay);
    return relay;
  }

  async function open(relay: TestRelay, from = 'alice@remote.test', params = ''): Promise<RawSmtp> {
    const c = await RawSmtp.connect(relay.port, '127.0.0.1', '127.0.0.9');
    assert.match(await c.read(), /^220 /);
    assert.match(await c.cmd('EHLO client.test'), /^250/);
    assert.match(await c.cmd(`MAIL FROM:<${from}>${params}`), /^250 /);
    return c;
  }

  /** DATA with MESSAGE; returns the reply to the final dot. */
  async function data(c: RawSmtp, message = MESSAGE): Promise<string> {
    assert.match(await c.cmd('DATA'), /^354 /);
    c.write(`${message}.\r\n`);
    return c.read();
  }

  /** What the relay added on top of MESSAGE at the next hop (Received first). */
  function added(raw: Buffer, message = MESSAGE): string {
    assert.ok(raw.subarray(raw.length - message.length).equals(Buffer.from(message)), 'the next hop got the message bytes unchanged after the added header lines');
    return raw.subarray(0, raw.length - message.length).toString();
  }

  before(async () => {
    sink = await CaptureServer.start({ host: '127.0.0.1' });
  });
  after(async () => {
    for (const r of relays) await r.stop();
    await sink?.close();
  });

  describe('with Debian postgrey (delay 2 s)', () => {
    let postgrey: Postgrey;
    let relay: TestRelay;
    before(async () => {
      postgrey = await Postgrey.start({ delay: 2 });
      relay = await relayWith({ server: postgrey.address, timeout: '5s' });
    });
    after(() => postgrey?.stop());

    it('greylists the first attempt with 450 4.2.0 and its text, then delivers the retry after the delay with its X-Greylist header', async () => {
      const before = sink.messages.length;
      const c = await open(relay);
      assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '450 4.2.0 <bob@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html');
      assert.match(await c.cmd('DATA'), /^554 |^503 /);
      c.close();
      // Too early: still greylisted.
      const early = await open(relay);
      assert.equal(await early.cmd('RCPT TO:<bob@example.com>'), '450 4.2.0 <bob@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html');
      early.close();
      await pause(2_600);
      const retry = await open(relay);
      assert.match(await retry.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      assert.match(await data(retry), /^250 2\.0\.0 /);
      retry.close();
      const msgs = await sink.waitFor(before + 1);
      assert.equal(msgs.length, before + 1, 'one message delivered');
      const top = added(msgs[before]!.raw);
      assert.match(top, /^Received: [^]*\r\nX-Greylist: delayed [2-9] seconds by postgrey-[\d.]+ at greylist\.test; [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \w+\r\n$/);
      assert.deepEqual(msgs[before]!.to, ['bob@example.com']);
    });

    it('leaves an unauthorised relay attempt to relay-policy: 550 5.7.1, not a greylisting 450 (DEFER_IF_PERMIT with a later reject)', async () => {
      const c = await open(relay);
      assert.equal(await c.cmd('RCPT TO:<someone@elsewhere.test>'), '550 5.7.1 Unable to relay');
      c.close();
    });

    it('answers five sessions at once, each greylisted with its own text', async () => {
      const replies = await Promise.all(
        [1, 2, 3, 4, 5].map(async (i) => {
          const c = await open(relay, `burst${i}@remote.test`);
          const r = await c.cmd(`RCPT TO:<user${i}@example.com>`);
          c.close();
          return r;
        }),
      );
      assert.deepEqual(replies, [1, 2, 3, 4, 5].map((i) => `450 4.2.0 <user${i}@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html`));
    });
  });

  describe('a policy service that is down', () => {
    it('answers 451 4.3.5 Server configuration problem by default (Postfix smtpd_policy_service_default_action), delivering nothing', async () => {
      const relay = await relayWith({ server: `inet:127.0.0.1:${await freePort()}` });
      const before = sink.messages.length;
      const c = await open(relay);
      assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '451 4.3.5 <bob@example.com>: Recipient address rejected: Server configuration problem');
      c.close();
      await pause(300);
      assert.equal(sink.messages.length, before);
    });

    it('lets mail through to relay-policy with defaultAction: dunno, and the message is delivered', async () => {
      const relay = await relayWith({ server: `inet:127.0.0.1:${await freePort()}`, defaultAction: 'dunno' });
      const before = sink.messages.length;
      const c = await open(relay);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      assert.equal(await c.cmd('RCPT TO:<x@elsewhere.test>'), '550 5.7.1 Unable to relay');
      assert.match(await data(c), /^250 2\.0\.0 /);
      c.close();
      const msgs = await sink.waitFor(before + 1);
      assert.match(added(msgs[before]!.raw), /^Received: [^]*\r\n$/);
    });

    it('reports not ready while the service is down and ready once it listens; counts the failures in its metrics', async () => {
      const port = await freePort();
      const relay = await relayWith({ server: `inet:127.0.0.1:${port}` });
      const check = async () => (await relay.relay.readiness()).checks.find((c) => c.name === 'plugin:policy')!;
      const down = await check();
      assert.equal(down.ready, false);
      assert.match(down.detail!, /^policy service inet:127\.0\.0\.1:\d+: could not connect/);
      const c = await open(relay);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^451 4\.3\.5 /);
      c.close();
      const metric = async (name: string) => (await relay.relay.metrics.registry.getSingleMetric(name)!.get()).values;
      assert.ok((await metric('portcullis_policy_errors_total')).find((v) => v.labels['reason'] === 'unavailable')!.value >= 1);
      assert.ok((await metric('portcullis_policy_requests_total')).find((v) => v.labels['action'] === 'failed' && v.labels['stage'] === 'rcpt')!.value >= 1);
      const up = await TinyPolicyServer.start(() => ({ action: 'DUNNO' }), { port });
      try {
        const ok = await check();
        assert.equal(ok.ready, true);
        assert.equal(ok.detail, `policy service inet:127.0.0.1:${port} accepts connections`);
      } finally {
        await up.close();
      }
    });

    it('gives a custom default action as written: "DEFER_IF_PERMIT 4.3.0 policy down"', async () => {
      const relay = await relayWith({ server: `unix:${path.join(os.tmpdir(), 'no-such-policy.sock')}`, defaultAction: 'DEFER_IF_PERMIT 4.3.0 policy down' });
      const c = await open(relay);
      assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '450 4.3.0 <bob@example.com>: Recipient address rejected: policy down');
      assert.equal(await c.cmd('RCPT TO:<x@elsewhere.test>'), '550 5.7.1 Unable to relay');
      c.close();
    });
  });

  describe('with a policy server written for the test (answers postgrey never gives)', () => {
    let tiny: TinyPolicyServer;
    let relay: TestRelay;
    let answer: (req: Map<string, string>, nth: number) => ReturnType<TinyPolicyServer['behave']>;
    before(async () => {
      tiny = await TinyPolicyServer.start((req, nth) => answer(req, nth));
      relay = await relayWith({ server: tiny.address, timeout: '1s' });
    });
    beforeEach(() => {
      answer = () => ({ action: 'DUNNO' });
      tiny.closeAfterAnswer = false;
    });
    after(() => tiny?.close());

    const cases: Array<[string, string, string]> = [
      ['REJECT with text', 'REJECT no mail for you', '554 5.7.1 <bob@example.com>: Recipient address rejected: no mail for you'],
      ['REJECT without text', 'REJECT', '554 5.7.1 <bob@example.com>: Recipient address rejected: Access denied'],
      ['REJECT with its own status', 'reject 5.7.26 unauthenticated', '554 5.7.26 <bob@example.com>: Recipient address rejected: unauthenticated'],
      ['5xx text with a status', '550 5.1.1 no such user', '550 5.1.1 <bob@example.com>: Recipient address rejected: no such user'],
      ['5xx text without a status', '552 over quota', '552 5.7.1 <bob@example.com>: Recipient address rejected: over quota'],
      ['DEFER', 'DEFER come back later', '450 4.7.1 <bob@example.com>: Recipient address rejected: come back later'],
      ['4xx text', '452 4.2.2 mailbox full', '452 4.2.2 <bob@example.com>: Recipient address rejected: mailbox full'],
      ['a 4xx with a 5.x.x status (the class follows the code)', '451 5.7.1 odd', '451 4.7.1 <bob@example.com>: Recipient address rejected: odd'],
      ['DEFER_IF_PERMIT for a hosted recipient', 'DEFER_IF_PERMIT try again', '450 4.7.1 <bob@example.com>: Recipient address rejected: try again'],
    ];
    for (const [what, action, reply] of cases) {
      it(`answers ${what} ("${action}") with ${reply.slice(0, 9)}`, async () => {
        answer = () => ({ action });
        const c = await open(relay);
        assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), reply);
        c.close();
      });
    }

    it('turns DEFER_IF_REJECT into a 450 for a recipient relay-policy refuses, and lets a hosted one through', async () => {
      answer = () => ({ action: 'DEFER_IF_REJECT not sure yet' });
      const c = await open(relay);
      assert.equal(await c.cmd('RCPT TO:<x@elsewhere.test>'), '450 4.7.1 <x@elsewhere.test>: Recipient address rejected: not sure yet');
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      c.close();
    });

    it('treats OK, DUNNO, all-numerical, INFO and WARN as no opinion: a hosted recipient is accepted, an unhosted one still gets 550', async () => {
      for (const action of ['OK', 'DUNNO', '1733500000', 'INFO noted', 'WARN suspicious']) {
        answer = () => ({ action });
        const c = await open(relay);
        assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /, action);
        assert.equal(await c.cmd('RCPT TO:<x@elsewhere.test>'), '550 5.7.1 Unable to relay', `${action} never opens the relay`);
        c.close();
      }
    });

    it('answers 421 text and closes the connection', async () => {
      answer = () => ({ action: '421 4.7.0 go away' });
      const c = await open(relay);
      assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '421 4.7.0 <bob@example.com>: Recipient address rejected: go away');
      await c.waitClosed();
    });

    it('PREPENDs the header at the next hop byte for byte, in the order given, below our Received line', async () => {
      answer = (req) => ({ action: req.get('recipient') === 'bob@example.com' ? 'PREPEND X-Policy-Check: tagged;  two  spaces kept' : 'prepend X-Second:second' });
      const before = sink.messages.length;
      const c = await open(relay);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      assert.match(await c.cmd('RCPT TO:<carol@example.com>'), /^250 /);
      assert.match(await data(c), /^250 2\.0\.0 /);
      c.close();
      const msgs = await sink.waitFor(before + 1);
      const top = added(msgs[before]!.raw);
      assert.match(top, /^Received: /);
      assert.ok(top.endsWith('\r\nX-Policy-Check: tagged;  two  spaces kept\r\nX-Second: second\r\n'), JSON.stringify(top));
    });

    it('holds the message in the queue on HOLD (nothing delivered until released), with the answer as the hold reason', async () => {
      answer = () => ({ action: 'HOLD needs a look' });
      const before = sink.messages.length;
      const c = await open(relay);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      const reply = await data(c);
      c.close();
      assert.match(reply, /^250 2\.0\.0 Ok: queued as \S+/);
      const id = /queued as (\S+)/.exec(reply)![1]!;
      await pause(700);
      assert.equal(sink.messages.length, before, 'a held message is not delivered');
      assert.equal(relay.relay.queue.list().find((m) => m.id === id)?.hold, true);
      assert.equal((await relay.relay.queue.show(id))?.meta.held, 'policy: needs a look');
      assert.equal(await relay.relay.queue.release(id), true);
      const msgs = await sink.waitFor(before + 1);
      added(msgs[before]!.raw);
    });

    it('accepts and drops the message on DISCARD: 250 to the client, nothing queued or delivered', async () => {
      answer = (req) => ({ action: req.get('recipient') === 'carol@example.com' ? 'DISCARD spam trap' : 'DUNNO' });
      const before = sink.messages.length;
      const queued = relay.relay.queue.list().length;
      const c = await open(relay);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      assert.match(await c.cmd('RCPT TO:<carol@example.com>'), /^250 /);
      assert.match(await data(c), /^250 /);
      c.close();
      await pause(700);
      assert.equal(sink.messages.length, before);
      assert.equal(relay.relay.queue.list().length, queued);
    });

    it('gives the default action after its timeout when the server never answers, and keeps serving', async () => {
      answer = () => 'hang';
      const c = await open(relay);
      const t0 = Date.now();
      const hung = c.cmd('RCPT TO:<bob@example.com>');
      // Meanwhile another client is served at once: one hung request holds nothing but its own session.
      const other = await RawSmtp.connect(relay.port);
      assert.match(await other.read(), /^220 /);
      assert.match(await other.cmd('EHLO other.test'), /^250/);
      assert.ok(Date.now() - t0 < 800, 'greeted while the policy request hangs');
      other.close();
      assert.equal(await hung, '451 4.3.5 <bob@example.com>: Recipient address rejected: Server configuration problem');
      const took = Date.now() - t0;
      assert.ok(took >= 900 && took < 5_000, `answered after ${took} ms (timeout 1s)`);
      // The same session and the relay keep working once the service answers again.
      answer = () => ({ action: 'DUNNO' });
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      assert.match(await data(c), /^250 2\.0\.0 /);
      c.close();
    });

    for (const [what, raw] of [
      ['a line that is not name=value', 'hello there\n\n'],
      ['an answer without action=', 'foo=bar\n\n'],
      ['an unknown action', 'action=FROBNICATE now\n\n'],
      ['two answers to one request', 'action=DUNNO\n\naction=REJECT\n\n'],
      ['bytes without end', `action=${'x'.repeat(20_000)}`],
    ] as const) {
      it(`gives the default action for ${what}, and the next request is answered on a new connection`, async () => {
        answer = () => ({ raw });
        const c = await open(relay);
        assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '451 4.3.5 <bob@example.com>: Recipient address rejected: Server configuration problem');
        answer = () => ({ action: 'REJECT second' });
        assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '554 5.7.1 <bob@example.com>: Recipient address rejected: second');
        c.close();
      });
    }

    it('reconnects when the server closes the connection after each answer, and when it drops one mid-request', async () => {
      tiny.closeAfterAnswer = true;
      const c = await open(relay);
      for (let i = 0; i < 3; i++) {
        answer = () => ({ action: `REJECT r${i}` });
        assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), `554 5.7.1 <bob@example.com>: Recipient address rejected: r${i}`);
        await pause(50);
      }
      tiny.closeAfterAnswer = false;
      answer = () => 'close';
      assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '451 4.3.5 <bob@example.com>: Recipient address rejected: Server configuration problem');
      c.close();
    });

    it('sends a request again on a new connection when a reused one turns out to be closed (the server dropped it without answering)', async () => {
      const pooled = await relayWith({ server: tiny.address });
      // Each connection answers its first request and drops the second unanswered, as a server whose idle timer fired would.
      answer = (_req, nth) => (nth === 1 ? { action: 'REJECT answered' } : 'close');
      const c = await open(pooled);
      const conns = tiny.connections;
      for (let i = 0; i < 3; i++) assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '554 5.7.1 <bob@example.com>: Recipient address rejected: answered');
      assert.equal(tiny.connections - conns, 3, 'a new connection for each retried request');
      c.close();
    });

    it('closes a connection idle for maxIdle and opens a new one for a connection older than maxTtl', async () => {
      const idle = await relayWith({ server: tiny.address, maxIdle: '300ms' });
      const conns = tiny.connections;
      const closed = tiny.closed;
      let c = await open(idle);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      c.close();
      await pause(800);
      assert.equal(tiny.closed - closed, 1, 'the idle connection was closed');
      c = await open(idle);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      c.close();
      assert.equal(tiny.connections - conns, 2);
      const young = await relayWith({ server: tiny.address, maxTtl: '20ms' });
      const before = tiny.connections;
      c = await open(young);
      for (let i = 0; i < 3; i++) {
        assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
        await pause(50);
      }
      c.close();
      assert.equal(tiny.connections - before, 3, 'no connection reused past maxTtl');
    });

    it('logs FILTER, REDIRECT and BCC as unsupported and goes on, or answers 451 4.3.5 with unsupported: tempfail', async () => {
      answer = () => ({ action: 'REDIRECT elsewhere@example.com' });
      let c = await open(relay);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      c.close();
      const strict = await relayWith({ server: tiny.address, unsupported: 'tempfail' });
      c = await open(strict);
      for (const action of ['FILTER smtp:[127.0.0.1]:10025', 'REDIRECT elsewhere@example.com', 'BCC archive@example.com']) {
        answer = () => ({ action });
        assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), `451 4.3.5 <bob@example.com>: ${action.split(' ')[0]} action not supported`);
      }
      c.close();
    });

    it('sends the attributes Postfix sends, the same instance for every request of one transaction, values sanitised', async () => {
      const seen = tiny.requests.length;
      const c = await open(relay, 'alice@remote.test', ' SIZE=1234');
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      assert.match(await c.cmd('RCPT TO:<carol@example.com>'), /^250 /);
      assert.match(await c.cmd('RSET'), /^250 /);
      assert.match(await c.cmd('MAIL FROM:<other@remote.test>'), /^250 /);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      c.close();
      const [a, b, d] = tiny.requests.slice(seen);
      assert.ok(a && b && d);
      assert.equal(a.get('request'), 'smtpd_access_policy');
      assert.equal(a.get('protocol_state'), 'RCPT');
      assert.equal(a.get('protocol_name'), 'ESMTP');
      assert.equal(a.get('helo_name'), 'client.test');
      assert.equal(a.get('sender'), 'alice@remote.test');
      assert.equal(a.get('recipient'), 'bob@example.com');
      assert.equal(a.get('recipient_count'), '0');
      assert.equal(a.get('client_address'), '127.0.0.9');
      assert.equal(a.get('client_name'), 'unknown');
      assert.equal(a.get('reverse_client_name'), 'unknown');
      assert.equal(a.get('size'), '1234');
      assert.equal(a.get('server_address'), '127.0.0.1');
      assert.equal(a.get('server_port'), String(relay.port));
      assert.equal(a.get('etrn_domain'), '');
      assert.equal(a.get('sasl_username'), '');
      assert.equal(b.get('recipient'), 'carol@example.com');
      assert.equal(a.get('instance'), b.get('instance'), 'one instance per transaction');
      assert.notEqual(a.get('instance'), d.get('instance'), 'a new transaction has a new instance');
      assert.equal(d.get('sender'), 'other@remote.test');
      for (const key of ['queue_id', 'ccert_subject', 'ccert_issuer', 'ccert_fingerprint', 'encryption_protocol', 'encryption_cipher', 'sasl_method', 'client_port', 'policy_context']) assert.ok(a.has(key), `sends ${key}`);
    });

    it('sends sasl_username, sasl_method and the encryption protocol, cipher and key size for a client that logged in over STARTTLS', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-policy-auth-'));
      try {
        const tls = await selfSignedFiles('relay.test');
        const users = path.join(dir, 'users');
        writeFileSync(users, `${await userLine('alice@example.com', 'correct horse')}\n`);
        const authRelay = await startTestRelay({
          builtins: { 'relay-policy': relayPolicy, policy },
          config: {
            tls: { key: tls.key, cert: tls.cert },
            listen: [{ host: '127.0.0.1', port: 0, tls: 'starttls', auth: 'optional', greetingDelay: 0 }],
            plugins: [
              { use: 'policy', with: { server: tiny.address, lookupClientName: false } },
              { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } }, users } },
            ],
          },
        });
        relays.push(authRelay);
        const seen = tiny.requests.length;
        const c = await RawSmtp.connect(authRelay.port, '127.0.0.1', '127.0.0.9');
        assert.match(await c.read(), /^220 /);
        assert.match(await c.cmd('EHLO client.test'), /^250/);
        assert.match(await c.cmd('STARTTLS'), /^220 /);
        await c.startTls();
        assert.match(await c.cmd('EHLO client.test'), /^250/);
        assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0alice@example.com\0correct horse').toString('base64')}`), /^235 /);
        assert.match(await c.cmd('MAIL FROM:<alice@example.com>'), /^250 /);
        assert.match(await c.cmd('RCPT TO:<friend@elsewhere.test>'), /^250 /);
        c.close();
        const r = tiny.requests[seen]!;
        assert.equal(r.get('sasl_username'), 'alice@example.com');
        assert.equal(r.get('sasl_method'), 'PLAIN');
        assert.equal(r.get('encryption_protocol'), 'TLSv1.3');
        assert.match(r.get('encryption_cipher') ?? '', /^TLS_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$/);
        assert.match(r.get('encryption_keysize') ?? '', /^(128|256)$/);
        assert.equal(r.get('recipient'), 'friend@elsewhere.test');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('asks at every configured stage with the protocol_state Postfix uses, recipient_count and the real size after DATA', async () => {
      const staged = await relayWith({ server: tiny.address, stages: ['connect', 'helo', 'mail', 'rcpt', 'data', 'end-of-message'], policyContext: 'edge' });
      const seen = tiny.requests.length;
      const before = sink.messages.length;
      const c = await open(staged);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      assert.match(await data(c), /^250 2\.0\.0 /);
      c.close();
      await sink.waitFor(before + 1);
      const reqs = tiny.requests.slice(seen);
      assert.deepEqual(reqs.map((r) => r.get('protocol_state')), ['CONNECT', 'EHLO', 'MAIL', 'RCPT', 'DATA', 'END-OF-MESSAGE']);
      assert.deepEqual(reqs.map((r) => r.get('recipient_count')), ['0', '0', '0', '0', '1', '1']);
      assert.equal(reqs[5]!.get('recipient'), 'bob@example.com', 'the only recipient is named after DATA');
      assert.equal(reqs[5]!.get('size'), String(Buffer.byteLength(MESSAGE)));
      assert.ok(reqs.every((r) => r.get('policy_context') === 'edge'));
      assert.equal(new Set(reqs.slice(2).map((r) => r.get('instance'))).size, 1, 'MAIL to END-OF-MESSAGE share one instance');
    });

    it('rejects the message at end of data when the END-OF-MESSAGE answer is REJECT, delivering nothing', async () => {
      const staged = await relayWith({ server: tiny.address, stages: ['rcpt', 'end-of-message'] });
      answer = (req) => (req.get('protocol_state') === 'END-OF-MESSAGE' ? { action: 'REJECT 5.7.0 content refused' } : { action: 'DUNNO' });
      const before = sink.messages.length;
      const c = await open(staged);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      assert.equal(await data(c), '554 5.7.0 <END-OF-MESSAGE>: End-of-data rejected: content refused');
      c.close();
      await pause(300);
      assert.equal(sink.messages.length, before);
    });

    it('keeps connections open across sessions (one connection for 10 sessions)', async () => {
      const pooled = await relayWith({ server: tiny.address });
      const conns = tiny.connections;
      for (let i = 0; i < 10; i++) {
        const c = await open(pooled);
        assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
        c.close();
      }
      assert.equal(tiny.connections - conns, 1);
    });

    it('reuses a cached answer only when a cache is configured', async () => {
      const cached = await relayWith({ server: tiny.address, cache: { ttl: '1m' } });
      answer = () => ({ action: 'REJECT cached' });
      const seen = tiny.requests.length;
      for (let i = 0; i < 3; i++) {
        const c = await open(cached);
        assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '554 5.7.1 <bob@example.com>: Recipient address rejected: cached');
        c.close();
      }
      assert.equal(tiny.requests.length - seen, 1, 'one request for three identical questions');
      const plain = tiny.requests.length;
      for (let i = 0; i < 2; i++) {
        const c = await open(relay);
        await c.cmd('RCPT TO:<bob@example.com>');
        c.close();
      }
      assert.equal(tiny.requests.length - plain, 2, 'without a cache, every question is asked');
    });

    it('writes replies without the Postfix prefix with replyText: plain, and uses rejectCode / deferCode', async () => {
      const plain = await relayWith({ server: tiny.address, replyText: 'plain', rejectCode: 550, deferCode: 451 });
      const c = await open(plain);
      answer = () => ({ action: 'REJECT nope' });
      assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '550 5.7.1 nope');
      answer = () => ({ action: 'DEFER later' });
      assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '451 4.7.1 later');
      c.close();
    });
  });

  describe('over a unix socket', () => {
    let dir: string;
    let tiny: TinyPolicyServer;
    before(async () => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-policy-'));
      tiny = await TinyPolicyServer.start(() => ({ action: 'REJECT over unix' }), { path: path.join(dir, 'policy.sock') });
    });
    after(async () => {
      await tiny?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('asks a service on unix:/path', async () => {
      const relay = await relayWith({ server: `unix:${path.join(dir, 'policy.sock')}` });
      const c = await open(relay);
      assert.equal(await c.cmd('RCPT TO:<bob@example.com>'), '554 5.7.1 <bob@example.com>: Recipient address rejected: over unix');
      c.close();
    });
  });

  describe('with Debian policyd-spf (spawned per connection, as Postfix spawn(8) runs it)', () => {
    let spf: Awaited<ReturnType<typeof startSpawnedPolicyd>>;
    before(async () => {
      spf = await startSpawnedPolicyd('/usr/bin/policyd-spf');
    });
    after(() => spf?.close());

    it("adds its PREPEND for a loopback client (its default skip_addresses: no DNS needed) and the message is delivered with it", async () => {
      const relay = await relayWith({ server: spf.address, timeout: '10s' });
      const before = sink.messages.length;
      const c = await open(relay);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      assert.match(await data(c), /^250 2\.0\.0 /);
      c.close();
      const msgs = await sink.waitFor(before + 1);
      const top = added(msgs[before]!.raw);
      assert.ok(top.endsWith('\r\nX-Comment: SPF check N/A for local connections - client-ip=127.0.0.9; helo=client.test; envelope-from=alice@remote.test; receiver=example.com \r\n'), JSON.stringify(top));
    });
  });
});
