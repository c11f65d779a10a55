import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generate } from 'selfsigned';

/** Writes a fresh self-signed key and certificate for `name` (and 127.0.0.1) into a temp folder. */
export async function selfSignedFiles(name = 'relay.test'): Promise<{ dir: string; key: string; cert: string; certPem: string }> {
  const pems = await generate([{ name: 'commonName', value: name }], {
    keySize: 2048,
    days: 2,
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: name }, { type: 7, ip: '127.0.0.1' }] }],
  } as Parameters<typeof generate>[1]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-tls-'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  writeFileSync(key, pems.private, { mode: 0o600 });
  writeFileSync(cert, pems.cert);
  return { dir, key, cert, certPem: pems.cert };
}
