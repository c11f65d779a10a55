import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '@portcullis/testkit';
import { Slapd } from './support/slapd.js';

const CLI = fileURLToPath(new URL('../../../packages/cli/dist/main.js', import.meta.url));

describe('recipients: the portcullis command (check --connect, recipients check)', function () {
  this.timeout(60_000);
  let slapd: Slapd;
  let dir: string;
  let config: string;
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 });
  before(async () => {
    slapd = await Slapd.start(await freePort(), [{ uid: 'alice', mail: 'alice@hosted.example', proxyAddresses: ['smtp:a.smith@hosted.example'] }]);
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-recipients-cli-'));
    config = path.join(dir, 'relay.yaml');
    writeFileSync(path.join(dir, 'ldap-password'), `${slapd.password}\n`);
    writeFileSync(
      config,
      JSON.stringify({
        listen: [{ host: '127.0.0.1', port: await freePort() }],
        spool: { dir: './spool' },
        plugins: [
          {
            use: 'recipients',
            with: {
              sources: { extra: { list: { addresses: ['postmaster@hosted.example'] } }, directory: { ldap: { urls: [`ldap://127.0.0.1:${await freePort()}`, slapd.url], base: slapd.suffix, bindDn: slapd.bindDn, passwordFile: 'ldap-password', timeout: '1s' } } },
              domains: { 'hosted.example': ['extra', 'directory'] },
            },
          },
          { use: 'relay-policy', with: { domains: { 'hosted.example': { nexthop: '127.0.0.1:2526' } } } },
        ],
      }),
    );
  });
  after(async () => {
    await slapd?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  it('portcullis check --connect binds to each LDAP URL and reports which failed', () => {
    const r = run('check', '--config', config, '--connect');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Plugin checks:\n {2}ok {3}recipients: hosted\.example: extra \(list\) -> directory \(ldap\)\n/);
    assert.match(r.stdout, /ok {3}recipients: directory: ldap:\/\/127\.0\.0\.1:\d+: FAILED .*; ldap:\/\/127\.0\.0\.1:\d+: bound as cn=relay,dc=hosted,dc=example/);
  });

  it('portcullis recipients check names the source that answered and why', () => {
    const known = run('recipients', 'check', 'A.Smith@hosted.example', '--config', config);
    assert.equal(known.status, 0, known.stderr);
    assert.match(known.stdout, /^A\.Smith@hosted\.example: known by directory: uid=alice,ou=people,dc=hosted,dc=example matches \(\|\(mail=a\.smith@hosted\.example\)\(proxyAddresses=smtp:a\.smith@hosted\.example\)\)\n {2}extra \(list\): unknown: not in list inline\n {2}directory \(ldap\): known: /);
    const listed = run('recipients', 'check', 'postmaster@hosted.example', '--config', config);
    assert.match(listed.stdout, /^postmaster@hosted\.example: known by extra: postmaster@hosted\.example in list inline/);
    const unknown = run('recipients', 'check', 'nobody@hosted.example', '--config', config);
    assert.equal(unknown.status, 0);
    assert.match(unknown.stdout, /^nobody@hosted\.example: unknown: /);
  });

  it('portcullis check --connect exits 1 when no directory answers, and recipients check says it cannot answer', async () => {
    await slapd.stop();
    const r = run('check', '--config', config, '--connect');
    assert.equal(r.status, 1);
    assert.match(r.stdout, /FAIL recipients: directory: /);
    const c = run('recipients', 'check', 'alice@hosted.example', '--config', config, '--fresh');
    assert.equal(c.status, 1);
    assert.match(c.stdout, /^alice@hosted\.example: unavailable by directory: LDAP lookup failed: /);
    await slapd.restart();
  });

  it('lists a plugin\'s commands, and refuses an unknown one with a usage error', () => {
    const r = run('recipients', 'nope', '--config', config);
    assert.equal(r.status, 64);
    assert.match(r.stderr, /Commands of the recipients plugin:\n {2}portcullis recipients check ADDRESS \[--fresh\] \[--json\] --config FILE\n/);
    assert.match(r.stderr, /unknown command "nope"/);
    const none = run('relay-policy', 'x', '--config', config);
    assert.equal(none.status, 64);
    assert.match(none.stderr, /plugin relay-policy offers no commands \(plugins with commands: recipients\)/);
  });
});
