import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { freePort } from '../src/index.js';

// freePort hands out ports an outgoing connection cannot take before the test's server listens:
// below the kernel's range for local ports of outgoing connections, free when handed out, and not
// the same port twice in a row.
describe('freePort', () => {
  const [lo] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number) as [number];

  it('gives 200 different ports below the ephemeral range, each one a server can listen on', async () => {
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const port = await freePort();
      assert.ok(port >= 10_000 && port < lo, `port ${port} is outside 10000-${lo - 1}`);
      assert.ok(!seen.has(port), `port ${port} handed out twice`);
      seen.add(port);
    }
    const last = [...seen].at(-1)!;
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(last, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('never hands out a port something listens on', async () => {
    // Occupy a stretch of candidates; none of them may come back.
    const servers: net.Server[] = [];
    const taken = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const port = await freePort();
      const s = net.createServer();
      await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', resolve));
      servers.push(s);
      taken.add(port);
    }
    try {
      for (let i = 0; i < 100; i++) assert.ok(!taken.has(await freePort()));
    } finally {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    }
  });
});
