import assert from 'node:assert/strict';
import net from 'node:net';
import { accept, definePlugin, duration, tempfail, reject, z, type PluginDefinition } from '@portcullis/core';
import { CaptureServer, describeScannerFailClosed, sendMail, startTestRelay, type ScannerBackendOptions, type ScannerFailClosedSpec, type TestRelay } from '@portcullis/testkit';

/**
 * A scanner plugin small enough to read in one go, so the suite can be checked against a plugin that
 * fails closed and against one that does not: it connects to `servers[0]`, sends the message and
 * waits for one line back. `failOpen` is the bug the suite is there to catch (every backend
 * failure passed silently, whatever `onError` says).
 */
function miniScanner(failOpen: boolean): PluginDefinition {
  return definePlugin({
    name: 'mini-scanner',
    options: z.strictObject({ servers: z.array(z.string()).min(1), timeout: duration().default(5_000), onError: z.enum(['tempfail', 'accept', 'reject']).default('tempfail') }),
    setup: (o) => ({
      rcpt: () => accept(),
      message: async (txn) => {
        const [host, port] = [o.servers[0]!.replace(/:\d+$/, ''), Number(/:(\d+)$/.exec(o.servers[0]!)![1])];
        const failure = await new Promise<string | undefined>((resolve) => {
          const s = net.connect({ host, port });
          const timer = setTimeout(() => (s.destroy(), resolve('timed out')), o.timeout);
          s.on('connect', () => s.write('SCAN\n'));
          s.on('data', () => (clearTimeout(timer), s.destroy(), resolve(undefined)));
          s.on('error', () => (clearTimeout(timer), resolve('unreachable')));
        });
        if (!failure || failOpen) return undefined;
        const policy = failure === 'timed out' ? 'tempfail' : o.onError;
        if (policy === 'tempfail') return tempfail(451, '4.7.0', `Message not scanned (scanner ${failure}), try again later`);
        if (policy === 'reject') return reject(554, '5.7.0', `Message refused: scanner ${failure}`);
        txn.addHeader('X-Mini-Scanner', `unscanned (scanner ${failure})`);
        return undefined;
      },
    }),
  });
}

/**
 * The test kit's fail-closed cases for scanner plugins (describeScannerFailClosed), checked here rather
 * than in packages/testkit/test because they need loopback (the kit's own tests run without a network).
 */
describe('describeScannerFailClosed (test kit)', function () {
  this.timeout(30_000);
  // One next hop per scanner: a fail-open scanner's late deliveries must not count in the other's cases.
  const sinks: CaptureServer[] = [];
  const relays: TestRelay[] = [];
  after(async () => {
    for (const r of relays) await r.stop();
    for (const s of sinks) await s.close();
  });

  const spec = (plugin: PluginDefinition, sink: () => CaptureServer): ScannerFailClosedSpec => ({
    backend: 'the mini scanner',
    relayWith: async (options: ScannerBackendOptions) => {
      const route = definePlugin({ name: 'to-sink', setup: () => ({ route: () => ({ hosts: [{ host: '127.0.0.1', port: sink().port }], tls: 'none' }) }) });
      const relay = await startTestRelay({ builtins: { scanner: plugin, 'to-sink': route }, config: { plugins: [{ use: 'scanner', with: options }, { use: 'to-sink' }] } });
      relays.push(relay);
      return relay;
    },
    send: (relay, raw) => sendMail({ port: relay.port, from: 'a@remote.test', to: 'b@example.com', raw }),
    sink,
    message: (tag) => `From: a@remote.test\r\nTo: b@example.com\r\nSubject: ${tag}\r\n\r\nbody of ${tag}\r\n`,
    replies: { timedOut: '451 4.7.0 Message not scanned (scanner timed out), try again later', unreachableReject: '554 5.7.0 Message refused: scanner unreachable' },
    unscannedHeader: /\r\nX-Mini-Scanner: unscanned \(scanner unreachable\)\r\n$/,
    maxMs: 5_000,
  });

  // The suite itself, as a plugin package runs it.
  describe('run by mocha on a scanner that fails closed', () => {
    let sink: CaptureServer;
    before(async () => {
      sink = await CaptureServer.start({ host: '127.0.0.1' });
      sinks.push(sink);
    });
    describeScannerFailClosed(spec(miniScanner(false), () => sink));
  });

  it('fails a scanner that passes a message whenever its backend fails, on each of its three cases', async () => {
    // A fresh next hop per case: what a fail-open scanner let through in one case must not land in the next.
    let sink: CaptureServer | undefined;
    const tests: Array<{ title: string; fn: () => Promise<void> }> = [];
    describeScannerFailClosed({ ...spec(miniScanner(true), () => sink!), mocha: { it: (title, fn) => tests.push({ title, fn }) } });
    const outcome: string[] = [];
    for (const t of tests) {
      sink = await CaptureServer.start({ host: '127.0.0.1' });
      sinks.push(sink);
      outcome.push(await t.fn().then(() => 'pass', (err: Error) => `fail: ${err.message.split('\n')[0]}`));
    }
    assert.equal(tests.length, 3);
    assert.match(outcome[0]!, /^fail: Expected values to be strictly equal/);
    assert.match(outcome[1]!, /^fail: Expected values to be strictly equal/);
    assert.match(outcome[2]!, /^fail: The input did not match the regular expression/); // accepted, but without the unscanned header
  });
});
