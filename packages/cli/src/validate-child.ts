/**
 * The config validation the worker mode's primary runs apart (validate-apart.ts), as a short-lived
 * child process: `node validate-child.js FILE [LOG_LEVEL]`. It does what `portcullis start` with
 * one process does before it opens a port (loadRelay: the file's keys, TLS files, every plugin
 * imported, its options validated and its `setup` run), closes the plugins again and sends the
 * result to its parent over IPC: `{ ok: true, raw }` (the file as parsed, which the primary hands its
 * workers), `{ ok: false, file, problems }` for a ConfigError (the parent rebuilds the same error, so
 * the same lines are printed), or `{ ok: false, error }`. Its log lines (a plugin's setup may log)
 * go to stdout, which the primary writes into its one log stream.
 */
import { ConfigError, createLogger } from '@portcullis/core';
import { loadRelay, type Logger } from './load-relay.js';

export type ValidationResult = { ok: true; raw: unknown } | { ok: false; file: string; problems: ReadonlyArray<{ path: string; message: string }> } | { ok: false; error: string };

const [file, level] = process.argv.slice(2);
let log: Logger | undefined;
let result: ValidationResult;
try {
  const v = await loadRelay(file!, (c) => (log = createLogger(level || c.log.level)));
  await v.relay.driver.close();
  await v.relay.sharedState.close();
  result = { ok: true, raw: v.loaded.raw };
} catch (err) {
  result = err instanceof ConfigError ? { ok: false, file: err.file, problems: err.problems } : { ok: false, error: (err as Error)?.stack ?? String(err) };
}
const done = () => process.exit(0);
process.send!(result, () => (log ? log.flush(() => done()) : done()));
// A plugin's setup may leave a timer or a socket open: the answer is sent, so the process goes.
setTimeout(done, 5_000).unref();
