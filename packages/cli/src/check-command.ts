import path from 'node:path';
import { formatDuration, type LoadedConfig, type Relay } from '@portcullis/core';
import { describePluginSource } from './plugin-source.js';

export interface CheckReport {
  readonly file: string;
  readonly listeners: Array<{ name: string; host: string; port: number; tls: string; auth: string; greetingDelay?: number }>;
  readonly spool: string;
  readonly plugins: Array<{ name: string; use: string; file?: string; version?: string; enforce?: 'pre' | 'post'; timeoutMs: number; hooks: string[] }>;
  readonly disabled: string[];
  readonly hookOrder: Record<string, string[]>;
}

/** What `portcullis check` reports about a config that loaded: listeners, plugins as resolved, hook order. */
export function checkReport({ loaded, relay }: { loaded: LoadedConfig; relay: Relay }): CheckReport {
  const { config } = loaded;
  return {
    file: loaded.file,
    listeners: config.listen.map((l) => ({ name: l.name ?? `${l.host}:${l.port}`, host: l.host, port: l.port, tls: l.tls, auth: l.auth, greetingDelay: l.greetingDelay })),
    spool: path.resolve(loaded.dir, config.spool.dir),
    plugins: relay.driver.plugins.map((p) => ({
      name: p.instance.name,
      use: p.source,
      ...describePluginSource(p.source, loaded.dir),
      enforce: p.instance.enforce,
      timeoutMs: p.timeoutMs,
      hooks: Object.keys(p.instance.hooks).filter((h) => typeof (p.instance.hooks as Record<string, unknown>)[h] === 'function'),
    })),
    disabled: config.plugins.filter((p) => !p.enabled).map((p) => p.use),
    hookOrder: relay.driver.hookOrder(),
  };
}

export function formatCheckReport(r: CheckReport): string {
  const out: string[] = [`${r.file}: the configuration is valid`, '', 'Listeners:'];
  const nameWidth = Math.max(...r.listeners.map((l) => l.name.length));
  for (const l of r.listeners) {
    // The core's default: smtp-server's 100 ms for anonymous listeners, none where AUTH is required.
    const delay = l.greetingDelay === undefined ? `${l.auth === 'required' ? '0ms' : '100ms'} (default)` : formatDuration(l.greetingDelay);
    out.push(`  ${l.name.padEnd(nameWidth)}  ${l.host}:${l.port}, tls ${l.tls}, auth ${l.auth}, greeting delay ${delay}`);
  }
  out.push('', `Spool: ${r.spool}`, '', 'Plugins, in the order they run:');
  if (!r.plugins.length) out.push('  (none: every recipient is refused with 550 5.7.1, the relay is closed)');
  r.plugins.forEach((p, i) => {
    const from = p.file ? `${p.file}${p.version ? ` (version ${p.version})` : ''}` : '(given in code)';
    out.push(`  ${i + 1}. ${p.name}${p.enforce ? ` [enforce: ${p.enforce}]` : ''}`);
    out.push(`     use: ${p.use}`, `     from: ${from}`, `     hooks: ${p.hooks.join(', ') || '(none)'}`, `     timeout: ${formatDuration(p.timeoutMs)}`);
  });
  for (const d of r.disabled) out.push(`  -  ${d} (enabled: false, not loaded)`);
  out.push('', 'Hook order:');
  const width = Math.max(...Object.keys(r.hookOrder).map((h) => h.length));
  for (const [hook, names] of Object.entries(r.hookOrder)) out.push(`  ${hook.padEnd(width)}  ${names.length ? names.join(' -> ') : '-'}`);
  return out.join('\n') + '\n';
}
