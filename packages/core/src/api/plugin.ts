import type { DependencyContainer } from 'tsyringe';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { PluginHooks } from './hooks.js';
import type { PluginMetrics } from './plugin-metrics.js';

/** A readiness answer: `ready: false` takes the relay out of a load balancer's rotation. */
export interface Readiness {
  readonly ready: boolean;
  /** Why (shown on `/readyz` and by `portcullis status`): `clamd 127.0.0.1:3310 unreachable`. */
  readonly detail?: string;
}

/** What `setup` receives besides the plugin's own options. */
export interface PluginContext {
  /** The relay's root container: resolve `Tokens.*` services. */
  readonly container: DependencyContainer;
  /** Logger bound to this plugin's name. */
  readonly log: Logger;
  /** Directory of the config file: resolve the plugin's relative paths against it. */
  readonly configDir: string;
  /**
   * Register this plugin's Prometheus metrics (named `portcullis_<plugin>_<name>`, served on the
   * admin listener's `/metrics`). Label values must stay bounded: never an address, host or user.
   */
  readonly metrics: PluginMetrics;
}

/** A plugin as the relay runs it: a name, an order, hooks, and optional clean-up. */
export interface PluginInstance {
  readonly name: string;
  /** `pre` plugins run before the others, `post` after; config order within each group. */
  readonly enforce?: 'pre' | 'post';
  readonly hooks: PluginHooks;
  /** Called on shutdown (close sockets, timers). */
  close?(): void | Promise<void>;
  /** See PluginInstanceParts.ready. */
  ready?(): Readiness | boolean | Promise<Readiness | boolean>;
  /** See PluginInstanceParts.check. */
  check?(opts: { readonly connect: boolean }): Promise<readonly PluginCheckResult[]>;
  /** See PluginInstanceParts.commands. */
  readonly commands?: Readonly<Record<string, PluginCommand>>;
}

/** One line of a plugin's own `portcullis check` findings. */
export interface PluginCheckResult {
  readonly ok: boolean;
  readonly text: string;
}

/**
 * An operator command a plugin offers: `portcullis <plugin> <command> [args...] --config FILE`
 * runs it on the plugin as that config sets it up (no port is opened). `args` are the words after
 * the command name, options included, as typed (the plugin parses them).
 */
export interface PluginCommand {
  /** One line for `--help`. */
  readonly description: string;
  /** Arguments after the command name, for the usage line: `ADDRESS [--fresh]`. */
  readonly usage: string;
  /** Returns the exit code (0 ok, 1 failure, 64 usage). */
  run(args: readonly string[], io: { out(text: string): void; err(text: string): void }): Promise<number>;
}

/**
 * A plugin package's default export. `options` validates the config's `with:` block (a zod schema);
 * errors name the config file and key path. `setup` runs once, before any port opens.
 */
export interface PluginDefinition<S extends z.ZodType = z.ZodType> {
  readonly kind: 'portcullis-plugin';
  readonly name: string;
  readonly enforce?: 'pre' | 'post';
  readonly options?: S;
  setup(options: z.output<S>, ctx: PluginContext): PluginHooks | Promise<PluginHooks> | PluginInstanceParts | Promise<PluginInstanceParts>;
}

/** `setup` may return bare hooks or hooks with a `close` function. */
export interface PluginInstanceParts {
  readonly hooks: PluginHooks;
  close?(): void | Promise<void>;
  /**
   * Readiness: can this plugin do its job now (its backend reachable: clamd, Redis, DNS zones)?
   * Asked by `/readyz` and `portcullis status`, each call bounded by `admin.readyTimeout`; a
   * plugin without it counts as ready. Never called on the SMTP path.
   */
  ready?(): Readiness | boolean | Promise<Readiness | boolean>;
  /**
   * The plugin's own checks for `portcullis check` (lines printed under the plugin; one not ok
   * makes the command exit 1). With `connect` (`portcullis check --connect`) it may contact its
   * backends (an LDAP bind, a clamd PING); without, it must not. Never called on the SMTP path.
   */
  check?(opts: { readonly connect: boolean }): Promise<readonly PluginCheckResult[]>;
  /** Operator commands: `portcullis <plugin name> <command> ...` (see PluginCommand). */
  readonly commands?: Readonly<Record<string, PluginCommand>>;
}

type DefineInput<S extends z.ZodType> = Omit<PluginDefinition<S>, 'kind'>;

/**
 * Declares a plugin.
 *
 * ```ts
 * export default definePlugin({
 *   name: 'max-recipients',
 *   options: z.object({ max: z.number().int().positive() }),
 *   setup: (opts) => ({
 *     rcpt: (txn) => (txn.recipients.length >= opts.max ? tempfail(452, '4.5.3', 'Too many recipients') : undefined),
 *   }),
 * });
 * ```
 */
export function definePlugin<S extends z.ZodType = z.ZodType<Record<string, never>>>(def: DefineInput<S>): PluginDefinition<S> {
  if (!def || typeof def.name !== 'string' || !def.name) throw new TypeError('definePlugin: a plugin needs a name');
  if (typeof def.setup !== 'function') throw new TypeError(`definePlugin(${def.name}): setup must be a function`);
  return { ...def, kind: 'portcullis-plugin' };
}

export function isPluginDefinition(value: unknown): value is PluginDefinition {
  return !!value && typeof value === 'object' && (value as { kind?: unknown }).kind === 'portcullis-plugin';
}
