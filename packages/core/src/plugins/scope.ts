/**
 * Which plugin a hook argument is for. A hook argument that can say who changed it (a transaction:
 * `txn.edits` records who asked for each change, for the transaction log line) implements
 * `[FOR_PLUGIN]`; the driver hands each plugin's hook that plugin's view of it. The attribution
 * travels with the object the plugin holds (its raw reader and part screeners close over the same
 * view), so no async context is needed: an AsyncLocalStorage taxed every promise of every message
 * (about 5 % of the relay's CPU on Node 20) only to name the plugin behind an edit.
 */
export const FOR_PLUGIN: unique symbol = Symbol('portcullis.forPlugin');

/** A hook argument with per-plugin views (see FOR_PLUGIN). */
export interface PluginViews {
  /** This object as plugin `name` sees it (of the same type): the same for every call with the same name. */
  [FOR_PLUGIN](name: string): unknown;
}

/** `arg` as plugin `name` sees it: its view when it has views, else itself. */
export function asPlugin<T>(arg: T, name: string): T {
  const views = arg as Partial<PluginViews> | null | undefined;
  return views !== null && typeof views === 'object' && typeof views[FOR_PLUGIN] === 'function' ? (views[FOR_PLUGIN](name) as T) : arg;
}
