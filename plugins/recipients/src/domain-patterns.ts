import { asciiDomain } from './recipient-address.js';

/**
 * Hosted domains and `*.domain` patterns → a value. An exact name wins over a pattern; among
 * patterns the longest (most specific) wins. `*.example.com` matches `a.example.com` and
 * `b.a.example.com`, not `example.com` itself.
 */
export class DomainPatterns<T> {
  private readonly exact = new Map<string, T>();
  private readonly wild: Array<{ suffix: string; value: T }> = [];

  constructor(entries: Iterable<readonly [string, T]>) {
    for (const [pattern, value] of entries) {
      if (pattern.startsWith('*.')) this.wild.push({ suffix: '.' + (asciiDomain(pattern.slice(2)) ?? pattern.slice(2)), value });
      else this.exact.set(asciiDomain(pattern) ?? pattern.toLowerCase(), value);
    }
    this.wild.sort((a, b) => b.suffix.length - a.suffix.length);
  }

  /** `domain` in ASCII, lower case. */
  match(domain: string): T | undefined {
    const e = this.exact.get(domain);
    if (e !== undefined) return e;
    return this.wild.find((w) => domain.endsWith(w.suffix))?.value;
  }
}
