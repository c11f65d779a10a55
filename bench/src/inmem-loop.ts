/**
 * CPU per message of the relay's own path in one process, with no socket, no load generator and no
 * next hop: the sessions run over in-memory stream pairs (`Relay.connectStream`, as the testkit's
 * `inject` does) and delivery goes to a transport that reads the message and says 250. What is left
 * is our code and the libraries' JavaScript (smtp-server, mailsplit, the spool with its fdatasync),
 * which the socket benchmarks bury under the kernel's loopback work and the other processes on a
 * two-core machine. So a cut of a few percent, which `cpu-loop` cannot tell from its spread, shows
 * here; whole-process pairs of two trees (`--vs`) give the ratio.
 *
 *   node bench/dist/inmem-loop.js [--n 4000] [--warm 3000] [--conc 10] [--size 10240] [--plugins relay-policy,attachments]
 *
 * Prints one line: messages, CPU µs per message (process.cpuUsage: every thread, user + system)
 * over the measured ones, wall time, and the JS heap in use at the end. Bounded: at most 100,000
 * messages, and each reply is awaited at most 10 s (then the run fails).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { duplexPair, type Duplex, type Readable } from 'node:stream';
import { dotStuff } from '@portcullis/testkit';
import { captureSourceMessage } from './source-message.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : def;
};
const whole = (name: string, def: number, max: number) => {
  const v = Number(opt(name, String(def)));
  if (!Number.isInteger(v) || v < 1 || v > max) throw new Error(`${name}: expected a whole number 1-${max}, got ${opt(name, '')}`);
  return v;
};
const n = whole('--n', 4000, 100_000);
const warm = whole('--warm', 3000, 100_000);
const conc = whole('--conc', 10, 1000);
const size = whole('--size', 10240, 50 * 1024 * 1024);
const plugins = opt('--plugins', 'relay-policy,attachments').split(',').map((p) => p.trim());

/** Reads whole SMTP replies (the line whose code is followed by a space ends one) off the client's side. */
class Replies {
  private text = '';
  private readonly waiting: Array<{ resolve: (r: string) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  private readonly ready: string[] = [];

  constructor(stream: Duplex) {
    stream.setEncoding('latin1');
    stream.on('data', (s: string) => {
      this.text += s;
      for (let nl = this.text.indexOf('\r\n'); nl >= 0; nl = this.text.indexOf('\r\n')) {
        const line = this.text.slice(0, nl);
        this.text = this.text.slice(nl + 2);
        if (line[3] === '-') continue;
        const w = this.waiting.shift();
        if (w) {
          clearTimeout(w.timer);
          w.resolve(line);
        } else this.ready.push(line);
      }
    });
  }

  next(expect: string, what: string): Promise<void> {
    const got = this.ready.shift();
    const check = (line: string) => {
      if (!line.startsWith(expect)) throw new Error(`${what}: expected ${expect}, got ${JSON.stringify(line)}`);
    };
    if (got !== undefined) return Promise.resolve(check(got));
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: no reply within 10 s`)), 10_000);
      this.waiting.push({ resolve, reject, timer });
    }).then(check);
  }
}

async function main(): Promise<void> {
  const [{ parseConfig, Relay }, { default: relayPolicy }, { default: attachments }] = await Promise.all([import('@portcullis/core'), import('@portcullis/relay-policy'), import('@portcullis/attachments')]);
  const spoolDir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-inmem-'));
  const entries: Array<{ use: string; with?: Record<string, unknown> }> = [{ use: 'relay-policy', with: { domains: { 'hosted.example': { nexthop: '127.0.0.1:25', tls: 'none' } }, trustedNetworks: ['127.0.0.0/8'] } }];
  if (plugins.includes('attachments')) entries.push({ use: 'attachments' });
  const config = parseConfig({
    hostname: 'relay.bench.example',
    listen: [{ host: '127.0.0.1', port: 25, greetingDelay: 0 }],
    limits: { connectionsPerIp: 100_000 },
    spool: { dir: spoolDir },
    log: { level: 'warn' },
    plugins: entries,
  });
  let delivered = 0;
  const transport = {
    async deliver(_hop: unknown, _from: string, recipients: readonly string[], open: () => Readable) {
      for await (const _ of open()) void _;
      delivered++;
      return { host: 'memory', perRecipient: new Map(recipients.map((r) => [r, { ok: true, permanent: false, response: '250 2.0.0 Ok' }])) };
    },
    close() {},
  };
  const relay = await Relay.create({ config, builtins: { 'relay-policy': relayPolicy, attachments }, listen: false, deliver: true, transport });
  await relay.start();
  // The exact bytes smtp-source sends at this size (what cpu-loop and the peers harness send), stuffed, with the end-of-data dot.
  const body = dotStuff(await captureSourceMessage('/usr/sbin/smtp-source', size));
  let port = 40000;
  const session = async (): Promise<void> => {
    const [ours, theirs] = duplexPair();
    const replies = new Replies(ours);
    relay.connectStream(theirs, { remoteAddress: '127.0.0.1', remotePort: port++ % 60000 });
    await replies.next('220', 'greeting');
    for (const [cmd, code] of [['EHLO client.example', '250'], ['MAIL FROM:<b@source.example>', '250'], ['RCPT TO:<rcpt@hosted.example>', '250'], ['DATA', '354']] as const) {
      ours.write(`${cmd}\r\n`);
      await replies.next(code, cmd);
    }
    ours.write(body);
    await replies.next('250', 'end of data');
    ours.write('QUIT\r\n');
    await replies.next('221', 'QUIT');
    ours.end();
  };
  const run = async (count: number): Promise<void> => {
    let left = count;
    await Promise.all(
      Array.from({ length: Math.min(conc, count) }, async () => {
        while (left-- > 0) await session();
      }),
    );
    await relay.queue.idle();
  };
  try {
    await run(warm);
    const before = delivered;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await run(n);
    const cpu = process.cpuUsage(cpu0);
    const ms = performance.now() - t0;
    if (delivered - before !== n) throw new Error(`delivered ${delivered - before} of ${n}`);
    const us = (cpu.user + cpu.system) / n;
    process.stdout.write(`inmem-loop: ${n} messages of ${size} bytes at ${conc} sessions after ${warm}, plugins ${plugins.join(',')}: ${us.toFixed(1)} µs CPU a message (user ${(cpu.user / n).toFixed(1)}, system ${(cpu.system / n).toFixed(1)}), ${(ms / 1000).toFixed(2)} s, ${(n / (ms / 1000)).toFixed(0)} msg/s, heap ${(process.memoryUsage().heapUsed / 1048576).toFixed(1)} MB\n`);
  } finally {
    await relay.stop();
    rmSync(spoolDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`inmem-loop: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
