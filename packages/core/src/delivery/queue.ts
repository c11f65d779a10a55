import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { domainOf } from '../session/address.js';
import { buildBounce, enhancedStatusOf, type BounceFailure } from './dsn.js';
import type { PluginDriver } from '../plugins/driver.js';
import { SmtpClient, type DeliveryTransport } from './smtp-client.js';
import { entryOf, type DeliveryOptions, type Entry } from './queue-entry.js';
import { newQueueId, type Spool, type SpooledMessage } from '../spool/spool.js';
import type { Clock } from '../api/tokens.js';
import type { NextHop, QueuedMessage } from '../api/types.js';
import { formatReply } from '../api/verdicts.js';
import type { RelayMetrics } from '../telemetry/metrics.js';
import { lazyChild } from '../telemetry/lazy-logger.js';

export type { DeliveryOptions } from './queue-entry.js';

/**
 * Takes committed messages from the spool and delivers them: the route hook names each recipient
 * domain's next hop; recipients sharing a next hop go in one transaction. 2xx: done. 4xx or a
 * network failure: deferred to the next slot of `retrySchedule` (the last slot repeats), bounced once
 * `maxQueueTime` has passed. 5xx: bounced at once. A bounce is an RFC 3464 report to the sender,
 * queued like any message; none for the null sender or for a bounce.
 */
export class DeliveryQueue {
  private readonly entries = new Map<string, Entry>();
  /**
   * Messages due now, in order. New and flushed messages go straight in; deferred ones are moved in
   * by a scan every 500 ms once their time has come. So a new message never waits behind a walk
   * over a large deferred backlog.
   */
  private due: Entry[] = [];
  private dueHead = 0;
  /** The SMTP client (exposed for tests and diagnostics). */
  readonly client: SmtpClient;
  /** Where deliveries go: the SMTP client unless a transport was given. */
  private readonly transport: DeliveryTransport;
  private active = 0;
  /**
   * Recipients whose delivery attempt sent the final dot and got no reply since start-up: each is
   * a copy the next hop may already hold, so a retry may duplicate it (logged with every such case).
   */
  possibleDuplicates = 0;
  private timer?: NodeJS.Timeout;
  private stopped = true;
  private readonly idleWaiters: Array<() => void> = [];
  private pumping = false;

  /** Set by the relay; a delivery attempt keeps the driver it started with (see `setDriver`). */
  metrics?: RelayMetrics;

  constructor(
    private readonly spool: Spool,
    private driver: PluginDriver,
    private opts: DeliveryOptions,
    private readonly log: Logger,
    private readonly clock: Clock = Date.now,
    transport?: DeliveryTransport,
  ) {
    this.client = new SmtpClient({
      name: opts.hostname,
      connectTimeout: opts.connectTimeout,
      socketTimeout: opts.socketTimeout,
      timeouts: opts.timeouts,
      maxConnectionsPerHost: opts.maxConnectionsPerHost,
      idleMs: opts.connectionIdle,
      tlsFallbackMs: opts.tlsFallback,
    });
    this.transport = transport ?? this.client;
  }

  /** Resolves once no delivery is in progress and none is due now (deferred ones wait for their time). */
  async idle(): Promise<void> {
    for (;;) {
      if (this.active) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      else if (!this.stopped && this.dueHead < this.due.length) await new Promise((resolve) => setImmediate(resolve));
      else return;
    }
  }

  /** Loads what the spool holds (after a restart) and starts the scheduler. */
  async start(): Promise<void> {
    this.stopped = false;
    const held = await this.spool.list();
    for (const m of held) this.entries.set(m.meta.id, entryOf(m));
    if (held.length) this.log.info({ messages: held.length }, 'recovered messages from the spool');
    this.timer = setInterval(() => this.scan(), 500);
    this.timer.unref();
    this.scan();
  }

  /**
   * Loads the spool without delivering anything: for `portcullis queue` while the relay is stopped
   * (the caller holds the SpoolLock). Every change is written to the spool at once; the relay
   * picks it up when it starts.
   */
  async open(): Promise<void> {
    for (const m of await this.spool.list()) this.entries.set(m.meta.id, entryOf(m));
  }

  /** Stops taking new work and waits for deliveries in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.active) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.client.close();
    if (this.transport !== this.client) this.transport.close();
  }

  /** A message just committed by the intake. */
  add(message: SpooledMessage): void {
    const e = entryOf(message);
    this.entries.set(message.meta.id, e);
    this.markDue(e);
    this.pump();
  }

  /**
   * After a configuration reload: attempts that start from now on route with the new plugins and
   * use the new retry settings; attempts in progress finish with what they started with.
   */
  setDriver(driver: PluginDriver, opts?: Partial<DeliveryOptions>): void {
    this.driver = driver;
    if (opts) this.opts = { ...this.opts, ...opts };
  }

  /** Makes deferred messages due now (one, or all). Held messages stay held unless `includeHeld`. */
  flush(id?: string, includeHeld = false): number {
    const targets = (id ? [this.entries.get(id)].filter((e): e is Entry => !!e) : [...this.entries.values()]).filter((e) => includeHeld || !e.state.hold);
    for (const e of targets) {
      if (e.busy) {
        e.flushAgain = true;
        continue;
      }
      e.state.nextAttemptAt = 0;
      // Stopped (offline command): the spool is the only place the change can live.
      if (e.state.hold || this.stopped) {
        e.state.hold = false;
        void this.spool.writeState(e.meta.id, e.state).catch((err: unknown) => this.log.warn({ err, id: e.meta.id }, 'could not save the flushed state'));
      }
      this.markDue(e);
    }
    this.pump();
    return targets.length;
  }

  /** Waits for state writes started by `flush` (offline commands exit right after). */
  async settle(): Promise<void> {
    await Promise.all([...this.entries.keys()].map((id) => this.spool.pendingWrite(id)));
  }

  /**
   * Queues a message an operator tool wrote to the spool's tmp/ folder (a quarantine release):
   * this process's spool commits it (it is the spool's only writer while it runs), then it is
   * delivered like any other. The file is removed. Returns the new queue id.
   */
  async enqueueFile(file: string, envelope: { mailFrom: string; recipients: readonly string[]; headers: string }): Promise<string> {
    const abs = path.resolve(file);
    if (path.dirname(abs) !== path.resolve(this.spool.tmpDir)) throw new Error(`enqueue: the file must be in ${this.spool.tmpDir}`);
    const body = await readFile(abs);
    const committed = await this.spool.enqueue({ id: newQueueId(), mailFrom: envelope.mailFrom, recipients: [...envelope.recipients], receivedAt: this.clock(), headers: envelope.headers }, body);
    await rm(abs, { force: true });
    this.add(committed);
    return committed.meta.id;
  }

  /**
   * Queue depth by state, bytes and the oldest message, for /metrics and `portcullis status`. A held
   * message counts as held even while an attempt that began before the hold is still out (the hold
   * stops the next one): the state `portcullis queue list` shows for it, so the two agree.
   */
  stats(): { due: number; deferred: number; held: number; sending: number; messages: number; bytes: number; oldestReceivedAt?: number } {
    const now = this.clock();
    const out = { due: 0, deferred: 0, held: 0, sending: 0, messages: 0, bytes: 0, oldestReceivedAt: undefined as number | undefined };
    for (const e of this.entries.values()) {
      out.messages++;
      out.bytes += e.meta.bodySize;
      if (e.state.hold) out.held++;
      else if (e.busy) out.sending++;
      else if (e.state.nextAttemptAt > now) out.deferred++;
      else out.due++;
      if (out.oldestReceivedAt === undefined || e.meta.receivedAt < out.oldestReceivedAt) out.oldestReceivedAt = e.meta.receivedAt;
    }
    return out;
  }

  get size(): number {
    return this.entries.size;
  }

  private markDue(e: Entry): void {
    if (e.queued || e.busy) return;
    e.queued = true;
    this.due.push(e);
  }

  /** Moves deferred messages whose time has come into the due list. */
  private scan(): void {
    const now = this.clock();
    for (const e of this.entries.values()) {
      if (!e.busy && !e.queued && !e.state.hold && e.state.nextAttemptAt <= now) this.markDue(e);
    }
    this.pump();
  }

  private pump(): void {
    if (this.stopped || this.pumping) return;
    this.pumping = true;
    try {
      const now = this.clock();
      while (this.active < this.opts.concurrency && this.dueHead < this.due.length) {
        const e = this.due[this.dueHead++]!;
        e.queued = false;
        if (this.entries.get(e.meta.id) !== e || e.busy || e.state.hold || e.state.nextAttemptAt > now) continue;
        e.busy = true;
        this.active++;
        this.attempt(e)
          .catch((err: unknown) => {
            // ENOSPC writing the state, say: try again later rather than at once, in a loop.
            e.state.nextAttemptAt = this.clock() + this.opts.retrySchedule[0]!;
            this.log.error({ err, id: e.meta.id }, 'delivery attempt failed unexpectedly');
          })
          .finally(() => {
            e.busy = false;
            this.active--;
            if (e.flushAgain) {
              e.flushAgain = false;
              // Still queued (it deferred) and not held since: due now. The spool keeps the retry
              // slot the attempt wrote, which is only a later time after a restart.
              if (this.entries.get(e.meta.id) === e && !e.state.hold) {
                e.state.nextAttemptAt = 0;
                this.markDue(e);
              }
            }
            if (!this.active) for (const w of this.idleWaiters.splice(0)) w();
            this.pump();
          });
      }
      // Drop the consumed head now and then, so the list does not grow without bound.
      if (this.dueHead > 1024 && this.dueHead * 2 > this.due.length) {
        this.due = this.due.slice(this.dueHead);
        this.dueHead = 0;
      }
    } finally {
      this.pumping = false;
    }
  }

  private async attempt(e: Entry): Promise<void> {
    const { meta, state } = e;
    const driver = this.driver;
    const metrics = this.metrics;
    const log = lazyChild(this.log, { id: meta.id });
    const pending = meta.recipients.filter((r) => !state.done[r]);
    const info: QueuedMessage = { id: meta.id, mailFrom: meta.mailFrom, recipients: meta.recipients, receivedAt: meta.receivedAt, size: meta.bodySize };
    state.attempts++;
    const deferred: Array<{ rcpt: string; response: string; host?: string; took?: number }> = [];
    const failed: Array<BounceFailure & { response: string }> = [];

    // Route per domain, then group recipients by next hop.
    const groups = new Map<string, { hop: NextHop; rcpts: string[] }>();
    const routeCache = new Map<string, Awaited<ReturnType<PluginDriver['route']>>>();
    for (const rcpt of pending) {
      const domain = domainOf(rcpt);
      let route = routeCache.get(domain);
      if (!route) {
        route = await driver.route([domain, info], log);
        routeCache.set(domain, route);
      }
      if (route.hop) {
        const key = JSON.stringify([route.hop.hosts, route.hop.tls ?? '', route.hop.auth?.user ?? '', route.hop.ca ?? '']);
        const g = groups.get(key) ?? { hop: route.hop, rcpts: [] };
        g.rcpts.push(rcpt);
        groups.set(key, g);
      } else if (route.verdict?.kind === 'reject') {
        const r = route.verdict.reply, text = formatReply(r);
        metrics?.delivery('bounced', text);
        failed.push({ recipient: rcpt, status: r.enhanced, diagnostic: text, response: text });
      } else {
        const r = route.verdict?.reply ?? { code: 451, enhanced: '4.4.0', text: `No route to ${domain}: no plugin answered the route hook` };
        deferred.push({ rcpt, response: formatReply(r) });
      }
    }

    for (const { hop, rcpts } of groups.values()) {
      const t0 = performance.now();
      const result = await this.transport.deliver(hop, meta.mailFrom, rcpts, () => this.spool.openMessage(meta));
      const took = (performance.now() - t0) / 1000;
      if (result.unconfirmed) {
        // The next hop got the whole message but we never heard its reply: the retry may be a duplicate.
        state.unconfirmed = (state.unconfirmed ?? 0) + 1;
        this.possibleDuplicates += rcpts.length;
        log.warn({ rcpts, response: result.perRecipient.get(rcpts[0]!)?.response, unconfirmedAttempts: state.unconfirmed, possibleDuplicatesTotal: this.possibleDuplicates }, 'no reply to the final dot: the next hop may have the message, the retry may deliver a duplicate');
      }
      for (const rcpt of rcpts) {
        const r = result.perRecipient.get(rcpt)!;
        if (r.ok) {
          state.done[rcpt] = { status: 'delivered', response: r.response, at: this.clock() };
          metrics?.delivery('delivered', r.response, took);
          log.info({ rcpt, host: result.host, response: r.response, attempts: state.attempts, possibleDuplicates: state.unconfirmed ?? 0 }, 'delivered');
          await driver.observe('delivered', [{ message: info, recipient: rcpt, host: result.host, response: r.response, attempts: state.attempts }], log);
        } else if (r.permanent) {
          metrics?.delivery('bounced', r.response, took);
          failed.push({ recipient: rcpt, status: enhancedStatusOf(r.response, true), diagnostic: r.response, remoteMta: result.host, response: r.response });
        } else {
          deferred.push({ rcpt, response: r.response, host: result.host, took });
        }
      }
    }

    const now = this.clock();
    const expired = now - meta.receivedAt >= this.opts.maxQueueTime;
    if (expired) {
      for (const d of deferred.splice(0)) {
        metrics?.delivery('bounced', d.response, d.took);
        failed.push({ recipient: d.rcpt, status: enhancedStatusOf(d.response, false).replace(/^4/, '5'), diagnostic: `${d.response} (gave up after ${state.attempts} attempts)`, response: d.response, remoteMta: d.host });
      }
    }
    for (const f of failed) {
      state.done[f.recipient] = { status: 'bounced', response: f.response, at: now };
      log.warn({ rcpt: f.recipient, response: f.response, attempts: state.attempts }, 'bounced');
      await driver.observe('bounced', [{ message: info, recipient: f.recipient, host: f.remoteMta, response: f.response, attempts: state.attempts }], log);
    }
    if (failed.length) {
      try {
        await this.bounce(meta, failed, log);
      } catch (err) {
        // The DSN could not be queued (disk full): the recipients stay pending and bounce on a later attempt.
        log.error({ err }, 'could not queue the DSN; the recipients stay queued');
        for (const f of failed) {
          delete state.done[f.recipient];
          deferred.push({ rcpt: f.recipient, response: f.response, host: f.remoteMta });
        }
      }
    }
    if (deferred.length && !state.warned && this.opts.delayWarning > 0 && now - meta.receivedAt >= this.opts.delayWarning) {
      state.warned = true;
      const warn = deferred.map((d) => ({ recipient: d.rcpt, status: enhancedStatusOf(d.response, false), diagnostic: d.response, remoteMta: d.host }));
      await this.bounce(meta, warn, log, { retryUntil: new Date(meta.receivedAt + this.opts.maxQueueTime) });
    }

    if (deferred.length) {
      const slot = this.opts.retrySchedule[Math.min(state.attempts - 1, this.opts.retrySchedule.length - 1)]!;
      state.nextAttemptAt = now + slot;
      state.lastError = deferred[0]!.response;
      for (const d of deferred) {
        metrics?.delivery('deferred', d.response, d.took);
        log.info({ rcpt: d.rcpt, response: d.response, retryAt: new Date(state.nextAttemptAt).toISOString(), attempts: state.attempts }, 'deferred');
        await driver.observe('deferred', [{ message: info, recipient: d.rcpt, host: d.host, response: d.response, attempts: state.attempts, retryAt: state.nextAttemptAt }], log);
      }
      await this.spool.writeState(meta.id, state);
      return;
    }
    this.entries.delete(meta.id);
    await this.spool.remove(meta.id);
  }

  private async bounce(meta: SpooledMessage['meta'], failures: BounceFailure[], log: Logger, delayed?: { retryUntil: Date }): Promise<void> {
    if (!meta.mailFrom || meta.isBounce) {
      // A failed bounce is a double bounce: logged and dropped, never bounced again (no loops).
      log.warn({ from: meta.mailFrom || '<>', bounce: meta.isBounce ?? false, delayed: !!delayed }, 'no DSN sent: the message came from the null sender or was itself a bounce');
      this.metrics?.dsnQueued('not_sent');
      return;
    }
    const originalHeaders = await this.spool.readHeaderBlock(meta);
    const body = buildBounce({ hostname: this.opts.hostname, original: meta, originalHeaders, failures, delayed });
    const id = newQueueId();
    const queued = await this.spool.enqueue({ id, mailFrom: '', recipients: [meta.mailFrom], receivedAt: this.clock(), headers: '', isBounce: true }, body);
    log.info({ dsn: id, to: meta.mailFrom, kind: delayed ? 'delay warning' : 'bounce' }, 'DSN queued');
    this.metrics?.dsnQueued(delayed ? 'delay_warning' : 'bounce');
    this.add(queued);
  }

  // ---- queue control (portcullis queue ...) ----

  /** Every queued message with its state, oldest first. */
  list(): Array<{ id: string; from: string; recipients: readonly string[]; pending: string[]; size: number; receivedAt: number; attempts: number; nextAttemptAt: number; hold: boolean; lastError?: string; busy: boolean }> {
    return [...this.entries.values()]
      .sort((a, b) => a.meta.receivedAt - b.meta.receivedAt)
      .map((e) => ({
        id: e.meta.id,
        from: e.meta.mailFrom,
        recipients: e.meta.recipients,
        pending: e.meta.recipients.filter((r) => !e.state.done[r]),
        size: e.meta.bodySize,
        receivedAt: e.meta.receivedAt,
        attempts: e.state.attempts,
        nextAttemptAt: e.state.nextAttemptAt,
        hold: !!e.state.hold,
        lastError: e.state.lastError,
        busy: e.busy,
      }));
  }

  /** One message: envelope, state and its header block. */
  async show(id: string): Promise<{ meta: SpooledMessage['meta']; state: SpooledMessage['state']; headers: string } | undefined> {
    const e = this.entries.get(id);
    if (!e) return undefined;
    return { meta: e.meta, state: e.state, headers: await this.spool.readHeaderBlock(e.meta) };
  }

  /** Keeps a message from being delivered until released. */
  async hold(id: string): Promise<boolean> {
    const e = this.entries.get(id);
    if (!e) return false;
    e.state.hold = true;
    await this.spool.writeState(id, e.state);
    return true;
  }

  async release(id: string): Promise<boolean> {
    const e = this.entries.get(id);
    if (!e) return false;
    e.state.hold = false;
    e.state.nextAttemptAt = 0;
    await this.spool.writeState(id, e.state);
    this.markDue(e);
    this.pump();
    return true;
  }

  /** Removes a message without telling anyone (an operator's decision, logged). */
  async delete(id: string): Promise<boolean> {
    const e = this.entries.get(id);
    if (!e || e.busy) return false;
    this.entries.delete(id);
    await this.spool.remove(id);
    this.log.warn({ id, from: e.meta.mailFrom, recipients: e.meta.recipients }, 'message deleted by an operator');
    return true;
  }

  /** Gives up on a message's pending recipients now and bounces them to the sender. */
  async bounceNow(id: string): Promise<boolean> {
    const e = this.entries.get(id);
    if (!e || e.busy) return false;
    const pending = e.meta.recipients.filter((r) => !e.state.done[r]);
    const now = this.clock();
    for (const r of pending) e.state.done[r] = { status: 'bounced', response: '550 5.3.0 Returned by the mail administrator', at: now };
    await this.bounce(e.meta, pending.map((r) => ({ recipient: r, status: '5.3.0', diagnostic: '550 5.3.0 Returned by the mail administrator' })), this.log.child({ id }));
    this.entries.delete(id);
    await this.spool.remove(id);
    return true;
  }
}
