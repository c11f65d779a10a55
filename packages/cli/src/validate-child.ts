/**
 * The config validation the worker mode's primary runs apart (validate-apart.ts), as a short-lived
 * child process: `node validate-child.js FILE [LOG_LEVEL]`. It does what `portcullis start` with
 * one process does before it opens a port (loadRelay: the file's keys, TLS files, every plugin
 * imported, its options validated and its `setup` run), closes the plugins again and sends the
 * result to its parent over IPC: `{ ok: true, raw, config }` (the file as parsed, which the primary hands
 * its workers, and the primary's plain-data part of the validated config), `{ ok: false, file,
 * problems, message }` for a ConfigError (the parent prints the same lines), or `{ ok: false, error }`. Its log lines (a plugin's setup may log)
 * go to stdout, which the primary writes into its one log stream.
 */
import { ConfigError, createLogger } from '@portcullis/core';
import { primaryConfig, type PrimaryConfig } from '@portcullis/core/primary';
import { loadRelay, type Logger } from './load-relay.js';

export type ValidationResult =
  | { ok: true; raw: unknown; config: PrimaryConfig }
  | { ok: false; file: string; problems: ReadonlyArray<{ path: string; message: string }>; message: string }
  | { ok: false; error: string };

const [file, level] = process.argv.slice(2);
let log: Logger | undefined;
let result: ValidationResult;
try {
  const v = await loadRelay(file!, (c) => (log = createLogger(level || c.log.level)));
  await v.relay.driver.close();
  await v.relay.sharedState.close();
  result = { ok: true, raw: v.loaded.raw, config: primaryConfig(v.loaded.config) };
} catch (err) {
  result = err instanceof ConfigError ? { ok: false, file: err.file, problems: err.problems, message: err.message } : { ok: false, error: (err as Error)?.stack ?? String(err) };
}
const done = () => process.exit(0);
process.send!(result, () => (log ? log.flush(() => done()) : done()));
// A plugin's setup may leave a timer or a socket open: the answer is sent, so the process goes.
setTimeout(done, 5_000).unref();
