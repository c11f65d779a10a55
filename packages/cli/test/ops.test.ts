import assert from 'node:assert/strict';
import path from 'node:path';
import { SpoolLock } from '@portcullis/core/internal';
import { CaptureServer, sendMail } from '@portcullis/testkit';
import { select, summarize, type QueueEntry } from '../src/queue-command.js';
import { cleanupDirs, freePort, killAll, relayYaml, runCli, startCli, tempDir, writeConfig } from './helpers.js';

interface Row extends QueueEntry {
  state: string;
}

describe('operator commands', function () {
  this.timeout(90_000);
  afterEach(killAll);
  after(cleanupDirs);

  it('queue commands select by sender, recipient, domain and state, with the relay running and stopped; flush leaves held mail alone unless asked', async () => {
    const dir = tempDir();
    const port = await freePort();
    const downPort = await freePort();
    const hop = `127.0.0.1:${downPort}`;
    const file = writeConfig(dir, 'relay.yaml', relayYaml(port, { 'one.test': hop, 'two.test': hop }, { extra: 'delivery: { retrySchedule: [1h] }\n' }));
    const list = async (...sel: string[]) => JSON.parse((await runCli(['queue', 'list', '--json', ...sel, '--config', file])).stdout) as Row[];
    let relay = startCli(['start', '--config', file]);
    await relay.readyPort();
    assert.equal((await sendMail({ port, from: 'alice@a.test', to: 'x@one.test', subject: 'one', text: 'x' })).ok, true);
    assert.equal((await sendMail({ port, from: 'bob@b.test', to: 'y@two.test', subject: 'two', text: 'x' })).ok, true);
    assert.equal((await sendMail({ port, from: 'bob@b.test', to: ['z@two.test', 'w@one.test'], subject: 'both', text: 'x' })).ok, true);
    for (let i = 0; i < 100 && (await list('--state', 'deferred')).length < 3; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal((await list('--state', 'deferred')).length, 3);
    assert.equal((await list('--from', 'bob@*')).length, 2);
    assert.equal((await list('--domain', 'ONE.test')).length, 2);
    assert.equal((await list('--to', 'y@two.test')).length, 1);

    // Running: hold by selection, flush leaves them held, --held releases them too.
    const held = await runCli(['queue', 'hold', '--from', 'bob@b.test', '--config', file]);
    assert.equal(held.code, 0, held.stderr);
    assert.match(held.stdout, /^2 of 2 message\(s\) held$/m);
    const flush = await runCli(['queue', 'flush', '--config', file]);
    assert.equal(flush.stdout, '1 message(s) due now\n2 held message(s) left alone (--held releases them too)\n');
    assert.equal((await list('--state', 'held')).length, 2);
    const summary = JSON.parse((await runCli(['queue', 'summary', '--json', '--config', file])).stdout) as ReturnType<typeof summarize>;
    assert.deepEqual(summary.rows.map((r) => [r.domain, r.total, r.buckets[0]]), [['one.test', 2, 2], ['two.test', 2, 2]]);
    assert.equal(summary.total.total, 3);
    const text = (await runCli(['queue', 'summary', '--config', file])).stdout;
    assert.match(text, /^\s+T 5 10 20 40 80 160 320 640 1280 1280\+$/m);
    assert.match(text, /^\s*TOTAL 3 3 +0 +0 +0 +0 +0 +0 +0 +0 +0$/m);

    relay.kill('SIGTERM');
    assert.equal((await relay.waitExit(20_000)).code, 0);

    // Stopped: the same commands work on the spool directly.
    const offline = await runCli(['queue', 'list', '--config', file]);
    assert.match(offline.stdout, /^3 messages in the queue \(relay not running: read from the spool\)$/m);
    const rel = await runCli(['queue', 'release', '--to', 'y@two.test', '--config', file]);
    assert.equal(rel.code, 0, rel.stderr);
    assert.match(rel.stdout, /^1 of 1 message\(s\) released \(relay not running: spool changed directly\)$/m);
    assert.deepEqual((await list('--state', 'held')).map((r) => r.pending), [['z@two.test', 'w@one.test']]);
    const one = (await list('--from', 'alice@a.test'))[0]!;
    const bounced = await runCli(['queue', 'bounce', one.id, '--config', file]);
    assert.equal(bounced.code, 0, bounced.stderr);
    const after = await list();
    assert.equal(after.length, 3, 'alice\'s message gave way to its bounce');
    assert.ok(after.some((r) => r.from === '' && r.pending[0] === 'alice@a.test'), 'the bounce is queued for alice');
    assert.equal((await runCli(['queue', 'delete', '--config', file])).code, 1, 'delete without ids, a selection or --all is refused');

    // The spool lock: while another process holds it, an offline command waits, then gives up naming the holder.
    const lock = await SpoolLock.acquire(path.join(dir, 'spool'), 'the test');
    try {
      const blocked = await runCli(['queue', 'hold', '--all', '--config', file], { timeoutMs: 20_000 });
      assert.equal(blocked.code, 1);
      assert.match(blocked.stderr, /the spool .* is locked by the test \(pid \d+/);
    } finally {
      await lock.release();
    }

    // Started again with the next hop up: the released message and the bounce go out, the held one stays.
    const sink = await CaptureServer.start({ port: downPort });
    try {
      relay = startCli(['start', '--config', file]);
      await relay.readyPort();
      const got = await sink.waitFor(1, 15_000);
      assert.ok(got.some((m) => m.to.includes('y@two.test')));
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(sink.messages.filter((m) => m.to.includes('z@two.test')).length, 0, 'held mail stays held');
      assert.equal((await list('--state', 'held')).length, 1);
    } finally {
      await sink.close();
    }
  });

  it('status reports listeners, readiness, queue and versions while running, and says NOT RUNNING when stopped', async () => {
    const dir = tempDir();
    const port = await freePort();
    const file = writeConfig(dir, 'relay.yaml', `listen: [{ name: mx, host: 127.0.0.1, port: ${port}, greetingDelay: 0 }]\nspool: { dir: ./spool }\nplugins: [{ use: relay-policy, with: { domains: { example.com: { nexthop: "127.0.0.1:9" } } } }]\n`);
    const relay = startCli(['start', '--config', file]);
    await relay.readyPort();
    const s = await runCli(['status', '--config', file]);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /^relay: running \(pid \d+, up \d+s\), READY$/m);
    assert.match(s.stdout, new RegExp(`^listeners: mx \\(127\\.0\\.0\\.1:${port}\\)$`, 'm'));
    assert.match(s.stdout, /^  ok   spool$/m);
    assert.match(s.stdout, /^queue: 0 message\(s\): 0 due, 0 deferred, 0 held, 0 sending; 0 KiB; oldest 0s$/m);
    assert.match(s.stdout, /^versions: core \d+\.\d+\.\d+, smtp-server 3\.21\.6, node \d+/m);
    relay.kill('SIGTERM');
    await relay.waitExit(20_000);
    const down = await runCli(['status', '--config', file]);
    assert.equal(down.code, 1);
    assert.match(down.stdout, /^relay: NOT RUNNING/m);
  });

  it('--version names the CLI, core, each plugin of the config, smtp-server and Node', async () => {
    const dir = tempDir();
    const file = writeConfig(dir, 'relay.yaml', `listen: [{ port: 2525 }]\nplugins: [{ use: relay-policy }, { use: clamav }]\n`);
    const r = await runCli(['--version', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^portcullis \d+\.\d+\.\d+\n  @portcullis\/cli   \d+\.\d+\.\d+\n  @portcullis\/core  \d+\.\d+\.\d+\n  plugin relay-policy  \d+\.\d+\.\d+\n  plugin clamav  \d+\.\d+\.\d+\n  smtp-server       3\.21\.6\n  node              \d+\.\d+\.\d+\n$/);
    const stock = await runCli(['--version']);
    assert.match(stock.stdout, /plugin attachments {2}\d/);
    assert.match(stock.stdout, /plugin mx-router {2}\d/);
  });

  it('selects and summarizes like qshape, by age bucket', () => {
    const now = Date.parse('2026-01-01T12:00:00Z');
    const e = (id: string, from: string, pending: string[], ageMin: number, hold = false): QueueEntry => ({ id, from, recipients: pending, pending, size: 1, receivedAt: now - ageMin * 60_000, attempts: 1, nextAttemptAt: now + 1, hold, busy: false });
    const q = [e('a', 'x@s.test', ['u@one.test'], 3), e('b', '', ['v@one.test', 'w@two.test'], 30), e('c', 'y@s.test', ['v@two.test'], 2000, true)];
    assert.deepEqual(select(q, { from: '<>' }, now).map((x) => x.id), ['b']);
    assert.deepEqual(select(q, { olderThan: 10 * 60_000 }, now).map((x) => x.id), ['b', 'c']);
    assert.deepEqual(select(q, { youngerThan: 10 * 60_000 }, now).map((x) => x.id), ['a']);
    assert.deepEqual(select(q, { state: 'held' }, now).map((x) => x.id), ['c']);
    assert.deepEqual(select(q, { to: '*@TWO.test', state: 'deferred' }, now).map((x) => x.id), ['b']);
    const s = summarize(q, { now });
    assert.deepEqual(s.rows, [
      { domain: 'one.test', total: 2, buckets: [1, 0, 0, 1, 0, 0, 0, 0, 0, 0] },
      { domain: 'two.test', total: 2, buckets: [0, 0, 0, 1, 0, 0, 0, 0, 0, 1] },
    ]);
    assert.deepEqual(summarize(q, { now, bySender: true }).rows.map((r) => [r.domain, r.total]), [['s.test', 2], ['<>', 1]]);
  });
});
