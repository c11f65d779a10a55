import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { hostedRelay, sendMail, type CapturedMessage, type CaptureServer, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import attachments from '../src/index.js';
import { buildCorpus, type Case } from './corpus.js';
import { b64, uuencode } from './fixtures.js';

const INBOUND_CLIENT = '127.0.0.1';
const OUTBOUND_CLIENT = '127.0.0.2';

/** The captured message whose Subject carries this case's id. */
async function arrival(sink: CaptureServer, id: string, timeoutMs = 10_000): Promise<CapturedMessage> {
  const deadline = Date.now() + timeoutMs;
  const tag = `Subject: [${id}]`;
  for (;;) {
    const m = sink.messages.find((x) => x.raw.includes(tag));
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`case ${id} did not reach the next hop within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('attachment screening corpus, end to end over SMTP', function () {
  this.timeout(60_000);
  let sink: CaptureServer;
  let relay: HostedRelay;
  let quarantineDir: string;
  let cases: Case[];

  before(async () => {
    cases = await buildCorpus();
    quarantineDir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-quarantine-'));
    relay = await hostedRelay({
      builtins: { 'relay-policy': relayPolicy, attachments },
      domain: 'example.com',
      policy: { trustedNetworks: [`${OUTBOUND_CLIENT}/32`] },
      config: { limits: { messageSize: '40MB' } },
      plugins: [
        {
          use: 'attachments',
          with: {
            trustedNetworks: [`${OUTBOUND_CLIENT}/32`],
            quarantine: { dir: quarantineDir },
            archives: { maxEntries: 50, maxTotalSize: '10MB', maxDepth: 3 },
            rules: [
              { name: 'strip-scripts', direction: 'inbound', action: 'strip', extensions: ['bat', 'vbs'], types: [], checks: ['extension', 'double-extension'] },
              { name: 'quarantine-screensavers', direction: 'inbound', action: 'quarantine', extensions: ['scr'], types: [], checks: ['extension'] },
              { name: 'inbound-default', direction: 'inbound', action: 'block' },
              { name: 'outbound-default', direction: 'outbound', action: 'strip' },
            ],
          },
        },
      ],
    });
    sink = relay.sink;
  });
  after(async () => {
    await relay?.close();
    if (quarantineDir) rmSync(quarantineDir, { recursive: true, force: true });
  });

  it('has at least 30 cases covering blocks, strips, quarantine and clean controls', () => {
    assert.ok(cases.length >= 30, `only ${cases.length} cases`);
    for (const kind of ['block', 'strip', 'clean'] as const) assert.ok(cases.some((c) => c.expect.kind === kind), kind);
    assert.equal(new Set(cases.map((c) => c.id)).size, cases.length, 'case ids are unique');
  });

  // One `it` per case, generated once the corpus is built (mocha reads `it`s at load time, so the
  // corpus is built synchronously-enough here: its titles come from a static list below).
  const ids = [
    'n01', 'n02', 'n03', 'n04', 'n05', 'n06', 'n07', 'n08', 'n09', 'n10', 'n11', 'n12', 'n13', 'n14',
    't01', 't02', 't03', 'c01', 'c02', 'c03', 'c04', 'c05', 'c06', 'c07', 'c08',
    'a01', 'a02', 'a03', 'a04', 'a05', 'a06', 'a07', 'a08', 'a09', 'a10',
    'm01', 'm02', 'm03', 'm04', 'm05', 'u01', 'u02', 's01', 's02', 'q01', 'o01', 'o02', 'o03', 'o04',
    'k01', 'k02', 'k03', 'k04', 'k05', 'k06', 'k07', 'k08', 'k09', 'k10', 'k11', 'k12', 'k13',
  ];
  it('lists every corpus case below', () => {
    assert.deepEqual(cases.map((c) => c.id).sort(), [...ids].sort());
  });

  for (const id of ids) {
    it(`case ${id}`, async function () {
      const c = cases.find((x) => x.id === id)!;
      this.test!.title = `case ${id}: ${c.title} → ${c.expect.kind}`;
      const r = await sendMail({ port: relay.port, localAddress: c.from === 'inbound' ? INBOUND_CLIENT : OUTBOUND_CLIENT, from: 'sender@remote.test', to: 'bob@example.com', raw: c.raw });
      const e = c.expect;
      if (e.kind === 'block') {
        assert.equal(r.ok, false, `expected a rejection, got ${r.response}`);
        assert.match(r.response, /^550 5\.7\.1 Message refused: /);
        assert.match(r.response, e.reason);
        return;
      }
      assert.equal(r.ok, true, r.response);
      assert.match(r.response, /^250 2\.0\.0 /);
      const got = await arrival(sink, id);
      const received = got.raw.toString('latin1');
      if (e.kind === 'clean') {
        assert.ok(received.endsWith(c.raw), 'the message arrives byte for byte as sent (after our Received header)');
        assert.match(received, /^Received: /);
        return;
      }
      // Stripped: valid MIME, with the notice, without the payload, other parts byte-identical.
      assert.ok(!received.endsWith(c.raw), 'the message was rewritten');
      const parsed = await simpleParser(got.raw);
      assert.equal(parsed.subject?.startsWith(`[${id}]`), true);
      const texts = [parsed.text ?? '', ...parsed.attachments.filter((a) => a.contentType === 'text/plain').map((a) => a.content.toString('utf8'))].join('\n');
      for (const name of e.removed) {
        assert.ok(texts.includes('An attachment was removed from this message by the mail relay.'), 'notice present');
        assert.ok(texts.includes(`File: "${name}"`), `notice names ${name}`);
        assert.ok(!parsed.attachments.some((a) => a.filename === name), `${name} is gone`);
      }
      for (const payload of e.payloads) {
        const firstLine = b64(payload).split('\r\n')[0]!;
        assert.ok(!received.includes(firstLine), 'encoded payload bytes absent');
        assert.ok(!got.raw.includes(payload.subarray(0, 48)), 'raw payload bytes absent');
        for (const a of parsed.attachments) assert.ok(!a.content.includes(payload.subarray(0, 48)), 'no part holds the payload');
      }
      for (const k of e.kept ?? []) {
        const a = parsed.attachments.find((x) => x.filename === k.filename);
        assert.ok(a, `${k.filename} kept`);
        assert.ok(a.content.equals(k.data), `${k.filename} byte-identical`);
        const encoded = b64(k.data);
        assert.ok(received.includes(encoded), `${k.filename} encoded bytes unchanged`);
      }
      if (e.quarantine) {
        const files = readdirSync(quarantineDir);
        const sidecar = files.find((n) => n.endsWith('.json') && readFileSync(path.join(quarantineDir, n), 'utf8').includes('screensaver.scr'));
        assert.ok(sidecar, 'quarantine sidecar written');
        const meta = JSON.parse(readFileSync(path.join(quarantineDir, sidecar), 'utf8'));
        assert.equal(meta.filename, 'screensaver.scr');
        assert.equal(meta.sender, 'sender@remote.test');
        assert.deepEqual(meta.recipients, ['bob@example.com']);
        assert.match(meta.messageId, /^<case\d+\.[0-9a-f]+@remote\.test>$/);
        assert.match(meta.reason, /forbidden extension \.scr/);
        assert.equal(meta.truncated, false);
        const copy = readFileSync(path.join(quarantineDir, sidecar.replace(/\.json$/, '.bin')));
        assert.ok(copy.equals(e.payloads[0]!), 'the quarantined copy is the decoded part');
        assert.ok(texts.includes(`reference ${meta.id}`), 'the notice gives the quarantine reference');
      }
    });
  }

  it('records the Message-ID of a plain text message quarantined for a uuencoded file (read without a MIME parse)', async () => {
    const raw = [
      'From: sender@remote.test',
      'To: bob@example.com',
      'Subject: [q02] uuencoded screensaver',
      'Message-ID:',
      ' <q02.folded@remote.test>',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=us-ascii',
      '',
      `See below.\r\n${uuencode('nightly.scr', Buffer.from('not really a screensaver\n'.repeat(20)))}`,
      '',
    ].join('\r\n');
    const r = await sendMail({ port: relay.port, localAddress: INBOUND_CLIENT, from: 'sender@remote.test', to: 'bob@example.com', raw });
    assert.equal(r.ok, true, r.response);
    await arrival(sink, 'q02');
    const sidecar = readdirSync(quarantineDir).filter((n) => n.endsWith('.json')).map((n) => JSON.parse(readFileSync(path.join(quarantineDir, n), 'utf8'))).find((m) => m.reason?.includes('nightly.scr'));
    assert.ok(sidecar, 'quarantine sidecar written');
    assert.equal(sidecar.messageId, '<q02.folded@remote.test>');
  });
});

describe('attachment screening without the raw pass (closedMessages: false)', function () {
  this.timeout(60_000);
  let relay: HostedRelay;
  let quarantineDir: string;

  before(async () => {
    quarantineDir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-quarantine-'));
    relay = await hostedRelay({
      builtins: { 'relay-policy': relayPolicy, attachments },
      domain: 'example.com',
      plugins: [{ use: 'attachments', with: { closedMessages: false, quarantine: { dir: quarantineDir }, rules: [{ direction: 'any', action: 'quarantine', extensions: ['scr'], types: [], checks: ['extension'] }] } }],
    });
  });
  after(async () => {
    await relay?.close();
    rmSync(quarantineDir, { recursive: true, force: true });
  });

  it('still records the Message-ID of a quarantined part, from the core\'s parse of the top header', async () => {
    const raw = [
      'From: sender@remote.test',
      'To: bob@example.com',
      'Subject: [q03] screensaver',
      'Message-ID: <q03.noraw@remote.test>',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b"',
      '',
      '--b',
      'Content-Type: text/plain',
      '',
      'See attached.',
      '--b',
      'Content-Type: application/octet-stream',
      'Content-Disposition: attachment; filename="nightly.scr"',
      'Content-Transfer-Encoding: base64',
      '',
      b64(Buffer.from('not really a screensaver\n'.repeat(20))),
      '--b--',
      '',
    ].join('\r\n');
    const r = await sendMail({ port: relay.port, localAddress: INBOUND_CLIENT, from: 'sender@remote.test', to: 'bob@example.com', raw });
    assert.equal(r.ok, true, r.response);
    const got = await arrival(relay.sink, 'q03');
    assert.match(got.raw.toString('latin1'), /An attachment was removed from this message by the mail relay\./);
    const sidecar = readdirSync(quarantineDir).filter((n) => n.endsWith('.json')).map((n) => JSON.parse(readFileSync(path.join(quarantineDir, n), 'utf8'))).find((m) => m.filename === 'nightly.scr');
    assert.ok(sidecar, 'quarantine sidecar written');
    assert.equal(sidecar.messageId, '<q03.noraw@remote.test>');
  });
});
