import { randomBytes } from 'node:crypto';
import type { Logger } from './source.js';
import type { AnswerCache } from './answer-cache.js';
import type { CalloutSourceOptions } from './options.js';
import type { RecipientAddress } from './recipient-address.js';
import { smtpProbe } from './smtp-probe.js';
import { SourceUnavailable, type LookupContext, type RecipientSource, type SourceAnswer } from './source.js';

/**
 * Address verification (Postfix's reject_unverified_recipient): asks the domain's next hop whether
 * it would take RCPT TO for the address. A 2xx is known, a 5xx unknown, anything else (4xx, no
 * connection, timeout) means the source cannot answer. The first probe of a domain also asks for a
 * random address: a next hop that takes it takes everything (a catch-all), and the domain is then
 * answered "known" without probes until that flag expires.
 */
export class CalloutSource implements RecipientSource {
  readonly type = 'callout' as const;
  readonly cached = true;
  /** Known for every address of a domain whose catch-all flag is set (see AnswerCache.catchAllNow). */
  get catchAllDomains(): boolean {
    return this.opts.catchAllCheck;
  }
  /** Ends probes under way when the plugin closes (shutdown, reload). */
  private readonly aborter = new AbortController();

  constructor(readonly name: string, private readonly opts: CalloutSourceOptions, private readonly helo: string, private readonly cache: AnswerCache, private readonly log: Logger) {}

  private sender(domain: string): string {
    const f = this.opts.from.trim();
    if (f === '<>' || f === '') return '';
    return f.includes('@') ? f : `${f}@${domain}`;
  }

  async lookup(addr: RecipientAddress, ctx: LookupContext): Promise<SourceAnswer> {
    let catchAll = this.opts.catchAllCheck ? await this.cache.catchAll(addr.domain) : false;
    if (catchAll) return { result: 'known', detail: `${addr.domain} is a catch-all (its next hop accepted a random address)`, catchAll: true };
    const hop = this.opts.nexthop ?? (await ctx.route?.(addr.domain));
    if (!hop) throw new SourceUnavailable(this.name, `no route to ${addr.domain} to verify the address with`);
    const where = `${hop.host}:${hop.port}`;
    const probeRandom = catchAll === undefined;
    const random = `portcullis-probe-${randomBytes(6).toString('hex')}@${addr.domain}`;
    const recipients = probeRandom ? [random, addr.address] : [addr.address];
    const result = await smtpProbe({ host: hop.host, port: hop.port, helo: this.helo, from: this.sender(addr.domain), recipients, timeoutMs: this.opts.timeout, stopIfFirstAccepted: probeRandom, signal: this.aborter.signal });
    if (result.failed && !(probeRandom && result.rcpt[0] && result.rcpt[0].code >= 200 && result.rcpt[0].code < 300) && result.rcpt.length < recipients.length) throw new SourceUnavailable(this.name, `callout to ${where} failed: ${result.failed}`);
    if (probeRandom) {
      const r = result.rcpt[0]!;
      if (r.code >= 200 && r.code < 300) {
        const detail = `${addr.domain} is a catch-all at ${where} (a random address was accepted)`;
        await this.cache.setCatchAll(addr.domain, true, { result: 'known', source: this.name, detail });
        this.log.info({ source: this.name, domain: addr.domain, nexthop: where }, 'callout: the next hop accepts a random address; domain treated as catch-all');
        return { result: 'known', detail, catchAll: true };
      }
      if (r.code >= 500) await this.cache.setCatchAll(addr.domain, false);
      catchAll = false;
    }
    const reply = result.rcpt[result.rcpt.length - 1]!;
    const text = `${reply.code} ${reply.text} from ${where}`;
    if (reply.code >= 200 && reply.code < 300) return { result: 'known', detail: text };
    if (reply.code >= 500 && reply.code < 600) return { result: 'unknown', detail: text };
    throw new SourceUnavailable(this.name, `callout to ${where}: ${text}`);
  }

  async close(): Promise<void> {
    this.aborter.abort();
  }
}
