import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { accept, definePlugin, disconnect, duration, hostAndPort, networkList, reject, Tokens, z, type DiskGuard, type NextHop, type Session, type SharedState } from '@portcullis/core';
import { findDomain, normaliseDomain, routingTrick } from './address-checks.js';
import { AuthThrottle } from './auth-throttle.js';
import { hashPassword, readUsersFile, verifyPassword, type UserEntry } from './passwords.js';

export { hashPassword, verifyPassword, readUsersFile } from './passwords.js';
export { routingTrick, normaliseDomain, findDomain } from './address-checks.js';

const domainName = z.string().transform((v, ctx) => {
  const n = normaliseDomain(v);
  if (!n) {
    ctx.addIssue({ code: 'custom', message: `expected a domain name such as example.com or *.example.com, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return n;
});

const domainSchema = z.strictObject({
  nexthop: hostAndPort().describe('Where this domain\'s mail goes: `host:port` (an IP literal, or a name from /etc/hosts).'),
  tls: z.enum(['none', 'opportunistic', 'required']).default('opportunistic').describe('TLS towards the next hop.'),
  auth: z.strictObject({ user: z.string().min(1).describe('Login name at the next hop.'), pass: z.string().min(1).describe('Its password.') }).optional().describe('AUTH at the next hop.'),
});

export const options = z.strictObject({
  domains: z.record(z.string().min(1), domainSchema).default({}).describe('Hosted domains: anyone may send to them; each goes to its next hop. `*.example.com` covers subdomains.'),
  trustedNetworks: networkList().describe('Client networks that may relay to any domain: full addresses or CIDRs, parsed by core\'s strict network parser.'),
  relayAuthenticated: z.boolean().default(true).describe('Whether authenticated users may relay to any domain.'),
  allowAddressLiterals: z.boolean().default(false).describe('Accept `user@[192.0.2.1]` and `user@192.0.2.1` recipients from trusted and authenticated senders.'),
  blockedDestinations: z.array(domainName).default([]).describe('Destination domains that trusted and authenticated senders may not relay to.'),
  users: z.string().min(1).optional().describe('Users file (`user:$scrypt$...[:domains]`, made with `portcullis passwd`); enables AUTH.'),
  senderMustMatch: z.boolean().default(false).describe('Authenticated users may only use their own domains in MAIL FROM.'),
  authThrottle: z
    .strictObject({
      delay: duration().default(1000).describe('Pause before answering a failed login, times the failures so far on the connection (max 5×).'),
      maxFailuresPerConnection: z.number().int().min(1).default(3).describe('Failures on one connection before 421 and disconnect.'),
      maxFailuresPerIp: z.number().int().min(1).default(10).describe('Failures from one IP within `window` before every login from it is refused with 421.'),
      window: duration().default(15 * 60_000).describe('The sliding window for `maxFailuresPerIp`.'),
    })
    .prefault({})
    .describe('Slows down, then refuses, repeated failed logins.'),
});

export type RelayPolicyOptions = z.input<typeof options>;

const DUMMY_HASH = '$scrypt$N=32768,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

function notesOf(session: Session): { authFailures: number } {
  const n = session.notes as Record<string, { authFailures: number } | undefined>;
  return (n['relay-policy'] ??= { authFailures: 0 });
}

/**
 * Who may send to whom. Runs in `rcpt`:
 *   sender-specified routing (%, !, source routes, literals) → 550 5.7.1, for everyone
 *   hosted domain                 → accept (inbound, anyone)
 *   trusted network or AUTH user  → accept (outbound), unless the destination is blocked
 *   anything else                 → 550 5.7.1 Unable to relay
 * In `auth`: checks the users file (over TLS only), throttles failures. In `mail`: optionally ties
 * MAIL FROM to the user's domains. In `route`: a hosted domain goes to its configured next hop.
 */
export default definePlugin({
  name: 'relay-policy',
  options,
  setup(opts, ctx) {
    const domains = new Map<string, z.output<typeof domainSchema>>();
    for (const [name, d] of Object.entries(opts.domains)) {
      const n = normaliseDomain(name);
      if (!n) throw new Error(`domains: "${name}" is not a valid domain name`);
      domains.set(n, d);
    }
    // The core sends `RCPT TO:<postmaster>` to postmaster@ the first of these unless configured otherwise.
    ctx.container.registerInstance(Tokens.HostedDomains, [...domains.keys()]);
    const blocked = new Map(opts.blockedDestinations.map((d) => [d, true] as const));
    const trusted = opts.trustedNetworks;
    // The disk guard keeps a reserve of spool space for our trusted networks (authenticated users
    // have it already): anonymous mail filling the spool never locks out the operator's own servers.
    if (trusted.size && ctx.container.isRegistered(Tokens.DiskGuard, true)) ctx.container.resolve<DiskGuard>(Tokens.DiskGuard).trust((c) => trusted.contains(c.remoteAddress));
    let users: Map<string, UserEntry> | undefined;
    if (opts.users) users = readUsersFile(path.resolve(ctx.configDir, opts.users));
    const throttle = new AuthThrottle(ctx.container.resolve<SharedState>(Tokens.SharedState), opts.authThrottle.window, opts.authThrottle.maxFailuresPerIp);
    const t = opts.authThrottle;

    return {
      async auth(session, attempt) {
        if (!users) return undefined;
        if (!session.secure) return reject(538, '5.7.11', 'Encryption required for authentication');
        const ip = session.remoteAddress;
        if (await throttle.blocked(ip)) {
          ctx.log.warn({ client: ip, user: attempt.username }, 'login refused: too many recent failures from this address');
          return disconnect(421, '4.7.0', 'Too many failed logins from your address, try again later');
        }
        const entry = users.get(attempt.username.toLowerCase());
        const sameIdentity = !attempt.authzid || attempt.authzid.toLowerCase() === attempt.username.toLowerCase();
        const ok = (await verifyPassword(attempt.password, entry?.hash ?? DUMMY_HASH)) && !!entry && sameIdentity;
        if (ok) return accept();
        const notes = notesOf(session);
        notes.authFailures++;
        const ipFailures = await throttle.fail(ip);
        ctx.log.warn({ client: ip, user: attempt.username, connectionFailures: notes.authFailures, ipFailures, authzid: attempt.authzid }, 'login failed');
        await sleep(t.delay * Math.min(notes.authFailures, 5));
        if (notes.authFailures >= t.maxFailuresPerConnection || ipFailures >= t.maxFailuresPerIp) {
          return disconnect(421, '4.7.0', 'Too many failed authentication attempts');
        }
        if (!sameIdentity) return reject(535, '5.7.8', 'Authorization identity must be the login name');
        return reject(535, '5.7.8', 'Authentication credentials invalid');
      },
      mail(txn, from) {
        const user = txn.session.user;
        if (!opts.senderMustMatch || !user) return undefined;
        const own = users?.get(user.toLowerCase())?.domains.length ? users.get(user.toLowerCase())!.domains : user.includes('@') ? [normaliseDomain(user.slice(user.lastIndexOf('@') + 1))] : [];
        if (from.domain && own.includes(normaliseDomain(from.domain))) return undefined;
        return reject(553, '5.7.1', `Sender address <${from.address}> does not belong to user ${user}`);
      },
      rcpt(txn, to) {
        const session = txn.session;
        const outbound = trusted.contains(session.remoteAddress) || (opts.relayAuthenticated && !!session.user);
        const trick = routingTrick(to.address, to.local, to.domain, opts.allowAddressLiterals && outbound);
        if (trick) {
          ctx.log.warn({ rcpt: to.address, client: session.remoteAddress, reason: trick }, 'sender-specified routing refused');
          return reject(550, '5.7.1', 'Unable to relay');
        }
        if (findDomain(domains, to.domain)) return accept();
        if (outbound) {
          if (findDomain(blocked, to.domain)) return reject(550, '5.7.1', `Relaying to ${to.domain} is not allowed`);
          return accept();
        }
        return reject(550, '5.7.1', 'Unable to relay');
      },
      route(domain): NextHop | undefined {
        const d = findDomain(domains, domain);
        if (!d) return undefined;
        return { hosts: [d.nexthop], tls: d.tls, auth: d.auth, name: `static:${domain}` };
      },
    };
  },
});

/** For `portcullis passwd`: the line to put in a users file. */
export async function userLine(user: string, password: string, ownDomains: readonly string[] = []): Promise<string> {
  if (!user || /[:\s]/.test(user)) throw new Error('a user name may not be empty or contain ":" or spaces');
  return `${user}:${await hashPassword(password)}${ownDomains.length ? `:${ownDomains.join(',')}` : ''}`;
}
