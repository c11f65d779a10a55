// Runs start.sh as a user would (its ports moved to free ones, its var/ in a temp folder) and checks
// that the two nodes share one per-address limit through Redis and deliver to the internal server.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, sendMail, waitForPort, waitUntil } from '@portcullis/testkit';

const EXAMPLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('examples/cluster: start.sh, two nodes on one Redis', function () {
  this.timeout(60_000);
  let child: ChildProcess;
  let out = '';
  let dir: string;
  const port = { redis: 0, internal: 0, node1: 0, node2: 0 };
  const log = (n: number) => (existsSync(path.join(dir, `node${n}.log`)) ? readFileSync(path.join(dir, `node${n}.log`), 'utf8') : '');

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-cluster-'));
    for (const k of Object.keys(port) as Array<keyof typeof port>) port[k] = await freePort();
    child = spawn('bash', [path.join(EXAMPLE, 'start.sh')], {
      env: { ...process.env, CLUSTER_VAR: dir, REDIS_PORT: String(port.redis), INTERNAL_PORT: String(port.internal), NODE1_PORT: String(port.node1), NODE2_PORT: String(port.node2) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    for (const p of [port.internal, port.node1, port.node2]) await waitForPort(p, '127.0.0.1', 20_000);
    await waitUntil(() => log(1).includes('Redis connected') && log(2).includes('Redis connected'), 'both nodes on Redis', 10_000);
  });
  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const send = (p: number, from: string, i: number) => sendMail({ port: p, localAddress: from, from: `s${i}@outside.test`, to: 'bob@example.test' }).then((r) => r.response);

  it('counts one address across both nodes: the 6th message within 10 minutes is refused by either', async () => {
    for (let i = 0; i < 5; i++) assert.match(await send(i % 2 ? port.node2 : port.node1, '127.0.0.9', i), /^250 /);
    assert.equal(await send(port.node1, '127.0.0.9', 5), '451 4.7.1 Too many messages (address rate limit), try again later');
    assert.equal(await send(port.node2, '127.0.0.9', 6), '451 4.7.1 Too many messages (address rate limit), try again later');
    assert.match(await send(port.node2, '127.0.0.2', 7), /^250 /, 'the exempt internal network');
  });

  it('delivers what each node accepted to the internal server, from its own spool', async () => {
    await waitUntil(() => out.split('\n').filter((l) => l.startsWith('internal got ')).length >= 6, 'six deliveries', 15_000);
    const lines = out.split('\n').filter((l) => l.startsWith('internal got '));
    assert.equal(lines.length, 6);
    assert.equal(lines.filter((l) => l.includes(' from node1.example.test ')).length, 3);
    assert.equal(lines.filter((l) => l.includes(' from node2.example.test ')).length, 3);
    assert.ok(existsSync(path.join(dir, 'node1/spool')) && existsSync(path.join(dir, 'node2/spool')), 'one spool per node');
  });

  it('stops every process on SIGTERM', async () => {
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    await new Promise((r) => setTimeout(r, 300));
    for (const p of [port.redis, port.node1, port.node2]) await assert.rejects(waitForPort(p, '127.0.0.1', 300));
  });
});
