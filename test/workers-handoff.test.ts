import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import tls from 'node:tls';
import path from 'node:path';
import { RawSmtp, freePort, jsonLogLines, pollUntil, RelayProcess, selfSignedFiles } from '@portcullis/testkit';
import { FILL } from '@portcullis/core/internal';
import { adminGet, key, parseMetrics } from './support/admin.js';

/**
 * `workers: 2`, a listener without PROXY protocol: the primary accepts the connection itself,
 * counts the per-address slot and hands the socket to a worker (the first with fewer than FILL open,
 * else the one with the fewest open connections)
 * (packages/core/README.md, "Workers: the primary decides the slot when it accepts"). A second
 * listener with PROXY protocol keeps node:cluster's path (the worker asks after the header), and
 * both count in the one table of the primary.
 */
const LIMIT = 2;
const REFUSAL = '421 4.7.0 Too many connections from your address, try again later';

describe('workers: 2, the primary deciding the per-address slot when it accepts', function () {
  this.timeout(120_000);
  let dir: string;
  let relay: RelayProcess;
  let port: number;
  let proxyPort: number;
  let tlsPort: number;
  let admin: number;
  const lines = () => jsonLogLines(relay.logFile);
  const openPerWorker = async () => {
    const m = parseMetrics((await adminGet(admin, '/metrics')).body);
    return [1, 2].map((w) => m.get(key('portcullis_worker_connections_open', { worker: String(w) })) ?? 0);
  };
  const held: RawSmtp[] = [];
  /** The pid of worker `w` now (its replacement's, once one was logged). */
  const pidOf = (w: number): number => {
    const replaced = lines().filter((l) => String(l['msg']).startsWith(`worker ${w} replaced`)).at(-1);
    return replaced ? (replaced['pid'] as number) : (lines().find((l) => l['msg'] === 'ready: every worker is listening')!['pids'] as number[])[w - 1]!;
  };
  const closeAll = async () => {
    for (const c of held.splice(0)) c.close();
    assert.ok(await pollUntil(async () => (await openPerWorker()).every((n) => n === 0), 10_000), 'every connection closed in the workers');
    // The release notice follows the worker's close by one event-loop turn.
    await new Promise((r) => setTimeout(r, 200));
  };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-handoff-'));
    port = await freePort();
    proxyPort = await freePort();
    tlsPort = await freePort();
    const cert = await selfSignedFiles('relay.test');
    admin = await freePort();
    const file = RelayProcess.write(dir, {
      hostname: 'relay.test',
      workers: 2,
      listen: [
        { host: '127.0.0.1', port, greetingDelay: 0 },
        { host: '127.0.0.1', port: proxyPort, greetingDelay: 0, proxyProtocol: ['127.0.0.0/8'] },
        { host: '127.0.0.1', port: tlsPort, greetingDelay: 0, tls: 'implicit' },
      ],
      tls: { key: cert.key, cert: cert.cert },
      spool: { dir: path.join(dir, 'spool') },
      limits: { connectionsPerIp: LIMIT },
      admin: { enabled: true, port: admin },
      log: { level: 'info' },
      plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: '127.0.0.1:9', tls: 'none' } } } }],
    });
    relay = new RelayProcess(file, port, { logFile: path.join(dir, 'relay.log') });
    await relay.start();
    assert.ok(await pollUntil(() => lines().some((l) => l['msg'] === 'ready: every worker is listening'), 30_000), 'both workers ready');
  });
  afterEach(async () => {
    for (const c of held.splice(0)) c.close();
  });
  after(async () => {
    await relay?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the plain and the implicit-TLS listener from sockets the primary hands over, and the PROXY listener as before', () => {
    const handed = lines().filter((l) => l['msg'] === 'listening (connections accepted by the primary and handed over)');
    const pairs = (rows: unknown[][]) => rows.map((r) => r.join(' ')).sort();
    assert.deepEqual(pairs(handed.map((l) => [l['worker'], l['listener']])), pairs([[1, `127.0.0.1:${port}`], [1, `127.0.0.1:${tlsPort}`], [2, `127.0.0.1:${port}`], [2, `127.0.0.1:${tlsPort}`]]));
    const own = lines().filter((l) => l['msg'] === 'listening');
    assert.deepEqual(own.map((l) => [l['worker'], l['listener']]).sort(), [[1, `127.0.0.1:${proxyPort}`], [2, `127.0.0.1:${proxyPort}`]]);
  });

  it(`writes the exact 421 for a connection the primary counted over the limit, logs it in the worker and counts it once in /metrics`, async () => {
    const { clients, replies } = await RawSmtp.openMany(port, '127.0.0.7', LIMIT + 1);
    held.push(...clients);
    assert.deepEqual(replies.slice(0, LIMIT).map((r) => r.slice(0, 4)), ['220 ', '220 '], replies.join(' | '));
    assert.equal(replies[LIMIT], REFUSAL);
    await clients[LIMIT]!.waitClosed();
    const m = parseMetrics((await adminGet(admin, '/metrics')).body);
    assert.equal(m.get(key('portcullis_connections_refused_total', { listener: String(port), reason: 'connectionsPerIp' })), 1);
    const refusals = lines().filter((l) => l['msg'] === 'connection refused at the gate' && l['client'] === '127.0.0.7');
    assert.equal(refusals.length, 1);
    assert.equal(refusals[0]!['reply'], REFUSAL, 'the reply in the log line');
    assert.ok(typeof refusals[0]!['worker'] === 'number', 'written by a worker, not the primary');
    await closeAll();
  });

  it(`admits exactly ${LIMIT} of ${LIMIT + 1} implicit-TLS connections from one address (handed, the TLS handshake in the worker) and refuses the last with the same 421`, async () => {
    const greetings: string[] = [];
    const sockets: tls.TLSSocket[] = [];
    try {
      for (let i = 0; i <= LIMIT; i++) {
        const s = tls.connect({ host: '127.0.0.1', port: tlsPort, localAddress: '127.0.0.18', rejectUnauthorized: false });
        s.on('error', () => undefined);
        sockets.push(s);
        greetings.push(await new Promise<string>((resolve, reject) => {
          let got = '';
          s.on('data', (d: Buffer) => ((got += d.toString()), got.includes('\r\n') && resolve(got.split('\r\n')[0]!)));
          setTimeout(() => reject(new Error(`no greeting on TLS connection ${i + 1}`)), 10_000).unref();
        }));
      }
      assert.deepEqual(greetings.slice(0, LIMIT).map((g) => g.slice(0, 4)), ['220 ', '220 '], greetings.join(' | '));
      assert.equal(greetings[LIMIT], REFUSAL);
    } finally {
      for (const s of sockets) s.destroy();
    }
    await closeAll();
  });

  it('counts a PROXY-protocol client (asked by the worker after the header) in the same table as the handed connections', async () => {
    const { clients, replies } = await RawSmtp.openMany(port, '127.0.0.9', LIMIT);
    held.push(...clients);
    assert.deepEqual(replies.map((r) => r.slice(0, 4)), ['220 ', '220 ']);
    const viaProxy = await RawSmtp.connect(proxyPort, '127.0.0.1', '127.0.0.10');
    held.push(viaProxy);
    viaProxy.write('PROXY TCP4 127.0.0.9 127.0.0.1 40000 25\r\n');
    assert.equal(await viaProxy.read(), REFUSAL, 'the third connection of 127.0.0.9, counted across both paths');
    await closeAll();
  });

  it(`fills worker 1 to ${FILL} open connections, then puts each new one on the worker with the fewest open (least connections, not turns)`, async () => {
    const hold = async (client: string) => {
      const c = await RawSmtp.connect(port, '127.0.0.1', client);
      held.push(c);
      assert.match(await c.read(), /^220 /);
      return c;
    };
    await hold('127.0.0.11');
    assert.deepEqual(await openPerWorker(), [1, 0], 'the first on worker 1');
    await hold('127.0.0.12');
    assert.deepEqual(await openPerWorker(), [2, 0], 'the second on worker 1 too: it has fewer than FILL open');
    const c = await hold('127.0.0.13');
    assert.deepEqual(await openPerWorker(), [2, 1], 'worker 1 is full: the third on worker 2');
    await hold('127.0.0.11');
    assert.deepEqual(await openPerWorker(), [2, 2], 'worker 2 fills too');
    await hold('127.0.0.12');
    assert.deepEqual(await openPerWorker(), [3, 2], 'both full, equal: the first');
    await hold('127.0.0.13');
    assert.deepEqual(await openPerWorker(), [3, 3], 'then the one with fewer open');
    // One of worker 2's closes: a new connection goes there (fewer open), though worker 1 is first.
    c.close();
    assert.ok(await pollUntil(async () => (await openPerWorker())[1] === 2, 10_000));
    await new Promise((r) => setTimeout(r, 200));
    await hold('127.0.0.19');
    assert.deepEqual(await openPerWorker(), [3, 3], 'the new one joined the worker with fewer open');
    await closeAll();
  });

  it('hands no new connection to a worker draining on a SIGTERM of its own: they all reach the other worker, and the transaction in DATA still gets its 250', async () => {
    const a = await RawSmtp.connect(port, '127.0.0.1', '127.0.0.15');
    held.push(a);
    assert.match(await a.read(), /^220 /);
    const w = (await openPerWorker()).indexOf(1) + 1;
    assert.ok(w >= 1, 'A is on one worker');
    assert.match(await a.cmd('EHLO client.test'), /^250/);
    assert.match(await a.cmd('MAIL FROM:<a@client.test>'), /^250 /);
    assert.match(await a.cmd('RCPT TO:<x@example.com>'), /^250 /);
    assert.match(await a.cmd('DATA'), /^354 /);
    a.write('Subject: drain\r\n\r\nbody\r\n');
    process.kill(pidOf(w), 'SIGTERM');
    assert.ok(await pollUntil(() => lines().some((l) => l['worker'] === w && String(l['msg']).startsWith('shutting down')), 10_000), 'worker draining');
    await new Promise((r) => setTimeout(r, 300));
    const { clients, replies } = await RawSmtp.openMany(port, '127.0.0.16', 2);
    held.push(...clients);
    assert.deepEqual(replies.map((r) => r.slice(0, 4)), ['220 ', '220 '], replies.join(' | '));
    const open = await openPerWorker();
    assert.equal(open[2 - w], 2, `both on the other worker: ${open}`);
    assert.match(await a.cmd('.'), /^250 /, 'the transaction in DATA finishes on the draining worker');
    assert.ok(await pollUntil(() => lines().some((l) => String(l['msg']).startsWith(`worker ${w} replaced`)), 30_000), 'replaced after its drain');
    await closeAll();
  });

  it('frees the slots of the connections a SIGKILLed worker held, so the same address is admitted again', async () => {
    // One connection from elsewhere first, so that of 127.0.0.14's two the first fills worker 1 and the second goes to worker 2.
    const other = await RawSmtp.connect(port, '127.0.0.1', '127.0.0.20');
    held.push(other);
    assert.match(await other.read(), /^220 /);
    const { clients, replies } = await RawSmtp.openMany(port, '127.0.0.14', LIMIT + 1);
    held.push(...clients);
    assert.equal(replies[LIMIT], REFUSAL, 'at the limit before the kill');
    const open = await openPerWorker();
    assert.deepEqual(open, [2, 1], 'one of 127.0.0.14 held on each worker (and the other address on worker 1)');
    const readyBefore = lines().filter((l) => /^worker 1 replaced/.test(String(l['msg']))).length;
    process.kill(pidOf(1), 'SIGKILL');
    // Exactly one of the two held connections was on worker 1: it dies with it.
    assert.ok(await pollUntil(() => clients.slice(0, LIMIT).filter((c) => c.isClosed).length === 1, 10_000), 'the killed worker\'s connection closed');
    assert.ok(await pollUntil(() => lines().filter((l) => /^worker 1 replaced/.test(String(l['msg']))).length > readyBefore, 30_000), 'worker 1 replaced');
    const again = await RawSmtp.connect(port, '127.0.0.1', '127.0.0.14');
    held.push(again);
    assert.match(await again.read(), /^220 /, 'the dead worker\'s slot is free');
    const over = await RawSmtp.connect(port, '127.0.0.1', '127.0.0.14');
    held.push(over);
    assert.equal(await over.read(), REFUSAL, 'and the survivor\'s still counts: the limit holds at 2');
    const freed = lines().find((l) => l['msg'] === 'worker gone: its connection slots are free again' && l['worker'] === 1);
    assert.equal(freed?.['slots'], 2, "127.0.0.14's and the other address's");
    await closeAll();
  });
});
