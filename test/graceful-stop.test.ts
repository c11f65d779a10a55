import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaptureServer, RawSmtp, waitUntil, freePort, RelayProcess } from '@portcullis/testkit';

type Outcome = 'accepted' | 'refused' | 'no-reply';

/**
 * One load client: transactions back to back on one connection (reconnecting when it closes),
 * each message with its own Message-ID; records what the relay answered to each DATA.
 */
async function loadClient(port: number, prefix: string, until: () => boolean, outcomes: Map<string, { outcome: Outcome; reply?: string }>): Promise<void> {
  let n = 0;
  while (!until()) {
    let c: RawSmtp;
    try {
      c = await RawSmtp.connect(port);
    } catch {
      return; // the listener is closed: stop
    }
    try {
      if (!(await c.read(5000)).startsWith('220')) continue;
      await c.cmd('EHLO load.test');
      while (!until()) {
        if (!(await c.cmd('MAIL FROM:<load@client.test>')).startsWith('250')) break;
        if (!(await c.cmd('RCPT TO:<sink@example.com>')).startsWith('250')) break;
        if (!(await c.cmd('DATA')).startsWith('354')) break;
        const id = `${prefix}-${n++}@client.test`;
        c.write(`Message-ID: <${id}>\r\nSubject: stop test\r\n\r\n${'payload line\r\n'.repeat(200)}.\r\n`);
        try {
          const reply = await c.read(15_000);
          outcomes.set(id, { outcome: reply.startsWith('250 ') ? 'accepted' : 'refused', reply });
        } catch {
          outcomes.set(id, { outcome: 'no-reply' });
          break;
        }
      }
    } catch {
      /* closed between commands */
    } finally {
      c.close();
    }
  }
}

const delivered = (sink: CaptureServer) => new Set(sink.messages.map((m) => /Message-ID: <([^>]+)>/.exec(m.raw.toString('latin1'))?.[1]).filter(Boolean) as string[]);

describe('graceful stop keeps its word (SIGTERM)', function () {
  this.timeout(120_000);
  let dir: string;
  let sink: CaptureServer;
  let port: number;
  let relay: RelayProcess;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-stop-'));
    sink = await CaptureServer.start();
    port = await freePort();
    // A screener that takes 20-170 ms per message (as clamd does): transactions are still being
    // decided when the stop begins, which is when a careless stop answers 421 to a message it queues.
    writeFileSync(
      path.join(dir, 'slow-screener.mjs'),
      "export default { kind: 'portcullis-plugin', name: 'slow-screener', setup: () => ({ message: (txn) => new Promise((r) => setTimeout(() => r(undefined), txn.recipients.some((a) => a.address.startsWith('very-slow@')) ? 8000 : 20 + Math.random() * 150)) }) };\n",
    );
    const config = RelayProcess.write(dir, {
      hostname: 'relay.test',
      listen: [{ host: '127.0.0.1', port, greetingDelay: 0 }],
      spool: { dir: path.join(dir, 'spool') },
      limits: { connectionsPerIp: 200 },
      shutdown: { drainTime: '3s' },
      delivery: { retrySchedule: ['1s'] },
      log: { level: 'info' },
      plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink.address, tls: 'none' } } } }, { use: './slow-screener.mjs' }],
    });
    relay = new RelayProcess(config, port, { logFile: path.join(dir, 'relay.log') });
  });
  after(async () => {
    await relay?.kill();
    await sink?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers every received message truthfully across three SIGTERMs under load: 0 delivered after a 4xx/421, every 250 delivered', async () => {
    const outcomes = new Map<string, { outcome: Outcome; reply?: string }>();
    const exits: Array<number | null> = [];
    for (let round = 0; round < 3; round++) {
      await relay.start();
      let stopped = false;
      const clients = Array.from({ length: 20 }, (_, i) => loadClient(port, `r${round}c${i}`, () => stopped, outcomes));
      await new Promise((r) => setTimeout(r, 800));
      exits.push(await relay.stop());
      stopped = true;
      await Promise.all(clients);
    }
    // A last start delivers what the stops left in the spool.
    await relay.start();
    const accepted = [...outcomes].filter(([, o]) => o.outcome === 'accepted').map(([id]) => id);
    await waitUntil(() => accepted.every((id) => delivered(sink).has(id)), 'every accepted message to be delivered', 30_000);
    await new Promise((r) => setTimeout(r, 1500)); // anything wrongly queued would arrive by now
    await relay.stop();

    const got = delivered(sink);
    const refusedButDelivered = [...outcomes].filter(([id, o]) => o.outcome !== 'accepted' && got.has(id));
    const refused = [...outcomes].filter(([, o]) => o.outcome === 'refused');
    console.log(`      ${outcomes.size} messages sent, ${accepted.length} accepted, ${refused.length} refused, ${[...outcomes.values()].filter((o) => o.outcome === 'no-reply').length} without a reply; ${refusedButDelivered.length} delivered after a refusal`);
    assert.deepEqual(exits, [0, 0, 0]);
    assert.ok(accepted.length > 50, `only ${accepted.length} accepted`);
    assert.deepEqual(refusedButDelivered, []);
    for (const [, o] of refused) assert.equal(o.reply, '421 4.3.2 Service shutting down, try again later');
  });

  it('gives an idle session 421 4.3.2, and a message in DATA its real 250 before closing', async () => {
    await relay.start();
    const idle = await RawSmtp.connect(port);
    await idle.read();
    await idle.cmd('EHLO idle.test');
    const busy = await RawSmtp.connect(port);
    await busy.read();
    await busy.cmd('EHLO busy.test');
    await busy.cmd('MAIL FROM:<load@client.test>');
    await busy.cmd('RCPT TO:<sink@example.com>');
    assert.match(await busy.cmd('DATA'), /^354/);
    busy.write('Message-ID: <in-data@client.test>\r\nSubject: slow\r\n\r\nfirst half\r\n');
    const stopping = relay.stop();
    assert.equal(await idle.read(), '421 4.3.2 Service shutting down, try again later');
    await new Promise((r) => setTimeout(r, 1000));
    busy.write('second half\r\n.\r\n');
    assert.match(await busy.read(), /^250 2\.0\.0 Ok: queued as /);
    assert.equal(await busy.read(), '421 4.3.2 Service shutting down, try again later');
    assert.equal(await stopping, 0);
    await relay.start();
    await waitUntil(() => delivered(sink).has('in-data@client.test'), 'the message sent during the stop', 10_000);
    await relay.stop();
  });

  it('answers 421 4.3.2 to a message still arriving when the drain time is over, and does not deliver it', async () => {
    await relay.start();
    const slow = await RawSmtp.connect(port);
    await slow.read();
    await slow.cmd('EHLO slow.test');
    await slow.cmd('MAIL FROM:<load@client.test>');
    await slow.cmd('RCPT TO:<sink@example.com>');
    assert.match(await slow.cmd('DATA'), /^354/);
    slow.write('Message-ID: <too-slow@client.test>\r\nSubject: slow\r\n\r\nnever finished\r\n');
    const t0 = Date.now();
    const stopping = relay.stop();
    assert.equal(await slow.read(8000), '421 4.3.2 Service shutting down, try again later');
    const waited = Date.now() - t0;
    assert.ok(waited >= 2500 && waited < 6000, `421 after ${waited} ms (drainTime 3s)`);
    assert.equal(await stopping, 0);
    await relay.start();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(delivered(sink).has('too-slow@client.test'), false);
    await relay.stop();
  });

  it('answers 421 4.3.2 to a message still being screened when the drain time is over, and does not deliver it', async () => {
    await relay.start();
    const c = await RawSmtp.connect(port);
    await c.read();
    await c.cmd('EHLO slow.test');
    await c.cmd('MAIL FROM:<load@client.test>');
    assert.match(await c.cmd('RCPT TO:<very-slow@example.com>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    c.write('Message-ID: <screened-too-long@client.test>\r\nSubject: slow screening\r\n\r\nbody\r\n.\r\n');
    await new Promise((r) => setTimeout(r, 300)); // the data is in; the screener takes 8 s
    const t0 = Date.now();
    const stopping = relay.stop();
    assert.equal(await c.read(8000), '421 4.3.2 Service shutting down, try again later');
    const waited = Date.now() - t0;
    assert.ok(waited >= 2500 && waited < 6000, `421 after ${waited} ms (drainTime 3s)`);
    assert.equal(await stopping, 0);
    await relay.start();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(delivered(sink).has('screened-too-long@client.test'), false);
    await relay.stop();
  });
});
