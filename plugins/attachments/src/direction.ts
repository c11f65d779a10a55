import ipaddr from 'ipaddr.js';
import type { Session } from '@portcullis/core';

export type Direction = 'inbound' | 'outbound';
type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

export function parseNetworks(list: readonly string[]): Cidr[] {
  return list.map((v) => {
    try {
      return v.includes('/') ? ipaddr.parseCIDR(v) : ([ipaddr.parse(v), ipaddr.parse(v).kind() === 'ipv4' ? 32 : 128] as Cidr);
    } catch {
      throw new Error(`attachments: trustedNetworks: expected an IP network such as 10.0.0.0/8, got ${JSON.stringify(v)}`);
    }
  });
}

/**
 * Outbound when the client authenticated or connects from a trusted network (the same facts
 * relay-policy uses to let it relay anywhere); inbound otherwise. Trust comes only from the TCP
 * peer and AUTH, never from headers or the envelope.
 */
export function directionOf(session: Session, trusted: readonly Cidr[]): Direction {
  if (session.user) return 'outbound';
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.process(session.remoteAddress);
  } catch {
    return 'inbound';
  }
  for (const [net, bits] of trusted) {
    if (addr.kind() === net.kind() && addr.match(net, bits)) return 'outbound';
  }
  return 'inbound';
}
