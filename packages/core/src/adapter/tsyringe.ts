import type { DependencyContainer } from 'tsyringe';

/**
 * The tsyringe adapter: the one place that names tsyringe's private `_registry`. Pinned by version
 * (tsyringe has no source to hash for a field); `test/adapter-pins.test.ts` checks the version and
 * that a child container still has the registry's `has` and `setAll`.
 */
export const TSYRINGE_PINS = { version: '4.10.0' } as const;

/** Whether a container has the registry `replaceRegistrations` relies on. */
export function hasReplaceableRegistry(container: DependencyContainer): boolean {
  const registry = (container as DependencyContainer & { _registry?: Partial<RegistryLike> })._registry;
  return !!registry && typeof registry.has === 'function' && typeof registry.setAll === 'function';
}

interface RegistryLike {
  has(token: unknown): boolean;
  setAll(token: unknown, value: unknown[]): void;
}

/**
 * Makes `container.register` (and so `registerInstance`) replace a token's registration instead of
 * adding one more. tsyringe keeps every registration of a token in a list and resolves the last,
 * so the relay's root container grew by one entry per token per reload (the config, the plugin
 * driver, the gate, the disk guard, and whatever plugins register in `setup`: HostedDomains,
 * mailauth's counters, mx-router's MTA-STS cache), each holding a whole retired plugin generation
 * in memory: a leak of 6 to 16 KB per reload (issue 17). Nothing here resolves every registration
 * of a token (no `resolveAll`), so one registration per token is all the relay needs.
 * When the installed tsyringe does not have the registry this relies on, registrations add up as
 * before (a leak, not a failure).
 */
export function replaceRegistrations(container: DependencyContainer): DependencyContainer {
  const c = container as DependencyContainer & { _registry?: Partial<RegistryLike> };
  const registry = c._registry;
  if (!registry || typeof registry.has !== 'function' || typeof registry.setAll !== 'function') return container;
  const register = c.register.bind(c) as (...args: unknown[]) => DependencyContainer;
  (c as { register: unknown }).register = (token: unknown, ...rest: unknown[]) => {
    if (registry.has!(token)) registry.setAll!(token, []);
    return register(token, ...rest);
  };
  return container;
}
