import { describePluginConformance } from '@portcullis/testkit';
import relayPolicy from '../src/index.js';

describePluginConformance(relayPolicy, {
  options: { domains: { 'example.com': { nexthop: '127.0.0.1:2526' } }, trustedNetworks: ['10.0.0.0/8'] },
  invalid: [
    { options: { domains: { 'example.com': { nexthop: 'no-port' } } }, path: 'domains.example.com.nexthop' },
    { options: { trustedNetworks: ['10.0.0.0/33'] }, path: 'trustedNetworks[0]' },
    { options: { authThrottle: { maxFailuresPerConnection: 0 } }, path: 'authThrottle.maxFailuresPerConnection' },
  ],
  // relay-policy answers every recipient itself: nothing after it is needed to route example.com.
  companions: [],
});
