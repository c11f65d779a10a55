import type { Logger } from 'pino';
import { HOOK_KINDS, HOOK_NAMES, type DataHandlers, type HookName, type HookSignatures } from '../api/hooks.js';
import type { PluginInstance } from '../api/plugin.js';
import type { NextHop } from '../api/types.js';
import { isVerdict, Replies, type Verdict } from '../api/verdicts.js';
import type { RelayMetrics } from '../telemetry/metrics.js';
import { asPlugin } from './scope.js';
import { withTimeout } from './timeout.js';

/** A plugin with the settings the config gave it. */
export interface LoadedPlugin {
  readonly instance: PluginInstance;
  /** How long one hook call may take before it counts as failed (451 4.3.0). */
  readonly timeoutMs: number;
  /** Where it came from (`use:` value), for `portcullis check`. */
  readonly source: string;
  /** Its options as validated (for `portcullis check`: the networks it trusts). */
  readonly options?: unknown;
}

type HooksOfKind<K extends string> = { [H in HookName]: (typeof HOOK_KINDS)[H] extends K ? H : never }[HookName];
export type VerdictHook = HooksOfKind<'verdict'>;
export type ObserverHook = HooksOfKind<'observer'>;

/** The decision of a verdict hook chain, with the plugin that made it (for logs). */
export interface Decision {
  readonly verdict?: Verdict;
  readonly plugin?: string;
}

export class HookTimeoutError extends Error {
  constructor(plugin: string, hook: string, ms: number) {
    super(`plugin "${plugin}" hook "${hook}" did not finish within ${ms} ms`);
    this.name = 'HookTimeoutError';
  }
}

const FAILED: Verdict = { kind: 'tempfail', reply: Replies.pluginFailure };
/** What a verdict hook without plugins decides (nothing), and an observer hook without plugins: settled once, shared. */
const NO_DECISION: Promise<Decision> = Promise.resolve(Object.freeze({}));
const OBSERVED: Promise<void> = Promise.resolve();

/** Whether no verdict at all means "accepted" for a verdict hook (rcpt and auth deny by default). */
const IMPLICIT_PERMIT = { connect: true, helo: true, auth: false, mail: true, rcpt: false, message: true } as const satisfies Record<VerdictHook, boolean>;

/**
 * Runs hooks in order (`enforce: 'pre'` plugins, then the rest, then `post`; config order within each
 * group). A plugin that throws, returns something that is not a verdict, or exceeds its timeout gives
 * `451 4.3.0` and an error log naming the plugin and the hook: never an accept.
 */
export class PluginDriver {
  readonly plugins: readonly LoadedPlugin[];

  constructor(plugins: readonly LoadedPlugin[], private readonly log: Logger, private readonly metrics?: RelayMetrics) {
    const rank = (p: LoadedPlugin) => (p.instance.enforce === 'pre' ? 0 : p.instance.enforce === 'post' ? 2 : 1);
    // Array.prototype.sort is stable, so config order holds within each group.
    this.plugins = [...plugins].sort((a, b) => rank(a) - rank(b));
    // Computed once: hooks are dispatched for every command of every session.
    for (const hook of HOOK_NAMES) this.byHook.set(hook, this.plugins.filter((p) => typeof p.instance.hooks[hook] === 'function'));
  }
  private readonly byHook = new Map<HookName, LoadedPlugin[]>();

  /** The plugins implementing each hook, in the order they run (for `portcullis check`). */
  hookOrder(): Record<HookName, string[]> {
    const out = {} as Record<HookName, string[]>;
    for (const hook of HOOK_NAMES) out[hook] = this.with(hook).map((p) => p.instance.name);
    return out;
  }

  has(hook: HookName): boolean {
    return this.with(hook).length > 0;
  }

  /**
   * Verdict hooks: the first plugin that returns a verdict decides. A hook no plugin implements
   * decides nothing (its default applies), at the cost of one shared settled promise: most hooks of
   * a session have no plugin in a given config, and each call used to build an async function's
   * promise and closures for nothing.
   */
  verdict<H extends VerdictHook>(hook: H, args: Parameters<HookSignatures[H]>, log: Logger = this.log): Promise<Decision> {
    return this.with(hook).length ? this.runVerdict(hook, args, log) : NO_DECISION;
  }

  private async runVerdict<H extends VerdictHook>(hook: H, args: Parameters<HookSignatures[H]>, log: Logger): Promise<Decision> {
    // Conditional tempfails (deferIfPermit / deferIfReject) wait for the rest of the chain.
    let ifPermit: Decision | undefined;
    let ifReject: Decision | undefined;
    const decide = (d: Decision): Decision => {
      const v = d.verdict;
      const held = v?.kind === 'accept' ? ifPermit : v?.kind === 'reject' ? ifReject : undefined;
      const out = held ?? d;
      if (out.verdict && out.verdict.kind !== 'accept') {
        log.info({ plugin: out.plugin, hook, verdict: out.verdict.kind, reply: out.verdict.reply, ...(held ? { instead: { plugin: d.plugin, verdict: v!.kind } } : {}) }, 'hook verdict');
      }
      if (out.verdict) this.noteVerdict(out.plugin!, hook, out.verdict);
      return out;
    };
    for (const p of this.with(hook)) {
      let result: unknown;
      try {
        result = await this.call(p, hook, args);
      } catch (err) {
        this.logFailure(log, p, hook, err);
        return { verdict: FAILED, plugin: p.instance.name };
      }
      if (result === undefined || result === null) continue;
      if (!isVerdict(result)) {
        this.logFailure(log, p, hook, new TypeError(`returned ${describe(result)}, expected a verdict or undefined`));
        return { verdict: FAILED, plugin: p.instance.name };
      }
      if (result.kind === 'tempfail' && result.when === 'permit') {
        ifPermit ??= { verdict: result, plugin: p.instance.name };
        continue;
      }
      if (result.kind === 'tempfail' && result.when === 'reject') {
        ifReject ??= { verdict: result, plugin: p.instance.name };
        continue;
      }
      return decide({ verdict: result, plugin: p.instance.name });
    }
    // No plugin decided: the hook's own default is the final decision.
    if (IMPLICIT_PERMIT[hook]) return ifPermit ? decide(ifPermit) : {};
    return ifReject ? decide(ifReject) : {};
  }

  /** The data hook: every plugin may hand back stream handlers. A failure is a verdict for the message. */
  async data(args: Parameters<HookSignatures['data']>, log: Logger = this.log): Promise<{ handlers: Array<{ plugin: LoadedPlugin; handlers: DataHandlers }>; failed?: Decision }> {
    const handlers: Array<{ plugin: LoadedPlugin; handlers: DataHandlers }> = [];
    for (const p of this.with('data')) {
      try {
        const h = (await this.call(p, 'data', args)) as DataHandlers | undefined;
        if (h) handlers.push({ plugin: p, handlers: h });
      } catch (err) {
        this.logFailure(log, p, 'data', err);
        return { handlers, failed: { verdict: FAILED, plugin: p.instance.name } };
      }
    }
    return { handlers };
  }

  /** The route hook: the first plugin returning a next hop (or a verdict) decides. */
  async route(args: Parameters<HookSignatures['route']>, log: Logger = this.log): Promise<{ hop?: NextHop; verdict?: Verdict; plugin?: string }> {
    for (const p of this.with('route')) {
      let result: unknown;
      try {
        result = await this.call(p, 'route', args);
      } catch (err) {
        this.logFailure(log, p, 'route', err);
        return { verdict: FAILED, plugin: p.instance.name };
      }
      if (result === undefined || result === null) continue;
      if (isVerdict(result)) return { verdict: result, plugin: p.instance.name };
      const hop = result as NextHop;
      if (!Array.isArray(hop.hosts) || hop.hosts.length === 0) {
        this.logFailure(log, p, 'route', new TypeError(`returned ${describe(result)}, expected a NextHop with hosts`));
        return { verdict: FAILED, plugin: p.instance.name };
      }
      return { hop, plugin: p.instance.name };
    }
    return {};
  }

  /** Observer hooks: all run in parallel; failures are logged and change nothing. */
  observe<H extends ObserverHook>(hook: H, args: Parameters<HookSignatures[H]>, log: Logger = this.log): Promise<void> {
    const plugins = this.with(hook);
    if (!plugins.length) return OBSERVED;
    return Promise.all(plugins.map((p) => this.call(p, hook, args).catch((err: unknown) => this.logFailure(log, p, hook, err)))).then(() => undefined);
  }

  /** Wraps a promise-returning step of a plugin (a stream reader, a part screener) with its timeout. */
  guard<T>(p: LoadedPlugin, hook: string, work: () => T | Promise<T>): Promise<T> {
    const m = this.metrics;
    const t0 = m?.enabled ? performance.now() : 0;
    const settled = m?.enabled ? () => m.hookTime(p.instance.name, hook, (performance.now() - t0) / 1000) : undefined;
    // The work is called at once: a synchronous hook (most policy hooks) has finished when it
    // returns, so it needs no timer, and a throw becomes the rejection. Only a promise is bounded by
    // the timeout (a timer per hook call was most of the dispatch cost).
    let result: T | Promise<T>;
    try {
      result = work();
    } catch (err) {
      settled?.();
      return Promise.reject(err);
    }
    if (!isThenable(result)) {
      settled?.();
      return Promise.resolve(result);
    }
    return withTimeout(Promise.resolve(result), p.timeoutMs, () => new HookTimeoutError(p.instance.name, hook, p.timeoutMs), settled);
  }

  /** Counts a verdict for /metrics (the data pass reports its own through this too). */
  noteVerdict(plugin: string, hook: string, v: Verdict): void {
    this.metrics?.verdict(plugin, hook, v.kind, v.reply?.enhanced ?? '');
  }

  logFailure(log: Logger, p: LoadedPlugin, hook: string, err: unknown): void {
    this.metrics?.pluginError(p.instance.name, hook, err instanceof HookTimeoutError ? 'timeout' : err instanceof TypeError && /^returned /.test(err.message) ? 'invalid' : 'error');
    log.error({ plugin: p.instance.name, hook, err }, `plugin "${p.instance.name}" failed in hook "${hook}": ${(err as Error)?.message ?? String(err)}`);
  }

  async close(): Promise<void> {
    for (const p of [...this.plugins].reverse()) {
      try {
        await p.instance.close?.();
      } catch (err) {
        this.logFailure(this.log, p, 'close', err);
      }
    }
  }

  private with(hook: HookName): LoadedPlugin[] {
    return this.byHook.get(hook)!;
  }

  private call(p: LoadedPlugin, hook: HookName, args: readonly unknown[]): Promise<unknown> {
    const fn = p.instance.hooks[hook] as (...a: unknown[]) => unknown;
    // The plugin gets its own view of the transaction (scope.ts): `txn.edits` records its name, in
    // this hook and in the raw reader and part screeners that close over the same view.
    const first = asPlugin(args[0], p.instance.name);
    const own = first === args[0] ? (args as unknown[]) : [first, ...args.slice(1)];
    return this.guard(p, hook, () => fn.apply(p.instance.hooks, own));
  }
}

function isThenable<T>(v: T | Promise<T>): v is Promise<T> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';
}

function describe(v: unknown): string {
  try {
    return JSON.stringify(v)?.slice(0, 80) ?? String(v);
  } catch {
    return typeof v;
  }
}
