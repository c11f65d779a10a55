import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { accept, definePlugin } from '@portcullis/core';
import { CaptureServer, describeScannerFailClosed, selfSignedFiles, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import clamav, { type ClamavOptions } from '../src/index.js';
import { Clamd, eicar as eicarLine, freePort } from './support/clamd.js';
import { cleanMessage, eicarBase64, eicarInAttachedMessage, eicarQuotedPrintable, eicarZip } from './support/messages.js';

const INFECTED = /^554 5\.7\.1 Message rejected: virus found \(Eicar-Test-Signature(\.UNOFFICIAL)?\)$/;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('clamav (real clamd)', function () {
  this.timeout(30_000);
  let clamd: Clamd;
  let sink: CaptureServer;
  const relays: TestRelay[] = [];

  async function relayWith(opts: ClamavOptions): Promise<TestRelay> {
    const relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, clamav },
      config: {
        plugins: [
          { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } } } },
          { use: 'clamav', with: opts },
        ],
      },
    });
    relays.push(relay);
    return relay;
  }
  const send = (relay: TestRelay, raw: string) => sendMail({ port: relay.port, from: 'alice@remote.test', to: 'bob@example.com', raw });

  /** Nothing new reached the next hop (delivery is asynchronous: give it time to show up if it were queued). */
  async function assertNothingDelivered(before: number): Promise<void> {
    await pause(300);
    assert.equal(sink.messages.length, before);
  }

  before(async () => {
    clamd = await Clamd.start({ streamMaxLength: '1M' });
    sink = await CaptureServer.start({ host: '127.0.0.1' });
  });
  after(async () => {
    for (const r of relays) await r.stop();
    await sink?.close();
    await clamd?.close();
  });

  describe('detection over SMTP (TCP)', () => {
    let relay: TestRelay;
    before(async () => {
      relay = await relayWith({ servers: [clamd.address], timeout: '5s' });
    });

    const cases: Array<[string, () => string | Promise<string>]> = [
      ['as a base64 attachment', eicarBase64],
      ['as quoted-printable with soft line breaks', eicarQuotedPrintable],
      ['inside a zip', () => eicarZip(1)],
      ['inside a zip inside a zip', () => eicarZip(2)],
      ['inside an attached message', eicarInAttachedMessage],
    ];
    for (const [what, build] of cases) {
      it(`rejects EICAR ${what} with 554 5.7.1 naming the virus, and delivers nothing`, async () => {
        const before = sink.messages.length;
        const r = await send(relay, await build());
        assert.equal(r.ok, false);
        assert.match(r.response, INFECTED);
        await assertNothingDelivered(before);
      });
    }

    it('delivers a clean message unchanged, with X-Portcullis-Virus: clean on top', async () => {
      const before = sink.messages.length;
      const raw = cleanMessage('clean one', 20_000);
      const r = await send(relay, raw);
      assert.match(r.response, /^250 2\.0\.0 Ok: queued as /);
      const msgs = await sink.waitFor(before + 1);
      const got = msgs[before]!.raw;
      assert.ok(got.subarray(got.length - raw.length).equals(Buffer.from(raw)), 'the received bytes end with exactly the sent bytes');
      const added = got.subarray(0, got.length - raw.length).toString();
      assert.match(added, /^Received: /);
      assert.match(added, /\r\nX-Portcullis-Virus: clean\r\n$/);
    });
  });

  describe('failing closed', () => {
    // Timeout, onError reject and onError accept: the cases every scanner plugin owes (the test kit's).
    describeScannerFailClosed({
      backend: 'clamd',
      relayWith,
      send,
      sink: () => sink,
      message: (tag) => cleanMessage(tag),
      replies: { timedOut: '451 4.7.0 Message not scanned (virus scanner timed out), try again later', unreachableReject: '554 5.7.0 Message refused: virus scanner unreachable' },
      unscannedHeader: /\r\nX-Portcullis-Virus: unscanned \(virus scanner unreachable\)\r\n$/,
      maxMs: 5_000,
    });
    it('gives 451 while clamd is stopped, delivers nothing, and accepts again once clamd is back', async () => {
      const relay = await relayWith({ servers: [clamd.address], timeout: '5s' });
      const before = sink.messages.length;
      await clamd.stop();
      try {
        const r = await send(relay, cleanMessage('while down'));
        assert.equal(r.ok, false);
        assert.equal(r.response, '451 4.7.0 Message not scanned (virus scanner unreachable), try again later');
        await assertNothingDelivered(before);
      } finally {
        await clamd.restart();
      }
      const raw = cleanMessage('after restart');
      const r2 = await send(relay, raw);
      assert.match(r2.response, /^250 2\.0\.0 /);
      const msgs = await sink.waitFor(before + 1);
      assert.ok(msgs[before]!.raw.toString().endsWith(raw));
      const r3 = await send(relay, eicarBase64());
      assert.match(r3.response, INFECTED);
    });

    it("gives 451 when the message is over clamd's StreamMaxLength", async () => {
      const relay = await relayWith({ servers: [clamd.address], timeout: '5s' });
      const before = sink.messages.length;
      const r = await send(relay, cleanMessage('big', 1_500_000));
      // clamd answers "INSTREAM size limit exceeded" and closes; when our next write reaches it first, the
      // kernel's reset can swallow that answer and only EPIPE is left: either way a 451, never a 250.
      assert.match(r.response, /^451 4\.7\.0 Message not scanned \((message over the virus scanner stream limit|virus scanner error)\), try again later$/);
      await assertNothingDelivered(before);
    });

    it('rejects a message above maxSize with 552 5.3.4 by default (never skipped silently)', async () => {
      const relay = await relayWith({ servers: [clamd.address], maxSize: '50KB' });
      const before = sink.messages.length;
      const r = await send(relay, cleanMessage('too big', 100_000));
      assert.equal(r.response, '552 5.3.4 Message too large for virus scanning (limit 51200 bytes)');
      await assertNothingDelivered(before);
    });

    it('tempfails a message above maxSize when onOversize is tempfail', async () => {
      const relay = await relayWith({ servers: [clamd.address], maxSize: '50KB', onOversize: 'tempfail' });
      const r = await send(relay, cleanMessage('too big', 100_000));
      assert.equal(r.response, '451 4.7.0 Message not scanned (too large to scan), try again later');
    });
  });

  describe('action: quarantine and strip', () => {
    it('quarantines an infected message byte for byte, rejects it, and keeps nothing of clean ones', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'clamav-quarantine-'));
      try {
        const relay = await relayWith({ servers: [clamd.address], action: 'quarantine', quarantineDir: dir });
        const before = sink.messages.length;
        const raw = eicarBase64();
        const r = await send(relay, raw);
        const m = /^554 5\.7\.1 Message rejected: virus found \(Eicar-Test-Signature(?:\.UNOFFICIAL)?\); quarantined as ([0-9A-Za-z]+)$/.exec(r.response);
        assert.ok(m, r.response);
        assert.equal(readFileSync(path.join(dir, `${m[1]}.eml`), 'latin1'), raw);
        const meta = JSON.parse(readFileSync(path.join(dir, `${m[1]}.json`), 'utf8')) as { recipients: string[]; viruses: string[] };
        assert.deepEqual(meta.recipients, ['bob@example.com']);
        assert.match(meta.viruses[0]!, /^Eicar-Test-Signature/);
        assert.match((await send(relay, cleanMessage('clean, not kept'))).response, /^250 /);
        await sink.waitFor(before + 1);
        assert.deepEqual(readdirSync(dir).sort(), [`${m[1]}.eml`, `${m[1]}.json`]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('strips the infected attachment, delivers the rest with a notice, and says so in the header', async () => {
      const relay = await relayWith({ servers: [clamd.address], action: 'strip' });
      const before = sink.messages.length;
      const r = await send(relay, eicarBase64());
      assert.match(r.response, /^250 2\.0\.0 /);
      const got = (await sink.waitFor(before + 1))[before]!.raw.toString('latin1');
      assert.match(got, /\r\nX-Portcullis-Virus: stripped \(Eicar-Test-Signature(\.UNOFFICIAL)?\)\r\n/);
      assert.match(got, /See the attachment\./);
      assert.match(got.replace(/=\r\n/g, ''), /The attachment "eicar\.com" was removed: virus found \(Eicar-Test-Signature/);
      assert.ok(!got.includes(Buffer.from(eicarLine()).toString('base64').slice(0, 40)), 'the virus is gone');
    });

    it('strips EICAR inside a zip inside a zip', async () => {
      const relay = await relayWith({ servers: [clamd.address], action: 'strip' });
      const before = sink.messages.length;
      assert.match((await send(relay, await eicarZip(2))).response, /^250 /);
      const got = (await sink.waitFor(before + 1))[before]!.raw.toString('latin1');
      assert.match(got, /X-Portcullis-Virus: stripped \(Eicar-Test-Signature/);
      assert.match(got.replace(/=\r\n/g, ''), /The attachment "files\.zip" was removed/);
    });

    it('still rejects with 554 5.7.1 when the virus is in no part that could be removed', async () => {
      const relay = await relayWith({ servers: [clamd.address], action: 'strip' });
      const before = sink.messages.length;
      // In a header, outside every part: the whole-message scan finds it, no part scan does.
      const inHeader = ['From: a@remote.test', 'To: bob@example.com', `X-Payload: ${eicarLine()}`, 'Subject: header', '', 'hello', ''].join('\r\n');
      assert.match((await send(relay, inHeader)).response, INFECTED);
      await assertNothingDelivered(before);
    });

    it('delivers a clean message unchanged in strip mode', async () => {
      const relay = await relayWith({ servers: [clamd.address], action: 'strip' });
      const before = sink.messages.length;
      const raw = cleanMessage('clean strip', 10_000);
      assert.match((await send(relay, raw)).response, /^250 /);
      const got = (await sink.waitFor(before + 1))[before]!.raw.toString('latin1');
      assert.ok(got.endsWith(raw));
      assert.match(got.slice(0, got.length - raw.length), /\r\nX-Portcullis-Virus: clean\r\n$/);
    });
  });

  describe('skip rules', () => {
    it('skips authenticated senders only when skipAuthenticated is set, and says so in the header', async () => {
      const tls = await selfSignedFiles('relay.test');
      const users = definePlugin({ name: 'users', setup: () => ({ auth: (_s, a) => (a.username === 'alice' && a.password === 'secret' ? accept() : undefined) }) });
      const relay = await startTestRelay({
        builtins: { 'relay-policy': relayPolicy, clamav, users },
        config: {
          tls: { key: tls.key, cert: tls.cert },
          listen: [{ host: '127.0.0.1', port: 0, tls: 'starttls', auth: 'optional', greetingDelay: 0 }],
          plugins: [
            { use: 'users' },
            { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } } } },
            { use: 'clamav', with: { servers: [clamd.address], skipAuthenticated: true } },
          ],
        },
      });
      relays.push(relay);
      try {
        const before = sink.messages.length;
        const raw = eicarBase64();
        const authed = await sendMail({ port: relay.port, from: 'alice@remote.test', to: 'bob@example.com', raw, auth: { user: 'alice', pass: 'secret' } });
        assert.match(authed.response, /^250 /);
        const got = (await sink.waitFor(before + 1))[before]!.raw.toString('latin1');
        assert.ok(got.endsWith(raw));
        assert.match(got.slice(0, got.length - raw.length), /\r\nX-Portcullis-Virus: unscanned \(authenticated sender\)\r\n$/);
        assert.match((await send(relay, raw)).response, INFECTED, 'an anonymous client is still scanned');
      } finally {
        rmSync(tls.dir, { recursive: true, force: true });
      }
    });
  });

  describe('connections', () => {
    it('scans over the unix socket', async () => {
      const relay = await relayWith({ servers: [clamd.socketPath] });
      assert.match((await send(relay, eicarBase64())).response, INFECTED);
      assert.match((await send(relay, cleanMessage('via socket'))).response, /^250 /);
    });

    it('fails over to the next clamd when the first refuses the connection', async () => {
      const relay = await relayWith({ servers: [`127.0.0.1:${await freePort()}`, `unix:${clamd.dir}/missing.sock`, clamd.address] });
      assert.match((await send(relay, eicarBase64())).response, INFECTED);
      assert.match((await send(relay, cleanMessage('failover'))).response, /^250 /);
    });
  });
});
