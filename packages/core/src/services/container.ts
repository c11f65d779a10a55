import path from 'node:path';
import { Resolver } from 'node:dns/promises';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import type { Logger } from 'pino';
import { Tokens, type Clock } from '../api/tokens.js';
import { Replies } from '../api/verdicts.js';
import type { RelayConfig } from '../config/schema.js';
import { replaceRegistrations } from '../adapter/tsyringe.js';
import { ConnectionGate, perAddressCheck } from '../listen/connection-gate.js';
import { defaultMinFree, DiskGuard } from '../spool/disk-guard.js';
import { Spool } from '../spool/spool.js';
import { createSharedState } from './create-shared-state.js';
import type { StateTransport } from './ipc-state.js';
import type { SharedState } from './shared-state.js';

/** The relay's container: the `Tokens.*` registrations plugins resolve in setup and in hooks. */
/** `cluster`: in a worker process, its pipe to the primary (shared state is then held there). */
export async function createContainer(config: RelayConfig, configDir: string, log: Logger, services: ReadonlyArray<readonly [symbol, unknown]> = [], cluster?: StateTransport): Promise<DependencyContainer> {
  // One registration per token: a reload replaces them (see adapter/tsyringe.ts).
  const container = replaceRegistrations(rootContainer.createChildContainer());
  container.registerInstance(Tokens.Config, config);
  container.registerInstance(Tokens.Logger, log);
  container.registerInstance<Clock>(Tokens.Clock, Date.now);
  container.registerInstance(Tokens.Spool, new Spool(path.resolve(configDir, config.spool.dir), { inlineMax: config.spool.inlineMax, segmentSize: config.spool.segmentSize }));
  const resolver = new Resolver({ timeout: config.dns.timeout, tries: 2 });
  if (config.dns.servers?.length) resolver.setServers(config.dns.servers);
  container.registerInstance(Tokens.Resolver, resolver);
  container.registerInstance(Tokens.ListenAddresses, config.listen.map((l) => (l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`)));
  container.registerInstance(Tokens.SharedState, await createSharedState({ redis: config.sharedState.redis && { url: config.sharedState.redis.url, keyPrefix: config.sharedState.redis.keyPrefix, timeoutMs: config.sharedState.redis.timeout } }, log, cluster));
  for (const [token, value] of services) container.registerInstance(token, value);
  // After the services: the gate counts in whatever SharedState ended up registered.
  registerGateAndGuard(container, config, configDir, log);
  return container;
}

/**
 * A new connection gate (the core's per-address check first; plugins add theirs in setup) and
 * disk guard, registered for the plugins being set up: at start, and again on a reload, so the
 * new plugins' checks do not pile up on the old gate.
 */
export function registerGateAndGuard(container: DependencyContainer, config: RelayConfig, configDir: string, log: Logger): void {
  const gate = new ConnectionGate();
  // Slots by name: a reload's new gate goes on counting the connections the old one admitted.
  const slots = container.resolve<SharedState>(Tokens.SharedState).slots('core:connectionsPerIp', config.limits.connectionsPerIp);
  gate.add(perAddressCheck(config.limits.connectionsPerIp, Replies.tooManyConnections, slots));
  container.registerInstance(Tokens.ConnectionGate, gate);
  const spoolDir = path.resolve(configDir, config.spool.dir);
  const minFree = config.spool.minFree ?? defaultMinFree(config.limits.messageSize);
  const reserve = config.spool.reserve ?? Math.floor(minFree / 2);
  container.registerInstance(Tokens.DiskGuard, new DiskGuard(spoolDir, minFree, log.child({ part: 'disk-guard' }), 0, config.limits.messageSize, 100, reserve));
}
