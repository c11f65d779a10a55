/**
 * A relay in its own process, so that its memory can be measured alone (VmRSS / VmHWM in
 * /proc/PID/status). Reads a relay config as JSON from argv[2], prints `READY <port>`, runs until
 * SIGTERM. Plugins: relay-policy and mailauth.
 */
import { startTestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import mailauth from '../../src/index.js';

const config = JSON.parse(process.argv[2]!) as Record<string, unknown>;
const relay = await startTestRelay({ builtins: { 'relay-policy': relayPolicy, mailauth }, config });
process.stdout.write(`READY ${relay.port}\n`);
process.on('SIGTERM', () => {
  void relay.stop().then(() => process.exit(0));
});
