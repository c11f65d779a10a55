import assert from 'node:assert/strict';
import { definePlugin, Tokens, type ConnectionGate } from '@portcullis/core';
import { freePort, memoryLogger, RawSmtp, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import { adminGet, parseMetrics } from './support/admin.js';

/**
 * A connection-gate check that fails (a bug in a plugin's check, or a store failing in a way it does
 * not handle) must not let the connection past the limits: the client hears 421 4.3.0 and comes
 * back later. The failing check is a plugin written for this test: no real store throws on demand
 * (they answer locally when Redis or the primary does not), so this is the fault a real part cannot
 * produce. The core's own per-address check (limit 1) runs first, so a slot it took and failed to
 * give back would lock the address out: the test shows it is given back.
 */
describe('a connection-gate check that throws or rejects', function () {
  this.timeout(30_000);
  let mode: 'throw' | 'reject' | 'admit' = 'admit';
  let relay: TestRelay;
  let adminPort: number;
  const { logger, entries } = memoryLogger('info');
  const flaky = definePlugin({
    name: 'flaky-gate',
    setup(_opts, ctx) {
      ctx.container.resolve<ConnectionGate>(Tokens.ConnectionGate).add({
        name: 'flaky',
        admit() {
          if (mode === 'throw') throw new TypeError('flaky check: cannot read properties of undefined');
          if (mode === 'reject') return Promise.reject(new Error('flaky check: store gone'));
          return undefined;
        },
        release() {},
      });
      return {};
    },
  });

  before(async () => {
    adminPort = await freePort();
    relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, 'flaky-gate': flaky },
      logger,
      config: {
        limits: { connectionsPerIp: 1 },
        admin: { enabled: true, host: '127.0.0.1', port: adminPort },
        plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: '127.0.0.1:9', tls: 'none' } } } }, { use: 'flaky-gate' }],
      },
    });
  });
  after(() => relay?.stop());

  /** The first line the relay sends, and whether it then closed the connection. */
  async function greeting(): Promise<{ line: string; closed: boolean; c: RawSmtp }> {
    const c = await RawSmtp.connect(relay.port);
    const line = (await c.read(10_000)).trim();
    const closed = await c.waitClosed(2000).then(
      () => true,
      () => false,
    );
    return { line, closed, c };
  }

  it('refuses with 421 4.3.0 and closes, whether the check throws or its promise rejects; logs the error once, counts each as check_failed, and gives back the per-address slot', async () => {
    mode = 'throw';
    const thrown = await greeting();
    assert.equal(thrown.line, '421 4.3.0 Temporary local problem, try again later');
    assert.equal(thrown.closed, true);
    mode = 'reject';
    const rejected = await greeting();
    assert.equal(rejected.line, '421 4.3.0 Temporary local problem, try again later');
    assert.equal(rejected.closed, true);

    const failures = entries.filter((e) => e.msg === 'connection gate check flaky failed: refused for now (421 4.3.0 Temporary local problem, try again later)');
    assert.equal(failures.length, 1, 'the second failure within 10 s is folded into the RepeatLog count');
    assert.equal(failures[0]!.level, 50);
    assert.equal(failures[0]!['check'], 'flaky');
    assert.match(String((failures[0]!['err'] as { message: string }).message), /flaky check: cannot read properties of undefined/);
    const m = parseMetrics((await adminGet(adminPort, '/metrics')).body);
    const counted = [...m].filter(([k]) => k.startsWith('portcullis_connections_refused_total{') && k.includes('reason="check_failed"'));
    assert.equal(counted.length, 1, [...m.keys()].filter((k) => k.includes('refused')).join(', '));
    assert.equal(counted[0]![1], 2);

    // The core's check (1 per address) admitted both before the flaky one failed: both slots came back.
    mode = 'admit';
    const ok = await greeting();
    assert.match(ok.line, /^220 /);
    assert.equal(ok.closed, false);
    // And the limit still holds while that one is open.
    const second = await greeting();
    assert.equal(second.line, '421 4.7.0 Too many connections from your address, try again later');
    ok.c.close();
  });
});

/**
 * A check whose `release` throws (a bug in it; both checks are a plugin written for this test, no
 * real check's release throws): while the gate undoes it after a later check refused, and when an
 * admitted connection closes. The refusal must stand (not be lost to the error) and the relay must
 * stay up: a release runs from the socket's close, where an exception would end the process.
 */
describe('a connection-gate check whose release throws', function () {
  this.timeout(30_000);
  let relay: TestRelay;
  let throwOnRelease = true;
  let refuse = true;
  let releaseThrows = 0;
  const { logger, entries } = memoryLogger('info');
  const broken = definePlugin({
    name: 'broken-release',
    setup(_opts, ctx) {
      const gate = ctx.container.resolve<ConnectionGate>(Tokens.ConnectionGate);
      gate.add({
        name: 'async-admits',
        admit: () => Promise.resolve(undefined),
        release() {
          if (!throwOnRelease) return;
          releaseThrows++;
          throw new Error('release bug');
        },
      });
      gate.add({ name: 'refuses', admit: () => (refuse ? { code: 421, enhanced: '4.7.0', text: 'Refused by the test check' } : undefined), release() {} });
      return {};
    },
  });

  before(async () => {
    relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy, 'broken-release': broken },
      logger,
      config: { plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: '127.0.0.1:9', tls: 'none' } } } }, { use: 'broken-release' }] },
    });
  });
  after(() => relay?.stop());

  it('keeps the later check\'s refusal (421 4.7.0) when undoing an earlier check throws, and logs the release error', async () => {
    const c = await RawSmtp.connect(relay.port);
    assert.equal((await c.read(10_000)).trim(), '421 4.7.0 Refused by the test check');
    await c.waitClosed(5_000);
    assert.equal(releaseThrows, 1);
    const failed = entries.filter((e) => e['check'] === 'async-admits' && /release failed/.test(String(e.msg)));
    assert.equal(failed.length, 1);
    assert.match(String((failed[0]!['err'] as { message: string }).message), /release bug/);
    assert.equal(entries.filter((e) => /admitted/.test(String(e.msg))).length, 0);
  });

  it('stays up when the release of an admitted connection throws at its close: the next client is served', async () => {
    refuse = false;
    const c = await RawSmtp.connect(relay.port);
    assert.match((await c.read(10_000)).trim(), /^220 /);
    c.close();
    await c.waitClosed(5_000);
    const deadline = Date.now() + 5_000;
    while (releaseThrows < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(releaseThrows, 2, 'the release ran (and threw) when the connection closed');
    throwOnRelease = false;
    const next = await RawSmtp.connect(relay.port);
    assert.match((await next.read(10_000)).trim(), /^220 /);
    next.close();
    await next.waitClosed(5_000);
  });
});
