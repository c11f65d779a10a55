import type { Relay } from '@portcullis/core';
import { ExitCode, exitCodeForSignal } from './exit-codes.js';
import type { Logger } from './load-relay.js';

export interface RunOptions {
  readonly relay: Relay;
  readonly log: Logger;
  /** Runs once the listeners are open (the demo prints its banner here). */
  readonly onReady?: () => void | Promise<void>;
  /** Runs after the relay has stopped, before the process exits (the demo closes its next hop). */
  readonly onStopped?: () => void | Promise<void>;
}

/**
 * Starts the relay and keeps it running until SIGTERM or SIGINT. SIGHUP reloads the TLS files.
 *
 * The first signal stops gracefully (`relay.stop()`: listeners close, transactions in DATA finish
 * and are answered, deliveries in progress finish; the spool keeps the rest), then the process exits 0.
 * A second signal during that exits at once with 128 + the signal number: nothing acknowledged is
 * lost, since every message that got a 250 is already on disk.
 */
export async function runRelay({ relay, log, onReady, onStopped }: RunOptions): Promise<void> {
  let stopping = false;
  let started: Promise<void> | undefined;
  let listening = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now, without waiting');
      exit(log, exitCodeForSignal(signal));
      return;
    }
    stopping = true;
    const t0 = Date.now();
    // relay.stop() closes the listeners before its first await: once this line is logged, the
    // ports refuse connections (a supervisor or a test may rely on that order).
    const stopped = listening ? relay.stop() : undefined;
    log.info({ signal }, 'shutting down: listeners closed; finishing transactions in DATA and deliveries in progress');
    void (async () => {
      try {
        await (stopped ?? started?.catch(() => undefined).then(() => relay.stop()));
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
  process.on('SIGINT', onSignal);

  // SIGHUP re-reads the whole config file (TLS files included), validates it and sets up its
  // plugins before switching: new sessions get the new config, open ones keep theirs. On any
  // error the running config stays (the relay logs the problem; see Relay.reload).
  process.on('SIGHUP', () => {
    if (!listening || stopping) return;
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
  log.info({ pid: process.pid, listeners: relay.addresses(), plugins: relay.driver.plugins.map((p) => p.instance.name) }, 'ready');
  await onReady?.();
}

/** Flushes the (asynchronous) log destination, then exits. */
export function exit(log: Logger, code: number): void {
  let done = false;
  const go = () => {
    if (done) return;
    done = true;
    process.exit(code);
  };
  try {
    log.flush(() => go());
  } catch {
    go();
  }
  setTimeout(go, 500).unref();
}
