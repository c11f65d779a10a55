/**
 * Bounds a promise in time: rejects with `onTimeout()` after `ms` (no bound when `ms` is not a positive
 * number) and calls `settled` once either way. Its own module so that the plugin driver and the
 * readiness probe share it without importing each other.
 */
export function withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => Error, settled?: () => void): Promise<T> {
  if (!Number.isFinite(ms) || ms <= 0) {
    if (settled) work.then(settled, settled);
    return work;
  }
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      settled?.();
      reject(onTimeout());
    }, ms);
    timer.unref?.();
    work.then(
      (v) => {
        clearTimeout(timer);
        settled?.();
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        settled?.();
        reject(e);
      },
    );
  });
}
