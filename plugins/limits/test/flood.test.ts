import assert from 'node:assert/strict';
import net from 'node:net';
import { CaptureServer, freePort, sendMail, RelayProcess } from '@portcullis/testkit';

/**
 * Opens `n` connections from `from`, `wave` at a time (a burst far past the listen backlog of 511 makes
 * the kernel drop handshakes, which says nothing about the relay), and resolves with each one's first
 * reply; the connections the relay keeps stay open.
 */
async function flood(port: number, from: string, n: number, sockets: net.Socket[], wave = 250): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i += wave) out.push(...(await connectMany(port, from, Math.min(wave, n - i), sockets)));
  return out;
}

async function connectMany(port: number, from: string, n: number, sockets: net.Socket[]): Promise<string[]> {
  return Promise.all(
    Array.from({ length: n }, () =>
      new Promise<string>((resolve) => {
        const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
        sockets.push(s);
        let buf = '';
        const t = setTimeout(() => resolve('no reply in 20 s'), 20_000);
        s.on('data', (d: Buffer) => {
          buf += d.toString();
          const i = buf.indexOf('\r\n');
          if (i >= 0) {
            clearTimeout(t);
            resolve(buf.slice(0, i));
          }
        });
        s.on('error', (err) => (clearTimeout(t), resolve(`error ${err.message}`)));
        s.on('close', () => (clearTimeout(t), resolve(buf || 'closed without a reply')));
      }),
    ),
  );
}

const tally = (replies: string[]) =>
  replies.reduce<Record<string, number>>((acc, r) => {
    const key = r.startsWith('220 ') ? '220' : r;
    acc[key] = (acc[key] ?? 0) + 1;
    return acc;
  }, {});

describe('connection floods against a relay process', function () {
  this.timeout(120_000);
  let relay: RelayProcess;
  let sink: CaptureServer;
  const sockets: net.Socket[] = [];
  before(async () => {
    sink = await CaptureServer.start();
    const port = await freePort();
    relay = await RelayProcess.start(
      {
        hostname: 'relay.test',
        listen: [{ host: '127.0.0.1', port }],
        limits: { connections: 1000, connectionsPerIp: 100 },
        log: { level: 'warn' },
        plugins: [
          { use: 'limits', with: { exempt: { networks: ['127.0.0.2/32'] }, reservedConnections: 100, perIp: { connections: 20, connectionRate: false } } },
          { use: 'relay-policy', with: { domains: { 'example.test': { nexthop: sink.address, tls: 'none' } }, trustedNetworks: ['127.0.0.2/32'] } },
        ],
      },
      port,
    );
    startRss = relay.peakRssMb();
  });
  let startRss = 0;
  afterEach(() => {
    for (const s of sockets.splice(0)) s.destroy();
  });
  after(async () => {
    if (relay) console.log(`      relay RSS: ${startRss.toFixed(1)} MB after start, peak ${relay.peakRssMb().toFixed(1)} MB`);
    await relay?.stop();
    await sink?.close();
  });

  it('refuses 2,000 connections from one address (250 in flight at a time, 20 held open) past its limit with 421 4.7.0 and still serves a trusted client', async () => {
    const replies = await flood(relay.port, '127.0.0.9', 2000, sockets);
    const t = tally(replies);
    assert.deepEqual(t, { '220': 20, '421 4.7.0 Too many connections from your address, try again later': 1980 }, JSON.stringify(t));
    const trusted = await sendMail({ port: relay.port, localAddress: '127.0.0.2', from: 'a@inside.test', to: 'b@example.test' });
    assert.equal(trusted.ok, true, trusted.response);
    await sink.waitFor(1);
  });

  it('keeps 100 of 1,000 slots for trusted clients when 50 addresses hold 20 idle connections each', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => flood(relay.port, `127.0.1.${i + 1}`, 20, sockets)));
    const t = tally(results.flat());
    assert.deepEqual(t, { '220': 900, '421 4.7.0 Too many connections, try again later': 100 }, JSON.stringify(t));
    const trusted = await sendMail({ port: relay.port, localAddress: '127.0.0.2', from: 'a@inside.test', to: 'b@example.test' });
    assert.equal(trusted.ok, true, trusted.response);
    await sink.waitFor(2);
  });
});
