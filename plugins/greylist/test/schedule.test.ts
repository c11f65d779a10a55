import assert from 'node:assert/strict';
import { accept, definePlugin } from '@portcullis/core';
import { fakeClock, InMemoryRelay, mailTranscript, type FakeClock } from '@portcullis/testkit';
import greylist, { clientNetwork, type GreylistOptions } from '../src/index.js';

/** Accepts every recipient greylist gives no opinion on (the policy plugin's place). */
const acceptAll = definePlugin({ name: 'accept-all', setup: () => ({ rcpt: () => accept(), route: () => ({ hosts: [{ host: 'hop.test', port: 25 }] }) }) });

/*
 * The schedule with the default durations (5 minutes, 2 days, 36 days), on the test kit's fake
 * clock: Tokens.Clock is what greylist reads, so no test waits for real minutes.
 */
describe('greylist schedule (fake clock, defaults)', () => {
  let clock: FakeClock;
  let relay: InMemoryRelay;
  const start = async (opts: GreylistOptions = {}) => {
    clock = fakeClock();
    relay = await InMemoryRelay.create({ plugins: [{ use: greylist, with: opts }, acceptAll], clock });
  };
  afterEach(() => relay?.close());
  /** The reply to RCPT TO for one attempt. */
  const attempt = async (ip: string, from: string, to: string) => {
    const r = await relay.session(mailTranscript({ from, to, message: 'Subject: x\r\n\r\nhi\r\n' }), { remoteAddress: ip });
    return r.replies.find((x) => x.command.startsWith('RCPT'))!.lines.join(' ');
  };

  it('waits 5 minutes by default, counting down in the reply', async () => {
    await start();
    assert.equal(await attempt('192.0.2.10', 'a@sender.test', 'u@example.com'), '451 4.7.1 Greylisted, try again in 300 seconds');
    clock.advance('4m');
    assert.equal(await attempt('192.0.2.10', 'a@sender.test', 'u@example.com'), '451 4.7.1 Greylisted, try again in 60 seconds');
    clock.advance('59s');
    assert.equal(await attempt('192.0.2.10', 'a@sender.test', 'u@example.com'), '451 4.7.1 Greylisted, try again in 1 second');
    clock.advance('1s');
    assert.match(await attempt('192.0.2.10', 'a@sender.test', 'u@example.com'), /^250 /);
  });

  it('keys IPv4 clients by /24 and IPv6 clients by /64', async () => {
    assert.equal(clientNetwork('192.0.2.77', 24, 64), '192.0.2.0/24');
    assert.equal(clientNetwork('::ffff:192.0.2.77', 24, 64), '192.0.2.0/24');
    assert.equal(clientNetwork('2001:db8:1:2:aaaa::1', 24, 64), '2001:db8:1:2::/64');
    await start();
    assert.match(await attempt('192.0.2.10', 'a@sender.test', 'u@example.com'), /^451 /);
    assert.match(await attempt('2001:db8::1', 'a@sender.test', 'u@example.com'), /^451 /);
    clock.advance('5m');
    assert.match(await attempt('192.0.2.200', 'a@sender.test', 'u@example.com'), /^250 /, 'another server of the same /24 retried');
    assert.match(await attempt('2001:db8::ffff:1', 'a@sender.test', 'u@example.com'), /^250 /, 'another address of the same /64 retried');
    assert.match(await attempt('192.0.3.10', 'a@sender.test', 'u@example.com'), /^451 /, 'another /24 is another client');
  });

  it('starts over when the retry comes after the retry window (2 days)', async () => {
    await start();
    assert.match(await attempt('192.0.2.10', 'late@sender.test', 'u@example.com'), /^451 /);
    clock.advance('2d');
    clock.advance('6m');
    assert.equal(await attempt('192.0.2.10', 'late@sender.test', 'u@example.com'), '451 4.7.1 Greylisted, try again in 300 seconds');
  });

  it('lets a passed triplet through at once for its lifetime (36 days), renewed at each pass, and greylists it again after', async () => {
    await start();
    await attempt('192.0.2.10', 'p@sender.test', 'u@example.com');
    clock.advance('5m');
    assert.match(await attempt('192.0.2.10', 'p@sender.test', 'u@example.com'), /^250 /);
    clock.advance('30d');
    assert.match(await attempt('192.0.2.10', 'p@sender.test', 'u@example.com'), /^250 /, 'known triplet');
    assert.match(await attempt('192.0.2.10', 'p@sender.test', 'other@example.com'), /^451 /, 'another recipient is another triplet');
    clock.advance('36d');
    clock.advance('1m');
    assert.match(await attempt('192.0.2.10', 'p@sender.test', 'u@example.com'), /^451 /, 'not seen for longer than the lifetime: greylisted again');
  });

  it('allow-lists a client network after 5 passed triplets (autoAllowAfter), not before', async () => {
    await start();
    for (let i = 1; i <= 5; i++) {
      assert.match(await attempt('192.0.2.10', `s${i}@sender.test`, 'u@example.com'), /^451 /, `triplet ${i} greylisted`);
      clock.advance('5m');
      assert.match(await attempt('192.0.2.10', `s${i}@sender.test`, 'u@example.com'), /^250 /, `triplet ${i} passed`);
    }
    assert.match(await attempt('192.0.2.99', 'new@elsewhere.test', 'v@example.com'), /^250 /, 'a new triplet of the allow-listed /24 passes at once');
  });

  it('never allow-lists a client automatically with autoAllowAfter: 0', async () => {
    await start({ autoAllowAfter: 0 });
    for (let i = 1; i <= 6; i++) {
      await attempt('192.0.2.10', `s${i}@sender.test`, 'u@example.com');
      clock.advance('5m');
      assert.match(await attempt('192.0.2.10', `s${i}@sender.test`, 'u@example.com'), /^250 /);
    }
    assert.match(await attempt('192.0.2.10', 'new@elsewhere.test', 'v@example.com'), /^451 /);
  });
});
