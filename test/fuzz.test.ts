import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { CaptureServer, HeapProbe, RawSmtp, waitUntil, freePort, RelayProcess } from '@portcullis/testkit';
import { Clamd, eicar } from '../plugins/clamav/test/support/clamd.js';
import { mimeMessage, Rng, session, type Step } from './support/fuzz-gen.js';
import { boundaryBomb, manySmallParts } from './support/mime-bombs.js';

/**
 * The fuzz and abuse suite (issue 9): seeded, bounded in count and time, against the relay as users
 * run it (the CLI in its own process) with every stock plugin on: relay-policy, attachments (strip,
 * so the rewrite pass runs too), clamav with a real clamd, mx-router (smart host), limits, dnsbl and
 * mailauth (DNS unreachable on loopback). It asserts that
 * the process survives, that every command gets a reply or a close, that no tmp file or file
 * descriptor is left behind, and that memory comes back near its warmed-up baseline.
 *
 * The plugin-reader dimension (issue 17) adds a test plugin whose raw reader stops reading, pipes
 * into a stuck writable, throws, resolves early or never settles at a random byte offset (chosen
 * per message through the sender address), and the many-small-parts shapes that once stalled the
 * data pass (flat and nested, named and empty parts, sizes around each stall threshold).
 *
 * Replay a run: PORTCULLIS_FUZZ_SEED=<seed printed> pnpm --filter @portcullis/e2e test
 * More cases:   PORTCULLIS_FUZZ_SESSIONS=2000 PORTCULLIS_FUZZ_MESSAGES=1000 PORTCULLIS_FUZZ_READERS=500
 */
const SEED = Number(process.env['PORTCULLIS_FUZZ_SEED'] ?? 0x9a9a2026);
const SESSIONS = Number(process.env['PORTCULLIS_FUZZ_SESSIONS'] ?? 300);
const MESSAGES = Number(process.env['PORTCULLIS_FUZZ_MESSAGES'] ?? 120);
const READER_CASES = Number(process.env['PORTCULLIS_FUZZ_READERS'] ?? 60);
/** limits.readerStall and the stall-reader plugin's timeout in the fuzz relay's config. */
const READER_STALL_MS = 2000;
const READER_TIMEOUT_MS = 3000;
/** Every reader case is answered within this of its final dot: a stall, then the plugin timeout, and room. */
const READER_DEADLINE_MS = READER_STALL_MS + READER_TIMEOUT_MS + 3000;
const WORKERS = 8;
const REPLY_MS = 20_000;
const UNTRUSTED = '127.0.0.7';
const TRUSTED = '127.0.0.2';

interface Tally {
  commands: number;
  replies: number;
  closes: number;
  unanswered: string[];
  dataReplies: Map<string, number>;
}

/** Reads `n` replies; a close ends the wait (a close is an answer), silence past REPLY_MS is not. */
async function expect(c: RawSmtp, n: number, what: string, t: Tally): Promise<string[] | undefined> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    try {
      out.push(await c.read(REPLY_MS));
      t.replies++;
    } catch (err) {
      if (c.isClosed) {
        t.closes++;
        return undefined;
      }
      t.unanswered.push(`${what}: ${(err as Error).message}`);
      return undefined;
    }
  }
  return out;
}

const stuff = (b: Buffer) => Buffer.from(b.toString('latin1').replace(/(^|\r\n)\./g, '$1..'), 'latin1');

/** Sends the body after a 354 and reads the reply to the final dot. */
async function sendBody(c: RawSmtp, body: Buffer, t: Tally, label: string, cutAt?: number): Promise<boolean> {
  const data = Buffer.concat([stuff(body), Buffer.from('\r\n.\r\n')]);
  if (cutAt !== undefined) {
    c.write(data.subarray(0, cutAt));
    c.close(); // a client that vanishes mid-DATA
    return false;
  }
  for (let i = 0; i < data.length; i += 65536) c.write(data.subarray(i, i + 65536));
  t.commands++;
  const r = await expect(c, 1, `${label} final dot`, t);
  if (!r) return false;
  const code = r[0]!.slice(0, 9);
  t.dataReplies.set(code, (t.dataReplies.get(code) ?? 0) + 1);
  return true;
}

async function runSession(port: number, steps: Step[], local: string, label: string, t: Tally): Promise<void> {
  let c: RawSmtp;
  try {
    c = await RawSmtp.connect(port, '127.0.0.1', local);
  } catch (err) {
    t.unanswered.push(`${label}: connect failed: ${(err as Error).message}`);
    return;
  }
  try {
    if (!(await expect(c, 1, `${label} greeting`, t))) return;
    for (const [i, step] of steps.entries()) {
      const where = `${label} step ${i} (${step.kind})`;
      if (c.isClosed) return;
      if (step.kind === 'disconnect') return c.close();
      if (step.kind === 'raw') {
        c.write(step.bytes);
        if (step.bytes.endsWith('\n')) {
          t.commands++;
          if (!(await expect(c, 1, where, t))) return;
        }
        continue;
      }
      const lines = step.kind === 'cmd' ? [step.line] : step.kind === 'pipeline' ? step.lines : ['DATA'];
      c.write(lines.map((l) => l + '\r\n').join(''));
      t.commands += lines.length;
      const replies = await expect(c, lines.length, `${where}: ${lines.map((l) => JSON.stringify(l.slice(0, 40))).join(' ')}`, t);
      if (!replies) return;
      if (replies.at(-1)!.startsWith('354')) {
        const body = step.kind === 'data' ? step.body : Buffer.from('Subject: pipelined\r\n\r\nhello\r\n');
        if (!(await sendBody(c, body, t, where, step.kind === 'data' ? step.cutAt : undefined))) return;
      }
    }
  } finally {
    c.close();
  }
}

async function pool<T>(items: T[], n: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  }));
}

const here = path.dirname(fileURLToPath(import.meta.url));
const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

describe('fuzz and abuse suite (seeded, every stock plugin on)', function () {
  this.timeout(180_000);
  let dir: string;
  let sink: CaptureServer;
  let clamd: Clamd;
  let relay: RelayProcess;
  let port: number;
  let attTmp: string;
  let probe: HeapProbe;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-fuzz-'));
    attTmp = path.join(dir, 'attachments-tmp');
    mkdirSync(attTmp);
    [sink, clamd, port] = await Promise.all([CaptureServer.start(), Clamd.start(), freePort()]);
    const deadDns = await freePort(); // nothing listens there
    const config = RelayProcess.write(dir, {
      hostname: 'relay.test',
      listen: [{ host: '127.0.0.1', port, greetingDelay: 0 }],
      spool: { dir: path.join(dir, 'spool') },
      // The tarpit stays on (its code runs) but short, so the suite stays well inside its time budget.
      limits: { connectionsPerIp: 100, idleTimeout: '30s', tarpitDelay: '10ms', tarpitMax: '50ms', readerStall: `${READER_STALL_MS}ms` },
      delivery: { retrySchedule: ['10m'], connectionIdle: '1s' },
      dns: { servers: [`127.0.0.1:${deadDns}`], timeout: '300ms' },
      log: { level: 'warn' },
      plugins: [
        { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } }, trustedNetworks: [`${TRUSTED}/32`] } },
        { use: 'attachments', with: { action: 'strip', tempDir: attTmp } },
        { use: 'clamav', with: { servers: [clamd.address], timeout: '10s' }, timeout: '15s' },
        { use: 'mx-router', with: { smarthost: { nexthop: sink.address, tls: 'none' } } },
        // Rates high enough that the cases reach DATA; the counting code still runs on every one.
        { use: 'limits', with: { perIp: { connections: 50, connectionRate: { limit: 100000, window: '1m' }, messageRate: { limit: 100000, window: '1h' }, recipientRate: { limit: 100000, window: '1h' } }, perSender: { messageRate: { limit: 100000, window: '1h' }, recipientRate: { limit: 100000, window: '1h' } } } },
        // DNS points at a closed loopback port: every lookup fails fast, which dnsbl must never
        // turn into a refusal, and mailauth (tempError: accept) into a hang.
        { use: 'dnsbl', with: { zones: [{ zone: 'bl.fuzz.test' }], timeout: '300ms' } },
        { use: 'mailauth', with: { verify: { tempError: 'accept' } } },
        // The plugin-reader dimension: a raw reader that misbehaves as the sender address says.
        { use: path.join(here, 'support/stall-reader-plugin.mjs'), timeout: `${READER_TIMEOUT_MS}ms` },
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

  it(`answers ${READER_CASES} plugin-reader cases (readers that stop, throw or never settle; many-small-parts shapes) within their deadline, leaving nothing behind`, async () => {
    const pid = relay.pid;
    const seed = (SEED ^ 0x17171717) >>> 0;
    const rng = new Rng(seed);
    const E = eicar();
    await new Promise((r) => setTimeout(r, 1000));
    const baseFds = fdCount(pid);
    /** The shapes of issue 17, around each threshold (mailsplit's 1,000 nodes, the old 10 k / 80 k stall points). */
    const shape = (): [string, Buffer] => {
      const r = rng.next();
      if (r < 0.25) return ['generated MIME', mimeMessage(rng, E)];
      if (r < 0.3) return ['boundary bomb', Buffer.from(boundaryBomb(rng.int(20, 200), rng.int(1000, 300_000)), 'latin1')];
      const named = rng.chance(0.5);
      const n = named ? rng.pick([400, 499, 501, 999, 1000, 1001, 9_000, 10_000, 12_000, 20_000]) : rng.pick([999, 1001, 10_000, 80_000, 120_000, 200_000]);
      const depth = rng.chance(0.3) ? rng.int(2, 60) : 1;
      return [`${n} ${named ? 'named' : 'empty'} parts${depth > 1 ? ` nested ${depth}` : ''}`, Buffer.from(manySmallParts(n, { named, depth }), 'latin1')];
    };
    const cases = Array.from({ length: READER_CASES }, () => {
      const [label, body] = shape();
      const mode = rng.pick(['normal', 'normal', 'stop', 'pipe', 'throw', 'resolve', 'hang'] as const);
      const at = rng.int(0, body.length + 1000);
      return { label: `${label}, reader ${mode}${mode === 'normal' ? '' : ` at ${at}`}`, body, from: mode === 'normal' ? 'alice@remote.test' : `${mode}-${at}@remote.test` };
    });
    console.log(`      plugin-reader seed ${seed} (0x${seed.toString(16)}, from PORTCULLIS_FUZZ_SEED ${SEED}): ${READER_CASES} cases`);
    const late: string[] = [];
    const codes = new Map<string, number>();
    await pool(cases, 4, async (k, i) => {
      const c = await RawSmtp.connect(port, '127.0.0.1', UNTRUSTED);
      try {
        await c.read(REPLY_MS);
        await c.cmd('EHLO readers.test');
        const mail = await c.cmd(`MAIL FROM:<${k.from}>`);
        if (!mail.startsWith('250')) return void late.push(`case ${i} (${k.label}): MAIL ${mail}`);
        await c.cmd('RCPT TO:<bob@example.com>');
        const data = await c.cmd('DATA');
        if (!data.startsWith('354')) return void late.push(`case ${i} (${k.label}): DATA ${data}`);
        const all = Buffer.concat([stuff(k.body), Buffer.from(k.body.subarray(-2).toString() === '\r\n' ? '.\r\n' : '\r\n.\r\n')]);
        let sentAt = 0;
        const socket = (c as unknown as { socket: import('node:net').Socket }).socket;
        socket.write(all, () => (sentAt = performance.now()));
        let reply: string;
        try {
          reply = await c.read(READER_DEADLINE_MS + 20_000);
        } catch (err) {
          return void late.push(`case ${i} (${k.label}): no reply (${(err as Error).message})`);
        }
        const ms = sentAt ? performance.now() - sentAt : 0;
        codes.set(reply.slice(0, 9), (codes.get(reply.slice(0, 9)) ?? 0) + 1);
        if (ms > READER_DEADLINE_MS) late.push(`case ${i} (${k.label}): ${reply.slice(0, 9)} after ${ms.toFixed(0)} ms`);
        if (!/^(250|451|552|554) /.test(reply)) late.push(`case ${i} (${k.label}): unexpected ${reply}`);
      } finally {
        c.close();
      }
    });
    console.log(`      replies: ${[...codes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k.trim()}×${v}`).join(', ')}`);
    assert.deepEqual(late, []);
    await waitUntil(() => readdirSync(path.join(dir, 'spool', 'tmp')).length === 0, 'no spool temp file', 10_000);
    assert.deepEqual(readdirSync(attTmp), []);
    let fds = fdCount(pid);
    await waitUntil(() => (fds = fdCount(pid)) <= baseFds, 'file descriptors back at the baseline', 8_000).catch(() => undefined);
    assert.ok(fds <= baseFds + 2, `file descriptors ${baseFds} → ${fds}`);
    assert.equal(relay.running, true, 'the relay process died');
    // A trusted client is still served.
    const ok: Tally = { commands: 0, replies: 0, closes: 0, unanswered: [], dataReplies: new Map() };
    await runSession(port, [{ kind: 'cmd', line: 'EHLO trusted.test' }, { kind: 'cmd', line: 'MAIL FROM:<a@example.com>' }, { kind: 'cmd', line: 'RCPT TO:<bob@example.com>' }, { kind: 'data', body: Buffer.from('Subject: after the readers\r\n\r\nfine\r\n') }], TRUSTED, 'trusted after readers', ok);
    assert.deepEqual([...ok.dataReplies.keys()], ['250 2.0.0']);
  });

  it(`survives ${SESSIONS} mutated SMTP sessions and ${MESSAGES} generated MIME messages: every command answered, nothing left behind`, async () => {
    const pid = relay.pid;
    const rng = new Rng(SEED);
    const t: Tally = { commands: 0, replies: 0, closes: 0, unanswered: [], dataReplies: new Map() };
    const E = eicar();

    // Warm up (plugins loaded, clamd and next-hop connections made), then take the baseline.
    await pool(Array.from({ length: 16 }, (_, i) => i), 4, (i) => runSession(port, [{ kind: 'cmd', line: 'EHLO warm.test' }, { kind: 'cmd', line: 'MAIL FROM:<a@remote.test>' }, { kind: 'cmd', line: 'RCPT TO:<bob@example.com>' }, { kind: 'data', body: mimeMessage(new Rng(i), E) }], UNTRUSTED, `warm-${i}`, t));
    await new Promise((r) => setTimeout(r, 2500));
    const baseFds = fdCount(pid);
    const baseRss = rssMb(pid);
    const baseHeap = await probe.heapMb(pid);

    const t0 = Date.now();
    const sessions = Array.from({ length: SESSIONS }, () => ({ steps: session(rng, () => mimeMessage(rng, E)), trusted: rng.chance(0.2) }));
    const messages = Array.from({ length: MESSAGES }, () => mimeMessage(rng, E));
    console.log(`      fuzz seed ${SEED} (0x${SEED.toString(16)}): ${SESSIONS} sessions + ${MESSAGES} MIME messages = ${SESSIONS + MESSAGES} cases`);
    // Two halves, each half the sessions then half the messages: memory is read after each, so a
    // leak shows as growth in the second half (the first half warms the heap up to its working size).
    const rssAfter: number[] = [];
    for (const half of [0, 1]) {
      const ss = sessions.slice(half * (SESSIONS >> 1), half ? SESSIONS : SESSIONS >> 1);
      const mm = messages.slice(half * (MESSAGES >> 1), half ? MESSAGES : MESSAGES >> 1);
      await pool(ss, WORKERS, (s, i) => runSession(port, s.steps, s.trusted ? TRUSTED : UNTRUSTED, `session ${half}.${i}`, t));
      await pool(mm, WORKERS, (m, i) =>
        runSession(port, [{ kind: 'cmd', line: 'EHLO fuzz.test' }, { kind: 'cmd', line: 'MAIL FROM:<alice@remote.test>' }, { kind: 'cmd', line: 'RCPT TO:<bob@example.com>' }, { kind: 'data', body: m }], UNTRUSTED, `message ${half}.${i}`, t),
      );
      rssAfter.push(rssMb(pid));
    }
    const ms = Date.now() - t0;

    // Let idle connections (next hop, clamd) close, then compare with the baseline.
    let fds = fdCount(pid);
    // Up to 2 above the baseline may remain: a pooled next-hop or clamd connection opened by the last cases.
    await waitUntil(() => (fds = fdCount(pid)) <= baseFds, 'file descriptors back at the baseline', 8_000).catch(() => undefined);
    const rss = rssMb(pid);
    const heap = await probe.heapMb(pid);
    const spoolTmp = readdirSync(path.join(dir, 'spool', 'tmp'));
    const attLeft = readdirSync(attTmp);
    const replyCodes = [...t.dataReplies].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k.trim()}×${v}`).join(', ');
    console.log(`      ${ms} ms; ${t.commands} commands, ${t.replies} replies, ${t.closes} closes, ${t.unanswered.length} unanswered; fds ${baseFds} → ${fds}; heap after GC ${baseHeap.toFixed(1)} → ${heap.toFixed(1)} MB; RSS ${baseRss.toFixed(0)} → ${rssAfter.map((r) => r.toFixed(0)).join(' / ')} → ${rss.toFixed(0)} MB; tmp files left ${spoolTmp.length + attLeft.length}`);
    console.log(`      replies to the final dot: ${replyCodes}`);

    assert.equal(relay.running, true, 'the relay process died');
    assert.deepEqual(t.unanswered, []);
    assert.deepEqual(spoolTmp, []);
    assert.deepEqual(attLeft, []);
    assert.ok(fds <= baseFds + 2, `file descriptors ${baseFds} → ${fds}`);
    // Live memory after a full GC is back at the warmed-up baseline (RSS is printed, not asserted:
    // V8 and malloc keep grown arenas, which is not a leak).
    assert.ok(heap <= baseHeap * 1.2 + 4, `heap after GC ${baseHeap.toFixed(1)} → ${heap.toFixed(1)} MB`);
    assert.doesNotMatch(readFileSync(path.join(dir, 'relay.log'), 'utf8'), /"level":60|uncaught|unhandled/i);

    // Still serving, and still stopping cleanly.
    const before = sink.messages.length;
    const ok: Tally = { commands: 0, replies: 0, closes: 0, unanswered: [], dataReplies: new Map() };
    await runSession(port, [{ kind: 'cmd', line: 'EHLO after.test' }, { kind: 'cmd', line: 'MAIL FROM:<a@remote.test>' }, { kind: 'cmd', line: 'RCPT TO:<bob@example.com>' }, { kind: 'data', body: Buffer.from('Subject: after the fuzz\r\n\r\nfine\r\n') }], UNTRUSTED, 'after', ok);
    assert.deepEqual([...ok.dataReplies.keys()], ['250 2.0.0']);
    await sink.waitFor(before + 1, 10_000);
    assert.equal(await relay.stop(), 0);
  });
});
