import type { PluginDefinition } from './api/plugin.js';
import type { RelayConfig } from './config/schema.js';
import type { Logger } from 'pino';
import type { LogFileDestination } from './telemetry/log-destination.js';
import type { SpooledMessage } from './spool/spool.js';
import type { DeliveryTransport } from './delivery/smtp-client.js';
import type { StateTransport } from './services/ipc-state.js';

/** How a relay is made (`Relay.create`): the CLI, the test kit and the bench pass these. */
export interface RelayOptions {
  readonly config: RelayConfig;
  /** The config file, named in errors; relative paths resolve against its folder. */
  readonly configFile?: string;
  readonly logger?: Logger;
  /** Plugin definitions given in code, looked up by `use:` before any import. */
  readonly builtins?: Readonly<Record<string, PluginDefinition>>;
  /** Extra folders to resolve plugin packages from. */
  readonly resolveFrom?: readonly string[];
  /** Run the delivery side (default true). */
  readonly deliver?: boolean;
  /** The log file the logger writes to, when not stdout: its drops and errors are counted in /metrics. */
  readonly logFile?: LogFileDestination;
  /**
   * Bind the listeners' ports and the queue control socket (default true). With `false` the relay
   * opens no socket at all: clients come in through `connectStream` (the test kit's `inject`).
   */
  readonly listen?: boolean;
  /**
   * Open the admin HTTP listener when `admin.enabled` (default true). A worker of the worker mode
   * says false: the primary serves /metrics and /readyz for all workers; metrics are still kept.
   */
  readonly adminServer?: boolean;
  /** Delivers to next hops instead of the SMTP client (the test kit's delivery capture). */
  readonly transport?: DeliveryTransport;
  /** Called for each message durably in the spool (received ones, and the bounces we write), before delivery sees it. */
  readonly onSpooled?: (message: SpooledMessage) => void;
  /** Services registered after the defaults and before plugins set up (e.g. `Tokens.Resolver`, `Tokens.Clock`). */
  readonly services?: ReadonlyArray<readonly [symbol, unknown]>;
  /**
   * In a worker process: its IPC pipe to the cluster primary (cluster/ipc-channel.ts's IpcChannel).
   * Shared state (counters, cache, concurrency slots) is then held by the primary for all workers
   * when no Redis is configured, and the concurrency slots always are (services/create-shared-state.ts).
   */
  readonly stateTransport?: StateTransport;
  /**
   * A worker of the worker mode: the listeners (index in `listen` → the port the primary bound)
   * whose connections the primary accepts and hands over (cluster/handoff.ts); no socket is opened
   * for them here.
   */
  readonly handed?: ReadonlyMap<number, number>;
  /** Called after each reply to DATA: ms from the end of the data to the reply, bytes received (benchmarks). */
  readonly onDataReply?: (reply: { ms: number; accepted: boolean; size: number; sessions: number }) => void;
}
