import type { SMTPServerSession } from 'smtp-server';

/**
 * Who the client is, and how we know. Trust comes only from the TCP peer, or from a peer the
 * operator listed as a proxy (listen[].proxyProtocol, listen[].xclient): then the proxy's word is
 * the client address. XFORWARD (listen[].xforward) is recorded, never trusted: smtp-server writes
 * the forwarded ADDR into remoteAddress, so the address before it (`ADDR:DEFAULT`) is the client.
 */
export interface ClientOrigin {
  /** The address policy decisions use. */
  readonly client: string;
  /** The TCP peer (a load balancer or proxy when `proxied` is set). */
  readonly peer: string;
  /** How `client` was learnt when it is not the TCP peer. */
  readonly proxied?: 'proxy' | 'xclient';
  /** What a listed XFORWARD peer said about the original client. */
  readonly forwarded?: { readonly addr?: string; readonly name?: string; readonly helo?: string; readonly port?: number };
}

function normalise(address: string | undefined): string {
  return (address ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '').toLowerCase();
}

export function clientOrigin(raw: SMTPServerSession, socketPeer: string | undefined, viaProxyHeader: boolean): ClientOrigin {
  const xclient = (raw as { xClient?: Map<string, unknown> }).xClient;
  const xforward = (raw as { xForward?: Map<string, unknown> }).xForward;
  const peer = normalise(socketPeer) || raw.remoteAddress;
  let client = raw.remoteAddress;
  let forwarded: ClientOrigin['forwarded'];
  if (xforward?.size) {
    const before = xforward.get('ADDR:DEFAULT');
    if (!xclient?.has('ADDR') && typeof before === 'string') client = before;
    const str = (k: string) => (typeof xforward.get(k) === 'string' && xforward.get(k) ? String(xforward.get(k)) : undefined);
    forwarded = { addr: str('ADDR'), name: str('NAME'), helo: str('HELO'), port: typeof xforward.get('PORT') === 'number' ? (xforward.get('PORT') as number) || undefined : undefined };
  }
  const proxied = xclient?.has('ADDR') ? 'xclient' : viaProxyHeader ? 'proxy' : undefined;
  return { client, peer, proxied, forwarded };
}
