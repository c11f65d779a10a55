import { PassThrough, type Readable } from 'node:stream';
import { once } from 'node:events';
import { dkimSign } from 'mailauth';
import addressparser from 'nodemailer/lib/addressparser/index.js';
import { HeaderSectionCut, type HeaderSectionParts } from '@portcullis/core';
import type { SigningKey } from './keys.js';

export interface SignResult {
  /** DKIM-Signature field values (without the name), one per key; empty when unsigned. */
  readonly signatures: string[];
  /** Why nothing was signed, when nothing was. */
  readonly unsigned?: 'no-key' | 'no-from';
  /** The domain that signed (the From: domain or the fallback). */
  readonly domain?: string;
  readonly errors: string[];
}

/**
 * Signs a message as it streams. The header section is held until its end (the core bounds it by
 * limits.headerSize) to learn the From: domain and so the keys; the body then flows through
 * mailauth's signer, which hashes it chunk by chunk and keeps none of it. Every key of the domain
 * signs in the same pass: RSA and Ed25519 selectors share one body hash.
 */
export async function signStream(
  stream: Readable,
  keysFor: (fromDomain: string | undefined) => { domain: string; keys: readonly SigningKey[] } | undefined,
  opts: { headers?: readonly string[]; canonicalization: string },
): Promise<SignResult> {
  const iterator = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  // Each piece searched once, joined once (a join and a new search per piece is quadratic for a
  // message that arrives in many small pieces).
  const cut = new HeaderSectionCut();
  let parts: HeaderSectionParts | undefined;
  let ended = false;
  while (!parts) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    parts = cut.push(next.value);
  }
  // What was read so far: the header section (its fields with their CRLFs), then the rest. A
  // message that ended without a blank line is all header section with an empty body; mailauth
  // signs nothing without the blank line, so it gets one: an empty body hashes the same either way
  // (RFC 6376 3.4.3, 3.4.4), and the header fields are the same bytes, so the signature verifies on
  // the message as delivered.
  const read = parts ? [parts.head, parts.rest] : [cut.pending(), Buffer.from('\r\n')];
  const fromDomain = fromHeaderDomain(read[0]!.toString('latin1'));
  const choice = keysFor(fromDomain);
  if (!choice || !choice.keys.length) {
    await drainRest(iterator, ended);
    return { signatures: [], unsigned: fromDomain ? 'no-key' : 'no-from', errors: [] };
  }

  const input = new PassThrough({ highWaterMark: 256 * 1024 });
  const signing = dkimSign(input, {
    canonicalization: opts.canonicalization,
    headerList: opts.headers ? [...opts.headers] : undefined,
    signatureData: choice.keys.map((k) => ({
      signingDomain: k.domain,
      selector: k.selector,
      privateKey: k.privateKey,
      algorithm: k.algorithm,
      canonicalization: opts.canonicalization,
    })),
  } as Parameters<typeof dkimSign>[1]);
  // Attach now: a signer failure must not surface as an unhandled rejection while we still feed it.
  const settled = signing.then(
    (r) => ({ r }),
    (err: unknown) => ({ err }),
  );
  try {
    for (const piece of read) if (piece.length && !input.write(piece)) await once(input, 'drain');
    if (!ended) {
      for (;;) {
        const next = await iterator.next();
        if (next.done) break;
        if (!input.write(next.value)) await once(input, 'drain');
      }
    }
  } finally {
    input.end();
  }
  const out = await settled;
  if ('err' in out) throw out.err;
  const errors = (out.r.errors ?? []).map((e: unknown) => String((e as Error)?.message ?? e));
  const signatures = out.r.signatures
    .split(/\r\n(?![ \t])/)
    .filter((l) => l.trim())
    .map((l) => l.replace(/^DKIM-Signature:\s?/i, ''));
  return { signatures, domain: choice.domain, errors };
}

async function drainRest(iterator: AsyncIterator<Buffer>, ended: boolean): Promise<void> {
  if (ended) return;
  while (!(await iterator.next()).done) {
    /* read to the end: the core waits for every reader */
  }
}

/** The domain of the first address in the first From: field, lower-cased; undefined if none. */
export function fromHeaderDomain(header: string): string | undefined {
  const m = /(?:^|\r\n)from[ \t]*:((?:[^\r]|\r\n[ \t])*)/i.exec(header);
  if (!m) return undefined;
  const value = m[1]!.replace(/\r\n(?=[ \t])/g, '');
  const flat = (list: ReturnType<typeof addressparser>): string[] =>
    list.flatMap((a) => ('group' in a && a.group ? flat(a.group) : 'address' in a && a.address ? [a.address] : []));
  const addr = flat(addressparser(value))[0];
  const at = addr?.lastIndexOf('@') ?? -1;
  if (!addr || at < 0) return undefined;
  return addr.slice(at + 1).toLowerCase().replace(/\.$/, '') || undefined;
}
