import net from 'node:net';
import { describePluginConformance } from '@portcullis/testkit';
import policy from '../src/index.js';

// The session tests ask a port where nothing listens (the default action, 451, at RCPT); the stall
// test a real server that accepts and never answers (a hung policy service).
let silent: net.Server | undefined;
const sockets = new Set<net.Socket>();
before(async () => {
  silent = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => silent!.listen(0, '127.0.0.1', r));
});
after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => (silent ? silent.close(() => r()) : r()));
});

describePluginConformance(policy, {
  options: { server: 'inet:127.0.0.1:9', connectTimeout: '200ms', timeout: '300ms', stages: ['connect', 'helo', 'mail', 'rcpt', 'data', 'end-of-message'] },
  invalid: [
    { options: { server: 'not a server' }, path: 'server' },
    { options: { stages: ['rcpt', 'vrfy'] }, path: 'stages[1]' },
    { options: { defaultAction: 'FILTER smtp:[127.0.0.1]:10025' }, path: 'defaultAction' },
    { options: { defaultAction: 'maybe' }, path: 'defaultAction' },
    { options: { rejectCode: 450 }, path: 'rejectCode' },
    { options: { cache: { ttl: 'soon' } }, path: 'cache.ttl' },
  ],
  stall: { options: () => ({ server: `inet:127.0.0.1:${(silent!.address() as net.AddressInfo).port}`, timeout: '20s' }) },
});
