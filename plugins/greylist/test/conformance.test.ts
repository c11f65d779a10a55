import { describePluginConformance } from '@portcullis/testkit';
import greylist from '../src/index.js';

describePluginConformance(greylist, {
  options: { delay: '1m' },
  invalid: [
    { options: { delay: 'soon' }, path: 'delay' },
    { options: { trustedNetworks: ['10.0.0.1/8'] }, path: 'trustedNetworks[0]' },
    { options: { allow: { recipients: ['nobody'] } }, path: 'allow.recipients[0]' },
    { options: { ipv4Prefix: 33 }, path: 'ipv4Prefix' },
  ],
});
