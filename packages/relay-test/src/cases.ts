/**
 * The relay test cases. Each one is a fresh SMTP session: EHLO `helo`, MAIL FROM:<`mailFrom`>,
 * RCPT TO:<`rcptTo`>. Every case except the control is a relay attempt that a closed server must
 * refuse; the control is a plain recipient in the hosted domain, which the server should accept
 * (it shows that the refusals come from the relay policy, not from a blanket refusal of the client).
 */

export type CaseKind = 'relay' | 'control';

export interface RelayCase {
  /** Short stable id, e.g. `percent-hack`. */
  readonly id: string;
  /** One-line description shown in the table. */
  readonly title: string;
  /** What the trick exploits (README / `--list`). */
  readonly why: string;
  readonly kind: CaseKind;
  /** EHLO argument. */
  readonly helo: string;
  /** MAIL FROM path, without the angle brackets ('' is the null sender). */
  readonly mailFrom: string;
  /** RCPT TO path, without the angle brackets; sent exactly as written. */
  readonly rcptTo: string;
}

export interface CaseParams {
  /** The hosted domain: the decoy the server legitimately accepts mail for. */
  readonly domain: string;
  /** The outside domain that must not be relayed to. */
  readonly thirdParty: string;
  /** The server's IP address (for `EHLO [ip]` and the address-literal cases). */
  readonly serverIp: string;
  /** Envelope sender of the ordinary cases. Default `tester@<thirdParty>`. */
  readonly from?: string;
  /** EHLO name of the ordinary cases. Default `client.<thirdParty>`. */
  readonly helo?: string;
  /** Local part of the victim mailbox. Default `relaytest`. */
  readonly user?: string;
}

/** Default outside domain: `.invalid` is reserved (RFC 2606/6761) and can never be delivered to. */
export const DEFAULT_THIRD_PARTY = 'relay-test.invalid';

/** `[127.0.0.1]` or `[IPv6:::1]`. */
export function addressLiteral(ip: string): string {
  return ip.includes(':') ? `[IPv6:${ip}]` : `[${ip}]`;
}

function upperFirstLabel(domain: string): string {
  // Mixed case that still names the same domain: "Relay-TEST.Invalid".
  return domain
    .split('.')
    .map((l, i) => (i % 2 === 0 ? l.toUpperCase() : l.charAt(0).toUpperCase() + l.slice(1)))
    .join('.');
}

/** The case list for one server and hosted domain. */
export function buildCases(p: CaseParams): RelayCase[] {
  const D = p.domain.replace(/\.$/, '');
  const T = p.thirdParty.replace(/\.$/, '');
  const u = p.user ?? 'relaytest';
  const from = p.from ?? `tester@${T}`;
  const helo = p.helo ?? `client.${T}`;
  const lit = addressLiteral(p.serverIp);
  const ipForBare = p.serverIp.includes(':') ? '127.0.0.1' : p.serverIp;
  const c = (id: string, title: string, why: string, rcptTo: string, over: Partial<RelayCase> = {}): RelayCase => ({
    id,
    title,
    why,
    kind: 'relay',
    helo,
    mailFrom: from,
    rcptTo,
    ...over,
  });
  return [
    c('control', 'control: hosted domain', 'a plain recipient in the hosted domain; should be accepted (2xx), which shows the other refusals are relay policy', `postmaster@${D}`, { kind: 'control' }),
    c('plain', 'plain relay to third party', 'the basic open relay: an outside sender to an outside recipient', `${u}@${T}`),
    c('percent', '% hack', 'user%third@hosted: servers that honour the % hack forward to the third party', `${u}%${T}@${D}`),
    c('percent-literal', '% hack via address literal', 'user%third@[server IP]: the % hack behind the server\'s own address literal', `${u}%${T}@${lit}`),
    c('bang-hosted', '! bang path at hosted', 'third!user@hosted: UUCP bang path routed through the hosted domain', `${T}!${u}@${D}`),
    c('bang-bare', '! bang path, no domain', 'third!user: an unqualified bang path; the server may resolve it as local, then route it', `${T}!${u}`),
    c('quoted-at', 'quoted local part with @', '"user@third"@hosted: the quoted @ becomes a route once unquoted', `"${u}@${T}"@${D}`),
    c('quoted-percent', 'quoted local part with %', '"user%third"@hosted', `"${u}%${T}"@${D}`),
    c('quoted-bang', 'quoted local part with !', '"third!user"@hosted', `"${T}!${u}"@${D}`),
    c('quoted-bare', 'quoted address, no domain', '"user@third" with no domain: looks local, is a route', `"${u}@${T}"`),
    c('double-at', 'two @ signs', 'user@third@hosted: a parser that splits at the last @ sees the hosted domain', `${u}@${T}@${D}`),
    c('source-route', 'source route via hosted', '<@hosted:user@third>: RFC 821 source route through the hosted domain', `@${D}:${u}@${T}`),
    c('literal', 'address literal (server IP)', 'user@[server IP]: the server\'s own address literal as the domain', `${u}@${lit}`),
    ...(p.serverIp === '127.0.0.1' ? [] : [c('literal-loopback', 'address literal 127.0.0.1', 'user@[127.0.0.1]: loopback literal, often treated as local', `${u}@[127.0.0.1]`)]),
    c('literal-ipv6', 'IPv6 address literal ::1', 'user@[IPv6:::1]: the IPv6 loopback literal', `${u}@[IPv6:::1]`),
    c('bare-ip', 'bare IP as domain', 'user@<ip> without brackets', `${u}@${ipForBare}`),
    c('hosted-prefix', 'hosted domain as prefix', 'user@hosted.third: a suffix/substring match on the hosted domain accepts it', `${u}@${D}.${T}`),
    c('hosted-suffix', 'hosted domain as suffix', 'user@evilhosted: an "ends with hosted" match without the dot accepts it', `${u}@evil${D}`),
    c('trailing-dot', 'trailing dot on third party', 'user@third.: the root-anchored form of the outside domain', `${u}@${T}.`),
    c('percent-trailing-dot', '% hack, hosted with trailing dot', 'user%third@hosted.', `${u}%${T}@${D}.`),
    c('case-third', 'mixed-case third party', 'user@THIRD: case variant of the outside domain', `${u}@${upperFirstLabel(T)}`),
    c('percent-case', '% hack, mixed-case hosted', 'user%third@HOSTED', `${u}%${T}@${upperFirstLabel(D)}`),
    c('from-hosted', 'MAIL FROM spoofs hosted domain', 'MAIL FROM:<postmaster@hosted>, then an outside recipient: relay decided by the sender domain', `${u}@${T}`, { mailFrom: `postmaster@${D}` }),
    c('from-hosted-user', 'MAIL FROM spoofs hosted user', 'MAIL FROM:<user@hosted> (any user of the hosted domain)', `${u}@${T}`, { mailFrom: `${u}@${D}` }),
    c('helo-hosted', 'EHLO hosted domain', 'EHLO <hosted>: relay decided by the HELO name', `${u}@${T}`, { helo: D }),
    c('helo-ip', 'EHLO server IP literal', 'EHLO [server IP]: the client claims to be the server itself', `${u}@${T}`, { helo: lit }),
    c('helo-localhost', 'EHLO localhost', 'EHLO localhost: the client claims to be local', `${u}@${T}`, { helo: 'localhost' }),
    c('null-sender', 'null sender', 'MAIL FROM:<> (a bounce) to an outside recipient', `${u}@${T}`, { mailFrom: '' }),
    c('postmaster-third', 'postmaster at third party', 'postmaster@third: servers that exempt postmaster from checks', `postmaster@${T}`),
    c('abuse-third', 'abuse at third party', 'abuse@third: servers that exempt abuse from checks', `abuse@${T}`),
  ];
}
