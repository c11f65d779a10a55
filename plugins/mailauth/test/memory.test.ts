import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CaptureServer, describeGrowth, peakGrowthDuring, RelayChild, sendFile, writeBigMessage } from '@portcullis/testkit';
import { generateSigningKey } from '../src/index.js';
import { Dnsmasq } from '../../mx-router/test/support/dnsmasq.js';
import { dkimTxtLine, dkimverify } from './support/dkim-tools.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MB = 1024 * 1024;

/*
 * A 50 MB message through a relay (its own process) that DKIM-signs it with RSA-2048 and Ed25519:
 * the relay's peak RSS must grow by less than 64 MB, and the signatures must verify (python3-dkim).
 */
describe('signing a 50 MB message keeps the relay memory flat', function () {
  this.timeout(120_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mailauth-mem-'));
  let relay: RelayChild;
  let sink: CaptureServer;
  let dns: Dnsmasq;

  before(async () => {
    const rsa = generateSigningKey({ domain: 'big.test', selector: 'rsa', type: 'rsa', out: path.join(dir, 'rsa.key') });
    const ed = generateSigningKey({ domain: 'big.test', selector: 'ed', type: 'ed25519', out: path.join(dir, 'ed.key') });
    dns = await Dnsmasq.start({ lines: [dkimTxtLine('big.test', 'rsa', readFileSync(rsa.file, 'utf8')), dkimTxtLine('big.test', 'ed', readFileSync(ed.file, 'utf8'))] });
    sink = await CaptureServer.start();
    const config = {
      limits: { messageSize: '60MB' },
      plugins: [
        { use: 'relay-policy', with: { domains: { 'dest.test': { nexthop: sink.address, tls: 'none' } }, trustedNetworks: ['127.0.0.1/32'] } },
        { use: 'mailauth', with: { trustedNetworks: ['127.0.0.1/32'], sign: { domains: { 'big.test': [{ selector: 'rsa', key: rsa.file }, { selector: 'ed', key: ed.file }] } } } },
      ],
    };
    relay = await RelayChild.start(path.join(here, 'support', 'relay-child.mjs'), config);
  });
  after(async () => {
    relay?.stop();
    await sink?.close();
    await dns?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const HEAD = 'From: Big <big@big.test>\r\nTo: bob@dest.test\r\nSubject: large\r\nDate: Tue, 01 Dec 2026 09:00:00 +0000\r\nMessage-ID: <big@big.test>\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n';
  const send = async (size: number) => assert.match(await sendFile({ port: relay.port, from: 'big@big.test', to: ['bob@dest.test'], file: writeBigMessage(path.join(dir, `msg-${size}.eml`), HEAD, size) }), /^250 /);

  it('grows the relay peak RSS by less than 64 MB, and both signatures verify', async () => {
    await send(MB); // warm-up: code paths, TLS-free SMTP, the signer are loaded
    await sink.waitFor(1);
    const m = await peakGrowthDuring(relay.pid, async () => {
      await send(50 * MB);
      await sink.waitFor(2, 60_000);
    });
    process.stdout.write(`      ${describeGrowth(m, 'the 50 MB message')}\n`);
    assert.ok(m.growth < 64 * MB, `peak RSS grew by ${(m.growth / MB).toFixed(1)} MB`);
    const got = sink.messages[1]!.raw;
    assert.ok(got.length > 50 * MB);
    for (const index of [0, 1]) {
      const v = await dkimverify(got, dns.port, index);
      assert.ok(v.ok, `signature ${index}: ${v.out}`);
    }
  });
});
