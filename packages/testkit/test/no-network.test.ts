import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('the test kit without a network', () => {
  // The suite re-runs itself in an empty network namespace, where loopback is down, so a test
  // that talked over a socket would fail there. Skipped inside the namespace (no recursion).
  if (process.env['PORTCULLIS_NO_NETWORK'] === '1') {
    it('runs inside an empty network namespace (nothing can connect, not even to loopback)', async () => {
      const net = await import('node:net');
      const server = net.createServer((c) => c.destroy());
      await new Promise<void>((resolve) => server.once('error', () => resolve()).listen(0, '127.0.0.1', () => resolve()));
      const port = (server.address() as { port?: number } | null)?.port ?? 25;
      const err = await new Promise<Error | undefined>((resolve) => {
        const c = net.connect(port, '127.0.0.1', () => (c.destroy(), resolve(undefined)));
        c.once('error', resolve);
      });
      server.close();
      assert.ok(err, 'a loopback connection must fail here');
    });
    return;
  }
  it('passes all its other tests inside unshare -n', function () {
    this.timeout(120_000);
    const r = spawnSync('unshare', ['-n', 'npx', 'mocha', '--color', 'false'], { cwd: pkg, encoding: 'utf8', env: { ...process.env, PORTCULLIS_NO_NETWORK: '1' } });
    assert.equal(r.error, undefined, `unshare could not run: ${String(r.error)}`);
    const passing = Number(/(\d+) passing/.exec(r.stdout)?.[1] ?? 0);
    assert.equal(r.status, 0, `inside unshare -n:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
    assert.ok(passing >= 30, `only ${passing} tests ran inside the namespace`);
    assert.doesNotMatch(r.stdout, /failing|pending/);
  });
});
