import net from 'node:net';
import { describePluginConformance } from '@portcullis/testkit';
import rspamd from '../src/index.js';

// The stall test needs an rspamd that accepts the connection, reads everything and never answers:
// a hang the real rspamd cannot be made to produce on demand, so this one fault is a bare TCP server.
let silent: net.Server | undefined;
const sockets = new Set<net.Socket>();
before(async () => {
  silent = net.createServer((s) => {
    sockets.add(s);
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => silent!.listen(0, '127.0.0.1', () => resolve()));
});
after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => (silent ? silent.close(() => resolve()) : resolve()));
});

describePluginConformance(rspamd, {
  options: { servers: ['127.0.0.1:9'], connectTimeout: '200ms', timeout: '300ms' },
  invalid: [
    { options: { servers: ['not a server'] }, path: 'servers[0]' },
    { options: { onError: 'ignore' }, path: 'onError' },
    { options: { statusHeader: 'Bad Header' }, path: 'statusHeader' },
    { options: { outbound: { settingsId: 'has space' } }, path: 'outbound.settingsId' },
    { options: { inbound: { scan: 'no' } }, path: 'inbound.scan' },
    { options: { trustedNetworks: ['10.0.0/8'] }, path: 'trustedNetworks[0]' },
  ],
  stall: { options: () => ({ servers: [`127.0.0.1:${(silent!.address() as net.AddressInfo).port}`], timeout: '20s' }) },
});
