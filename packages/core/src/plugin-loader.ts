import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import type { DependencyContainer } from 'tsyringe';
import type { PluginEntry } from './config-schema.js';
import { ConfigError, zodProblems } from './config.js';
import { HOOK_NAMES, type HookName, type PluginHooks } from './hooks.js';
import { isPluginDefinition, type PluginDefinition, type PluginInstanceParts } from './plugin.js';
import type { LoadedPlugin } from './plugin-driver.js';
import { pluginMetrics, Registry } from './metrics.js';

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

/**
 * Imports, validates and sets up the plugins listed in the config, in order. Every problem is a
 * ConfigError naming the file and `plugins[i]...`, raised before any port opens.
 */
export async function loadPlugins(entries: readonly PluginEntry[], opts: LoadPluginsOptions): Promise<LoadedPlugin[]> {
  const loaded: LoadedPlugin[] = [];
  // Without the relay's registry (portcullis check, tests), metrics go to one nobody scrapes.
  const registry = opts.registry ?? new Registry();
  for (const [i, entry] of entries.entries()) {
    if (!entry.enabled) continue;
    const at = `plugins[${i}]`;
    const def = opts.builtins?.[entry.use] ?? (await importDefinition(entry.use, at, opts));
    let options: unknown = entry.with ?? {};
    if (def.options) {
      const parsed = def.options.safeParse(options);
      if (!parsed.success) throw new ConfigError(opts.file, zodProblems(parsed.error, [`plugins`, i, 'with']));
      options = parsed.data;
    } else if (entry.with !== undefined && Object.keys(entry.with as object).length > 0) {
      throw new ConfigError(opts.file, [{ path: `${at}.with`, message: `plugin "${def.name}" takes no options` }]);
    }
    const log = opts.log.child({ plugin: def.name });
    let setupResult: PluginHooks | PluginInstanceParts;
    try {
      setupResult = await def.setup(options, { container: opts.container, log, configDir: opts.configDir, metrics: pluginMetrics(registry, def.name) });
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(opts.file, [{ path: `${at}`, message: `plugin "${def.name}" failed to start: ${(err as Error).message}` }]);
    }
    const parts: PluginInstanceParts = isParts(setupResult) ? setupResult : { hooks: setupResult };
    const unknown = Object.keys(parts.hooks).filter((h) => !HOOK_NAMES.includes(h as HookName));
    if (unknown.length) {
      throw new ConfigError(opts.file, [{ path: at, message: `plugin "${def.name}" declares unknown hook(s) ${unknown.join(', ')}; known hooks: ${HOOK_NAMES.join(', ')}` }]);
    }
    loaded.push({
      instance: { name: def.name, enforce: def.enforce, hooks: parts.hooks, close: parts.close, ready: parts.ready },
      timeoutMs: entry.timeout,
      source: entry.use,
    });
  }
  return loaded;
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
    const bases = [opts.configDir, ...(opts.resolveFrom ?? [])];
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
      throw new ConfigError(opts.file, [{ path: `${at}.use`, message: `cannot find plugin package "${specifier}" (looked from ${bases.join(', ')}); install it with npm or pnpm` }]);
    }
    url = pathToFileURL(resolved).href;
  }
  let mod: { default?: unknown };
  try {
    mod = (await import(url)) as { default?: unknown };
  } catch (err) {
    throw new ConfigError(opts.file, [{ path: `${at}.use`, message: `cannot load plugin "${use}": ${(err as Error).message}` }]);
  }
  const def = mod.default;
  if (!isPluginDefinition(def)) {
    throw new ConfigError(opts.file, [{ path: `${at}.use`, message: `"${use}" does not export a plugin as default (use definePlugin from @portcullis/core)` }]);
  }
  return def;
}
