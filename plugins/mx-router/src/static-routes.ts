import { normaliseName } from './mx-order.js';

/**
 * Finds the static route for a domain: an exact key first (`example.com`), then the longest
 * matching subdomain key (`.example.com` matches `a.example.com` and `b.a.example.com`, not
 * `example.com` itself).
 */
export function findStaticRoute<T>(routes: ReadonlyMap<string, T>, domain: string): T | undefined {
  const d = normaliseName(domain);
  const exact = routes.get(d);
  if (exact !== undefined) return exact;
  for (let i = d.indexOf('.'); i >= 0; i = d.indexOf('.', i + 1)) {
    const hit = routes.get(d.slice(i));
    if (hit !== undefined) return hit;
  }
  return undefined;
}
