import type { Bindings, Logger } from 'pino';

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);
const noop = () => undefined;

/**
 * `parent.child(bindings)`, built on first use. A session, a transaction and a delivery attempt each
 * get their own child logger, and most never write a line (at `warn`, an accepted message logs
 * nothing): pino's child() serialises the bindings at once, a few µs each, three times a message.
 * A call at a level the parent has off is a no-op and builds nothing; anything else (a logged line,
 * `child`, `level`, `bindings()`) builds the child and goes to it.
 */
export function lazyChild(parent: Logger, bindings: Bindings): Logger {
  let real: Logger | undefined;
  // Methods of the real child, bound once each: a Proxy `get` that bound on every access made a
  // new function per log call (and per `log.child(...)`) for the child's whole life.
  let bound: Map<string | symbol, unknown> | undefined;
  const get = () => (real ??= parent.child(bindings));
  // Until the child exists its level is the parent's (a child made from bindings alone inherits it).
  const isLevelEnabled = (level: string) => (real ?? parent).isLevelEnabled(level);
  return new Proxy(parent, {
    get(_target, key) {
      if (!real) {
        if (typeof key === 'string' && LEVELS.has(key) && !parent.isLevelEnabled(key)) return noop;
        if (key === 'isLevelEnabled') return isLevelEnabled;
        if (key === 'level') return parent.level;
      }
      const r = get();
      const v = Reflect.get(r, key, r) as unknown;
      if (typeof v !== 'function') return v;
      // A level method the level turned off is pino's shared noop: bound or not, it does nothing;
      // but a level change replaces the method, so the cache is keyed by the function itself.
      const hit = (bound ??= new Map()).get(key) as { fn: unknown; b: unknown } | undefined;
      if (hit && hit.fn === v) return hit.b;
      const b = (v as (...a: unknown[]) => unknown).bind(r);
      bound.set(key, { fn: v, b });
      return b;
    },
    set(_target, key, value) {
      return Reflect.set(get(), key, value);
    },
  });
}
