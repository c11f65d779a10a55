import { createHash } from 'node:crypto';
import {
  definePlugin,
  disconnect,
  reject,
  RepeatLog,
  tempfail,
  Tokens,
  type PluginDriver,
  type RelayConfig,
  type Session,
  type SharedState,
  type Verdict,
} from '@portcullis/core';
import { AnswerCache } from './answer-cache.js';
import { CalloutSource } from './callout-source.js';
import { DomainPatterns } from './domain-patterns.js';
import { HarvestGuard } from './harvest-guard.js';
import { LdapSource } from './ldap-source.js';
import { ListSource } from './list-source.js';
import { options } from './options.js';
import { recipientAddress } from './recipient-address.js';
import { RecipientChecker, type CheckResult } from './recipient-checker.js';
import type { LookupContext, RecipientSource } from './source.js';

export { options, type RecipientsOptions } from './options.js';
export { ldapFilter } from './ldap-filter.js';
export { recipientAddress, type RecipientAddress } from './recipient-address.js';
export type { CheckResult } from './recipient-checker.js';

/** `550 5.1.1 <addr>: Recipient address rejected: User unknown`, as Postfix words it. */
export const userUnknown = (address: string) => reject(550, '5.1.1', `<${address}>: Recipient address rejected: User unknown`);

/** The one-line explanation `portcullis recipients check` prints. */
export function formatCheck(address: string, r: CheckResult): string {
  const how = r.cached ? ' (cached)' : r.lastKnownGood ? ' (last known good: the source is down)' : '';
  const head = `${address}: ${r.outcome}${r.source ? ` by ${r.source}` : ''}${how}: ${r.detail}`;
  return [head, ...r.trail.map((t) => `  ${t}`)].join('\n') + '\n';
}

/**
 * Recipient validation at RCPT for hosted domains. Runs `pre` (after limits, before relay-policy):
 *
 *   rcpt ── domain hosted? ── no ──────────────────────────────▶ (no verdict: relay-policy decides)
 *              │ yes (and not outbound from a trusted/authenticated client)
 *              ▼
 *          sources in order (cache for ldap/callout) ── known ──▶ (no verdict: relay-policy decides)
 *              │ unknown                         │ cannot answer
 *              ▼                                 ▼
 *          harvest guard: delay, then 550 5.1.1   last known good ─▶ known
 *          or 421 4.7.0 and close                 none ─▶ 451 4.3.0 (ldap, list) / 450 4.1.1 (callout)
 */
export default definePlugin({
  name: 'recipients',
  enforce: 'pre',
  options,
  setup(opts, ctx) {
    const config = ctx.container.resolve<RelayConfig>(Tokens.Config);
    const state = ctx.container.resolve<SharedState>(Tokens.SharedState);
    const fingerprint = createHash('sha256').update(JSON.stringify({ s: opts.sources, d: opts.domains, x: opts.subaddressDelimiter })).digest('hex').slice(0, 10);
    const cache = new AnswerCache(state, fingerprint, opts.cache);
    const sources = new Map<string, RecipientSource>();
    const ldapSources: LdapSource[] = [];
    for (const [name, s] of Object.entries(opts.sources)) {
      const log = ctx.log.child({ source: name });
      if (s.list) sources.set(name, new ListSource(name, s.list, ctx.configDir, log));
      else if (s.ldap) {
        const l = new LdapSource(name, s.ldap, ctx.configDir, log);
        ldapSources.push(l);
        sources.set(name, l);
      } else if (s.callout) sources.set(name, new CalloutSource(name, s.callout, s.callout.helo ?? config.hostname, cache, log));
    }
    const domains = new DomainPatterns(Object.entries(opts.domains).map(([d, names]) => [d, names.map((n) => sources.get(n)!)] as const));

    const lookups = ctx.metrics.counter<'source' | 'result'>({ name: 'lookups_total', help: 'Recipient lookups by source type (list, ldap, callout) and result (known, unknown, error)', labelNames: ['source', 'result'] });
    const cacheLookups = ctx.metrics.counter<'result'>({ name: 'cache_total', help: 'Cache look-ups of ldap and callout answers by result (hit, miss)', labelNames: ['result'] });
    const lkgAnswers = ctx.metrics.counter({ name: 'last_known_good_total', help: 'Recipients accepted from the last known good answer while their source was down' });
    const decisions = ctx.metrics.counter<'decision'>({ name: 'decisions_total', help: 'RCPT decisions: known, unknown (550 5.1.1), unavailable (4xx), harvest (421 4.7.0), accepted_on_error', labelNames: ['decision'] });
    // Sources that have answered "known" at least once on this node: readiness holds for them while down.
    const knownGood = new Set<string>();
    const checker = new RecipientChecker(domains, cache, {
      lookup: (source, result) => lookups.inc({ source, result }),
      cache: (result) => cacheLookups.inc({ result }),
      lastKnownGood: () => lkgAnswers.inc(),
    }, ctx.log);
    const guard = new HarvestGuard(state, opts.harvest);
    const repeats = new RepeatLog(60_000);

    const lookupContext: LookupContext = {
      async route(domain) {
        const driver = ctx.container.resolve<PluginDriver>(Tokens.PluginDriver);
        const r = await driver.route([domain, { id: 'recipients-callout', mailFrom: '', recipients: [], receivedAt: Date.now(), size: 0 }]);
        const h = r.hop?.hosts[0];
        return h ? { host: h.host, port: h.port, ...(h.name ? { name: h.name } : {}) } : undefined;
      },
    };

    async function checkAddress(address: string, useCache = true): Promise<CheckResult> {
      const at = address.lastIndexOf('@');
      const addr = at > 0 ? recipientAddress(address.slice(0, at), address.slice(at + 1), opts.subaddressDelimiter) : undefined;
      if (!addr) return { outcome: 'not-hosted', detail: `${address} is not an address with a domain`, trail: [] };
      const r = await checker.check(addr, lookupContext, { useCache });
      if (r.outcome === 'known' && r.source) knownGood.add(r.source);
      return r;
    }

    const decisionKnown = decisions.labels({ decision: 'known' });
    function known(session: Session, address: string, r: CheckResult): undefined {
      if (r.source) knownGood.add(r.source);
      decisionKnown.inc();
      session.log.debug({ recipient: address, source: r.source, cached: r.cached, lastKnownGood: r.lastKnownGood }, 'recipient known');
      return undefined;
    }

    /** Unknown or unavailable: the harvest guard's delay and 550 5.1.1 (or 421 and a close), or a 4xx. */
    async function refuse(session: Session, address: string, r: CheckResult): Promise<Verdict | undefined> {
      if (r.outcome === 'unavailable') {
        repeats.log(ctx.log, 'warn', `down:${r.source}`, { source: r.source, err: r.detail }, 'recipient source cannot answer');
        if (opts.onError === 'accept') {
          decisions.inc({ decision: 'accepted_on_error' });
          return undefined;
        }
        decisions.inc({ decision: 'unavailable' });
        return r.sourceType === 'callout'
          ? tempfail(450, '4.1.1', `<${address}>: Recipient address rejected: unverified address: the next hop cannot verify it now, try again later`)
          : tempfail(451, '4.3.0', `<${address}>: Temporary lookup failure, try again later`);
      }
      const h = await guard.unknown(session, session.remoteAddress);
      if (h.action === 'close') {
        decisions.inc({ decision: 'harvest' });
        repeats.log(ctx.log, 'warn', `harvest:${session.remoteAddress}`, { client: session.remoteAddress, scope: h.scope, unknown: h.count }, 'too many unknown recipients: directory harvest suspected, connection closed');
        return disconnect(421, '4.7.0', 'Too many unknown recipients, closing connection');
      }
      await guard.sleep(h.delayMs);
      decisions.inc({ decision: 'unknown' });
      session.log.info({ recipient: address, unknownInSession: h.count, delayMs: h.delayMs }, 'recipient unknown: 550 5.1.1');
      return userUnknown(address);
    }

    return {
      hooks: {
        // Not async: a recipient this node already knows (memory) is answered synchronously, so the
        // driver needs no promise and no timeout timer for it (the README's "Cost").
        rcpt(txn, to) {
          const session = txn.session;
          if (!to.domain) return undefined;
          const addr = recipientAddress(to.local, to.domain, opts.subaddressDelimiter);
          if (!addr || !checker.hosted(addr.domain)) return undefined;
          const outbound = !!session.user || opts.outbound.trustedNetworks.contains(session.remoteAddress);
          if (outbound && !opts.outbound.check) return undefined;
          const now = checker.knownNow(addr);
          if (now) return known(session, to.address, now);
          return checker.check(addr, lookupContext).then((r) => (r.outcome === 'known' ? known(session, to.address, r) : refuse(session, to.address, r)));
        },
      },
      async ready() {
        const results = await Promise.all(ldapSources.map(async (l) => ({ l, r: await l.ready() })));
        const down = results.filter(({ r }) => !r.ready);
        const blind = down.filter(({ l }) => !knownGood.has(l.name));
        if (blind.length) return { ready: false, detail: blind.map(({ r }) => r.detail).join('; ') + ' (no last known good answers yet)' };
        return down.length ? { ready: true, detail: down.map(({ r }) => r.detail).join('; ') + ' (known users answered from last known good answers)' } : { ready: true };
      },
      async check({ connect }) {
        const out: Array<{ ok: boolean; text: string }> = [];
        for (const [d, names] of Object.entries(opts.domains)) out.push({ ok: true, text: `${d}: ${names.map((n) => `${n} (${sources.get(n)!.type})`).join(' -> ')}` });
        if (connect) {
          for (const l of ldapSources) {
            try {
              out.push({ ok: true, text: `${l.name}: ${(await l.test()).replace(/\n/g, '; ')}` });
            } catch (err) {
              out.push({ ok: false, text: `${l.name}: ${(err as Error).message.replace(/\n/g, '; ')}` });
            }
          }
        }
        return out;
      },
      commands: {
        check: {
          description: 'which source knows ADDRESS, and why (--fresh: ask the sources, not the cache)',
          usage: 'ADDRESS [--fresh] [--json]',
          async run(args, io) {
            const address = args.find((a) => !a.startsWith('--'));
            if (!address) {
              io.err('usage: portcullis recipients check ADDRESS [--fresh] [--json] --config FILE\n');
              return 64;
            }
            const r = await checkAddress(address, !args.includes('--fresh'));
            io.out(args.includes('--json') ? JSON.stringify({ address, ...r }, null, 2) + '\n' : formatCheck(address, r));
            return r.outcome === 'unavailable' ? 1 : 0;
          },
        },
        flush: {
          description: 'drop every cached answer on every node sharing this state (last known good answers stay)',
          usage: '',
          async run(_args, io) {
            const gen = await cache.flush();
            io.out(`recipients cache flushed (generation ${gen}, on the ${state.store} state)\n`);
            return 0;
          },
        },
      },
      async close() {
        guard.close();
        await Promise.all([...sources.values()].map((s) => s.close()));
      },
    };
  },
});
