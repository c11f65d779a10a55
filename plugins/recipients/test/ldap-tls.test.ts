import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { freePort, hostedRelay, selfSignedFiles, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import recipients from '../src/index.js';
import { Slapd } from './support/slapd.js';
import { rcptReply } from './support/smtp.js';

const builtins = { recipients, 'relay-policy': relayPolicy };

describe('recipients: LDAP over TLS (ldaps:// and StartTLS, CA file) against slapd', function () {
  this.timeout(60_000);
  let slapd: Slapd;
  let tls: Awaited<ReturnType<typeof selfSignedFiles>>;
  before(async () => {
    tls = await selfSignedFiles('ldap.hosted.example');
    // slapd refuses a simple bind without TLS: a lookup that works proves the bind went encrypted.
    slapd = await Slapd.start(await freePort(), [{ uid: 'alice', mail: 'alice@hosted.example' }], { key: tls.key, cert: tls.cert, ldapsPort: await freePort(), requireTlsForBind: true });
  });
  after(async () => {
    await slapd?.remove();
    if (tls) rmSync(tls.dir, { recursive: true, force: true });
  });

  async function withRelay(ldap: Record<string, unknown>, work: (t: HostedRelay) => Promise<void>): Promise<void> {
    const t = await hostedRelay({
      builtins,
      domain: 'hosted.example',
      pluginsBefore: [
        {
          use: 'recipients',
          with: {
            sources: { directory: { ldap: { base: slapd.suffix, bindDn: slapd.bindDn, passwordFile: slapd.passwordFile, timeout: '2s', ...ldap } } },
            domains: { 'hosted.example': ['directory'] },
          },
        },
      ],
    });
    try {
      await work(t);
    } finally {
      await t.close();
    }
  }
  const FAILURE = (a: string) => `451 4.3.0 <${a}>: Temporary lookup failure, try again later`;

  it('looks up over ldaps:// with the CA file', async () => {
    await withRelay({ urls: [`ldaps://127.0.0.1:${slapd.tls!.ldapsPort}`], caFile: tls.cert }, async (t) => {
      assert.match(await rcptReply(t.port, 'alice@hosted.example'), /^250 /);
      assert.match(await rcptReply(t.port, 'nobody@hosted.example'), /^550 5\.1\.1 /);
    });
  });

  it('looks up over ldap:// after StartTLS with the CA file', async () => {
    await withRelay({ urls: [slapd.url], startTls: true, caFile: tls.cert }, async (t) => {
      assert.match(await rcptReply(t.port, 'alice@hosted.example'), /^250 /);
    });
    assert.match(slapd.log, /EXT oid=1\.3\.6\.1\.4\.1\.1466\.20037/, 'slapd logged the StartTLS extended operation');
  });

  it('does not trust a directory certificate outside the CA file: 451 4.3.0, never 250 or 550', async () => {
    await withRelay({ urls: [`ldaps://127.0.0.1:${slapd.tls!.ldapsPort}`] }, async (t) => {
      assert.equal(await rcptReply(t.port, 'alice@hosted.example'), FAILURE('alice@hosted.example'));
    });
  });

  it('cannot bind in clear where the directory requires TLS: 451 4.3.0', async () => {
    await withRelay({ urls: [slapd.url] }, async (t) => {
      assert.equal(await rcptReply(t.port, 'alice@hosted.example'), FAILURE('alice@hosted.example'));
    });
  });
});
