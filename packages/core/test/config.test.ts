import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfigFile, parseConfig } from '../src/index.js';

function write(name: string, text: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-config-'));
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

function problemOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('no error was thrown');
}

describe('config', () => {
  it('fills safe defaults: loopback listener, 25 MB, 100 recipients, no plugins (so a closed relay)', () => {
    const c = parseConfig({ listen: [{ port: 2525 }] });
    assert.equal(c.listen[0]!.host, '127.0.0.1');
    assert.equal(c.listen[0]!.tls, 'none');
    assert.equal(c.limits.messageSize, 25 * 1024 * 1024);
    assert.equal(c.limits.recipients, 100);
    assert.deepEqual(c.plugins, []);
    assert.equal(c.delivery.maxQueueTime, 5 * 86_400_000);
  });

  it('accepts sizes like 25MB and durations like 30s, 5m, 250ms', () => {
    const c = parseConfig({ listen: [{ port: 1, greetingDelay: '250ms' }], limits: { messageSize: '512KB', idleTimeout: '5m' }, delivery: { retrySchedule: ['30s', '2h'] } });
    assert.equal(c.limits.messageSize, 512 * 1024);
    assert.equal(c.limits.idleTimeout, 300_000);
    assert.equal(c.listen[0]!.greetingDelay, 250);
    assert.deepEqual(c.delivery.retrySchedule, [30_000, 7_200_000]);
  });

  it('names the file, the key path and the expectation for a bad size in YAML', () => {
    const file = write('relay.yaml', 'listen:\n  - { port: 25 }\nlimits:\n  messageSize: 25XB\n');
    const msg = problemOf(() => loadConfigFile(file));
    assert.equal(msg, `${file}: limits.messageSize: expected a size such as 25MB, 512KB or a number of bytes, got "25XB"`);
  });

  it('rejects unknown keys, naming them', () => {
    const file = write('relay.json', JSON.stringify({ listen: [{ port: 25, tsl: 'starttls' }], limts: {} }));
    const msg = problemOf(() => loadConfigFile(file));
    assert.match(msg, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `));
    assert.match(msg, /listen\[0\]: unknown key "tsl"/);
    assert.match(msg, /: unknown key "limts"/);
  });

  it('requires tls key and cert when a listener uses TLS', () => {
    const msg = problemOf(() => parseConfig({ listen: [{ port: 465, tls: 'implicit' }] }, 'x.yaml'));
    assert.equal(msg, 'x.yaml: listen[0].tls: TLS mode "implicit" needs a top-level tls: { key, cert }');
  });

  it('reports YAML syntax errors with the file name', () => {
    const file = write('broken.yaml', 'listen: [ { port: 25 }\n');
    assert.match(problemOf(() => loadConfigFile(file)), new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not valid YAML`));
  });

  it('reports a missing file', () => {
    assert.match(problemOf(() => loadConfigFile('/nonexistent/portcullis.yaml')), /^\/nonexistent\/portcullis\.yaml: cannot read the file/);
  });
});
