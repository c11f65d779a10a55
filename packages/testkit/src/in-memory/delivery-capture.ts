import type { Readable } from 'node:stream';
import type { DeliveryTransport, HopResult, NextHop } from '@portcullis/core';

/** One next-hop transaction the relay would have made: where to, the envelope and the exact bytes. */
export interface CapturedDelivery {
  /** The route's name (`static:example.com`, `mx:example.org`) or the first host. */
  readonly hop: string;
  readonly nextHop: NextHop;
  /** `host:port` of the first host, which the capture answers for. */
  readonly host: string;
  readonly mailFrom: string;
  readonly recipients: readonly string[];
  /** What would have gone after DATA: our headers, then the message as spooled. */
  readonly bytes: Buffer;
}

/**
 * The next hop's answer for one recipient: a full reply line (`250 2.0.0 Ok`, `451 4.4.1 busy`,
 * `550 5.1.1 no such user`). 2xx delivers, 4xx defers, 5xx bounces, as from a real server.
 */
export type CaptureResponder = (recipient: string, delivery: Omit<CapturedDelivery, 'bytes'>) => string;

/**
 * A delivery transport that records instead of connecting: the delivery queue routes, groups and
 * retries exactly as in production, and each next hop's share lands in `deliveries`.
 */
export class DeliveryCapture implements DeliveryTransport {
  readonly deliveries: CapturedDelivery[] = [];

  constructor(private readonly respond: CaptureResponder = () => '250 2.0.0 Ok: captured') {}

  async deliver(nextHop: NextHop, from: string, recipients: readonly string[], open: () => Readable): Promise<HopResult> {
    const chunks: Buffer[] = [];
    for await (const c of open()) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
    const first = nextHop.hosts[0]!;
    const host = `${first.host}:${first.port}`;
    const info = { hop: nextHop.name ?? host, nextHop, host, mailFrom: from, recipients: [...recipients] };
    const perRecipient: HopResult['perRecipient'] = new Map();
    const accepted: string[] = [];
    for (const r of recipients) {
      const response = this.respond(r, info);
      const code = Number(response.slice(0, 3));
      perRecipient.set(r, { ok: code >= 200 && code < 300, permanent: code >= 500, response });
      if (code >= 200 && code < 300) accepted.push(r);
    }
    if (accepted.length) this.deliveries.push({ ...info, recipients: accepted, bytes: Buffer.concat(chunks) });
    return { host, perRecipient };
  }

  /** The deliveries that went to one hop (by route name or `host:port`). */
  to(hop: string): CapturedDelivery[] {
    return this.deliveries.filter((d) => d.hop === hop || d.host === hop);
  }

  close(): void {
    /* nothing to close: no connection was opened */
  }
}
