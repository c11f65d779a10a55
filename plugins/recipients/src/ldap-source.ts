import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { Client } from 'ldapts';
import type { Logger } from './source.js';
import { ldapFilter, lookupAddresses } from './ldap-filter.js';
import type { LdapSourceOptions } from './options.js';
import type { RecipientAddress } from './recipient-address.js';
import { SourceUnavailable, type RecipientSource, type SourceAnswer } from './source.js';

/** A bound connection to one of the URLs. */
interface PooledClient {
  readonly client: Client;
  readonly url: string;
}

/**
 * LDAP / Active Directory lookups through ldapts. A small pool of bound connections (opened on
 * demand, at most `connections`), each operation bounded by `timeout`; a connection that fails is
 * dropped and the next URL is tried (failover), starting next time from the URL that last worked.
 */
export class LdapSource implements RecipientSource {
  readonly type = 'ldap' as const;
  readonly cached = true;
  private readonly idle: PooledClient[] = [];
  private readonly waiting: Array<(c: PooledClient | undefined) => void> = [];
  private open = 0;
  private preferred = 0;
  private readonly password?: string;
  private readonly tlsOptions: ConnectionOptions;
  private closed = false;
  /** Whether the last attempt reached a directory: for `/readyz`. */
  reachable: boolean | undefined;
  lastError?: string;
  /** When a search or bind last worked (ms since the epoch). */
  private lastSuccess = 0;

  constructor(readonly name: string, private readonly opts: LdapSourceOptions, configDir: string, private readonly log: Logger) {
    if (opts.passwordFile) this.password = readFileSync(path.resolve(configDir, opts.passwordFile), 'utf8').split(/\r?\n/)[0];
    this.tlsOptions = opts.caFile ? { ca: readFileSync(path.resolve(configDir, opts.caFile), 'utf8') } : {};
  }

  /** Opens, upgrades and binds a connection to `url`; throws on any failure. */
  private async connect(url: string): Promise<PooledClient> {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    // SNI only for names (RFC 6066); ldapts goes TLS whenever tlsOptions is given, so only for ldaps://.
    const tlsOptions: ConnectionOptions = { ...this.tlsOptions, ...(isIP(host) ? {} : { servername: host }) };
    const client = new Client({ url, timeout: this.opts.timeout, connectTimeout: this.opts.timeout, ...(url.startsWith('ldaps://') ? { tlsOptions } : {}) });
    try {
      // Upgrading an open socket, Node checks the certificate against `servername`, else `host`,
      // else 'localhost': name the host (an IP address is checked against the IP SANs).
      if (this.opts.startTls && url.startsWith('ldap://')) await client.startTLS({ ...tlsOptions, host });
      if (this.opts.bindDn) await client.bind(this.opts.bindDn, this.password ?? '');
      return { client, url };
    } catch (err) {
      await client.unbind().catch(() => undefined);
      throw err;
    }
  }

  /** A free pooled connection, a new one (failover across the URLs), or undefined when none can be opened. */
  private async acquire(errors: string[]): Promise<PooledClient | undefined> {
    const free = this.idle.pop();
    if (free) return free;
    if (this.open >= this.opts.connections) return new Promise((resolve) => this.waiting.push(resolve));
    this.open++;
    const urls = this.opts.urls;
    for (let i = 0; i < urls.length; i++) {
      const k = (this.preferred + i) % urls.length;
      try {
        const c = await this.connect(urls[k]!);
        if (k !== this.preferred) this.log.warn({ source: this.name, url: urls[k], failed: errors }, 'LDAP failover: using the next directory server');
        this.preferred = k;
        return c;
      } catch (err) {
        errors.push(`${urls[k]}: ${(err as Error).message}`);
      }
    }
    this.open--;
    this.wakeOne();
    return undefined;
  }

  private release(c: PooledClient, broken: boolean): void {
    if (broken || this.closed) {
      this.open--;
      c.client.unbind().catch(() => undefined);
      this.wakeOne();
      return;
    }
    const w = this.waiting.shift();
    if (w) w(c);
    else this.idle.push(c);
  }

  /** A waiter whose slot freed up opens its own connection. */
  private wakeOne(): void {
    const w = this.waiting.shift();
    if (w) void this.acquire([]).then(w, () => w(undefined));
  }

  /** One search on a pooled connection; a failed connection is replaced once (the server may have closed an idle one). */
  private async search(filter: string): Promise<Array<Record<string, unknown>>> {
    const errors: string[] = [];
    for (let attempt = 0; attempt < 2; attempt++) {
      const c = await this.acquire(errors);
      if (!c) break;
      try {
        const { searchEntries } = await c.client.search(this.opts.base, { scope: this.opts.scope, filter, attributes: ['mail'], sizeLimit: 2, timeLimit: Math.ceil(this.opts.timeout / 1000) });
        this.release(c, false);
        this.reachable = true;
        this.lastSuccess = Date.now();
        return searchEntries as Array<Record<string, unknown>>;
      } catch (err) {
        // More than one entry for an address is still an answer: it exists.
        if ((err as Error).name === 'SizeLimitExceededError') {
          this.release(c, false);
          this.reachable = true;
          return [{ dn: '(several entries)' }];
        }
        errors.push(`${c.url}: ${(err as Error).message}`);
        this.release(c, true);
      }
    }
    this.reachable = false;
    this.lastError = errors.join('; ') || 'no directory server reachable';
    throw new SourceUnavailable(this.name, `LDAP lookup failed: ${this.lastError}`);
  }

  async lookup(addr: RecipientAddress): Promise<SourceAnswer> {
    for (const candidate of lookupAddresses(addr)) {
      const filter = ldapFilter(this.opts.filter, candidate);
      const entries = await this.search(filter);
      if (entries.length) return { result: 'known', detail: `${String(entries[0]!['dn'])} matches ${filter}` };
    }
    return { result: 'unknown', detail: `no entry matches ${ldapFilter(this.opts.filter, addr.address)} under ${this.opts.base}` };
  }

  /**
   * Reachable now: a search that worked in the last 5 s counts; otherwise a bind to the URLs is
   * tried (readiness probes come every few seconds; the relay bounds each by `admin.readyTimeout`).
   */
  async ready(): Promise<{ ready: boolean; detail?: string }> {
    if (!(this.reachable && Date.now() - this.lastSuccess < 5_000)) {
      try {
        await this.test();
      } catch {
        /* reachable is set by test() */
      }
    }
    return this.reachable ? { ready: true } : { ready: false, detail: `LDAP source ${this.name} unreachable: ${this.lastError ?? 'unknown error'}` };
  }

  /** Connects and binds to each URL in turn: for `portcullis check --connect` and readiness. */
  async test(): Promise<string> {
    const lines: string[] = [];
    let ok = false;
    for (const url of this.opts.urls) {
      try {
        const c = await this.connect(url);
        await c.client.unbind().catch(() => undefined);
        lines.push(`${url}: ${this.opts.bindDn ? `bound as ${this.opts.bindDn}` : 'connected (anonymous)'}${this.opts.startTls ? ' after StartTLS' : ''}`);
        ok = true;
      } catch (err) {
        lines.push(`${url}: FAILED ${(err as Error).message}`);
        this.lastError = (err as Error).message;
      }
    }
    this.reachable = ok;
    if (ok) this.lastSuccess = Date.now();
    if (!ok) throw new Error(lines.join('\n'));
    return lines.join('\n');
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w(undefined);
    await Promise.all(this.idle.splice(0).map((c) => c.client.unbind().catch(() => undefined)));
  }
}
