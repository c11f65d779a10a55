import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { callHook, hostedRelay, sendMail, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import recipients from '../src/index.js';
import { rcptReply } from './support/smtp.js';

const builtins = { recipients, 'relay-policy': relayPolicy };
const UNKNOWN = (a: string) => `550 5.1.1 <${a}>: Recipient address rejected: User unknown`;

describe('recipients: list source', function () {
  this.timeout(60_000);
  let dir: string;
  let t: HostedRelay;
  let usersFile: string;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-recipients-'));
    usersFile = path.join(dir, 'users.txt');
    writeFileSync(usersFile, '# staff\nalice@hosted.example\nBob@Hosted.Example   # mixed case in the file\n\nmueller@bücher.example\n@catchall.example\n');
    t = await hostedRelay({
      builtins,
      domain: ['hosted.example', 'sub.hosted.example', 'xn--bcher-kva.example', 'catchall.example', 'other.example'],
      policy: { trustedNetworks: ['127.0.0.9'] },
      config: { admin: { enabled: true, port: 0 } },
      pluginsBefore: [
        {
          use: 'recipients',
          with: {
            sources: { users: { list: { addresses: ['postmaster@hosted.example'], files: [usersFile] } } },
            domains: { 'hosted.example': ['users'], '*.hosted.example': ['users'], 'bücher.example': ['users'], 'catchall.example': ['users'] },
            subaddressDelimiter: '+-',
            outbound: { trustedNetworks: ['127.0.0.9'] },
          },
        },
      ],
    });
  });
  after(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('knows inline and file addresses in any case, sub-addresses with each delimiter, IDN domains (written as U-labels in the file and the config, asked as A-labels: the relay has no SMTPUTF8) and @domain catch-alls', async () => {
    for (const a of ['postmaster@hosted.example', 'alice@hosted.example', 'ALICE@hosted.example', 'bob@hosted.example', 'alice+tag@hosted.example', 'alice-tag@hosted.example', 'mueller@xn--bcher-kva.example', 'MUELLER@XN--BCHER-KVA.example', 'anyone@catchall.example']) {
      const got = await rcptReply(t.port, a);
      assert.match(got, /^250 /, `${a}: ${got}`);
    }
    for (const a of ['carol@hosted.example', 'alice.tag@hosted.example', 'other@xn--bcher-kva.example', 'alice@sub.hosted.example']) {
      assert.equal(await rcptReply(t.port, a), UNKNOWN(a), a);
    }
  });

  it('leaves domains it does not host to relay-policy', async () => {
    assert.match(await rcptReply(t.port, 'whoever@other.example'), /^250 /);
    assert.equal(await rcptReply(t.port, 'whoever@elsewhere.example'), '550 5.7.1 Unable to relay');
  });

  it('does not check outbound mail from a trusted network', async () => {
    assert.match(await rcptReply(t.port, 'nobody@hosted.example', '127.0.0.9'), /^250 /);
  });

  it('re-reads its file when it changes', async () => {
    assert.equal(await rcptReply(t.port, 'newhire@hosted.example'), UNKNOWN('newhire@hosted.example'));
    writeFileSync(usersFile, 'alice@hosted.example\nnewhire@hosted.example\n');
    await new Promise((r) => setTimeout(r, 1100));
    assert.match(await rcptReply(t.port, 'newhire@hosted.example'), /^250 /);
    assert.equal(await rcptReply(t.port, 'bob@hosted.example'), UNKNOWN('bob@hosted.example'), 'removed from the file');
  });

  it('keeps the last good copy when the file disappears', async () => {
    rmSync(usersFile);
    await new Promise((r) => setTimeout(r, 1100));
    assert.match(await rcptReply(t.port, 'newhire@hosted.example'), /^250 /);
    writeFileSync(usersFile, 'alice@hosted.example\nnewhire@hosted.example\n');
  });

  it('delivers to a known recipient and counts lookups and decisions on /metrics', async () => {
    const r = await sendMail({ port: t.port, from: 'x@outside.test', to: 'alice@hosted.example', text: 'hi' });
    assert.equal(r.ok, true, r.response);
    const admin = t.relay.adminAddress()!;
    const text = await (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
    assert.match(text, /^portcullis_recipients_lookups_total\{source="list",result="known"\} [1-9]\d*$/m);
    assert.match(text, /^portcullis_recipients_lookups_total\{source="list",result="unknown"\} [1-9]\d*$/m);
    assert.match(text, /^portcullis_recipients_decisions_total\{decision="unknown"\} [1-9]\d*$/m);
  });
});

describe('recipients: authenticated senders (the rcpt hook called directly)', () => {
  const options = { sources: { users: { list: { addresses: ['alice@hosted.example'] } } }, domains: { 'hosted.example': ['users'] } };
  it('does not check recipients for an authenticated user (outbound)', async () => {
    const r = await callHook(recipients, 'rcpt', { options, session: { user: 'alice@hosted.example' }, address: 'nobody@hosted.example' });
    assert.equal(r.verdict, undefined);
  });
  it('checks them too with outbound.check', async () => {
    const r = await callHook(recipients, 'rcpt', { options: { ...options, outbound: { check: true } }, session: { user: 'alice@hosted.example' }, address: 'nobody@hosted.example' });
    assert.deepEqual(r.reply && [r.reply.code, r.reply.enhanced, r.reply.text], [550, '5.1.1', '<nobody@hosted.example>: Recipient address rejected: User unknown']);
  });
});
