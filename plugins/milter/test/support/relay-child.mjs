/**
 * A relay in its own process, so that its memory can be measured alone (VmRSS / VmHWM in
 * /proc/PID/status). Reads a relay config as JSON from argv[2], prints `READY <port>`, runs until
 * SIGTERM. Plugins: relay-policy and milter, from the built packages (dist/), run by plain `node`
 * as in production (see plugins/mailauth/test/support/relay-child.mjs for why not tsx).
 */
import { startTestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import milter from '../../dist/index.js';

const config = JSON.parse(process.argv[2]);
const relay = await startTestRelay({ builtins: { 'relay-policy': relayPolicy, milter }, config });
process.stdout.write(`READY ${relay.port}\n`);
process.on('SIGTERM', () => {
  void relay.stop().then(() => process.exit(0));
});
