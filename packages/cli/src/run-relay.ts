import type { Relay } from '@portcullis/core';
import type { AdoptedShards, IpcChannel } from '@portcullis/core/internal';
import { exit, ExitCode, exitCodeForSignal } from './exit-codes.js';
import type { Logger } from './load-relay.js';

export interface RunOptions {
  readonly relay: Relay;
  readonly log: Logger;
  /** Runs once the listeners are open (the demo prints its banner here). */
  readonly onReady?: () => void | Promise<void>;
  /** Runs after the relay has stopped, before the process exits (the demo closes its next hop). */
  readonly onStopped?: () => void | Promise<void>;
  /**
   * A worker of the worker mode (workers > 1): its index, the IPC channel to the primary and the
   * orphan shards it adopts. SIGINT and SIGHUP are the primary's to act on (a Ctrl-C reaches the
   * whole process group): the worker drains on the primary's SIGTERM only.
   */
  readonly worker?: { readonly index: number; readonly channel: IpcChannel; readonly adopt: readonly number[] };
  /** Shards of an earlier worker mode (`<spool>/w<i>`) a single-process relay adopts and delivers. */
  readonly adopt?: readonly number[];
}

/**
 * Starts the relay and keeps it running until SIGTERM or SIGINT. SIGHUP reloads the TLS files.
 *
 * The first signal stops gracefully (`relay.stop()`: listeners close, transactions in DATA finish
 * and are answered, deliveries in progress finish; the spool keeps the rest), then the process exits 0.
 * A second signal during that exits at once with 128 + the signal number: nothing acknowledged is
 * lost, since every message that got a 250 is already on disk.
 */
export async function runRelay({ relay, log, onReady, onStopped, worker, adopt }: RunOptions): Promise<void> {
  let stopping = false;
  let adopted: AdoptedShards | undefined;
  let side: { draining(): void } | undefined;
  let started: Promise<void> | undefined;
  let listening = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now, without waiting');
      exit(log, exitCodeForSignal(signal));
      return;
    }
    stopping = true;
    side?.draining();
    const t0 = Date.now();
    // relay.stop() closes the listeners before its first await: once this line is logged, the
    // ports refuse connections (a supervisor or a test may rely on that order).
    const stopped = listening ? relay.stop() : undefined;
    log.info({ signal }, 'shutting down: listeners closed; finishing transactions in DATA and deliveries in progress');
    void (async () => {
      try {
        await (stopped ?? started?.catch(() => undefined).then(() => relay.stop()));
        await adopted?.close();
        await onStopped?.();
        log.info({ durationMs: Date.now() - t0 }, 'stopped');
        exit(log, ExitCode.ok);
      } catch (err) {
        log.fatal({ err }, 'failed to stop cleanly');
        exit(log, ExitCode.failure);
      }
    })();
  };
  process.on('SIGTERM', onSignal);
  if (worker) process.on('SIGINT', () => undefined);
  else process.on('SIGINT', onSignal);

  // SIGHUP re-reads the whole config file (TLS files included), validates it and sets up its
  // plugins before switching: new sessions get the new config, open ones keep theirs. On any
  // error the running config stays (the relay logs the problem; see Relay.reload).
  process.on('SIGHUP', () => {
    if (!listening || stopping || worker) return;
    log.info('SIGHUP: reloading the configuration');
    relay.reloadFromFile().catch(() => undefined);
  });

  started = relay.start();
  try {
    await started;
  } catch (err) {
    // EADDRINUSE, EACCES on a low port, an unreadable spool folder...
    log.fatal({ err }, `cannot start: ${(err as Error).message}`);
    exit(log, ExitCode.failure);
    return;
  }
  listening = true;
  if (stopping) return;
  const shards = worker?.adopt ?? adopt ?? [];
  if (shards.length || worker) {
    const { WorkerSide } = await import('@portcullis/core/internal');
    try {
      adopted = await WorkerSide.adopt(relay, worker?.index ?? 0, shards);
    } catch (err) {
      log.fatal({ err, shards }, `cannot adopt the spool shards ${shards.join(', ')}: ${(err as Error).message}`);
      await relay.stop();
      exit(log, ExitCode.failure);
      return;
    }
    if (worker) (side = new WorkerSide(relay, worker.index, adopted, worker.channel)).ready();
  }
  log.info({ pid: process.pid, listeners: relay.addresses(), plugins: relay.driver.plugins.map((p) => p.instance.name) }, 'ready');
  await onReady?.();
}

/**
 * `portcullis start`: one process with `workers: 1` (as always); with more, this process becomes the
 * primary (start-primary.ts: sockets, admin, control, the log stream; no plugin and no SMTP pipeline
 * loaded) and forks the workers, each of which runs this same command and lands in `startWorker`
 * (node:cluster tells them apart).
 */
export async function startCommand(opts: { config: string; logLevel?: string }): Promise<void> {
  const light = await import('@portcullis/core/primary');
  const cluster = (await import('node:cluster')).default;
  const index = cluster.isWorker ? light.workerIndexFromEnv() : undefined;
  if (index !== undefined) return startWorker(index, opts);
  // The file's `workers` (read without the schema or a plugin) says whether this process runs the
  // relay or is a primary; a value it cannot use means one process, which validates everything.
  if (light.peekWorkers((await import('node:path')).resolve(opts.config)) > 1) return (await import('./start-primary.js')).startPrimary(opts);
  return startSingle(opts);
}

/** `workers: 1`: the relay runs in this process (validated here: plugins imported, their setup run). */
async function startSingle(opts: { config: string; logLevel?: string }): Promise<void> {
  const core = { ...(await import('@portcullis/core')), ...(await import('@portcullis/core/internal')) };
  const { loadRelay, reportConfigError } = await import('./load-relay.js');
  let log: Logger | undefined;
  const makeLogger = async (c: { log: Parameters<typeof core.openLogDestination>[0] }, dir: string) => {
    const opened = await core.openLogDestination(c.log, dir, opts.logLevel);
    log = opened.log;
    return { log, logFile: opened.logFile };
  };
  try {
    const { loaded, relay } = await loadRelay(opts.config, makeLogger);
    const spoolRoot = (await import('node:path')).resolve(loaded.dir, loaded.config.spool.dir);
    return await runRelay({ relay, log: log!, adopt: core.existingShards(spoolRoot).filter((s) => s > 0) });
  } catch (err) {
    if (!(err instanceof core.ConfigError)) throw err;
    reportConfigError(err, 'nothing was started');
    exit(log ?? core.createLogger('silent'), ExitCode.config);
  }
}

/** A worker: its relay runs on its own spool shard with the config the primary validated. */
async function startWorker(index: number, opts: { config: string; logLevel?: string }): Promise<void> {
  const core = { ...(await import('@portcullis/core')), ...(await import('@portcullis/core/internal')) };
  const { loadRelay } = await import('./load-relay.js');
  const channel = new core.IpcChannel(process as unknown as ConstructorParameters<typeof core.IpcChannel>[0], { timeoutMs: 10_000 });
  const raw = await channel.request('config');
  let log: Logger | undefined;
  // stdout is a pipe to the primary, which writes each whole line into the one log stream.
  const { relay } = await loadRelay(opts.config, (c) => (log = core.createLogger(opts.logLevel ?? c.log.level).child({ worker: index })), { raw, config: (c, dir) => core.workerConfig(c, dir, index), stateTransport: channel, handed: core.handedFromEnv() });
  await runRelay({ relay, log: log!, worker: { index, channel, adopt: core.adoptedFromEnv() } });
}
