import { definePlugin, NetworkList, reject, resolveBackendTarget, tempfail, Tokens, type RelayConfig, type Session, type Transaction, type Verdict } from '@portcullis/core';
import { options, type ResolvedOptions } from './options.js';
import { checkStream, describeTarget, ping, type CheckResult, type RspamdTarget } from './rspamd-client.js';
import { requestHeaders } from './request-headers.js';
import { planEdits, applyEdits, type EditPlan } from './header-edits.js';

export { checkStream, ping, describeTarget, type RspamdTarget, type CheckResult, type CheckLimits, type RequestHeaders } from './rspamd-client.js';
export { parseCheckReply, type CheckReply, type HeaderToAdd, type RspamdAction } from './check-reply.js';
export { httpHeaderValue, messageHeaderValue } from './header-values.js';
export { requestHeaders } from './request-headers.js';
export { options, type RspamdOptions } from './options.js';

/** What this plugin records in `txn.notes.rspamd` for later plugins (and logs). */
export interface RspamdNote {
  readonly direction: 'inbound' | 'outbound';
  readonly result: CheckResult | { readonly kind: 'skipped' };
}

const reasons = {
  unavailable: 'spam scanner unreachable',
  timeout: 'spam scanner timed out',
  failed: 'spam scanner error',
} as const;

/** The actions counted in the metrics; anything else rspamd says is counted as `other`. */
const ACTIONS = ['reject', 'soft reject', 'rewrite subject', 'add header', 'greylist', 'no action', 'discard', 'quarantine'] as const;

/** SMTP reply text from rspamd's `smtp_message`: printable ASCII, one line, bounded. */
function replyText(text: string | undefined, fallback: string): string {
  const t = (text ?? '').replace(/[\r\n\t]+/g, ' ').replace(/[^ -~]/g, '?').replace(/ +/g, ' ').trim().slice(0, 400);
  return t || fallback;
}

/**
 * Scores every message with rspamd (`POST /checkv2`), streamed in the same pass as the spool write
 * (`data` → `raw`), and answers DATA by rspamd's action:
 *
 *   reject (discard, quarantine)  → 550 5.7.1 with rspamd's smtp_message, nothing delivered
 *   soft reject / greylist        → 451 4.7.1
 *   rewrite subject / add header  → delivered, Subject rewritten / headers added, marked spam
 *   no action                     → delivered with the status header
 *   rspamd down, timeout, error   → onError (default 451 4.7.0)
 *   above maxSize                 → onOversize (default: delivered, tagged unscanned)
 */
export default definePlugin({
  name: 'rspamd',
  options,
  setup(opts: ResolvedOptions, ctx) {
    const targets = opts.servers.map((t) => resolveBackendTarget(t, ctx.configDir));
    const limits = { connectTimeout: opts.connectTimeout, timeout: opts.timeout, maxSize: opts.maxSize };
    const config = ctx.container.resolve<RelayConfig>(Tokens.Config);
    const mtaName = config.hostname;

    // relay-policy's trusted networks are outbound too: an internal server's mail is ours.
    const trusted: NetworkList[] = [opts.trustedNetworks];
    if (opts.relayPolicyTrust) {
      for (const p of config.plugins) {
        const nets = (p.with as { trustedNetworks?: unknown } | undefined)?.trustedNetworks;
        if (!p.enabled || !/^(@portcullis\/)?relay-policy$/.test(p.use) || !Array.isArray(nets)) continue;
        try {
          trusted.push(NetworkList.parse(nets));
        } catch {
          /* relay-policy reports its own option errors */
        }
      }
    }
    const directionOf = (s: Session): 'inbound' | 'outbound' => (s.user || trusted.some((n) => n.contains(s.remoteAddress)) ? 'outbound' : 'inbound');

    const actions = ctx.metrics.counter<'action' | 'direction'>({ name: 'actions_total', help: "Messages by rspamd's action (reject, soft reject, rewrite subject, add header, greylist, no action, discard, quarantine, other) and direction", labelNames: ['action', 'direction'] });
    const unscored = ctx.metrics.counter<'reason' | 'direction'>({ name: 'unscanned_total', help: 'Messages without an rspamd verdict by reason: unavailable, timeout, failed, oversize, skipped', labelNames: ['reason', 'direction'] });
    const scores = ctx.metrics.histogram({ name: 'score', help: "rspamd's score of each scanned message", buckets: [-5, 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30, 50] });
    const checkTime = ctx.metrics.histogram({ name: 'check_duration_seconds', help: 'Time of one rspamd check, from the connection to the answer', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
    for (const direction of ['inbound', 'outbound']) {
      for (const action of [...ACTIONS, 'other']) actions.inc({ action, direction }, 0);
      for (const reason of ['unavailable', 'timeout', 'failed', 'oversize', 'skipped']) unscored.inc({ reason, direction }, 0);
    }

    const ours = new Set([opts.statusHeader, opts.symbolsHeader, opts.spamHeader].filter(Boolean).map((n) => n.toLowerCase()));
    const status = (txn: Transaction, value: string) => {
      if (opts.statusHeader) txn.addHeader(opts.statusHeader, value);
    };
    const byPolicy = (p: 'tempfail' | 'accept' | 'reject', txn: Transaction, why: string, temp: Verdict, perm: Verdict): Verdict | undefined => {
      if (p === 'accept') {
        status(txn, `unscanned (${why})`);
        return undefined;
      }
      return p === 'reject' ? perm : temp;
    };

    const decide = (txn: Transaction, direction: 'inbound' | 'outbound', r: CheckResult): Verdict | undefined => {
      txn.notes['rspamd'] = { direction, result: r } satisfies RspamdNote;
      const log = txn.session.log;
      if (r.kind === 'oversize') {
        unscored.inc({ reason: 'oversize', direction });
        log.warn({ plugin: 'rspamd', txn: txn.id, size: r.size, maxSize: opts.maxSize, policy: opts.onOversize }, 'spam scan: message above maxSize');
        return byPolicy(opts.onOversize, txn, 'too large', tempfail(452, '4.3.4', `Message too large for spam scanning (limit ${opts.maxSize} bytes), try again later`), reject(552, '5.3.4', `Message too large for spam scanning (limit ${opts.maxSize} bytes)`));
      }
      if (r.kind === 'error') {
        unscored.inc({ reason: r.reason, direction });
        log.error({ plugin: 'rspamd', txn: txn.id, server: r.server, reason: r.reason, detail: r.detail, policy: opts.onError }, 'spam scan failed');
        const why = reasons[r.reason];
        return byPolicy(opts.onError, txn, why, tempfail(451, '4.7.0', `Message not scanned (${why}), try again later`), reject(554, '5.7.0', `Message refused: ${why}`));
      }
      const reply = r.reply;
      const known = (ACTIONS as readonly string[]).includes(reply.action);
      actions.inc({ action: known ? reply.action : 'other', direction });
      scores.observe(reply.score);
      log.info({ plugin: 'rspamd', txn: txn.id, server: r.server, direction, action: reply.action, score: reply.score, required: reply.requiredScore, symbols: reply.symbols.slice(0, 20).map((s) => s.name) }, 'spam scan');
      switch (reply.action) {
        case 'reject':
        case 'discard': // never dropped silently: the sender learns it was refused
        case 'quarantine':
          return reject(550, '5.7.1', replyText(reply.smtpMessage, opts.rejectText));
        case 'soft reject':
          return tempfail(451, '4.7.1', replyText(reply.smtpMessage, 'Try again later'));
        case 'greylist':
          return tempfail(451, '4.7.1', replyText(reply.smtpMessage, 'Greylisted, try again later'));
        case 'no action':
        case 'add header':
        case 'rewrite subject':
          applyEdits(txn, planEdits(reply, opts));
          return undefined;
        default: {
          // An action this plugin does not know cannot be honoured: treat it as no verdict (fail closed).
          unscored.inc({ reason: 'failed', direction });
          log.error({ plugin: 'rspamd', txn: txn.id, server: r.server, action: reply.action, policy: opts.onError }, 'spam scan: unknown rspamd action');
          const why = reasons.failed;
          return byPolicy(opts.onError, txn, why, tempfail(451, '4.7.0', `Message not scanned (${why}), try again later`), reject(554, '5.7.0', `Message refused: ${why}`));
        }
      }
    };

    ctx.log.debug({ servers: targets.map(describeTarget) }, 'rspamd ready');
    return {
      /** Ready while one of the rspamd servers answers `/ping` (the first reachable one scans). */
      async ready() {
        const r = await ping(targets, opts.connectTimeout, Math.min(opts.timeout, 2_000));
        return r.ok ? { ready: true, detail: `rspamd ${r.server} answers` } : { ready: false, detail: `no rspamd answers: ${r.error}` };
      },
      hooks: {
        data(txn) {
          const direction = directionOf(txn.session);
          // Our own headers are never taken from the client: a forged "X-Spam-Status: No" must not pass.
          const dropHeader = ours.size ? (f: { name: string }) => ours.has(f.name.toLowerCase()) : undefined;
          if (!opts[direction].scan) {
            txn.notes['rspamd'] = { direction, result: { kind: 'skipped' } } satisfies RspamdNote;
            unscored.inc({ reason: 'skipped', direction });
            txn.session.log.info({ plugin: 'rspamd', txn: txn.id, direction }, 'spam scan skipped');
            status(txn, `unscanned (${direction} not scanned)`);
            return dropHeader ? { dropHeader } : undefined;
          }
          const headers = requestHeaders(txn, direction, opts[direction], mtaName, opts.maxHeaderBytes);
          return {
            ...(dropHeader ? { dropHeader } : {}),
            raw: async (stream) => {
              const t0 = performance.now();
              const r = await checkStream(stream, targets, headers, limits);
              if (r.kind !== 'oversize') checkTime.observe((performance.now() - t0) / 1000);
              return decide(txn, direction, r);
            },
          };
        },
      },
    };
  },
});

export type { EditPlan };
