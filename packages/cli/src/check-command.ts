import path from 'node:path';
import { formatDuration, isNetworkList, type LoadedConfig, type Relay } from '@portcullis/core';
import { describePluginSource } from './plugin-source.js';

export interface CheckReport {
  readonly file: string;
  readonly listeners: Array<{ name: string; host: string; port: number; tls: string; auth: string; greetingDelay?: number; trusts: Record<string, string[]> }>;
  readonly spool: string;
  readonly plugins: Array<{ name: string; use: string; file?: string; version?: string; enforce?: 'pre' | 'post'; timeoutMs: number; hooks: string[]; trusts: Record<string, string[]> }>;
  readonly disabled: string[];
  readonly hookOrder: Record<string, string[]>;
  /** What plugins found checking themselves (`check()`; with `--connect`, their backends too). */
  readonly pluginChecks?: PluginCheckLine[];
}

export interface PluginCheckLine {
  readonly plugin: string;
  readonly ok: boolean;
  readonly text: string;
}

/** Runs every plugin's own `check()`; a check that throws is a failed line naming the plugin. */
export async function pluginChecks(relay: Relay, connect: boolean): Promise<PluginCheckLine[]> {
  const out: PluginCheckLine[] = [];
  for (const p of relay.driver.plugins) {
    if (typeof p.instance.check !== 'function') continue;
    try {
      for (const r of await p.instance.check({ connect })) out.push({ plugin: p.instance.name, ok: r.ok, text: r.text });
    } catch (err) {
      out.push({ plugin: p.instance.name, ok: false, text: `check failed: ${(err as Error).message}` });
    }
  }
  return out;
}

/** What `portcullis check` reports about a config that loaded: listeners, plugins as resolved, hook order. */
export function checkReport({ loaded, relay }: { loaded: LoadedConfig; relay: Relay }): CheckReport {
  const { config } = loaded;
  return {
    file: loaded.file,
    listeners: config.listen.map((l) => ({
      name: l.name ?? `${l.host}:${l.port}`,
      host: l.host,
      port: l.port,
      tls: l.tls,
      auth: l.auth,
      greetingDelay: l.greetingDelay,
      trusts: { xclient: l.xclient.toStrings(), xforward: l.xforward.toStrings(), proxyProtocol: l.proxyProtocol.toStrings() },
    })),
    spool: path.resolve(loaded.dir, config.spool.dir),
    plugins: relay.driver.plugins.map((p) => ({
      name: p.instance.name,
      use: p.source,
      ...describePluginSource(p.source, loaded.dir),
      enforce: p.instance.enforce,
      timeoutMs: p.timeoutMs,
      hooks: Object.keys(p.instance.hooks).filter((h) => typeof (p.instance.hooks as Record<string, unknown>)[h] === 'function'),
      trusts: networksIn(p.options),
    })),
    disabled: config.plugins.filter((p) => !p.enabled).map((p) => p.use),
    hookOrder: relay.driver.hookOrder(),
  };
}

/** Every network list in a plugin's validated options, by key path (`trustedNetworks`, `normalize.networks`). */
function networksIn(options: unknown, prefix = '', out: Record<string, string[]> = {}, depth = 0): Record<string, string[]> {
  if (isNetworkList(options)) {
    out[prefix || '(options)'] = options.toStrings();
    return out;
  }
  if (depth > 8 || !options || typeof options !== 'object') return out;
  const entries = Array.isArray(options) ? options.map((v, i) => [`[${i}]`, v] as const) : Object.entries(options).map(([k, v]) => [prefix ? `.${k}` : k, v] as const);
  for (const [k, v] of entries) networksIn(v, prefix + k, out, depth + 1);
  return out;
}

/** `10.0.0.0/8, fd00::/8`, or `nobody` for an empty list. */
function networkText(list: readonly string[]): string {
  return list.length ? list.join(', ') : 'nobody';
}

export function formatCheckReport(r: CheckReport): string {
  const out: string[] = [`${r.file}: the configuration is valid`, '', 'Listeners:'];
  const nameWidth = Math.max(...r.listeners.map((l) => l.name.length));
  for (const l of r.listeners) {
    // The core's default: smtp-server's 100 ms for anonymous listeners, none where AUTH is required.
    const delay = l.greetingDelay === undefined ? `${l.auth === 'required' ? '0ms' : '100ms'} (default)` : formatDuration(l.greetingDelay);
    out.push(`  ${l.name.padEnd(nameWidth)}  ${l.host}:${l.port}, tls ${l.tls}, auth ${l.auth}, greeting delay ${delay}`);
    // The exact networks this listener takes a proxy's word from.
    const pad = ' '.repeat(nameWidth + 4);
    out.push(`${pad}trusts XCLIENT from: ${networkText(l.trusts['xclient']!)}; XFORWARD from: ${networkText(l.trusts['xforward']!)}; PROXY header from: ${networkText(l.trusts['proxyProtocol']!)}`);
  }
  out.push('', `Spool: ${r.spool}`, '', 'Plugins, in the order they run:');
  if (!r.plugins.length) out.push('  (none: every recipient is refused with 550 5.7.1, the relay is closed)');
  r.plugins.forEach((p, i) => {
    const from = p.file ? `${p.file}${p.version ? ` (version ${p.version})` : ''}` : '(given in code)';
    out.push(`  ${i + 1}. ${p.name}${p.enforce ? ` [enforce: ${p.enforce}]` : ''}`);
    out.push(`     use: ${p.use}`, `     from: ${from}`, `     hooks: ${p.hooks.join(', ') || '(none)'}`, `     timeout: ${formatDuration(p.timeoutMs)}`);
    for (const [key, list] of Object.entries(p.trusts)) out.push(`     trusts (${key}): ${networkText(list)}`);
  });
  for (const d of r.disabled) out.push(`  -  ${d} (enabled: false, not loaded)`);
  out.push('', 'Hook order:');
  const width = Math.max(...Object.keys(r.hookOrder).map((h) => h.length));
  for (const [hook, names] of Object.entries(r.hookOrder)) out.push(`  ${hook.padEnd(width)}  ${names.length ? names.join(' -> ') : '-'}`);
  if (r.pluginChecks?.length) {
    out.push('', 'Plugin checks:');
    for (const c of r.pluginChecks) out.push(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.plugin}: ${c.text}`);
  }
  return out.join('\n') + '\n';
}
