import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { accept, definePlugin } from '@portcullis/core';
import { CaptureServer, describeScannerFailClosed, RawSmtp, selfSignedFiles, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import rspamd, { type CheckReply, type RspamdNote, type RspamdOptions } from '../src/index.js';
import { CaptureRspamd } from './support/capture-rspamd.js';
import { FORCE, freePort, OUTBOUND_SETTINGS, Rspamd } from './support/rspamd.js';

const CRLF = '\r\n';
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** rspamd's GTUBE line, assembled at run time so the source file itself is not spam to a scanner. */
const GTUBE = ['XJS*C4JDBQADN1.NSBN3*2IDNEN*', 'GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL', '*C.34X'].join('');

let seq = 0;
/** A plain message with Date and Message-ID (CRLF); `extra` header lines go before Subject. */
function message(subject: string, opts: { extra?: string[]; body?: string } = {}): string {
  seq++;
  return [
    'From: Alice <alice@remote.test>',
    'To: Bob <bob@example.com>',
    ...(opts.extra ?? []),
    `Subject: ${subject}`,
    'Date: Sun, 06 Dec 2026 12:00:00 +0000',
    `Message-ID: <m${seq}.${Date.now()}@remote.test>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    opts.body ?? 'Hello Bob,\r\n\r\nthe minutes of Tuesday\'s meeting are below.\r\n\r\nAlice',
    '',
  ].join(CRLF);
}

/**
 * The message as a milter MTA would leave it after rspamd's answer: its remove_headers (every
 * occurrence: rspamd sends 0), the Subject it gave, its add_headers appended to the header section.
 */
function asRspamdSaid(raw: string, said: CheckReply): string {
  const end = raw.indexOf('\r\n\r\n') + 2;
  let fields = raw.slice(0, end).split(/\r\n(?![ \t])/).filter(Boolean);
  const removed = new Set(said.removeHeaders.map((r) => (assert.equal(r.occurrence, 0), r.name.toLowerCase())));
  fields = fields.filter((f) => !removed.has(f.slice(0, f.indexOf(':')).toLowerCase()));
  if (said.subject !== undefined) fields = fields.map((f) => (/^subject:/i.test(f) ? `Subject: ${said.subject}` : f));
  for (const h of said.addHeaders) fields.push(`${h.name}: ${h.value}`);
  return fields.join('\r\n') + '\r\n' + raw.slice(end);
}

/** Records what rspamd answered for each transaction (the plugin's note), so tests compare against rspamd's own words. */
const answers: CheckReply[] = [];
const recorder = definePlugin({
  name: 'recorder',
  setup: () => ({
    message(txn) {
      const n = txn.notes['rspamd'] as RspamdNote | undefined;
      if (n?.result.kind === 'scanned') answers.push(n.result.reply);
      return undefined;
    },
  }),
});

describe('rspamd (real rspamd)', function () {
  this.timeout(90_000);
  let daemon: Rspamd;
  let sink: CaptureServer;
  const relays: TestRelay[] = [];

  async function relayWith(opts: RspamdOptions, extra: { trusted?: string[] } = {}): Promise<TestRelay> {
    const relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, rspamd, recorder },
      config: {
        plugins: [
          { use: 'recorder' },
          { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } }, ...(extra.trusted ? { trustedNetworks: extra.trusted } : {}) } },
          { use: 'rspamd', with: opts },
        ],
      },
    });
    relays.push(relay);
    return relay;
  }
  const send = (relay: TestRelay, raw: string, from = 'alice@remote.test') => sendMail({ port: relay.port, from, to: 'bob@example.com', raw });

  async function assertNothingDelivered(before: number): Promise<void> {
    await pause(300);
    assert.equal(sink.messages.length, before);
  }
  /** The one message delivered after `before`: what our relay put on top, and the rest. */
  async function delivered(before: number, raw?: string): Promise<{ text: string; added: string; rest: string }> {
    const text = (await sink.waitFor(before + 1))[before]!.raw.toString('latin1');
    const at = raw !== undefined && text.endsWith(raw) ? text.length - raw.length : text.indexOf('\r\nFrom: ') + 2;
    return { text, added: text.slice(0, at), rest: text.slice(at) };
  }

  before(async function () {
    this.timeout(240_000); // rspamd's start-up on a loaded machine (see support/rspamd.ts)
    daemon = await Rspamd.start();
    sink = await CaptureServer.start({ host: '127.0.0.1' });
  });
  after(async () => {
    for (const r of relays) await r.stop();
    await sink?.close();
    await daemon?.close();
  });

  describe('actions', () => {
    let relay: TestRelay;
    before(async () => {
      relay = await relayWith({ servers: [daemon.address], timeout: '10s' });
    });

    it("rejects GTUBE with 550 5.7.1 and rspamd's SMTP message, and delivers nothing", async () => {
      const before = sink.messages.length;
      const r = await send(relay, message('meeting notes', { body: `Hi,\r\n${GTUBE}\r\n` }));
      assert.equal(r.response, '550 5.7.1 Gtube pattern');
      await assertNothingDelivered(before);
    });

    it('scans a 300 KB message, sent in chunked batches while DATA is read, and honours the verdict', async () => {
      // (rspamd looks for GTUBE in small text parts only: a rule on the Subject forces the verdict here.)
      const before = sink.messages.length;
      const filler = ('The minutes of Tuesday\'s meeting, line after line of them.'.padEnd(76, '.') + '\r\n').repeat(4000);
      const r = await send(relay, message(`long minutes ${FORCE.reject}`, { body: filler }));
      assert.equal(r.response, '550 5.7.1 Go away (test)');
      await assertNothingDelivered(before);
      const clean = message('long minutes', { body: filler });
      assert.match((await send(relay, clean)).response, /^250 /);
      assert.match((await delivered(before, clean)).added, /^X-Spam-Status: No, score=/m);
    });

    it('delivers a clean message byte for byte with the score status header on top and rspamd\'s milter headers', async () => {
      const before = sink.messages.length;
      const answered = answers.length;
      const raw = message('minutes');
      const r = await send(relay, raw);
      assert.match(r.response, /^250 2\.0\.0 Ok: queued as /);
      const got = await delivered(before);
      const said = answers[answered]!;
      assert.equal(said.action, 'no action');
      assert.equal(got.rest, asRspamdSaid(raw, said), "the message as sent, with rspamd's milter headers (X-Spamd-Result) appended");
      assert.match(got.added, new RegExp(`\\r\\nX-Spam-Status: No, score=${said.score.toFixed(2).replace('.', '\\.')} required=15\\.00 action="no action"\\r\\n`));
      assert.doesNotMatch(got.text, /\r\nX-Spam: /);
    });

    it('answers a soft reject forced by the test rules with 451 4.7.1 and rspamd\'s message', async () => {
      const before = sink.messages.length;
      const r = await send(relay, message(`please ${FORCE.softReject}`));
      assert.equal(r.response, '451 4.7.1 Come back later (test)');
      await assertNothingDelivered(before);
    });

    it('answers greylist with 451 4.7.1', async () => {
      const before = sink.messages.length;
      const r = await send(relay, message(`please ${FORCE.greylist}`));
      assert.equal(r.response, '451 4.7.1 Greylisted, try again later');
      await assertNothingDelivered(before);
    });

    it("rejects with rspamd's own smtp_message when a rule gives one", async () => {
      const r = await send(relay, message(`please ${FORCE.reject}`));
      assert.equal(r.response, '550 5.7.1 Go away (test)');
    });

    it('drops score headers the client sent, so a forged "X-Spam-Status: No" never passes', async () => {
      const before = sink.messages.length;
      const answered = answers.length;
      const raw = message('forged', { extra: ['X-Spam-Status: No, score=-100', 'X-Spam: No'] });
      assert.match((await send(relay, raw)).response, /^250 /);
      const said = answers[answered]!;
      const got = await delivered(before);
      assert.equal(got.text.match(/^X-Spam-Status: /gm)?.length, 1);
      assert.doesNotMatch(got.text, /score=-100|\r\nX-Spam: No/);
      assert.equal(got.rest, asRspamdSaid(raw.replace('X-Spam-Status: No, score=-100\r\nX-Spam: No\r\n', ''), said));
    });
  });

  describe('header edits', () => {
    let relay: TestRelay;
    before(async () => {
      relay = await relayWith({ servers: [daemon.address], timeout: '10s' });
    });

    it('rewrites the Subject exactly as rspamd said and marks the message, everything else byte for byte', async () => {
      const before = sink.messages.length;
      const answered = answers.length;
      const raw = message(`quarterly figures ${FORCE.rewrite}`);
      assert.match((await send(relay, raw)).response, /^250 /);
      const said = answers[answered]!;
      assert.equal(said.action, 'rewrite subject');
      assert.equal(said.subject, `*** SPAM *** quarterly figures ${FORCE.rewrite}`);
      const got = await delivered(before);
      assert.equal(got.rest, asRspamdSaid(raw, said));
      assert.match(got.added, /\r\nX-Spam-Status: Yes, score=\d+\.\d\d required=15\.00 action="rewrite subject"\r\nX-Spam: Yes\r\n$/);
    });

    it("adds the headers rspamd asked for on add header, at the end of the header section, byte for byte", async () => {
      const before = sink.messages.length;
      const answered = answers.length;
      const raw = message(`offer ${FORCE.addHeader}`);
      assert.match((await send(relay, raw)).response, /^250 /);
      const said = answers[answered]!;
      assert.equal(said.action, 'add header');
      assert.ok(said.addHeaders.some((h) => h.name === 'X-Spamd-Result' && h.value.includes('FORCE_ACTION_FORCE_AH')), JSON.stringify(said.addHeaders));
      const got = await delivered(before);
      assert.equal(got.rest, asRspamdSaid(raw, said));
      assert.match(got.added, /\r\nX-Spam-Status: Yes, score=\d+\.\d\d required=15\.00 action="add header"\r\nX-Spam: Yes\r\n$/);
    });

    it('removes every field milter.remove_headers names, and only those', async () => {
      const before = sink.messages.length;
      const answered = answers.length;
      const raw = message('keep the rest', { extra: ['X-Remove-Me: one', 'X-Keep-Me: yes', 'X-Remove-Me: two', 'X-Spamd-Result: forged'] });
      assert.match((await send(relay, raw)).response, /^250 /);
      const said = answers[answered]!;
      assert.deepEqual(said.removeHeaders.filter((r) => r.name === 'X-Remove-Me'), [{ name: 'X-Remove-Me', occurrence: 0 }]);
      const got = await delivered(before);
      assert.doesNotMatch(got.text, /X-Remove-Me|forged/);
      assert.match(got.rest, /\r\nX-Keep-Me: yes\r\n/);
      assert.equal(got.rest, asRspamdSaid(raw, said));
    });

    it('applies no milter edits when milterHeaders is false, only the status header', async () => {
      const r2 = await relayWith({ servers: [daemon.address], milterHeaders: false });
      const before = sink.messages.length;
      const raw = message(`x ${FORCE.addHeader}`, { extra: ['X-Remove-Me: stays'] });
      assert.match((await send(r2, raw)).response, /^250 /);
      const got = await delivered(before, raw);
      assert.ok(got.text.endsWith(raw), 'the message itself is unchanged');
      assert.match(got.added, /\r\nX-Spam-Status: Yes, [^\r]*action="add header"\r\nX-Spam: Yes\r\n$/);
    });
  });

  describe('failing closed', () => {
    // Timeout, onError reject and onError accept: the cases every scanner plugin owes (the test kit's).
    describeScannerFailClosed({
      backend: 'rspamd',
      relayWith,
      send: (relay, raw) => send(relay, raw),
      sink: () => sink,
      message: (tag) => message(tag),
      replies: { timedOut: '451 4.7.0 Message not scanned (spam scanner timed out), try again later', unreachableReject: '554 5.7.0 Message refused: spam scanner unreachable' },
      unscannedHeader: /\r\nX-Spam-Status: unscanned \(spam scanner unreachable\)\r\n$/,
      // The real rspamd cannot be made to hang on demand: this one fault comes from a test server that answers late.
      hangingBackend: async () => {
        const slow = await CaptureRspamd.start();
        slow.delayMs = 5_000;
        return { address: slow.address, close: () => slow.close() };
      },
      maxMs: 4_500,
    });
    it('gives 451 4.7.0 while rspamd is stopped, delivers nothing, and scans again once rspamd is back', async function () {
      this.timeout(240_000); // includes a restart of rspamd
      const relay = await relayWith({ servers: [daemon.address], timeout: '10s' });
      const before = sink.messages.length;
      await daemon.stop();
      try {
        const r = await send(relay, message('while down'));
        assert.equal(r.response, '451 4.7.0 Message not scanned (spam scanner unreachable), try again later');
        await assertNothingDelivered(before);
      } finally {
        await daemon.restart();
      }
      assert.match((await send(relay, message('after restart'))).response, /^250 /);
      await sink.waitFor(before + 1);
      assert.equal((await send(relay, message('gtube', { body: GTUBE }))).response, '550 5.7.1 Gtube pattern');
    });
  });

  describe('answers the real rspamd never gives', () => {
    // A test server stands in for rspamd: these answers cannot be had from the real daemon on demand.
    let cap: CaptureRspamd;
    let relay: TestRelay;
    before(async () => {
      cap = await CaptureRspamd.start();
      relay = await relayWith({ servers: [cap.address] });
    });
    after(() => cap.close());

    it('turns an smtp_message with line breaks and 8-bit text into one printable reply line', async () => {
      cap.reply = { action: 'reject', score: 20, required_score: 15, messages: { smtp_message: 'Spam\r\n250 ok\r\nbücher \u0000 end' } };
      assert.equal((await send(relay, message('hostile text'))).response, '550 5.7.1 Spam 250 ok b?cher ? end');
    });

    it('gives 451 4.7.0 for an answer that is not JSON, and for an action it does not know', async () => {
      cap.reply = '{"action": "reject", ';
      assert.equal((await send(relay, message('bad json'))).response, '451 4.7.0 Message not scanned (spam scanner error), try again later');
      cap.reply = { action: 'explode', score: 1, required_score: 15 };
      assert.equal((await send(relay, message('unknown action'))).response, '451 4.7.0 Message not scanned (spam scanner error), try again later');
    });

    it('never lets a milter header smuggle a field: bad names are left out, a line break not followed by white space becomes a space', async () => {
      const before = sink.messages.length;
      cap.reply = { action: 'add header', score: 7, required_score: 15, milter: { add_headers: { 'Bad Name': 'x', 'X-Ok': { value: 'a\r\nBcc: victim@example.com', order: -1 }, 'X-Two': [{ value: '1' }, '2'] } } };
      const raw = message('smuggle');
      assert.match((await send(relay, raw)).response, /^250 /);
      const got = await delivered(before);
      const head = got.rest.slice(0, got.rest.indexOf('\r\n\r\n') + 2);
      assert.doesNotMatch(head, /Bad Name/);
      assert.match(head, /\r\nX-Ok: a  Bcc: victim@example\.com\r\nX-Two: 1\r\nX-Two: 2\r\n$/);
      assert.doesNotMatch(head, /\r\nBcc:/);
    });
  });

  describe('size cap', () => {
    const big = () => message('big', { body: ('x'.repeat(76) + CRLF).repeat(2_000) });
    it('delivers a message above maxSize unscored and tagged by default (onOversize: accept)', async () => {
      const relay = await relayWith({ servers: [daemon.address], maxSize: '100KB' });
      const before = sink.messages.length;
      const raw = big();
      assert.match((await send(relay, raw)).response, /^250 /);
      const got = await delivered(before, raw);
      assert.match(got.added, /\r\nX-Spam-Status: unscanned \(too large\)\r\n$/);
    });
    it('rejects a message above maxSize with 552 5.3.4 when onOversize is reject, and tempfails it with tempfail', async () => {
      const rej = await relayWith({ servers: [daemon.address], maxSize: '100KB', onOversize: 'reject' });
      assert.equal((await send(rej, big())).response, '552 5.3.4 Message too large for spam scanning (limit 102400 bytes)');
      const temp = await relayWith({ servers: [daemon.address], maxSize: '100KB', onOversize: 'tempfail' });
      assert.equal((await send(temp, big())).response, '452 4.3.4 Message too large for spam scanning (limit 102400 bytes), try again later');
    });
  });

  describe('directions', () => {
    it("sends trusted clients' mail with the outbound Settings-ID, and rspamd applies those settings", async () => {
      const relay = await relayWith({ servers: [daemon.address], outbound: { settingsId: OUTBOUND_SETTINGS } }, { trusted: ['127.0.0.0/8'] });
      const before = sink.messages.length;
      const raw = message('outbound');
      assert.match((await send(relay, raw)).response, /^250 /);
      const got = await delivered(before, raw);
      // The outbound settings move "add header" to 0.1 and reject to 1000: rspamd said so.
      assert.match(got.added, /\r\nX-Spam-Status: Yes, score=\d+\.\d\d required=1000\.00 action="add header"\r\n/);
      assert.match(got.added, /\r\nX-Spam: Yes\r\n/);
    });

    it('skips outbound mail when outbound.scan is false and says so, while inbound mail is still scanned', async () => {
      const relay = await relayWith({ servers: [daemon.address], outbound: { scan: false } }, { trusted: ['127.0.0.2/32'] });
      const before = sink.messages.length;
      const raw = message('skip me', { body: GTUBE });
      const r = await sendMail({ port: relay.port, localAddress: '127.0.0.2', from: 'alice@example.com', to: 'bob@example.com', raw });
      assert.match(r.response, /^250 /);
      const got = await delivered(before, raw);
      assert.match(got.added, /\r\nX-Spam-Status: unscanned \(outbound not scanned\)\r\n$/);
      assert.equal((await send(relay, raw)).response, '550 5.7.1 Gtube pattern', 'an anonymous client is scanned');
    });
  });

  describe('connections', () => {
    it('scans over the unix socket', async () => {
      const relay = await relayWith({ servers: [daemon.socketPath] });
      assert.equal((await send(relay, message('gtube', { body: GTUBE }))).response, '550 5.7.1 Gtube pattern');
      assert.match((await send(relay, message('via socket'))).response, /^250 /);
    });

    it('fails over to the next rspamd when the first refuses the connection', async () => {
      const relay = await relayWith({ servers: [`127.0.0.1:${await freePort()}`, `unix:${daemon.dir}/missing.sock`, daemon.address] });
      assert.equal((await send(relay, message('gtube', { body: GTUBE }))).response, '550 5.7.1 Gtube pattern');
      assert.match((await send(relay, message('failover'))).response, /^250 /);
    });

    it('is ready while rspamd answers /ping, not ready while it is stopped; the metrics count actions and scores', async function () {
      this.timeout(240_000); // includes a restart of rspamd
      const relay = await relayWith({ servers: [daemon.address] });
      const check = async () => (await relay.relay.readiness()).checks.find((c) => c.name === 'plugin:rspamd')!;
      const up = await check();
      assert.deepEqual([up.ready, up.detail], [true, `rspamd ${daemon.address} answers`]);
      await send(relay, message('gtube', { body: GTUBE }));
      await send(relay, message('counted'));
      const metric = async (name: string) => (await relay.relay.metrics.registry.getSingleMetric(name)!.get()).values;
      const acts = await metric('portcullis_rspamd_actions_total');
      const count = (action: string) => acts.find((v) => v.labels['action'] === action && v.labels['direction'] === 'inbound')!.value;
      assert.equal(count('reject'), 1);
      assert.equal(count('no action'), 1);
      const hist = await metric('portcullis_rspamd_score');
      assert.equal(hist.find((v) => v.metricName === 'portcullis_rspamd_score_count')!.value, 2);
      await daemon.stop();
      try {
        const down = await check();
        assert.equal(down.ready, false);
        assert.match(down.detail!, /^no rspamd answers: 127\.0\.0\.1:\d+: connect ECONNREFUSED/);
      } finally {
        await daemon.restart();
      }
    });
  });

  describe('envelope values', () => {
    it('sends long envelope values cut at maxHeaderBytes, one Rcpt per recipient, never crashing', async () => {
      // A capturing HTTP server, not rspamd: the test must see the exact header bytes that arrived.
      // (smtp-server refuses control characters in HELO, addresses and AUTH names, and the relay 8-bit addresses
      // without SMTPUTF8: the AUTH test below sends 8-bit bytes in User; header-values.test.ts sends control characters.)
      const cap = await CaptureRspamd.start();
      try {
        const relay = await relayWith({ servers: [cap.address], maxHeaderBytes: 200 });
        const before = sink.messages.length;
        const c = await RawSmtp.connect(relay.port);
        await c.read();
        const helo = Array.from({ length: 4 }, (_, i) => `label${i}`.padEnd(60, 'x')).join('.');
        assert.match(await c.cmd(`EHLO ${helo}`), /^250/);
        const address = `long-${'l'.repeat(50)}@${'d'.repeat(60)}.${'e'.repeat(60)}.${'f'.repeat(60)}.test`;
        c.write(Buffer.from(`MAIL FROM:<${address}>\r\n`, 'utf8'));
        assert.match(await c.read(), /^250/);
        assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250/);
        assert.match(await c.cmd('RCPT TO:<carol@example.com>'), /^250/);
        assert.match(await c.cmd('DATA'), /^354/);
        c.write(message('envelope') + '.\r\n');
        assert.match(await c.read(), /^250 /);
        await c.cmd('QUIT');
        await sink.waitFor(before + 1);
        const req = cap.requests.find((q) => q.url === '/checkv2')!;
        const all = (n: string) => req.headers.filter(([k]) => k.toLowerCase() === n.toLowerCase()).map(([, v]) => v);
        assert.deepEqual(all('Helo').map((b) => b.toString('latin1')), [helo.slice(0, 200)]);
        const from = all('From')[0]!;
        assert.ok(from.equals(Buffer.from(address, 'utf8').subarray(0, 200)), `From cut to 200 bytes: ${from.toString('utf8')}`);
        assert.deepEqual(all('Rcpt').map(String), ['bob@example.com', 'carol@example.com']);
        assert.deepEqual(all('IP').map(String), ['127.0.0.1']);
        assert.equal(all('Queue-Id').length, 1);
        assert.deepEqual(all('MTA-Name').map(String), ['relay.test']);
        assert.deepEqual(all('User'), [], 'no User for an anonymous client');
        assert.ok(req.body.toString('latin1').startsWith('From: Alice'), 'the body is the message as received');
      } finally {
        await cap.close();
      }
    });

    it('sends a message up to 64 KiB in one request with Content-Length, a larger one chunked, both byte for byte as received', async () => {
      // The capturing server sees the framing rspamd gets (the real rspamd takes both: the GTUBE tests).
      const cap = await CaptureRspamd.start();
      try {
        const relay = await relayWith({ servers: [cap.address] });
        const small = message('small', { body: 'x'.repeat(60_000) + '\r\n' });
        const large = message('large', { body: ('y'.repeat(998) + '\r\n').repeat(150) });
        for (const raw of [small, large]) assert.match((await send(relay, raw)).response, /^250 /);
        const [s, l] = cap.requests.filter((q) => q.url === '/checkv2');
        const header = (q: typeof s, n: string) => q!.headers.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v.toString());
        assert.deepEqual(header(s, 'content-length'), [String(Buffer.byteLength(small))]);
        assert.deepEqual(header(s, 'transfer-encoding'), []);
        assert.equal(s!.body.toString('latin1'), small);
        assert.deepEqual(header(l, 'transfer-encoding'), ['chunked']);
        assert.deepEqual(header(l, 'content-length'), []);
        assert.equal(l!.body.toString('latin1'), large);
      } finally {
        await cap.close();
      }
    });

    const USER = 'alicé';
    it('sends User (8-bit as UTF-8) and the TLS version and cipher for an authenticated client over STARTTLS', async () => {
      const cap = await CaptureRspamd.start();
      const tls = await selfSignedFiles('relay.test');
      try {
        const users = definePlugin({ name: 'users', setup: () => ({ auth: (_s, a) => (a.username === USER && a.password === 'secret' ? accept() : undefined) }) });
        const relay = await startTestRelay({
          builtins: { 'relay-policy': relayPolicy, rspamd, users },
          config: {
            tls: { key: tls.key, cert: tls.cert },
            listen: [{ host: '127.0.0.1', port: 0, tls: 'starttls', auth: 'optional', greetingDelay: 0 }],
            plugins: [
              { use: 'users' },
              { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } } } },
              { use: 'rspamd', with: { servers: [cap.address], outbound: { settingsId: 'out-1', mtaTag: 'submission' }, inbound: { settingsId: 'in-1' } } },
            ],
          },
        });
        relays.push(relay);
        const r = await sendMail({ port: relay.port, from: 'alice@remote.test', to: 'bob@example.com', raw: message('authed'), auth: { user: USER, pass: 'secret' } });
        assert.match(r.response, /^250 /);
        const req = cap.requests.find((q) => q.url === '/checkv2')!;
        const one = (n: string) => req.headers.find(([k]) => k.toLowerCase() === n.toLowerCase())?.[1].toString();
        assert.ok(req.headers.find(([k]) => k === 'User')![1].equals(Buffer.from(USER, 'utf8')), `UTF-8 kept: ${JSON.stringify(req.headers)}`);
        assert.equal(one('Settings-ID'), 'out-1');
        assert.equal(one('MTA-Tag'), 'submission');
        assert.match(one('TLS-Version') ?? '', /^TLSv1\.[23]$/);
        assert.match(one('TLS-Cipher') ?? '', /^TLS_|^ECDHE/);
      } finally {
        await cap.close();
        rmSync(tls.dir, { recursive: true, force: true });
      }
    });
  });
});
