/**
 * Relay throughput with the clamav plugin on vs off, against clamd's own INSTREAM scan rate on the
 * same messages. Everything on loopback; clamd is the real one, started by the test harness.
 *
 *   npx tsx bench/throughput.ts [count=300] [concurrency=8]
 */
import { Readable } from 'node:stream';
import { CaptureServer, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import clamav, { scanStream } from '../src/index.js';
import { Clamd } from '../test/support/clamd.js';
import { cleanMessage } from '../test/support/messages.js';

const count = Number(process.argv[2] ?? 300);
const concurrency = Number(process.argv[3] ?? 8);

async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
  return (performance.now() - started) / 1000;
}

const clamd = await Clamd.start({ streamMaxLength: '10M' });
const sink = await CaptureServer.start({ host: '127.0.0.1' });
const domains = { 'example.com': { nexthop: sink.address, tls: 'none' } };
const relays: Record<'off' | 'on', TestRelay> = {
  off: await startTestRelay({ builtins: { 'relay-policy': relayPolicy }, config: { plugins: [{ use: 'relay-policy', with: { domains } }] } }),
  on: await startTestRelay({
    builtins: { 'relay-policy': relayPolicy, clamav },
    config: { plugins: [{ use: 'relay-policy', with: { domains } }, { use: 'clamav', with: { servers: [clamd.address] } }] },
  }),
};
const targets = [{ host: '127.0.0.1', port: clamd.port }];
const limits = { connectTimeout: 2_000, timeout: 20_000, maxSize: 10 * 1024 * 1024 };

try {
  console.log(`${count} messages per size, concurrency ${concurrency}, clamd ${clamd.address}\n`);
  console.log('size     relay off   relay on   clamd seq  clamd x' + concurrency + '  on/off  on/clamd(x' + concurrency + ')');
  for (const bytes of [10_000, 100_000]) {
    const msgs = Array.from({ length: count }, (_, i) => cleanMessage(`bench ${i}`, bytes));
    const rate: Record<string, number> = {};
    for (const mode of ['off', 'on'] as const) {
      const before = sink.messages.length;
      const secs = await pool(msgs, concurrency, async (raw) => {
        const r = await sendMail({ port: relays[mode].port, from: 'alice@remote.test', to: 'bob@example.com', raw });
        if (!r.ok) throw new Error(`relay ${mode}: ${r.response}`);
      });
      rate[mode] = count / secs;
      await sink.waitFor(before + count, 60_000); // let deliveries finish before the next run
    }
    const buffers = msgs.map((m) => Buffer.from(m));
    for (const [name, n] of [['seq', 1], ['par', concurrency]] as const) {
      const secs = await pool(buffers, n, async (buf) => {
        const r = await scanStream(Readable.from([buf]), targets, limits);
        if (r.kind !== 'clean') throw new Error(`clamd: ${JSON.stringify(r)}`);
      });
      rate[name] = count / secs;
    }
    const f = (v: number) => v.toFixed(0).padStart(9);
    console.log(
      `${String(bytes / 1000).padStart(3)} KB ${f(rate['off']!)}  ${f(rate['on']!)}  ${f(rate['seq']!)}  ${f(rate['par']!)}   ${(rate['on']! / rate['off']!).toFixed(2)}   ${(rate['on']! / rate['par']!).toFixed(2)}`,
    );
  }
  console.log('\n(msgs/s; relay rates count accepted messages, 250 after DATA, one SMTP connection per message)');
} finally {
  await relays.off.stop();
  await relays.on.stop();
  await sink.close();
  await clamd.close();
}
