import type { Readable } from 'node:stream';
import { domainToASCII } from 'node:url';
import { arc, dkimVerify, dmarc, spf, type ARCResult, type DKIMVerifyResult, type DMARCResult, type SPFResult } from 'mailauth';
import { reject, tempfail, type Transaction, type Verdict } from '@portcullis/core';
import type { MailauthResolver } from './dns.js';
import type { VerifyOptions } from './options.js';
import { fold } from './auth-results.js';

/** SPF results of one transaction, from the `mail` hook, for DMARC and the header later. */
export interface SpfOutcome {
  readonly mailFrom: SPFResult;
  /** The HELO identity's own check (RFC 7208 section 2.3), when the HELO name is a domain. */
  readonly helo?: SPFResult;
}

export interface InboundContext {
  readonly authservId: string;
  readonly resolver: MailauthResolver;
  readonly opts: VerifyOptions;
}

const TEMP = new Set(['temperror', 'temperr']);

/** Replies, worded once. */
export const AuthReplies = {
  dnsTempfail: (what: string) => tempfail(451, '4.4.3', `Temporary DNS failure checking ${what}, try again later`),
  spfReject: (domain: string) => reject(550, '5.7.23', `SPF check failed: ${domain} does not designate this host as a permitted sender`),
  dmarcReject: (domain: string) => reject(550, '5.7.1', `Message rejected: DMARC policy of ${domain} is reject and this message failed it`),
} as const;

/**
 * SPF for the MAIL FROM identity (or postmaster@HELO for the null sender, as mailauth does), plus
 * the HELO identity. Runs in the `mail` hook so an SPF `-all` rejection costs no DATA transfer.
 */
export async function checkSpf(ctx: InboundContext, ip: string, helo: string | undefined, sender: string): Promise<SpfOutcome> {
  const heloName = helo && !/^\[|^[\d.]+$|:/.test(helo) ? helo : undefined;
  const mailFrom = await spf({ sender: sender || undefined, ip, helo: helo ?? ip, mta: ctx.authservId, resolver: ctx.resolver as never });
  let heloResult: SPFResult | undefined;
  if (heloName && sender) heloResult = await spf({ sender: `postmaster@${heloName}`, ip, helo: heloName, mta: ctx.authservId, resolver: ctx.resolver as never });
  return { mailFrom, helo: heloResult };
}

/** What `spf` at MAIL FROM decides, under the operator's policy. */
export function spfVerdict(ctx: InboundContext, outcome: SpfOutcome, senderDomain: string): Verdict | undefined {
  const r = outcome.mailFrom.status.result;
  if (TEMP.has(r) && ctx.opts.tempError === 'tempfail') return AuthReplies.dnsTempfail(`SPF for ${outcome.mailFrom.domain || senderDomain}`);
  if (r === 'fail' && ctx.opts.spfFail === 'reject' && !isException(ctx.opts, senderDomain)) return AuthReplies.spfReject(outcome.mailFrom.domain || senderDomain);
  return undefined;
}

export interface InboundResult {
  readonly verdict?: Verdict;
  /** The Authentication-Results field value (after the name). */
  readonly authResults: string;
  /** Set when policy says tag: why. */
  readonly tag?: string;
  readonly dkim: DKIMVerifyResult;
  readonly dmarc?: DMARCResult;
  readonly arc?: ARCResult;
}

/**
 * DKIM (every signature), ARC and DMARC over the streamed message, then the policy decision and the
 * Authentication-Results text. The message is read once; mailauth hashes the body as it passes.
 */
export async function checkMessage(ctx: InboundContext, stream: Readable, txn: Transaction, spfOutcome: SpfOutcome | undefined): Promise<InboundResult> {
  const o = ctx.opts;
  const dkim = await dkimVerify(stream, { resolver: ctx.resolver as never, sender: txn.mailFrom.address || undefined, minBitLength: o.minKeyBits });
  const arcResult = dkim.arc ? await arc(dkim.arc as never, { resolver: ctx.resolver as never, minBitLength: o.minKeyBits }) : undefined;
  const spfPass = spfOutcome?.mailFrom.status.result === 'pass' ? [spfOutcome.mailFrom.domain] : [];
  let dmarcResult: DMARCResult | undefined;
  const fromDomain = (dkim.headerFrom?.[0] ?? '').split('@').pop()!.toLowerCase().replace(/\.$/, '');
  // A From: domain that is no DNS name (`From: <<<>>>`) has no DMARC record to find; asking would
  // only send mailauth looking up junk such as `_dmarc.null`, and any failure there a 451 forever.
  // (An internationalised domain counts by its A-label.)
  const fromUsable = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(domainToASCII(fromDomain));
  if (dkim.headerFrom?.length && fromUsable) {
    const dkimPass = (dkim.results ?? []).filter((r) => r.status.result === 'pass');
    dmarcResult =
      (await dmarc({
        headerFrom: dkim.headerFrom,
        spfDomains: spfPass,
        dkimDomains: dkimPass.map((r) => ({ id: r.id, domain: r.signingDomain, aligned: r.status.aligned, underSized: r.status.underSized })),
        arcResult,
        resolver: ctx.resolver as never,
      })) || undefined;
    if (dmarcResult) dmarcResult = enforceStrictAlignment(dmarcResult, fromDomain, spfPass, dkimPass.map((r) => r.signingDomain));
  }

  const rows: string[] = [];
  if (spfOutcome) {
    rows.push(spfOutcome.mailFrom.info);
    // The HELO identity's row names only the HELO (mailauth words every SPF row as a MAIL FROM one).
    if (spfOutcome.helo) rows.push(spfOutcome.helo.info.replace(/\s*smtp\.(mailfrom|helo)=\S+/g, '') + ` smtp.helo=${spfOutcome.helo.domain}`);
  }
  if (dkim.results?.length) for (const r of dkim.results) rows.push(dkimRow(r.info));
  else rows.push('dkim=none');
  if (arcResult?.info) rows.push(arcResult.info);
  rows.push(dmarcResult?.info ?? (dkim.headerFrom?.length && !fromUsable ? 'dmarc=permerror (From: domain is not a valid domain name)' : 'dmarc=none'));
  const authResults = `${ctx.authservId};` + rows.map((r) => `\r\n ${fold(r)}`).join(';');

  const excepted = isException(o, fromDomain) || isException(o, txn.mailFrom.domain);
  const result = { authResults, dkim, dmarc: dmarcResult, arc: arcResult };

  const dmarcState = dmarcResult?.status.result;
  const dkimTemp = (dkim.results ?? []).some((r) => TEMP.has(r.status.result));
  if (o.tempError === 'tempfail' && (TEMP.has(dmarcState ?? '') || (dkimTemp && dmarcState !== 'pass' && dmarcState !== 'none'))) {
    return { ...result, verdict: AuthReplies.dnsTempfail(`DKIM/DMARC for ${fromDomain || 'the sender'}`) };
  }
  if (dmarcState === 'fail') {
    const policy = dmarcResult!.policy;
    if (policy === 'reject' && o.dmarcReject === 'reject' && !excepted) return { ...result, verdict: AuthReplies.dmarcReject(fromDomain) };
    if ((policy === 'reject' && o.dmarcReject !== 'none') || (policy === 'quarantine' && o.dmarcQuarantine === 'tag')) {
      return { ...result, tag: `dmarc=fail policy=${policy} header.from=${fromDomain}` };
    }
  }
  if (spfOutcome?.mailFrom.status.result === 'fail' && o.spfFail !== 'none') {
    return { ...result, tag: `spf=fail smtp.mailfrom=${spfOutcome.mailFrom.domain}` };
  }
  return result;
}

/**
 * A body hash that does not match is a failed verification (RFC 6376 section 6.1.3: PERMFAIL), so
 * RFC 8601 calls it `fail`; mailauth 4 reports `neutral`. Downstream filters key on `fail`.
 */
function dkimRow(info: string): string {
  return info.replace(/^dkim=neutral(\s*\(body hash did not verify\))/, 'dkim=fail$1');
}

/**
 * Applies DMARC's strict modes (adkim=s, aspf=s: the domain must equal the From: domain, RFC 7489
 * section 3.1). mailauth 4.13's alignment helper receives `{ strict }` where it expects a boolean
 * and then falls through to the organisational-domain match, so strict records are judged as
 * relaxed; this re-judges a `pass` under the strict rule the record asked for.
 */
export function enforceStrictAlignment(r: DMARCResult, fromDomain: string, spfDomains: readonly string[], dkimDomains: readonly string[]): DMARCResult {
  if (r.status.result !== 'pass' || !r.alignment) return r;
  const same = (d: string) => d.toLowerCase().replace(/\.$/, '') === fromDomain;
  const spfOk = r.alignment.spf.strict ? spfDomains.some(same) : !!r.alignment.spf.result;
  const dkimOk = r.alignment.dkim.strict ? dkimDomains.some(same) : !!r.alignment.dkim.result;
  if (spfOk || dkimOk) return r;
  return {
    ...r,
    status: { ...r.status, result: 'fail' },
    alignment: { spf: { ...r.alignment.spf, result: false }, dkim: { ...r.alignment.dkim, result: false } },
    info: r.info.replace(/^dmarc=pass/, 'dmarc=fail'),
  };
}

/** Whether `domain` or one of its parents is listed in `exceptions`. */
export function isException(o: VerifyOptions, domain: string): boolean {
  const d = domain.toLowerCase();
  return !!d && o.exceptions.some((e) => d === e || d.endsWith(`.${e}`));
}
