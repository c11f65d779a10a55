import assert from 'node:assert/strict';
import { freePort, hostedRelay, memoryLogger, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import milter from '../src/index.js';
import { Daemon, faultyMilter } from './support/daemon.js';

/*
 * Milters that fail: down, silent mid-message, out of step. The configured default action answers
 * (tempfail by default), nothing is delivered that should not be, and the relay keeps serving.
 * The down and hanging milters are real (a closed port, the pymilter milter sleeping at end of
 * message); a malformed packet and a silence at a chosen stage come from a fake milter
 * (support/daemon.ts faultyMilter), as no real milter produces them on demand.
 */
describe('milter: failures give the default action', function () {
  this.timeout(60_000);
  let py: Daemon;
  const relays: HostedRelay[] = [];
  const { logger, entries } = memoryLogger('info');

  before(async () => {
    py = await Daemon.pyMilter();
  });
  after(async () => {
    for (const r of relays) await r.close();
    await py?.stop();
  });

  const relayWith = async (milters: unknown[]) => {
    const r = await hostedRelay({ logger, builtins: { 'relay-policy': relayPolicy, milter }, pluginsBefore: [{ use: 'milter', with: { milters } }] });
    relays.push(r);
    return r;
  };
  const send = (relay: HostedRelay, subject = 'count', body = 'body\r\n') => relay.send({ raw: `From: alice@remote.test\r\nSubject: ${subject}\r\n\r\n${body}` });
  const quiet = () => new Promise((res) => setTimeout(res, 300));

  it('answers MAIL with 451 4.7.1 when the milter is down (default tempfail), logs it, delivers nothing', async () => {
    const port = await freePort();
    const r = await relayWith([{ address: `inet:127.0.0.1:${port}`, name: 'down', connectTimeout: '1s' }]);
    const before = r.captured.length;
    const res = await send(r);
    assert.equal(res.response, '451 4.7.1 Service unavailable - try again later');
    await quiet();
    assert.equal(r.captured.length, before);
    assert.ok(entries.some((e) => e['milter'] === 'down' && e['action'] === 'tempfail' && /ECONNREFUSED/.test(String(e.msg))));
  });

  it('answers 550 5.7.1 when the milter is down and defaultAction is reject', async () => {
    const port = await freePort();
    const r = await relayWith([{ address: `inet:127.0.0.1:${port}`, defaultAction: 'reject' }]);
    assert.equal((await send(r)).response, '550 5.7.1 Service unavailable');
  });

  it('delivers without the milter when it is down and defaultAction is accept', async () => {
    const port = await freePort();
    const r = await relayWith([{ address: `inet:127.0.0.1:${port}`, defaultAction: 'accept' }, { address: py.address }]);
    const before = r.captured.length;
    const res = await send(r, 'count', 'twelve bytes');
    assert.equal(res.code, 250, res.response);
    await r.waitFor(before + 1);
    // The second milter still ran: it counted the body.
    assert.match(r.captured[before]!.raw.toString(), /\r\nX-Body-Bytes: 14\r\n/);
  });

  it('gives 451 4.7.1 when the milter stops answering at end of message, and keeps serving', async () => {
    const r = await relayWith([{ address: py.address, name: 'sleepy', eomTimeout: '1s' }]);
    const before = r.captured.length;
    const t0 = Date.now();
    const res = await send(r, 'hang');
    assert.equal(res.response, '451 4.7.1 Service unavailable - try again later');
    assert.ok(Date.now() - t0 < 10_000, 'answered after the end-of-message timeout, not the milter');
    await quiet();
    assert.equal(r.captured.length, before);
    assert.ok(entries.some((e) => e['milter'] === 'sleepy' && /did not answer end of message within 1000 ms/.test(String(e.msg))));
    const next = await send(r, 'count');
    assert.equal(next.code, 250, next.response);
    await r.waitFor(before + 1);
  });

  it('gives 451 4.7.1 when the milter stops answering in the middle of the body', async () => {
    const fake = await faultyMilter({ at: 'B', silent: true });
    try {
      const r = await relayWith([{ address: fake.address, name: 'silent', commandTimeout: '1s' }]);
      const before = r.captured.length;
      const res = await send(r, 'x', 'line\r\n'.repeat(20000));
      assert.equal(res.response, '451 4.7.1 Service unavailable - try again later');
      await quiet();
      assert.equal(r.captured.length, before);
    } finally {
      await fake.close();
    }
  });

  it('gives the default action for a malformed packet (length 0) and goes on serving new sessions', async () => {
    const fake = await faultyMilter({ at: 'B', send: Buffer.from([0, 0, 0, 0]) });
    try {
      const r = await relayWith([{ address: fake.address, name: 'garbled' }]);
      const before = r.captured.length;
      assert.equal((await send(r)).response, '451 4.7.1 Service unavailable - try again later');
      assert.ok(entries.some((e) => e['milter'] === 'garbled' && /malformed packet: length 0/.test(String(e.msg))));
      assert.equal((await send(r)).response, '451 4.7.1 Service unavailable - try again later');
      assert.equal(fake.connections, 2, 'a new session opens a new milter connection');
      await quiet();
      assert.equal(r.captured.length, before);
    } finally {
      await fake.close();
    }
  });

  it('gives the default action for a modification outside end of message and for an invalid reply code', async () => {
    const early = await faultyMilter({ at: 'R', send: Buffer.concat([Buffer.from([0, 0, 0, 5]), Buffer.from('hA\0b\0')]) });
    const badCode = await faultyMilter({ at: 'R', send: Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from('y299 fine\0\0')]) });
    try {
      const r1 = await relayWith([{ address: early.address }]);
      assert.equal((await send(r1)).response, '451 4.7.1 Service unavailable - try again later');
      const r2 = await relayWith([{ address: badCode.address, defaultAction: 'reject' }]);
      assert.equal((await send(r2)).response, '550 5.7.1 Service unavailable');
    } finally {
      await early.close();
      await badCode.close();
    }
  });

  it('negotiates down to an older milter: version 2 gets no DATA command, version 6 does', async () => {
    const v2 = await faultyMilter({ at: 'none', version: 2 });
    const v6 = await faultyMilter({ at: 'none', version: 6 });
    try {
      const r = await relayWith([{ address: v2.address }, { address: v6.address }]);
      const before = r.captured.length;
      const res = await send(r);
      assert.equal(res.code, 250, res.response);
      await r.waitFor(before + 1);
      const stages = (c: string[]) => c.filter((x) => x !== 'D' && x !== 'Q').join('');
      assert.equal(stages(v2.commands), 'OCHMRLLNBE');
      assert.equal(stages(v6.commands), 'OCHMRTLLNBE');
    } finally {
      await v2.close();
      await v6.close();
    }
  });
});
