import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';

/** One loaded signing key: where it is published and how it signs. */
export interface SigningKey {
  readonly domain: string;
  readonly selector: string;
  readonly algorithm: 'rsa-sha256' | 'ed25519-sha256';
  /** PEM text, as mailauth takes it. */
  readonly privateKey: string;
}

/** Reads a PEM private key and tells its DKIM algorithm; throws a message naming the file. */
export function loadSigningKey(file: string, domain: string, selector: string): SigningKey {
  let pem: string;
  let key: KeyObject;
  try {
    pem = readFileSync(file, 'utf8');
    key = createPrivateKey(pem);
  } catch (err) {
    throw new Error(`cannot read DKIM key ${file} (${domain}, selector ${selector}): ${(err as Error).message}`);
  }
  const type = key.asymmetricKeyType;
  if (type === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    // RFC 8301: verifiers must refuse keys under 1024 bits; 2048 is what the big providers expect.
    if (bits < 1024) throw new Error(`DKIM key ${file} is RSA-${bits}: use at least 1024 bits (2048 recommended)`);
    return { domain, selector, algorithm: 'rsa-sha256', privateKey: pem };
  }
  if (type === 'ed25519') return { domain, selector, algorithm: 'ed25519-sha256', privateKey: pem };
  throw new Error(`DKIM key ${file} is ${type}: only RSA and Ed25519 keys sign DKIM`);
}

/** The `p=` value of a key's DNS record: base64 of the SubjectPublicKeyInfo (RSA) or the raw 32 bytes (Ed25519, RFC 8463). */
export function publicKeyRecord(privatePem: string): { k: 'rsa' | 'ed25519'; p: string } {
  const pub = createPublicKey(privatePem);
  if (pub.asymmetricKeyType === 'ed25519') {
    const der = pub.export({ type: 'spki', format: 'der' });
    return { k: 'ed25519', p: der.subarray(der.length - 32).toString('base64') };
  }
  return { k: 'rsa', p: pub.export({ type: 'spki', format: 'der' }).toString('base64') };
}

/** `v=DKIM1; k=rsa; p=...`: the TXT record's text. */
export function txtRecordValue(privatePem: string): string {
  const { k, p } = publicKeyRecord(privatePem);
  return `v=DKIM1; k=${k}; p=${p}`;
}

/**
 * The record as a zone file line: long texts are split into quoted strings of at most 255 bytes
 * (one TXT record, several character-strings, which resolvers join).
 */
export function zoneFileLine(domain: string, selector: string, privatePem: string): string {
  const text = txtRecordValue(privatePem);
  const parts: string[] = [];
  for (let i = 0; i < text.length; i += 255) parts.push(`"${text.slice(i, i + 255)}"`);
  return `${selector}._domainkey.${domain}. IN TXT ( ${parts.join(' ')} )`;
}

export interface KeygenResult {
  readonly file: string;
  readonly record: string;
  readonly name: string;
  readonly value: string;
}

/**
 * Writes a new private key (mode 0600, never over an existing file) and returns the DNS record to
 * publish. `portcullis dkim keygen` prints it.
 */
export function generateSigningKey(opts: { domain: string; selector: string; type: 'rsa' | 'ed25519'; bits?: number; out: string }): KeygenResult {
  if (existsSync(opts.out)) throw new Error(`${opts.out} exists: refusing to overwrite a key (pick another selector to rotate)`);
  const pair =
    opts.type === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('rsa', { modulusLength: opts.bits ?? 2048, publicExponent: 0x10001 });
  const pem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  mkdirSync(path.dirname(opts.out), { recursive: true });
  writeFileSync(opts.out, pem, { mode: 0o600, flag: 'wx' });
  return {
    file: opts.out,
    name: `${opts.selector}._domainkey.${opts.domain}`,
    value: txtRecordValue(pem),
    record: zoneFileLine(opts.domain, opts.selector, pem),
  };
}
