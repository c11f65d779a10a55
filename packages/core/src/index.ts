/**
 * @portcullis/core: the relay pipeline, the plugin API, config, the durable spool and delivery.
 */
import 'reflect-metadata';
export { z } from 'zod';
export * from './verdicts.js';
export * from './hooks.js';
export * from './types.js';
export * from './plugin.js';
export { PluginDriver, HookTimeoutError, type LoadedPlugin, type Decision } from './plugin-driver.js';
export { loadPlugins, pluginSpecifier, validatePluginEntries } from './plugin-loader.js';
export { ConfigError, loadConfigFile, parseConfig, formatPath, zodProblems, type LoadedConfig } from './config.js';
export { closest, editDistance } from './config-hints.js';
export { configSchema, size, duration, hostAndPort, type RelayConfig, type ListenerConfig, type PluginEntry, type RelayConfigInput } from './config-schema.js';
export { parseSize, parseDuration, formatDuration } from './units.js';
export { Tokens, type Clock } from './tokens.js';
export { Relay, type RelayOptions } from './relay.js';
export { Spool, newQueueId, type SpoolMeta, type SpoolState, type SpooledMessage } from './spool.js';
export { DeliveryQueue } from './delivery-queue.js';
export { buildBounce, enhancedStatusOf, type BounceFailure } from './dsn.js';
export { createLogger } from './logger.js';
export { toAddress, domainOf } from './address.js';
export { canOverrideGreetingDelay, PINNED_SMTP_SERVER_VERSION, PINNED_INIT_SHA256, libraryInitHash, installedSmtpServerVersion } from './greeting-delay.js';
export { LineEndingGuard } from './line-ending-guard.js';
export { HeaderFilter, type HeaderField } from './header-filter.js';
export { ControlServer, controlRequest, type ControlRequest, type ControlResponse } from './control-server.js';
export { MemoryState, RedisState, createSharedState, type SharedState, type SharedCounter, type CounterResult, type SharedStateStatus, type RedisStateOptions } from './shared-state.js';
export { ConnectionGate, perAddressCheck, type ConnectionCheck, type ConnectionInfo } from './connection-gate.js';
export { DiskGuard, defaultMinFree, DISK_FLOOR_BYTES } from './disk-guard.js';
export { RepeatLog } from './repeat-log.js';
export { SessionGuard, canGuardSessions, type SessionGuardLimits } from './session-guard.js';
export { parseNetwork, NetworkList, NetworkSyntaxError, network, networkList, isNetworkList, type Network } from './networks.js';
export { canUseProxyTrust, proxyTrustLibraryHashes, PINNED_PROXY_ALLOWED_SHA256, PINNED_EXPECTS_PROXY_SHA256 } from './proxy-trust.js';
