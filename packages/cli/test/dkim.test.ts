import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { cleanupDirs, runCli, tempDir } from './helpers.js';

/** The `p=` of a printed zone-file record, its quoted strings joined. */
function publishedKey(stdout: string): { k: string; p: string } {
  const line = stdout.split('\n').find((l) => l.includes('._domainkey.'))!;
  const text = [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1]).join('');
  return { k: /k=(\w+)/.exec(text)![1]!, p: /p=([A-Za-z0-9+/=]+)/.exec(text)![1]! };
}

describe('portcullis dkim keygen', function () {
  this.timeout(30_000);
  after(cleanupDirs);

  it('writes an RSA-2048 key with mode 0600 and prints a TXT record holding its public key', async () => {
    const dir = tempDir();
    const r = await runCli(['dkim', 'keygen', 'Example.COM', 's2026'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const file = path.join(dir, 'dkim', 'example.com.s2026.key');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const key = createPrivateKey(readFileSync(file));
    assert.equal(key.asymmetricKeyType, 'rsa');
    assert.equal(key.asymmetricKeyDetails?.modulusLength, 2048);
    assert.match(r.stdout, /^s2026\._domainkey\.example\.com\. IN TXT \( "v=DKIM1; k=rsa; p=/m);
    const { k, p } = publishedKey(r.stdout);
    assert.equal(k, 'rsa');
    const pub = createPublicKey({ key: Buffer.from(p, 'base64'), format: 'der', type: 'spki' });
    const sig = sign('sha256', Buffer.from('probe'), key);
    assert.ok(verify('sha256', Buffer.from('probe'), pub, sig), 'the published key verifies what the private key signs');
  });

  it('writes an Ed25519 key whose record carries the raw 32-byte public key (RFC 8463)', async () => {
    const dir = tempDir();
    const r = await runCli(['dkim', 'keygen', 'example.com', 'ed1', '--type', 'ed25519', '--out', 'keys/ed.key'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const file = path.join(dir, 'keys', 'ed.key');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const { k, p } = publishedKey(r.stdout);
    assert.equal(k, 'ed25519');
    const raw = Buffer.from(p, 'base64');
    assert.equal(raw.length, 32);
    const spki = createPublicKey(createPrivateKey(readFileSync(file))).export({ type: 'spki', format: 'der' });
    assert.deepEqual(spki.subarray(spki.length - 32), raw);
  });

  it('refuses to overwrite an existing key and rejects a bad domain, exiting 1', async () => {
    const dir = tempDir();
    assert.equal((await runCli(['dkim', 'keygen', 'example.com', 'a'], { cwd: dir })).code, 0);
    const before = readFileSync(path.join(dir, 'dkim', 'example.com.a.key'), 'utf8');
    const again = await runCli(['dkim', 'keygen', 'example.com', 'a'], { cwd: dir });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists: refusing to overwrite/);
    assert.equal(readFileSync(path.join(dir, 'dkim', 'example.com.a.key'), 'utf8'), before);
    const bad = await runCli(['dkim', 'keygen', 'not a domain', 'a'], { cwd: dir });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /is not a domain name/);
  });
});
