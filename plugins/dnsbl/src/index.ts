import { Resolver } from 'node:dns/promises';
import { definePlugin, duration, NetworkList, networkList, reject, tempfail, Tokens, z, type RelayConfig, type Session, type SharedState, type Verdict } from '@portcullis/core';
import { parseAnswerPattern } from './answer-filter.js';
import { Zone, type ZoneResult } from './zone.js';

export { parseAnswerPattern, answerKind } from './answer-filter.js';
export { queryName } from './query-name.js';
export { Zone, type ZoneStats, type ZoneResult } from './zone.js';

const pattern = z.string().transform((v, ctx) => {
  try {
    return { text: v, test: parseAnswerPattern(v) };
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const zoneSchema = z.strictObject({
  /** The zone queried, e.g. `zen.spamhaus.org` (or a zone with an access key in it). */
  zone: z.string().regex(/^[a-z0-9_-]+(\.[a-z0-9_-]+)+\.?$/i, 'expected a DNS zone such as zen.spamhaus.org').transform((v) => v.replace(/\.$/, '').toLowerCase()),
  /** Added to the client's score when listed; negative for allow lists. */
  weight: z.number().default(1),
  /** Answers that count as a listing (`127.0.0.[2..11]`); default: any regular 127.0.0.0/8 answer. */
  answers: z.array(pattern).min(1).optional(),
  /** Name shown in the reply instead of the query zone (which may contain a secret key). */
  name: z.string().min(1).optional(),
});

export const options = z.strictObject({
  zones: z.array(zoneSchema).min(1, 'at least one zone is needed'),
  /** A client whose summed weight reaches this is listed. */
  threshold: z.number().default(1),
  /** A client whose summed weight is at or below this is allow-listed: no DNSBL verdict, and `notes.dnsbl.allowed`. */
  allowThreshold: z.number().default(-1),
  /** `reject` (554 5.7.1 at MAIL FROM), `tempfail` (450 4.7.1), or `tag` (a header and a note only). */
  action: z.enum(['reject', 'tempfail', 'tag']).default('reject'),
  /** Header added in `tag` mode (and for every listed client that is let through). */
  header: z.string().regex(/^[!-9;-~]+$/).default('X-Portcullis-DNSBL'),
  /** Longest one lookup may take; a timeout never refuses anybody. */
  timeout: duration().default(2_000),
  cache: z
    .strictObject({
      /** Answers are cached at least this long, whatever their TTL. */
      minTtl: duration().default(60_000),
      /** ...and at most this long. */
      maxTtl: duration().default(3_600_000),
      /** How long "not listed" (NXDOMAIN) is cached. */
      negativeTtl: duration().default(300_000),
    })
    .prefault({}),
  failing: z
    .strictObject({
      /** How long a failing zone is skipped before its RFC 5782 test entries are asked again. */
      retryAfter: duration().default(300_000),
      /** Timeouts or SERVFAILs in a row after which a zone counts as failing. */
      errorsInARow: z.number().int().min(1).default(5),
    })
    .prefault({}),
  skip: z
    .strictObject({
      /** Clients never looked up (your own networks). */
      networks: networkList(),
      /** Authenticated clients are not refused (they may log in from a listed dynamic address). */
      authenticated: z.boolean().default(true),
      /** Also skip relay-policy's `trustedNetworks`, read from the relay config. */
      trustedNetworks: z.boolean().default(true),
    })
    .prefault({}),
});

export type DnsblOptions = z.input<typeof options>;

/** What the plugin records in `session.notes.dnsbl` for later plugins. */
export interface DnsblNote {
  score: number;
  listed: Array<{ zone: string; name: string; weight: number; answers: readonly string[] }>;
  /** Zones that could not answer (timeout, SERVFAIL) or are marked failing: they counted 0. */
  unanswered: string[];
  allowed: boolean;
}

/**
 * DNS block and allow lists, postscreen-style: every zone is asked in parallel at connect (answers
 * cached on `Tokens.SharedState`, TTLs clamped), weights are summed, and at MAIL FROM a client at or
 * over `threshold` is refused (or tempfailed, or tagged). Runs `pre`.
 *
 *   connect ─▶ lookups start (skipped networks: none)   MAIL FROM ─▶ score ≥ threshold ─▶ 554 5.7.1 …
 *   authenticated (skip.authenticated) ─▶ never refused         data ─▶ header when listed / tag mode
 */
export default definePlugin({
  name: 'dnsbl',
  enforce: 'pre',
  options,
  setup(opts, ctx) {
    const state = ctx.container.resolve<SharedState>(Tokens.SharedState);
    const config = ctx.container.resolve<RelayConfig>(Tokens.Config);
    const core = ctx.container.resolve<Resolver>(Tokens.Resolver);
    // Our own resolver: one try, our timeout, the relay's servers.
    const resolver = new Resolver({ timeout: opts.timeout, tries: 1 });
    resolver.setServers(config.dns.servers?.length ? config.dns.servers : core.getServers());
    const settings = { timeoutMs: opts.timeout, minTtlMs: opts.cache.minTtl, maxTtlMs: opts.cache.maxTtl, negativeTtlMs: opts.cache.negativeTtl, retryMs: opts.failing.retryAfter, errorsInARow: opts.failing.errorsInARow };
    const zones = opts.zones.map(
      (z) => new Zone({ zone: z.zone, weight: z.weight, name: z.name ?? z.zone, filter: z.answers && ((a: string) => z.answers!.some((p) => p.test(a))) }, settings, resolver, state, ctx.log),
    );
    // The lookup for each session, with the address it was made for: XCLIENT may change the client
    // after connect, and the verdict must be about the client, not the proxy.
    const pending = new WeakMap<Session, { ip: string; note: Promise<DnsblNote> }>();
    const xclientPeers = new Map(config.listen.map((l) => [l.name ?? `${l.host}:${l.port}`, l.xclient] as const));
    const fromXclientProxy = (s: Session) => !s.proxied && !!xclientPeers.get(s.listener.name)?.contains(s.remoteAddress);
    // Zone names come from the config (bounded); never the client address.
    const lookups = ctx.metrics.counter<'zone' | 'result'>({ name: 'lookups_total', help: 'Zone answers by zone and result: listed, clear, error (timeout, SERVFAIL), skipped (zone marked failing)', labelNames: ['zone', 'result'] });
    const refusals = ctx.metrics.counter<'action'>({ name: 'refusals_total', help: 'Clients at or over the threshold at MAIL FROM, by action: reject, tempfail', labelNames: ['action'] });
    const failingZones = ctx.metrics.gauge({ name: 'zones_failing', help: 'Zones marked failing now (skipped until they answer their test entries again)' });
    for (const z of zones) for (const result of ['listed', 'clear', 'error', 'skipped']) lookups.inc({ zone: z.settings.zone, result }, 0);

    async function evaluate(session: Session): Promise<DnsblNote> {
      const ip = session.remoteAddress;
      // An allow-listed client skips every lookup while its allow entry is cached.
      const allowKey = `dnsbl:allowed:${ip}`;
      if ((await state.get(allowKey)) !== undefined) return { score: 0, listed: [], unanswered: [], allowed: true };
      const results: ZoneResult[] = await Promise.all(zones.map((z) => z.check(ip).catch((err: Error) => ({ state: 'error', error: err.message }) as ZoneResult)));
      const note: DnsblNote = { score: 0, listed: [], unanswered: [], allowed: false };
      failingZones.set(zones.filter((z) => z.failing).length);
      results.forEach((r, i) => {
        const z = zones[i]!.settings;
        lookups.inc({ zone: z.zone, result: r.state });
        if (r.state === 'listed') {
          note.score += z.weight;
          note.listed.push({ zone: z.zone, name: z.name, weight: z.weight, answers: r.answers });
        } else if (r.state !== 'clear') note.unanswered.push(z.zone);
      });
      note.allowed = note.score <= opts.allowThreshold && note.listed.some((l) => l.weight < 0);
      if (note.allowed) await state.set(allowKey, '1', opts.cache.minTtl);
      if (note.listed.length || note.unanswered.length) ctx.log.debug({ client: ip, score: note.score, listed: note.listed.map((l) => l.zone), unanswered: note.unanswered }, 'DNSBL result');
      return note;
    }

    // relay-policy's trusted networks are ours too: an internal server is never looked up.
    const trusted: NetworkList[] = [];
    if (opts.skip.trustedNetworks) {
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
    const skipped = (s: Session) => opts.skip.networks.contains(s.remoteAddress) || trusted.some((n) => n.contains(s.remoteAddress));
    const verdictFor = (s: Session, note: DnsblNote): Verdict | undefined => {
      if (note.allowed || note.score < opts.threshold || opts.action === 'tag') return undefined;
      if (opts.skip.authenticated && s.user) return undefined;
      // The listing with the largest weight names the reply.
      const top = [...note.listed].sort((a, b) => b.weight - a.weight)[0]!;
      refusals.inc({ action: opts.action === 'tempfail' ? 'tempfail' : 'reject' });
      if (opts.action === 'tempfail') return tempfail(450, '4.7.1', `Service unavailable; client [${s.remoteAddress}] listed by ${top.name}, try again later`);
      return reject(554, '5.7.1', `Service unavailable; client [${s.remoteAddress}] blocked using ${top.name}`);
    };

    /** Starts (or reuses) the lookup for the session's current client; undefined when it is skipped. */
    const lookup = (session: Session): Promise<DnsblNote> | undefined => {
      const known = pending.get(session);
      if (known && known.ip === session.remoteAddress) return known.note;
      if (skipped(session) || fromXclientProxy(session)) return undefined;
      const note = evaluate(session).then((n) => {
        (session.notes as Record<string, unknown>)['dnsbl'] = n;
        return n;
      });
      note.catch(() => undefined);
      pending.set(session, { ip: session.remoteAddress, note });
      return note;
    };

    return {
      /** Ready while no zone is marked failing (/readyz, portcullis status); the detail names the failing ones. */
      ready() {
        const failing = zones.filter((z) => z.failing);
        failingZones.set(failing.length);
        return failing.length
          ? { ready: false, detail: `DNS list zone(s) failing: ${failing.map((z) => z.settings.zone).join(', ')}` }
          : { ready: true, detail: `${zones.length} zone(s) answering` };
      },
      hooks: {
        connect(session) {
          lookup(session);
          return undefined;
        },
        async mail(txn) {
          const p = lookup(txn.session);
          if (!p) return undefined;
          return verdictFor(txn.session, await p);
        },
        async data(txn) {
          const p = lookup(txn.session);
          if (!p) return undefined;
          const note = await p;
          if (note.listed.length && !note.allowed) {
            const zonesText = note.listed.map((l) => `${l.name} (${l.answers.join(',')})`).join(', ');
            txn.addHeader(opts.header, `score=${note.score}; listed=${zonesText}`);
          }
          return undefined;
        },
      },
      close() {
        resolver.cancel();
      },
    };
  },
});
