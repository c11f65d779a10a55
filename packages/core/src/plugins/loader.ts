import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import type { DependencyContainer } from 'tsyringe';
import type { PluginEntry } from '../config/schema.js';
import { ConfigError, zodProblems } from '../config/load.js';
import { closest } from '../config/hints.js';
import { HOOK_NAMES, type HookName, type PluginHooks } from '../api/hooks.js';
import { isPluginDefinition, type PluginDefinition, type PluginInstanceParts } from '../api/plugin.js';
import type { LoadedPlugin } from './driver.js';
import { pluginMetrics, Registry } from '../telemetry/metrics.js';

/** What `use:` names, turned into an import specifier. */
export function pluginSpecifier(use: string): { specifier: string; kind: 'path' | 'package' } {
  if (use.startsWith('./') || use.startsWith('../') || path.isAbsolute(use)) return { specifier: use, kind: 'path' };
  if (use.startsWith('@') || use.includes('/')) return { specifier: use, kind: 'package' };
  return { specifier: `@portcullis/${use}`, kind: 'package' };
}

export interface LoadPluginsOptions {
  readonly file: string;
  readonly configDir: string;
  readonly container: DependencyContainer;
  readonly log: Logger;
  /** Extra folders to resolve packages from (the CLI passes its own, where the stock plugins live). */
  readonly resolveFrom?: readonly string[];
  /** Definitions given in code (tests, embedders), looked up by `use` before any import. */
  readonly builtins?: Readonly<Record<string, PluginDefinition>>;
  /** The relay's metrics registry: plugins register theirs in it (ctx.metrics). */
  readonly registry?: Registry;
}

type Problem = { path: string; message: string };

/**
 * Imports, validates and sets up the plugins listed in the config, in order. Problems are
 * collected across every plugin (a bad option in the first does not hide one in the third) and
 * raised as one ConfigError naming the file and `plugins[i]...`, before any port opens. A plugin
 * whose options are invalid is not set up; those already set up are closed again.
 */
export async function loadPlugins(entries: readonly PluginEntry[], opts: LoadPluginsOptions): Promise<LoadedPlugin[]> {
  const loaded: LoadedPlugin[] = [];
  // Without the relay's registry (portcullis check, tests), metrics go to one nobody scrapes.
  const registry = opts.registry ?? new Registry();
  const problems: Problem[] = [];
  for (const [i, entry] of entries.entries()) {
    if (!entry.enabled) continue;
    const at = `plugins[${i}]`;
    const found = await definitionOf(entry.use, at, opts);
    if ('problem' in found) {
      problems.push(found.problem);
      continue;
    }
    const def = found.def;
    const checked = checkOptions(def, entry.with, i);
    if ('problems' in checked) {
      problems.push(...checked.problems);
      continue;
    }
    const options = checked.options;
    const log = opts.log.child({ plugin: def.name });
    let setupResult: PluginHooks | PluginInstanceParts;
    try {
      setupResult = await def.setup(options, { container: opts.container, log, configDir: opts.configDir, metrics: pluginMetrics(registry, def.name) });
    } catch (err) {
      if (err instanceof ConfigError) problems.push(...err.problems);
      else problems.push({ path: `${at}`, message: `plugin "${def.name}" failed to start: ${(err as Error).message}` });
      continue;
    }
    const parts: PluginInstanceParts = isParts(setupResult) ? setupResult : { hooks: setupResult };
    const unknown = Object.keys(parts.hooks).filter((h) => !HOOK_NAMES.includes(h as HookName));
    if (unknown.length) {
      problems.push({ path: at, message: `plugin "${def.name}" declares unknown hook(s) ${unknown.join(', ')}; known hooks: ${HOOK_NAMES.join(', ')}` });
    }
    loaded.push({
      instance: { name: def.name, enforce: def.enforce, hooks: parts.hooks, close: parts.close, ready: parts.ready, check: parts.check, commands: parts.commands },
      timeoutMs: entry.timeout,
      source: entry.use,
      options,
    });
  }
  if (problems.length) {
    await Promise.allSettled(loaded.map(async (p) => p.instance.close?.()));
    throw new ConfigError(opts.file, problems);
  }
  return loaded;
}

/**
 * Validates the options of plugin entries as the file gave them, without setting anything up: what
 * `check` still reports when the rest of the file is invalid. Entries the core schema would reject
 * (no `use`) are skipped: the core's own problems name them.
 */
export async function validatePluginEntries(entries: unknown, opts: Pick<LoadPluginsOptions, 'configDir' | 'resolveFrom' | 'builtins' | 'file'>): Promise<Problem[]> {
  if (!Array.isArray(entries)) return [];
  const problems: Problem[] = [];
  for (const [i, entry] of entries.entries()) {
    if (!entry || typeof entry !== 'object' || typeof (entry as { use?: unknown }).use !== 'string' || (entry as { enabled?: unknown }).enabled === false) continue;
    const e = entry as { use: string; with?: unknown };
    const found = await definitionOf(e.use, `plugins[${i}]`, opts as LoadPluginsOptions);
    if ('problem' in found) problems.push(found.problem);
    else {
      const checked = checkOptions(found.def, e.with, i);
      if ('problems' in checked) problems.push(...checked.problems);
    }
  }
  return problems;
}

async function definitionOf(use: string, at: string, opts: LoadPluginsOptions): Promise<{ def: PluginDefinition } | { problem: Problem }> {
  const builtin = opts.builtins?.[use];
  if (builtin) return { def: builtin };
  try {
    return { def: await importDefinition(use, at, opts) };
  } catch (err) {
    if (err instanceof ConfigError && err.problems[0]) return { problem: err.problems[0] };
    throw err;
  }
}

function checkOptions(def: PluginDefinition, given: unknown, i: number): { options: unknown } | { problems: Problem[] } {
  const options: unknown = given ?? {};
  if (def.options) {
    const parsed = def.options.safeParse(options);
    if (!parsed.success) return { problems: zodProblems(parsed.error, ['plugins', i, 'with'], { schema: def.options, input: options }) };
    return { options: parsed.data };
  }
  if (given !== undefined && given !== null && typeof given === 'object' && Object.keys(given).length > 0) {
    return { problems: [{ path: `plugins[${i}].with`, message: `plugin "${def.name}" takes no options` }] };
  }
  return { options };
}

function isParts(v: PluginHooks | PluginInstanceParts): v is PluginInstanceParts {
  return typeof (v as PluginInstanceParts).hooks === 'object' && (v as PluginInstanceParts).hooks !== null;
}

async function importDefinition(use: string, at: string, opts: LoadPluginsOptions): Promise<PluginDefinition> {
  const { specifier, kind } = pluginSpecifier(use);
  let url: string;
  if (kind === 'path') {
    url = pathToFileURL(path.resolve(opts.configDir, specifier)).href;
  } else {
    // Each folder once (the config folder is often the working folder too).
    const bases = [...new Set([opts.configDir, ...(opts.resolveFrom ?? [])])];
    let resolved: string | undefined;
    for (const base of bases) {
      try {
        resolved = createRequire(path.join(base, 'noop.js')).resolve(specifier);
        break;
      } catch {
        /* try the next base */
      }
    }
    if (!resolved) {
      const near = !use.includes('/') ? closest(use, stockPluginNames(bases)) : undefined;
      throw new ConfigError(opts.file, [{ path: `${at}.use`, message: `cannot find plugin package "${specifier}" (looked from ${bases.join(', ')}); ${near ? `did you mean "${near}"? Otherwise ` : ''}install it with npm or pnpm` }]);
    }
    url = pathToFileURL(resolved).href;
  }
  let mod: { default?: unknown };
  try {
    mod = (await import(url)) as { default?: unknown };
  } catch (err) {
    throw new ConfigError(opts.file, [{ path: `${at}.use`, message: `cannot load plugin "${use}": ${explainLoadError(err, use)}` }]);
  }
  const def = pluginExport(mod);
  if (!isPluginDefinition(def)) {
    throw new ConfigError(opts.file, [{ path: `${at}.use`, message: `"${use}" does not export a plugin as default: write \`export default definePlugin({...})\` (ES module) or \`module.exports = definePlugin({...})\` (CommonJS), with definePlugin from @portcullis/core` }]);
  }
  return def;
}

/**
 * The plugin a module exports, whatever its format: an ES module's `export default`; a CommonJS
 * file's `module.exports` (which `import()` presents as `default`); or TypeScript / Babel output
 * compiled to CommonJS, where the default export sits at `module.exports.default`.
 */
export function pluginExport(mod: { default?: unknown }): unknown {
  const first = mod.default;
  if (isPluginDefinition(first)) return first;
  const inner = (first as { default?: unknown } | undefined)?.default;
  if (isPluginDefinition(inner)) return inner;
  return first;
}

/** Turns the errors Node gives for a plugin in the wrong module format into what to do about it. */
function explainLoadError(err: unknown, use: string): string {
  const e = err as NodeJS.ErrnoException;
  const msg = e?.message ?? String(err);
  const file = path.basename(use);
  if (e?.code === 'ERR_UNKNOWN_FILE_EXTENSION' && /\.(m|c)?ts$/.test(use)) {
    return `${msg}. Node does not load TypeScript by itself: compile the plugin (tsc) and list the .js file, or start the relay with a loader (NODE_OPTIONS="--import tsx")`;
  }
  if (/Cannot use import statement outside a module|Unexpected token 'export'/.test(msg) && file.endsWith('.cjs')) {
    return `${file} is CommonJS to Node (.cjs) but uses ES module syntax (import/export): rename it to ${file.slice(0, -4)}.mjs, or write it as CommonJS: \`const { definePlugin } = require('@portcullis/core'); module.exports = definePlugin({ ... })\``;
  }
  if (/Cannot use import statement outside a module|Unexpected token 'export'/.test(msg)) {
    return `${file} uses ES module syntax (import/export) but Node loads it as CommonJS, because the nearest package.json has no "type": "module". Do one of: rename it to ${file.replace(/\.(c?js)$/, '')}.mjs; add "type": "module" to that package.json; or write it as CommonJS: \`const { definePlugin } = require('@portcullis/core'); module.exports = definePlugin({ ... })\``;
  }
  if (/require is not defined in ES module scope|module is not defined in ES module scope|exports is not defined in ES module scope/.test(msg)) {
    return `${file} uses CommonJS (require/module.exports) but Node loads it as an ES module, because the nearest package.json says "type": "module". Do one of: rename it to ${file.replace(/\.(m?js)$/, '')}.cjs; or write it as an ES module: \`import { definePlugin } from '@portcullis/core'; export default definePlugin({ ... })\``;
  }
  return msg;
}

/** Short names of the @portcullis packages installed where plugins are looked up (for "did you mean"). */
function stockPluginNames(bases: readonly string[]): string[] {
  const names = new Set<string>();
  for (const base of bases) {
    for (let dir = base; ; dir = path.dirname(dir)) {
      try {
        for (const n of readdirSync(path.join(dir, 'node_modules', '@portcullis'))) names.add(n);
      } catch {
        /* none here */
      }
      if (path.dirname(dir) === dir) break;
    }
  }
  return [...names];
}
