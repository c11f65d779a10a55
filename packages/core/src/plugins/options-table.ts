import { globalRegistry, type z } from 'zod';
import { formatDuration } from '../config/units.js';

/** One documented option of a plugin: its key path, type, default and description. */
export interface OptionDoc {
  /** `domains.<name>.nexthop`, `rules[].action`. */
  readonly key: string;
  readonly type: string;
  /** The default as a user would write it in YAML (`30s`, `25MB`, `opportunistic`), if any. */
  readonly default?: string;
  readonly required: boolean;
  readonly description: string;
}

interface Def {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  valueType?: z.ZodType;
  options?: z.ZodType[];
  entries?: Record<string, string | number>;
  values?: unknown[];
  defaultValue?: unknown;
  checks?: Array<{ _zod: { def: { check: string; format?: string } } }>;
  format?: string;
}
const defOf = (s: z.ZodType) => (s as unknown as { _zod: { def: Def } })._zod.def;
const metaOf = (s: z.ZodType) => globalRegistry.get(s) as { description?: string; docType?: string } | undefined;

/** Peels optional/default/prefault/nullable/pipe wrappers, keeping what they say for the docs. */
function unwrap(schema: z.ZodType): { core: z.ZodType; optional: boolean; defaultValue?: unknown; hasDefault: boolean; description?: string; docType?: string } {
  let s = schema;
  let optional = false;
  let hasDefault = false;
  let defaultValue: unknown;
  let description: string | undefined;
  let docType: string | undefined;
  for (let i = 0; i < 20; i++) {
    const meta = metaOf(s);
    description ??= meta?.description;
    docType ??= meta?.docType;
    const d = defOf(s);
    if (d.type === 'optional' || d.type === 'nullable') optional = true;
    else if (d.type === 'default' || d.type === 'prefault') {
      if (!hasDefault) {
        hasDefault = true;
        defaultValue = typeof d.defaultValue === 'function' ? (d.defaultValue as () => unknown)() : d.defaultValue;
      }
    } else if (d.type === 'pipe') {
      s = d.in!;
      continue;
    } else break;
    s = d.innerType!;
  }
  return { core: s, optional, defaultValue, hasDefault, description, docType };
}

function typeName(schema: z.ZodType): string {
  const u = unwrap(schema);
  if (u.docType) return u.docType;
  const d = defOf(u.core);
  switch (d.type) {
    case 'string':
      return 'string';
    case 'number':
      return d.checks?.some((c) => c._zod.def.format === 'safeint' || c._zod.def.check === 'number_format') || d.format === 'safeint' ? 'integer' : 'number';
    case 'boolean':
      return 'boolean';
    case 'enum':
      return Object.values(d.entries ?? {}).map((v) => `\`${v}\``).join(' \\| ');
    case 'literal':
      return (d.values ?? []).map((v) => `\`${String(v)}\``).join(' \\| ');
    case 'array':
      return `list of ${typeName(d.element!)}`;
    case 'record':
      return `map of ${typeName(d.valueType!)}`;
    case 'object':
      return 'object';
    case 'union':
      return (d.options ?? []).map(typeName).join(' or ');
    default:
      return 'any';
  }
}

function formatDefault(value: unknown, docType?: string): string {
  if (docType === 'duration' && typeof value === 'number') return `\`${formatDuration(value)}\``;
  if (docType === 'size' && typeof value === 'number') return `\`${formatSize(value)}\``;
  if (Array.isArray(value)) {
    if (value.length === 0) return '`[]`';
    if (value.length > 6) return `built-in list (${value.length} entries)`;
    return `\`${JSON.stringify(value)}\``;
  }
  if (value && typeof value === 'object') return Object.keys(value).length ? `\`${JSON.stringify(value)}\`` : '';
  return `\`${String(value)}\``;
}

function formatSize(n: number): string {
  for (const [unit, f] of [['GB', 1024 ** 3], ['MB', 1024 ** 2], ['KB', 1024]] as const) if (n >= f && n % f === 0) return `${n / f}${unit}`;
  return `${n}`;
}

/**
 * Every option of a plugin's zod schema, nested keys flattened (`archives.maxDepth`,
 * `domains.<name>.nexthop`, `rules[].action`), with type, default and the `.describe()` text.
 */
export function describeOptions(schema: z.ZodType, prefix = ''): OptionDoc[] {
  const out: OptionDoc[] = [];
  const root = unwrap(schema);
  const d = defOf(root.core);
  if (d.type !== 'object') return out;
  for (const [key, child] of Object.entries(d.shape ?? {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    const u = unwrap(child);
    const cd = defOf(u.core);
    const nested = cd.type === 'object' ? u.core : cd.type === 'array' && defOf(unwrap(cd.element!).core).type === 'object' ? cd.element! : cd.type === 'record' && defOf(unwrap(cd.valueType!).core).type === 'object' ? cd.valueType! : undefined;
    const dflt = u.hasDefault ? formatDefault(u.defaultValue, u.docType) : '';
    out.push({ key: path, type: typeName(child), default: dflt || undefined, required: !u.optional && !u.hasDefault, description: u.description ?? '' });
    if (nested) {
      const sub = cd.type === 'array' ? `${path}[]` : cd.type === 'record' ? `${path}.<name>` : path;
      out.push(...describeOptions(nested, sub));
    }
  }
  return out;
}

/** The options as a Markdown table (what each plugin README shows between its options markers). */
export function optionsTable(schema: z.ZodType | undefined): string {
  if (!schema) return 'This plugin takes no options.\n';
  const rows = describeOptions(schema);
  if (!rows.length) return 'This plugin takes no options.\n';
  const cell = (v: string) => v.replace(/\|/g, '\\|').replace(/\n+/g, ' ').replace(/\\\\\|/g, '\\|');
  const lines = ['| option | type | default | description |', '| --- | --- | --- | --- |'];
  for (const r of rows) lines.push(`| \`${r.key}\` | ${cell(r.type)} | ${r.required ? '**required**' : cell(r.default ?? '')} | ${cell(r.description)} |`);
  return lines.join('\n') + '\n';
}

export const OPTIONS_BEGIN = '<!-- options:begin (generated from the zod schema by scripts/options-docs.mjs; do not edit) -->';
export const OPTIONS_END = '<!-- options:end -->';

/** Puts the generated table between the README's markers; undefined when the markers are missing. */
export function replaceOptionsTable(readme: string, table: string): string | undefined {
  const begin = readme.indexOf('<!-- options:begin');
  const end = readme.indexOf(OPTIONS_END);
  if (begin < 0 || end < begin) return undefined;
  return `${readme.slice(0, begin)}${OPTIONS_BEGIN}\n${table}${readme.slice(end)}`;
}
