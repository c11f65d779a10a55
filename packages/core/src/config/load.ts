import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { configSchema, type RelayConfig, type RelayConfigInput } from './schema.js';
import { knownKeysAt, numberHint, unknownKeysMessage, valueAt } from './hints.js';

/** A configuration error that names the file, the key path and what was expected. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: ReadonlyArray<{ path: string; message: string }>,
    /** What the file said, when it could be read and parsed (lets `check` go on to the plugins). */
    readonly raw?: unknown,
  ) {
    super(problems.map((p) => `${file}: ${p.path ? p.path + ': ' : ''}${p.message}`).join('\n'));
    this.name = 'ConfigError';
  }
}

/** `plugins[2].with.domains` from a zod issue path. */
export function formatPath(parts: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of parts) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

/**
 * One `{ path, message }` per zod issue. With `schema` and `input` (what the file said), unknown
 * keys get a "did you mean" and text that YAML read as a number gets a hint to quote it.
 */
export function zodProblems(error: z.ZodError, prefix: ReadonlyArray<PropertyKey> = [], context: { schema?: z.ZodType; input?: unknown } = {}): Array<{ path: string; message: string }> {
  return error.issues.map((issue) => {
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') message = unknownKeysMessage(issue.keys, knownKeysAt(context.schema, issue.path));
    else if (issue.code === 'invalid_type' || issue.code === 'invalid_union' || issue.code === 'invalid_format') message += numberHint(valueAt(context.input, issue.path));
    return { path: formatPath([...prefix, ...issue.path]), message };
  });
}

/** A validated config and where it came from. */
export interface LoadedConfig {
  readonly file: string;
  readonly dir: string;
  readonly config: RelayConfig;
  /** The file as parsed, before validation: what the worker mode's primary hands its workers (the validated config holds class instances IPC cannot carry). */
  readonly raw?: unknown;
}

/** Reads YAML or JSON (by extension; YAML otherwise), validates, resolves paths against the file's folder. */
export function loadConfigFile(file: string): LoadedConfig {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError(abs, [{ path: '', message: `cannot read the file: ${(err as Error).message}` }]);
  }
  let raw: unknown;
  try {
    raw = abs.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError(abs, [{ path: '', message: `not valid ${abs.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}` }]);
  }
  return { file: abs, dir: path.dirname(abs), config: parseConfig(raw, abs), raw };
}

/** Validates an in-memory config; `file` is named in errors and anchors relative paths. */
export function parseConfig(raw: unknown, file = '<inline config>'): RelayConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(file, [{ path: '', message: 'expected a mapping of settings at the top level' }]);
  }
  const result = configSchema.safeParse(raw as RelayConfigInput);
  if (!result.success) throw new ConfigError(file, zodProblems(result.error, [], { schema: configSchema, input: raw }), raw);
  const config = result.data;
  const problems: Array<{ path: string; message: string }> = [];
  config.listen.forEach((l, i) => {
    if (l.tls !== 'none' && !config.tls) problems.push({ path: `listen[${i}].tls`, message: `TLS mode "${l.tls}" needs a top-level tls: { key, cert }` });
  });
  const seen = new Set<string>();
  config.listen.forEach((l, i) => {
    const k = `${l.host}:${l.port}`;
    if (l.port !== 0 && seen.has(k)) problems.push({ path: `listen[${i}]`, message: `${k} is listed twice` });
    seen.add(k);
  });
  if (config.admin.token && config.admin.tokenFile) problems.push({ path: 'admin.tokenFile', message: 'give either admin.token or admin.tokenFile, not both' });
  if (problems.length) throw new ConfigError(file, problems, raw);
  return config;
}
