import assert from 'node:assert/strict';
import { CaptureServer, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import { accept, definePlugin, reject } from '@portcullis/core';
import { formatTable, main, runRelayTest, type RelayTestReport } from '../src/index.js';
import { freePort, startPostfix, type PrivatePostfix } from './helpers/postfix.js';
import { OpenServer } from './helpers/open-server.js';

/** The untrusted client address every run binds to. */
const CLIENT = '127.0.0.9';
const DOMAIN = 'hosted.test';

function run(port: number, extra: Partial<Parameters<typeof runRelayTest>[0]> = {}): Promise<RelayTestReport> {
  return runRelayTest({ host: '127.0.0.1', port, domain: DOMAIN, localAddress: CLIENT, timeoutMs: 5000, ...extra });
}

/** Runs the bin's entry in-process; returns the exit code and what it printed. */
async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await main(args, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { code, out, err };
}

const verdicts = (r: RelayTestReport) => Object.fromEntries(r.results.map((x) => [x.id, x.verdict]));
const relayCases = (r: RelayTestReport) => r.results.filter((x) => x.kind === 'relay');

/** Addresses smtp-server's own parser refuses (501) before any plugin sees them. */
const SMTP_SERVER_SYNTAX_REJECTS = ['bang-bare', 'quoted-at', 'quoted-bare', 'double-at', 'trailing-dot', 'percent-trailing-dot'];

describe('relay-test against a Portcullis relay (relay-policy, hosted.test), as untrusted 127.0.0.9', () => {
  let sink: CaptureServer;
  let relay: TestRelay;
  let report: RelayTestReport;
  before(async () => {
    sink = await CaptureServer.start({ host: '127.0.0.1' });
    relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy },
      config: { plugins: [{ use: 'relay-policy', with: { domains: { [DOMAIN]: { nexthop: sink.address, tls: 'none' } } } }] },
    });
    report = await run(relay.port);
    console.log('\n' + formatTable(report).replace(/^/gm, '      '));
  });
  after(async () => {
    await relay?.stop();
    await sink?.close();
  });

  it('relays nothing: zero FAIL, exit code 0', () => {
    const failed = report.results.filter((r) => r.verdict === 'FAIL').map((r) => `${r.id} <${r.rcptTo}>: ${r.reply}`);
    assert.deepEqual(failed, [], `our relay accepted relay tricks:\n${failed.join('\n')}`);
    assert.equal(report.exitCode, 0);
  });

  it('rejects every relay case at RCPT with a 5xx, and accepts the hosted control', () => {
    for (const r of relayCases(report)) {
      assert.equal(r.stage, 'rcpt', `${r.id}: stopped at ${r.stage}`);
      assert.ok(r.code >= 500 && r.code < 600, `${r.id} <${r.rcptTo}>: ${r.reply}`);
      assert.equal(r.verdict, 'PASS');
    }
    // Policy refusals say 5.7.x; the rest are address syntax errors, in our wording with 5.1.3.
    const other = report.results.filter((r) => r.kind === 'relay' && !/^5\d\d 5\.7\.\d /.test(r.reply) && r.reply !== '501 5.1.3 Bad recipient address syntax');
    assert.deepEqual(other.map((r) => `${r.id}: ${r.reply}`), []);
    assert.ok(report.results.some((r) => r.reply === '501 5.1.3 Bad recipient address syntax'), 'the syntax refusals carry an enhanced code');
    assert.equal(verdicts(report)['control'], 'PASS');
    assert.equal(report.results[0]!.reply, '250 2.1.5 Recipient OK');
    assert.equal(sink.messages.length, 0, 'nothing may reach the next hop');
  });

  it('the bin exits 0 and prints the table with the spec columns', async () => {
    const r = await cli([`127.0.0.1:${relay.port}`, '--domain', DOMAIN, '--local-address', CLIENT, '--timeout', '5000']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^#\s+case\s+MAIL FROM\s+RCPT TO\s+reply\s+verdict$/m);
    assert.match(r.out, /nothing was relayed/);
  });
});

describe('relay-test against a naive Portcullis policy ("the domain part is hosted, so accept")', () => {
  // What relay-policy did before it refused sender-specified routing: the tool must catch it.
  const naive = definePlugin({
    name: 'naive-policy',
    setup: () => ({
      rcpt: (_txn, to) => (to.domain.replace(/\.$/, '').toLowerCase() === DOMAIN ? accept() : reject(550, '5.7.1', 'Unable to relay')),
    }),
  });

  it('FAILs exactly the routing tricks aimed at the hosted domain, exit 1', async () => {
    const relay = await startTestRelay({ builtins: { 'naive-policy': naive }, config: { plugins: [{ use: 'naive-policy' }] } });
    try {
      const report = await run(relay.port);
      assert.deepEqual(report.results.filter((r) => r.verdict === 'FAIL').map((r) => r.id), ['percent', 'bang-hosted', 'quoted-percent', 'quoted-bang', 'percent-case']);
      assert.equal(report.exitCode, 1);
    } finally {
      await relay.stop();
    }
  });
});

describe('relay-test against deliberately open servers', () => {
  it('CaptureServer (smtp-server accepting every RCPT): every relay case smtp-server can parse FAILs, exit 1', async () => {
    const open = await CaptureServer.start({ host: '127.0.0.1' });
    try {
      const report = await run(open.port);
      console.log('\n' + formatTable(report).replace(/^/gm, '      '));
      assert.equal(report.exitCode, 1);
      for (const r of relayCases(report)) {
        if (SMTP_SERVER_SYNTAX_REJECTS.includes(r.id)) assert.match(r.reply, /^501 /, r.id);
        else assert.equal(r.verdict, 'FAIL', `${r.id}: ${r.reply}`);
      }
      assert.equal(report.summary.fail, relayCases(report).length - SMTP_SERVER_SYNTAX_REJECTS.length);
      assert.equal(open.messages.length, 0, 'without --send nothing is sent');
      const viaCli = await cli([`127.0.0.1:${open.port}`, '-d', DOMAIN, '-l', CLIENT, '--json', '--only', 'control,plain,percent,quoted-at']);
      assert.equal(viaCli.code, 1);
      assert.deepEqual(JSON.parse(viaCli.out).summary, { pass: 2, fail: 2, warn: 0, error: 0 });
    } finally {
      await open.close();
    }
  });

  it('a raw accept-everything server: every relay case FAILs, exactly as sent, exit 1', async () => {
    const open = await OpenServer.start();
    try {
      const report = await run(open.port);
      assert.equal(report.exitCode, 1);
      const relayRows = relayCases(report);
      assert.ok(relayRows.length >= 20);
      assert.deepEqual(relayRows.filter((r) => r.verdict !== 'FAIL').map((r) => r.id), []);
      assert.deepEqual(open.rcpts, report.results.map((r) => `<${r.rcptTo}>`));
    } finally {
      await open.close();
    }
  });

  it('--send: judges by the end of DATA, and the open server really got the relayed messages', async () => {
    const open = await CaptureServer.start({ host: '127.0.0.1' });
    try {
      const report = await run(open.port, { send: true, only: ['control', 'plain', 'percent', 'null-sender'] });
      assert.deepEqual(report.results.map((r) => [r.id, r.stage, r.verdict]), [
        ['control', 'rcpt', 'PASS'],
        ['plain', 'data', 'FAIL'],
        ['percent', 'data', 'FAIL'],
        ['null-sender', 'data', 'FAIL'],
      ]);
      assert.deepEqual(open.messages.map((m) => m.to[0]), ['relaytest@relay-test.invalid', 'relaytest%relay-test.invalid@hosted.test', 'relaytest@relay-test.invalid']);
      assert.match(open.messages[0]!.raw.toString(), /^Subject: open relay test \(plain\) via hosted\.test$/m);
    } finally {
      await open.close();
    }
  });

  it('--send: accepted at RCPT but refused at DATA is WARN, not relayed (exit 0)', async () => {
    const open = await CaptureServer.start({ host: '127.0.0.1', onData: () => [554, '5.7.1 refused after all'] });
    try {
      const report = await run(open.port, { send: true, only: ['plain'] });
      assert.equal(report.results[0]!.verdict, 'WARN');
      assert.equal(report.results[0]!.reply, '554 5.7.1 refused after all');
      assert.equal(report.exitCode, 0);
    } finally {
      await open.close();
    }
  });

  it('--starttls: runs the cases over TLS when offered; ERROR (exit 2) when not offered', async () => {
    const tlsOpen = await CaptureServer.start({ host: '127.0.0.1', server: { disabledCommands: ['AUTH'] } });
    const plain = await CaptureServer.start({ host: '127.0.0.1' });
    try {
      const report = await run(tlsOpen.port, { starttls: true, only: ['control', 'plain'] });
      assert.deepEqual(report.results.map((r) => r.verdict), ['PASS', 'FAIL']);
      assert.equal(report.exitCode, 1);
      const no = await run(plain.port, { starttls: true, only: ['plain'] });
      assert.equal(no.results[0]!.verdict, 'ERROR');
      assert.match(no.results[0]!.reply, /STARTTLS not offered/);
      assert.equal(no.exitCode, 2);
    } finally {
      await tlsOpen.close();
      await plain.close();
    }
  });
});

describe('relay-test: other replies and errors', () => {
  it('4xx at RCPT is WARN (tempfail), not relayed: exit 0', async () => {
    const s = await CaptureServer.start({ host: '127.0.0.1', onRcpt: () => [451, '4.3.0 try later'] });
    try {
      const report = await run(s.port);
      assert.ok(report.results.every((r) => r.verdict === 'WARN' || (r.code === 501 && r.verdict === 'PASS')), formatTable(report));
      assert.equal(report.summary.fail, 0);
      assert.equal(report.exitCode, 0);
    } finally {
      await s.close();
    }
  });

  it('a server that refuses MAIL FROM: WARN (never reached RCPT)', async () => {
    const s = await CaptureServer.start({ host: '127.0.0.1', server: { onMailFrom: (_a, _s, cb) => cb(Object.assign(new Error('5.7.1 go away'), { responseCode: 550 })) } });
    try {
      const report = await run(s.port, { only: ['plain', 'control'] });
      assert.deepEqual(report.results.map((r) => [r.stage, r.verdict]), [['mail', 'WARN'], ['mail', 'WARN']]);
      assert.match(formatTable(report), /MAIL: 550 5\.7\.1 go away/);
    } finally {
      await s.close();
    }
  });

  it('connection refused: exit 2 with a message, nothing tested', async () => {
    const port = await freePort();
    const r = await cli([`127.0.0.1:${port}`, '--domain', DOMAIN, '--local-address', CLIENT]);
    assert.equal(r.code, 2);
    assert.match(r.err, /ECONNREFUSED.*nothing was tested/);
  });

  it('usage errors exit 2', async () => {
    assert.equal((await cli(['127.0.0.1:25'])).code, 2); // no --domain
    assert.equal((await cli(['127.0.0.1:x', '--domain', DOMAIN])).code, 2);
    assert.equal((await cli(['127.0.0.1:25', '--domain', DOMAIN, '--local-address', 'nope'])).code, 2);
    assert.equal((await cli(['127.0.0.1:25', '--domain', DOMAIN, '--only', 'no-such-case'])).code, 2);
    assert.equal((await cli(['--help'])).code, 0);
  });

  it('--list prints the cases without connecting', async () => {
    const r = await cli(['127.0.0.1:1', '--domain', DOMAIN, '--list']);
    assert.equal(r.code, 0);
    assert.match(r.out, /percent\s+EHLO client\.relay-test\.invalid {2}MAIL FROM:<tester@relay-test\.invalid> {2}RCPT TO:<relaytest%relay-test\.invalid@hosted\.test>/);
  });
});

describe('relay-test against a private Postfix instance, as untrusted 127.0.0.9', function () {
  this.timeout(60_000);

  async function withPostfix(relayRestrictions: string | undefined, fn: (pf: PrivatePostfix) => Promise<void>): Promise<void> {
    const pf = await startPostfix({ relayDomain: DOMAIN, mynetworks: '127.0.0.1/32', relayRestrictions });
    try {
      await fn(pf);
    } finally {
      await pf.stop();
    }
  }

  it('reject_unauth_destination: relays nothing, exit 0 (observed verdicts asserted)', async () => {
    await withPostfix(undefined, async (pf) => {
      const report = await run(pf.port);
      console.log(`\n      Postfix ${pf.version}, smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination\n` + formatTable(report).replace(/^/gm, '      '));
      assert.equal(report.exitCode, 0);
      assert.equal(report.summary.fail, 0);
      assert.deepEqual(report.results.filter((r) => r.verdict !== 'PASS').map((r) => r.id), []);
      assert.equal(report.results[0]!.reply, '250 2.1.5 Ok');
      // What Postfix said, by reply: "Relay access denied" for all but two.
      const byReply = (re: RegExp) => report.results.filter((r) => re.test(r.reply)).map((r) => r.id);
      assert.deepEqual(byReply(/User unknown in local recipient table/), ['literal']); // [127.0.0.1] is its own address: local
      assert.deepEqual(byReply(/^501 5\.1\.3 Bad recipient address syntax/), ['bare-ip']);
      assert.equal(byReply(/^554 5\.7\.1 <.*>: Relay access denied$/).length, relayCases(report).length - 2);
    });
  });

  it("Debian's default defer_unauth_destination: relay attempts are tempfailed (454, WARN), exit 0", async () => {
    await withPostfix('permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination', async (pf) => {
      const report = await run(pf.port);
      console.log(`\n      Postfix ${pf.version}, smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination\n` + formatTable(report).replace(/^/gm, '      '));
      assert.equal(report.exitCode, 0);
      assert.equal(report.summary.fail, 0);
      const warned = report.results.filter((r) => r.verdict === 'WARN');
      assert.ok(warned.every((r) => /^454 4\.7\.1 <.*>: Relay access denied$/.test(r.reply)), formatTable(report));
      assert.deepEqual(report.results.filter((r) => r.verdict === 'PASS').map((r) => r.id), ['control', 'literal', 'bare-ip']);
      assert.equal(warned.length, relayCases(report).length - 2);
    });
  });
});
