import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerSession } from 'smtp-server';
import type { DependencyContainer } from 'tsyringe';
import type { Logger } from 'pino';
import { Tokens } from '../api/tokens.js';
import type { Session } from '../api/types.js';
import { replyError, Replies, type Verdict } from '../api/verdicts.js';
import type { RelayConfig } from '../config/schema.js';
import type { NetworkList } from '../config/networks.js';
import type { RelayMetrics } from '../telemetry/metrics.js';
import { socketPeerAddress, type CommandTap, type ConnectionTaps, type ParserWriteTap, type SendTap } from '../adapter/smtp-server.js';
import type { DriverGenerations } from '../plugins/generations.js';
import type { ConnectionLike, Connections } from '../listen/connections.js';
import type { DiskGuard } from '../spool/disk-guard.js';
import { newQueueId } from '../spool/spool.js';
import { nonAscii, toAddress } from './address.js';
import { unadvertisedParameter } from './esmtp-params.js';
import { canGuardPipelining, pipeliningTaps } from './pipelining-guard.js';
import { isBarePostmaster, postmasterAddress } from './postmaster.js';
import { SessionState, TransactionState, type EditRecorder } from './session.js';
import { canGuardSessions, SessionGuard } from './session-guard.js';
import { summarize } from './transaction-log.js';
import { lazyChild } from '../telemetry/lazy-logger.js';

type Callback = (err?: Error | null) => void;

/** What the session phase reads from the relay: live values (a reload replaces config, disk guard). */
export interface SessionContext {
  readonly config: RelayConfig;
  readonly container: DependencyContainer;
  readonly log: Logger;
  readonly metrics: RelayMetrics;
  readonly diskGuard: DiskGuard;
  readonly spool: { readonly tmpDir: string };
}

/**
 * The open sessions and the SMTP phases before DATA: connect, AUTH, MAIL FROM, RCPT TO, close. Each
 * handler always calls its callback; a plugin that throws gets 451 (fail closed, temporarily).
 */
export class Sessions {
  private readonly open = new Map<string, SessionState>();
  private readonly guards = new Map<string, SessionGuard>();
  private readonly guardPipelining = canGuardPipelining();

  constructor(
    private readonly ctx: SessionContext,
    private readonly connections: Connections,
    private readonly generations: DriverGenerations,
    private readonly newEdits: (tmpDir: string, id: string) => EditRecorder,
  ) {}

  get(id: string): SessionState | undefined {
    return this.open.get(id);
  }

  get size(): number {
    return this.open.size;
  }

  /**
   * The connection taps of this phase; the listener puts them first in the adapter's single wrappers
   * (ahead of its reply rewriting: adapter/smtp-server.ts has the whole order).
   */
  opened(c: ConnectionLike): ConnectionTaps {
    // The taps run in this order: the session guard (limits, tarpit) first, then the pipelining guard.
    const send: SendTap[] = [];
    const command: CommandTap[] = [];
    const parserWrite: ParserWriteTap[] = [];
    if (canGuardSessions(c)) {
      const guard = SessionGuard.install(c, this.ctx.config.limits, lazyChild(this.ctx.log, { session: c.id }));
      this.guards.set(c.id, guard);
      send.push(guard.sendTap);
      command.push(guard.commandTap);
      if (guard.parserWriteTap) parserWrite.push(guard.parserWriteTap);
    }
    if (this.guardPipelining) {
      const p = pipeliningTaps(c, () => this.ctx.log.warn({ session: c.id, client: c.remoteAddress }, 'improper pipelining: message content sent before the 354 reply; DATA refused, connection closed'));
      command.push(p.command);
      parserWrite.push(p.parserWrite);
    }
    return { send, command, parserWrite };
  }

  closed(id: string): void {
    this.guards.get(id)?.dispose();
    this.guards.delete(id);
  }

  async connect(raw: SMTPServerSession, listener: Session['listener'], label: string, disabled: readonly string[], cb: Callback, proxyPeers: NetworkList): Promise<void> {
    const connection = this.connections.get(raw.id);
    const parent = this.ctx.container;
    // The guard's logger when there is one (the same bindings): one child per session, built on first use.
    const log = this.guards.get(raw.id)?.log ?? lazyChild(this.ctx.log, { session: raw.id });
    const driver = this.generations.take();
    const s = new SessionState(raw, listener, (session) => sessionContainer(parent, session), log, connection, driver, this.ctx.config, proxyPeers.contains((connection && socketPeerAddress(connection)) ?? ''));
    s.metricsLabel = label;
    this.open.set(raw.id, s);
    // A session list replaces the server-wide one in smtp-server, so it repeats it. AUTH is neither
    // advertised nor accepted before TLS: credentials never cross the wire in clear.
    if (!raw.secure && !disabled.includes('AUTH')) raw.disabledCommands = [...disabled, 'AUTH'];
    try {
      // Normally decided (or at least started) before the greeting delay (listeners.ts); here for PROXY protocol listeners, whose
      // client address is known only now, and when the greeting override is unavailable.
      // A promise when the count is held by the cluster primary: the greeting waits for it.
      const refused = connection ? await this.connections.admit({ id: raw.id, remoteAddress: raw.remoteAddress }, listener, label) : undefined;
      if (refused) return cb(replyError(refused));
      s.timer = setTimeout(() => {
        log.warn({ client: raw.remoteAddress }, 'session time limit reached');
        connection?.send(Replies.sessionTimeout.code, `${Replies.sessionTimeout.enhanced} ${Replies.sessionTimeout.text}`);
        connection?.close();
      }, s.config.limits.sessionTimeout);
      s.timer.unref();
      s.connectChecked = s.remoteAddress;
      const d = await s.driver.verdict('connect', [s], log);
      if (d.verdict && d.verdict.kind !== 'accept') this.ctx.metrics.connectionRefused(label, 'policy');
      answer(s, d.verdict, cb);
    } catch (err) {
      log.error({ err }, 'connect failed');
      cb(replyError(Replies.pluginFailure));
    }
  }

  async auth(auth: SMTPServerAuthentication, raw: SMTPServerSession, cb: (err: Error | null | undefined, response?: { user: string }) => void): Promise<void> {
    const s = this.open.get(raw.id)!;
    try {
      const d = await s.driver.verdict('auth', [s, { method: auth.method, username: auth.username ?? '', password: auth.password ?? '', authzid: (auth as { authzid?: string }).authzid || undefined }], s.log);
      if (d.verdict?.kind === 'accept') {
        s.log.info({ user: auth.username, plugin: d.plugin }, 'authenticated');
        s.authMethod = auth.method;
        this.ctx.metrics.authResult(s.metricsLabel, 'success');
        return cb(null, { user: auth.username ?? '' });
      }
      s.log.warn({ user: auth.username, client: raw.remoteAddress }, 'authentication failed');
      this.ctx.metrics.authResult(s.metricsLabel, 'failure');
      answer(s, d.verdict ?? { kind: 'reject', reply: Replies.authFailed }, cb);
    } catch (err) {
      s.log.error({ err }, 'auth failed');
      cb(replyError(Replies.pluginFailure));
    }
  }

  async mail(address: SMTPServerAddress, raw: SMTPServerSession, cb: Callback): Promise<void> {
    const s = this.open.get(raw.id)!;
    try {
      summarize(this.ctx.metrics, s, 'abandoned');
      if (s.listener.auth === 'required' && !raw.user) {
        return cb(replyError({ code: 530, enhanced: '5.7.0', text: 'Authentication required' }));
      }
      const badParam = unadvertisedParameter('MAIL', address.args, authOffered(raw, s));
      if (badParam) return cb(replyError(badParam));
      if (s.connectChecked !== s.remoteAddress) {
        // XCLIENT from a listed proxy replaced the client: judge the new client as at connect.
        s.log.info({ peer: s.peerAddress, client: s.remoteAddress, proxied: s.proxied }, 'client address from XCLIENT');
        s.connectChecked = s.remoteAddress;
        const c = await s.driver.verdict('connect', [s], s.log);
        if (c.verdict && c.verdict.kind !== 'accept') return answer(s, c.verdict, cb);
      }
      const diskGuard = this.ctx.diskGuard;
      const privileged = diskGuard.isPrivileged({ remoteAddress: raw.remoteAddress, user: s.user });
      if (!(await diskGuard.hasRoom(raw.remoteAddress, privileged))) return cb(replyError(Replies.insufficientStorage));
      const helo = s.helo ?? '';
      if (s.heloChecked !== helo) {
        const d = await s.driver.verdict('helo', [s, helo], s.log);
        if (d.verdict && d.verdict.kind !== 'accept') return answer(s, d.verdict, cb);
        s.heloChecked = helo;
      }
      if (nonAscii(address.address)) return cb(replyError(Replies.nonAsciiAddress));
      const id = newQueueId();
      const txn = new TransactionState(id, s, toAddress(address.address, address.args), this.newEdits(this.ctx.spool.tmpDir, id));
      s.txn = txn;
      const d = await s.driver.verdict('mail', [txn, txn.mailFrom], s.log);
      if (d.verdict && d.verdict.kind !== 'accept') {
        s.txn = undefined;
        return answer(s, d.verdict, cb);
      }
      cb();
    } catch (err) {
      s.log.error({ err }, 'MAIL FROM failed');
      cb(replyError(Replies.pluginFailure));
    }
  }

  async rcpt(address: SMTPServerAddress, raw: SMTPServerSession, cb: Callback): Promise<void> {
    const s = this.open.get(raw.id)!;
    const txn = s.txn;
    try {
      if (!txn) return cb(replyError({ code: 503, enhanced: '5.5.1', text: 'Need MAIL command first' }));
      const badParam = unadvertisedParameter('RCPT', address.args, false);
      if (badParam) return cb(replyError(badParam));
      if (txn.recipients.length >= s.config.limits.recipients) {
        this.guards.get(raw.id)?.noteOvershoot();
        return cb(replyError(Replies.tooManyRecipients));
      }
      if (isBarePostmaster(address.address)) return this.acceptPostmaster(s, txn, address, cb);
      if (nonAscii(address.address)) return cb(replyError(Replies.nonAsciiAddress));
      const to = toAddress(address.address, address.args);
      const d = await s.driver.verdict('rcpt', [txn, to], s.log);
      if (d.verdict?.kind === 'accept') {
        txn.recipients.push(to);
        return cb();
      }
      // Deny by default: a recipient nobody accepted is not relayed.
      const v: Verdict = d.verdict ?? { kind: 'reject', reply: Replies.unableToRelay };
      if (!d.verdict) s.log.info({ rcpt: to.address, client: raw.remoteAddress }, 'no plugin accepted the recipient: unable to relay');
      (txn.notes as Record<string, unknown>)['rejectedRecipients'] = [...((txn.notes['rejectedRecipients'] as string[]) ?? []), to.address];
      answer(s, v, cb);
    } catch (err) {
      s.log.error({ err }, 'RCPT TO failed');
      cb(replyError(Replies.pluginFailure));
    }
  }

  async close(raw: SMTPServerSession): Promise<void> {
    const s = this.open.get(raw.id);
    if (!s) return;
    this.open.delete(raw.id);
    if (s.timer) clearTimeout(s.timer);
    summarize(this.ctx.metrics, s, 'abandoned');
    try {
      await s.driver.observe('disconnect', [s], s.log);
    } finally {
      s.madeContainer?.dispose?.();
      this.generations.release(s.driver);
    }
  }

  /** `RCPT TO:<postmaster>`: accepted from anyone, routed to the postmaster address (postmaster.ts). */
  private acceptPostmaster(s: SessionState, txn: TransactionState, address: SMTPServerAddress, cb: Callback): void {
    const target = postmasterAddress(this.ctx.config.postmaster, this.ctx.container);
    if (!target) {
      s.log.warn({ client: s.remoteAddress }, 'RCPT TO:<postmaster> refused: no postmaster address (set postmaster: in the config, or host a domain)');
      return cb(replyError({ code: 550, enhanced: '5.1.1', text: 'No postmaster mailbox is configured here' }));
    }
    // `<postmaster>` twice (or beside the address itself) is one recipient.
    if (!txn.recipients.some((r) => r.address.toLowerCase() === target.toLowerCase())) txn.recipients.push(toAddress(target, address.args));
    s.log.info({ rcpt: address.address, routedTo: target, client: s.remoteAddress }, 'postmaster recipient accepted');
    cb();
  }
}

/** A session's child container, with the session registered as `Tokens.Session`. */
function sessionContainer(parent: DependencyContainer, session: SessionState): DependencyContainer {
  const container = parent.createChildContainer();
  container.registerInstance(Tokens.Session, session);
  return container;
}

/** Turns a verdict into the smtp-server callback, with our exact reply text. */
export function answer(s: SessionState, v: Verdict | undefined, cb: Callback): void {
  if (!v || v.kind === 'accept') return cb();
  cb(replyError(v.reply));
  if (v.kind === 'disconnect') setImmediate(() => s.connection?.close());
}

/** Whether AUTH is offered on this connection now (then MAIL FROM's AUTH= parameter is allowed). */
function authOffered(raw: SMTPServerSession, s: SessionState): boolean {
  const disabled = (raw as { disabledCommands?: string[] }).disabledCommands;
  return s.listener.auth !== 'off' && !(disabled ?? []).includes('AUTH');
}
