import assert from 'node:assert/strict';
import { CaptureServer, RawSmtp, codeOf, sendMail } from '@portcullis/testkit';
import { cleanupDirs, freePort, isListening, killAll, startCli, tempDir, writeConfig } from './helpers.js';

/** A config on port 0 (the `ready` log line tells where), relaying `test.example` to `nexthop`. */
function relayConfig(nexthop: string, extra = ''): string {
  return [
    'hostname: relay.test',
    'listen: [{ host: 127.0.0.1, port: 0, greetingDelay: 0 }]',
    'spool: { dir: ./spool }',
    'delivery: { retrySchedule: [1s] }',
    'plugins:',
    '  - use: relay-policy',
    `    with: { domains: { test.example: { nexthop: "${nexthop}", tls: none } } }`,
    extra,
  ].join('\n');
}

describe('portcullis start', () => {
  const servers: CaptureServer[] = [];
  afterEach(async () => {
    await killAll();
    await Promise.all(servers.splice(0).map((s) => s.close()));
    cleanupDirs();
  });

  it('exits 78 on a broken config without opening its port', async () => {
    const port = await freePort();
    const dir = tempDir();
    // The error is in a plugin's options: found only once plugins load, still before any port opens.
    const file = writeConfig(dir, 'portcullis.yaml', `listen: [{ port: ${port} }]\nplugins:\n  - use: relay-policy\n    with: { trustedNetworks: [not-a-cidr] }\n`);
    const cli = startCli(['start', '--config', file], { cwd: dir });
    const exit = await cli.waitExit();
    assert.equal(exit.code, 78, cli.stderr);
    assert.ok(cli.stderr.includes(`${file}: plugins[0].with.trustedNetworks[0]: "not-a-cidr" is not an IP address`), cli.stderr);
    assert.match(cli.stderr, /nothing was started/);
    assert.ok(!cli.stdout.includes('"listening"'), cli.stdout);
    assert.equal(await isListening(port), false);
  });

  it('exits 78 on a bad size, naming the key', async () => {
    const dir = tempDir();
    const file = writeConfig(dir, 'portcullis.yaml', 'listen: [{ port: 0 }]\nlimits: { messageSize: 25XB }\n');
    const cli = startCli(['start', '--config', file], { cwd: dir });
    assert.equal((await cli.waitExit()).code, 78);
    assert.ok(cli.stderr.startsWith(`${file}: limits.messageSize: expected a size such as 25MB`), cli.stderr);
    assert.equal(cli.stdout, '');
  });

  it('logs JSON lines with a session id and one summary line per transaction, and exits 0 on SIGTERM', async () => {
    const nexthop = await CaptureServer.start();
    servers.push(nexthop);
    const dir = tempDir();
    const cli = startCli(['start', '--config', writeConfig(dir, 'portcullis.yaml', relayConfig(nexthop.address))], { cwd: dir });
    const port = await cli.readyPort();

    const ok = await sendMail({ port, from: 'alice@example.org', to: 'bob@test.example', subject: 'hello', text: 'hi' });
    assert.equal(ok.code, 250, ok.response);
    const refused = await sendMail({ port, from: 'alice@example.org', to: 'carol@elsewhere.example' });
    assert.equal(refused.code, 550, refused.response);
    await nexthop.waitFor(1);

    const summaries = await cli.waitFor('two transaction lines', () => {
      const t = cli.logs().filter((l) => l['msg'] === 'transaction');
      return t.length >= 2 && t;
    });
    const accepted = summaries.find((l) => l['verdict'] === 'accepted')!;
    assert.equal(typeof accepted['session'], 'string');
    assert.deepEqual(accepted['rcpts'], ['bob@test.example']);
    assert.equal(accepted['from'], 'alice@example.org');
    assert.match(String(accepted['reply']), /^250 /);
    const rejected = summaries.find((l) => l['verdict'] !== 'accepted')!;
    assert.deepEqual(rejected['rejectedRcpts'], ['carol@elsewhere.example']);
    assert.notEqual(rejected['session'], accepted['session']);
    for (const l of cli.logs()) assert.equal(l['service'], 'portcullis');

    const t0 = Date.now();
    cli.kill('SIGTERM');
    const exit = await cli.waitExit(5_000);
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 5_000);
    assert.equal(await isListening(port), false);
    assert.ok(cli.logs().some((l) => l['msg'] === 'stopped'));
  });

  it('on SIGTERM, lets a transaction in DATA finish and answers it before exiting 0', async () => {
    const nexthop = await CaptureServer.start();
    servers.push(nexthop);
    const dir = tempDir();
    const cli = startCli(['start', '--config', writeConfig(dir, 'portcullis.yaml', relayConfig(nexthop.address))], { cwd: dir });
    const port = await cli.readyPort();

    const smtp = await RawSmtp.connect(port);
    try {
      assert.equal(codeOf(await smtp.read()), 220);
      assert.equal(codeOf(await smtp.cmd('EHLO client.test')), 250);
      assert.equal(codeOf(await smtp.cmd('MAIL FROM:<alice@example.org>')), 250);
      assert.equal(codeOf(await smtp.cmd('RCPT TO:<bob@test.example>')), 250);
      assert.equal(codeOf(await smtp.cmd('DATA')), 354);
      smtp.write('Subject: in flight\r\n\r\nfirst half\r\n');
      cli.kill('SIGTERM');
      await cli.waitFor('the shutting-down log line', () => cli.logs().some((l) => l['msg']?.toString().startsWith('shutting down')));
      assert.equal(await isListening(port), false, 'the listener closes at once');
      smtp.write('second half\r\n.\r\n');
      assert.match(await smtp.read(), /^250 2\.0\.0 Ok: queued as /);
    } finally {
      smtp.close();
    }
    assert.deepEqual(await cli.waitExit(5_000), { code: 0, signal: null });
    const [msg] = await nexthop.waitFor(1, 1_000);
    assert.match(msg!.raw.toString(), /first half\r\nsecond half\r\n$/);
  });

  it('exits at once on a second signal while the graceful stop waits', async () => {
    const dir = tempDir();
    const cli = startCli(['start', '--config', writeConfig(dir, 'portcullis.yaml', relayConfig(`127.0.0.1:${await freePort()}`))], { cwd: dir });
    const port = await cli.readyPort();
    const smtp = await RawSmtp.connect(port);
    try {
      await smtp.read();
      await smtp.cmd('EHLO client.test');
      await smtp.cmd('MAIL FROM:<alice@example.org>');
      await smtp.cmd('RCPT TO:<bob@test.example>');
      assert.equal(codeOf(await smtp.cmd('DATA')), 354);
      smtp.write('Subject: never finished\r\n\r\n');
      cli.kill('SIGTERM');
      await cli.waitFor('the shutting-down log line', () => cli.logs().some((l) => l['msg']?.toString().startsWith('shutting down')));
      // The stop now waits for this DATA, which never ends: a second signal must not wait.
      cli.kill('SIGINT');
      assert.deepEqual(await cli.waitExit(3_000), { code: 130, signal: null });
      assert.ok(cli.logs().some((l) => String(l['msg']).startsWith('second signal')));
    } finally {
      smtp.close();
    }
  });

  it('exits 1 when its port is taken', async () => {
    const taken = await CaptureServer.start();
    servers.push(taken);
    const dir = tempDir();
    const cli = startCli(['start', '--config', writeConfig(dir, 'portcullis.yaml', `listen: [{ port: ${taken.port} }]\n`)], { cwd: dir });
    assert.equal((await cli.waitExit()).code, 1);
    const fatal = cli.logs().find((l) => l['level'] === 60);
    assert.match(String(fatal?.['msg']), /cannot start: .*EADDRINUSE/);
  });
});
