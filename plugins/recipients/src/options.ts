import { duration, hostAndPort, networkList, z } from '@portcullis/core';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const listSource = z
  .strictObject({
    addresses: z.array(z.string().min(1)).default([]).describe('Addresses (`user@domain`) and catch-alls (`@domain`: every address of that domain) given inline.'),
    files: z.array(z.string().min(1)).default([]).describe('Files with one address or `@domain` per line (`#` starts a comment); relative to the config file. Re-read when they change (checked at most once a second) and on reload; if a changed file cannot be read, the last good copy stays in use.'),
  })
  .describe('A list of addresses: inline and in files.');

const ldapSource = z
  .strictObject({
    urls: z.array(z.string().regex(/^ldaps?:\/\/[^/\s]+\/?$/, 'expected ldap://host:port or ldaps://host:port')).min(1).describe('Directory servers, tried in order (failover): `ldap://host:389` or `ldaps://host:636`.'),
    base: z.string().min(1).describe('Search base, e.g. `dc=corp,dc=example`.'),
    filter: z
      .string()
      .min(1)
      .default('(|(mail=%s)(proxyAddresses=smtp:%s))')
      .describe('Filter template: `%s` the address, `%u` its local part, `%d` its domain; each value is escaped per RFC 4515 (`*`, `(`, `)`, `\\`, NUL) before it is put in. The default matches plain `mail` and Exchange\'s `proxyAddresses` (`smtp:` or `SMTP:`, matched case-insensitively by the directory).'),
    scope: z.enum(['base', 'one', 'sub']).default('sub').describe('Search scope.'),
    bindDn: z.string().min(1).optional().describe('DN to bind as (a read-only service account); anonymous when not set.'),
    passwordFile: z.string().min(1).optional().describe('File holding the bind password (first line; relative to the config file). Required with `bindDn`.'),
    startTls: z.boolean().default(false).describe('Upgrade `ldap://` connections with StartTLS before binding (the bind never goes in clear).'),
    caFile: z.string().min(1).optional().describe('PEM file of the CAs that sign the directory\'s certificate (ldaps:// and StartTLS); Node\'s CA store when not set.'),
    connections: z.number().int().min(1).max(16).default(2).describe('Connections kept open to the directory (the pool); lookups beyond that wait for a free one.'),
    timeout: duration().default(3000).describe('Longest a connect, bind or search may take before the next URL is tried.'),
  })
  .describe('An LDAP or Active Directory lookup (ldapts client).');

const calloutSource = z
  .strictObject({
    nexthop: hostAndPort()
      .optional()
      .describe('Server to ask (`host:port`); by default the route the relay would deliver the domain to (the `route` hook of relay-policy / mx-router).'),
    from: z.string().default('postmaster').describe('MAIL FROM of the probe: an address, or a local part to which the probed domain is appended (`postmaster` → `<postmaster@domain>`); `<>` for the null sender (some servers treat it differently, as Postfix warns).'),
    helo: z.string().optional().describe('EHLO name of the probe; the relay\'s `hostname` when not set.'),
    timeout: duration().default(10_000).describe('Longest the whole probe may take.'),
    catchAllCheck: z.boolean().default(true).describe('Before trusting a 250, probe a random address of the domain once: a next hop that accepts it accepts everything, and the domain is treated as catch-all (answers "known" without per-address probes until the cache expires).'),
  })
  .describe('Address verification: ask the next hop with MAIL FROM + RCPT TO, then RSET and QUIT; nothing is sent.');

const sourceSchema = z
  .strictObject({
    list: listSource.optional(),
    ldap: ldapSource.optional(),
    callout: calloutSource.optional(),
  })
  .refine((s) => [s.list, s.ldap, s.callout].filter(Boolean).length === 1, 'a source is exactly one of list, ldap or callout')
  .describe('A named source: one of `list`, `ldap` or `callout`.');

export const options = z
  .strictObject({
    sources: z.record(z.string().regex(/^[a-zA-Z0-9_-]+$/, 'a source name is letters, digits, - and _'), sourceSchema).describe('Named sources (the same LDAP pool may serve many domains).'),
    domains: z
      .record(z.string().regex(/^(\*\.)?[^\s@*]+$/, 'expected a domain or *.domain'), z.array(z.string().min(1)).min(1))
      .describe('Hosted domain (or `*.domain` for its subdomains) → the names of its sources, asked in order. The first source that knows the address decides "known"; an address no source knows is unknown. Domains not listed are not checked.'),
    subaddressDelimiter: z.string().max(4).default('+').describe('Characters that start a sub-address (`user+tag@`): when the full address is unknown, `user@` is tried. Empty turns it off.'),
    onError: z.enum(['tempfail', 'accept']).default('tempfail').describe('When a source cannot answer and no last-known-good answer exists: `tempfail` (450 4.1.1 / 451 4.3.0, the sender retries) or `accept` (250: only if the server behind can take unknown users without bouncing to forged senders).'),
    cache: z
      .strictObject({
        positive: duration().default(7 * DAY).describe('How long a "known" answer is used without asking again.'),
        negative: duration().refine((ms) => ms <= HOUR, 'at most 1h: a new user must not wait longer').default(HOUR).describe('How long an "unknown" answer is used without asking again (at most 1h).'),
        lastKnownGood: duration().default(30 * DAY).describe('How long the last "known" answer for an address is kept to answer while its source is down.'),
      })
      .prefault({})
      .describe('Answers of ldap and callout sources, kept on the relay\'s shared state (Redis when configured: every node shares them). Lists are not cached: they are in memory.'),
    harvest: z
      .strictObject({
        freeUnknown: z.number().int().min(0).default(3).describe('Unknown recipients a session may give before each further one is answered after a delay.'),
        delay: duration().default(1000).describe('Delay added per unknown recipient beyond `freeUnknown` (1 s, 2 s, 3 s, ...), up to `maxDelay`. Known recipients are never delayed.'),
        maxDelay: duration().default(10_000).describe('Longest single delay.'),
        maxUnknownPerSession: z.number().int().min(1).default(10).describe('At this many unknown recipients in one session: `421 4.7.0` and the connection is closed.'),
        maxUnknownPerClient: z.number().int().min(1).default(50).describe('Unknown recipients from one client address across sessions within `window` (shared state); beyond it every unknown recipient gets `421 4.7.0` and a close.'),
        window: duration().default(HOUR).describe('Window of `maxUnknownPerClient`.'),
      })
      .prefault({})
      .describe('Directory-harvest defence.'),
    outbound: z
      .strictObject({
        trustedNetworks: networkList().describe('Clients whose mail is outbound (as relay-policy\'s `trustedNetworks`): their recipients are not checked unless `check` is set.'),
        check: z.boolean().default(false).describe('Check recipients in hosted domains for trusted and authenticated clients too.'),
      })
      .prefault({})
      .describe('Mail from trusted networks and authenticated users.'),
  })
  .superRefine((o, ctx) => {
    for (const [domain, names] of Object.entries(o.domains)) {
      names.forEach((n, i) => {
        if (!o.sources[n]) ctx.addIssue({ code: 'custom', path: ['domains', domain, i], message: `no source named "${n}" in sources (${Object.keys(o.sources).join(', ') || 'none defined'})` });
      });
    }
    for (const [name, s] of Object.entries(o.sources)) {
      if (s.ldap?.bindDn && !s.ldap.passwordFile) ctx.addIssue({ code: 'custom', path: ['sources', name, 'ldap', 'passwordFile'], message: 'bindDn needs a passwordFile' });
    }
  });

export type RecipientsOptions = z.input<typeof options>;
export type ParsedOptions = z.output<typeof options>;
export type ListSourceOptions = z.output<typeof listSource>;
export type LdapSourceOptions = z.output<typeof ldapSource>;
export type CalloutSourceOptions = z.output<typeof calloutSource>;
