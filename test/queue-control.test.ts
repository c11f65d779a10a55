import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';
import { controlRequest } from '@portcullis/core/internal';
import { CaptureServer, hostedRelay, sendMail, startTestRelay, waitUntil, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

describe('queue control while the relay runs', function () {
  this.timeout(30_000);
  let nexthop: CaptureServer;
  let senderMx: CaptureServer;
  let relay: TestRelay;
  let refuse = true;
  let sock: string;
  before(async () => {
    senderMx = await CaptureServer.start();
    const hosted = await hostedRelay({
      builtins: { 'relay-policy': relayPolicy },
      domain: 'example.com',
      capture: { onRcpt: () => (refuse ? [451, '4.3.2 Not now'] : undefined) },
      policy: { domains: { 'sender.test': { nexthop: senderMx.address, tls: 'none' } } },
      config: { delivery: { retrySchedule: ['1h'], delayWarning: '1500ms' } },
    });
    relay = hosted;
    nexthop = hosted.sink;
    sock = path.join(relay.spoolDir, 'control.sock');
  });
  after(async () => {
    await relay?.stop();
    await nexthop?.close();
    await senderMx?.close();
  });

  const list = async () => ((await controlRequest(sock, { cmd: 'list' })) as { ok: true; result: Array<{ id: string; pending: string[]; hold: boolean; attempts: number }> }).result;

  it('lists deferred messages, holds, releases and flushes them', async () => {
    const r = await sendMail({ port: relay.port, from: 'alice@sender.test', to: 'bob@example.com', subject: 'queued' });
    assert.equal(r.ok, true);
    const id = /queued as (\w+)/.exec(r.response)![1]!;
    let entries: Awaited<ReturnType<typeof list>> = [];
    for (let i = 0; i < 50 && !entries.some((e) => e.id === id && e.attempts === 1); i++) {
      await new Promise((res) => setTimeout(res, 100));
      entries = await list();
    }
    const e = entries.find((x) => x.id === id)!;
    assert.deepEqual(e.pending, ['bob@example.com']);
    const shown = await controlRequest(sock, { cmd: 'show', id });
    assert.equal(shown.ok, true);
    assert.match(JSON.stringify(shown), /Subject: queued/);
    assert.deepEqual(await controlRequest(sock, { cmd: 'hold', id }), { ok: true, result: true });
    assert.equal((await list()).find((x) => x.id === id)!.hold, true);
    refuse = false;
    assert.deepEqual(await controlRequest(sock, { cmd: 'release', id }), { ok: true, result: true });
    const [msg] = await nexthop.waitFor(1, 10_000);
    assert.deepEqual(msg!.to, ['bob@example.com']);
    for (let i = 0; i < 30 && (await list()).some((x) => x.id === id); i++) await new Promise((res) => setTimeout(res, 100));
    assert.equal((await list()).some((x) => x.id === id), false);
  });

  it('sends one delay warning after delayWarning, then bounces on request', async () => {
    refuse = true;
    senderMx.messages.length = 0;
    const r = await sendMail({ port: relay.port, from: 'alice@sender.test', to: 'carol@example.com', subject: 'slow one' });
    const id = /queued as (\w+)/.exec(r.response)![1]!;
    await new Promise((res) => setTimeout(res, 1800));
    assert.deepEqual(await controlRequest(sock, { cmd: 'flush', id }), { ok: true, result: { flushed: 1 } });
    const [warning] = await senderMx.waitFor(1, 10_000);
    const raw = warning!.raw.toString();
    assert.match(raw, /Subject: Delayed Mail \(still being retried\)/);
    assert.match(raw, /Action: delayed\r\nStatus: 4\.3\.2\r\n/);
    assert.match(raw, /Will-Retry-Until: /);
    await controlRequest(sock, { cmd: 'flush', id });
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(senderMx.messages.length, 1, 'only one delay warning');
    assert.deepEqual(await controlRequest(sock, { cmd: 'bounce', id }), { ok: true, result: true });
    const msgs = await senderMx.waitFor(2, 10_000);
    const bounce = await simpleParser(msgs[1]!.raw);
    assert.equal(bounce.subject, 'Undelivered Mail Returned to Sender');
    assert.match(msgs[1]!.raw.toString(), /Action: failed\r\nStatus: 5\.3\.0/);
    assert.equal((await list()).some((x) => x.id === id), false);
  });

  it('deletes a message and answers clearly for an unknown id', async () => {
    const r = await sendMail({ port: relay.port, from: 'alice@sender.test', to: 'dave@example.com', subject: 'doomed' });
    const id = /queued as (\w+)/.exec(r.response)![1]!;
    await new Promise((res) => setTimeout(res, 300));
    assert.deepEqual(await controlRequest(sock, { cmd: 'delete', id }), { ok: true, result: true });
    assert.equal((await list()).some((x) => x.id === id), false);
    const missing = await controlRequest(sock, { cmd: 'hold', id: 'NOPE' });
    assert.equal(missing.ok, false);
  });
});

describe('a flush or a hold while a delivery attempt is in flight', function () {
  this.timeout(30_000);
  let hop: SMTPServer;
  let hopPort = 0;
  const received: string[] = [];
  let answerData: ((err?: Error) => void) | undefined;
  let dataStarted: () => void = () => undefined;
  /** The next attempt's final dot waits for `answerData` (the test's hand on an attempt in flight). */
  let holdAnswer = true;
  let relay: TestRelay;
  before(async () => {
    hop = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData(stream, _session, cb) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('error', () => undefined);
        stream.on('end', () => {
          if (holdAnswer) {
            // This attempt waits here until the test has acted on it, then is deferred.
            holdAnswer = false;
            answerData = (err) => cb(err);
            dataStarted();
            return;
          }
          received.push(Buffer.concat(chunks).toString('latin1'));
          cb();
        });
      },
    });
    await new Promise<void>((resolve) => hop.listen(0, '127.0.0.1', () => resolve()));
    hopPort = (hop.server.address() as AddressInfo).port;
    relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy },
      config: {
        delivery: { retrySchedule: ['1h'] },
        plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: `127.0.0.1:${hopPort}`, tls: 'none' } } } }],
      },
    });
  });
  after(async () => {
    answerData?.();
    await relay?.stop();
    await new Promise<void>((resolve) => hop.close(() => resolve()));
  });

  it('tries the message again as soon as that attempt defers, not at its next retry slot an hour later', async () => {
    const started = new Promise<void>((resolve) => (dataStarted = resolve));
    const r = await sendMail({ port: relay.port, from: 'alice@sender.test', to: 'bob@example.com', subject: 'in flight' });
    assert.equal(r.ok, true);
    await started;
    assert.equal(relay.relay.queue.flush(), 1);
    const err = Object.assign(new Error('Not now'), { responseCode: 451 });
    answerData!(err);
    await waitUntil(() => received.length === 1, 'the second attempt to deliver', 10_000);
    assert.match(received[0]!, /Subject: in flight/);
    await waitUntil(() => relay.relay.queue.size === 0, 'the queue to empty', 5_000);
  });

  it('counts a message held during its attempt as held, in the stats as in the list (status and queue list agree)', async () => {
    holdAnswer = true;
    const started = new Promise<void>((resolve) => (dataStarted = resolve));
    const r = await sendMail({ port: relay.port, from: 'alice@sender.test', to: 'bob@example.com', subject: 'held in flight' });
    assert.equal(r.ok, true);
    const id = /queued as (\w+)/.exec(r.response)![1]!;
    await started;
    const queue = relay.relay.queue;
    assert.equal(await queue.hold(id), true);
    const row = () => queue.list().find((x) => x.id === id)!;
    assert.deepEqual([row().hold, row().busy], [true, true], 'held, and its attempt still out');
    assert.deepEqual([queue.stats().held, queue.stats().sending], [1, 0]);
    answerData!(Object.assign(new Error('Not now'), { responseCode: 451 }));
    await waitUntil(() => !row().busy, 'the attempt to end', 10_000);
    assert.deepEqual([queue.stats().held, queue.stats().sending, queue.stats().messages], [1, 0, 1], 'still held: the hold stops the next attempt');
    assert.equal(received.length, 1, 'only the first test\'s message was delivered');
  });
});
