import type { CheckKind, Finding } from './findings.js';
import type { Inspection } from './inspector.js';
import { checkName, type NameRules } from './names.js';
import type { Rule } from './options.js';

/** A rule with its lists compiled to sets. */
export interface CompiledRule {
  readonly rule: Rule;
  readonly label: string;
  readonly names: NameRules;
  readonly types: ReadonlySet<string>;
  readonly typePrefixes: readonly string[];
  readonly checks: ReadonlySet<CheckKind>;
}

export function compileRule(rule: Rule, index: number, maxNameLength: number): CompiledRule {
  return {
    rule,
    label: rule.name ?? `rule ${index + 1}`,
    names: {
      denyExtensions: new Set(rule.extensions),
      allowExtensions: rule.allowExtensions ? new Set(rule.allowExtensions) : undefined,
      maxNameLength,
    },
    types: new Set(rule.types.filter((t) => !t.endsWith('/*'))),
    typePrefixes: rule.types.filter((t) => t.endsWith('/*')).map((t) => t.slice(0, -1)),
    checks: new Set(rule.checks),
  };
}

/** Most dangerous first: the reason a sender sees is the worst thing found. */
const SEVERITY: readonly CheckKind[] = [
  'executable', 'script', 'macro', 'disk-image', 'double-extension', 'name-disguise', 'extension',
  'declared-type', 'encrypted-archive', 'archive-limit', 'opaque-archive', 'long-name',
];

/** Everything one rule catches in an inspection, most dangerous first. */
export function findingsFor(rule: CompiledRule, insp: Inspection, declaredType: string): Finding[] {
  const found: Finding[] = [];
  for (const n of insp.names) found.push(...checkName(n.name, rule.names, n.label));
  for (const t of [declaredType, ...insp.types]) {
    if (rule.types.has(t) || rule.typePrefixes.some((p) => t.startsWith(p))) {
      found.push({ kind: 'declared-type', reason: `declared type ${t} is not accepted` });
    }
  }
  found.push(...insp.findings);
  return found.filter((f) => rule.checks.has(f.kind)).sort((a, b) => SEVERITY.indexOf(a.kind) - SEVERITY.indexOf(b.kind));
}

/** The first rule (in order) that catches something decides, with its worst finding as the reason. */
export function evaluate(rules: readonly CompiledRule[], insp: Inspection, declaredType: string): { rule: CompiledRule; findings: Finding[] } | undefined {
  for (const rule of rules) {
    const findings = findingsFor(rule, insp, declaredType);
    if (findings.length) return { rule, findings };
  }
  return undefined;
}
