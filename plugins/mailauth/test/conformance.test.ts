import { describePluginConformance } from '@portcullis/testkit';
import mailauth from '../src/index.js';

describePluginConformance(mailauth, {
  options: { authservId: 'relay.test', trustedNetworks: ['10.0.0.0/8'] },
  invalid: [
    { options: { authservId: '' }, path: 'authservId' },
    { options: { verify: { spfFail: 'explode' } }, path: 'verify.spfFail' },
  ],
});
