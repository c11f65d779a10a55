import assert from 'node:assert/strict';
import { CaptureServer, freePort, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import recipients from '../src/index.js';
import { Slapd } from './support/slapd.js';
import { rcptReply } from './support/smtp.js';

const builtins = { recipients, 'relay-policy': relayPolicy };
const UNKNOWN = (a: string) => `550 5.1.1 <${a}>: Recipient address rejected: User unknown`;

const USERS = [
  { uid: 'alice', mail: 'alice@hosted.example', proxyAddresses: ['SMTP:alice@hosted.example', 'smtp:a.smith@hosted.example'] },
  { uid: 'bob', mail: 'bob@hosted.example' },
  { uid: 'carol', mail: 'carol@hosted.example' },
  { uid: 'dave', mail: 'dave@hosted.example' },
  { uid: 'erin', mail: 'erin@hosted.example' },
];

async function relayFor(slapd: Slapd, sink: CaptureServer, positive = '7d', admin = false): Promise<TestRelay> {
  return startTestRelay({
    builtins,
    config: {
      ...(admin ? { admin: { enabled: true, port: 0 } } : {}),
      plugins: [
        {
          use: 'recipients',
          with: {
            sources: { directory: { ldap: { urls: [slapd.url], base: slapd.suffix, bindDn: slapd.bindDn, passwordFile: slapd.passwordFile, timeout: '1s' } } },
            domains: { 'hosted.example': ['directory'] },
            cache: { positive, negative: '1h' },
          },
        },
        { use: 'relay-policy', with: { domains: { 'hosted.example': { nexthop: sink.address, tls: 'none' } } } },
      ],
    },
  });
}

/** Runs a plugin command the way `portcullis recipients ...` does, returning what it printed. */
async function command(t: TestRelay, name: string, args: string[] = []): Promise<{ code: number; out: string }> {
  const p = t.relay.driver.plugins.find((x) => x.instance.name === 'recipients')!;
  let out = '';
  const code = await p.instance.commands![name]!.run(args, { out: (s) => (out += s), err: (s) => (out += s) });
  return { code, out };
}

describe('recipients: LDAP source against a real slapd (OpenLDAP)', function () {
  this.timeout(60_000);
  let slapd: Slapd;
  let sink: CaptureServer;
  let t: TestRelay;
  before(async () => {
    slapd = await Slapd.start(await freePort(), USERS);
    sink = await CaptureServer.start();
    t = await relayFor(slapd, sink);
  });
  after(async () => {
    await t?.stop();
    await sink?.close();
    await slapd?.remove();
  });

  it('accepts a known address, an Exchange proxyAddresses alias, a sub-address and any case with 250', async () => {
    assert.match(await rcptReply(t.port, 'alice@hosted.example'), /^250 /);
    assert.match(await rcptReply(t.port, 'a.smith@hosted.example'), /^250 /, 'alias in proxyAddresses (smtp: prefix)');
    assert.match(await rcptReply(t.port, 'alice+newsletters@hosted.example'), /^250 /, 'sub-address');
    assert.match(await rcptReply(t.port, 'ALICE@Hosted.Example'), /^250 /, 'upper case');
    assert.match(await rcptReply(t.port, 'A.Smith@HOSTED.example'), /^250 /, 'alias in another case');
    assert.match(await rcptReply(t.port, 'bob@hosted.example'), /^250 /, 'plain mail attribute');
  });

  it('refuses an unknown address with 550 5.1.1 User unknown', async () => {
    assert.equal(await rcptReply(t.port, 'nobody@hosted.example'), UNKNOWN('nobody@hosted.example'));
  });

  it('refuses LDAP-injection local parts as unknown, and slapd receives them escaped', async () => {
    for (const local of ['"*)(mail=*"', '"x)(|(objectClass=*"', '*)(uid=*']) {
      const addr = `${local}@hosted.example`;
      assert.equal(await rcptReply(t.port, addr), UNKNOWN(addr));
    }
    await new Promise((r) => setTimeout(r, 200));
    const filters = slapd.filters();
    // slapd logs each filter as it parsed it (values in its normalised, lower-case form): the
    // specials arrived as escaped values inside one equality test each, never as filter syntax.
    for (const expected of [
      '(|(mail=\\2A\\29\\28mail=\\2A@hosted.example)(proxyAddresses=smtp:\\2A\\29\\28mail=\\2A@hosted.example))',
      '(|(mail=x\\29\\28|\\28objectclass=\\2A@hosted.example)(proxyAddresses=smtp:x\\29\\28|\\28objectclass=\\2A@hosted.example))',
      '(|(mail=\\2A\\29\\28uid=\\2A@hosted.example)(proxyAddresses=smtp:\\2A\\29\\28uid=\\2A@hosted.example))',
    ]) {
      assert.ok(filters.includes(expected), `slapd's log has ${expected}; it has:\n${filters.join('\n')}`);
    }
    assert.ok(!filters.some((f) => /\(mail=\*\)/.test(f)), 'no filter with a bare (mail=*) presence test');
  });

  it('answers a second RCPT for the same address from the cache: slapd sees no second search', async () => {
    assert.match(await rcptReply(t.port, 'dave@hosted.example'), /^250 /);
    assert.equal(await rcptReply(t.port, 'ghost@hosted.example'), UNKNOWN('ghost@hosted.example'));
    await new Promise((r) => setTimeout(r, 200));
    const before = slapd.searches();
    assert.ok(before >= 2, 'slapd logged the first searches');
    assert.match(await rcptReply(t.port, 'dave@hosted.example'), /^250 /);
    assert.match(await rcptReply(t.port, 'DAVE@hosted.example'), /^250 /);
    assert.equal(await rcptReply(t.port, 'ghost@hosted.example'), UNKNOWN('ghost@hosted.example'));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(slapd.searches(), before, 'no new SRCH at slapd');
  });

  it('answers a known address from the node\'s memory only until its positive TTL ends: then slapd is searched again', async () => {
    const short = await relayFor(slapd, sink, '1500ms');
    try {
      assert.match(await rcptReply(short.port, 'carol@hosted.example'), /^250 /);
      await new Promise((r) => setTimeout(r, 200));
      const before = slapd.searches();
      assert.match(await rcptReply(short.port, 'carol@hosted.example'), /^250 /);
      assert.match(await rcptReply(short.port, 'Carol@hosted.example'), /^250 /);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(slapd.searches(), before, 'answered from memory: no new SRCH');
      await new Promise((r) => setTimeout(r, 1_500));
      assert.match(await rcptReply(short.port, 'carol@hosted.example'), /^250 /);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(slapd.searches(), before + 1, 'the expired answer was not used: one new SRCH');
    } finally {
      await short.stop();
    }
  });

  it('with slapd stopped: 451 4.3.0 for an address never seen, 250 for one seen before (last known good); normal again when slapd is back', async () => {
    assert.match(await rcptReply(t.port, 'bob@hosted.example'), /^250 /);
    await slapd.stop();
    // Drop the cache so that the next answers really come from the outage path.
    assert.equal((await command(t, 'flush')).code, 0);
    assert.equal(await rcptReply(t.port, 'carol@hosted.example'), '451 4.3.0 <carol@hosted.example>: Temporary lookup failure, try again later');
    assert.equal(await rcptReply(t.port, 'nobody2@hosted.example'), '451 4.3.0 <nobody2@hosted.example>: Temporary lookup failure, try again later');
    assert.match(await rcptReply(t.port, 'bob@hosted.example'), /^250 /, 'last known good');
    const explained = await command(t, 'check', ['bob@hosted.example', '--fresh']);
    assert.match(explained.out, /known by directory \(last known good: the source is down\)/);
    // Ready: this node has last-known-good answers for the source.
    const ready = await t.relay.readiness();
    assert.equal(ready.checks.find((c) => c.name === 'plugin:recipients')?.ready, true);
    await slapd.restart();
    assert.match(await rcptReply(t.port, 'carol@hosted.example'), /^250 /);
    assert.equal(await rcptReply(t.port, 'nobody2@hosted.example'), UNKNOWN('nobody2@hosted.example'));
    assert.equal(sink.messages.length, 0, 'nothing was delivered');
  });

  it('is not ready on /readyz (503) while its directory is unreachable and it has no last known good answer', async () => {
    await slapd.stop();
    const fresh = await relayFor(slapd, sink, '7d', true);
    const readyz = async () => {
      const a = fresh.relay.adminAddress()!;
      const res = await fetch(`http://${a.host}:${a.port}/readyz`);
      return { status: res.status, body: (await res.json()) as { checks: Array<{ name: string; ready: boolean; detail?: string }> } };
    };
    try {
      const down = await readyz();
      assert.equal(down.status, 503);
      const c = down.body.checks.find((x) => x.name === 'plugin:recipients')!;
      assert.equal(c.ready, false);
      assert.match(c.detail ?? '', /^LDAP source directory unreachable: .* \(no last known good answers yet\)$/);
      await slapd.restart();
      assert.match(await rcptReply(fresh.port, 'erin@hosted.example'), /^250 /);
      assert.equal((await readyz()).status, 200);
      // Down again, but now this node has a last-known-good answer for the source: it stays ready.
      await new Promise((r) => setTimeout(r, 5_100));
      await slapd.stop();
      assert.match(await rcptReply(fresh.port, 'erin@hosted.example'), /^250 /);
      const degraded = await readyz();
      assert.equal(degraded.status, 200);
      assert.match(degraded.body.checks.find((x) => x.name === 'plugin:recipients')?.detail ?? '', /^LDAP source directory unreachable: .* \(known users answered from last known good answers\)$/);
      await slapd.restart();
    } finally {
      await fresh.stop();
    }
  });

  it('explains a decision with `recipients check`: the source, the entry and the filter', async () => {
    const r = await command(t, 'check', ['a.smith@hosted.example', '--fresh']);
    assert.equal(r.code, 0);
    assert.match(r.out, /^a\.smith@hosted\.example: known by directory: uid=alice,ou=people,dc=hosted,dc=example matches \(\|\(mail=a\.smith@hosted\.example\)\(proxyAddresses=smtp:a\.smith@hosted\.example\)\)/);
  });
});

describe('recipients: an LDAP source that cannot be reached', function () {
  this.timeout(60_000);
  let sink: CaptureServer;
  before(async () => {
    sink = await CaptureServer.start();
  });
  after(async () => {
    await sink?.close();
  });
  const relayWith = async (extra: Record<string, unknown>): Promise<TestRelay> =>
    startTestRelay({
      builtins,
      config: {
        plugins: [
          {
            use: 'recipients',
            with: {
              // Nothing listens on this port: every connect is refused.
              sources: { directory: { ldap: { urls: [`ldap://127.0.0.1:${await freePort()}`], base: 'dc=hosted,dc=example', timeout: '500ms' } } },
              domains: { 'hosted.example': ['directory'] },
              ...extra,
            },
          },
          { use: 'relay-policy', with: { domains: { 'hosted.example': { nexthop: sink.address, tls: 'none' } } } },
        ],
      },
    });

  it('answers 451 4.3.0 by default, never 250 or 550', async () => {
    const t = await relayWith({});
    try {
      assert.equal(await rcptReply(t.port, 'anyone@hosted.example'), '451 4.3.0 <anyone@hosted.example>: Temporary lookup failure, try again later');
    } finally {
      await t.stop();
    }
  });

  it('leaves the recipient to relay-policy (250) only when onError: accept is chosen', async () => {
    const t = await relayWith({ onError: 'accept' });
    try {
      assert.match(await rcptReply(t.port, 'anyone@hosted.example'), /^250 /);
    } finally {
      await t.stop();
    }
  });
});
