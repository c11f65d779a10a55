import { createRequire } from 'node:module';
import type { MimeNode } from 'mailsplit';

/**
 * The mailsplit adapter: the one place that names mailsplit's private members. mailsplit parses each
 * part's Content-Type and Content-Disposition once (with its own libmime, which is not the core's
 * version) and keeps the parameters only in `_parsedContentType` / `_parsedContentDisposition`; the
 * intake reads them from there so that a part's `filename` and `name` are exactly what mailsplit
 * saw. Pinned by version and by the fields' type on a really parsed part
 * (`test/adapter-pins.test.ts`): mailsplit has no method to hash for a field.
 *
 *   MimeNode#_parsedContentType         read here (partParams): intake/mime-walker.ts
 *   MimeNode#_parsedContentDisposition  read here (partParams): intake/mime-walker.ts
 */
export const MAILSPLIT_PINS = { version: '5.4.6' } as const;

export const MAILSPLIT_FIELDS = {
  'MimeNode#_parsedContentType': 'object',
  'MimeNode#_parsedContentDisposition': 'object',
} as const;

interface Internals {
  _parsedContentType?: { value: string; params: Record<string, string> } | false;
  _parsedContentDisposition?: { value: string; params: Record<string, string> } | false;
}

export function installedMailsplitVersion(): string {
  return (createRequire(import.meta.url)('mailsplit/package.json') as { version: string }).version;
}

/** The type of every MAILSPLIT_FIELDS entry on `node` (a parsed one: the pin test). */
export function mailsplitFields(node: unknown): Record<keyof typeof MAILSPLIT_FIELDS, string> {
  const n = node as Internals;
  return { 'MimeNode#_parsedContentType': typeof n._parsedContentType, 'MimeNode#_parsedContentDisposition': typeof n._parsedContentDisposition };
}

const none = { value: '', params: {} as Record<string, string> };

/** The parameters of a parsed part's Content-Type and Content-Disposition, as mailsplit parsed them. */
export function partParams(node: MimeNode): { contentType: Record<string, string>; disposition: Record<string, string> } {
  const n = node as unknown as Internals;
  return { contentType: (n._parsedContentType || none).params, disposition: (n._parsedContentDisposition || none).params };
}
