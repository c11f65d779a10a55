import assert from 'node:assert/strict';
import { backendTarget, definePlugin, describeBackendTarget, parseBackendTarget, resolveBackendTarget, z } from '../src/index.js';
import { validatePluginEntries } from '../src/internal.js';

const scanner = { example: '127.0.0.1:3310', socketExample: '/path/to/clamd.ctl' };
const postfix = { example: 'inet:127.0.0.1:8891' };

describe('backend addresses (backendTarget, the one parser of clamav, rspamd, spamassassin, milter and policy)', () => {
  it('reads host:port, a bracketed IPv6 literal and a host name as TCP targets', () => {
    assert.deepEqual(parseBackendTarget('127.0.0.1:3310', scanner), { target: { host: '127.0.0.1', port: 3310 } });
    assert.deepEqual(parseBackendTarget('[::1]:3310', scanner), { target: { host: '::1', port: 3310 } });
    assert.deepEqual(parseBackendTarget('[2001:db8::5]:1', scanner), { target: { host: '2001:db8::5', port: 1 } });
    assert.deepEqual(parseBackendTarget('clamd.internal:65535', scanner), { target: { host: 'clamd.internal', port: 65535 } });
  });

  it("reads Postfix's inet: and inet6: spellings as TCP targets", () => {
    assert.deepEqual(parseBackendTarget('inet:127.0.0.1:8891', postfix), { target: { host: '127.0.0.1', port: 8891 } });
    assert.deepEqual(parseBackendTarget('inet:[::1]:8891', postfix), { target: { host: '::1', port: 8891 } });
    assert.deepEqual(parseBackendTarget('inet6:[::1]:8891', postfix), { target: { host: '::1', port: 8891 } });
    assert.deepEqual(parseBackendTarget('inet:localhost:10023', postfix), { target: { host: 'localhost', port: 10023 } });
  });

  it('reads unix:/path, local:/path and bare absolute or relative paths as sockets, relative ones left as written', () => {
    assert.deepEqual(parseBackendTarget('unix:/run/clamav/clamd.ctl', scanner), { target: { socket: '/run/clamav/clamd.ctl' } });
    assert.deepEqual(parseBackendTarget('unix:private/policy', postfix), { target: { socket: 'private/policy' } });
    assert.deepEqual(parseBackendTarget('local:/run/milter.sock', postfix), { target: { socket: '/run/milter.sock' } });
    assert.deepEqual(parseBackendTarget('/run/rspamd/normal.sock', scanner), { target: { socket: '/run/rspamd/normal.sock' } });
    assert.deepEqual(parseBackendTarget('./clamd.sock', scanner), { target: { socket: './clamd.sock' } });
    assert.deepEqual(parseBackendTarget('../run/clamd.sock', scanner), { target: { socket: '../run/clamd.sock' } });
  });

  it('refuses a missing or out-of-range port, an unbracketed IPv6 literal, spaces and an empty socket path, saying what was expected', () => {
    const scannerText = (v: string) => `expected host:port (127.0.0.1:3310), unix:/path or /path/to/clamd.ctl, got ${JSON.stringify(v)}`;
    for (const bad of ['127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:123456', '::1:3310', 'clamd host:3310', 'clamd', '', 'tcp://127.0.0.1:3310', '[::1]', 'inet:127.0.0.1']) {
      assert.deepEqual(parseBackendTarget(bad, scanner), { problem: scannerText(bad) }, bad);
    }
    assert.deepEqual(parseBackendTarget('nohost', postfix), { problem: 'expected inet:host:port (inet:127.0.0.1:8891) or unix:/path, got "nohost"' });
    assert.deepEqual(parseBackendTarget('unix:', scanner), { problem: 'expected a socket path after unix:' });
    assert.deepEqual(parseBackendTarget('local:', postfix), { problem: 'expected a socket path after local:' });
  });

  it('names the key path (plugins[i].with...) of every bad address in a plugin entry', async () => {
    const plugin = definePlugin({
      name: 'scanner',
      options: z.strictObject({ servers: z.array(backendTarget(scanner)).min(1), fallback: backendTarget(postfix).optional() }),
      setup: () => ({}),
    });
    const problems = await validatePluginEntries(
      [{ use: 'relay-policy' }, { use: 'scanner', with: { servers: ['127.0.0.1:3310', 'unix:', 'localhost'], fallback: 'inet:127.0.0.1:99999' } }],
      { configDir: '/etc/portcullis', file: '/etc/portcullis/relay.yaml', builtins: { scanner: plugin, 'relay-policy': definePlugin({ name: 'relay-policy', setup: () => ({}) }) } as never },
    );
    assert.deepEqual(problems, [
      { path: 'plugins[1].with.servers[1]', message: 'expected a socket path after unix:' },
      { path: 'plugins[1].with.servers[2]', message: 'expected host:port (127.0.0.1:3310), unix:/path or /path/to/clamd.ctl, got "localhost"' },
      { path: 'plugins[1].with.fallback', message: 'expected inet:host:port (inet:127.0.0.1:8891) or unix:/path, got "inet:127.0.0.1:99999"' },
    ]);
  });

  it('gives the parsed targets to the plugin once every address is good', () => {
    const schema = z.strictObject({ servers: z.array(backendTarget(scanner)) });
    assert.deepEqual(schema.parse({ servers: ['[::1]:3310', 'unix:/run/c.sock', './c.sock'] }), { servers: [{ host: '::1', port: 3310 }, { socket: '/run/c.sock' }, { socket: './c.sock' }] });
  });

  it("resolves a relative socket path against the config file's folder, as clamav, rspamd and spamassassin connect to it", () => {
    const schema = z.strictObject({ servers: z.array(backendTarget(scanner)) });
    const { servers } = schema.parse({ servers: ['./clamd.sock', '../run/c.sock', 'unix:sub/c.sock', 'unix:/run/c.sock', '/run/d.sock', '[::1]:3310', '127.0.0.1:3310'] });
    assert.deepEqual(servers.map((t) => resolveBackendTarget(t, '/etc/portcullis')), [
      { socket: '/etc/portcullis/clamd.sock' },
      { socket: '/etc/run/c.sock' },
      { socket: '/etc/portcullis/sub/c.sock' },
      { socket: '/run/c.sock' },
      { socket: '/run/d.sock' },
      { host: '::1', port: 3310 },
      { host: '127.0.0.1', port: 3310 },
    ]);
  });

  it('names a target one way in every plugin: unix:/path, host:port with IPv6 in brackets, inet: for milters and policy services', () => {
    const targets = [{ socket: '/run/c.sock' }, { host: '127.0.0.1', port: 3310 }, { host: '::1', port: 8891 }, { host: 'clamd.internal', port: 3310 }];
    assert.deepEqual(targets.map((t) => describeBackendTarget(t)), ['unix:/run/c.sock', '127.0.0.1:3310', '[::1]:8891', 'clamd.internal:3310']);
    assert.deepEqual(targets.map((t) => describeBackendTarget(t, 'inet:')), ['unix:/run/c.sock', 'inet:127.0.0.1:3310', 'inet:[::1]:8891', 'inet:clamd.internal:3310']);
  });
});
