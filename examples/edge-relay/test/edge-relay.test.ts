// Runs the README's walkthrough for real: setup.sh, the internal server, the internet sink and
// `portcullis start` on the example's own portcullis.yaml (only its ports changed to free ones, so
// that parallel runs do not collide), then the swaks commands of steps (a) to (h), checking the
// exact replies and where each message arrived.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RawSmtp } from '@portcullis/testkit';
import { parse, stringify } from 'yaml';
import { CLI, Child, EXAMPLE, freePort, replyTo, swaks, waitFor } from './support.js';

/** The fixed ports of the example files, and what listens there. */
const FIXED = { mx: 2525, submission: 2587, internal: 2626, sink: 2727, dns: 2553 } as const;
const PASSWORD = 'demo-password-alice'; // setup.sh's documented demo default
const ALICE = ['--auth-user', 'alice@example.test', '--auth-password', PASSWORD];

describe('examples/edge-relay: the README walkthrough', function () {
  let dir: string;
  let config: string;
  let mailstore: string;
  const port = { mx: 0, submission: 0, internal: 0, sink: 0, dns: 0 };
  let internal: Child;
  let sink: Child;
  let relay: Child;
  const children: Child[] = [];

  /** Runs `portcullis ARGS` to completion (the built CLI, as setup.sh and run.sh use it). */
  function portcullis(...args: string[]) {
    const r = spawnSync(process.execPath, [CLI, ...args], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, out: r.stdout + r.stderr };
  }
  const mx = (...args: string[]) => swaks(`127.0.0.1:${port.mx}`, args);
  const submission = (...args: string[]) => swaks(`127.0.0.1:${port.submission}`, args);
  /** Messages in the mailstore, as text. */
  const stored = () => readdirSync(mailstore).filter((f) => f.endsWith('.eml')).map((f) => readFileSync(path.join(mailstore, f), 'latin1'));
  const sinkLines = () => sink.output().split('\n').filter((l) => l.startsWith('internet got '));

  function startSink(): Promise<void> {
    sink = new Child('internet-sink', process.execPath, [path.join(EXAMPLE, 'internet-sink.mjs')], { SINK_PORT: String(port.sink) }, path.join(dir, 'sink.out'));
    children.push(sink);
    return sink.waitForOutput(/internet sink listening on 127\.0\.0\.1:\d+/);
  }

  before(async function () {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-edge-relay-'));
    mailstore = path.join(dir, 'mailstore');

    // setup.sh, twice: the second run keeps the certificate and replaces alice's entry.
    const env = { ...process.env, EDGE_RELAY_OUT: dir };
    const first = spawnSync('sh', [path.join(EXAMPLE, 'setup.sh')], { env, encoding: 'utf8' });
    assert.equal(first.status, 0, first.stderr);
    const cert = readFileSync(path.join(dir, 'tls/cert.pem'), 'utf8');
    const second = spawnSync('sh', [path.join(EXAMPLE, 'setup.sh')], { env, encoding: 'utf8' });
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stdout, /^kept .*key\.pem/m);
    assert.match(second.stdout, /^updated alice@example\.test in /m);
    assert.equal(readFileSync(path.join(dir, 'tls/cert.pem'), 'utf8'), cert);
    assert.match(readFileSync(path.join(dir, 'users.passwd'), 'utf8'), /^alice@example\.test:\$scrypt\$[^\n]+\n$/);

    // The example's config with each fixed port replaced by a free one, everything else as it is.
    for (const k of Object.keys(port) as Array<keyof typeof port>) port[k] = await freePort();
    let text = readFileSync(path.join(EXAMPLE, 'portcullis.yaml'), 'utf8');
    const doc = parse(text);
    assert.deepEqual(doc.listen.map((l: { port: number }) => l.port), [FIXED.mx, FIXED.submission]);
    doc.listen[0].port = port.mx;
    doc.listen[1].port = port.submission;
    text = stringify(doc);
    const replaced = text.replaceAll(`127.0.0.1:${FIXED.internal}`, `127.0.0.1:${port.internal}`).replaceAll(`127.0.0.1:${FIXED.sink}`, `127.0.0.1:${port.sink}`);
    assert.equal(replaced.split(`127.0.0.1:${port.internal}`).length - 1, 2, 'both hosted domains go to the internal server');
    assert.equal(replaced.split(`127.0.0.1:${port.sink}`).length - 1, 1, 'the smart host is the internet sink');
    assert.ok(text.includes(`127.0.0.1:${FIXED.dns}`), 'the block list server');
    const withDns = replaced.replaceAll(`127.0.0.1:${FIXED.dns}`, `127.0.0.1:${port.dns}`);
    config = path.join(dir, 'portcullis.yaml');
    writeFileSync(config, withDns);
    // The block list's dnsmasq, as run.sh starts it, on its free port.
    const dnsConf = path.join(dir, 'blocklist.conf');
    writeFileSync(dnsConf, readFileSync(path.join(EXAMPLE, 'blocklist.conf'), 'utf8').replace(`port=${FIXED.dns}`, `port=${port.dns}`));
    const dns = new Child('dnsmasq', '/usr/sbin/dnsmasq', ['--keep-in-foreground', `--conf-file=${dnsConf}`, '--log-facility=-', '--log-queries', ...(process.getuid?.() === 0 ? ['--user=root'] : [])], {}, path.join(dir, 'dnsmasq.out'));
    children.push(dns);
    await dns.waitForOutput(/started, version/);

    internal = new Child('internal-server', process.execPath, [path.join(EXAMPLE, 'internal-server.mjs')], { INTERNAL_PORT: String(port.internal), MAILSTORE: mailstore }, path.join(dir, 'internal.out'));
    children.push(internal);
    await internal.waitForOutput(/internal mail server listening on 127\.0\.0\.1:\d+/);
    await startSink();
    relay = new Child('relay', process.execPath, [CLI, 'start', '--config', config], {}, path.join(dir, 'relay.log'));
    children.push(relay);
    await relay.waitForOutput(/"msg":"ready"/);
  });

  after(async function () {
    await Promise.all(children.map((c) => c.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('(a) accepts inbound mail from anyone for a hosted domain and stores it on the internal server', async function () {
    const r = mx('--local-interface', '127.0.0.9', '--from', 'someone@sender.test', '--to', 'bob@example.test', '--header', 'Subject: step a, inbound');
    assert.equal(r.status, 0, r.out);
    assert.equal(replyTo(r.out, 'RCPT TO:<bob@example.test>'), '250 2.1.5 Recipient OK');
    const queued = /^250 2\.0\.0 Ok: queued as ([0-9A-Z]+)$/.exec(replyTo(r.out, '.'))!;
    assert.ok(queued, r.out);
    await waitFor(() => stored().some((m) => m.includes('Subject: step a, inbound')), 'the message in the mailstore');
    const msg = stored().find((m) => m.includes('Subject: step a, inbound'))!;
    assert.match(msg, new RegExp(`^Received: from .*\\[127\\.0\\.0\\.9\\][^]*by relay\\.example\\.test[^]*id ${queued[1]}`));
    assert.match(internal.output(), /^stored \S+\.eml from=<someone@sender\.test> to=<bob@example\.test> client=127\.0\.0\.1 subject="step a, inbound"$/m);
  });

  it('(a) accepts the second hosted domain too, for the same internal server', async function () {
    const r = mx('--local-interface', '127.0.0.9', '--from', 'someone@sender.test', '--to', 'carol@example.org.test', '--header', 'Subject: step a, second domain');
    assert.match(replyTo(r.out, '.'), /^250 2\.0\.0 Ok: queued as /, r.out);
    await waitFor(() => /to=<carol@example\.org\.test> .*subject="step a, second domain"/.test(internal.output()), 'the message on the internal server');
  });

  it('(a) refuses an unknown user of a hosted domain at RCPT with 550 5.1.1, so nothing is queued or bounced', function () {
    const r = mx('--local-interface', '127.0.0.9', '--from', 'someone@sender.test', '--to', 'nobody@example.test', '--header', 'Subject: step a, unknown user');
    assert.equal(replyTo(r.out, 'RCPT TO:<nobody@example.test>'), '550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown');
    assert.equal(r.status, 24, 'swaks exits 24 when no recipient was accepted');
  });

  it('(b) refuses to relay for an untrusted address with 550 5.7.1 Unable to relay', function () {
    const r = mx('--local-interface', '127.0.0.9', '--from', 'someone@sender.test', '--to', 'victim@elsewhere.test', '--header', 'Subject: step b, relay attempt');
    assert.equal(replyTo(r.out, 'RCPT TO:<victim@elsewhere.test>'), '550 5.7.1 Unable to relay');
    assert.equal(r.status, 24, 'swaks exits 24 when no recipient was accepted');
  });

  it('(c) relays outbound mail from the internal server address 127.0.0.2 to the internet sink', async function () {
    const r = mx('--local-interface', '127.0.0.2', '--from', 'bob@example.test', '--to', 'friend@elsewhere.test', '--header', 'Subject: step c, outbound');
    assert.equal(replyTo(r.out, 'RCPT TO:<friend@elsewhere.test>'), '250 2.1.5 Recipient OK');
    assert.match(replyTo(r.out, '.'), /^250 2\.0\.0 Ok: queued as /, r.out);
    await waitFor(() => sinkLines().includes('internet got from=<bob@example.test> to=<friend@elsewhere.test> client=127.0.0.1 subject="step c, outbound"'), 'the message at the internet sink');
  });

  it('(d) relays for alice after STARTTLS and AUTH on the submission port', async function () {
    const r = submission('--tls', ...ALICE, '--from', 'alice@example.test', '--to', 'dave@elsewhere.test', '--header', 'Subject: step d, submission');
    assert.equal(r.status, 0, r.out);
    assert.equal(replyTo(r.out, 'STARTTLS'), '220 2.0.0 Ready to start TLS');
    assert.match(r.out, /^<~ {2}250-AUTH PLAIN LOGIN$/m);
    assert.match(r.out, /^<~ {2}235 2.7.0 Authentication successful$/m);
    assert.match(replyTo(r.out, '.'), /^250 2\.0\.0 Ok: queued as /, r.out);
    await waitFor(() => sinkLines().some((l) => l.includes('from=<alice@example.test> to=<dave@elsewhere.test>') && l.includes('subject="step d, submission"')), 'the message at the internet sink');
  });

  it('(d) offers AUTH on the MX port too, after STARTTLS (auth: optional)', async function () {
    const r = mx('--tls', ...ALICE, '--from', 'alice@example.test', '--to', 'erin@elsewhere.test', '--header', 'Subject: step d, via the MX port');
    assert.match(r.out, /^<~ {2}235 2.7.0 Authentication successful$/m);
    assert.match(replyTo(r.out, '.'), /^250 2\.0\.0 Ok: queued as /, r.out);
    await waitFor(() => sinkLines().some((l) => l.includes('subject="step d, via the MX port"')), 'the message at the internet sink');
  });

  it('(e) offers no AUTH before STARTTLS, and the submission port refuses MAIL without AUTH with 530 5.7.0', function () {
    const noTls = submission(...ALICE, '--from', 'alice@example.test', '--to', 'dave@elsewhere.test', '--header', 'Subject: step e, no TLS');
    assert.match(noTls.out, /^\*\*\* Host did not advertise authentication$/m);
    assert.doesNotMatch(noTls.out, /AUTH PLAIN/);
    assert.equal(noTls.status, 28, 'swaks exits 28 when authentication fails');
    const noAuth = submission('--from', 'alice@example.test', '--to', 'dave@elsewhere.test', '--header', 'Subject: step e, no AUTH');
    assert.equal(replyTo(noAuth.out, 'MAIL FROM:<alice@example.test>'), '530 5.7.0 Authentication required');
  });

  it('(e) answers an AUTH sent anyway before STARTTLS with 500, on both listeners', async function () {
    for (const p of [port.submission, port.mx]) {
      const smtp = await RawSmtp.connect(p, '127.0.0.1', '127.0.0.9');
      try {
        assert.match(await smtp.read(), /^220 relay\.example\.test /);
        assert.doesNotMatch(await smtp.cmd('EHLO client.test'), /AUTH/);
        assert.equal(await smtp.cmd(`AUTH PLAIN ${Buffer.from(`\0alice@example.test\0${PASSWORD}`).toString('base64')}`), '500 5.5.2 Command not recognized');
      } finally {
        smtp.close();
      }
    }
  });

  it('(e) refuses a wrong password with 535 5.7.8', function () {
    const r = submission('--tls', '--auth-user', 'alice@example.test', '--auth-password', 'not-the-password', '--from', 'alice@example.test', '--to', 'dave@elsewhere.test');
    assert.match(r.out, /^<~\* 535 5\.7\.8 Authentication credentials invalid$/m);
    assert.equal(r.status, 28);
  });

  it("(f) refuses alice sending as someone else's address with 553 5.7.1", function () {
    const r = submission('--tls', ...ALICE, '--from', 'bob@example.org.test', '--to', 'dave@elsewhere.test', '--header', 'Subject: step f, spoofed sender');
    assert.match(r.out, /^<~ {2}235 2.7.0 Authentication successful$/m);
    assert.equal(replyTo(r.out, 'MAIL FROM:<bob@example.org.test>'), '553 5.7.1 Sender address <bob@example.org.test> does not belong to user alice@example.test');
  });

  it('(g) passes every case of the open-relay self-test from an untrusted address', function () {
    const r = portcullis('relay-test', `127.0.0.1:${port.mx}`, '--domain', 'example.test', '--local-address', '127.0.0.9');
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /^\d+ PASS, 0 FAIL, 0 WARN: nothing was relayed$/m);
    assert.match(r.out, /^1 +control .* 250 2.1.5 Recipient OK +PASS$/m);
    assert.doesNotMatch(r.out, /(FAIL|WARN|ERROR)$/m);
  });

  it('(g) reports relaying from the trusted address 127.0.0.2, which may send anywhere', function () {
    const r = portcullis('relay-test', `127.0.0.1:${port.mx}`, '--domain', 'example.test', '--local-address', '127.0.0.2');
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /^2 +plain +.* 250 2.1.5 Recipient OK +FAIL$/m);
    assert.match(r.out, /^\d+ PASS, \d+ FAIL, 0 WARN: OPEN RELAY: plain, /m);
  });

  it('(h) lists an empty queue, then a message waiting for the stopped internet sink, delivered after a flush', async function () {
    let r = portcullis('queue', 'list', '--config', config);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /^0 messages in the queue$/m);

    await sink.stop();
    const sent = mx('--local-interface', '127.0.0.2', '--from', 'bob@example.test', '--to', 'later@elsewhere.test', '--header', 'Subject: step h, queued');
    const id = /^250 2\.0\.0 Ok: queued as ([0-9A-Z]+)$/.exec(replyTo(sent.out, '.'))?.[1];
    assert.ok(id, sent.out);
    await waitFor(() => /retry in \d+s/.test(portcullis('queue', 'list', '--config', config).out), 'the message deferred');
    r = portcullis('queue', 'list', '--config', config);
    assert.match(r.out, new RegExp(`^${id} +\\d+ +\\d+s +1 +retry in \\d+s +bob@example\\.test +later@elsewhere\\.test +.*ECONNREFUSED`, 'm'));
    assert.match(r.out, /^1 message in the queue$/m);

    await startSink();
    r = portcullis('queue', 'flush', '--config', config);
    assert.equal(r.out.trim(), '1 message(s) due now');
    await waitFor(() => sinkLines().some((l) => l.includes('subject="step h, queued"')), 'the message at the restarted sink');
    await waitFor(() => /^0 messages in the queue$/m.test(portcullis('queue', 'list', '--config', config).out), 'an empty queue');
  });

  it('(i) refuses a client on the block list at MAIL FROM with 554 5.7.1, naming the list', function () {
    const r = mx('--from', 'spammer@outside.test', '--to', 'bob@example.test', '--local-interface', '127.0.0.66');
    assert.equal(replyTo(r.out, 'MAIL FROM:<spammer@outside.test>'), '554 5.7.1 Service unavailable; client [127.0.0.66] blocked using the example block list');
  });

  it('(j) refuses the 11th simultaneous connection from one address with 421 4.7.0, and still serves the internal server', async function () {
    const held: RawSmtp[] = [];
    try {
      for (let i = 0; i < 10; i++) {
        const c = await RawSmtp.connect(port.mx, '127.0.0.1', '127.0.0.67');
        held.push(c);
        assert.match(await c.read(), /^220 /);
      }
      const over = await RawSmtp.connect(port.mx, '127.0.0.1', '127.0.0.67');
      held.push(over);
      assert.equal(await over.read(), '421 4.7.0 Too many connections from your address, try again later');
      const trusted = await RawSmtp.connect(port.mx, '127.0.0.1', '127.0.0.2');
      held.push(trusted);
      assert.match(await trusted.read(), /^220 /);
    } finally {
      for (const c of held) c.close();
    }
  });

  it('delivered exactly the accepted messages, each once, and nothing that was refused', function () {
    const subjects = (texts: string[]) => texts.map((t) => /subject="([^"]*)"|^Subject: (.*)$/m.exec(t)).map((m) => m?.[1] ?? m?.[2]?.trim()).sort();
    assert.deepEqual(subjects(stored()), ['step a, inbound', 'step a, second domain']);
    assert.deepEqual(subjects(sinkLines()), ['step c, outbound', 'step d, submission', 'step d, via the MX port', 'step h, queued']);
  });
});
