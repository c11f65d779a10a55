import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { definePlugin } from '@portcullis/core';
import { hostedRelay, RawSmtp, waitUntil, type CaptureServer, type HostedRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import { bigFlatParts, boundaryBomb, flatParts, manyPartHeaders, nested } from './support/mime-bombs.js';
import { rawSend } from './support/raw-send.js';

/** A part screener that keeps every part: enough to turn on the MIME pass (mailsplit). */
const partScreener = definePlugin({
  name: 'part-screener',
  setup: () => ({ data: () => ({ part: () => ({ update: () => undefined, done: async () => undefined }) }) }),
});

const tmpFiles = (r: TestRelay) => readdirSync(path.join(r.spoolDir, 'tmp'));

function start(extra: Record<string, unknown> = {}): Promise<HostedRelay> {
  return hostedRelay({ builtins: { 'part-screener': partScreener, 'relay-policy': relayPolicy }, domain: 'example.com', plugins: [{ use: 'part-screener' }], config: extra });
}

/** The relay still serves: a plain message gets 250. */
async function stillServes(r: TestRelay): Promise<void> {
  const { reply, client } = await rawSend(r.port, 'Subject: after\r\n\r\nstill here\r\n');
  client.close();
  assert.match(reply, /^250 2\.0\.0 Ok: queued as /);
}

describe('MIME structure limits with a part screener on', () => {
  let sink: CaptureServer;
  let relay: HostedRelay;
  before(async () => {
    relay = await start();
    sink = relay.sink;
  });
  after(() => relay?.close());

  it('answers a message of 1,001 flat parts with 552 5.3.4 within seconds and leaves no tmp file', async () => {
    const { reply, ms, client } = await rawSend(relay.port, flatParts(1001));
    client.close();
    assert.equal(reply, '552 5.3.4 Message has too many MIME parts (limit 500)');
    assert.ok(ms < 5000, `reply took ${ms} ms`);
    assert.deepEqual(tmpFiles(relay), []);
    await stillServes(relay);
  });

  it('answers a message nested 1,000 deep with 554 5.6.0 within seconds and leaves no tmp file', async () => {
    const { reply, ms, client } = await rawSend(relay.port, nested(1000));
    client.close();
    assert.equal(reply, '554 5.6.0 MIME parts are nested too deeply (limit 50)');
    assert.ok(ms < 5000, `reply took ${ms} ms`);
    assert.deepEqual(tmpFiles(relay), []);
  });

  it('answers a message nested 60 deep (few parts) with 554 5.6.0', async () => {
    const { reply, client } = await rawSend(relay.port, nested(60));
    client.close();
    assert.equal(reply, '554 5.6.0 MIME parts are nested too deeply (limit 50)');
    assert.deepEqual(tmpFiles(relay), []);
  });

  it('answers a boundary bomb within seconds and leaves no tmp file', async () => {
    const { reply, ms, client } = await rawSend(relay.port, boundaryBomb(200, 5000));
    client.close();
    assert.match(reply, /^55[24] 5\.(3\.4|6\.0) /);
    assert.ok(ms < 5000, `reply took ${ms} ms`);
    assert.deepEqual(tmpFiles(relay), []);
  });

  it('answers a part whose header has 300 fields with 552 5.3.4', async () => {
    const { reply, client } = await rawSend(relay.port, manyPartHeaders(300));
    client.close();
    assert.equal(reply, '552 5.3.4 A MIME part header has too many fields or is too large (limit 200)');
  });

  it('survives the 1,001st part arriving in a small final write, three times in a row', async () => {
    for (let i = 0; i < 3; i++) {
      const { reply, client } = await rawSend(relay.port, flatParts(1001), { tail: 40 });
      client.close();
      assert.equal(reply, '552 5.3.4 Message has too many MIME parts (limit 500)');
    }
    await stillServes(relay);
    assert.deepEqual(tmpFiles(relay), []);
  });

  it('leaves nothing behind after eight 5 MB messages with 1,001 parts each', async () => {
    const big = bigFlatParts(1001, 3_700_000);
    assert.ok(big.length > 5_000_000);
    const results = await Promise.all(Array.from({ length: 8 }, () => rawSend(relay.port, big, { chunk: 65536, timeoutMs: 20_000 })));
    for (const r of results) {
      r.client.close();
      assert.equal(r.reply, '552 5.3.4 Message has too many MIME parts (limit 500)');
    }
    assert.deepEqual(tmpFiles(relay), []);
  });

  it('passes a message under the limits with 250 and delivers it byte for byte', async () => {
    const msg = flatParts(100);
    const before = sink.messages.length;
    const { reply, client } = await rawSend(relay.port, msg);
    client.close();
    assert.match(reply, /^250 /);
    await sink.waitFor(before + 1);
    assert.ok(sink.messages.at(-1)!.raw.toString('latin1').endsWith(msg));
  });

  it('cleans up when the client disconnects in the middle of a multipart message, and keeps serving', async () => {
    const c = await RawSmtp.connect(relay.port, '127.0.0.1', '127.0.0.7');
    await c.read();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<a@remote.test>');
    await c.cmd('RCPT TO:<bob@example.com>');
    await c.cmd('DATA');
    c.write(flatParts(300).slice(0, 5000));
    await new Promise((r) => setTimeout(r, 100));
    c.close();
    await waitUntil(() => tmpFiles(relay).length === 0, 'the tmp file to go', 5000);
    await stillServes(relay);
  });
});

describe('MIME limits set to pass unscreened', () => {
  let sink: CaptureServer;
  let relay: HostedRelay;
  before(async () => {
    relay = await start({ limits: { mime: { overLimit: 'pass-unscreened', parts: 100 } } });
    sink = relay.sink;
  });
  after(() => relay?.close());

  it('accepts a message over the part limit only because the operator chose pass-unscreened, and delivers it unchanged', async () => {
    const msg = flatParts(1001);
    const { reply, client } = await rawSend(relay.port, msg);
    client.close();
    assert.match(reply, /^250 2\.0\.0 Ok: queued as /);
    await sink.waitFor(1);
    assert.ok(sink.messages[0]!.raw.toString('latin1').endsWith(msg));
    assert.deepEqual(tmpFiles(relay), []);
  });
});
