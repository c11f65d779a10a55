// tsyringe needs the Reflect metadata polyfill loaded before it is first imported; importing the
// test kit first thing makes that true for any test (this was "tsyringe requires a reflect polyfill").
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import { ConnectionGate, parseConfig, parseHeaderSection, toAddress, Tokens, type Address, type AuthAttempt, type DataHandlers, type HookName, type LoadedPlugin, type MessageInfo, type PluginDefinition, type Reply, type RelayConfigInput, type Session, type Transaction, type Verdict } from '@portcullis/core';
import { createSharedState, DiskGuard, loadPlugins, MessageEditRecorder, newQueueId, PluginDriver, SessionState, Spool, TransactionState } from '@portcullis/core/internal';
import type { Logger } from 'pino';
import type { FakeClock } from './fake-clock.js';
import { memoryLogger, type LogEntry } from './memory-log.js';
import { ScriptedResolver, type DnsScript } from './scripted-dns.js';

/** What the built session looks like; every field has a test default. */
export interface SessionInit {
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  readonly localAddress?: string;
  readonly localPort?: number;
  readonly secure?: boolean;
  readonly helo?: string;
  readonly user?: string;
  readonly listener?: Partial<Session['listener']>;
  readonly notes?: Record<string, unknown>;
}

export interface CallHookOptions {
  /** The plugin's `with:` block; validated by its schema as the relay does (errors name the key path). */
  readonly options?: unknown;
  /** Relay config (hostname, limits, ...) the plugin may resolve through `Tokens.Config`. */
  readonly config?: Partial<RelayConfigInput>;
  readonly session?: SessionInit;
  /** Envelope of the transaction for mail/rcpt/data/message hooks. */
  readonly mailFrom?: string;
  /** Recipients already accepted (for rcpt: before the one being decided). */
  readonly recipients?: readonly string[];
  /** For `rcpt`: the address being decided; for `mail`: defaults to `mailFrom`. */
  readonly address?: string;
  /** For `helo`: the name; default the session's helo or `client.test`. */
  readonly hostname?: string;
  /** For `auth`. */
  readonly auth?: Partial<AuthAttempt>;
  /** For `message` and `data`: the message; its header section becomes `txn.headers` / `info.headers`. */
  readonly message?: string | Buffer;
  /** For `route`: the recipient domain. */
  readonly domain?: string;
  /** Explicit arguments, overriding all of the above. */
  readonly args?: readonly unknown[];
  readonly dns?: ScriptedResolver | DnsScript;
  readonly clock?: FakeClock | (() => number);
  /** The hook's timeout, as the config's `timeout` (default 30 s). */
  readonly timeout?: number;
}

export interface CallHookResult {
  /** What the hook returned (after awaiting), undefined when it threw. */
  readonly result: unknown;
  /** The error the hook threw (or its timeout), if any. */
  readonly error?: unknown;
  /** The verdict as the relay takes it: a throw, a timeout or a non-verdict is `451 4.3.0`. */
  readonly verdict?: Verdict;
  /** The reply the client would get at this stage, when the hook decides one. */
  readonly reply?: Reply;
  /** For `data`: the verdict of each `raw` reader after reading the message. */
  readonly rawVerdicts?: ReadonlyArray<Verdict | undefined>;
  /** The session and transaction the hook saw (notes, added headers). */
  readonly session: Session;
  readonly transaction: Transaction & { readonly added: readonly string[]; readonly edits: MessageEditRecorder };
  readonly logs: LogEntry[];
}

/**
 * Runs one hook of one plugin, the way the relay would, with a session and transaction built for
 * the test: options are validated, `setup` runs with a container holding the relay's tokens
 * (config, logger, clock, scripted DNS), the hook runs with its timeout, and the plugin is closed.
 */
export async function callHook(definition: PluginDefinition, hook: HookName, opts: CallHookOptions = {}): Promise<CallHookResult> {
  const setup = await setupPlugin(definition, opts);
  const { driver, plugin, container, logger, entries } = setup;
  try {
    const session = buildSession(container, logger, driver, opts.session);
    const transaction = buildTransaction(session, opts);
    const args = opts.args ?? defaultArgs(hook, session, transaction, opts);
    const fn = plugin.instance.hooks[hook] as ((...a: unknown[]) => unknown) | undefined;
    if (!fn) throw new Error(`callHook: plugin "${definition.name}" has no "${hook}" hook (it has: ${Object.keys(plugin.instance.hooks).join(', ') || 'none'})`);
    let result: unknown;
    let error: unknown;
    try {
      result = await driver.guard(plugin, hook, () => fn.apply(plugin.instance.hooks, args as unknown[]));
    } catch (err) {
      error = err;
      driver.logFailure(logger, plugin, hook, err);
    }
    const verdict = error !== undefined ? failed() : asVerdict(result, hook);
    let rawVerdicts: Array<Verdict | undefined> | undefined;
    if (hook === 'data' && !error && result && opts.message !== undefined) {
      const handlers = result as DataHandlers;
      if (handlers.raw) {
        const raw = handlers.raw.bind(handlers);
        rawVerdicts = [await driver.guard(plugin, 'data.raw', () => raw(Readable.from([messageBuffer(opts.message!)]))).then((v) => v ?? undefined, () => failed())];
      }
    }
    return { result, error, verdict, reply: verdict && verdict.kind !== 'accept' ? verdict.reply : undefined, rawVerdicts, session, transaction, logs: entries };
  } finally {
    await setup.close();
  }
}

/** A plugin set up as the relay would (options validated, services registered), ready to call. */
export interface SetUpPlugin {
  readonly plugin: LoadedPlugin;
  readonly driver: PluginDriver;
  readonly container: DependencyContainer;
  readonly logger: Logger;
  readonly entries: LogEntry[];
  /** Closes the plugin and removes the temp folder. */
  close(): Promise<void>;
}

/**
 * Validates options and runs `setup` with the relay's services (config, logger, clock, spool in a
 * temp folder, scripted DNS). Bad options throw the relay's ConfigError (`plugins[0].with.key: ...`).
 */
export async function setupPlugin(definition: PluginDefinition, opts: Pick<CallHookOptions, 'options' | 'config' | 'dns' | 'clock' | 'timeout'> = {}): Promise<SetUpPlugin> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-hook-'));
  const { logger, entries } = memoryLogger();
  const resolver = opts.dns instanceof ScriptedResolver ? opts.dns : new ScriptedResolver(opts.dns ?? {});
  const cleanup = () => {
    resolver.cancel();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const config = parseConfig({ hostname: 'relay.test', listen: [{ host: '127.0.0.1', port: 25 }], ...opts.config, spool: { dir } });
    const container = rootContainer.createChildContainer();
    container.registerInstance(Tokens.Config, config);
    container.registerInstance(Tokens.Logger, logger);
    container.registerInstance(Tokens.Clock, opts.clock ?? Date.now);
    container.registerInstance(Tokens.Spool, new Spool(dir));
    container.registerInstance(Tokens.Resolver, resolver);
    container.registerInstance(Tokens.ListenAddresses, ['127.0.0.1:25']);
    // The same services Relay.create registers, in their in-process form (no Redis, no socket).
    container.registerInstance(Tokens.SharedState, await createSharedState({}, logger));
    container.registerInstance(Tokens.ConnectionGate, new ConnectionGate());
    container.registerInstance(Tokens.DiskGuard, new DiskGuard(dir, 0, logger));
    const plugins = await loadPlugins(
      [{ use: definition.name, with: opts.options, timeout: opts.timeout ?? 30_000, enabled: true }],
      { file: '<test>', configDir: process.cwd(), container, log: logger, builtins: { [definition.name]: definition } },
    );
    const driver = new PluginDriver(plugins, logger);
    return {
      plugin: plugins[0]!,
      driver,
      container,
      logger,
      entries,
      async close() {
        try {
          await driver.close();
        } finally {
          cleanup();
        }
      },
    };
  } catch (err) {
    cleanup();
    throw err;
  }
}

const failed = (): Verdict => ({ kind: 'tempfail', reply: { code: 451, enhanced: '4.3.0', text: 'Temporary local problem, try again later' } });

function asVerdict(result: unknown, hook: HookName): Verdict | undefined {
  if (result === undefined || result === null) return undefined;
  if (hook === 'data' || hook === 'route' || hook === 'disconnect' || hook === 'delivered' || hook === 'deferred' || hook === 'bounced') {
    const v = result as Partial<Verdict>;
    return typeof v === 'object' && typeof v.kind === 'string' && ['accept', 'reject', 'tempfail', 'disconnect'].includes(v.kind) ? (v as Verdict) : undefined;
  }
  const v = result as Partial<Verdict>;
  if (typeof v === 'object' && ['accept', 'reject', 'tempfail', 'disconnect'].includes(v.kind as string)) return v as Verdict;
  return failed(); // not a verdict: the relay answers 451 as for a throw
}

function messageBuffer(m: string | Buffer): Buffer {
  return typeof m === 'string' ? Buffer.from(m.replace(/\r?\n/g, '\r\n')) : m;
}

/**
 * The relay's own SessionState (packages/core session/session.ts), over the session record smtp-server
 * would hand the relay for a client like the one described: the plugin sees the getters of production.
 */
function buildSession(container: DependencyContainer, log: Logger, driver: PluginDriver, init: SessionInit = {}): SessionState {
  const child = container.createChildContainer();
  const remoteAddress = init.remoteAddress ?? '127.0.0.1';
  const raw = {
    id: 'test-session',
    remoteAddress,
    remotePort: init.remotePort ?? 50000,
    localAddress: init.localAddress ?? '127.0.0.1',
    localPort: init.localPort ?? 25,
    clientHostname: `[${remoteAddress}]`,
    openingCommand: 'EHLO',
    hostNameAppearsAs: init.helo ?? 'client.test',
    transmissionType: init.secure ? 'ESMTPS' : 'ESMTP',
    secure: init.secure ?? false,
    user: init.user,
    envelope: { mailFrom: false, rcptTo: [] },
    xClient: new Map(),
    xForward: new Map(),
  } as unknown as ConstructorParameters<typeof SessionState>[0];
  const listener: Session['listener'] = { name: '127.0.0.1:25', port: 25, tls: 'none', auth: 'optional', ...init.listener };
  const config = container.resolve<ConstructorParameters<typeof SessionState>[6]>(Tokens.Config);
  const session = new SessionState(raw, listener, child, log.child({ session: 'test-session' }), undefined, driver, config, false);
  Object.assign(session.notes, init.notes);
  child.registerInstance(Tokens.Session, session);
  return session;
}

/** The relay's own TransactionState: its `addHeader` folds, its edits are recorded (not applied: no spool here). */
function buildTransaction(session: SessionState, opts: CallHookOptions): TransactionState & { edits: MessageEditRecorder } {
  const message = opts.message === undefined ? undefined : messageBuffer(opts.message);
  const id = newQueueId();
  // A test reads `transaction.edits.edits`.
  const txn = new TransactionState(id, session, toAddress(opts.mailFrom ?? 'sender@example.org', {}), new MessageEditRecorder(os.tmpdir(), id)) as TransactionState & { edits: MessageEditRecorder };
  txn.recipients.push(...(opts.recipients ?? []).map((r) => toAddress(r, {})));
  // Set as the intake does once the header section has arrived.
  if (message) (txn as { headers?: Transaction['headers'] }).headers = parseHeaderSection(message);
  return txn;
}

function defaultArgs(hook: HookName, session: Session, txn: Transaction, opts: CallHookOptions): unknown[] {
  const addr = (a: string | undefined, fallback: Address): Address => (a === undefined ? fallback : toAddress(a, {}));
  switch (hook) {
    case 'connect':
    case 'disconnect':
      return [session];
    case 'helo':
      return [session, opts.hostname ?? session.helo ?? 'client.test'];
    case 'auth':
      return [session, { method: 'PLAIN', username: 'user', password: 'secret', ...opts.auth }];
    case 'mail':
      return [txn, addr(opts.address, txn.mailFrom)];
    case 'rcpt':
      return [txn, toAddress(opts.address ?? 'rcpt@example.com', {})];
    case 'data':
      return [txn];
    case 'message': {
      const bytes = opts.message === undefined ? Buffer.alloc(0) : messageBuffer(opts.message);
      const size = bytes.length;
      const spooled = { size, open: () => Readable.from([bytes], { objectMode: false }) };
      const info: MessageInfo = { size, replacedParts: [], headers: txn.headers ?? parseHeaderSection(''), spooled };
      return [txn, info];
    }
    case 'route':
      return [opts.domain ?? 'example.com', { id: txn.id, mailFrom: txn.mailFrom.address, recipients: [...(opts.recipients ?? [`rcpt@${opts.domain ?? 'example.com'}`])], receivedAt: Date.now(), size: 0 }];
    case 'delivered':
    case 'deferred':
    case 'bounced': {
      const message = { id: txn.id, mailFrom: txn.mailFrom.address, recipients: [...(opts.recipients ?? ['rcpt@example.com'])], receivedAt: Date.now(), size: 0 };
      return [{ message, recipient: message.recipients[0], response: '250 2.0.0 Ok', attempts: 1, ...(hook === 'deferred' ? { retryAt: Date.now() + 60_000 } : {}) }];
    }
  }
}
