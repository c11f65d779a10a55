/**
 * Where the time of one SMTP session goes, phase by phase: `n` sessions one after another, each on
 * a new connection (as `smtp-source -s 1`), timing the connect, the greeting, and the reply to each
 * command (EHLO, MAIL, RCPT, DATA, the message's end, QUIT) from the moment the previous reply
 * arrived. Prints p50 / p90 / mean milliseconds per phase. It was written to find what the worker
 * mode adds at one connection (packages/core/README.md, "Workers", not done item 4: the greeting).
 *
 *   node bench/dist/phase-probe.js --port 2525 [--n 500] [--size 10240] [--warmup 100]
 *
 * Loopback only (127.0.0.1); bounded: at most 100,000 sessions, each abandoned after 10 s. The
 * recipient is `<random>@hosted.example` (relay-main's hosted domain), the sender a@source.example.
 */
import net from 'node:net';
import { nearestRank } from './burst-stats.js';

const PHASES = ['connect', 'greeting', 'ehlo', 'mail', 'rcpt', 'data', 'end of data', 'quit', 'session'] as const;
type Phase = (typeof PHASES)[number];
const SESSION_TIMEOUT_MS = 10_000;

function opt(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  const v = i > 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name}: expected a whole number, got ${process.argv[i + 1]}`);
  return v;
}

/** One session; adds each phase's milliseconds to `into`. Rejects on an error, a reply other than expected, or the timeout. */
function session(port: number, body: string, into: Map<Phase, number[]>): Promise<void> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    let last = start;
    const mark = (p: Phase, from = last) => {
      const now = process.hrtime.bigint();
      into.get(p)!.push(Number(now - from) / 1e6);
      last = now;
    };
    // Each reply: the phase it ends, the code it must have, what to send next (undefined: the end).
    const steps: Array<[Phase, string, string | undefined]> = [
      ['greeting', '220', 'EHLO probe.example\r\n'],
      ['ehlo', '250', 'MAIL FROM:<a@source.example>\r\n'],
      ['mail', '250', `RCPT TO:<${Math.random().toString(36).slice(2)}@hosted.example>\r\n`],
      ['rcpt', '250', 'DATA\r\n'],
      ['data', '354', body],
      ['end of data', '250', 'QUIT\r\n'],
      ['quit', '221', undefined],
    ];
    let step = 0;
    let buffered = '';
    const socket = net.connect({ port, host: '127.0.0.1' }, () => mark('connect'));
    socket.setNoDelay(true);
    const timer = setTimeout(() => fail(new Error(`session not done after ${SESSION_TIMEOUT_MS} ms (at step ${step})`)), SESSION_TIMEOUT_MS);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      for (;;) {
        const eol = buffered.indexOf('\r\n');
        if (eol < 0) return;
        const line = buffered.slice(0, eol);
        buffered = buffered.slice(eol + 2);
        if (line[3] === '-') continue; // a multi-line reply goes on
        const [phase, code, next] = steps[step++] ?? [];
        if (!phase) return fail(new Error(`unexpected reply: ${line}`));
        if (!line.startsWith(code!)) return fail(new Error(`${phase}: expected ${code}, got ${line}`));
        mark(phase);
        if (next) socket.write(next);
        else {
          mark('session', start);
          clearTimeout(timer);
          socket.end();
        }
      }
    });
    socket.on('error', fail);
    socket.on('close', () => (step === steps.length ? resolve() : fail(new Error(`closed at step ${step}`))));
  });
}

async function main(): Promise<void> {
  const port = opt('--port', 0);
  if (!port) throw new Error('--port is required');
  const n = Math.min(opt('--n', 500), 100_000);
  const warmup = Math.min(opt('--warmup', 100), 100_000);
  const size = opt('--size', 10240);
  const line = 'x'.repeat(76) + '\r\n';
  const body = 'Subject: phase probe\r\n\r\n' + line.repeat(Math.max(1, Math.ceil(size / line.length))) + '.\r\n';
  const scratch = new Map(PHASES.map((p) => [p, [] as number[]]));
  for (let i = 0; i < warmup; i++) await session(port, body, scratch);
  const times = new Map(PHASES.map((p) => [p, [] as number[]]));
  for (let i = 0; i < n; i++) await session(port, body, times);
  process.stdout.write(`# ${n} sessions one after another to 127.0.0.1:${port}, ${size}-byte body, after ${warmup} not counted; ms from the previous reply\n`);
  process.stdout.write('phase\tp50\tp90\tmean\n');
  for (const [phase, list] of times) {
    const sorted = [...list].sort((a, b) => a - b);
    const mean = list.reduce((a, b) => a + b, 0) / list.length;
    process.stdout.write(`${phase}\t${nearestRank(sorted, 0.5).toFixed(3)}\t${nearestRank(sorted, 0.9).toFixed(3)}\t${mean.toFixed(3)}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`phase-probe: ${(err as Error).message}\n`);
  process.exit(1);
});
