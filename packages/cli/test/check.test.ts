import assert from 'node:assert/strict';
import path from 'node:path';
import { cleanupDirs, cliDir, killAll, runCli, sampleConfig, tempDir, writeConfig } from './helpers.js';

const relayPolicyEntry = path.resolve(cliDir, '../../plugins/relay-policy/dist/index.js');

describe('portcullis check', () => {
  // `after`, not `afterEach`: the broken-config cases below run their processes side by side.
  after(async () => {
    await killAll();
    cleanupDirs();
  });

  it('passes on the sample config and prints the resolved plugins and the hook order', async () => {
    const r = await runCli(['check', '--config', sampleConfig]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${sampleConfig.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: the configuration is valid$`, 'm'));
    assert.match(r.stdout, /^ {2}mx {8}127\.0\.0\.1:2525, tls none, auth off, greeting delay 100ms \(default\)$/m);
    assert.match(r.stdout, /^ {2}internal {2}127\.0\.0\.1:2587, tls none, auth off, greeting delay 0ms$/m);
    assert.ok(r.stdout.includes(`Spool: ${path.join(cliDir, 'examples', 'var', 'spool')}\n`), r.stdout);
    assert.ok(r.stdout.includes('  1. relay-policy\n     use: relay-policy\n'), r.stdout);
    assert.ok(r.stdout.includes(`     from: ${relayPolicyEntry} (version `), r.stdout);
    assert.match(r.stdout, /^ {5}hooks: (\w+, )*rcpt, (\w+, )*route(, \w+)*\n {5}timeout: 30s$/m);
    // Every hook, in the order the code runs them (auth before helo: helo runs at MAIL), with the plugins that implement it ('-' for none).
    const hooks = r.stdout.slice(r.stdout.indexOf('Hook order:\n') + 'Hook order:\n'.length).trimEnd().split('\n');
    assert.deepEqual(
      hooks.map((l) => l.trim().split(/\s+/)[0]),
      ['connect', 'auth', 'helo', 'mail', 'rcpt', 'data', 'message', 'route', 'disconnect', 'delivered', 'deferred', 'bounced'],
    );
    for (const l of hooks) assert.match(l, /^ {2}[a-z]+ +(-|relay-policy)$/);
    assert.ok(hooks.includes('  rcpt        relay-policy'), hooks.join('\n'));
    assert.ok(hooks.includes('  route       relay-policy'), hooks.join('\n'));
    assert.ok(hooks.includes('  data        -'), hooks.join('\n'));
    assert.equal(r.stderr, '');
  });

  it('prints the same report as JSON with --json', async () => {
    const r = await runCli(['check', '--config', sampleConfig, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { file: string; plugins: Array<{ name: string; use: string; file: string; hooks: string[] }>; hookOrder: Record<string, string[]> };
    assert.equal(report.file, sampleConfig);
    assert.deepEqual(
      report.plugins.map((p) => [p.name, p.use, p.file]),
      [['relay-policy', 'relay-policy', relayPolicyEntry]],
    );
    assert.ok(report.plugins[0]!.hooks.includes('rcpt') && report.plugins[0]!.hooks.includes('route'), String(report.plugins[0]!.hooks));
    assert.deepEqual(report.hookOrder['rcpt'], ['relay-policy']);
    assert.deepEqual(report.hookOrder['route'], ['relay-policy']);
    assert.deepEqual(report.hookOrder['data'], []);
  });

  it('finds stock plugins by short name when the config file lives outside the project', async () => {
    const dir = tempDir();
    const file = writeConfig(dir, 'portcullis.yaml', 'listen: [{ port: 2525 }]\nplugins:\n  - use: relay-policy\n    with: { trustedNetworks: [10.0.0.0/8] }\n  - use: relay-policy\n    enabled: false\n');
    const r = await runCli(['check', '--config', file], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(`from: ${relayPolicyEntry}`), r.stdout);
    assert.ok(r.stdout.includes('  -  relay-policy (enabled: false, not loaded)'), r.stdout);
  });

  it('prints the exact networks each listener and plugin trusts', async () => {
    const dir = tempDir();
    const file = writeConfig(dir, 'portcullis.yaml', [
      'listen:',
      '  - { name: mx, port: 2525, xclient: [127.0.0.0/8], proxyProtocol: ["::1"] }',
      'plugins:',
      '  - use: relay-policy',
      '    with: { trustedNetworks: [192.168.1.0/24, "fd00::/8", 10.1.2.3], domains: { a.test: { nexthop: "10.0.0.5:25" } } }',
      '  - use: attachments',
      '    with: { trustedNetworks: [10.0.0.0/8] }',
      '',
    ].join('\n'));
    const r = await runCli(['check', '--config', file], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes('  mx  127.0.0.1:2525, tls none, auth off, greeting delay 100ms (default)\n      trusts XCLIENT from: 127.0.0.0/8; XFORWARD from: nobody; PROXY header from: ::1/128\n'), r.stdout);
    assert.ok(r.stdout.includes('     timeout: 30s\n     trusts (trustedNetworks): 192.168.1.0/24, fd00::/8, 10.1.2.3/32\n'), r.stdout);
    assert.ok(r.stdout.includes('  2. attachments\n'), r.stdout);
    assert.match(r.stdout, /^ {5}trusts \(trustedNetworks\): 10\.0\.0\.0\/8$/m);
    const json = JSON.parse((await runCli(['check', '--config', file, '--json'], { cwd: dir })).stdout) as { listeners: Array<{ trusts: Record<string, string[]> }>; plugins: Array<{ trusts: Record<string, string[]> }> };
    assert.deepEqual(json.listeners[0]!.trusts, { xclient: ['127.0.0.0/8'], xforward: [], proxyProtocol: ['::1/128'] });
    assert.deepEqual(json.plugins.map((p) => p.trusts), [{ trustedNetworks: ['192.168.1.0/24', 'fd00::/8', '10.1.2.3/32'] }, { trustedNetworks: ['10.0.0.0/8'] }]);
  });

  it('reports every problem in one run, core and plugins alike, with did-you-mean and quoting hints', async () => {
    const dir = tempDir();
    const file = writeConfig(dir, 'broken.yaml', [
      'listen:',
      '  - { port: 2525, tsl: starttls, host: 127.1, xclient: ["*"], xforward: [not-an-ip], proxyProtocol: [127.1] }',
      'limts: {}',
      'plugins:',
      '  - use: relay-policy',
      '    with: { trustedNetworks: [192.168.1/24, 10.0.0.5/8], domians: {} }',
      '  - use: attachments',
      '    with: { trustedNetworks: ["10.0.0.0/8"], actoin: strip }',
      '  - use: relay-polcy',
      '',
    ].join('\n'));
    const r = await runCli(['check', '--config', file], { cwd: dir });
    assert.equal(r.code, 78, r.stderr);
    const lines = r.stderr.trimEnd().split('\n');
    const f = file;
    assert.deepEqual(lines.sort(), [
      `${f}: listen[0].host: Invalid input: expected string, received number; YAML read this unquoted value as the number 127.1: put it in quotes ("127.1"), and write addresses in full (127.1 is not 127.0.0.1 to every reader)`,
      `${f}: listen[0].xclient[0]: "*" is not accepted: there is no wildcard; to mean every address, write 0.0.0.0/0 (and ::/0 for IPv6)`,
      `${f}: listen[0].xforward[0]: "not-an-ip" is not an IP address; expected a network such as 10.0.0.0/8 or fd00::/8, or one address such as 192.0.2.7`,
      `${f}: listen[0].proxyProtocol[0]: got the number 127.1: YAML reads an unquoted value like 127.1 or 10 as a number; write the full address in quotes, e.g. "127.0.0.1" or "10.0.0.0/8"`,
      `${f}: listen[0]: unknown key "tsl" (did you mean "tls"?)`,
      `${f}: unknown key "limts" (did you mean "limits"?)`,
      `${f}: plugins[0].with.trustedNetworks[0]: "192.168.1/24" is shorthand, which different software reads differently (inet_aton and ipaddr.js read it as 192.168.0.1/24, not 192.168.1.0/24); write all four parts, e.g. 192.168.1.0/24`,
      `${f}: plugins[0].with.trustedNetworks[1]: "10.0.0.5/8" has host bits set: write the network 10.0.0.0/8, or the one address 10.0.0.5/32`,
      `${f}: plugins[0].with: unknown key "domians" (did you mean "domains"?)`,
      `${f}: plugins[1].with: unknown key "actoin" (did you mean "action"?)`,
      `${f}: plugins[2].use: cannot find plugin package "@portcullis/relay-polcy" (looked from ${dir}, ${cliDir}); did you mean "relay-policy"? Otherwise install it with npm or pnpm`,
      'portcullis: 11 problems in the configuration; the configuration is not valid',
    ].sort());
    assert.equal(r.stdout, '');
  });

  it('reports the problems of every plugin when the file itself is valid', async () => {
    const dir = tempDir();
    const file = writeConfig(dir, 'broken.yaml', 'listen: [{ port: 2525 }]\nplugins:\n  - use: relay-policy\n    with: { trustedNetworks: [127.1] }\n  - use: attachments\n    with: { trustedNetworks: [10.0.0.5/8] }\n  - use: relay-policy\n    with: { domains: { a.test: { nexthop: "10.0.0.5:25", tsl: none } } }\n');
    const r = await runCli(['check', '--config', file], { cwd: dir });
    assert.equal(r.code, 78, r.stderr);
    assert.equal(
      r.stderr,
      [
        `${file}: plugins[0].with.trustedNetworks[0]: got the number 127.1: YAML reads an unquoted value like 127.1 or 10 as a number; write the full address in quotes, e.g. "127.0.0.1" or "10.0.0.0/8"`,
        `${file}: plugins[1].with.trustedNetworks[0]: "10.0.0.5/8" has host bits set: write the network 10.0.0.0/8, or the one address 10.0.0.5/32`,
        `${file}: plugins[2].with.domains.a.test: unknown key "tsl" (did you mean "tls"?)`,
        'portcullis: 3 problems in the configuration; the configuration is not valid',
        '',
      ].join('\n'),
    );
  });

  describe('on a broken config, names the file, the key path and what was expected, and exits 78', function () {
    // Every case's process starts at once in before(): the first test waits for all of them to
    // share two cores, which takes longer than one test's default on a busy machine.
    this.timeout(60_000);

    const cases: Array<{ title: string; yaml: string; line: (file: string) => string; more?: string[] }> = [
      {
        title: 'an unknown top-level key',
        yaml: 'listen: [{ port: 2525 }]\nlisten_addr: 0.0.0.0\n',
        line: (f) => `${f}: unknown key "listen_addr"`,
      },
      {
        title: 'an unknown nested key',
        yaml: 'listen: [{ port: 2525 }]\nlimits: { messageSize: 25MB, maxSize: 10 }\n',
        line: (f) => `${f}: limits: unknown key "maxSize"`,
      },
      {
        title: 'a bad size',
        yaml: 'listen: [{ port: 2525 }]\nlimits: { messageSize: 25XB }\n',
        line: (f) => `${f}: limits.messageSize: expected a size such as 25MB, 512KB or a number of bytes, got "25XB"`,
      },
      {
        title: 'a value of the wrong type',
        yaml: 'listen: [{ port: "twenty-five" }]\n',
        line: (f) => `${f}: listen[0].port: `,
        more: ['expected number'],
      },
      {
        title: "a plugin's own option (relay-policy trustedNetworks)",
        yaml: 'listen: [{ port: 2525 }]\nplugins:\n  - use: relay-policy\n    with: { trustedNetworks: [10.0.0.0/8, not-a-cidr] }\n',
        line: (f) => `${f}: plugins[0].with.trustedNetworks[1]: "not-a-cidr" is not an IP address; expected a network such as 10.0.0.0/8 or fd00::/8, or one address such as 192.0.2.7`,
      },
      {
        title: 'a plugin package that is not installed',
        yaml: 'listen: [{ port: 2525 }]\nplugins:\n  - use: relay-policy\n  - use: no-such-plugin\n',
        line: (f) => `${f}: plugins[1].use: cannot find plugin package "@portcullis/no-such-plugin"`,
        more: [`, ${cliDir})`, 'install it'],
      },
      {
        title: 'a YAML syntax error',
        yaml: 'listen: [{ port: 2525 }\nplugins: [\n',
        line: (f) => `${f}: not valid YAML: `,
        more: ['at line 2, column 1'],
      },
      {
        title: 'TLS files that do not exist',
        yaml: 'listen: [{ port: 2525, tls: starttls }]\ntls: { key: ./tls/key.pem, cert: ./tls/cert.pem }\n',
        line: (f) => `${f}: tls.key: expected a readable PEM file, cannot read ${path.join(path.dirname(f), 'tls', 'key.pem')} (ENOENT)`,
        more: ['tls.cert: expected a readable PEM file'],
      },
    ];
    // One process per case, all started at once: the cases are independent and each takes a Node start-up.
    const results = new Map<string, Promise<{ file: string; code: number | null; stdout: string; stderr: string }>>();
    before(() => {
      for (const c of cases) {
        const dir = tempDir();
        const file = writeConfig(dir, 'broken.yaml', c.yaml);
        // A relative --config: the message still names the absolute path.
        const run = runCli(['check', '--config', 'broken.yaml'], { cwd: dir, timeoutMs: 30_000 }).then((r) => ({ ...r, file }));
        run.catch(() => undefined);
        results.set(c.title, run);
      }
    });

    for (const c of cases) {
      it(c.title, async () => {
        const r = await results.get(c.title)!;
        const file = r.file;
        assert.equal(r.code, 78, `exit code; stderr:\n${r.stderr}`);
        assert.equal(r.stdout, '');
        const lines = r.stderr.split('\n');
        assert.ok(lines.some((l) => l.startsWith(c.line(file))), `expected a line starting with\n  ${c.line(file)}\nin stderr:\n${r.stderr}`);
        for (const m of c.more ?? []) assert.ok(r.stderr.includes(m), `expected ${JSON.stringify(m)} in stderr:\n${r.stderr}`);
        assert.match(r.stderr, /^portcullis: \d+ problems? in the configuration; the configuration is not valid$/m);
      });
    }

    it('a config file that does not exist', async () => {
      const dir = tempDir();
      const r = await runCli(['check', '--config', 'missing.yaml'], { cwd: dir });
      assert.equal(r.code, 78);
      assert.ok(r.stderr.startsWith(`${path.join(dir, 'missing.yaml')}: cannot read the file: ENOENT`), r.stderr);
    });
  });

  it('exits 64 on a usage error', async () => {
    const r = await runCli(['check']);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /required option '-c, --config <file>' not specified/);
    const r2 = await runCli(['frobnicate']);
    assert.equal(r2.code, 64);
    assert.match(r2.stderr, /unknown command 'frobnicate'/);
  });
});
