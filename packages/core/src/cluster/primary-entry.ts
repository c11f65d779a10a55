/**
 * @portcullis/core/primary: what the worker mode's primary process runs, and nothing more. The
 * primary owns the sockets, the admin and control servers and the log stream; it runs no SMTP
 * session and no plugin (the CLI validates a config, plugins and all, in a short-lived child
 * process, which sends the primary its part of the validated config: no config schema here
 * either). Importing `@portcullis/core` or `/internal` loads the whole pipeline and every
 * library it uses, which a primary would carry for its whole life without using (measured, RSS
 * after import: bare Node 41 MB, this entry 61 MB, `/internal` 82 MB; packages/core/README.md, "Workers").
 */
export { ClusterPrimary, primaryConfig, type PrimaryOptions, type PrimaryConfig } from './primary.js';
export { workerCount, existingShards } from './shards.js';
export { peekWorkers } from './config-peek.js';
export { workerIndexFromEnv, adoptedFromEnv } from './worker-env.js';
export { createLogger, stdoutDestination, type Logger } from '../telemetry/logger.js';
export { openLogDestination } from '../telemetry/open-log.js';
