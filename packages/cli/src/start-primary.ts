import path from 'node:path';
import { ClusterPrimary, createLogger, openLogDestination, workerCount, type Logger } from '@portcullis/core/primary';
import { reportConfigError } from './config-report.js';
import { exit, ExitCode, exitCodeForSignal } from './exit-codes.js';
import { CheckedConfigError, validateApart } from './validate-apart.js';

/**
 * `portcullis start` with `workers` > 1: this process is the primary. It imports only
 * `@portcullis/core/primary` (the cluster primary, admin and control servers, logging), never a
 * plugin, the config schema or the SMTP pipeline: the whole config (plugins' options and setup
 * included) is validated in a short-lived child process, at start and at every reload
 * (validate-apart.ts), with the same errors and exit code as a single-process start.
 * The file asked for workers (`peekWorkers`); the check in the child validates that key too.
 */
export async function startPrimary(opts: { config: string; logLevel?: string }): Promise<void> {
  const file = path.resolve(opts.config);
  const dir = path.dirname(file);
  let sink: { write(line: string): unknown } | undefined;
  // The child's log lines (a plugin's setup may log) go into the one log stream; before it exists, kept.
  const early: string[] = [];
  const onLogLine = (line: string) => (sink ? sink.write(line + '\n') : early.push(line));
  const validate = (f: string) => validateApart(f, { logLevel: opts.logLevel, onLogLine });
  let checked: Awaited<ReturnType<typeof validate>>;
  try {
    checked = await validate(file);
  } catch (err) {
    if (!(err instanceof CheckedConfigError)) throw err;
    for (const line of early) process.stdout.write(line + '\n');
    reportConfigError(err, 'nothing was started');
    exit(createLogger('silent'), ExitCode.config);
    return;
  }
  const { config, raw } = checked;
  const { log, dest } = await openLogDestination(config.log, dir, opts.logLevel);
  sink = dest;
  for (const line of early.splice(0)) dest.write(line + '\n');
  // Round-robin: the kernel's balancing hands a burst of connections to one worker (core README, "Workers").
  const scheduling = process.env['PORTCULLIS_CLUSTER_SCHED'] === 'none' ? 'none' : 'rr';
  await runPrimary(new ClusterPrimary({ configFile: file, configDir: dir, config, raw, workers: workerCount(config), log, logSink: dest, validate, scheduling }), log);
}

/** The primary's life: start every worker, reload on SIGHUP, drain every worker on SIGTERM/SIGINT. */
async function runPrimary(primary: ClusterPrimary, log: Logger): Promise<void> {
  let stopping = false;
  let started: Promise<void> | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: workers killed, exiting now');
      primary.killAll();
      exit(log, exitCodeForSignal(signal));
      return;
    }
    stopping = true;
    const t0 = Date.now();
    log.info({ signal }, 'shutting down: every worker drains (listeners closed, transactions in DATA and deliveries in progress finish)');
    void (async () => {
      await started?.catch(() => undefined);
      await primary.stop();
      log.info({ durationMs: Date.now() - t0 }, 'stopped: every worker has exited');
      exit(log, ExitCode.ok);
    })();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', () => {
    if (stopping) return;
    log.info('SIGHUP: reloading the configuration in every worker');
    primary.reload().catch((err: unknown) => log.error({ err }, `reload refused: ${(err as Error).message}`));
  });
  started = primary.start();
  try {
    await started;
  } catch (err) {
    log.fatal({ err }, `cannot start: ${(err as Error).message}`);
    await primary.stop();
    exit(log, ExitCode.failure);
  }
}
