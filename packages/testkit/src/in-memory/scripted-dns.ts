/**
 * Scripted DNS answers for tests, registered as `Tokens.Resolver` in place of the `node:dns`
 * Resolver: the same promise methods (resolve4, resolveMx, resolveTxt, ...), answered from a table
 * instead of the network. A plugin that resolves through the token cannot tell the difference.
 */

/** Record types the script can answer, keyed like `node:dns`'s `resolve(name, rrtype)`. */
export type RecordType = 'A' | 'AAAA' | 'MX' | 'TXT' | 'CNAME' | 'NS' | 'PTR' | 'SRV' | 'CAA' | 'SOA' | 'NAPTR';

/**
 * What a name answers for one type: records, or a failure by its `node:dns` code
 * (`ENOTFOUND` = NXDOMAIN, `ENODATA` = no record of that type, `ESERVFAIL`, `ETIMEOUT`, `EREFUSED`),
 * or `hang` (never answers: for timeout tests). A function is asked at each query.
 */
export type DnsAnswer =
  | readonly unknown[]
  | { readonly error: string }
  | 'hang'
  | ((name: string, type: RecordType) => readonly unknown[] | { readonly error: string } | 'hang' | Promise<readonly unknown[]>);

/** `{ 'example.org': { MX: [{ exchange: 'mx.example.org', priority: 10 }], A: ['127.0.0.5'] } }`. */
export type DnsScript = Record<string, Partial<Record<RecordType, DnsAnswer>>>;

export interface DnsQuery {
  readonly name: string;
  readonly type: RecordType;
}

export class DnsError extends Error {
  constructor(readonly code: string, readonly syscall: string, readonly hostname: string) {
    super(`${syscall} ${code} ${hostname}`);
    this.name = 'DnsError';
  }
}

const SYSCALL: Record<RecordType, string> = {
  A: 'queryA', AAAA: 'queryAaaa', MX: 'queryMx', TXT: 'queryTxt', CNAME: 'queryCname', NS: 'queryNs',
  PTR: 'queryPtr', SRV: 'querySrv', CAA: 'queryCaa', SOA: 'querySoa', NAPTR: 'queryNaptr',
};

/**
 * A resolver that answers from a script. A name or type the script does not mention fails with
 * `ENOTFOUND` for names it does not list at all and `ENODATA` for listed names without that type,
 * as a real authoritative server would answer. `unscripted: 'error'` makes such queries fail with
 * `ESERVFAIL` instead, so a test notices a lookup it did not expect; `unscripted: 'hang'` makes
 * them never answer (a DNS outage that times out). Every query is recorded.
 */
export class ScriptedResolver {
  readonly queries: DnsQuery[] = [];
  private servers: string[] = ['127.0.0.1'];
  private readonly pending = new Set<() => void>();

  constructor(
    private script: DnsScript = {},
    private readonly opts: { readonly unscripted?: 'nxdomain' | 'error' | 'hang' } = {},
  ) {}

  /** Adds or replaces answers. */
  set(name: string, answers: Partial<Record<RecordType, DnsAnswer>>): this {
    const key = name.toLowerCase().replace(/\.$/, '');
    this.script = { ...this.script, [key]: { ...(this.script[key] ?? {}), ...answers } };
    return this;
  }

  async resolve(name: string, type: RecordType = 'A'): Promise<unknown[]> {
    const key = name.toLowerCase().replace(/\.$/, '');
    this.queries.push({ name: key, type });
    const entry = Object.entries(this.script).find(([n]) => n.toLowerCase().replace(/\.$/, '') === key)?.[1];
    let answer: DnsAnswer | undefined = entry?.[type];
    if (answer === undefined && this.opts.unscripted === 'hang') answer = 'hang';
    if (answer === undefined) {
      const code = this.opts.unscripted === 'error' ? 'ESERVFAIL' : entry ? 'ENODATA' : 'ENOTFOUND';
      throw new DnsError(code, SYSCALL[type], name);
    }
    if (typeof answer === 'function') {
      const out = await answer(name, type);
      answer = out as DnsAnswer;
    }
    if (answer === 'hang') {
      // Never settles (until cancel()): a plugin's own timeout, or the hook timeout, has to act.
      return new Promise<unknown[]>((_resolve, reject) => {
        const cancel = () => reject(new DnsError('ECANCELLED', SYSCALL[type], name));
        this.pending.add(cancel);
      });
    }
    if (!Array.isArray(answer)) throw new DnsError((answer as { error: string }).error, SYSCALL[type], name);
    return structuredClone([...answer]) as unknown[];
  }

  resolve4(name: string, opts?: { ttl?: boolean }): Promise<unknown[]> {
    return this.resolve(name, 'A').then((a) => (opts?.ttl ? a.map((x) => (typeof x === 'string' ? { address: x, ttl: 300 } : x)) : a.map((x) => (typeof x === 'string' ? x : (x as { address: string }).address))));
  }
  resolve6(name: string, opts?: { ttl?: boolean }): Promise<unknown[]> {
    return this.resolve(name, 'AAAA').then((a) => (opts?.ttl ? a.map((x) => (typeof x === 'string' ? { address: x, ttl: 300 } : x)) : a.map((x) => (typeof x === 'string' ? x : (x as { address: string }).address))));
  }
  resolveMx(name: string) { return this.resolve(name, 'MX'); }
  resolveTxt(name: string) { return this.resolve(name, 'TXT'); }
  resolveCname(name: string) { return this.resolve(name, 'CNAME'); }
  resolveNs(name: string) { return this.resolve(name, 'NS'); }
  resolvePtr(name: string) { return this.resolve(name, 'PTR'); }
  resolveSrv(name: string) { return this.resolve(name, 'SRV'); }
  resolveCaa(name: string) { return this.resolve(name, 'CAA'); }
  resolveNaptr(name: string) { return this.resolve(name, 'NAPTR'); }
  resolveSoa(name: string) { return this.resolve(name, 'SOA').then((a) => a[0]); }
  /** Reverse lookup: answers the PTR script of `d.c.b.a.in-addr.arpa` (or `ip6.arpa`). */
  reverse(ip: string) { return this.resolve(reverseName(ip), 'PTR'); }

  getServers(): string[] { return [...this.servers]; }
  setServers(servers: string[]): void { this.servers = [...servers]; }
  /** Rejects every query still hanging (ECANCELLED), as `Resolver#cancel` does. */
  cancel(): void {
    for (const c of this.pending) c();
    this.pending.clear();
  }
}

/** `192.0.2.1` → `1.2.0.192.in-addr.arpa`; IPv6 → nibbles under `ip6.arpa`. */
export function reverseName(ip: string): string {
  if (ip.includes(':')) {
    const [head = '', tail = ''] = ip.split('::');
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
    return groups.map((g) => g.padStart(4, '0')).join('').split('').reverse().join('.') + '.ip6.arpa';
  }
  return ip.split('.').reverse().join('.') + '.in-addr.arpa';
}
