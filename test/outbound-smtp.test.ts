import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CaptureServer, hostedRelay, selfSignedFiles, sendMail, startTestRelay, type TestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';

describe('outbound SMTP client', function () {
  this.timeout(60_000);

  it('reuses connections and never opens more than maxConnectionsPerHost to one next hop', async () => {
    let active = 0;
    let peak = 0;
    let sessions = 0;
    const hosted = await hostedRelay({
      builtins: { 'relay-policy': relayPolicy },
      domain: 'example.com',
      config: {
        limits: { connectionsPerIp: 100 },
        delivery: { concurrency: 20, maxConnectionsPerHost: 3, connectionIdle: '2s' },
      },
      capture: { server: {
        onConnect: (_s, cb) => {
          active++;
          sessions++;
          peak = Math.max(peak, active);
          cb();
        },
        onClose: () => {
          active--;
        },
      } },
    });
    const { sink } = hosted;
    const relay = hosted;
    try {
      const sends = Array.from({ length: 40 }, (_, i) => sendMail({ port: relay.port, from: 'a@client.test', to: `u${i}@example.com`, subject: `m${i}` }));
      const results = await Promise.all(sends);
      assert.ok(results.every((r) => r.ok));
      await sink.waitFor(40, 20_000);
      assert.ok(peak <= 3, `peak ${peak} simultaneous connections`);
      assert.ok(sessions < 40, `${sessions} sessions for 40 messages: connections were not reused`);
    } finally {
      await relay.stop();
      await sink.close();
    }
  });

  it('falls back to plaintext when a next hop offers STARTTLS but the handshake fails, and remembers the host', async () => {
    const files = await selfSignedFiles('sink.test');
    // A real smtp-server whose TLS setup cannot agree with any client (TLS 1.2 only, with a cipher
    // list nobody offers): it advertises STARTTLS and then fails every handshake.
    const broken = await CaptureServer.start({
      server: {
        disabledCommands: ['AUTH'],
        key: readFileSync(files.key),
        cert: readFileSync(files.cert),
        minVersion: 'TLSv1.2',
        maxVersion: 'TLSv1.2',
        ciphers: 'eNULL',
      } as object,
    });
    const relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy },
      config: { plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: broken.address, tls: 'opportunistic' } } } }] },
    });
    try {
      assert.equal((await sendMail({ port: relay.port, from: 'a@client.test', to: 'u@example.com', subject: 'plain please' })).ok, true);
      const [msg] = await broken.waitFor(1, 15_000);
      assert.doesNotMatch(msg!.raw.toString(), /ESMTPS/);
      assert.deepEqual(relay.relay.queue.client.plaintextHosts, [broken.address]);
    } finally {
      await relay.stop();
      await broken.close();
    }
  });

  it('defers, never downgrades, when a domain requires TLS and the next hop cannot do it', async () => {
    const plain = await CaptureServer.start();
    const relay = await startTestRelay({
      builtins: { 'relay-policy': relayPolicy },
      config: { delivery: { retrySchedule: ['1h'] }, plugins: [{ use: 'relay-policy', with: { domains: { 'example.com': { nexthop: plain.address, tls: 'required' } } } }] },
    });
    try {
      assert.equal((await sendMail({ port: relay.port, from: 'a@client.test', to: 'u@example.com' })).ok, true);
      let listed: Array<{ attempts: number; lastError?: string; busy: boolean }> = [];
      for (let i = 0; i < 50 && !(listed[0]?.attempts && !listed[0].busy); i++) {
        await new Promise((r) => setTimeout(r, 100));
        listed = relay.relay.queue.list();
      }
      assert.equal(listed[0]!.attempts, 1);
      assert.match(listed[0]!.lastError ?? '', /STARTTLS|TLS/i);
      assert.equal(plain.messages.length, 0);
    } finally {
      await relay.stop();
      await plain.close();
    }
  });
});
