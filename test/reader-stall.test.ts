import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CaptureServer, RawSmtp, waitUntil, freePort, RelayProcess } from '@portcullis/testkit';
import { Clamd } from '../plugins/clamav/test/support/clamd.js';
import { boundaryBomb, flatParts, manySmallParts, nested } from './support/mime-bombs.js';

/**
 * Issue 17: a plugin's stream reader can never stall DATA. The relay runs as users run it (the CLI,
 * its own process), so descriptors are counted in /proc/<pid>/fd and a SIGTERM is a real one.
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const STALL_PLUGIN = path.join(here, 'support/stall-reader-plugin.mjs');
const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
const stuff = (s: string | Buffer) => Buffer.from((Buffer.isBuffer(s) ? s.toString('latin1') : s).replace(/(^|\r\n)\./g, '$1..'), 'latin1');

/**
 * The relay's main thread as the scheduler saw it (`/proc/<pid>/schedstat`: nanoseconds on a CPU,
 * nanoseconds runnable but waiting for one). What is left of a stretch of wall time is the time the
 * event loop slept: a stall (a data pass waiting on a reader that stopped) is sleep, while a relay
 * that is busy but shares two cores with the rest of the suite is running or waiting for a CPU.
 */
function schedMs(pid: number): { run: number; queued: number } {
  const [run, queued] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
  return { run: run! / 1e6, queued: queued! / 1e6 };
}

/**
 * One transaction; `afterLastByte` is the time from the moment the final dot left this process to
 * the reply (the socket's write callback), so transfer time of a large message is not counted.
 * `asleep` is the part of it the relay's event loop slept (see schedMs), when `pid` is given.
 */
async function send(port: number, message: string | Buffer, opts: { from?: string; local?: string; timeoutMs?: number; pid?: number } = {}): Promise<{ reply: string; afterLastByte: number; asleep: number; c: RawSmtp }> {
  const c = await RawSmtp.connect(port, '127.0.0.1', opts.local ?? '127.0.0.7');
  await c.read();
  await c.cmd('EHLO client.test');
  assert.match(await c.cmd(`MAIL FROM:<${opts.from ?? 'alice@remote.test'}>`), /^250 /);
  assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
  assert.match(await c.cmd('DATA'), /^354 /);
  const body = stuff(message);
  const all = Buffer.concat([body, Buffer.from(body.subarray(-2).toString() === '\r\n' ? '.\r\n' : '\r\n.\r\n')]);
  let flushedAt = 0;
  let schedAtFlush = { run: 0, queued: 0 };
  const socket = (c as unknown as { socket: import('node:net').Socket }).socket;
  socket.write(all, () => {
    flushedAt = performance.now();
    if (opts.pid) schedAtFlush = schedMs(opts.pid);
  });
  const reply = await c.read(opts.timeoutMs ?? 30_000);
  const now = performance.now();
  const afterLastByte = flushedAt ? now - flushedAt : 0;
  let asleep = afterLastByte;
  if (opts.pid && flushedAt) {
    const end = schedMs(opts.pid);
    asleep = afterLastByte - (end.run - schedAtFlush.run) - (end.queued - schedAtFlush.queued);
  }
  return { reply, afterLastByte, asleep, c };
}

/**
 * "Within 1 s of the final dot" (issue 17's bound, measured on a quiet machine). When the suite
 * shares the two cores with other load, the wall time stretches while the relay waits for a CPU; what
 * must never stretch is the time its event loop sleeps, which is what a stall is: at most 1 s of
 * that, and 10 s in all.
 */
const answeredAtOnce = (r: { afterLastByte: number; asleep: number }) => r.afterLastByte < 1000 || (r.asleep < 1000 && r.afterLastByte < 10_000);

interface Setup {
  dir: string;
  relay: RelayProcess;
  port: number;
  sink: CaptureServer;
  attTmp: string;
  spoolTmp: () => string[];
}

async function startRelay(plugins: (sink: CaptureServer, attTmp: string) => object[], limits: object = {}, extra: object = {}): Promise<Setup> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-stall-'));
  const attTmp = path.join(dir, 'attachments-tmp');
  mkdirSync(attTmp);
  const [sink, port] = await Promise.all([CaptureServer.start(), freePort()]);
  const config = RelayProcess.write(dir, {
    hostname: 'relay.test',
    listen: [{ host: '127.0.0.1', port, greetingDelay: 0 }],
    spool: { dir: path.join(dir, 'spool') },
    limits,
    delivery: { retrySchedule: ['10m'] },
    log: { level: 'info' },
    plugins: plugins(sink, attTmp),
    ...extra,
  });
  const relay = new RelayProcess(config, port, { logFile: path.join(dir, 'relay.log') });
  await relay.start();
  return { dir, relay, port, sink, attTmp, spoolTmp: () => readdirSync(path.join(dir, 'spool', 'tmp')) };
}

async function stopRelay(s: Setup | undefined): Promise<void> {
  if (!s) return;
  await s.relay.kill();
  await s.sink.close();
  rmSync(s.dir, { recursive: true, force: true });
}

/** A 3 MB message: far more than a reader's stream buffer, so a reader that stops holds DATA up. */
const big = () => `Subject: big\r\n\r\n${'0123456789abcdef'.repeat(4).concat('\r\n').repeat(45_000)}`;

const policy = (sink: CaptureServer) => ({ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } }, trustedNetworks: ['127.0.0.2/32'] } });

/** The shapes that stalled the relay (issue 17), each about 1.3 to 14 MB. */
const SHAPES: Array<[string, () => string]> = [
  ['12,000 named parts', () => manySmallParts(12_000, { named: true })],
  ['20,000 named parts', () => manySmallParts(20_000, { named: true })],
  ['120,000 empty parts', () => manySmallParts(120_000)],
  ['200,000 empty parts', () => manySmallParts(200_000)],
  ['120,000 empty parts nested 40 deep', () => manySmallParts(120_000, { depth: 40 })],
  ['a 1.3 M-part boundary bomb', () => boundaryBomb(200, 1_300_000)],
];

async function expectShapesRefused(s: Setup): Promise<void> {
  const pid = s.relay.pid;
  // Warm up (the plugins' first message, and one refused shape so the MIME code is compiled), then the descriptor baseline.
  const warm = await send(s.port, 'Subject: warm\r\n\r\nwarm\r\n');
  warm.c.close();
  assert.match(warm.reply, /^250 /);
  const warmShape = await send(s.port, manySmallParts(600, { named: true }));
  warmShape.c.close();
  assert.match(warmShape.reply, /^552 5\.3\.4 /);
  await new Promise((r) => setTimeout(r, 300));
  const baseFds = fdCount(pid);
  for (const [label, make] of SHAPES) {
    const { reply, afterLastByte, asleep, c } = await send(s.port, make(), { pid });
    c.close();
    assert.match(reply, /^(552 5\.3\.4 .*MIME|554 5\.6\.0 )/, `${label}: ${reply}`);
    assert.ok(answeredAtOnce({ afterLastByte, asleep }), `${label}: answered ${afterLastByte.toFixed(0)} ms after the final dot, ${asleep.toFixed(0)} ms of it with the relay's event loop asleep`);
    assert.deepEqual(s.spoolTmp(), [], `${label}: spool tmp files left`);
    assert.deepEqual(readdirSync(s.attTmp), [], `${label}: attachments temp files left`);
    console.log(`      ${label}: ${reply.slice(0, 9)} ${afterLastByte.toFixed(0)} ms after the final dot (${asleep.toFixed(0)} ms asleep)`);
  }
  await waitUntil(() => fdCount(pid) <= baseFds, `descriptors back at ${baseFds}`, 5000).catch(() => undefined);
  assert.ok(fdCount(pid) <= baseFds, `descriptors ${baseFds} → ${fdCount(pid)}`);
  const ok = await send(s.port, 'Subject: after\r\n\r\nstill here\r\n', { local: '127.0.0.2' });
  ok.c.close();
  assert.match(ok.reply, /^250 2\.0\.0 /);
}

describe('many-small-parts shapes with relay-policy and attachments on their defaults (issue 17)', function () {
  this.timeout(180_000);
  let s: Setup | undefined;
  before(async () => {
    s = await startRelay((sink, attTmp) => [policy(sink), { use: 'attachments', with: { tempDir: attTmp } }]);
  });
  after(() => stopRelay(s));

  it('answers every shape with 552 5.3.4 or 554 5.6.0 within 1 s of the final dot, leaving no temp file and no descriptor', async () => {
    await expectShapesRefused(s!);
  });
});

describe('many-small-parts shapes with clamav and mailauth added (issue 17)', function () {
  this.timeout(180_000);
  let s: Setup | undefined;
  let clamd: Clamd | undefined;
  before(async () => {
    clamd = await Clamd.start();
    const deadDns = await freePort(); // nothing listens there: mailauth's lookups fail fast
    s = await startRelay(
      (sink, attTmp) => [policy(sink), { use: 'attachments', with: { tempDir: attTmp } }, { use: 'clamav', with: { servers: [clamd!.address] } }, { use: 'mailauth', with: { verify: { tempError: 'accept' } } }],
      {},
      { dns: { servers: [`127.0.0.1:${deadDns}`], timeout: '300ms' } },
    );
  });
  after(async () => {
    await stopRelay(s);
    await clamd?.close();
  });

  it('answers every shape with 552 5.3.4 or 554 5.6.0 within 1 s of the final dot, leaving no temp file and no descriptor', async () => {
    await expectShapesRefused(s!);
  });
});

describe('a raw reader that stops reading, throws or never settles (issue 17)', function () {
  this.timeout(180_000);
  const READER_STALL = 1000;
  const PLUGIN_TIMEOUT = 1500;
  let s: Setup | undefined;
  before(async () => {
    s = await startRelay(
      (sink, attTmp) => [policy(sink), { use: 'attachments', with: { tempDir: attTmp } }, { use: STALL_PLUGIN, timeout: `${PLUGIN_TIMEOUT}ms` }],
      { readerStall: `${READER_STALL}ms` },
      { shutdown: { drainTime: '2s' } },
    );
  });
  after(() => stopRelay(s));

  const SIZE = big().length;
  const offsets = [0, 1, 4096, 300_000, Math.floor(SIZE / 2), SIZE - 10];

  for (const mode of ['stop', 'pipe'] as const) {
    it(`answers 451 4.3.0 within limits.readerStall when the reader ${mode === 'stop' ? 'stops reading' : 'pipes into a stuck writable'} after N bytes, for N across the message, and names the plugin`, async () => {
      for (const n of offsets) {
        const t0 = performance.now();
        const { reply, c } = await send(s!.port, big(), { from: `${mode}-${n}@remote.test` });
        const ms = performance.now() - t0;
        c.close();
        assert.equal(reply, '451 4.3.0 Temporary local problem, try again later', `N=${n}`);
        // The stall deadline, or (a reader that got past its buffer to the end) the plugin timeout.
        assert.ok(ms < READER_STALL + PLUGIN_TIMEOUT + 3000, `N=${n}: ${ms.toFixed(0)} ms`);
        await waitUntil(() => s!.spoolTmp().length === 0, `N=${n}: spool tmp empty`, 3000);
      }
      const log = readFileSync(path.join(s!.dir, 'relay.log'), 'utf8');
      assert.match(log, /"plugin":"stall-reader".*limits\.readerStall/);
    });
  }

  it('answers 451 4.3.0 within the plugin timeout of the final dot when the reader reads everything and never settles', async () => {
    const { reply, afterLastByte, c } = await send(s!.port, big(), { from: 'hang-0@remote.test' });
    c.close();
    assert.equal(reply, '451 4.3.0 Temporary local problem, try again later');
    assert.ok(afterLastByte >= PLUGIN_TIMEOUT - 100 && afterLastByte < PLUGIN_TIMEOUT + 2000, `${afterLastByte.toFixed(0)} ms`);
    await waitUntil(() => s!.spoolTmp().length === 0, 'spool tmp empty', 3000);
  });

  it('answers 451 4.3.0 at once when the reader throws after N bytes, for N across the message', async () => {
    for (const n of offsets) {
      const { reply, afterLastByte, asleep, c } = await send(s!.port, big(), { from: `throw-${n}@remote.test`, pid: s!.relay.pid });
      c.close();
      assert.equal(reply, '451 4.3.0 Temporary local problem, try again later', `N=${n}`);
      assert.ok(answeredAtOnce({ afterLastByte, asleep }), `N=${n}: ${afterLastByte.toFixed(0)} ms, ${asleep.toFixed(0)} ms asleep`);
      await waitUntil(() => s!.spoolTmp().length === 0, `N=${n}: spool tmp empty`, 3000);
    }
  });

  it('queues the message when the reader resolves after N bytes without reading the rest, for N across the message', async () => {
    const before = s!.sink.messages.length;
    for (const n of offsets) {
      const { reply, afterLastByte, asleep, c } = await send(s!.port, big(), { from: `resolve-${n}@remote.test`, pid: s!.relay.pid });
      c.close();
      assert.match(reply, /^250 2\.0\.0 Ok: queued as /, `N=${n}`);
      assert.ok(answeredAtOnce({ afterLastByte, asleep }), `N=${n}: ${afterLastByte.toFixed(0)} ms, ${asleep.toFixed(0)} ms asleep`);
    }
    await s!.sink.waitFor(before + offsets.length, 20_000);
    assert.equal(s!.sink.messages.at(-1)!.raw.toString('latin1').endsWith(big()), true);
  });
});

describe('a graceful stop while a reader holds the data pass (issue 17)', function () {
  this.timeout(60_000);
  let s: Setup | undefined;
  before(async () => {
    // readerStall far above drainTime: the transaction is still waiting on the reader when the stop comes.
    s = await startRelay((sink) => [policy(sink), { use: STALL_PLUGIN }], { readerStall: '5m' }, { shutdown: { drainTime: '2s' } });
  });
  after(() => stopRelay(s));

  it('exits within shutdown.drainTime on SIGTERM while a reader has stopped reading mid-message', async () => {
    const c = await RawSmtp.connect(s!.port, '127.0.0.1', '127.0.0.7');
    await c.read();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<stop-1000@remote.test>');
    await c.cmd('RCPT TO:<bob@example.com>');
    await c.cmd('DATA');
    c.write(stuff(big()).subarray(0, 2_000_000)); // no final dot: the transaction is in the data pass
    await new Promise((r) => setTimeout(r, 300));
    const t0 = performance.now();
    const code = await s!.relay.stop();
    const ms = performance.now() - t0;
    c.close();
    assert.equal(code, 0);
    assert.ok(ms < 2000 + 1500, `exited after ${ms.toFixed(0)} ms (drainTime 2 s)`);
    assert.deepEqual(s!.spoolTmp(), []);
  });
});

describe('the end-of-DATA deadline and a plugin parsing MIME with the core limits (issue 17)', function () {
  this.timeout(60_000);
  let s: Setup | undefined;
  before(async () => {
    // Plugin timeout far above limits.dataDeadline: only the deadline can answer.
    s = await startRelay((sink) => [policy(sink), { use: STALL_PLUGIN, timeout: '5m' }], { dataDeadline: '1s' });
  });
  after(() => stopRelay(s));

  for (const [what, from] of [['a raw reader never settles', 'hang-0@remote.test'], ['the message hook never settles', 'msghang-0@remote.test']] as const) {
    it(`answers 451 4.3.0 within limits.dataDeadline of the final dot when ${what}, and leaves no temp file`, async () => {
      const { reply, afterLastByte, c } = await send(s!.port, big(), { from });
      c.close();
      assert.equal(reply, '451 4.3.0 Temporary local problem, try again later');
      assert.ok(afterLastByte >= 900 && afterLastByte < 3000, `${afterLastByte.toFixed(0)} ms`);
      await waitUntil(() => s!.spoolTmp().length === 0, 'spool tmp empty', 3000);
      assert.match(readFileSync(path.join(s!.dir, 'relay.log'), 'utf8'), /limits\.dataDeadline/);
    });
  }

  it('gives a raw reader that parses with createMimeSplitter the core verdicts: 552 5.3.4 past the part limit, 554 5.6.0 past the depth limit', async () => {
    const many = await send(s!.port, flatParts(501), { from: 'mime-0@remote.test' });
    many.c.close();
    assert.equal(many.reply, '552 5.3.4 Message has too many MIME parts (limit 500)');
    const deep = await send(s!.port, nested(60), { from: 'mime-0@remote.test' });
    deep.c.close();
    assert.equal(deep.reply, '554 5.6.0 MIME parts are nested too deeply (limit 50)');
    const fine = await send(s!.port, flatParts(400), { from: 'mime-0@remote.test' });
    fine.c.close();
    assert.match(fine.reply, /^250 2\.0\.0 /);
  });
});
