import { describePluginConformance } from '@portcullis/testkit';
import spamassassin from '../src/index.js';
import { startSilentServer } from './support/spamd.js';

// The session tests run with spamd unreachable (the fail-closed path); the stall test against a
// server that accepts and never answers (a hung spamd, which the real one cannot be made to be).
let silent: Awaited<ReturnType<typeof startSilentServer>> | undefined;
before(async () => {
  silent = await startSilentServer();
});
after(() => silent?.close());

describePluginConformance(spamassassin, {
  options: { servers: ['127.0.0.1:9'], connectTimeout: '200ms', timeout: '300ms' },
  invalid: [
    { options: { servers: ['not a server'] }, path: 'servers[0]' },
    { options: { onError: 'ignore' }, path: 'onError' },
    { options: { command: 'TELL' }, path: 'command' },
    { options: { headers: { status: 'Bad Header' } }, path: 'headers.status' },
    { options: { maxSize: 'huge' }, path: 'maxSize' },
  ],
  stall: { options: () => ({ servers: [`127.0.0.1:${silent!.port}`], timeout: '20s' }) },
});
