import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { controlRequest } from '@portcullis/core/internal';
import { CaptureServer, HeapProbe, RawSmtp, freePort, RelayProcess } from '@portcullis/testkit';
import { Clamd } from '../plugins/clamav/test/support/clamd.js';

/**
 * Issue 17: a configuration reload leaks nothing, with every stock plugin on. The relay runs as
 * users run it (the CLI); reloads go through its control socket (what `portcullis reload` does);
 * the heap is read after a full GC through the test's SIGUSR2 probe. Retired plugin generations
 * are closed 30 s after a reload (the grace period for sessions still using them), so each reading
 * waits that out.
 */
const RELOADS = Number(process.env['PORTCULLIS_RELOADS'] ?? 2000);
const GRACE_MS = 31_000;

describe('configuration reloads with every stock plugin on (issue 17)', function () {
  this.timeout(300_000);
  let dir: string;
  let sink: CaptureServer;
  let clamd: Clamd;
  let relay: RelayProcess;
  let port: number;
  let probe: HeapProbe;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-reload-'));
    [sink, clamd, port] = await Promise.all([CaptureServer.start(), Clamd.start(), freePort()]);
    const deadDns = await freePort();
    const config = RelayProcess.write(dir, {
      hostname: 'relay.test',
      listen: [{ host: '127.0.0.1', port, greetingDelay: 0 }],
      spool: { dir: path.join(dir, 'spool') },
      dns: { servers: [`127.0.0.1:${deadDns}`], timeout: '300ms' },
      log: { level: 'warn' },
      plugins: [
        { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } }, trustedNetworks: ['127.0.0.2/32'] } },
        { use: 'attachments' },
        { use: 'clamav', with: { servers: [clamd.address] } },
        { use: 'mx-router', with: { smarthost: { nexthop: sink.address, tls: 'none' } } },
        { use: 'limits' },
        { use: 'dnsbl', with: { zones: [{ zone: 'bl.reload.test' }], timeout: '300ms' } },
        { use: 'mailauth', with: { verify: { tempError: 'accept' } } },
      ],
    });
    probe = new HeapProbe(dir);
    relay = new RelayProcess(config, port, { logFile: path.join(dir, 'relay.log'), env: probe.env, nodeArgs: probe.nodeArgs });
    await relay.start();
  });
  after(async () => {
    await relay?.kill();
    await Promise.all([sink?.close(), clamd?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  const reload = async () => {
    const res = await controlRequest(path.join(dir, 'spool', 'control.sock'), { cmd: 'reload' }, 60_000);
    assert.equal(res.ok, true, JSON.stringify(res));
  };

  it(`keeps the heap after a full GC within 5 MB of its start over ${RELOADS} reloads, and still serves`, async () => {
    const pid = relay.pid;
    for (let i = 0; i < 50; i++) await reload(); // warm up: code compiled, caches at their size
    await new Promise((r) => setTimeout(r, GRACE_MS));
    const start = await probe.heapMb(pid);
    const t0 = Date.now();
    for (let i = 0; i < RELOADS; i++) await reload();
    const ms = Date.now() - t0;
    await new Promise((r) => setTimeout(r, GRACE_MS));
    const end = await probe.heapMb(pid);
    console.log(`      ${RELOADS} reloads in ${ms} ms; heap after GC ${start.toFixed(1)} → ${end.toFixed(1)} MB (${(((end - start) * 1024) / RELOADS).toFixed(2)} KB per reload)`);
    assert.ok(end - start < 5, `heap after GC ${start.toFixed(1)} → ${end.toFixed(1)} MB`);
    const c = await RawSmtp.connect(port, '127.0.0.1', '127.0.0.2');
    await c.read();
    await c.cmd('EHLO after.test');
    assert.match(await c.cmd('MAIL FROM:<a@example.com>'), /^250 /);
    assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
    assert.match(await c.cmd('DATA'), /^354 /);
    assert.match(await c.cmd('Subject: after reloads\r\n\r\nfine\r\n.'), /^250 2\.0\.0 /);
    c.close();
    assert.equal(relay.running, true);
  });
});
