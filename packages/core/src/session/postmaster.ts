import { Tokens } from '../api/tokens.js';
import type { DependencyContainer } from 'tsyringe';

/**
 * RFC 5321 section 4.5.1: `RCPT TO:<postmaster>` (any case, no domain) must be accepted. The core
 * accepts it from anyone, before the plugins' rcpt hooks (deny by default does not apply: it is a
 * protocol duty, like answering NOOP; connect/helo/mail hooks and limits.recipients still apply),
 * and puts this address in the envelope instead:
 *   - the config's top-level `postmaster`, when set;
 *   - else `postmaster@` the first hosted domain a plugin registered under Tokens.HostedDomains
 *     (relay-policy registers its `domains`, in config order; wildcards are skipped);
 *   - else none: `<postmaster>` is refused with 550 5.1.1 and a warning is logged at start.
 */
export function isBarePostmaster(address: string): boolean {
  return address.toLowerCase() === 'postmaster';
}

export function postmasterAddress(configured: string | undefined, container: DependencyContainer): string | undefined {
  if (configured) return configured;
  if (!container.isRegistered(Tokens.HostedDomains, true)) return undefined;
  const domains = container.resolve<readonly string[]>(Tokens.HostedDomains);
  const first = domains.find((d) => !d.startsWith('*'));
  return first ? `postmaster@${first}` : undefined;
}
