import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HeapProbe, memoryOf, peakGrowthDuring, writeBigMessage } from '../src/index.js';

const MB = 1024 * 1024;

/** A process that, told on stdin, fills 96 MB (every page touched) for a moment, then lets it go. */
const CHILD = `
process.stdin.on('data', () => {
  let b = Buffer.alloc(96 * 1024 * 1024, 1);
  process.stdout.write('peaked ' + b.length + '\\n');
  b = undefined;
});
process.stdout.write('ready\\n');
`;

/**
 * A child process (standing in for the relay: the probe only needs a Node process) holds about 64 MB of
 * objects until told on stdin to drop them; garbage it leaves behind must not show in a reading.
 */
const HEAP_CHILD = `
let held = Array.from({ length: 64 }, () => new Array(131072).fill(0.5)); // 64 x 1 MB of doubles, on the V8 heap
process.stdin.on('data', () => { held = undefined; process.stdout.write('dropped\\n'); });
process.stdout.write('ready\\n');
`;

function waitFor(child: ChildProcess, want: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes(want)) (child.stdout!.off('data', onData), resolve());
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before "${want}"`)));
  });
}

describe('relay memory measurement (memoryOf, peakGrowthDuring, writeBigMessage)', function () {
  this.timeout(30_000);
  let dir: string;
  let child: ChildProcess;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'relay-child-'));
    child = spawn(process.execPath, ['-e', CHILD], { stdio: ['pipe', 'pipe', 'inherit'] });
    await waitFor(child, 'ready');
  });
  after(() => {
    child?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts a 96 MB peak that is gone again by the end as growth, and idling as (almost) none', async () => {
    const idle = await peakGrowthDuring(child.pid!, () => new Promise((r) => setTimeout(r, 200)));
    assert.ok(idle.growth < 16 * MB, `idle growth ${(idle.growth / MB).toFixed(1)} MB`);
    const busy = await peakGrowthDuring(child.pid!, async () => {
      child.stdin!.write('go\n');
      await waitFor(child, 'peaked');
    });
    assert.ok(busy.growth >= 90 * MB, `growth over a 96 MB peak: ${(busy.growth / MB).toFixed(1)} MB`);
    const now = memoryOf(child.pid!); // one read of /proc/PID/status: the kernel reports VmHWM >= VmRSS
    assert.ok(now.rss > 10 * MB && now.peak >= now.rss, JSON.stringify(now));
  });

  it('writes a message of the size asked, in whole CRLF lines after the header section given', () => {
    const head = 'Subject: big\r\nContent-Transfer-Encoding: base64\r\n\r\n';
    const file = writeBigMessage(path.join(dir, 'm.eml'), head, 3 * MB);
    const size = statSync(file).size;
    assert.ok(size >= 3 * MB && size < 3 * MB + MB + head.length, `size ${size}`);
    const text = readFileSync(file, 'latin1');
    assert.ok(text.startsWith(head));
    assert.match(text.slice(head.length), /^(?:[A-Za-z0-9]{76}\r\n)+$/);
  });
});

describe('HeapProbe', function () {
  this.timeout(30_000);
  let dir: string;
  let child: ChildProcess;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'heap-probe-'));
  });
  after(() => {
    child?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads the heap of another process after a full GC: 64 MB held show, the same 64 MB dropped do not', async () => {
    const probe = new HeapProbe(dir);
    child = spawn(process.execPath, [...probe.nodeArgs, '--input-type=module', '-e', HEAP_CHILD], { env: { ...process.env, ...probe.env }, stdio: ['pipe', 'pipe', 'inherit'] });
    await waitFor(child, 'ready');
    const held = await probe.heapMb(child.pid!);
    assert.ok(held > 60, `heap with 64 MB held: ${held.toFixed(1)} MB`);
    child.stdin!.write('drop\n');
    await waitFor(child, 'dropped');
    const dropped = await probe.heapMb(child.pid!);
    // Without the GC before the reading, the dropped arrays would still count.
    assert.ok(dropped < held - 50, `heap after dropping: ${dropped.toFixed(1)} MB (held: ${held.toFixed(1)} MB)`);
  });
});
