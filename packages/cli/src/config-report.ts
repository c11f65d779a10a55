/** Prints a config error the way users read it: one `<file>: <key path>: <problem>` line each. */
export function reportConfigError(err: { readonly message: string; readonly problems: ReadonlyArray<unknown> }, what: string): void {
  const n = err.problems.length;
  process.stderr.write(`${err.message}\n`);
  process.stderr.write(`portcullis: ${n} problem${n === 1 ? '' : 's'} in the configuration; ${what}\n`);
}
