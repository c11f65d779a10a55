/**
 * @portcullis/mailauth: DKIM signing of outbound mail; SPF, DKIM, ARC and DMARC checks of inbound
 * mail with an Authentication-Results header and policy. Built on mailauth 4.x (Node 20; mailauth
 * 5 needs Node 22.19+).
 */
import path from 'node:path';
import type { Resolver } from 'node:dns/promises';
import { definePlugin, Tokens, type RelayConfig, type Session, type SharedState, type Transaction } from '@portcullis/core';
import { optionsSchema, type MailauthOptions } from './options.js';
import { loadSigningKey, type SigningKey } from './keys.js';
import { signStream } from './signer.js';
import { checkMessage, checkSpf, spfVerdict, type InboundContext, type SpfOutcome } from './inbound.js';
import { claimsOurId } from './auth-results.js';
import { mailauthResolver } from './dns.js';
import { Counters } from './counters.js';

export { optionsSchema, type MailauthOptions } from './options.js';
export { generateSigningKey, loadSigningKey, txtRecordValue, zoneFileLine, publicKeyRecord, type KeygenResult, type SigningKey } from './keys.js';
export { authservIdOf, claimsOurId } from './auth-results.js';
export { fromHeaderDomain } from './signer.js';
export { Counters } from './counters.js';

const NOTE = 'mailauth';

/** Container token of the plugin's Counters (`dkim.sign.signed`, `dkim.sign.unsigned`, `spf.fail`, ...). */
export const MailauthCounters = Symbol.for('portcullis.mailauth.counters');

interface TxnNote {
  spf?: SpfOutcome;
}

export default definePlugin({
  name: 'mailauth',
  options: optionsSchema,
  setup(opts: MailauthOptions, ctx) {
    const config = ctx.container.resolve<RelayConfig>(Tokens.Config);
    const state = opts.dnsCache.ttl > 0 && ctx.container.isRegistered(Tokens.SharedState, true) ? ctx.container.resolve<SharedState>(Tokens.SharedState) : undefined;
    const resolver = mailauthResolver(ctx.container.resolve<Resolver>(Tokens.Resolver), state && { state, opts: { ttlMs: opts.dnsCache.ttl, negativeTtlMs: opts.dnsCache.negativeTtl } });
    const authservId = opts.authservId ?? config.hostname.toLowerCase();
    const trusted = opts.trustedNetworks;
    const keys = new Map<string, SigningKey[]>();
    for (const [domain, selectors] of Object.entries(opts.sign.domains)) {
      keys.set(
        domain,
        selectors.map((s, i) => {
          try {
            return loadSigningKey(path.resolve(ctx.configDir, s.key), domain, s.selector);
          } catch (err) {
            throw new Error(`sign.domains.${domain}.${i}.key: ${(err as Error).message}`);
          }
        }),
      );
    }
    const counters = new Counters();
    const events = ctx.metrics.counter<'event'>({ name: 'events_total', help: 'Results as the plugin counts them: spf.<result>, dkim.verify.<result>, dmarc.<result>, dkim.sign.signed|unsigned, authresults.forged.removed, tagged', labelNames: ['event'] });
    // Per-domain signing counts stay in the log summary: a domain is not a bounded label.
    counters.onAdd = (name, n) => {
      if (!name.startsWith('dkim.sign.domain.')) events.inc({ event: name }, n);
    };
    ctx.container.registerInstance(MailauthCounters, counters);
    const inbound: InboundContext = { authservId, resolver, opts: opts.verify };
    const log = ctx.log;
    const summary = setInterval(() => log.info({ counters: counters.snapshot() }, 'mailauth counters'), 3_600_000);
    summary.unref();

    /** Outbound (signed, not checked): trusted networks and authenticated users. */
    const isOutbound = (s: Session) => !!s.user || trusted.contains(s.remoteAddress);
    const keysFor = (fromDomain: string | undefined) => {
      // The From: domain's own keys, else its nearest parent's: `d=example.com` on mail from
      // news.example.com still aligns under DMARC's default (relaxed) alignment.
      for (let d = fromDomain; d && d.includes('.'); d = d.slice(d.indexOf('.') + 1)) {
        const own = keys.get(d);
        if (own) return { domain: d, keys: own };
      }
      if (opts.sign.fallbackDomain) return { domain: opts.sign.fallbackDomain, keys: keys.get(opts.sign.fallbackDomain)! };
      return undefined;
    };
    const note = (txn: Transaction): TxnNote => ((txn.notes[NOTE] as TxnNote | undefined) ?? ((txn.notes as Record<string, unknown>)[NOTE] = {})) as TxnNote;

    return {
      hooks: {
        async mail(txn, from) {
          if (isOutbound(txn.session) || !opts.verify.enabled) return undefined;
          const outcome = await checkSpf(inbound, txn.session.remoteAddress, txn.session.helo, from.address);
          note(txn).spf = outcome;
          counters.add(`spf.${outcome.mailFrom.status.result}`);
          const v = spfVerdict(inbound, outcome, from.domain);
          if (v) txn.session.log.info({ plugin: 'mailauth', spf: outcome.mailFrom.status.result, domain: outcome.mailFrom.domain, reply: v.reply }, 'SPF policy decided');
          return v;
        },

        data(txn) {
          if (isOutbound(txn.session)) {
            if (!keys.size) return undefined;
            return {
              raw: async (stream) => {
                const r = await signStream(stream, keysFor, { headers: opts.sign.headers, canonicalization: opts.sign.canonicalization });
                if (!r.signatures.length) {
                  counters.add('dkim.sign.unsigned');
                  txn.session.log.info({ plugin: 'mailauth', reason: r.unsigned }, 'DKIM: message left unsigned (no key for its From: domain)');
                  return undefined;
                }
                if (r.errors.length) txn.session.log.warn({ plugin: 'mailauth', errors: r.errors }, 'DKIM signing reported errors');
                for (const sig of r.signatures) txn.addHeader('DKIM-Signature', sig);
                counters.add('dkim.sign.signed');
                counters.add(`dkim.sign.domain.${r.domain}`);
                return undefined;
              },
            };
          }
          if (!opts.verify.enabled) return undefined;
          return {
            // Fields claiming our authserv-id can only be forgeries: ours is added after this pass.
            dropHeader: (field) => {
              const forged = claimsOurId(field, authservId);
              if (forged) counters.add('authresults.forged.removed');
              return forged;
            },
            raw: async (stream) => {
              const r = await checkMessage(inbound, stream, txn, note(txn).spf);
              txn.addHeader('Authentication-Results', r.authResults);
              counters.add(`dmarc.${r.dmarc?.status.result ?? 'none'}`);
              for (const d of r.dkim.results ?? []) counters.add(`dkim.verify.${d.status.result}`);
              if (r.tag) {
                txn.addHeader(opts.verify.tagHeader, r.tag);
                counters.add('tagged');
              }
              if (r.verdict || r.tag) txn.session.log.info({ plugin: 'mailauth', dmarc: r.dmarc?.status.result, policy: r.dmarc?.policy, tag: r.tag, reply: r.verdict?.reply }, 'authentication policy decided');
              return r.verdict;
            },
          };
        },
      },
      close() {
        clearInterval(summary);
        log.info({ counters: counters.snapshot() }, 'mailauth counters');
      },
    };
  },
});
