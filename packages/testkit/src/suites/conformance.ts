import { createHook } from 'node:async_hooks';
import { ConfigError, definePlugin, isPluginDefinition, type HookName, type PluginDefinition, type PluginHooks, type PluginInstanceParts, accept } from '@portcullis/core';
import { InMemoryRelay, inject, type InjectResult, type PluginSpec, type SmtpReply } from '../in-memory/inject.js';
import { setupPlugin } from '../in-memory/call-hook.js';
import { ScriptedResolver, type DnsScript } from '../in-memory/scripted-dns.js';

type Fn = (...a: never[]) => unknown;
interface MochaLike {
  describe(title: string, fn: () => void): unknown;
  it(title: string, fn: () => unknown): { timeout?(ms: number): unknown } | unknown;
}

/** What the suite needs to know about a plugin to exercise it. */
export interface ConformanceFixtures {
  /** Options (`with:`) under which the plugin sets up; omit for a plugin without options. */
  readonly options?: unknown;
  /** Bad options, each rejected with an error naming this key path below `with` (`domains.x.nexthop`). */
  readonly invalid?: ReadonlyArray<{ readonly options: unknown; readonly path: string }>;
  /** Plugins after this one in the session tests; default one that accepts every recipient and routes to `hop.test:25`. */
  readonly companions?: readonly PluginSpec[];
  /** Scripted DNS for the session tests. */
  readonly dns?: DnsScript;
  /** The session's envelope and message; defaults fit a relay that hosts `example.com`. */
  readonly mail?: { readonly from?: string; readonly to?: string; readonly message?: string | Buffer };
  /** Who the client is in the session tests (e.g. a trusted address). */
  readonly client?: { readonly remoteAddress?: string; readonly secure?: boolean };
  /**
   * Options under which the plugin's backend never answers (a clamd that accepts and stays silent);
   * default: the fixture options with every DNS query hanging.
   */
  readonly stall?: { readonly options?: unknown | (() => unknown); readonly dns?: 'hang' | DnsScript };
  /** Hooks the suite should leave out of the throwing-hook test, with the reason (shown in the title). */
  readonly skipThrowing?: Readonly<Partial<Record<HookName, string>>>;
  /** Mocha's `describe` and `it`, when not the globals. */
  readonly mocha?: MochaLike;
}

const SESSION_HOOKS = ['connect', 'helo', 'mail', 'rcpt', 'data', 'message', 'route'] as const satisfies readonly HookName[];
const STAGE: Record<(typeof SESSION_HOOKS)[number], string> = {
  connect: '<greeting>', helo: 'MAIL', mail: 'MAIL', rcpt: 'RCPT', data: '<message>', message: '<message>', route: '<delivery>',
};

/** A stand-in for the rest of a relay: accepts every recipient and routes it to a captured next hop. */
const acceptAll = definePlugin({
  name: 'conformance-accept-all',
  setup: () => ({
    rcpt: () => accept(),
    route: () => ({ hosts: [{ host: 'hop.test', port: 25 }], name: 'conformance-hop' }),
  }),
});

/** An object every access to which throws: what a hook's own code trips on when it reads an argument. */
function poison(label: string): object {
  const fail = (): never => {
    throw new Error(`conformance: ${label} threw on access (the suite's fault injection)`);
  };
  return new Proxy({}, { get: fail, has: fail, ownKeys: fail, getOwnPropertyDescriptor: fail, getPrototypeOf: fail, set: fail, apply: fail });
}

/** The same plugin with one hook's arguments replaced by throwing ones. */
function withPoisonedHook(def: PluginDefinition, hook: HookName): PluginDefinition {
  return {
    ...def,
    async setup(options, ctx) {
      const parts = await def.setup(options, ctx);
      const hooks: PluginHooks = 'hooks' in parts && typeof parts.hooks === 'object' ? (parts.hooks as PluginHooks) : (parts as PluginHooks);
      const original = hooks[hook] as Fn | undefined;
      const replaced = { ...hooks, [hook]: (...args: unknown[]) => (original as (...a: unknown[]) => unknown).apply(hooks, args.map((_, i) => poison(`${hook} argument ${i + 1}`))) };
      return ('hooks' in parts && typeof parts.hooks === 'object' ? { ...parts, hooks: replaced } : { hooks: replaced }) as PluginInstanceParts;
    },
  };
}

function replyAt(r: InjectResult, stage: string): SmtpReply | undefined {
  return r.replies.find((x) => x.command === stage || x.command.startsWith(stage));
}

/**
 * The contract every plugin package runs (keyv-style: one suite, every package, same tests):
 * options validated with key paths; setup and close leave no handle or timer behind; a hook that
 * throws is answered 451 4.3.0 and never turns into an accept; a backend that never answers is cut
 * off by the hook timeout. Call it at the top level of a mocha test file.
 */
export function describePluginConformance(definition: PluginDefinition, fixtures: ConformanceFixtures = {}): void {
  const m: MochaLike = fixtures.mocha ?? (globalThis as unknown as MochaLike);
  const name = definition?.name ?? '(unnamed)';
  const mail = {
    from: fixtures.mail?.from ?? 'sender@example.org',
    to: fixtures.mail?.to ?? 'user@example.com',
    message: fixtures.mail?.message ?? 'From: <sender@example.org>\r\nTo: <user@example.com>\r\nSubject: conformance\r\nMessage-ID: <c@example.org>\r\n\r\nHello.\r\n',
  };
  const companions = fixtures.companions ?? [acceptAll];
  const entry = (def: PluginDefinition, extra: object = {}): PluginSpec => ({ use: def, ...(fixtures.options !== undefined ? { with: fixtures.options } : {}), ...extra });
  const session = (def: PluginDefinition, extra: { timeout?: string; dns?: ScriptedResolver | DnsScript; options?: unknown } = {}) =>
    inject({
      plugins: [{ ...entry(def, extra.timeout ? { timeout: extra.timeout } : {}), ...(extra.options !== undefined ? { with: extra.options } : {}) }, ...companions],
      dns: extra.dns ?? fixtures.dns,
      client: fixtures.client,
      mail,
    });

  m.describe(`plugin conformance: ${name}`, () => {
    m.it('is a plugin definition with a name, and an options schema when it takes options', () => {
      if (!isPluginDefinition(definition)) throw new Error('the default export is not a definePlugin() result');
      if (!/^[a-z0-9][a-z0-9-]*$/.test(definition.name)) throw new Error(`name "${definition.name}" is not kebab-case`);
      if (fixtures.options !== undefined && !definition.options) throw new Error('the fixtures give options but the plugin declares no options schema');
    });

    m.it('sets up with the fixture options and closes', async () => {
      const relay = await InMemoryRelay.create({ plugins: [entry(definition)], dns: fixtures.dns });
      await relay.close();
    });

    if (definition?.options) {
      m.it('rejects an unknown option key, naming it', async () => {
        const base = fixtures.options && typeof fixtures.options === 'object' && !Array.isArray(fixtures.options) ? fixtures.options : {};
        const err = await setupError(definition, { ...base, notAnOption: true });
        if (!err) throw new Error('an unknown key under with: was accepted silently (use z.strictObject)');
        if (!/plugins\[0\]\.with/.test(err.message) || !/notAnOption/.test(err.message)) throw new Error(`the error does not name plugins[0].with and the key: ${err.message}`);
      });
    }

    for (const bad of fixtures.invalid ?? []) {
      m.it(`rejects bad options at with.${bad.path} with that key path`, async () => {
        const err = await setupError(definition, bad.options);
        if (!err) throw new Error(`options ${JSON.stringify(bad.options)} were accepted`);
        const want = `plugins[0].with${bad.path.startsWith('[') ? '' : '.'}${bad.path}`;
        if (!err.message.includes(`${want}:`)) throw new Error(`expected the error to name "${want}", got: ${err.message}`);
      });
    }

    m.it('leaves no handle or timer behind after setup and close', async () => {
      const leaks = await leakCheck(async () => {
        const p = await setupPlugin(definition, { options: fixtures.options, dns: fixtures.dns });
        await p.close();
      });
      if (leaks.length) throw new Error(`still open after close(): ${leaks.join(', ')}`);
    });

    const hooksPromise = (async () => {
      const p = await setupPlugin(definition, { options: fixtures.options, dns: fixtures.dns });
      try {
        return Object.keys(p.plugin.instance.hooks) as HookName[];
      } finally {
        await p.close();
      }
    })();
    hooksPromise.catch(() => undefined);

    m.it('answers 451 4.3.0 for a hook that throws, and never turns the failure into an accept', async () => {
      const hooks = (await hooksPromise).filter((h): h is (typeof SESSION_HOOKS)[number] => (SESSION_HOOKS as readonly string[]).includes(h) && !fixtures.skipThrowing?.[h]);
      const baseline = await session(definition);
      const checked: string[] = [];
      for (const hook of hooks) {
        const r = await session(withPoisonedHook(definition, hook));
        const threw = r.logs.some((l) => l.plugin === name && (l.hook === hook || String(l.hook ?? '').startsWith(`${hook}.`)) && l.level >= 50);
        if (hook === 'route') {
          if (threw && r.deliveries.length) throw new Error('route threw, yet the message was delivered');
          checked.push(`${hook}${threw ? ' (threw: deferred)' : ' (ignored its arguments)'}`);
          continue;
        }
        const stage = STAGE[hook];
        const got = replyAt(r, stage);
        const base = replyAt(baseline, stage);
        if (threw) {
          if (!got || got.code !== 451 || got.enhanced !== '4.3.0') throw new Error(`${hook} threw but the ${stage} reply was ${got ? got.lines.join(' / ') : 'missing'}, expected 451 4.3.0`);
        } else if (got && base && got.code < 400 && base.code >= 400) {
          throw new Error(`${hook} with failing arguments turned ${base.code} into ${got.code}`);
        }
        if (got && got.code < 400 && r.spooled.length && threw) throw new Error(`${hook} threw, yet the message was queued`);
        checked.push(`${hook}${threw ? ' (threw: 451)' : ' (ignored its arguments)'}`);
      }
      if (!hooks.length) checked.push('no session hooks');
    });

    m.it('is cut off by its hook timeout when its backend never answers', async () => {
      const dns = fixtures.stall?.dns === undefined || fixtures.stall.dns === 'hang' ? new ScriptedResolver(fixtures.dns ?? {}, { unscripted: 'hang' }) : fixtures.stall.dns;
      const timeout = 400;
      const started = Date.now();
      const stallOptions = typeof fixtures.stall?.options === 'function' ? (fixtures.stall.options as () => unknown)() : fixtures.stall?.options;
      const r = await session(definition, { timeout: `${timeout}ms`, dns, options: stallOptions });
      const took = Date.now() - started;
      // Each of the session's hooks may wait its full timeout once; nothing may wait longer.
      const budget = (SESSION_HOOKS.length + 1) * timeout + 3000;
      if (took > budget) throw new Error(`the session took ${took} ms, more than ${budget} ms for a ${timeout} ms hook timeout`);
      const timedOut = r.logs.filter((l) => l.plugin === name && /did not finish within/.test(String(l.msg ?? '')));
      for (const t of timedOut) {
        const hook = String(t.hook ?? '').split('.')[0] as (typeof SESSION_HOOKS)[number];
        if (hook === 'route') {
          if (r.deliveries.length) throw new Error('route timed out, yet the message was delivered');
          continue;
        }
        const got = replyAt(r, STAGE[hook] ?? '<message>');
        if (got && got.code < 400) throw new Error(`${hook} timed out but the client got ${got.lines.join(' / ')}`);
      }
    });
  });
}

async function setupError(definition: PluginDefinition, options: unknown): Promise<Error | undefined> {
  try {
    const p = await setupPlugin(definition, { options });
    await p.close();
    return undefined;
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw new Error(`bad options must give a ConfigError naming the key path; got ${(err as Error)?.stack ?? String(err)}`);
  }
}

/** Resource types that keep a process alive or hold an OS handle. */
const HANDLE_TYPES = new Set(['Timeout', 'TCPWRAP', 'TCPSERVERWRAP', 'PIPEWRAP', 'PIPESERVERWRAP', 'UDPWRAP', 'FSEVENTWRAP', 'STATWATCHER', 'PROCESSWRAP', 'SIGNALWRAP', 'TTYWRAP', 'Immediate', 'FILEHANDLE']);

/** Runs `work` and lists the handles and timers it created that are still alive shortly after. */
async function leakCheck(work: () => Promise<void>): Promise<string[]> {
  // Start watching only after the caller's own synchronous work (mocha arms its test timer right
  // after the test function returns its promise).
  await new Promise<void>((resolve) => queueMicrotask(resolve));
  const alive = new Map<number, string>();
  let ignoring = false;
  const hook = createHook({
    init(id, type) {
      if (!ignoring && HANDLE_TYPES.has(type)) alive.set(id, type);
    },
    destroy(id) {
      alive.delete(id);
    },
  }).enable();
  try {
    await work();
    // Let closes finish and short timers fire (a 100 ms grace period).
    // The suite's own timers do not count (init runs synchronously inside setTimeout).
    ignoring = true;
    const grace = new Promise((r) => setTimeout(r, 150));
    ignoring = false;
    await grace;
    ignoring = true;
    const tick = new Promise((r) => setImmediate(r));
    ignoring = false;
    await tick;
  } finally {
    hook.disable();
  }
  const counts = new Map<string, number>();
  for (const t of alive.values()) counts.set(t, (counts.get(t) ?? 0) + 1);
  return [...counts].map(([t, n]) => `${n} × ${t}`);
}
