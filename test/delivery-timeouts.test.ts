import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { SMTPServer } from 'smtp-server';
import type { AddressInfo } from 'node:net';
import { parseConfig, Relay } from '@portcullis/core';
import { waitUntil } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import { rawSend } from './support/raw-send.js';

/** A real smtp-server next hop that keeps every message, answering each RCPT after `rcpt` ms and the final dot after `finalDot` ms. */
async function slowHop(delays: { rcpt?: number; finalDot?: number }): Promise<{ address: string; rcpts: number; received: string[]; close(): Promise<void> }> {
  const hop = { address: '', rcpts: 0, received: [] as string[], close: async () => undefined };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    logger: false,
    onRcptTo(_address, _session, cb) {
      hop.rcpts++;
      setTimeout(() => cb(), delays.rcpt ?? 0);
    },
    onData(stream, _session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('end', () => {
        hop.received.push(Buffer.concat(chunks).toString('latin1'));
        setTimeout(() => cb(), delays.finalDot ?? 0);
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  hop.address = `127.0.0.1:${((server as unknown as { server: { address(): AddressInfo } }).server.address()).port}`;
  hop.close = () => new Promise<void>((r) => server.close(() => r()));
  return hop;
}

/** A relay in this process whose JSON log lines are kept in `lines`. */
async function relayTo(hop: string, delivery: Record<string, unknown>) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const spool = mkdtempSync(path.join(os.tmpdir(), 'portcullis-spool-'));
  const config = parseConfig({
    hostname: 'relay.test',
    listen: [{ host: '127.0.0.1', port: 0, greetingDelay: 0 }],
    spool: { dir: spool },
    delivery,
    plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: hop, tls: 'none' } } } }],
  });
  const relay = await Relay.create({ config, builtins: { 'relay-policy': relayPolicy }, logger: pino({ level: 'info' }, sink) });
  await relay.start();
  return {
    relay,
    lines,
    port: relay.addresses()[0]!.port,
    async stop() {
      await relay.stop();
      rmSync(spool, { recursive: true, force: true });
    },
  };
}

describe('delivery timeouts (RFC 5321 section 4.5.3.2)', function () {
  this.timeout(60_000);

  it('has the RFC minimums as defaults: 5 min greeting, MAIL and RCPT, 2 min DATA, 3 min data block, 10 min final dot', () => {
    const c = parseConfig({ listen: [{ port: 25 }] });
    assert.deepEqual(c.delivery.timeouts, { greeting: 300_000, mail: 300_000, rcpt: 300_000, data: 120_000, dataBlock: 180_000, finalDot: 600_000 });
  });

  it('waits for a next hop that answers the final dot after 3 s and delivers exactly one copy, with no duplicate counted', async () => {
    const hop = await slowHop({ finalDot: 3000 });
    const r = await relayTo(hop.address, {});
    try {
      const { reply, client } = await rawSend(r.port, 'Subject: slow\r\nMessage-ID: <slow-1@remote.test>\r\n\r\nbody\r\n');
      client.close();
      assert.match(reply, /^250 /);
      await waitUntil(() => r.lines.some((l) => l['msg'] === 'delivered'), 'the delivery', 15_000);
      await new Promise((res) => setTimeout(res, 500));
      assert.equal(hop.received.length, 1);
      const delivered = r.lines.find((l) => l['msg'] === 'delivered')!;
      assert.equal(delivered['possibleDuplicates'], 0);
      assert.equal(r.relay.queue.possibleDuplicates, 0);
    } finally {
      await r.stop();
      await hop.close();
    }
  });

  // smtp-server offers PIPELINING, so nodemailer writes MAIL, RCPT and DATA together and waits for
  // the three replies: the longest of the three timeouts covers those waits.
  /** One message through a relay with these timeouts to a hop that answers RCPT after `rcptDelay`: the first outcome's log line. */
  async function firstOutcome(rcptDelay: number, timeouts: Record<string, string>) {
    const hop = await slowHop({ rcpt: rcptDelay });
    const r = await relayTo(hop.address, { timeouts, retrySchedule: ['1h'] });
    try {
      const { reply, client } = await rawSend(r.port, 'Subject: slow rcpt\r\nMessage-ID: <rcpt@remote.test>\r\n\r\nbody\r\n');
      client.close();
      assert.match(reply, /^250 /);
      const outcome = (l: Record<string, unknown>) => l['msg'] === 'delivered' || l['msg'] === 'deferred';
      await waitUntil(() => r.lines.some(outcome), 'the delivery or deferral', 15_000);
      return { line: r.lines.find(outcome)!, rcpts: hop.rcpts, received: hop.received.length };
    } finally {
      await r.stop();
      await hop.close();
    }
  }

  it('with PIPELINING, waits for a slow RCPT reply as long as the RCPT timeout, though DATA\'s is shorter', async () => {
    const got = await firstOutcome(1500, { mail: '5s', rcpt: '5s', data: '700ms' });
    assert.equal(got.line['msg'], 'delivered', String(got.line['response']));
    assert.equal(got.received, 1);
  });

  it('with PIPELINING, still gives up on a RCPT reply slower than every timeout of the batch', async () => {
    const got = await firstOutcome(2500, { mail: '700ms', rcpt: '700ms', data: '700ms' });
    assert.equal(got.line['msg'], 'deferred');
    assert.match(String(got.line['response']), /ETIMEDOUT|[Tt]imeout/);
    assert.equal(got.rcpts, 1);
    assert.equal(got.received, 0);
  });

  it('counts and logs the possible duplicate when the final-dot timeout is shorter than the next hop', async () => {
    const hop = await slowHop({ finalDot: 2000 });
    const r = await relayTo(hop.address, { timeouts: { finalDot: '700ms' }, retrySchedule: ['300ms'] });
    try {
      const { reply, client } = await rawSend(r.port, 'Subject: dup\r\nMessage-ID: <dup-1@remote.test>\r\n\r\nbody\r\n');
      client.close();
      assert.match(reply, /^250 /);
      await waitUntil(() => r.lines.some((l) => l['msg'] === 'no reply to the final dot: the next hop may have the message, the retry may deliver a duplicate'), 'the duplicate warning', 15_000);
      const warn = r.lines.find((l) => String(l['msg']).startsWith('no reply to the final dot'))!;
      assert.equal(warn['unconfirmedAttempts'], 1);
      assert.equal(warn['possibleDuplicatesTotal'], 1);
      assert.match(String(warn['response']), /ETIMEDOUT|[Tt]imeout/);
      // The next hop did keep the first copy: the count in the log is a real duplicate, not a guess.
      await waitUntil(() => hop.received.length >= 2, 'the retry to arrive', 15_000);
      assert.ok(r.relay.queue.possibleDuplicates >= 1);
    } finally {
      await r.stop();
      await hop.close();
    }
  });
});
