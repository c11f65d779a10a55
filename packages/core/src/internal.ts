/**
 * @portcullis/core/internal: the relay's internals that the CLI, the test kit and the bench need.
 * Not the plugin API and not stable: plugins import `@portcullis/core` only, with one exception:
 * the milter plugin (released with the core) takes the message-edit machinery below for its
 * sequential mode (`editedContent`, `foldValue`, `ContentPlan`, `asPlugin`); see index.ts
 * for why these are not public. The smtp-server pins and `setGreetingDelay` are here, not in the
 * public face.
 */
export { PluginDriver, HookTimeoutError } from './plugins/driver.js';
export { loadPlugins, pluginSpecifier, validatePluginEntries } from './plugins/loader.js';
export { asPlugin, FOR_PLUGIN, type PluginViews } from './plugins/scope.js';
export { RelayMetrics, pluginMetrics, statusClass } from './telemetry/metrics.js';
export { createLogFile, LOG_WRITE_CHUNK, nextBoundary } from './telemetry/log-destination.js';
export { openLogDestination, type OpenedLog } from './telemetry/open-log.js';
export { runReadiness } from './ops/readiness.js';
export { AdminServer, type AdminServerOptions } from './ops/admin-server.js';
export { ControlServer, controlRequest, queueRequest, type ControlRequest, type ControlResponse, type ControlHandlers } from './ops/control-server.js';
export { freeBytes } from './spool/disk-space.js';
export { SpoolLock } from './spool/spool-lock.js';
export { Spool, newQueueId } from './spool/spool.js';
export { DiskGuard, defaultMinFree, DISK_FLOOR_BYTES } from './spool/disk-guard.js';
export { DeliveryQueue } from './delivery/queue.js';
export { buildBounce, enhancedStatusOf, type BounceFailure } from './delivery/dsn.js';
export { MessageEditRecorder, foldValue } from './intake/edits/message-edits.js';
export { applyContentEdits, editedContent, editHeaderFields, editInMemory, type ContentPlan } from './intake/edits/content-edits.js';
export { LineEndingGuard } from './intake/line-ending-guard.js';
export { MemoryState } from './services/shared-state.js';
// RedisState is not re-exported: importing it loads ioredis (see services/create-shared-state.ts).
export type { RedisStateOptions } from './services/redis-state.js';
export { createSharedState } from './services/create-shared-state.js';
export { IpcState, StateMessages, type StateTransport, type IpcStateOptions } from './services/ipc-state.js';
export { SessionGuard, canGuardSessions, type SessionGuardLimits } from './session/session-guard.js';
// The test kit's callHook builds the relay's own session and transaction (same getters, same header folding).
export { SessionState, TransactionState, type EditRecorder } from './session/session.js';
export { canOverrideGreetingDelay, setGreetingDelay, PINNED_SMTP_SERVER_VERSION, PINNED_INIT_SHA256, libraryInitHash, installedSmtpServerVersion } from './adapter/smtp-server.js';
export { canUseProxyTrust, proxyTrustLibraryHashes, PINNED_PROXY_ALLOWED_SHA256, PINNED_EXPECTS_PROXY_SHA256 } from './adapter/smtp-server.js';
// The worker mode's IPC parts (cluster/): the primary wires them, a worker answers through them.
export { IpcChannel, IpcError, IPC_TAG, type IpcEndpoint } from './cluster/ipc-channel.js';
export { ClusterStateHost } from './cluster/state-host.js';
export { ClusterMetrics, answerMetrics, GAUGE_AGGREGATORS, METRICS_GET, type ClusterMetricsOptions, type MetricsSource, type WorkerLink } from './cluster/metrics-aggregate.js';
export { clusterReadiness, answerReadiness, READINESS_GET, type ClusterReadinessOptions } from './cluster/readiness-aggregate.js';
export { ClusterPrimary, type PrimaryOptions } from './cluster/primary.js';
export { WorkerSide, workerConfig } from './cluster/worker-side.js';
// The worker's environment (set by the primary) has a file of its own, which the primary imports without worker-side's spool and delivery parts.
export { workerIndexFromEnv, adoptedFromEnv, handedFromEnv } from './cluster/worker-env.js';
export { AdoptedShards } from './cluster/adopted-shards.js';
export { FILL } from './cluster/handoff.js';
export { fanOut, type QueueTarget } from './cluster/fan-out.js';
export { workerCount, shardDir, existingShards, orphanAssignment } from './cluster/shards.js';
export { stdoutDestination } from './telemetry/logger.js';
