import { backendTarget, definePlugin, duration, networkList, reject, resolveBackendTarget, size, tempfail, Tokens, z, type RelayConfig, type Transaction, type Verdict } from '@portcullis/core';
import { ping, scan, type SpamdResult, type SpamdTarget } from './spamd-client.js';
import { receivedLine } from './received-line.js';
import { foldList } from './fold.js';

export { scan, ping, parseAnswer, describeTarget, type SpamdTarget, type SpamdResult, type SpamdRequest, type SpamdCommand, type SpamdLimits } from './spamd-client.js';

/** `host:port`, `[v6]:port`, `unix:/path` or a socket path (absolute, or `./` relative to the config file). */
const target = backendTarget({ example: '127.0.0.1:783', socketExample: '/path/to/spamd.sock' });

const headerName = (d: string) => z.string().regex(/^[!-9;-~]*$/, 'a header name: printable ASCII without colon or space').default(d);
const policy = z.enum(['tempfail', 'accept', 'reject']);

export const options = z.strictObject({
  servers: z.array(target).min(1).default([{ host: '127.0.0.1', port: 783 }]).describe('spamd servers, tried in order: the first that accepts the connection scans (failover at connect time).'),
  connectTimeout: duration().default(2_000).describe('Time to connect to one spamd before the next is tried.'),
  timeout: duration().default(20_000).describe('Longest one scan may take once connected (sending, scanning, answering). Keep below the plugin entry\'s `timeout` (default 30s).'),
  command: z.enum(['SYMBOLS', 'CHECK', 'REPORT', 'HEADERS']).default('SYMBOLS').describe('The SPAMD/1.5 command: `SYMBOLS` (score and rule names), `CHECK` (score only), `REPORT` (score and spamd\'s report, in `headers.report`), `HEADERS` (spamd\'s own X-Spam-* fields are added instead of ours).'),
  user: z.string().regex(/^[\x21-\x7e]+$/).optional().describe('Sent as spamd\'s `User:` header: whose preferences spamd applies. None by default (spamd\'s own user).'),
  tagScore: z.number().optional().describe('Score from which a message is tagged as spam. Default: spamd\'s own `required_score` (its `Spam: True`).'),
  rejectScore: z.number().optional().describe('Score from which a message is refused with `550 5.7.1`. None by default: spam is only tagged.'),
  onError: policy.default('tempfail').describe('When no score can be had (spamd down, timing out, or answering an error): `tempfail` (451 4.7.0), `accept` (delivered, tagged unscanned) or `reject` (554 5.7.0).'),
  maxSize: size().default(500 * 1024).describe('Largest message sent to spamd (spamc\'s own default is 500KB): scoring time grows with size and large spam is rare.'),
  onOversize: policy.default('accept').describe('What happens to a message above `maxSize`: `accept` (delivered, tagged `Unscanned (too large to scan)`), `tempfail` or `reject` (552 5.3.4).'),
  skipAuthenticated: z.boolean().default(false).describe('Messages from authenticated senders are not scanned (tagged unscanned).'),
  skipNetworks: networkList().describe('Client networks whose messages are not scanned (tagged unscanned), e.g. internal servers: full addresses or CIDRs.'),
  headers: z
    .strictObject({
      status: headerName('X-Spam-Status').describe('`Yes, score=7.2 required=5.0 tests=A,B` / `No, ...` / `Unscanned (reason)`. Empty: none.'),
      score: headerName('X-Spam-Score').describe('The score alone, e.g. `7.2`. Empty: none.'),
      flag: headerName('X-Spam-Flag').describe('`YES` on messages tagged as spam (absent otherwise). Empty: none.'),
      report: headerName('X-Spam-Report').describe('With `command: REPORT`: spamd\'s report. Empty: none.'),
    })
    .prefault({})
    .describe('Names of the header fields added (each may be empty to leave it out).'),
  removeIncoming: z.boolean().default(true).describe('Header fields with these names (and, with `command: HEADERS`, every `X-Spam-*`) that arrive with the message are removed before the scan: a sender cannot forge a verdict.'),
});

export type SpamassassinOptions = z.input<typeof options>;

/** What this plugin records in `txn.notes.spamassassin` for later plugins. */
export interface SpamassassinNote {
  readonly result?: SpamdResult;
  readonly unscanned?: string;
}

/** Text from spamd, safe in a header value: no control characters but line breaks and tabs. */
const controlFree = (s: string) => s.replace(/\r\n?/g, '\n').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');

const reasons = { unavailable: 'spamd unreachable', timeout: 'spamd timed out', failed: 'spamd error' } as const;

/**
 * Scores every message with SpamAssassin's spamd in the `message` hook, from the spooled bytes
 * (`info.spooled`: spamd needs Content-length before the body), before the 250:
 *
 *   score < tag              → accepted, X-Spam-Status: No, ...
 *   tag ≤ score < reject     → accepted, X-Spam-Status: Yes, ..., X-Spam-Flag: YES
 *   score ≥ rejectScore      → 550 5.7.1 (only when rejectScore is set)
 *   spamd down / timeout     → onError (default 451 4.7.0)
 *   above maxSize            → onOversize (default accepted, tagged unscanned)
 */
export default definePlugin({
  name: 'spamassassin',
  options,
  setup(opts, ctx) {
    const config = ctx.container.resolve<RelayConfig>(Tokens.Config);
    const targets = opts.servers.map((t) => resolveBackendTarget(t, ctx.configDir));
    const limits = { connectTimeout: opts.connectTimeout, timeout: opts.timeout };
    const results = ctx.metrics.counter<'result'>({ name: 'results_total', help: 'Messages by result: clean, spam (tagged), rejected, error, oversize, skipped', labelNames: ['result'] });
    const errors = ctx.metrics.counter<'reason'>({ name: 'errors_total', help: 'Scans without a score by reason: unavailable, timeout, failed', labelNames: ['reason'] });
    const scores = ctx.metrics.histogram({ name: 'score', help: 'SpamAssassin scores of scanned messages', buckets: [-5, -1, 0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 50, 100] });
    const scanTime = ctx.metrics.histogram({ name: 'scan_duration_seconds', help: 'Time of one spamd scan, from connecting to the answer', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
    for (const result of ['clean', 'spam', 'rejected', 'error', 'oversize', 'skipped']) results.inc({ result }, 0);
    for (const reason of Object.keys(reasons)) errors.inc({ reason }, 0);

    const h = opts.headers;
    const ours = new Set([h.status, h.score, h.flag, h.report].filter(Boolean).map((n) => n.toLowerCase()));
    const add = (txn: Transaction, name: string, value: string) => {
      if (name) txn.addHeader(name, value);
    };
    const unscanned = (txn: Transaction, why: string) => {
      txn.notes['spamassassin'] = { unscanned: why } satisfies SpamassassinNote;
      add(txn, h.status, `Unscanned (${why})`);
    };
    const byPolicy = (p: 'tempfail' | 'accept' | 'reject', txn: Transaction, why: string, rejectWith: () => Verdict): Verdict | undefined => {
      if (p === 'accept') {
        unscanned(txn, why);
        return undefined;
      }
      return p === 'reject' ? rejectWith() : tempfail(451, '4.7.0', `Message not scanned for spam (${why}), try again later`);
    };
    const fmt = (n: number) => n.toFixed(1);

    /** The X-Spam-* fields of spamd's rewritten header section (HEADERS), CRLF, unfolded by field. */
    const spamdFields = (section: string): Array<[string, string]> => {
      const out: Array<[string, string]> = [];
      for (const field of section.replace(/\r?\n/g, '\n').split(/\n(?![ \t])/)) {
        const i = field.indexOf(':');
        if (i <= 0) continue;
        const name = field.slice(0, i);
        if (/^X-Spam-[A-Za-z0-9-]+$/i.test(name)) out.push([name, controlFree(field.slice(i + 1).replace(/^ /, '')).replace(/\n/g, '\r\n')]);
      }
      return out;
    };

    return {
      /** Ready while one of the spamd servers answers PING with PONG. */
      async ready() {
        const r = await ping(targets, opts.connectTimeout, Math.min(opts.timeout, 2_000));
        return r.ok ? { ready: true, detail: `spamd ${r.server} answers` } : { ready: false, detail: `no spamd answers: ${r.error}` };
      },
      hooks: {
        data() {
          if (!opts.removeIncoming) return undefined;
          return { dropHeader: (f) => ours.has(f.name.toLowerCase()) || (opts.command === 'HEADERS' && /^x-spam-/i.test(f.name)) };
        },
        async message(txn, info) {
          const s = txn.session;
          const log = s.log;
          if ((opts.skipAuthenticated && s.user) || opts.skipNetworks.contains(s.remoteAddress)) {
            results.inc({ result: 'skipped' });
            log.info({ plugin: 'spamassassin', txn: txn.id }, 'spam scan skipped: authenticated sender or skipped network');
            unscanned(txn, s.user && opts.skipAuthenticated ? 'authenticated sender' : 'skipped network');
            return undefined;
          }
          if (info.spooled.size > opts.maxSize) {
            results.inc({ result: 'oversize' });
            log.warn({ plugin: 'spamassassin', txn: txn.id, size: info.spooled.size, maxSize: opts.maxSize, policy: opts.onOversize }, 'spam scan: message above maxSize');
            return byPolicy(opts.onOversize, txn, 'too large to scan', () => reject(552, '5.3.4', `Message too large for spam scanning (limit ${opts.maxSize} bytes)`));
          }
          const prefix = Buffer.from(receivedLine(txn, config.hostname, new Date()), 'latin1');
          const t0 = performance.now();
          const r = await scan({ command: opts.command, user: opts.user, prefix, size: info.spooled.size, open: () => info.spooled.open() }, targets, limits);
          scanTime.observe((performance.now() - t0) / 1000);
          txn.notes['spamassassin'] = { result: r } satisfies SpamassassinNote;
          if (r.kind === 'error') {
            results.inc({ result: 'error' });
            errors.inc({ reason: r.reason });
            log.error({ plugin: 'spamassassin', txn: txn.id, server: r.server, reason: r.reason, detail: r.detail, policy: opts.onError }, 'spam scan failed');
            const why = reasons[r.reason];
            return byPolicy(opts.onError, txn, why, () => reject(554, '5.7.0', `Message refused: ${why}`));
          }
          scores.observe(r.score);
          const isSpam = opts.tagScore === undefined ? r.isSpam : r.score >= opts.tagScore;
          const required = opts.tagScore ?? r.required;
          const facts = { plugin: 'spamassassin', txn: txn.id, server: r.server, score: r.score, required, symbols: r.symbols };
          if (opts.rejectScore !== undefined && r.score >= opts.rejectScore) {
            results.inc({ result: 'rejected' });
            log.warn(facts, 'spam scan: rejected');
            return reject(550, '5.7.1', `Message rejected as spam (score ${fmt(r.score)}, limit ${fmt(opts.rejectScore)})`);
          }
          results.inc({ result: isSpam ? 'spam' : 'clean' });
          log.info(facts, isSpam ? 'spam scan: tagged as spam' : 'spam scan: clean');
          if (opts.command === 'HEADERS' && r.body !== undefined) {
            for (const [name, value] of spamdFields(r.body)) txn.addHeader(name, value);
            return undefined;
          }
          const tests = r.symbols ? ` tests=${r.symbols.length ? r.symbols.join(',') : 'none'}` : '';
          add(txn, h.status, foldList(`${isSpam ? 'Yes' : 'No'}, score=${fmt(r.score)} required=${fmt(required)}${tests}`, h.status.length + 2));
          add(txn, h.score, fmt(r.score));
          if (isSpam) add(txn, h.flag, 'YES');
          if (opts.command === 'REPORT' && r.body) add(txn, h.report, controlFree(r.body.trim()).replace(/\n[ \t]*(?=\n)/g, '').replace(/\n/g, '\r\n\t')); // no whitespace-only lines (obsolete folding)
          return undefined;
        },
      },
    };
  },
});

