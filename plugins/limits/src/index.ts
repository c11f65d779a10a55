import {
  definePlugin,
  disconnect,
  duration,
  networkList,
  RepeatLog,
  Replies,
  tempfail,
  Tokens,
  z,
  type ConnectionGate,
  type NetworkList,
  type RelayConfig,
  type Session,
  type SharedCounter,
  type SharedState,
  type SlotLease,
  type Verdict,
  whenSettled,
} from '@portcullis/core';
import { clientKey } from './client-key.js';

export { clientKey } from './client-key.js';

/** `{ limit, window }`: at most `limit` per `window` (whole seconds, fixed windows); `false` turns it off. */
const rate = (limit: number, window: number) =>
  z
    .union([
      z.literal(false),
      z.strictObject({
        limit: z.number().int().min(1),
        window: duration().refine((ms) => ms >= 1000, 'the window must be at least 1s'),
      }),
    ])
    .default({ limit, window });

const MINUTE = 60_000;
const HOUR = 3_600_000;

export const options = z.strictObject({
  exempt: z
    .strictObject({
      networks: networkList().describe('Clients these limits never apply to (full addresses or CIDRs); they may also use the reserved capacity.'),
      users: z.array(z.string().min(1)).default([]).describe('Authenticated login names these limits never apply to (case-insensitive).'),
    })
    .prefault({}).describe('Clients these limits never apply to: networks (CIDR) and authenticated users (login names).'),
  reservedConnections: z.number().int().min(0).default(100).describe('Of the core\'s `limits.connections`, this many are kept for exempt networks and for listeners with `auth: required` (submission): other clients get `421 4.7.0` once the rest is taken.'),
  ipv6Prefix: z.number().int().min(32).max(128).default(64).describe('IPv6 clients are counted per prefix of this length (one subscriber\'s range), IPv4 per address.'),
  perIp: z
    .strictObject({
      connections: z.union([z.literal(false), z.number().int().min(1)]).default(10).describe('Simultaneous connections per address (per IPv6 prefix); over it: 421 4.7.0 and close.'),
      connectionRate: rate(60, MINUTE).describe('New connections per address; over it: 421 4.7.0 and close.'),
      messageRate: rate(300, HOUR).describe('MAIL FROM per address (unauthenticated sessions); over it: 451 4.7.1.'),
      recipientRate: rate(1000, HOUR).describe('RCPT TO per address (unauthenticated sessions); over it: 450 4.7.1.'),
      nullSenderRate: rate(60, HOUR).describe('Messages from the null sender `<>` (bounces) per address; over it: 451 4.7.1.'),
    })
    .prefault({})
    .describe('Limits per client address (per IPv6 prefix).'),
  perSender: z
    .strictObject({
      messageRate: rate(300, HOUR).describe('MAIL FROM per envelope sender address; over it: 451 4.7.1.'),
      recipientRate: rate(1000, HOUR).describe('RCPT TO per envelope sender; over it: 450 4.7.1.'),
    })
    .prefault({})
    .describe('Limits per envelope sender.'),
  perUser: z
    .strictObject({
      messageRate: rate(500, HOUR).describe('MAIL FROM per authenticated user; over it: 451 4.7.1.'),
      recipientRate: rate(2000, HOUR).describe('RCPT TO per authenticated user; over it: 450 4.7.1.'),
    })
    .prefault({})
    .describe('Limits per authenticated user.'),
});

export type LimitsOptions = z.input<typeof options>;

type Rate = false | { limit: number; window: number };

/** A counter on the shared store, or nothing when the rate is turned off. */
function counter(state: SharedState, name: string, r: Rate): SharedCounter | undefined {
  return r ? state.counter(`limits:${name}`, r.limit, r.window) : undefined;
}

/** Whether this session's client is exempt, decided once at connect and again after AUTH. */
function isExempt(session: Session, nets: NetworkList, users: ReadonlySet<string>): boolean {
  return nets.contains(session.remoteAddress) || (!!session.user && users.has(session.user.toLowerCase()));
}

/**
 * Rate limits and flood control. Runs `pre`, before policy plugins:
 *
 *   connection ─ gate (before the greeting, this machine) ─ per-address concurrency, capacity reserve
 *   connect ──── connection rate per address (shared store) ─────────▶ 421 4.7.0 and close
 *   mail ─────── messages per address / sender / user, null sender ───▶ 451 4.7.1
 *   rcpt ─────── recipients per address / sender / user ─────────────▶ 450 4.7.1
 *
 * Rates are fixed windows counted atomically in `Tokens.SharedState` (Redis when configured: every
 * node shares them); concurrency is counted per machine (across its worker processes, in the
 * cluster primary), never in Redis. Exempt networks and users skip everything.
 */
export default definePlugin({
  name: 'limits',
  enforce: 'pre',
  options,
  setup(opts, ctx) {
    const config = ctx.container.resolve<RelayConfig>(Tokens.Config);
    const state = ctx.container.resolve<SharedState>(Tokens.SharedState);
    const exceeded = ctx.metrics.counter<'limit'>({ name: 'exceeded_total', help: 'Refusals by the limit that was reached: connection_rate, capacity, concurrency, address_message, sender_message, user_message, null_sender_message, address_recipient, sender_recipient, user_recipient', labelNames: ['limit'] });
    const gate = ctx.container.resolve<ConnectionGate>(Tokens.ConnectionGate);
    const nets = opts.exempt.networks;
    const users = new Set(opts.exempt.users.map((u) => u.toLowerCase()));
    const repeats = new RepeatLog(60_000);
    const key = (ip: string) => clientKey(ip, opts.ipv6Prefix);

    // Concurrency and capacity: counted here, at the gate, so a refusal costs one line and no hook.
    // The counts are SharedState slots: this process's, or the cluster primary's for every worker
    // (a limit of N per address is N across workers). Named, so a reload's new gate goes on
    // counting the connections the old one admitted.
    const ceiling = Math.max(1, config.limits.connections - opts.reservedConnections);
    const capacity = state.slots('limits:capacity', ceiling);
    const perAddress = opts.perIp.connections ? state.slots('limits:conc:ip', opts.perIp.connections) : undefined;
    const reserved = (c: { remoteAddress: string; listener: Session['listener'] }) => c.listener.auth === 'required' || nets.contains(c.remoteAddress);
    const leases = new Map<string, SlotLease[]>();
    const busy = (c: { remoteAddress: string }) => {
      exceeded.inc({ limit: 'capacity' });
      repeats.log(ctx.log, 'warn', 'capacity', { client: c.remoteAddress, ceiling }, 'untrusted connection capacity full: refused (the rest is kept for trusted networks and submission)');
      return Replies.serverBusy;
    };
    const tooMany = (c: { remoteAddress: string }, k: string) => {
      exceeded.inc({ limit: 'concurrency' });
      repeats.log(ctx.log, 'warn', `conc:${k}`, { client: c.remoteAddress, key: k, limit: opts.perIp.connections }, 'too many simultaneous connections from one address: refused');
      return Replies.tooManyConnections;
    };
    gate.add({
      name: 'limits',
      admit(c) {
        if (reserved(c)) return undefined;
        const k = key(c.remoteAddress);
        return whenSettled(capacity.acquire('untrusted'), (cap) => {
          if (!cap) return busy(c);
          if (!perAddress) {
            leases.set(c.id, [cap]);
            return undefined;
          }
          return whenSettled(perAddress.acquire(k), (one) => {
            if (!one) {
              cap.release();
              return tooMany(c, k);
            }
            leases.set(c.id, [cap, one]);
            return undefined;
          });
        });
      },
      release(c) {
        for (const l of leases.get(c.id) ?? []) l.release();
        leases.delete(c.id);
      },
    });

    // Listeners' XCLIENT peers: a proxy speaks for many clients; its own connections are not rated.
    const xclientPeers = new Map(config.listen.map((l) => [l.name ?? `${l.host}:${l.port}`, l.xclient] as const));
    const fromXclientProxy = (s: Session) => !s.proxied && !!xclientPeers.get(s.listener.name)?.contains(s.remoteAddress);
    const connectionRate = counter(state, 'conn:ip', opts.perIp.connectionRate);
    const ipMessages = counter(state, 'msg:ip', opts.perIp.messageRate);
    const ipRecipients = counter(state, 'rcpt:ip', opts.perIp.recipientRate);
    const ipNullSender = counter(state, 'null:ip', opts.perIp.nullSenderRate);
    const senderMessages = counter(state, 'msg:sender', opts.perSender.messageRate);
    const senderRecipients = counter(state, 'rcpt:sender', opts.perSender.recipientRate);
    const userMessages = counter(state, 'msg:user', opts.perUser.messageRate);
    const userRecipients = counter(state, 'rcpt:user', opts.perUser.recipientRate);

    /** Consumes one point on every counter that applies; the first one over its limit decides. */
    async function check(session: Session, checks: Array<[SharedCounter | undefined, string, string]>, reply: (what: string) => Verdict): Promise<Verdict | undefined> {
      const results = await Promise.all(checks.map(async ([c, k, what]) => (c ? { r: await c.consume(k), k, what } : undefined)));
      const over = results.find((x) => x && !x.r.allowed);
      if (!over) return undefined;
      exceeded.inc({ limit: over.what.replace(/[^a-z]+/g, '_') });
      repeats.log(ctx.log, 'warn', `${over.what}:${over.k}`, { client: session.remoteAddress, key: over.k, limit: over.r.limit, count: over.r.count, shared: over.r.shared, retryAfterMs: over.r.retryAfterMs }, `${over.what} rate limit exceeded`);
      return reply(over.what);
    }

    return {
      async connect(session) {
        if (isExempt(session, nets, users) || !connectionRate || fromXclientProxy(session)) return undefined;
        const k = key(session.remoteAddress);
        const r = await connectionRate.consume(k);
        if (r.allowed) return undefined;
        exceeded.inc({ limit: 'connection_rate' });
        repeats.log(ctx.log, 'warn', `connrate:${k}`, { client: session.remoteAddress, key: k, limit: r.limit, count: r.count, shared: r.shared }, 'connection rate exceeded: refused');
        return disconnect(421, '4.7.0', 'Too many connections from your address in a short time, try again later');
      },
      async mail(txn, from) {
        const s = txn.session;
        if (isExempt(s, nets, users)) return undefined;
        const sender = from.address.toLowerCase();
        const checks: Array<[SharedCounter | undefined, string, string]> = [];
        // Authenticated users are counted as themselves: many share one address (NAT, mobile).
        if (s.user) checks.push([userMessages, s.user.toLowerCase(), 'user message']);
        else checks.push([ipMessages, key(s.remoteAddress), 'address message']);
        if (sender) checks.push([senderMessages, sender, 'sender message']);
        else checks.push([ipNullSender, key(s.remoteAddress), 'null-sender message']);
        return check(s, checks, (what) => tempfail(451, '4.7.1', `Too many messages (${what.split(' ')[0]} rate limit), try again later`));
      },
      async rcpt(txn) {
        const s = txn.session;
        if (isExempt(s, nets, users)) return undefined;
        const sender = txn.mailFrom.address.toLowerCase();
        const checks: Array<[SharedCounter | undefined, string, string]> = [];
        if (s.user) checks.push([userRecipients, s.user.toLowerCase(), 'user recipient']);
        else checks.push([ipRecipients, key(s.remoteAddress), 'address recipient']);
        if (sender) checks.push([senderRecipients, sender, 'sender recipient']);
        return check(s, checks, (what) => tempfail(450, '4.7.1', `Too many recipients (${what.split(' ')[0]} rate limit), try again later`));
      },
    };
  },
});
