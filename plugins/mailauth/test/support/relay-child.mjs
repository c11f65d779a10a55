/**
 * A relay in its own process, so that its memory can be measured alone (VmRSS / VmHWM in
 * /proc/PID/status). Reads a relay config as JSON from argv[2], prints `READY <port>`, runs until
 * SIGTERM. Plugins: relay-policy and mailauth.
 *
 * Plain JavaScript over the built packages (dist/), started with `node` alone, as the relay runs in
 * production: under tsx the TypeScript compiler's start-up garbage grew V8's heap to ~106 MB before
 * the first message (Node 24), and re-touching those pages counted as the message's RSS growth.
 */
import { startTestRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import mailauth from '../../dist/index.js';

const config = JSON.parse(process.argv[2]);
const relay = await startTestRelay({ builtins: { 'relay-policy': relayPolicy, mailauth }, config });
process.stdout.write(`READY ${relay.port}\n`);
process.on('SIGTERM', () => {
  void relay.stop().then(() => process.exit(0));
});
