import { definePlugin, duration, networkList, RepeatLog, tempfail, Tokens, z, type Address, type Clock, type SharedState, type Transaction } from '@portcullis/core';
import { clientNetwork } from './client-network.js';

export { clientNetwork } from './client-network.js';

const DAY = 86_400_000;

export const options = z.strictObject({
  delay: duration().default(300_000).describe('How long a new triplet is refused (451 4.7.1) before a retry passes.'),
  retryWindow: duration().default(2 * DAY).describe('How long after the first attempt a retry still passes; a triplet not retried in time starts over.'),
  lifetime: duration().default(36 * DAY).describe('How long a passed triplet (and an auto allow-listed client) is remembered; every pass renews it.'),
  autoAllowAfter: z.number().int().min(0).default(5).describe('A client network whose triplets passed this many times is allow-listed for `lifetime` (its new triplets pass at once). 0: never.'),
  ipv4Prefix: z.number().int().min(8).max(32).default(24).describe('IPv4 clients are keyed by this prefix (a sender\'s outgoing pool usually shares a /24).'),
  ipv6Prefix: z.number().int().min(16).max(128).default(64).describe('IPv6 clients are keyed by this prefix.'),
  trustedNetworks: networkList().describe('Client networks never greylisted (internal servers): full addresses or CIDRs. Authenticated users never are either.'),
  allow: z
    .strictObject({
      networks: networkList().describe('Client networks never greylisted (known senders\' servers).'),
      senderDomains: z.array(z.string().regex(/^\.?[a-z0-9.-]+$/i, 'a domain, or .domain for its subdomains too')).default([]).describe('Envelope sender domains never greylisted; `.example.com` also matches its subdomains.'),
      recipients: z.array(z.string().regex(/^[^\s@]*@[^\s@]+$/, 'an address, or @domain')).default([]).describe('Recipients never greylisted: full addresses, or `@domain` for a whole domain (e.g. postmaster@, abuse@).'),
    })
    .prefault({})
    .describe('Allow lists: mail matching any of them is never greylisted.'),
  hostedOnly: z.boolean().default(true).describe('Greylist only recipients of the domains a policy plugin hosts (relay-policy registers them); others are left to the later plugins (e.g. 550 for relaying). Greylists every recipient when no plugin registers hosted domains.'),
});

export type GreylistOptions = z.input<typeof options>;

/** A triplet's record in the shared state: when it was first seen, and when it last passed. */
interface TripletRecord {
  readonly first: number;
  readonly passed?: number;
}

/** What this plugin records in `txn.notes.greylist`, per recipient. */
export type GreylistNote = Record<string, 'greylisted' | 'early' | 'passed' | 'known' | 'auto-allowed' | 'allowed' | 'fallback'>;

const parse = <T>(v: string | undefined): T | undefined => {
  if (v === undefined) return undefined;
  try {
    return JSON.parse(v) as T;
  } catch {
    return undefined;
  }
};

/**
 * Greylisting (RFC 6647) at RCPT TO. List it before relay-policy: it gives no opinion on what
 * passes, so the policy plugin still decides.
 *
 *   authenticated, trusted, allow-listed, not hosted ─▶ no opinion
 *   shared store (Redis) down ───────────────────────▶ no opinion, counted as a fallback (never "defer all")
 *   client network auto allow-listed ───────────────▶ no opinion
 *   triplet unknown or expired ─────────────────────▶ 451 4.7.1 Greylisted, try again in N seconds
 *   retried before `delay` ─────────────────────────▶ 451 4.7.1 ... in the seconds left
 *   retried within the window, or passed before ────▶ no opinion (passes); counts toward auto allow-listing
 */
export default definePlugin({
  name: 'greylist',
  options,
  setup(opts, ctx) {
    const state = ctx.container.resolve<SharedState>(Tokens.SharedState);
    const clock = ctx.container.isRegistered(Tokens.Clock, true) ? ctx.container.resolve<Clock>(Tokens.Clock) : Date.now;
    const results = ctx.metrics.counter<'result'>({ name: 'results_total', help: 'Recipients by result: greylisted (new triplet), early (retry before the delay), passed (retry after the delay), known (passed before), auto_allowed, allowed (trusted, authenticated, allow lists), fallback (store down)', labelNames: ['result'] });
    const fallbacks = ctx.metrics.counter({ name: 'fallbacks_total', help: 'Recipients accepted without greylisting because the shared store (Redis) did not answer' });
    for (const result of ['greylisted', 'early', 'passed', 'known', 'auto_allowed', 'allowed', 'fallback']) results.inc({ result }, 0);
    const repeats = new RepeatLog(60_000);
    const senderDomains = opts.allow.senderDomains.map((d) => d.toLowerCase());
    const recipients = new Set(opts.allow.recipients.map((r) => r.toLowerCase()));
    const hosted = (): ReadonlySet<string> | undefined =>
      opts.hostedOnly && ctx.container.isRegistered(Tokens.HostedDomains, true) ? new Set(ctx.container.resolve<readonly string[]>(Tokens.HostedDomains).map((d) => d.toLowerCase())) : undefined;

    const allowedSender = (from: Address) =>
      !!from.domain && senderDomains.some((d) => (d.startsWith('.') ? from.domain === d.slice(1) || from.domain.endsWith(d) : from.domain === d));
    const allowedRecipient = (to: Address) => recipients.has(to.address.toLowerCase()) || recipients.has(`@${to.domain}`);
    /** The Redis store failed while answering: true when any fallback was counted since `before`. */
    const storeDown = (before: number) => state.store === 'redis' && (!state.status().connected || state.status().fallbacks > before);
    const note = (txn: Transaction, to: Address, r: GreylistNote[string]) => {
      ((txn.notes['greylist'] as GreylistNote | undefined) ?? (txn.notes['greylist'] = {} as GreylistNote) as GreylistNote)[to.address] = r;
    };
    const wait = (ms: number) => {
      const s = Math.max(1, Math.ceil(ms / 1000));
      return tempfail(451, '4.7.1', `Greylisted, try again in ${s} second${s === 1 ? '' : 's'}`);
    };

    return {
      hooks: {
        async rcpt(txn, to) {
          const s = txn.session;
          const log = s.log;
          const domains = hosted();
          if (domains && !domains.has(to.domain)) return undefined;
          if (s.user || opts.trustedNetworks.contains(s.remoteAddress) || opts.allow.networks.contains(s.remoteAddress) || allowedSender(txn.mailFrom) || allowedRecipient(to)) {
            results.inc({ result: 'allowed' });
            note(txn, to, 'allowed');
            return undefined;
          }
          const net = clientNetwork(s.remoteAddress, opts.ipv4Prefix, opts.ipv6Prefix);
          const fallback = () => {
            results.inc({ result: 'fallback' });
            fallbacks.inc();
            note(txn, to, 'fallback');
            // One line a minute at most: an outage under a flood must not fill the disk with logs.
            repeats.log(log, 'warn', 'fallback', { plugin: 'greylist', txn: txn.id, client: net }, 'greylist: shared store unreachable, recipient accepted without greylisting');
            return undefined;
          };
          const before = state.status().fallbacks;
          if (storeDown(before)) return fallback();
          const clientKey = `greylist:c:${net}`;
          const tripletKey = `greylist:t:${net}|${txn.mailFrom.address.toLowerCase()}|${to.address.toLowerCase()}`;
          const [clientRaw, tripletRaw] = await Promise.all([opts.autoAllowAfter ? state.get(clientKey) : undefined, state.get(tripletKey)]);
          if (storeDown(before)) return fallback();
          const now = clock();
          // Expiry is checked on the clock too: the store's TTL is only the clean-up.
          const client = parse<{ passes: number; at: number }>(clientRaw);
          const passes = client && now - client.at <= opts.lifetime ? client.passes : 0;
          if (opts.autoAllowAfter && passes >= opts.autoAllowAfter) {
            results.inc({ result: 'auto_allowed' });
            note(txn, to, 'auto-allowed');
            return undefined;
          }
          const stored = parse<TripletRecord>(tripletRaw);
          const rec = stored?.passed !== undefined && now - stored.passed > opts.lifetime ? undefined : stored;
          if (rec?.passed !== undefined) {
            await state.set(tripletKey, JSON.stringify({ first: rec.first, passed: now } satisfies TripletRecord), opts.lifetime);
            results.inc({ result: 'known' });
            note(txn, to, 'known');
            return undefined;
          }
          const elapsed = rec ? now - rec.first : Infinity;
          if (!rec || elapsed > opts.delay + opts.retryWindow || elapsed < 0) {
            await state.set(tripletKey, JSON.stringify({ first: now } satisfies TripletRecord), opts.delay + opts.retryWindow);
            if (storeDown(before)) return fallback();
            results.inc({ result: 'greylisted' });
            note(txn, to, 'greylisted');
            log.info({ plugin: 'greylist', txn: txn.id, client: net, from: txn.mailFrom.address, to: to.address, delay: opts.delay }, 'greylisted: new triplet');
            return wait(opts.delay);
          }
          if (elapsed < opts.delay) {
            results.inc({ result: 'early' });
            note(txn, to, 'early');
            log.info({ plugin: 'greylist', txn: txn.id, client: net, left: opts.delay - elapsed }, 'greylisted: retried before the delay');
            return wait(opts.delay - elapsed);
          }
          await state.set(tripletKey, JSON.stringify({ first: rec.first, passed: now } satisfies TripletRecord), opts.lifetime);
          if (opts.autoAllowAfter) await state.set(clientKey, JSON.stringify({ passes: passes + 1, at: now }), opts.lifetime);
          results.inc({ result: 'passed' });
          note(txn, to, 'passed');
          log.info({ plugin: 'greylist', txn: txn.id, client: net, waited: elapsed, passes: passes + 1 }, 'greylist: retry after the delay passed');
          return undefined;
        },
      },
    };
  },
});
