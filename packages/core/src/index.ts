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
export { loadPlugins, pluginSpecifier } from './plugin-loader.js';
export { ConfigError, loadConfigFile, parseConfig, formatPath, type LoadedConfig } from './config.js';
export { configSchema, adminSchema, logFileSchema, size, duration, hostAndPort, type RelayConfig, type ListenerConfig, type PluginEntry, type RelayConfigInput } from './config-schema.js';
export { parseSize, parseDuration, formatDuration } from './units.js';
export { Tokens, type Clock } from './tokens.js';
export { Relay, installedVersion, type RelayOptions } from './relay.js';
export { RelayMetrics, pluginMetrics, statusClass, type PluginMetrics, type PluginMetricSpec } from './metrics.js';
export { runReadiness, type Readiness, type ReadinessCheck, type ReadinessReport } from './readiness.js';
export { AdminServer, type AdminServerOptions } from './admin-server.js';
export { freeBytes, spoolFreeSpaceGuard, type DiskGuard } from './disk-space.js';
export { createLogFile, type LogFileDestination } from './log-destination.js';
export { SpoolLock } from './spool-lock.js';
export { coreVersion } from './core-version.js';
export { Spool, newQueueId, type SpoolMeta, type SpoolState, type SpooledMessage } from './spool.js';
export { DeliveryQueue } from './delivery-queue.js';
export { buildBounce, enhancedStatusOf, type BounceFailure } from './dsn.js';
export { createLogger } from './logger.js';
export { toAddress, domainOf } from './address.js';
export { canOverrideGreetingDelay, PINNED_SMTP_SERVER_VERSION, PINNED_INIT_SHA256, libraryInitHash, installedSmtpServerVersion } from './greeting-delay.js';
export { LineEndingGuard } from './line-ending-guard.js';
export { HeaderFilter, type HeaderField } from './header-filter.js';
export { ControlServer, controlRequest, type ControlRequest, type ControlResponse, type ControlHandlers } from './control-server.js';
export { pruneQuarantine, keepQuarantinePruned } from './quarantine-retention.js';
export { parseNetwork, NetworkList, NetworkSyntaxError, network, networkList, isNetworkList, type Network } from './networks.js';
export { canUseProxyTrust, proxyTrustLibraryHashes, PINNED_PROXY_ALLOWED_SHA256, PINNED_EXPECTS_PROXY_SHA256 } from './proxy-trust.js';
