import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { txtRecordValue } from '../../src/keys.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Debian's python with python3-dkim, dnspython and nacl (Ed25519); not a pyenv shim. */
const PYTHON = process.env['DKIM_PYTHON'] ?? '/usr/bin/python3';

function run(cmd: string, args: string[], input: Buffer | string): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.stdin.on('error', () => undefined); // the verifier may exit before reading everything
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
    child.stdin.end(input);
  });
}

/** Verifies the DKIM-Signature at `index` with python3-dkim's dkimverify, keys from dnsmasq on `port`. */
export async function dkimverify(message: Buffer | string, dnsPort: number, index = 0): Promise<{ ok: boolean; out: string }> {
  const r = await run(PYTHON, [path.join(here, 'dkimverify-loopback.py'), String(dnsPort), String(index)], message);
  return { ok: r.code === 0 && r.out.includes('signature ok'), out: r.out.trim() };
}

/** Signs with python3-dkim's dkimsign (an independent signer for inbound tests); returns the signed message. */
export async function dkimsign(message: string, selector: string, domain: string, keyFile: string): Promise<string> {
  const r = await run(PYTHON, ['/usr/bin/dkimsign', selector, domain, keyFile], message);
  // dkimsign prints the message unsigned (and exits 0) when it fails: check for the signature.
  if (r.code !== 0 || !/^DKIM-Signature:/i.test(r.out)) throw new Error(`dkimsign failed: ${r.out.slice(0, 500)}`);
  return r.out;
}

/**
 * ARC-seals a message with python3-dkim's arcsign as forwarder `domain` (which must carry an
 * Authentication-Results field with authserv-id `srvId`); returns the sealed message.
 */
export async function arcseal(message: string, selector: string, domain: string, keyFile: string, srvId: string): Promise<string> {
  const r = await run(PYTHON, ['/usr/bin/arcsign', selector, domain, keyFile, srvId], message);
  if (r.code !== 0 || !/^ARC-Seal:/im.test(r.out)) throw new Error(`arcsign failed: ${r.out.slice(0, 500)}`);
  // arcsign logs to stderr (merged into out by run()); the message starts at the first ARC field.
  return r.out.slice(r.out.search(/^ARC-/m));
}

/** dnsmasq `txt-record=` line publishing a key: the text split into strings of at most 255 bytes. */
export function dkimTxtLine(domain: string, selector: string, privatePem: string): string {
  const text = txtRecordValue(privatePem);
  const parts: string[] = [];
  for (let i = 0; i < text.length; i += 255) parts.push(`"${text.slice(i, i + 255)}"`);
  return `txt-record=${selector}._domainkey.${domain},${parts.join(',')}`;
}
