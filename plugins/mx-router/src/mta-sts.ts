import https from 'node:https';
import { isIP } from 'node:net';
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { PluginContext } from '@portcullis/core';
import { parsePolicy, resolvePolicy } from 'mailauth/lib/mta-sts.js';
import type { MTASTSPolicy } from 'mailauth';

type Logger = PluginContext['log'];

/** A policy as cached: what was fetched, under which DNS id, until when it may be used. */
export interface CachedPolicy {
  readonly id: string;
  readonly mode: 'enforce' | 'testing' | 'none';
  readonly mx: readonly string[];
  readonly maxAge: number;
  readonly fetchedAt: number;
  readonly expiresAt: number;
}

/** The resolver calls the policy code makes (node:dns/promises Resolver). */
export interface StsResolver {
  resolveTxt(name: string): Promise<string[][]>;
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

export interface MtaStsOptions {
  /** PEM of the CAs that sign policy hosts' certificates; default Node's store. */
  readonly ca?: string;
  /** HTTPS port of `mta-sts.<domain>`: 443 (RFC 8461); tests use another. */
  readonly port: number;
  readonly fetchTimeout: number;
  /** Largest policy body accepted (RFC 8461 section 3.3 suggests 64 KB). */
  readonly maxPolicySize: number;
  /** Cached policies are fetched again this often, before they expire (section 10.2). */
  readonly refreshInterval: number;
  /** JSON file the cache survives restarts in; none = memory only. */
  readonly cacheFile?: string;
  readonly clock?: () => number;
}

/** TLS-RPT style result types (RFC 8460 section 4.3) counted per policy domain. */
export type StsResultType = 'success' | 'sts-policy-fetch-error' | 'sts-policy-invalid' | 'sts-webpki-invalid' | 'validation-failure' | 'certificate-host-mismatch' | 'starttls-not-supported' | 'certificate-not-trusted';

/**
 * MTA-STS (RFC 8461) for the router: the `_mta-sts` TXT id is looked up at every routing (cheap,
 * and how a changed policy is noticed); the policy itself is fetched over HTTPS with a verified
 * certificate only when the id is new or the cached copy expired, and refreshed in the background.
 * A failed fetch keeps a cached policy that has not expired; with none, the domain is treated as
 * having no policy (section 5: fetch failures must not block mail).
 */
export class MtaSts {
  private readonly cache = new Map<string, CachedPolicy>();
  private readonly inflight = new Map<string, Promise<CachedPolicy | undefined>>();
  /** Per policy domain: result type → count. */
  readonly counters = new Map<string, Map<StsResultType, number>>();
  private timer?: NodeJS.Timeout;
  private readonly now: () => number;

  constructor(
    private readonly resolver: StsResolver,
    private readonly opts: MtaStsOptions,
    private readonly log: Logger,
  ) {
    this.now = opts.clock ?? Date.now;
  }

  async start(): Promise<void> {
    if (this.opts.cacheFile) {
      try {
        const saved = JSON.parse(await readFile(this.opts.cacheFile, 'utf8')) as Record<string, CachedPolicy>;
        for (const [d, p] of Object.entries(saved)) if (p.expiresAt > this.now()) this.cache.set(d, p);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err, file: this.opts.cacheFile }, 'MTA-STS: cache file unreadable, starting empty');
      }
    }
    this.timer = setInterval(() => void this.refreshAll(), this.opts.refreshInterval);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.log.info({ tlsReport: this.report() }, 'MTA-STS: TLS report counters');
  }

  /** Called on every count (the plugin feeds its metrics from here). */
  onCount?: (domain: string, type: StsResultType, n: number) => void;

  count(domain: string, type: StsResultType, n = 1): void {
    this.onCount?.(domain, type, n);
    let m = this.counters.get(domain);
    if (!m) this.counters.set(domain, (m = new Map()));
    m.set(type, (m.get(type) ?? 0) + n);
  }

  /** Counters as plain data: `{ domain: { mode, success, failures: { type: n } } }`. */
  report(): Record<string, { mode?: string; success: number; failures: Record<string, number> }> {
    const out: Record<string, { mode?: string; success: number; failures: Record<string, number> }> = {};
    for (const [d, m] of this.counters) {
      const failures: Record<string, number> = {};
      for (const [t, n] of m) if (t !== 'success') failures[t] = n;
      out[d] = { mode: this.cache.get(d)?.mode, success: m.get('success') ?? 0, failures };
    }
    return out;
  }

  cached(domain: string): CachedPolicy | undefined {
    const p = this.cache.get(domain);
    return p && p.expiresAt > this.now() ? p : undefined;
  }

  /** The policy that applies to `domain` now, or undefined (no policy, or none could be had). Never throws. */
  async policyFor(domain: string): Promise<CachedPolicy | undefined> {
    const cached = this.cached(domain);
    let id: string | false;
    try {
      id = await resolvePolicy(domain, { resolver: (name: string, rr: string) => this.resolveAny(name, rr) });
    } catch (err) {
      // A DNS failure keeps whatever is cached: an attacker who blocks the TXT lookup must not
      // downgrade a known policy (section 5.1).
      this.log.debug({ domain, err: (err as Error).message }, 'MTA-STS: TXT lookup failed');
      return cached;
    }
    if (!id) return cached; // a removed record leaves the cached policy in force until it expires
    if (cached && cached.id === id) return cached;
    return this.fetchShared(domain, id, cached);
  }

  private fetchShared(domain: string, id: string, cached: CachedPolicy | undefined): Promise<CachedPolicy | undefined> {
    let p = this.inflight.get(domain);
    if (!p) {
      p = this.fetchAndStore(domain, id, cached).finally(() => this.inflight.delete(domain));
      this.inflight.set(domain, p);
    }
    return p;
  }

  private async fetchAndStore(domain: string, id: string, cached: CachedPolicy | undefined): Promise<CachedPolicy | undefined> {
    let policy: MTASTSPolicy;
    try {
      const body = await this.fetchPolicyText(domain);
      try {
        policy = parsePolicy(body);
      } catch (err) {
        this.count(domain, 'sts-policy-invalid');
        throw err;
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (!/^invalid_sts/.test(String(e.code))) this.count(domain, /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|altnames/i.test(`${e.code} ${e.message}`) ? 'sts-webpki-invalid' : 'sts-policy-fetch-error');
      this.log.warn({ domain, err: e.message, code: e.code, keptCached: !!cached }, 'MTA-STS: policy fetch failed');
      return cached;
    }
    const now = this.now();
    const entry: CachedPolicy = { id, mode: policy.mode, mx: policy.mx ?? [], maxAge: policy.maxAge ?? 0, fetchedAt: now, expiresAt: now + (policy.maxAge ?? 0) * 1000 };
    this.cache.set(domain, entry);
    this.log.info({ domain, id, mode: entry.mode, mx: entry.mx, maxAge: entry.maxAge }, 'MTA-STS: policy fetched');
    await this.save();
    return entry;
  }

  /** Refreshes every cached policy (section 10.2: before expiry, so a blocked fetch later finds a fresh copy). */
  async refreshAll(): Promise<void> {
    for (const [domain, p] of [...this.cache]) {
      if (p.expiresAt <= this.now()) {
        this.cache.delete(domain);
        continue;
      }
      let id: string | false = p.id;
      try {
        id = (await resolvePolicy(domain, { resolver: (name: string, rr: string) => this.resolveAny(name, rr) })) || p.id;
      } catch {
        /* keep the cached id */
      }
      await this.fetchShared(domain, id, p);
    }
  }

  /**
   * GET https://mta-sts.<domain>/.well-known/mta-sts.txt (section 3.3): certificate verified for
   * that name, no redirects, 200 only, text/plain, at most maxPolicySize bytes, within fetchTimeout.
   * The name is resolved through the router's resolver, not the system's.
   */
  private async fetchPolicyText(domain: string): Promise<string> {
    const host = `mta-sts.${domain}`;
    const addrs = await this.resolver.resolve4(host).catch(() => this.resolver.resolve6(host));
    if (!addrs.length) throw Object.assign(new Error(`${host} has no address`), { code: 'ENOTFOUND' });
    const address = addrs[0]!;
    return new Promise<string>((resolve, reject) => {
      const req = https.request(
        {
          host: address,
          port: this.opts.port,
          path: '/.well-known/mta-sts.txt',
          method: 'GET',
          servername: isIP(host) ? undefined : host,
          headers: { host },
          rejectUnauthorized: true,
          ...(this.opts.ca ? { ca: this.opts.ca } : {}),
          timeout: this.opts.fetchTimeout,
          agent: false,
        },
        (res) => {
          const type = String(res.headers['content-type'] ?? '');
          if (res.statusCode !== 200) {
            res.resume();
            return reject(Object.assign(new Error(`HTTP ${res.statusCode} from https://${host}/.well-known/mta-sts.txt (redirects are not followed)`), { code: `http_${res.statusCode}` }));
          }
          if (!/^text\/plain\b/i.test(type)) {
            res.resume();
            return reject(Object.assign(new Error(`policy served as ${type || 'no Content-Type'}, not text/plain`), { code: 'invalid_sts_content_type' }));
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > this.opts.maxPolicySize) {
              req.destroy(Object.assign(new Error(`policy larger than ${this.opts.maxPolicySize} bytes`), { code: 'invalid_sts_size' }));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error(`no policy from ${host} within ${this.opts.fetchTimeout} ms`), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      req.end();
    });
  }

  private resolveAny(name: string, rr: string): Promise<string[][] | string[]> {
    if (rr === 'TXT') return this.resolver.resolveTxt(name);
    if (rr === 'A') return this.resolver.resolve4(name);
    return this.resolver.resolve6(name);
  }

  private async save(): Promise<void> {
    if (!this.opts.cacheFile) return;
    const tmp = `${this.opts.cacheFile}.tmp`;
    try {
      await writeFile(tmp, JSON.stringify(Object.fromEntries(this.cache)), { mode: 0o600 });
      await rename(tmp, this.opts.cacheFile);
    } catch (err) {
      this.log.warn({ err, file: this.opts.cacheFile }, 'MTA-STS: cannot write the cache file');
    }
  }
}

/**
 * Whether MX host `name` is allowed by `policy` (section 4.1): an exact match, or `*.example.com`
 * matching exactly one more label (`mx1.example.com`, not `a.mx1.example.com`). Written here
 * because mailauth 4's validateMx lets a wildcard match any depth.
 */
export function mxAllowed(name: string, policy: CachedPolicy): boolean {
  const mx = name.toLowerCase().replace(/\.$/, '');
  return policy.mx.some((pattern) => {
    const p = pattern.toLowerCase().replace(/\.$/, '');
    if (!p.startsWith('*.')) return p === mx;
    const first = mx.indexOf('.');
    return first > 0 && mx.slice(first + 1) === p.slice(2);
  });
}
