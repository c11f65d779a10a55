import dns from 'node:dns/promises';
import net from 'node:net';
import { buildCases, DEFAULT_THIRD_PARTY, type RelayCase } from './cases.js';
import { firstLine, SmtpClient, SmtpError, type SmtpReply } from './smtp-client.js';

export type Verdict = 'PASS' | 'FAIL' | 'WARN' | 'ERROR';

/** Where a session stopped: the reply at that stage decided the verdict. */
export type Stage = 'connect' | 'greeting' | 'ehlo' | 'starttls' | 'mail' | 'rcpt' | 'data';

export interface CaseResult {
  /** 1-based row number. */
  readonly n: number;
  readonly id: string;
  readonly title: string;
  readonly kind: RelayCase['kind'];
  readonly helo: string;
  readonly mailFrom: string;
  readonly rcptTo: string;
  readonly stage: Stage;
  /** Code of the deciding reply (0 when there was none: timeout, connection error). */
  readonly code: number;
  /** First line of the deciding reply, trimmed; or the error. */
  readonly reply: string;
  readonly verdict: Verdict;
  /** Why this verdict, in words. */
  readonly note: string;
  /** Reply to RCPT TO, when the session got that far. */
  readonly rcptReply?: string;
  /** Reply at the end of DATA (only with `send`). */
  readonly dataReply?: string;
}

export interface RelayTestOptions {
  readonly host: string;
  /** Default 25. */
  readonly port?: number;
  /** The hosted domain (the decoy). */
  readonly domain: string;
  /** The outside domain. Default `relay-test.invalid`. */
  readonly thirdParty?: string;
  /** Source address to bind, to test as a particular (untrusted) client. */
  readonly localAddress?: string;
  /** Envelope sender of the ordinary cases. Default `tester@<thirdParty>`. */
  readonly from?: string;
  /** EHLO name of the ordinary cases. Default `client.<thirdParty>`. */
  readonly helo?: string;
  /** Server IP for `EHLO [ip]` and the literal cases. Default: the host's address. */
  readonly serverIp?: string;
  /** Per connect / per reply timeout in ms. Default 20000. */
  readonly timeoutMs?: number;
  /** After an accepted RCPT, also send DATA (a tiny test message) and judge by its reply. */
  readonly send?: boolean;
  /** Issue STARTTLS after EHLO (required to be offered and to succeed). */
  readonly starttls?: boolean;
  /** Include the control case (default true). */
  readonly control?: boolean;
  /** Only these case ids (default all). */
  readonly only?: readonly string[];
  /** Called after each case (progress). */
  readonly onResult?: (r: CaseResult) => void;
}

export interface RelayTestReport {
  readonly target: string;
  readonly domain: string;
  readonly thirdParty: string;
  readonly localAddress?: string;
  readonly send: boolean;
  readonly starttls: boolean;
  readonly startedAt: string;
  readonly results: readonly CaseResult[];
  readonly summary: { readonly pass: number; readonly fail: number; readonly warn: number; readonly error: number };
  /** 0: nothing relayed; 1: something relayed (a FAIL); 2: a case could not be run (ERROR). */
  readonly exitCode: 0 | 1 | 2;
}

/** Raised when the server cannot be reached at all (nothing was tested). */
export class RelayTestConnectError extends Error {
  override name = 'RelayTestConnectError';
}

/** `host:port`, `[v6]:port`, `host` (port 25). */
export function parseTarget(target: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(target) ?? /^([^:[\]]+)(?::(\d+))?$/.exec(target);
  if (!m) throw new Error(`expected HOST:PORT (e.g. 127.0.0.1:25 or [::1]:25), got ${JSON.stringify(target)}`);
  const port = m[2] === undefined ? 25 : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`port out of range in ${JSON.stringify(target)}`);
  return { host: m[1]!, port };
}

function isAccepted(r: SmtpReply): boolean {
  return r.code >= 200 && r.code < 300;
}

const TEMP = (r: SmtpReply) => r.code >= 400 && r.code < 500;

/** The message sent with `send`: tiny, clearly labelled. */
function testMessage(c: RelayCase, domain: string): string {
  const date = new Date().toUTCString().replace('GMT', '+0000');
  const id = `${Date.now().toString(36)}.${Math.random().toString(36).slice(2)}@relay-test.invalid`;
  return [
    `From: <${c.mailFrom || 'mailer-daemon@relay-test.invalid'}>`,
    `To: <${c.rcptTo}>`,
    `Subject: open relay test (${c.id}) via ${domain}`,
    `Date: ${date}`,
    `Message-ID: <${id}>`,
    '',
    `This message was sent by an open-relay self-test (portcullis relay-test, case ${c.id}).`,
    'If you received it, the server that accepted it is an open relay.',
    '',
  ].join('\r\n');
}

/** How one session ended: the stage, and the deciding reply or the error. */
export interface Outcome {
  stage: Stage;
  reply?: SmtpReply;
  error?: SmtpError;
  rcptReply?: SmtpReply;
  dataReply?: SmtpReply;
}

async function session(c: RelayCase, o: Required<Pick<RelayTestOptions, 'host' | 'port' | 'timeoutMs' | 'send' | 'starttls' | 'domain'>> & { localAddress?: string }): Promise<Outcome> {
  let client: SmtpClient;
  try {
    client = await SmtpClient.connect({ host: o.host, port: o.port, localAddress: o.localAddress, timeoutMs: o.timeoutMs });
  } catch (err) {
    return { stage: 'connect', error: err as SmtpError };
  }
  let stage: Stage = 'greeting';
  try {
    const greeting = await client.read();
    if (!isAccepted(greeting)) return { stage, reply: greeting };
    stage = 'ehlo';
    let ehlo = await client.command(`EHLO ${c.helo}`);
    if (ehlo.code >= 500 && !o.starttls) ehlo = await client.command(`HELO ${c.helo}`);
    if (!isAccepted(ehlo)) return { stage, reply: ehlo };
    if (o.starttls) {
      stage = 'starttls';
      const offered = ehlo.lines.some((l) => /^\d{3}[- ]STARTTLS\b/i.test(l));
      if (!offered) return { stage, error: new SmtpError('STARTTLS not offered in the EHLO reply', 'protocol') };
      const st = await client.command('STARTTLS');
      if (st.code !== 220) return { stage, reply: st };
      await client.startTls(o.host);
      stage = 'ehlo';
      ehlo = await client.command(`EHLO ${c.helo}`);
      if (!isAccepted(ehlo)) return { stage, reply: ehlo };
    }
    stage = 'mail';
    const mail = await client.command(`MAIL FROM:<${c.mailFrom}>`);
    if (!isAccepted(mail)) return { stage, reply: mail };
    stage = 'rcpt';
    const rcpt = await client.command(`RCPT TO:<${c.rcptTo}>`);
    // The control is never sent: a real message to the hosted domain's postmaster proves nothing more.
    if (!isAccepted(rcpt) || !o.send || c.kind === 'control') {
      await client.command('RSET').catch(() => undefined);
      return { stage, reply: rcpt, rcptReply: rcpt };
    }
    stage = 'data';
    const data = await client.command('DATA');
    if (data.code !== 354) return { stage, reply: data, rcptReply: rcpt };
    const body = testMessage(c, o.domain)
      .split('\r\n')
      .map((l) => (l.startsWith('.') ? '.' + l : l))
      .join('\r\n');
    client.writeRaw(body + '.\r\n');
    const end = await client.read();
    return { stage, reply: end, rcptReply: rcpt, dataReply: end };
  } catch (err) {
    if (err instanceof SmtpError) return { stage, error: err };
    throw err;
  } finally {
    await client.quit();
  }
}

/** Turns one session's outcome into a verdict (the rules are in the README). */
export function judge(c: RelayCase, out: Outcome, send: boolean): { verdict: Verdict; note: string } {
  if (out.error) return { verdict: 'ERROR', note: `${out.stage}: ${out.error.message}` };
  const r = out.reply!;
  if (c.kind === 'control') {
    if (out.stage === 'rcpt' && isAccepted(r)) return { verdict: 'PASS', note: 'hosted recipient accepted, as it should be' };
    return { verdict: 'WARN', note: `control refused at ${out.stage.toUpperCase()}: the server may refuse this client altogether, so PASS rows prove less` };
  }
  switch (out.stage) {
    case 'greeting':
    case 'ehlo':
    case 'starttls':
    case 'mail':
      return { verdict: 'WARN', note: `refused at ${out.stage.toUpperCase()} (${r.code}): the recipient was never tried` };
    case 'rcpt':
      if (isAccepted(r)) return { verdict: 'FAIL', note: send ? 'recipient accepted' : 'accepted at RCPT: relayed' };
      if (TEMP(r)) return { verdict: 'WARN', note: 'tempfail at RCPT: not relayed now, may be on retry' };
      return { verdict: 'PASS', note: 'rejected at RCPT' };
    case 'data':
      if (isAccepted(r)) return { verdict: 'FAIL', note: 'accepted at RCPT and at end of DATA: relayed' };
      return { verdict: 'WARN', note: `accepted at RCPT but refused at DATA (${r.code}): not relayed, yet the trick address got through RCPT` };
    default:
      return { verdict: 'ERROR', note: `unexpected stage ${out.stage}` };
  }
}

async function resolveIp(host: string): Promise<string> {
  if (net.isIP(host)) return host;
  try {
    return (await dns.lookup(host)).address;
  } catch {
    throw new RelayTestConnectError(`cannot resolve ${host}`);
  }
}

/** Runs every case against one server, one fresh connection per case, one after another. */
export async function runRelayTest(opts: RelayTestOptions): Promise<RelayTestReport> {
  const port = opts.port ?? 25;
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const thirdParty = opts.thirdParty ?? DEFAULT_THIRD_PARTY;
  if (!opts.domain) throw new Error('a hosted domain is required (--domain)');
  const serverIp = opts.serverIp ?? (await resolveIp(opts.host));
  let cases = buildCases({ domain: opts.domain, thirdParty, serverIp, from: opts.from, helo: opts.helo });
  if (opts.control === false) cases = cases.filter((c) => c.kind !== 'control');
  if (opts.only?.length) {
    const unknown = opts.only.filter((id) => !cases.some((c) => c.id === id));
    if (unknown.length) throw new Error(`unknown case id(s): ${unknown.join(', ')}`);
    cases = cases.filter((c) => opts.only!.includes(c.id));
  }
  const bad = cases.find((c) => /[\r\n]/.test(c.helo + c.mailFrom + c.rcptTo));
  if (bad) throw new Error(`case ${bad.id}: CR or LF in an SMTP argument (check --domain, --from, --helo)`);
  const startedAt = new Date().toISOString();
  const so = { host: opts.host, port, timeoutMs, send: !!opts.send, starttls: !!opts.starttls, domain: opts.domain, localAddress: opts.localAddress };
  const results: CaseResult[] = [];
  for (const [i, c] of cases.entries()) {
    const out = await session(c, so);
    // Nothing answers at all: stop here instead of timing out once per case.
    if (out.stage === 'connect' && i === 0) throw new RelayTestConnectError(out.error!.message);
    const { verdict, note } = judge(c, out, so.send);
    const r: CaseResult = {
      n: i + 1,
      id: c.id,
      title: c.title,
      kind: c.kind,
      helo: c.helo,
      mailFrom: c.mailFrom,
      rcptTo: c.rcptTo,
      stage: out.stage,
      code: out.reply?.code ?? 0,
      reply: out.reply ? firstLine(out.reply) : out.error!.message,
      verdict,
      note,
      ...(out.rcptReply ? { rcptReply: firstLine(out.rcptReply) } : {}),
      ...(out.dataReply ? { dataReply: firstLine(out.dataReply) } : {}),
    };
    results.push(r);
    opts.onResult?.(r);
  }
  const count = (v: Verdict) => results.filter((r) => r.verdict === v).length;
  const summary = { pass: count('PASS'), fail: count('FAIL'), warn: count('WARN'), error: count('ERROR') };
  return {
    target: `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`,
    domain: opts.domain,
    thirdParty,
    ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    send: so.send,
    starttls: so.starttls,
    startedAt,
    results,
    summary,
    exitCode: summary.fail ? 1 : summary.error ? 2 : 0,
  };
}
