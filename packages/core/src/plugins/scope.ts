import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Which plugin the code running now belongs to. The driver runs every hook call (and the stream
 * handlers a `data` hook hands back) inside its plugin's scope, so a shared object such as
 * `txn.edits` can record who asked for a change without each plugin passing its name.
 */
const scope = new AsyncLocalStorage<string>();

/** Runs `fn` (and every promise it starts) as plugin `name`. */
export function inPluginScope<T>(name: string, fn: () => T): T {
  return scope.run(name, fn);
}

/** The plugin whose hook (or stream handler) is running, when one is. */
export function currentPlugin(): string | undefined {
  return scope.getStore();
}
