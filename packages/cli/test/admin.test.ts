import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { copyFileSync } from 'node:fs';
import { CaptureServer, RawSmtp, selfSignedFiles } from '@portcullis/testkit';
import { verifyPassword } from '@portcullis/relay-policy';
import { cleanupDirs, cliMain, freePort, killAll, relayYaml, runCli, startCli, tempDir, writeConfig } from './helpers.js';

describe('admin commands', function () {
  this.timeout(60_000);
  afterEach(killAll);
  after(cleanupDirs);

  it('passwd adds and replaces users with scrypt hashes read from stdin, in a 0600 file', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'users.passwd');
    const run = (user: string, password: string, extra: string[] = []) =>
      spawnSync(process.execPath, [cliMain, 'passwd', file, user, ...extra], { input: password + '\n', encoding: 'utf8' });
    assert.equal(run('alice@example.com', 's3cret', ['--domains', 'example.com,example.org']).stdout, `added alice@example.com in ${file}\n`);
    assert.equal(run('bob@example.com', 'other').status, 0);
    assert.equal(run('alice@example.com', 'changed').stdout, `updated alice@example.com in ${file}\n`);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    assert.equal(lines.length, 2);
    const alice = lines.find((l) => l.startsWith('alice@example.com:'))!;
    assert.doesNotMatch(readFileSync(file, 'utf8'), /s3cret|changed|other/);
    assert.equal(await verifyPassword('changed', alice.split(':')[1]!), true);
    assert.equal(await verifyPassword('s3cret', alice.split(':')[1]!), false);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(run('carol@example.com', '').status, 1, 'an empty password is refused');
  });

  it('tls selfsigned writes a key (0600) and a certificate for the given name', async () => {
    const dir = tempDir();
    const r = await runCli(['tls', 'selfsigned', '--out', dir, '--name', 'relay.example.com', '--days', '30']);
    assert.equal(r.code, 0, r.stderr);
    const cert = new X509Certificate(readFileSync(path.join(dir, 'cert.pem')));
    assert.match(cert.subject, /CN=relay\.example\.com/);
    assert.match(cert.subjectAltName ?? '', /DNS:relay\.example\.com/);
    assert.equal(statSync(path.join(dir, 'key.pem')).mode & 0o777, 0o600);
  });

  it('queue list / hold / flush / release / delete work against a running relay', async () => {
    const dir = tempDir();
    const port = await freePort();
    const downPort = await freePort();
    const config = writeConfig(dir, 'relay.yaml', relayYaml(port, { 'example.com': `127.0.0.1:${downPort}` }, { extra: 'delivery: { retrySchedule: [1h] }\n' }));
    const relay = startCli(['start', '--config', config]);
    await relay.readyPort();
    const swaks = spawnSync('swaks', ['--server', `127.0.0.1:${port}`, '--from', 'a@client.test', '--to', 'bob@example.com', '--header', 'Subject: queued by swaks'], { encoding: 'utf8' });
    assert.equal(swaks.status, 0, swaks.stdout + swaks.stderr);
    const id = /queued as (\w+)/.exec(swaks.stdout)![1]!;
    let list = '';
    for (let i = 0; i < 50 && !/retry in/.test(list); i++) {
      await new Promise((r) => setTimeout(r, 100));
      list = (await runCli(['queue', 'list', '--config', config])).stdout;
    }
    assert.match(list, new RegExp(`^${id}\\s+\\d+\\s+\\S+\\s+1\\s+retry in \\S+\\s+a@client\\.test\\s+bob@example\\.com\\s+127\\.0\\.0\\.1:${downPort}: .*ECONNREFUSED`, 'm'));
    assert.match(list, /1 message in the queue$/m);
    assert.equal((await runCli(['queue', 'hold', id, '--config', config])).stdout, `${id}: held\n`);
    assert.match((await runCli(['queue', 'list', '--config', config])).stdout, new RegExp(`^${id} .* held `, 'm'));
    const show = JSON.parse((await runCli(['queue', 'show', id, '--config', config])).stdout) as { headers: string; meta: { recipients: string[] } };
    assert.deepEqual(show.meta.recipients, ['bob@example.com']);
    assert.match(show.headers, /Subject: queued by swaks/);
    // The next hop comes up; release makes the message due and it is delivered.
    const sink = await CaptureServer.start({ port: downPort });
    try {
      assert.equal((await runCli(['queue', 'release', id, '--config', config])).stdout, `${id}: released\n`);
      const [msg] = await sink.waitFor(1, 10_000);
      assert.match(msg!.raw.toString(), /Subject: queued by swaks/);
    } finally {
      await sink.close();
    }
    const missing = await runCli(['queue', 'delete', 'NOSUCHID', '--config', config]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no such message/);
    relay.kill('SIGTERM');
    assert.equal((await relay.waitExit()).code, 0);
    // With the relay stopped, the command reads the spool itself.
    const down = await runCli(['queue', 'list', '--config', config]);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /^0 messages in the queue \(relay not running: read from the spool\)$/m);
  });

  it('relay-test finds no open relay in a relay-policy relay and exits 0', async () => {
    const dir = tempDir();
    const port = await freePort();
    const config = writeConfig(dir, 'relay.yaml', `listen: [{ host: 127.0.0.1, port: ${port}, greetingDelay: 0 }]\nspool: { dir: ./spool }\nplugins:\n  - use: relay-policy\n    with: { domains: { hosted.test: { nexthop: "127.0.0.1:9", tls: none } } }\n`);
    const relay = startCli(['start', '--config', config]);
    await relay.readyPort();
    const r = await runCli(['relay-test', `127.0.0.1:${port}`, '--domain', 'hosted.test', '--local-address', '127.0.0.9'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /0 FAIL/);
    writeFileSync(path.join(dir, 'relay-test.txt'), r.stdout);
  });

  it('reloads the TLS certificate on SIGHUP without stopping', async () => {
    const dir = tempDir();
    const first = await selfSignedFiles('relay.test');
    copyFileSync(first.key, path.join(dir, 'key.pem'));
    copyFileSync(first.cert, path.join(dir, 'cert.pem'));
    const port = await freePort();
    const config = writeConfig(dir, 'relay.yaml', `listen: [{ host: 127.0.0.1, port: ${port}, tls: starttls, greetingDelay: 0 }]\ntls: { key: ./key.pem, cert: ./cert.pem }\nspool: { dir: ./spool }\n`);
    const relay = startCli(['start', '--config', config]);
    await relay.readyPort();
    const fingerprint = async () => {
      const c = await RawSmtp.connect(port);
      await c.read();
      await c.cmd('EHLO client.test');
      await c.cmd('STARTTLS');
      const fp = (await c.startTls()).getPeerCertificate().fingerprint256;
      c.close();
      return fp;
    };
    const before = await fingerprint();
    const second = await selfSignedFiles('relay.test');
    copyFileSync(second.key, path.join(dir, 'key.pem'));
    copyFileSync(second.cert, path.join(dir, 'cert.pem'));
    relay.kill('SIGHUP');
    await relay.waitFor('the reload log line', () => relay.logs().find((l) => l['msg'] === 'configuration reloaded: new sessions use it'));
    const after = await fingerprint();
    assert.notEqual(after, before);
    assert.equal(after, new X509Certificate(readFileSync(second.cert)).fingerprint256);
    assert.equal(relay.exited, undefined, 'still running');
  });
});
