import type { NetworkList, Session } from '@portcullis/core';

export type Direction = 'inbound' | 'outbound';

/**
 * Outbound when the client authenticated or connects from a trusted network (the same facts
 * relay-policy uses to let it relay anywhere); inbound otherwise. Trust comes only from the TCP
 * peer and AUTH, never from headers or the envelope. The networks are parsed by core's strict
 * network parser (the option schema uses `networkList()`).
 */
export function directionOf(session: Session, trusted: NetworkList): Direction {
  if (session.user) return 'outbound';
  return trusted.contains(session.remoteAddress) ? 'outbound' : 'inbound';
}
