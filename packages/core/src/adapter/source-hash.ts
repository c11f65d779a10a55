import { createHash } from 'node:crypto';

/**
 * Hash of a library function's source, for pinning code that replaces or wraps smtp-server
 * internals (adapter/smtp-server.ts PINS, adapter/smtp-server-replies.ts). Whitespace is normalised, and
 * the CommonJS build's module-qualified references (`(0, smtp_connection_js_1.isAddressAllowed)(…)`,
 * `new smtp_stream_js_1.SMTPStream(…)`) are folded to plain names, so that the ESM build (node)
 * and the CJS build (what tsx loads in tests) hash alike.
 */
export function sourceHash(fn: unknown): string {
  const src = String(fn)
    .replace(/\s+/g, ' ')
    .replace(/\(0, \w+_\d+\.(\w+)\)/g, '$1')
    .replace(/\b\w+_js_\d+\.(\w+)/g, '$1');
  return createHash('sha256').update(src).digest('hex');
}
