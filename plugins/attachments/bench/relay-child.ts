/**
 * The relay under measurement, in its own process so its RSS is its own:
 *   tsx bench/relay-child.ts <sink host:port>
 * Prints `PORT <n>` on stdout once listening; stops on SIGTERM.
 */
import { startTestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import attachments from '../src/index.js';

const sink = process.argv[2];
if (!sink) throw new Error('usage: relay-child.ts <sink host:port>');
const relay = await startTestRelay({
  builtins: { 'relay-policy': relayPolicy, attachments },
  config: {
    limits: { messageSize: '100MB' },
    plugins: [
      { use: 'relay-policy', with: { domains: { 'example.com': { nexthop: sink, tls: 'none' } } } },
      // Defaults: every check on, inbound and outbound, archives opened up to 100 MB.
      { use: 'attachments', with: { action: 'strip' }, enabled: process.env['BENCH_WITHOUT_PLUGIN'] !== '1' },
    ],
  },
});
process.stdout.write(`PORT ${relay.port}\n`);
process.on('SIGTERM', () => {
  void relay.stop().then(() => process.exit(0));
});
