import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { Readable } from 'node:stream';
import { signStream } from '../src/signer.js';
import type { SigningKey } from '../src/keys.js';

/*
 * The signer reads the header section (to pick the keys by the From: domain) before the body flows
 * to mailauth. However the message is cut into pieces, it must find the same header section and
 * sign the same bytes; a message without a header section has no From: to sign for.
 */
describe('DKIM signer: the header section however the message arrives', () => {
  const key: SigningKey = {
    domain: 'example.test',
    selector: 'ed',
    algorithm: 'ed25519-sha256',
    privateKey: generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
  const keysFor = (d: string | undefined) => (d === 'example.test' ? { domain: 'example.test', keys: [key] } : undefined);
  const sign = (pieces: Buffer[]) => signStream(Readable.from(pieces), keysFor, { canonicalization: 'relaxed/relaxed' });
  // The signing time (t=) may tick between two signatures, and b= signs it: compare the rest.
  const stable = (sig: string) => sig.replace(/\s+/g, '').replace(/;t=\d+/, '').replace(/;b=[^;]*$/, '');

  it('signs the same header fields and body hash in one piece and in a piece per byte', async () => {
    const message = Buffer.from('From: Alice <alice@example.test>\r\nTo: bob@dest.test\r\nSubject: pieces\r\n\r\nbody line\r\n\r\nlast\r\n');
    const whole = await sign([message]);
    const bytewise = await sign([...message].map((b) => Buffer.from([b])));
    assert.equal(whole.signatures.length, 1);
    assert.equal(whole.domain, 'example.test');
    assert.match(whole.signatures[0]!, /bh=/);
    assert.deepEqual(bytewise.signatures.map(stable), whole.signatures.map(stable));
    const split = await sign([message.subarray(0, 70), message.subarray(70)]); // the blank line cut in two
    assert.deepEqual(split.signatures.map(stable), whole.signatures.map(stable));
  });

  it('signs a message that is all header section (no blank line) for its From: domain', async () => {
    const r = await sign([Buffer.from('From: alice@example.test\r\n'), Buffer.from('Subject: no body\r\n')]);
    assert.equal(r.signatures.length, 1);
    assert.equal(r.domain, 'example.test');
  });

  it('leaves a message without a header section unsigned, even when its body holds a From: line', async () => {
    const r = await sign([Buffer.from('\r\nFrom: alice@example.test\r\n\r\nbody\r\n')]);
    assert.deepEqual(r.signatures, []);
    assert.equal(r.unsigned, 'no-from');
  });
});
