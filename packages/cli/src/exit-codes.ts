/**
 * Exit codes of the `portcullis` command, after sysexits(3) where one fits.
 *
 *   0   success (check passed; the relay stopped after SIGTERM/SIGINT)
 *   1   a failure at run time (a port already in use, an unexpected error)
 *   64  EX_USAGE: unknown command or option, missing argument
 *   78  EX_CONFIG: the config file cannot be read, parsed or validated, or a plugin cannot be loaded
 *   130 / 143  a second SIGINT / SIGTERM during a graceful stop: exited at once (128 + signal number)
 */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 64,
  config: 78,
} as const;

/** 128 + the signal's number, as shells report a process ended by that signal. */
export function exitCodeForSignal(signal: NodeJS.Signals): number {
  return signal === 'SIGINT' ? 130 : signal === 'SIGTERM' ? 143 : 1;
}

/**
 * Flushes the (asynchronous) log destination, then exits with `code`; at most 500 ms later if the
 * flush does not call back. Here, beside the codes, so that both `start` paths (run-relay.ts,
 * start-primary.ts) and `demo` share it without importing each other.
 */
export function exit(log: { flush(cb?: (err?: Error) => void): void }, code: number): void {
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
