import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { DependencyContainer } from 'tsyringe';
import type { Logger } from 'pino';
import type { PluginDefinition } from '../api/plugin.js';
import { Tokens } from '../api/tokens.js';
import type { RelayConfig } from '../config/schema.js';
import type { RelayMetrics } from '../telemetry/metrics.js';
import { PluginDriver, type LoadedPlugin } from '../plugins/driver.js';
import type { DriverGenerations } from '../plugins/generations.js';
import { loadPlugins } from '../plugins/loader.js';
import type { ConnectionGate } from '../listen/connection-gate.js';
import type { Listeners } from '../listen/listeners.js';
import type { DiskGuard } from '../spool/disk-guard.js';
import type { DeliveryQueue } from '../delivery/queue.js';
import { registerGateAndGuard } from '../services/container.js';

/** What a reload reads and replaces. */
export interface ReloadTarget {
  readonly config: RelayConfig;
  readonly configDir: string;
  readonly configFile: string;
  readonly container: DependencyContainer;
  readonly log: Logger;
  readonly metrics: RelayMetrics;
  readonly gate: ConnectionGate;
  readonly diskGuard: DiskGuard;
  readonly generations: DriverGenerations;
  readonly queue: DeliveryQueue;
  readonly listeners: Listeners;
  readonly pluginSources: { readonly builtins?: Readonly<Record<string, PluginDefinition>>; readonly resolveFrom?: readonly string[] };
  /** Makes the new configuration, gate and disk guard the running ones. */
  adopt(next: RelayConfig, gate: ConnectionGate, diskGuard: DiskGuard): void;
}

/**
 * Validates `next`, sets its plugins up and then swaps it in (see `Relay.reload`); on any error the
 * running configuration stays and the error is thrown.
 */
export async function applyConfig(r: ReloadTarget, next: RelayConfig): Promise<{ plugins: string[] }> {
  try {
    const { ConfigError } = await import('../config/load.js');
    const fixed: Array<[string, unknown, unknown]> = [
      ['listen', r.config.listen, next.listen],
      ['spool.dir', path.resolve(r.configDir, r.config.spool.dir), path.resolve(r.configDir, next.spool.dir)],
      ['admin', r.config.admin, next.admin],
      ['workers', r.config.workers, next.workers],
      ['log.file', r.config.log.file, next.log.file],
      ['sharedState', r.config.sharedState, next.sharedState],
    ];
    const problems = fixed.filter(([, a, b]) => JSON.stringify(a) !== JSON.stringify(b)).map(([key]) => ({ path: key, message: 'cannot change while the relay runs; restart it to apply this change (the running configuration is kept)' }));
    let tls: { key: Buffer; cert: Buffer } | undefined;
    if (next.tls) {
      try {
        tls = { key: readFileSync(path.resolve(r.configDir, next.tls.key)), cert: readFileSync(path.resolve(r.configDir, next.tls.cert)) };
      } catch (err) {
        problems.push({ path: 'tls', message: `cannot read the key or certificate: ${(err as Error).message}` });
      }
    }
    if (problems.length) throw new ConfigError(r.configFile, problems);
    // The new plugins see the new config and add their checks to a new gate; on failure the
    // running ones are put back.
    r.container.registerInstance(Tokens.Config, next);
    registerGateAndGuard(r.container, next, r.configDir, r.log);
    let plugins: LoadedPlugin[];
    try {
      plugins = await loadPlugins(next.plugins, { file: r.configFile, configDir: r.configDir, container: r.container, log: r.log, builtins: r.pluginSources.builtins, resolveFrom: r.pluginSources.resolveFrom, registry: r.metrics.registry });
    } catch (err) {
      r.container.registerInstance(Tokens.Config, r.config);
      r.container.registerInstance(Tokens.ConnectionGate, r.gate);
      r.container.registerInstance(Tokens.DiskGuard, r.diskGuard);
      throw err;
    }
    const driver = new PluginDriver(plugins, r.log, r.metrics);
    const old = r.generations.replace(driver);
    r.adopt(next, r.container.resolve<ConnectionGate>(Tokens.ConnectionGate), r.container.resolve<DiskGuard>(Tokens.DiskGuard));
    r.container.registerInstance(Tokens.PluginDriver, driver);
    r.queue.setDriver(driver, { hostname: next.hostname, ...next.delivery });
    r.listeners.reconfigure(next, tls);
    r.metrics.reloaded(true);
    const names = plugins.map((p) => p.instance.name);
    r.log.info({ plugins: names, openSessions: r.generations.usersOf(old) }, 'configuration reloaded: new sessions use it');
    return { plugins: names };
  } catch (err) {
    r.metrics.reloaded(false);
    r.log.error({ err: { message: (err as Error).message } }, `configuration reload failed, keeping the running configuration: ${(err as Error).message}`);
    throw err;
  }
}
