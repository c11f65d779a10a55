import path from 'node:path';
import { backendTarget, definePlugin, keepQuarantinePruned, duration, reject, resolveBackendTarget, size, tempfail, z, type MimePart, type PartScreener, type Transaction, type Verdict } from '@portcullis/core';
import { describeTarget, ping, scanBuffer as rawScanBuffer, scanStream as rawScanStream, type ClamdTarget, type ScanResult } from './clamd-client.js';
import { QuarantineCopy } from './quarantine.js';

export { scanStream, scanBuffer, ping, connectFirst, interpret, describeTarget, type ClamdTarget, type ScanResult, type ScanLimits } from './clamd-client.js';

/** `host:port`, `[v6]:port`, `unix:/path` or a socket path (absolute, or `./` relative to the config file). */
const target = backendTarget({ example: '127.0.0.1:3310', socketExample: '/path/to/clamd.ctl' });

const policy = z.enum(['tempfail', 'accept', 'reject']);

export const options = z.strictObject({
  servers: z.array(target).min(1).default([{ host: '127.0.0.1', port: 3310 }]).describe('clamd servers, tried in order: the first that accepts the connection scans (failover).'),
  connectTimeout: duration().default(2_000).describe('Time to connect to one clamd before the next is tried.'),
  timeout: duration().default(20_000).describe('Longest clamd may stall (not reading, or not answering after the end of data). Keep below the plugin entry\'s `timeout`.'),
  onError: policy.default('tempfail').describe('What happens when no verdict can be had: clamd down, timing out, over its stream limit, or answering an error.'),
  maxSize: size().default(25 * 1024 * 1024).describe('Largest message sent to clamd; keep at or below clamd\'s StreamMaxLength.'),
  onOversize: policy.default('reject').describe('What happens to a message above `maxSize`: it is never silently passed.'),
  action: z.enum(['reject', 'quarantine', 'strip']).default('reject').describe('What to do with an infected message: `reject` it (554 5.7.1); `quarantine`: keep a copy in `quarantineDir`, then reject; `strip`: scan each decoded MIME part too, replace infected parts with a notice and deliver the rest (a virus outside any part still rejects the message).'),
  quarantineDir: z.string().min(1).optional().describe('Folder for quarantined messages (`action: quarantine`), relative to the config file.'),
  quarantineRetention: duration().default(30 * 86_400_000).describe('Quarantined messages older than this are removed (checked at start and hourly; `portcullis quarantine purge` too).'),
  skipAuthenticated: z.boolean().default(false).describe('Messages from authenticated senders are not scanned (the header says so).'),
  header: z.string().regex(/^[!-9;-~]*$/, 'a header name: printable ASCII without colon or space').default('X-Portcullis-Virus').describe('Header added with the result: `clean`, `infected (Name)` is never delivered, `unscanned (reason)`. Empty string: no header.'),
});

export type ClamavOptions = z.input<typeof options>;

/** What this plugin records in `txn.notes.clamav` for later plugins. */
export interface ClamavNote {
  scan?: ScanResult;
  /** Parts replaced by a notice (`action: strip`). */
  readonly stripped: Array<{ path: string; filename?: string; viruses: string[] }>;
  /** Where the quarantined copy is (`action: quarantine`). */
  quarantined?: string;
}

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
 *   clean                         → accepted, `X-Portcullis-Virus: clean`
 *   infected                      → 554 5.7.1 naming the virus
 *   clamd down / timeout / limit  → onError (default 451 4.7.0)
 *   above maxSize                 → onOversize (default 552 5.3.4)
 */
export default definePlugin({
  name: 'clamav',
  options: options.refine((o) => o.action !== 'quarantine' || !!o.quarantineDir, { message: 'action: quarantine needs quarantineDir', path: ['quarantineDir'] }),
  setup(opts, ctx) {
    const quarantineDir = opts.quarantineDir ? path.resolve(ctx.configDir, opts.quarantineDir) : undefined;
    const limits = { connectTimeout: opts.connectTimeout, timeout: opts.timeout, maxSize: opts.maxSize };
    const targets = opts.servers.map((t) => resolveBackendTarget(t, ctx.configDir));
    ctx.log.debug({ servers: targets.map(describeTarget) }, 'clamav ready');
    const scans = ctx.metrics.counter<'result'>({ name: 'scans_total', help: 'Scans by result: clean, infected, error, oversize (whole messages and, with action strip, parts)', labelNames: ['result'] });
    const errors = ctx.metrics.counter<'reason'>({ name: 'errors_total', help: 'Scans without a verdict by reason: unavailable, timeout, limit, failed', labelNames: ['reason'] });
    const scanTime = ctx.metrics.histogram({ name: 'scan_duration_seconds', help: 'Time of one clamd scan, from the first byte sent to the answer', buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
    for (const result of ['clean', 'infected', 'error', 'oversize']) scans.inc({ result }, 0);
    for (const reason of Object.keys(reasons)) errors.inc({ reason }, 0);
    const counted = async (work: Promise<ScanResult>): Promise<ScanResult> => {
      const t0 = performance.now();
      const r = await work;
      scanTime.observe((performance.now() - t0) / 1000);
      scans.inc({ result: r.kind });
      if (r.kind === 'error') errors.inc({ reason: r.reason });
      return r;
    };
    const scanStream: typeof rawScanStream = (...a) => counted(rawScanStream(...a));
    const scanBuffer: typeof rawScanBuffer = (...a) => counted(rawScanBuffer(...a));
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
    const note = (txn: Transaction): ClamavNote => ((txn.notes['clamav'] as ClamavNote | undefined) ?? (txn.notes['clamav'] = { stripped: [] }) as ClamavNote);
    const names = (viruses: string[]) => viruses.map((v) => v.replace(/[^\x21-\x7e ]+/g, '?').slice(0, 120)).join(', ');
    const decide = (txn: Transaction, r: ScanResult, quarantined?: string): Verdict | undefined => {
      note(txn).scan = r;
      const log = txn.session.log;
      switch (r.kind) {
        case 'clean':
          log.info({ plugin: 'clamav', txn: txn.id, server: r.server }, 'virus scan: clean');
          mark(txn, 'clean');
          return undefined;
        case 'infected':
          log.warn({ plugin: 'clamav', txn: txn.id, server: r.server, viruses: r.viruses, quarantined }, 'virus scan: infected');
          return reject(554, '5.7.1', `Message rejected: virus found (${names(r.viruses)})${quarantined ? `; quarantined as ${txn.id}` : ''}`);
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
    /** `action: strip`: each decoded leaf part is scanned on its own once it ends. */
    const partScreener = (txn: Transaction, part: MimePart): PartScreener => {
      const chunks: Buffer[] = [];
      let kept = 0;
      let oversize = false;
      return {
        update(chunk) {
          if (oversize) return;
          if (kept + chunk.length > opts.maxSize) {
            oversize = true; // the whole-message scan applies onOversize
            chunks.length = 0;
            return;
          }
          kept += chunk.length;
          chunks.push(chunk);
        },
        async done() {
          if (oversize || kept === 0) return undefined;
          const r = await scanBuffer(Buffer.concat(chunks), targets, limits);
          if (r.kind === 'infected') {
            const file = part.filename ?? part.name;
            note(txn).stripped.push({ path: part.path, filename: file, viruses: r.viruses });
            txn.session.log.warn({ plugin: 'clamav', txn: txn.id, part: part.path, filename: file, viruses: r.viruses }, 'virus scan: infected part stripped');
            return { action: 'replace', notice: `The attachment ${file ? `"${file}" ` : ''}was removed: virus found (${names(r.viruses)}).` };
          }
          if (r.kind === 'error' || r.kind === 'oversize') {
            const whole = note(txn).scan; // keep the whole-message result for `message`
            const v = decide(txn, r);
            note(txn).scan = whole;
            return v ? { action: 'verdict', verdict: v } : undefined;
          }
          return undefined;
        },
      };
    };

    const pruner = quarantineDir ? keepQuarantinePruned(quarantineDir, opts.quarantineRetention, (err) => ctx.log.warn({ err }, 'quarantine retention: could not remove old items')) : undefined;
    return {
      close: () => pruner?.stop(),
      /** Ready while one of the clamd servers answers PING (the first reachable one scans). */
      async ready() {
        const r = await ping(targets, opts.connectTimeout, Math.min(opts.timeout, 2_000));
        return r.ok ? { ready: true, detail: `clamd ${r.server} answers` } : { ready: false, detail: `no clamd answers: ${r.error}` };
      },
      hooks: {
      data(txn) {
        if (opts.skipAuthenticated && txn.session.user) {
          txn.session.log.info({ plugin: 'clamav', txn: txn.id, user: txn.session.user }, 'virus scan skipped: authenticated sender');
          mark(txn, 'unscanned (authenticated sender)');
          return undefined;
        }
        if (opts.action === 'strip') {
          return {
            // The whole-message scan is the backstop: its infected/clean result is decided in `message`, once every part is done.
            raw: async (stream) => {
              const r = await scanStream(stream, targets, limits);
              if (r.kind === 'clean' || r.kind === 'infected') {
                note(txn).scan = r;
                return undefined;
              }
              return decide(txn, r);
            },
            part: (part) => partScreener(txn, part),
          };
        }
        if (opts.action === 'quarantine' && quarantineDir) {
          return {
            raw: async (stream) => {
              const copy = new QuarantineCopy(quarantineDir, txn.id);
              await copy.open();
              let r: ScanResult;
              try {
                r = await scanStream(stream, targets, limits, copy.write);
              } catch (err) {
                await copy.discard();
                throw err;
              }
              if (r.kind !== 'infected') {
                await copy.discard();
                return decide(txn, r);
              }
              const s = txn.session;
              const kept = await copy.keep({ id: txn.id, receivedAt: new Date().toISOString(), client: s.remoteAddress, helo: s.helo, user: s.user, mailFrom: txn.mailFrom.address, recipients: txn.recipients.map((a) => a.address), viruses: r.viruses });
              note(txn).quarantined = kept;
              return decide(txn, r, kept);
            },
          };
        }
        return { raw: async (stream) => decide(txn, await scanStream(stream, targets, limits)) };
      },
      message(txn) {
        if (opts.action !== 'strip') return undefined;
        const n = txn.notes['clamav'] as ClamavNote | undefined;
        if (!n?.scan) return undefined;
        if (n.stripped.length) {
          mark(txn, `stripped (${names([...new Set(n.stripped.flatMap((p) => p.viruses))])})`);
          return undefined;
        }
        if (n.scan.kind === 'infected') return decide(txn, n.scan); // found, but in no part that could be removed
        if (n.scan.kind === 'clean') mark(txn, 'clean');
        return undefined;
      },
      },
    };
  },
});
