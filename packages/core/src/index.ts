/**
 * @portcullis/core: what a plugin author and the CLI use. The plugin API (hooks, verdicts, types,
 * definePlugin, tokens), the config loaders and schema helpers, the services plugins resolve through
 * `Tokens` (their types), the helpers plugins share, and `Relay` itself.
 *
 * The relay's internals (spool, delivery queue, driver, control socket, pins, ...) are not here:
 * the CLI, the test kit and the bench reach them through the explicit `@portcullis/core/internal`
 * export (./internal.ts), which carries no stability promise.
 */
import 'reflect-metadata';
export { z } from 'zod';
// api/: what a plugin author reads
export * from './api/verdicts.js';
export * from './api/hooks.js';
export * from './api/types.js';
export * from './api/plugin.js';
export type { PluginMetrics, PluginMetricSpec } from './api/plugin-metrics.js';
export { HeaderSectionCut, type HeaderSectionParts } from './api/header-section-cut.js';
export { parseHeaderSection, type MessageHeaders, type MessageHeaderField, type HeaderAddress, type StructuredHeader } from './api/message-headers.js';
export { HeaderFilter, type HeaderField } from './api/header-filter.js';
export { Tokens, type Clock } from './api/tokens.js';
export { coreVersion } from './api/core-version.js';
// config/: loading a config, and the schema helpers a plugin's options use
export { ConfigError, loadConfigFile, parseConfig, formatPath, zodProblems, type LoadedConfig } from './config/load.js';
export { closest, editDistance } from './config/hints.js';
export { configSchema, adminSchema, logFileSchema, size, duration, hostAndPort, type RelayConfig, type ListenerConfig, type PluginEntry, type RelayConfigInput } from './config/schema.js';
export { backendTarget, describeBackendTarget, parseBackendTarget, resolveBackendTarget, type BackendTarget, type BackendTargetOptions } from './config/backend-target.js';
export { parseSize, parseDuration, formatDuration } from './config/units.js';
export { parseNetwork, NetworkList, NetworkSyntaxError, network, networkList, isNetworkList, type Network } from './config/networks.js';
// plugins/: a plugin package's README options table
export { describeOptions, optionsTable, replaceOptionsTable, OPTIONS_BEGIN, OPTIONS_END, type OptionDoc } from './plugins/options-table.js';
// Services plugins resolve through Tokens (their types), and helpers plugins share
export type { PluginDriver, LoadedPlugin, Decision } from './plugins/driver.js';
export { ConnectionGate, perAddressCheck, whenSettled, type ConnectionCheck, type ConnectionInfo, type MaybePromise, type ReleaseFailure } from './listen/connection-gate.js';
export type { DiskGuard, PrivilegeInfo } from './spool/disk-guard.js';
export type { SharedState, SharedCounter, CounterResult, SharedStateStatus, ConcurrencySlots, SlotLease, StoreKind } from './services/shared-state.js';
export type { Readiness, ReadinessCheck, ReadinessReport } from './ops/readiness.js';
export { RepeatLog } from './telemetry/repeat-log.js';
export { createLogger } from './telemetry/logger.js';
export { toAddress, domainOf } from './session/address.js';
export { createMimeSplitter, MimeLimitError, isMimeLimitError, mimeLimitReply, type MimeParseLimits } from './intake/mime-limits.js';
export type { MimeLimits, MimeLimitHit } from './intake/mime-walker.js';
export type { MessageEdit } from './intake/edits/message-edits.js';
// Not here, on purpose: `editHeaderFields`, `foldValue`, `ContentPlan` and `asPlugin`. Only the
// milter plugin uses them, and they are the core's own machinery, not a plugin API: ContentPlan is
// the internal form `txn.edits` compiles to (its ops change with the spool's rewrite), and asPlugin
// gives the transaction as another name sees it, so its edits are logged under that name. A plugin edits a message through `txn.edits`; the milter, which is released
// with the core, reaches these through `@portcullis/core/internal` (no stability promise).
export { pruneQuarantine, keepQuarantinePruned } from './services/quarantine-retention.js';
// The relay
export { Relay, installedVersion, type RelayOptions, type StreamClient } from './relay.js';
export type { DeliveryTransport, HopResult } from './delivery/smtp-client.js';
export type { SpooledMessage, SpoolMeta, SpoolState } from './spool/spool.js';
export type { LogFileDestination } from './telemetry/log-destination.js';
