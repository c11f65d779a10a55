import type { z } from 'zod';

/**
 * Hints that make a config error fixable at a glance: "did you mean" for an unknown key (the
 * nearest key the schema knows at that place), and "quote it" for a value YAML read as a number
 * where text was expected (`host: 127.1`, `nexthop: 10.0.0.5`... YAML turns `127.1` into 127.1).
 */

/** Edit distance with adjacent transpositions (`tsl` → `tls` is 1), small strings only (config keys). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate closest to `word` (case-insensitive), if close enough to be a typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  const limit = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  // A different case or separator only (`trusted_networks`, `TrustedNetworks`) is always a match.
  const squash = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  const same = candidates.find((c) => squash(c) === squash(word));
  if (same) return same;
  return best !== undefined && bestD <= limit ? best : undefined;
}

type Def = { type?: string; innerType?: ZodLike; in?: ZodLike; out?: ZodLike; element?: ZodLike; valueType?: ZodLike; shape?: Record<string, ZodLike>; options?: ZodLike[]; getter?: () => ZodLike };
type ZodLike = { _zod?: { def?: Def } } | undefined;

function defOf(s: ZodLike): Def | undefined {
  return s?._zod?.def;
}

/** Strips optional/default/pipe/transform wrappers down to the schema that holds the shape. */
function unwrap(s: ZodLike): ZodLike {
  for (let i = 0; i < 20 && s; i++) {
    const d = defOf(s);
    if (!d) return s;
    if (d.innerType && ['optional', 'nullable', 'default', 'prefault', 'readonly', 'catch', 'nonoptional'].includes(d.type ?? '')) s = d.innerType;
    else if (d.type === 'pipe') s = defOf(d.in)?.type === 'transform' ? d.out : d.in;
    else if (d.type === 'lazy' && d.getter) s = d.getter();
    else return s;
  }
  return s;
}

/** The keys an object schema accepts at `path` (from the root schema), or [] when unknown. */
export function knownKeysAt(schema: z.ZodType | undefined, path: ReadonlyArray<PropertyKey>): string[] {
  let s: ZodLike = unwrap(schema as ZodLike);
  for (const part of path) {
    const d = defOf(s);
    if (!d) return [];
    if (d.type === 'array' && d.element) s = unwrap(d.element);
    else if (d.type === 'record' && d.valueType) s = unwrap(d.valueType);
    else if (d.type === 'object' && d.shape) s = unwrap(d.shape[String(part)]);
    else if (d.type === 'union' && d.options) {
      const obj = d.options.map(unwrap).find((o) => defOf(o)?.type === 'object' && defOf(o)?.shape?.[String(part)]);
      if (!obj) return [];
      s = unwrap(defOf(obj)!.shape![String(part)]);
    } else return [];
  }
  const d = defOf(s);
  if (d?.type === 'object' && d.shape) return Object.keys(d.shape);
  if (d?.type === 'union' && d.options) return d.options.flatMap((o) => Object.keys(defOf(unwrap(o))?.shape ?? {}));
  return [];
}

/** The value at `path` in what the file said (before validation), if any. */
export function valueAt(input: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let v = input;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p as string];
  }
  return v;
}

/** "did you mean" for unknown keys. */
export function unknownKeysMessage(keys: readonly string[], known: readonly string[]): string {
  const parts = keys.map((k) => {
    const near = closest(k, known.filter((c) => !keys.includes(c)));
    return `${JSON.stringify(k)}${near ? ` (did you mean "${near}"?)` : ''}`;
  });
  return `unknown key${keys.length > 1 ? 's' : ''} ${parts.join(', ')}`;
}

/** A hint when YAML made a number out of what should be text. */
export function numberHint(value: unknown): string {
  if (typeof value !== 'number') return '';
  return `; YAML read this unquoted value as the number ${value}: put it in quotes ("${value}")${/^\d+\.\d+$/.test(String(value)) ? ', and write addresses in full (127.1 is not 127.0.0.1 to every reader)' : ''}`;
}
