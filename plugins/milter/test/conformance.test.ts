import { describePluginConformance } from '@portcullis/testkit';
import milter from '../src/index.js';
import { faultyMilter } from './support/daemon.js';

// A milter that negotiates and then never answers a command: the hook timeout must cut it off.
let silent: Awaited<ReturnType<typeof faultyMilter>> | undefined;
before(async () => {
  silent = await faultyMilter({ at: 'C', silent: true });
});
after(() => silent?.close());

describePluginConformance(milter, {
  options: { milters: [{ address: 'inet:127.0.0.1:9', connectTimeout: '200ms', commandTimeout: '300ms' }] },
  invalid: [
    { options: { milters: [{ address: 'tcp:127.0.0.1:1' }] }, path: 'milters[0].address' },
    { options: { milters: [{ address: 'inet:127.0.0.1:8891', defaultAction: 'ignore' }] }, path: 'milters[0].defaultAction' },
    { options: { milters: [{ address: 'inet:127.0.0.1:8891', macros: { rcpt: ['not a macro'] } }] }, path: 'milters[0].macros.rcpt[0]' },
    { options: { milters: [] }, path: 'milters' },
  ],
  stall: { options: () => ({ milters: [{ address: silent!.address, commandTimeout: '20s' }] }) },
});
