import { describePluginConformance } from '@portcullis/testkit';
import attachments from '../src/index.js';

describePluginConformance(attachments, {
  options: { action: 'strip', trustedNetworks: ['10.0.0.0/8'] },
  invalid: [
    { options: { action: 'explode' }, path: 'action' },
    { options: { archives: { maxDepth: 99 } }, path: 'archives.maxDepth' },
    { options: { rules: [{ direction: 'sideways' }] }, path: 'rules[0].direction' },
  ],
  mail: {
    message: 'From: <sender@example.org>\r\nTo: <user@example.com>\r\nSubject: with attachment\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHello.\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="run.exe"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\r\n--b--\r\n',
  },
});
