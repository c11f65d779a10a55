/**
 * Crash points for the crash-safety tests: with `PORTCULLIS_CRASH_AT=<name>` (optionally
 * `<name>:<n>` for the n-th time) in its environment the relay SIGKILLs itself when it reaches that
 * point, so a test can stop it at an exact step of a commit (after the write, before the fsync...)
 * instead of at a random moment. Unset, this is one string comparison.
 */
const spec = process.env['PORTCULLIS_CRASH_AT'];
const [target, nth] = spec ? spec.split(':') : [];
let remaining = nth ? Number(nth) : 1;

export function crashPoint(name: string): void {
  if (target !== name) return;
  if (--remaining > 0) return;
  process.kill(process.pid, 'SIGKILL');
}
