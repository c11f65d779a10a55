import { describePluginConformance } from '@portcullis/testkit';
import dnsbl from '../src/index.js';

describePluginConformance(dnsbl, {
  options: { zones: [{ zone: 'bl.example', weight: 1 }], timeout: '300ms' },
  invalid: [
    { options: { zones: [] }, path: 'zones' },
    { options: { zones: [{ zone: 'not a zone' }] }, path: 'zones[0].zone' },
    { options: { zones: [{ zone: 'bl.example' }], action: 'shout' }, path: 'action' },
  ],
  // The client (127.0.0.1) is listed: dnsbl refuses it at MAIL FROM from scripted answers.
  dns: { '1.0.0.127.bl.example': { A: ['127.0.0.2'], TXT: [['listed for the test']] } },
});
