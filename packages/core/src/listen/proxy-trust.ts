import type { SMTPServer } from 'smtp-server';
import { canUseProxyTrust, replaceProxyCommandCheck, replaceProxyHeaderCheck } from '../adapter/smtp-server.js';
import type { NetworkList } from '../config/networks.js';
import type { ListenerConfig } from '../config/schema.js';
import type { Logger } from 'pino';

/**
 * Proxy trust by network (XCLIENT, XFORWARD, PROXY protocol).
 *
 * smtp-server compares the peer with its `useXClient` / `useXForward` / `useProxy` lists by exact
 * address text, treats `'*'` as "everyone", and knows no CIDR: a configured `10.0.0.0/24` matched
 * nobody and `"*"` trusted every client. Portcullis parses these lists with the core network parser
 * (networks.ts) and answers the library's two trust questions itself:
 *   - SMTPConnection#_proxyCommandAllowed(command, option): may this connection use XCLIENT/XFORWARD
 *     (asked for the EHLO keywords and by both command handlers), replaced per connection;
 *   - SMTPServer#_expectsProxyHeader(socket): must this socket start with a PROXY header, replaced
 *     per server instance.
 * The library options are set to `true` only where a list is non-empty, so the library's other
 * behaviour (connect event deferred until XCLIENT on such listeners) stays as it ships.
 *
 * Both methods are private: the replacements (adapter/smtp-server.ts) are pinned to the library source. If
 * the installed smtp-server differs, `canUseProxyTrust()` is false and a relay with any proxy list
 * refuses to start (trust must never silently widen or vanish); `proxy-trust.test.ts` fails too.
 */
export interface ProxyLists {
  readonly xclient: NetworkList;
  readonly xforward: NetworkList;
  readonly proxyProtocol: NetworkList;
}

/** The smtp-server options for a listener's proxy lists: `true` where a list is set, else false. */
export function proxyServerOptions(lists: ProxyLists): { useXClient: boolean; useXForward: boolean; useProxy: boolean } {
  return { useXClient: lists.xclient.size > 0, useXForward: lists.xforward.size > 0, useProxy: lists.proxyProtocol.size > 0 };
}

/** Makes `server` expect a PROXY header exactly from the peers in `lists.proxyProtocol`. */
export function installProxyHeaderTrust(server: SMTPServer, lists: ProxyLists): void {
  replaceProxyHeaderCheck(server, (remoteAddress) => lists.proxyProtocol.contains(remoteAddress));
}

/**
 * Makes one connection allow XCLIENT / XFORWARD exactly from the peers in the lists. The peer is the
 * address the connection was accepted from (after a PROXY header, the proxied client: as the
 * library does). Once XCLIENT has replaced the address, neither command is offered again.
 */
export function installProxyCommandTrust(connection: unknown, lists: ProxyLists): void {
  replaceProxyCommandCheck(connection, (option, peer) => (option === 'useXClient' ? lists.xclient : lists.xforward).contains(peer));
}

/**
 * Proxy lists need our CIDR matching, pinned to the smtp-server source: with another library version
 * the relay refuses to start rather than trust differently. A list that trusts every address starts,
 * with a loud warning per listener and list.
 */
export function checkProxyTrust(listen: readonly ListenerConfig[], log: Logger): void {
  const keys = ['xclient', 'xforward', 'proxyProtocol'] as const;
  const used = listen.some((l) => keys.some((k) => l[k].size > 0));
  if (used && !canUseProxyTrust()) {
    throw new Error('smtp-server is not the version Portcullis pins for proxy trust (xclient/xforward/proxyProtocol); refusing to start with proxy peers configured');
  }
  listen.forEach((l, i) => {
    for (const k of keys) {
      if (l[k].everything) {
        log.warn({ listener: l.name ?? `${l.host}:${l.port}`, key: `listen[${i}].${k}`, networks: l[k].toStrings() }, `WARNING: listen[${i}].${k} trusts EVERY address: any client can claim any identity through ${k}`);
      }
    }
  });
}
