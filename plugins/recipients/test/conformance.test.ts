import net from 'node:net';
import { describePluginConformance } from '@portcullis/testkit';
import recipients from '../src/index.js';

// A next hop that accepts the TCP connection and never says a word: the callout's backend stalls.
const silent = net.createServer((s) => s.on('error', () => undefined));
await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
after(() => silent.close());

describePluginConformance(recipients, {
  options: {
    sources: { users: { list: { addresses: ['rcpt@example.com', '@catchall.example.com'] } } },
    domains: { 'example.com': ['users'] },
  },
  invalid: [
    { options: { sources: { users: { list: {} } }, domains: { 'example.com': ['nope'] } }, path: 'domains.example.com[0]' },
    { options: { sources: { users: { list: {}, callout: {} } }, domains: {} }, path: 'sources.users' },
    { options: { sources: { dir: { ldap: { urls: ['http://x'], base: 'dc=x' } } }, domains: {} }, path: 'sources.dir.ldap.urls[0]' },
    { options: { sources: { dir: { ldap: { urls: ['ldap://127.0.0.1:389'], base: 'dc=x', bindDn: 'cn=x' } } }, domains: {} }, path: 'sources.dir.ldap.passwordFile' },
    { options: { sources: {}, domains: {}, cache: { negative: '2h' } }, path: 'cache.negative' },
  ],
  stall: {
    options: () => ({
      sources: { verify: { callout: { nexthop: `127.0.0.1:${(silent.address() as net.AddressInfo).port}` } } },
      domains: { 'example.com': ['verify'] },
    }),
  },
});
