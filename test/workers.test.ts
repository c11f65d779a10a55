import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { buildMessage, CaptureServer, messageIds, RawSmtp, rawTransaction, sendLoad, sendNumbered, sinkRelayConfig, freePort, jsonLogLines, pollUntil, RelayProcess, runCli } from '@portcullis/testkit';
import { adminGet, parseMetrics } from './support/admin.js';




describe('workers: 2 (a primary and two worker processes, via portcullis start)', function () {
  this.timeout(240_000);
  let dir: string;
  let sink: CaptureServer;
  let relay: RelayProcess | undefined;
  let refuse = false;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-workers-'));
    refuse = false;
    sink = await CaptureServer.start({ onRcpt: () => (refuse ? [451, '4.3.2 Not now'] : undefined) });
  });
  afterEach(async () => {
    await relay?.stop();
    relay = undefined;
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const config = (port: number, extra: Record<string, unknown> = {}) => sinkRelayConfig({ port, spoolDir: path.join(dir, 'spool'), nexthop: sink.address, connectionsPerIp: 500, level: 'info' }, { workers: 2, ...extra });

  async function start(extra: Record<string, unknown> = {}) {
    const port = await freePort();
    const file = RelayProcess.write(dir, config(port, extra));
    relay = new RelayProcess(file, port, { logFile: path.join(dir, 'relay.log') });
    await relay.start();
    // The port answers once a first worker listens; ready once the primary says every worker is.
    const ready = await pollUntil(() => jsonLogLines(relay!.logFile).some((l) => l['msg'] === 'ready: every worker is listening'), 60_000);
    assert.ok(ready, `the primary reported every worker ready; its log:\n${readFileSync(relay.logFile, 'utf8').slice(-3000)}`);
    return { port, file };
  }

  it('spreads messages from many connections over both workers, delivers every one, and /metrics counts exactly the messages sent', async () => {
    const adminPort = await freePort();
    const { port } = await start({ admin: { enabled: true, port: adminPort } });
    const { acked, failures } = await sendLoad(port, { prefix: 'spread', total: 300, concurrency: 30 });
    assert.equal(acked.size, 300);
    assert.equal(failures, 0, 'no attempt failed');
    assert.ok(await pollUntil(() => new Set(messageIds(sink)).size === 300, 60_000), `${new Set(messageIds(sink)).size} of 300 delivered`);
    const perWorker = new Map<unknown, number>();
    for (const l of jsonLogLines(relay!.logFile)) if (l['verdict'] === 'accepted') perWorker.set(l['worker'], (perWorker.get(l['worker']) ?? 0) + 1);
    console.log(`      accepted per worker: ${JSON.stringify(Object.fromEntries(perWorker))}`);
    assert.deepEqual([...perWorker.keys()].sort(), [1, 2]);
    assert.equal((perWorker.get(1) ?? 0) + (perWorker.get(2) ?? 0), 300);
    assert.ok(perWorker.get(1)! >= 30 && perWorker.get(2)! >= 30, 'each worker took at least a tenth');
    const m = parseMetrics((await adminGet(adminPort, '/metrics')).body);
    assert.equal(m.get('portcullis_transactions_total{outcome="accepted"}'), 300);
    assert.equal(m.get('portcullis_deliveries_total{class="2.0",outcome="delivered"}'), 300);
    const ready = await adminGet(adminPort, '/readyz');
    assert.equal(ready.status, 200);
    const names = (JSON.parse(ready.body) as { checks: Array<{ name: string }> }).checks.map((c) => c.name);
    assert.ok(names.includes('workers') && names.includes('worker 1: listeners') && names.includes('worker 2: spool'), names.join(', '));
  });

  it('loses no acknowledged message when a worker is SIGKILLed during 2,000 messages: a new worker takes its shard and delivers it', async () => {
    const { port } = await start();
    const victim = () => jsonLogLines(relay!.logFile);
    let killed: number | undefined;
    const { acked } = await sendLoad(port, {
      prefix: 'kill',
      total: 2000,
      concurrency: 20,
      onAck: (n) => {
        if (killed === undefined && n >= 700) {
          const pids = readFileSync('/proc/' + relay!.pid + '/task/' + relay!.pid + '/children', 'utf8').trim().split(/\s+/).map(Number);
          killed = pids[0]!;
          process.kill(killed, 'SIGKILL');
        }
      },
    });
    assert.ok(killed, 'a worker was killed');
    assert.equal(acked.size, 2000, `${acked.size} of 2000 got a 250`);
    const arrived = () => new Set(messageIds(sink));
    await pollUntil(() => [...acked].every((id) => arrived().has(id)), 60_000);
    const missing = [...acked].filter((id) => !arrived().has(id));
    const counts = new Map<string, number>();
    for (const id of messageIds(sink)) counts.set(id, (counts.get(id) ?? 0) + 1);
    const duplicates = [...counts.values()].filter((n) => n > 1).length;
    console.log(`      SIGKILL of worker pid ${killed}: 2000 acknowledged, ${sink.messages.length} deliveries, ${missing.length} missing, ${duplicates} duplicated`);
    assert.deepEqual(missing, []);
    // Only messages in flight at the kill can arrive twice (delivered, not yet marked done).
    assert.ok(duplicates <= 40, `${duplicates} duplicates`);
    const lines = victim();
    assert.ok(lines.some((l) => /^worker \d exited: a new worker takes over its spool shard/.test(String(l['msg'])) && l['signal'] === 'SIGKILL'), 'the primary logged the crash');
    assert.ok(await pollUntil(() => jsonLogLines(relay!.logFile).some((l) => /^worker \d replaced/.test(String(l['msg']))), 20_000), 'the worker was replaced');
  });

  it('backs a crash-looping worker off (0, 0.5, 1, 2 ... 16, 30, 30 s between forks) while the primary and the other worker keep serving, and serves on both again once the kills stop', async function () {
    this.timeout(420_000);
    const { port } = await start();
    const lines = () => jsonLogLines(relay!.logFile);
    const exits = () => lines().filter((l) => l['worker'] === 1 && /^worker 1 exited: a new worker takes over its spool shard/.test(String(l['msg'])));
    const replaced = () => lines().filter((l) => l['worker'] === 1 && l['msg'] === 'worker 1 replaced: its shard is recovered and delivered');
    const firstPid = (lines().find((l) => l['msg'] === 'ready: every worker is listening')!['pids'] as number[])[0]!;
    // A real fault, nine times: SIGKILL worker 1 each time it is up (its replacement reports ready).
    const kills = 9;
    let servedDuringLoop = 0;
    for (let k = 0; k < kills; k++) {
      let pid = firstPid;
      if (k > 0) {
        assert.ok(await pollUntil(() => replaced().length === k, 60_000), `replacement ${k} came up; log:\n${readFileSync(relay!.logFile, 'utf8').slice(-2000)}`);
        pid = replaced()[k - 1]!['pid'] as number;
      }
      process.kill(pid, 'SIGKILL');
      assert.ok(await pollUntil(() => exits().length === k + 1, 20_000), `the primary logged exit ${k + 1}`);
      // While worker 1 waits for its replacement, the relay still takes mail (worker 2).
      if (k >= 6 && (await sendNumbered(port, `loop-${k}@client.test`)) === 'acked') servedDuringLoop++;
    }
    assert.ok(await pollUntil(() => replaced().length === kills, 60_000), 'the last replacement came up');
    const e = exits();
    const r = replaced();
    const waits = e.map((l) => l['restartInMs']);
    console.log(`      waits before each fork: ${waits.join(', ')} ms; exit to ready: ${e.map((l, i) => Date.parse(String(r[i]!['time'])) - Date.parse(String(l['time']))).join(', ')} ms`);
    assert.deepEqual(waits, [0, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    assert.ok(e.every((l) => l['signal'] === 'SIGKILL' && l['level'] === 50), 'each exit is logged as an error with its signal');
    assert.match(String(e[8]!['msg']), /in 30000 ms \(crash loop back-off\)$/);
    // The waits were real: each replacement was ready no sooner than its wait after the exit.
    for (let i = 0; i < kills; i++) {
      const gap = Date.parse(String(r[i]!['time'])) - Date.parse(String(e[i]!['time']));
      assert.ok(gap >= (waits[i] as number) - 5, `fork ${i + 1}: ready ${gap} ms after the exit, wait ${String(waits[i])} ms`);
    }
    assert.equal(relay!.running, true, 'the primary is still running');
    assert.equal(servedDuringLoop, 3, 'worker 2 took mail during the back-off');
    // Kills stopped: the last replacement stays up and takes its share again.
    const acceptedBy = (w: number) => lines().filter((l) => l['verdict'] === 'accepted' && l['worker'] === w).length;
    const before = [acceptedBy(1), acceptedBy(2)];
    const { acked, failures } = await sendLoad(port, { prefix: 'after-loop', total: 40, concurrency: 8 });
    assert.equal(acked.size, 40);
    assert.equal(failures, 0);
    const byWorker = [1, 2].filter((w) => acceptedBy(w) > before[w - 1]!);
    assert.ok(await pollUntil(() => new Set(messageIds(sink)).size >= 43, 30_000), 'every acknowledged message delivered');
    assert.equal(exits().length, kills, 'no further exit');
    assert.deepEqual(byWorker, [1, 2], 'both workers accepted messages after the loop');
  });

  it('portcullis queue list and status see the messages held by both workers', async () => {
    refuse = true;
    const { file, port } = await start({ delivery: { retrySchedule: ['1h'] } });
    const { acked } = await sendLoad(port, { prefix: 'held', total: 40, concurrency: 10 });
    assert.equal(acked.size, 40);
    await pollUntil(() => sink.messages.length === 0 && jsonLogLines(relay!.logFile).filter((l) => l['verdict'] === 'accepted').length === 40, 10_000);
    // Every message has had its first (refused) attempt once `attempts` is 1 everywhere (it counts
    // from the attempt's start) and none is out on an attempt.
    let rows: Array<{ id: string; shard: number; attempts: number; busy: boolean }> = [];
    await pollUntil(() => {
      const r = runCli(['queue', 'list', '--json', '--config', file]);
      rows = r.code === 0 ? (JSON.parse(r.stdout) as typeof rows) : [];
      return rows.length === 40 && rows.every((x) => x.attempts >= 1 && !x.busy);
    }, 20_000);
    assert.equal(rows.length, 40);
    const shards = new Set(rows.map((r) => r.shard));
    assert.deepEqual([...shards].sort(), [1, 2], 'both workers hold some');
    const text = runCli(['queue', 'list', '--config', file]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /40 messages in the queue\n$/);
    // A per-message command finds the message in whichever worker holds it.
    const one = rows.find((r) => r.shard === 2)!;
    const held = runCli(['queue', 'hold', one.id, '--config', file]);
    assert.equal(held.code, 0, held.stderr);
    assert.equal(held.stdout, `${one.id}: held\n`);
    const status = runCli(['status', '--json', '--config', file]);
    const s = JSON.parse(status.stdout) as { running: boolean; queue: { messages: number; held: number }; workers: { configured: number; running: number; each: Array<{ worker: number; queue: { messages: number } }> } };
    assert.equal(s.running, true);
    assert.equal(s.queue.messages, 40);
    assert.equal(s.queue.held, 1);
    assert.deepEqual([s.workers.configured, s.workers.running], [2, 2]);
    assert.equal(s.workers.each.reduce((n, w) => n + w.queue.messages, 0), 40);
    assert.equal(status.code, 0, status.stderr);
    const statusText = runCli(['status', '--config', file]).stdout;
    assert.match(statusText, /^queue: 40 message\(s\): .*1 held/m);
    assert.match(statusText, /^workers: 2 of 2 running; worker 1 \(pid \d+\): \d+ sessions, \d+ queued; worker 2 \(pid \d+\): \d+ sessions, \d+ queued$/m);
  });

  it('releases quarantined attachments with portcullis quarantine release: each is delivered exactly once, with its original bytes, whichever worker quarantined it', async () => {
    const quarantine = path.join(dir, 'quarantine');
    const { file, port } = await start({
      plugins: [
        { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } } } },
        { use: 'attachments', with: { action: 'quarantine', block: ['exe'], quarantine: { dir: quarantine } } },
      ],
    });
    // Four messages, each with different binary bytes, each on its own connection, the four open at
    // once: the primary fills worker 1 with two and gives worker 2 the other two, so both quarantine.
    const programs = Array.from({ length: 4 }, (_, i) => Buffer.concat([Buffer.from(`MZ program ${i}\r\n.\r\n`), randomBytes(3000)]));
    const { clients, replies } = await RawSmtp.openMany(port, '127.0.0.1', 4);
    try {
      assert.deepEqual(replies.map((r) => r.slice(0, 4)), ['220 ', '220 ', '220 ', '220 ']);
      for (const [i, program] of programs.entries()) {
        const raw = await buildMessage({ from: 'alice@sender.test', to: 'bob@example.com', subject: `tool ${i}`, messageId: `<tool-${i}@sender.test>`, attachments: [{ filename: `tool${i}.exe`, content: program, contentType: 'application/octet-stream' }] });
        const { reply } = await rawTransaction(clients[i]!, raw, { from: 'alice@sender.test', rcpt: 'bob@example.com' });
        assert.match(reply, /^250 /);
      }
    } finally {
      for (const c of clients) c.close();
    }
    assert.ok(await pollUntil(() => sink.messages.length === 4, 20_000), 'the four stripped messages arrived');
    assert.ok(sink.messages.every((m) => /An attachment was removed from this message by the mail relay\./.test(m.raw.toString()) && programs.every((p) => !m.raw.toString().includes(p.subarray(0, 45).toString('base64')))), 'each without its attachment');
    const quarantinedBy = new Set(jsonLogLines(relay!.logFile).filter((l) => l['verdict'] === 'accepted').map((l) => l['worker']));
    assert.deepEqual([...quarantinedBy].sort(), [1, 2], 'both workers took some');
    const items = JSON.parse(runCli(['quarantine', 'list', '--json', '--config', file]).stdout) as Array<{ id: string; reason: string }>;
    assert.equal(items.length, 4);

    const rel = runCli(['quarantine', 'release', ...items.map((i) => i.id), '--config', file]);
    assert.equal(rel.code, 0, rel.stderr);
    for (const item of items) assert.match(rel.stdout, new RegExp(`^${item.id}: released as \\w+ to bob@example\\.com$`, 'm'));
    const released = () => sink.messages.filter((m) => /^Subject: Released attachment: /m.test(m.raw.toString()));
    assert.ok(await pollUntil(() => released().length >= 4, 30_000), `${released().length} of 4 released messages arrived`);
    // Delivered and done: nothing left queued in either worker, and no second copy comes later.
    assert.ok(await pollUntil(() => runCli(['queue', 'list', '--json', '--config', file]).stdout.trim() === '[]', 20_000), 'the queue is empty');
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(released().length, 4, 'each release delivered exactly once');
    for (const [i, program] of programs.entries()) {
      const copies = released().filter((m) => m.raw.toString().includes(`filename="tool${i}.exe"`));
      assert.equal(copies.length, 1, `tool${i}.exe: ${copies.length} deliveries`);
      assert.deepEqual(copies[0]!.to, ['bob@example.com']);
      const parsed = await simpleParser(copies[0]!.raw);
      const part = parsed.attachments.find((a) => a.filename === `tool${i}.exe`);
      assert.ok(part, `tool${i}.exe attached`);
      assert.ok(part.content.equals(program), `tool${i}.exe: the bytes delivered are the bytes sent`);
      assert.match(copies[0]!.raw.toString(), new RegExp(`^X-Portcullis-Released: quarantine [\\w-]+ \\(attachments\\) released by `, 'm'));
      assert.match(copies[0]!.raw.toString(), new RegExp(`^In-Reply-To: <tool-${i}@sender\\.test>`, 'm'));
    }
    // The operator action is logged once per item, by the worker that queued it.
    const actions = jsonLogLines(relay!.logFile).filter((l) => /^operator action: quarantine release of /.test(String(l['msg'])));
    assert.deepEqual(actions.map((l) => String(l['msg']).split(' ')[5]).sort(), items.map((i) => i.id).sort());
    assert.ok(actions.every((l) => l['worker'] === 1 || l['worker'] === 2));
    const after = JSON.parse(runCli(['quarantine', 'list', '--json', '--config', file]).stdout) as Array<{ released?: { queueId: string } }>;
    assert.ok(after.every((i) => i.released?.queueId), 'every item is marked released');
  });

  it('a reload under load reaches every worker, with no failed and no lost message', async () => {
    const { file, port } = await start();
    let reloaded: { code: number | null; stdout: string; stderr: string } | undefined;
    const { acked, failures } = await sendLoad(port, {
      prefix: 'reload',
      total: 600,
      concurrency: 10,
      onAck: (n) => {
        if (n === 200) {
          const c = JSON.parse(readFileSync(file, 'utf8')) as { hostname: string };
          c.hostname = 'reloaded.test';
          writeFileSync(file, JSON.stringify(c, null, 2));
          reloaded = runCli(['reload', '--config', file]);
        }
      },
    });
    assert.equal(reloaded?.code, 0, reloaded?.stderr);
    assert.match(reloaded!.stdout, /configuration reloaded; new sessions use plugins: relay-policy/);
    assert.equal(acked.size, 600);
    assert.equal(failures, 0, 'no attempt failed during the reload');
    assert.ok(await pollUntil(() => new Set(messageIds(sink)).size === 600, 60_000), `${new Set(messageIds(sink)).size} of 600 delivered`);
    const lines = jsonLogLines(relay!.logFile);
    const workersReloaded = new Set(lines.filter((l) => l['msg'] === 'configuration reloaded: new sessions use it').map((l) => l['worker']));
    assert.deepEqual([...workersReloaded].sort(), [1, 2]);
    // Messages sent after the reload carry the new name in their Received header, from both workers.
    const late = sink.messages.filter((m) => /Message-ID: <reload-5\d\d@/.test(m.raw.toString()));
    assert.ok(late.length >= 90 && late.every((m) => /by reloaded\.test/.test(m.raw.toString())), 'late messages were received with the new hostname');
    // Plugin options that do not validate: refused once, by the primary, and no worker changes.
    const c = JSON.parse(readFileSync(file, 'utf8')) as { plugins: Array<{ with: Record<string, unknown> }> };
    c.plugins[0]!.with['noSuchOption'] = true;
    writeFileSync(file, JSON.stringify(c, null, 2));
    const refused = runCli(['reload', '--config', file]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /portcullis reload: the running configuration is kept:\n.*portcullis\.json: plugins\[0\]/);
    assert.equal(await sendNumbered(port, 'after-refused@client.test'), 'acked');
    assert.ok(await pollUntil(() => sink.messages.some((m) => /after-refused@client\.test/.test(m.raw.toString()) && /by reloaded\.test/.test(m.raw.toString())), 20_000), 'still running the last good configuration');
  });

  it('holds a per-address limit of 3 connections across both workers: the fourth gets 421 4.7.0, and a slot freed in one worker is usable in the other', async () => {
    const adminPort = await freePort();
    const { port } = await start({ limits: { connectionsPerIp: 3 }, admin: { enabled: true, port: adminPort } });
    const open: RawSmtp[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const c = await RawSmtp.connect(port);
        open.push(c);
        assert.match(await c.read(10_000), /^220 /);
      }
      // The primary put the three on both workers (2 + 1: it fills worker 1 to two first): the limit counts them together.
      const m = parseMetrics((await adminGet(adminPort, '/metrics')).body);
      const perWorker = [m.get('portcullis_worker_connections_open{worker="1"}'), m.get('portcullis_worker_connections_open{worker="2"}')];
      assert.deepEqual([...perWorker].sort(), [1, 2], `open per worker: ${perWorker.join(' / ')}`);
      const fourth = await RawSmtp.connect(port);
      open.push(fourth);
      assert.equal((await fourth.read(10_000)).trim(), '421 4.7.0 Too many connections from your address, try again later');
      open.shift()!.close();
      for (let i = 0; i < 50; i++) {
        const again = await RawSmtp.connect(port);
        const greeting = await again.read(10_000);
        again.close();
        if (greeting.startsWith('220 ')) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.fail('a freed slot was never usable again');
    } finally {
      for (const c of open) c.close();
    }
  });

  it('going from 2 workers to 1 strands no shard: the single relay adopts w1 and w2, lists their messages and delivers them', async () => {
    refuse = true;
    const { file, port } = await start({ delivery: { retrySchedule: ['1h'] } });
    const { acked } = await sendLoad(port, { prefix: 'shrink', total: 30, concurrency: 10 });
    assert.equal(acked.size, 30);
    await pollUntil(() => runCli(['queue', 'list', '--json', '--config', file]).stdout.split('"attempts": 1').length === 31, 20_000);
    assert.equal(await relay!.stop(), 0);
    const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    delete c['workers'];
    writeFileSync(file, JSON.stringify(c, null, 2));
    refuse = false;
    relay = new RelayProcess(file, port, { logFile: path.join(dir, 'relay-single.log') });
    await relay.start();
    assert.ok(await pollUntil(() => jsonLogLines(relay!.logFile).filter((l) => /^adopted a spool shard/.test(String(l['msg']))).length === 2, 20_000), 'both shards adopted');
    const listed = runCli(['queue', 'list', '--json', '--config', file]);
    assert.equal(listed.code, 0, listed.stderr);
    const rows = JSON.parse(listed.stdout) as Array<{ shard: number }>;
    assert.equal(rows.length, 30);
    assert.deepEqual([...new Set(rows.map((r) => r.shard))].sort(), [1, 2]);
    // Their retry is an hour away: a flush through the single relay's control socket reaches both shards.
    const flushed = runCli(['queue', 'flush', '--config', file]);
    assert.equal(flushed.stdout, '30 message(s) due now\n');
    assert.ok(await pollUntil(() => new Set(messageIds(sink)).size === 30, 30_000), `${new Set(messageIds(sink)).size} of 30 delivered`);
  });

  it("writes one log stream: with log.file the primary puts every worker's lines, whole, into the one file it rotates", async () => {
    const port = await freePort();
    const logPath = path.join(dir, 'logs', 'relay.log');
    const file = RelayProcess.write(dir, config(port, { log: { level: 'info', file: { path: logPath } } }));
    relay = new RelayProcess(file, port, { logFile: path.join(dir, 'stdout.log') });
    await relay.start();
    const text = () => {
      try {
        // Rotated files are numbered: relay.1.log is the first.
        return readFileSync(path.join(dir, 'logs', 'relay.1.log'), 'utf8');
      } catch {
        return '';
      }
    };
    assert.ok(await pollUntil(() => text().includes('ready: every worker is listening'), 60_000), 'the primary logged ready into the file');
    const { acked } = await sendLoad(port, { prefix: 'logged', total: 40, concurrency: 10 });
    assert.equal(acked.size, 40);
    assert.ok(await pollUntil(() => text().split('"verdict":"accepted"').length === 41, 20_000), 'every transaction line reached the file');
    const lines = text().trimEnd().split('\n');
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual([...new Set(parsed.filter((l) => l['verdict'] === 'accepted').map((l) => l['worker']))].sort(), [1, 2]);
    assert.ok(parsed.some((l) => l['worker'] === undefined && l['msg'] === 'ready: every worker is listening'));
    assert.equal(readFileSync(relay.logFile, 'utf8').split('\n').filter((l) => l.startsWith('{')).length, 0, 'nothing on stdout');
  });

  it('SIGTERM drains every worker: a transaction in DATA gets its 250, and the primary exits 0 once the workers have', async () => {
    const { port } = await start();
    const c = await RawSmtp.connect(port);
    assert.match(await c.read(10_000), /^220/);
    await c.cmd('EHLO drain.test');
    assert.match(await c.cmd('MAIL FROM:<a@client.test>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<sink@example.com>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    c.write('Message-ID: <drain-1@client.test>\r\nSubject: in flight\r\n\r\nfirst half\r\n');
    const stopped = relay!.stop();
    await new Promise((r) => setTimeout(r, 500));
    c.write('second half\r\n.\r\n');
    assert.match(await c.read(15_000), /^250 /);
    c.close();
    assert.equal(await stopped, 0);
    relay = undefined;
    // Acknowledged, so delivered before its worker exited or kept in that worker's shard.
    const delivered = messageIds(sink).includes('drain-1@client.test');
    const queued = runCli(['queue', 'list', '--json', '--config', path.join(dir, 'portcullis.json')]);
    assert.equal(queued.code, 0, queued.stderr);
    const rows = JSON.parse(queued.stdout) as Array<{ shard: number }>;
    assert.ok(delivered !== (rows.length === 1), `delivered: ${delivered}, queued: ${rows.length}`);
    const lines = jsonLogLines(path.join(dir, 'relay.log'));
    assert.deepEqual(lines.filter((l) => l['msg'] === 'stopped').map((l) => l['worker']).sort(), [1, 2], 'both workers drained and stopped');
    assert.ok(lines.some((l) => l['msg'] === 'stopped: every worker has exited'));
  });
});
