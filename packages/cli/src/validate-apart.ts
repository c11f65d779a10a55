import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { PrimaryConfig } from '@portcullis/core/primary';
import type { ValidationResult } from './validate-child.js';

/**
 * The config check found problems: the same file, key paths and message as the core's ConfigError
 * (which lives with the config schema, not loaded here). `reportConfigError` prints it alike.
 */
export class CheckedConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: ReadonlyArray<{ path: string; message: string }>,
    message: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** A plugin's setup that hangs (a backend that never answers) must not hang a start or a reload for ever. */
const LIMIT_MS = 120_000;

/**
 * Validates a config file in a short-lived child process (validate-child.ts), so that the worker
 * mode's primary never imports a plugin or the SMTP pipeline: what the check loads stays in the
 * child, which exits (measured: packages/core/README.md, "Workers"). Resolves with the file as
 * parsed and the primary's part of the validated config; rejects with a CheckedConfigError (the
 * file, key paths and message a check in this process would give), or an Error with the child's text. `onLogLine` gets each whole line the child logged.
 */
export function validateApart(file: string, o: { logLevel?: string; onLogLine: (line: string) => void }): Promise<{ raw: unknown; config: PrimaryConfig }> {
  // Built: dist/validate-child.js; run from source (node --import tsx src/main.ts): src/validate-child.ts.
  const here = fileURLToPath(import.meta.url);
  const entry = here.replace(/validate-apart\.(ts|js)$/, 'validate-child.$1');
  // The same Node flags (--import tsx from source, the semi-space size); a --cpu-prof is for the relay, not this check.
  // Profile flags that take a value may come as two words (`--cpu-prof-dir DIR`): the value goes too,
  // else the child would take DIR for its script (cpu-loop --prof with --workers did).
  const execArgv = process.execArgv.filter((a, i, all) => !a.startsWith('--cpu-prof') && !/^--cpu-prof-(dir|name|interval)$/.test(all[i - 1] ?? ''));
  const child = spawn(process.execPath, [...execArgv, entry, file, ...(o.logLevel ? [o.logLevel] : [])], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  createInterface({ input: child.stdout! }).on('line', (line) => o.onLogLine(line));
  return new Promise((resolve, reject) => {
    let result: ValidationResult | undefined;
    const timer = setTimeout(() => child.kill('SIGKILL'), LIMIT_MS);
    child.on('message', (m) => (result = m as ValidationResult));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run the config check (${entry}): ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (!result) return reject(new Error(`the config check of ${file} ended (${signal ?? `code ${code}`}) without an answer${signal === 'SIGKILL' ? ` (killed after ${LIMIT_MS / 1000} s)` : ''}`));
      if (result.ok) return resolve({ raw: result.raw, config: result.config });
      if ('problems' in result) return reject(new CheckedConfigError(result.file, result.problems, result.message));
      reject(new Error(result.error));
    });
  });
}
