import { isIP } from 'node:net';
import { lookup } from 'node:dns/promises';
import type { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import type { NextHop } from '../api/types.js';
import { clientSocketWritable, isReusable } from '../adapter/nodemailer.js';
import { RFC5321_TIMEOUTS, sendWithTimeouts, type ReplyTimeouts } from './reply-timeouts.js';
import { useFastDotStuffing } from './outbound-stuffing.js';

/** The outcome of one delivery attempt to one next hop, per recipient. */
export interface HopResult {
  /** host:port that took the transaction, if any did. */
  readonly host?: string;
  readonly perRecipient: Map<string, { ok: boolean; permanent: boolean; response: string }>;
  /** The whole message and its final dot went out, but no reply came: the next hop may have it. */
  readonly unconfirmed?: boolean;
}

/**
 * What the delivery queue hands each next hop's share of a message to. The SMTP client is the real
 * one; the test kit's delivery capture records instead of connecting.
 */
export interface DeliveryTransport {
  /** Delivers to the hop's hosts in order; the outcome per recipient. Never throws for a network failure. */
  deliver(hop: NextHop, from: string, recipients: readonly string[], open: () => Readable): Promise<HopResult>;
  /** Closes idle connections (on stop). */
  close(): void;
}

export interface SmtpClientOptions {
  /** Our EHLO name. */
  readonly name: string;
  readonly connectTimeout: number;
  /** Inactivity limit outside the phases that `timeouts` covers (EHLO, STARTTLS, AUTH, RSET). */
  readonly socketTimeout: number;
  /** Per-reply timeouts, RFC 5321 section 4.5.3.2 by default. */
  readonly timeouts?: ReplyTimeouts;
  /** How long an idle connection to a host is kept for the next message. */
  readonly idleMs?: number;
  /** Simultaneous connections to one host:port (idle ones included). */
  readonly maxConnectionsPerHost?: number;
  /** How long a host whose TLS handshake failed is spoken to in plaintext (opportunistic TLS only). */
  readonly tlsFallbackMs?: number;
}

type Conn = InstanceType<typeof SMTPConnection>;

/**
 * Delivers to a next hop with nodemailer's SMTP client. Tries the hop's hosts in order; a
 * connection failure or a 4xx on connect moves to the next host. Keeps idle connections per host
 * for a short while so that a burst to one next hop reuses them.
 */
export class SmtpClient implements DeliveryTransport {
  private readonly idle = new Map<string, Array<{ conn: Conn; timer: NodeJS.Timeout }>>();
  /** Open connections per host (busy or idle) and the deliveries waiting for one. */
  private readonly open = new Map<string, number>();
  private readonly waiting = new Map<string, Array<() => void>>();
  /** Hosts whose STARTTLS handshake failed, until when they get plaintext. */
  private readonly tlsBroken = new Map<string, number>();

  constructor(private readonly opts: SmtpClientOptions) {}

  /** Hosts currently spoken to without TLS after a failed handshake (for logs and tests). */
  get plaintextHosts(): string[] {
    const now = Date.now();
    return [...this.tlsBroken].filter(([, until]) => until > now).map(([k]) => k);
  }

  async deliver(hop: NextHop, from: string, recipients: readonly string[], open: () => Readable): Promise<HopResult> {
    let lastError = 'no next hop answered';
    let lastPermanent = false;
    let unconfirmed = false;
    for (const target of hop.hosts) {
      // Verified connections are pooled apart (by name): an unverified one must never serve them.
      const addr = `${target.host}:${target.port}`;
      const key = hop.tls === 'verify' ? `${addr}/verify:${target.name ?? target.host}` : addr;
      let conn: Conn;
      try {
        conn = await this.acquire(hop, target.host, target.port, key, target.name);
      } catch (err) {
        lastError = describeError(err, addr);
        lastPermanent = false;
        continue;
      }
      const progress = { finalDotSent: false };
      try {
        const info = await sendWithTimeouts(conn, this.opts.timeouts ?? RFC5321_TIMEOUTS, this.opts.socketTimeout, from, recipients, open(), progress);
        const perRecipient = new Map<string, { ok: boolean; permanent: boolean; response: string }>();
        for (const r of info.accepted as string[]) perRecipient.set(r, { ok: true, permanent: false, response: info.response ?? '250' });
        for (const e of (info.rejectedErrors ?? []) as Array<Error & { recipient?: string; response?: string; responseCode?: number }>) {
          if (e.recipient) perRecipient.set(e.recipient, { ok: false, permanent: (e.responseCode ?? 451) >= 500, response: e.response ?? e.message });
        }
        for (const r of recipients) if (!perRecipient.has(r)) perRecipient.set(r, { ok: false, permanent: false, response: 'no reply for this recipient' });
        this.release(key, conn);
        return { host: addr, perRecipient };
      } catch (err) {
        conn.close();
        this.closed(key);
        const e = err as Error & { responseCode?: number; response?: string; rejectedErrors?: Array<Error & { recipient?: string; response?: string; responseCode?: number }>; code?: string };
        if (e.responseCode && e.response) {
          // The host answered: its answer decides (per recipient when it refused RCPTs).
          const perRecipient = new Map<string, { ok: boolean; permanent: boolean; response: string }>();
          for (const re of e.rejectedErrors ?? []) {
            if (re.recipient) perRecipient.set(re.recipient, { ok: false, permanent: (re.responseCode ?? 451) >= 500, response: re.response ?? re.message });
          }
          for (const r of recipients) if (!perRecipient.has(r)) perRecipient.set(r, { ok: false, permanent: e.responseCode >= 500, response: e.response });
          // A 4xx to the whole transaction lets the next host try; a 5xx is final.
          if (e.responseCode >= 500 || hop.hosts.length === 1) return { host: addr, perRecipient };
          lastError = `${addr} said: ${e.response}`;
          lastPermanent = false;
          continue;
        }
        lastError = describeError(err, addr);
        lastPermanent = false;
        if (progress.finalDotSent) {
          // No answer to the final dot: trying another host now would likely deliver a second copy.
          unconfirmed = true;
          break;
        }
      }
    }
    const perRecipient = new Map<string, { ok: boolean; permanent: boolean; response: string }>();
    for (const r of recipients) perRecipient.set(r, { ok: false, permanent: lastPermanent, response: lastError });
    return { perRecipient, unconfirmed };
  }

  close(): void {
    for (const list of this.idle.values()) for (const { conn, timer } of list) {
      clearTimeout(timer);
      conn.quit();
    }
    this.idle.clear();
    this.open.clear();
  }

  private async acquire(hop: NextHop, host: string, port: number, key: string, name?: string): Promise<Conn> {
    const list = this.idle.get(key);
    while (list?.length) {
      const { conn, timer } = list.pop()!;
      clearTimeout(timer);
      if (isReusable(conn)) return conn;
      this.closed(key);
    }
    const max = this.opts.maxConnectionsPerHost ?? 10;
    while ((this.open.get(key) ?? 0) >= max) {
      // Reuse an idle connection if one came back while we waited, else wait for a slot.
      await new Promise<void>((resolve) => {
        const q = this.waiting.get(key) ?? [];
        q.push(resolve);
        this.waiting.set(key, q);
      });
      const again = this.idle.get(key);
      if (again?.length) {
        const { conn, timer } = again.pop()!;
        clearTimeout(timer);
        if (clientSocketWritable(conn)) return conn;
        this.closed(key);
      }
    }
    this.open.set(key, (this.open.get(key) ?? 0) + 1);
    try {
      const tls = hop.tls ?? 'opportunistic';
      const plaintext = tls === 'opportunistic' && (this.tlsBroken.get(key) ?? 0) > Date.now();
      try {
        return await this.connect(hop, host, port, plaintext ? 'none' : tls, name);
      } catch (err) {
        const e = err as { code?: string; message?: string };
        // nodemailer reports a failed upgrade as ETLS, or as ESOCKET with OpenSSL's message.
        const tlsFailure = e.code === 'ETLS' || (e.code === 'ESOCKET' && /SSL routines|TLS|handshake/i.test(e.message ?? ''));
        if (tls !== 'opportunistic' || plaintext || !tlsFailure) throw err;
        // A server that offers STARTTLS and then fails the handshake gets plaintext for a while,
        // like Postfix's smtp_tls_security_level = may: mail is not held up by a broken TLS setup.
        this.tlsBroken.set(key, Date.now() + (this.opts.tlsFallbackMs ?? 3_600_000));
        return await this.connect(hop, host, port, 'none');
      }
    } catch (err) {
      this.closed(key);
      throw err;
    }
  }

  /** A connection to `key` is gone: free its slot for a waiting delivery. */
  private closed(key: string): void {
    const n = (this.open.get(key) ?? 1) - 1;
    if (n <= 0) this.open.delete(key);
    else this.open.set(key, n);
    this.waiting.get(key)?.shift()?.();
  }

  private async connect(hop: NextHop, host: string, port: number, tls: 'none' | 'opportunistic' | 'required' | 'verify', name?: string): Promise<Conn> {
    // nodemailer would resolve a host name with the system resolver; only literal IPs or names
    // from /etc/hosts (getaddrinfo) are used here. MX lookups belong to the route hook.
    const address = isIP(host) ? host : (await lookup(host)).address;
    const servername = name ?? (isIP(host) ? undefined : host);
    const verify = tls === 'verify';
    const conn = new SMTPConnection({
      host: address,
      port,
      name: this.opts.name,
      secure: false,
      ignoreTLS: tls === 'none',
      opportunisticTLS: tls === 'opportunistic',
      requireTLS: tls === 'required' || verify,
      // Only `verify` checks the certificate (chain and name): elsewhere an unverified TLS session
      // still beats clear text (RFC 7435), as Postfix's `may` and `encrypt` levels do.
      tls: verify ? { rejectUnauthorized: true, servername, ...(hop.ca ? { ca: hop.ca } : {}) } : { rejectUnauthorized: false, servername },
      // nodemailer's connectionTimeout bounds the whole set-up (TCP, greeting, STARTTLS).
      connectionTimeout: this.opts.connectTimeout + (this.opts.timeouts ?? RFC5321_TIMEOUTS).greeting,
      greetingTimeout: (this.opts.timeouts ?? RFC5321_TIMEOUTS).greeting,
      socketTimeout: this.opts.socketTimeout,
      logger: false,
    } as ConstructorParameters<typeof SMTPConnection>[0]);
    useFastDotStuffing(conn);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      conn.once('error', onError);
      conn.connect(() => {
        conn.off('error', onError);
        conn.on('error', () => undefined); // later errors surface through send()
        resolve();
      });
    });
    if (hop.auth) {
      await new Promise<void>((resolve, reject) =>
        conn.login({ user: hop.auth!.user, pass: hop.auth!.pass }, (err) => (err ? reject(err) : resolve())),
      ).catch((err: unknown) => {
        conn.close();
        throw err;
      });
    }
    return conn;
  }

  private release(key: string, conn: Conn): void {
    const idleMs = this.opts.idleMs ?? 2000;
    const quit = () => {
      conn.quit();
      this.closed(key);
    };
    if (idleMs <= 0) return quit();
    // A delivery waiting for a slot to this host takes this connection at once.
    const waiter = this.waiting.get(key)?.shift();
    let list = this.idle.get(key);
    if (!list) this.idle.set(key, (list = []));
    const entry = {
      conn,
      timer: setTimeout(() => {
        const i = list!.indexOf(entry);
        if (i >= 0) list!.splice(i, 1);
        quit();
      }, idleMs),
    };
    entry.timer.unref();
    list.push(entry);
    waiter?.();
  }
}


function describeError(err: unknown, key: string): string {
  const e = err as Error & { code?: string; response?: string };
  return `${key}: ${e.response ?? e.message}${e.code ? ` (${e.code})` : ''}`;
}
