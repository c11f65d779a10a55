import ipaddr from 'ipaddr.js';

/**
 * Which DNSBL answers count as a listing. A pattern is four dot-separated octets, each a number or
 * a bracketed set of numbers and ranges (Postfix's notation): `127.0.0.2`, `127.0.0.[2..11]`,
 * `127.0.[0..1].[2;4;10..11]`.
 */
export type AnswerFilter = (answer: string) => boolean;

function octet(text: string, pattern: string): (n: number) => boolean {
  const num = (t: string) => {
    if (!/^\d{1,3}$/.test(t) || Number(t) > 255) throw new Error(`bad octet "${t}" in ${pattern}`);
    return Number(t);
  };
  if (!text.startsWith('[')) {
    const v = num(text);
    return (n) => n === v;
  }
  if (!text.endsWith(']')) throw new Error(`unclosed [ in ${pattern}`);
  const parts = text.slice(1, -1).split(';').map((p) => {
    const [a, b] = p.split('..');
    const lo = num(a!);
    const hi = b === undefined ? lo : num(b);
    if (hi < lo) throw new Error(`empty range ${p} in ${pattern}`);
    return [lo, hi] as const;
  });
  return (n) => parts.some(([lo, hi]) => n >= lo && n <= hi);
}

export function parseAnswerPattern(pattern: string): AnswerFilter {
  const o = String.raw`(\[[^\]]*\]|\d{1,3})`;
  const m = new RegExp(`^${o}\\.${o}\\.${o}\\.${o}$`).exec(pattern.trim());
  const octets = m ? m.slice(1) : [];
  if (octets.length !== 4) throw new Error(`expected four octets such as 127.0.0.[2..11], got ${pattern}`);
  const tests = octets.map((o) => octet(o, pattern));
  return (answer) => {
    const parts = answer.split('.').map(Number);
    return parts.length === 4 && tests.every((t, i) => t(parts[i]!));
  };
}

/**
 * What an answer says about the zone itself, whatever the filter:
 * - `error`: `127.255.255.0/24` (Spamhaus' "query refused / typo / public resolver" codes) or an
 *   address outside 127.0.0.0/8 (a hijacking resolver): the zone is failing, this is no listing.
 * - `ok`: a regular 127.0.0.0/8 answer.
 */
export function answerKind(answer: string): 'ok' | 'error' {
  let a: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    a = ipaddr.parse(answer);
  } catch {
    return 'error';
  }
  if (a.kind() !== 'ipv4') return 'error';
  const [o0, o1, o2] = (a as ipaddr.IPv4).octets;
  if (o0 !== 127) return 'error';
  if (o1 === 255 && o2 === 255) return 'error';
  return 'ok';
}
