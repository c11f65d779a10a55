import { describePluginConformance } from '@portcullis/testkit';
import clamav from '../src/index.js';
import { freePort, startSilentServer } from './support/clamd.js';

// A clamd address where nothing listens (the session tests then see the fail-closed path), and a
// real server that accepts and never answers (the timeout test: a hung clamd).
let closedPort = 0;
let silent: Awaited<ReturnType<typeof startSilentServer>> | undefined;
before(async () => {
  closedPort = await freePort();
  silent = await startSilentServer();
});
after(() => silent?.close());

describePluginConformance(clamav, {
  options: { servers: ['127.0.0.1:9'], connectTimeout: '200ms', timeout: '300ms' },
  invalid: [
    { options: { servers: ['not a server'] }, path: 'servers[0]' },
    { options: { onError: 'ignore' }, path: 'onError' },
    { options: { header: 'Bad Header' }, path: 'header' },
  ],
  stall: { options: () => ({ servers: [`127.0.0.1:${silent!.port}`], timeout: '20s' }) },
});
void closedPort;
