import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CaptureServer, freePort, sendMail, waitForPort } from '@portcullis/testkit';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' } });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} in ${cwd}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/**
 * The packages as a user gets them: packed with pnpm (workspace ranges become real ones), installed
 * with plain npm into empty folders from the tarballs (third-party dependencies from the registry).
 */
describe('packages installed one by one with npm', function () {
  this.timeout(600_000);
  let dir: string;
  let tarballs: Record<string, string>;
  let sink: CaptureServer;
  const children: ChildProcess[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-pack-'));
    const out = path.join(dir, 'tarballs');
    mkdirSync(out);
    const packages = ['packages/core', 'packages/cli', 'packages/relay-test', 'packages/portcullis', ...readdirSync(path.join(root, 'plugins')).map((p) => `plugins/${p}`)];
    for (const pkg of packages) sh('pnpm', ['pack', '--pack-destination', out], path.join(root, pkg));
    tarballs = Object.fromEntries(readdirSync(out).map((f) => [f.replace(/-\d+\.\d+\.\d+\.tgz$/, ''), path.join(out, f)]));
    assert.equal(Object.keys(tarballs).length, packages.length);
    sink = await CaptureServer.start({ host: '127.0.0.1' });
  });
  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await sink?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * The relay listens on an address of its own in 127.0.0.0/8: between freePort() and the child's
   * bind another suite running on the machine could take a port of 127.0.0.1, and the mail would go
   * to somebody else's relay.
   */
  const relayHost = `127.${10 + Math.floor(Math.random() * 200)}.${Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
  async function startRelay(project: string, plugins: string): Promise<number> {
    const port = await freePort(relayHost);
    writeFileSync(path.join(project, 'relay.yaml'), `hostname: relay.test\nlisten:\n  - { host: ${relayHost}, port: ${port}, greetingDelay: 0 }\nspool: { dir: ./spool }\nlog: { level: warn }\nplugins:\n${plugins}`);
    const child = spawn(process.execPath, [path.join(project, 'node_modules/@portcullis/cli/dist/main.js'), 'start', '--config', 'relay.yaml'], { cwd: project, stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    await waitForPort(port, relayHost, 20_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${stderr}`);
    });
    return port;
  }

  it('packs each package with real version ranges, LICENSE, and the sources its maps point at', () => {
    const listing = sh('tar', ['-tzf', tarballs['portcullis-relay-policy']!], dir);
    assert.match(listing, /package\/LICENSE/);
    assert.match(listing, /package\/src\/index\.ts/);
    assert.match(listing, /package\/dist\/index\.js\.map/);
    const pkg = JSON.parse(sh('tar', ['-xzOf', tarballs['portcullis-relay-policy']!, 'package/package.json'], dir)) as { peerDependencies: Record<string, string>; repository: unknown; engines: unknown };
    assert.equal(pkg.peerDependencies['@portcullis/core'], '^0.1.0');
    assert.ok(pkg.repository && pkg.engines);
    const cli = JSON.parse(sh('tar', ['-xzOf', tarballs['portcullis-cli']!, 'package/package.json'], dir)) as { dependencies: Record<string, string> };
    assert.deepEqual(Object.keys(cli.dependencies).filter((d) => d.startsWith('@portcullis/')), ['@portcullis/core']);
  });

  it('installs the CLI, core and one plugin with npm, starts a relay and delivers mail through it', async () => {
    const project = path.join(dir, 'with-plugin');
    mkdirSync(project);
    sh('npm', ['init', '-y'], project);
    sh('npm', ['install', tarballs['portcullis-cli']!, tarballs['portcullis-core']!, tarballs['portcullis-relay-policy']!], project);
    const port = await startRelay(project, `  - use: relay-policy\n    with: { domains: { hosted.test: { nexthop: "127.0.0.1:${sink.port}", tls: none } } }\n`);
    const sent = await sendMail({ host: relayHost, port, from: 'a@sender.example', to: 'user@hosted.test', raw: 'Subject: via npm\r\n\r\ninstalled one by one\r\n' });
    assert.equal(sent.code, 250, sent.response);
    const refused = await sendMail({ host: relayHost, port, from: 'a@sender.example', to: 'user@elsewhere.test' });
    assert.equal(refused.code, 550);
    const [m] = await sink.waitFor(1, 15_000);
    assert.deepEqual(m!.to, ['user@hosted.test']);
    assert.match(m!.raw.toString(), /installed one by one/);
  });

  it('runs a user plugin folder (CommonJS, npm init) that imports only @portcullis/core', async () => {
    const project = path.join(dir, 'user-plugin');
    mkdirSync(project);
    sh('npm', ['init', '-y'], project);
    sh('npm', ['install', tarballs['portcullis-cli']!, tarballs['portcullis-core']!], project);
    writeFileSync(
      path.join(project, 'my-policy.js'),
      `const { definePlugin, accept, reject, z } = require('@portcullis/core');\n` +
        `module.exports = definePlugin({\n  name: 'my-policy',\n  options: z.strictObject({ domain: z.string(), port: z.number() }),\n` +
        `  setup: (o) => ({\n    rcpt: (_t, to) => (to.domain === o.domain ? accept() : undefined),\n` +
        `    message: (_t, info) => (/free money/i.test(info.headers.get('subject') ?? '') ? reject(550, '5.7.1', 'spam') : undefined),\n` +
        `    route: (d) => (d === o.domain ? { hosts: [{ host: '127.0.0.1', port: o.port }], tls: 'none' } : undefined),\n  }),\n});\n`,
    );
    const port = await startRelay(project, `  - use: ./my-policy.js\n    with: { domain: mine.test, port: ${sink.port} }\n`);
    const before = sink.messages.length;
    assert.equal((await sendMail({ host: relayHost, port, from: 'a@x.example', to: 'u@mine.test', raw: 'Subject: hello\r\n\r\nfrom a user plugin\r\n' })).code, 250);
    assert.equal((await sendMail({ host: relayHost, port, from: 'a@x.example', to: 'u@mine.test', raw: 'Subject: =?UTF-8?B?RlJFRSBtb25leQ==?=\r\n\r\nx\r\n' })).code, 550);
    const got = await sink.waitFor(before + 1, 15_000);
    assert.match(got.at(-1)!.raw.toString(), /from a user plugin/);
  });

  it('installs the portcullis meta package (the CLI with every stock plugin) and checks a config using them all', () => {
    const project = path.join(dir, 'meta');
    mkdirSync(project);
    sh('npm', ['init', '-y'], project);
    // Every tarball: npm takes the @portcullis/* dependencies of `portcullis` from them, not the registry.
    sh('npm', ['install', ...Object.values(tarballs)], project);
    const plugins = ['relay-policy', 'attachments', 'clamav', 'mx-router', 'mailauth', 'dnsbl', 'limits', 'policy', 'spamassassin', 'greylist', 'recipients'].filter((p) => tarballs[`portcullis-${p}`]);
    writeFileSync(
      path.join(project, 'relay.yaml'),
      `hostname: relay.test\nlisten:\n  - { host: 127.0.0.1, port: 2525 }\nspool: { dir: ./spool }\nplugins:\n` +
        plugins.map((p) => (p === 'relay-policy' ? `  - use: relay-policy\n    with: { domains: { hosted.test: { nexthop: "127.0.0.1:2526" } } }\n` : p === 'dnsbl' ? `  - use: dnsbl\n    with: { zones: [{ zone: bl.example }] }\n` : p === 'recipients' ? `  - use: recipients\n    with: { sources: { users: { list: { addresses: [postmaster@hosted.test] } } }, domains: { hosted.test: [users] } }\n` : `  - use: ${p}\n`)).join(''),
    );
    const out = sh(path.join(project, 'node_modules/.bin/portcullis'), ['check', '--config', 'relay.yaml'], project);
    for (const p of plugins) assert.match(out, new RegExp(p));
    assert.match(sh(path.join(project, 'node_modules/.bin/portcullis'), ['relay-test', '--help'], project), /relay-test/);
  });
});
