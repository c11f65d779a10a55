import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { RawSmtp, sendMail } from '@portcullis/testkit';
import { cleanupDirs, freePort, isListening, killAll, startCli, tempDir } from './helpers.js';

describe('portcullis demo', () => {
  afterEach(async () => {
    await killAll();
    cleanupDirs();
  });

  it('relays mail for demo.example to its own next hop, which prints it on stdout; SIGTERM stops it', async () => {
    const [port, nexthopPort] = [await freePort(), await freePort()];
    const dir = tempDir();
    const cli = startCli(['demo', '--port', String(port), '--nexthop-port', String(nexthopPort), '--spool', 'spool'], { cwd: dir });
    await cli.waitFor('the banner', () => cli.stdout.includes('Stop with Ctrl-C.'));
    assert.ok(cli.stdout.includes(`swaks --server 127.0.0.1:${port} --to user@demo.example --from you@example.org`), cli.stdout);
    assert.ok(cli.stdout.includes(`  spool      ${path.join(dir, 'spool')}\n`), cli.stdout);
    assert.ok(existsSync(path.join(dir, 'spool', 'queue')));

    const smtp = await RawSmtp.connect(port);
    try {
      assert.match(await smtp.read(), /^220 relay\.demo\.example ESMTP/);
    } finally {
      smtp.close();
    }

    const sent = await sendMail({ port, from: 'you@example.org', to: 'user@demo.example', subject: 'Hello from the demo test', text: 'first line\nsecond line' });
    assert.equal(sent.code, 250, sent.response);
    const printed = await cli.waitFor('the message on stdout', () => {
      const i = cli.stdout.indexOf('Message 1 delivered to the next hop');
      const end = cli.stdout.indexOf('\n' + '-'.repeat(72) + '\n', i);
      return i >= 0 && end > i && cli.stdout.slice(i, end);
    });
    assert.ok(printed.includes(`(127.0.0.1:${nexthopPort})`), printed);
    assert.ok(printed.includes('  MAIL FROM: <you@example.org>\n  RCPT TO:   <user@demo.example>\n'), printed);
    assert.match(printed, /^ {2}\| Received: from client\.test \(\[127\.0\.0\.1\]\)$/m);
    assert.match(printed, /^ {2}\| Subject: Hello from the demo test$/m);
    assert.match(printed, /^ {2}\| first line\n {2}\| second line$/m);

    // Not an open relay, even in the demo.
    const refused = await sendMail({ port, from: 'you@example.org', to: 'someone@example.net' });
    assert.equal(refused.code, 550, refused.response);
    assert.match(refused.response, /5\.7\.1 Unable to relay/);

    // stdout is for people; the logs are JSON lines on stderr.
    await cli.waitFor('two transaction log lines on stderr', () => cli.logs('stderr').filter((l) => l['msg'] === 'transaction').length >= 2);
    for (const l of cli.stdout.split('\n')) assert.ok(!l.startsWith('{'), `a JSON line on stdout: ${l}`);
    const lines = cli.stderr.split('\n').filter(Boolean);
    for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `not a JSON line on stderr: ${l}`);

    cli.kill('SIGTERM');
    assert.deepEqual(await cli.waitExit(5_000), { code: 0, signal: null });
    assert.equal(await isListening(port), false);
    assert.equal(await isListening(nexthopPort), false);
  });

  it('says which port is taken when its next hop cannot start', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
    try {
      const busyPort = (taken.address() as net.AddressInfo).port;
      const relayPort = await freePort();
      const cli = startCli(['demo', '--port', String(relayPort), '--nexthop-port', String(busyPort), '--spool', 'spool'], { cwd: tempDir() });
      assert.equal((await cli.waitExit()).code, 1);
      assert.match(cli.stderr, new RegExp(`cannot start the demo next hop on 127\\.0\\.0\\.1:${busyPort}: .*EADDRINUSE`));
      assert.match(cli.stderr, /choose another port with --nexthop-port/);
      assert.equal(await isListening(relayPort), false);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('rejects a port that is not a number with exit code 64', async () => {
    const r = startCli(['demo', '--port', 'http']);
    assert.equal((await r.waitExit()).code, 64);
    assert.match(r.stderr, /expected a port number from 0 to 65535/);
  });
});
