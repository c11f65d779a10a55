import path from 'node:path';
import { definePlugin, duration, reject, size, tempfail, z, type Transaction, type Verdict } from '@portcullis/core';
import { describeTarget, scanStream, type ClamdTarget, type ScanResult } from './clamd-client.js';

export { scanStream, connectFirst, interpret, type ClamdTarget, type ScanResult, type ScanLimits } from './clamd-client.js';

const hostPort = /^(\[[0-9a-fA-F:.]+\]|[^\s:/]+):(\d{1,5})$/;

/** `host:port`, `[v6]:port`, `unix:/path` or an absolute socket path. */
const target = z.string().transform((v, ctx): ClamdTarget => {
  const sock = v.startsWith('unix:') ? v.slice(5) : v.startsWith('/') ? v : undefined;
  if (sock !== undefined) {
    if (!sock) ctx.addIssue({ code: 'custom', message: 'expected a socket path after unix:' });
    return { socket: sock };
  }
  const m = hostPort.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `expected host:port (127.0.0.1:3310), unix:/path or /path/to/clamd.ctl, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
});

const policy = z.enum(['tempfail', 'accept', 'reject']);

export const options = z.strictObject({
  /** clamd servers, tried in order: the first that accepts the connection scans (failover). */
  servers: z.array(target).min(1).default(['127.0.0.1:3310']),
  /** Time to connect to one clamd before the next is tried. */
  connectTimeout: duration().default(2_000),
  /** Longest clamd may stall (not reading, or not answering after the end of data). Keep below the plugin entry's `timeout`. */
  timeout: duration().default(20_000),
  /** What happens when no verdict can be had: clamd down, timing out, over its stream limit, or answering an error. */
  onError: policy.default('tempfail'),
  /** Largest message sent to clamd; keep at or below clamd's StreamMaxLength. */
  maxSize: size().default(25 * 1024 * 1024),
  /** What happens to a message above `maxSize`: it is never silently passed. */
  onOversize: policy.default('reject'),
  /** Messages from authenticated senders are not scanned (the header says so). */
  skipAuthenticated: z.boolean().default(false),
  /** Header added with the result: `clean`, `infected (Name)` or `unscanned (reason)`. Empty to add none. */
  header: z.string().regex(/^[!-9;-~]*$/, 'a header name: printable ASCII without colon or space').default('X-Portcullis-Virus'),
});

export type ClamavOptions = z.input<typeof options>;

const reasons = {
  unavailable: 'virus scanner unreachable',
  timeout: 'virus scanner timed out',
  limit: 'message over the virus scanner stream limit',
  failed: 'virus scanner error',
} as const;

/**
 * Scans every message with clamd, in the same pass as the spool write (`data` → `raw`), and waits
 * for the verdict before the reply to DATA:
 *
 *   clean                     → accepted, `X-Portcullis-Virus: clean`
 *   infected                  → 554 5.7.1 naming the virus
 *   clamd down / timeout / limit → onError (default 451 4.7.0)
 *   above maxSize             → onOversize (default 552 5.3.4)
 */
export default definePlugin({
  name: 'clamav',
  options,
  setup(opts, ctx) {
    const limits = { connectTimeout: opts.connectTimeout, timeout: opts.timeout, maxSize: opts.maxSize };
    const servers = opts.servers.map(describeTarget);
    ctx.log.debug({ servers }, 'clamav ready');
    const mark = (txn: Transaction, value: string) => {
      if (opts.header) txn.addHeader(opts.header, value);
    };
    const byPolicy = (p: 'tempfail' | 'accept' | 'reject', txn: Transaction, why: string, rejectWith: () => Verdict): Verdict | undefined => {
      if (p === 'accept') {
        mark(txn, `unscanned (${why})`);
        return undefined;
      }
      return p === 'reject' ? rejectWith() : tempfail(451, '4.7.0', `Message not scanned (${why}), try again later`);
    };
    const decide = (txn: Transaction, r: ScanResult): Verdict | undefined => {
      txn.notes['clamav'] = r;
      const log = txn.session.log;
      switch (r.kind) {
        case 'clean':
          log.info({ plugin: 'clamav', txn: txn.id, server: r.server }, 'virus scan: clean');
          mark(txn, 'clean');
          return undefined;
        case 'infected':
          log.warn({ plugin: 'clamav', txn: txn.id, server: r.server, viruses: r.viruses }, 'virus scan: infected');
          return reject(554, '5.7.1', `Message rejected: virus found (${r.viruses.join(', ')})`);
        case 'oversize':
          log.warn({ plugin: 'clamav', txn: txn.id, size: r.size, maxSize: opts.maxSize, policy: opts.onOversize }, 'virus scan: message above maxSize');
          return byPolicy(opts.onOversize, txn, 'too large to scan', () => reject(552, '5.3.4', `Message too large for virus scanning (limit ${opts.maxSize} bytes)`));
        case 'error': {
          log.error({ plugin: 'clamav', txn: txn.id, server: r.server, reason: r.reason, detail: r.detail, policy: opts.onError }, 'virus scan failed');
          const why = reasons[r.reason];
          return byPolicy(opts.onError, txn, why, () => reject(554, '5.7.0', `Message refused: ${why}`));
        }
      }
    };
    return {
      data(txn) {
        if (opts.skipAuthenticated && txn.session.user) {
          txn.session.log.info({ plugin: 'clamav', txn: txn.id, user: txn.session.user }, 'virus scan skipped: authenticated sender');
          mark(txn, 'unscanned (authenticated sender)');
          return undefined;
        }
        return { raw: async (stream) => decide(txn, await scanStream(stream, opts.servers, limits)) };
      },
    };
  },
});

/** Resolves a relative socket path against the config file's folder. */
export function resolveSocket(t: ClamdTarget, configDir: string): ClamdTarget {
  return 'socket' in t ? { socket: path.resolve(configDir, t.socket) } : t;
}
