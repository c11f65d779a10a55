import { describePluginConformance } from '@portcullis/testkit';
import limits from '../src/index.js';

describePluginConformance(limits, {
  options: { perIp: { connections: 5 } },
  invalid: [
    { options: { perIp: { connections: 0 } }, path: 'perIp.connections' },
    { options: { ipv6Prefix: 8 }, path: 'ipv6Prefix' },
    { options: { exempt: { networks: ['10.0.0.0/33'] } }, path: 'exempt.networks[0]' },
  ],
});
