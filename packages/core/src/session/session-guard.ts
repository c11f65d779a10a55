import type { Logger } from 'pino';
import { formatReply, Replies, type Reply } from '../api/verdicts.js';
import { answering, awaitsContinuation, canGuardConnection, destroyConnection, isClosing, isCommandSupported, resetUnrecognizedCommands, type CommandTap, type Conn, type ParserWriteTap, type SendTap } from '../adapter/smtp-server.js';

/** The per-session command limits (`limits.*` in the config). 0 turns a limit off. */
export interface SessionGuardLimits {
  /** Longest one command line may take to arrive, first byte to CRLF (outside DATA). */
  readonly commandTimeout: number;
  /** NOOP, RSET, VRFY, EXPN, HELP, ETRN allowed per session; each one past it counts as an error. */
  readonly junkCommands: number;
  /** MAIL commands per session; past it: 421 4.7.0 and close. */
  readonly transactionsPerSession: number;
  /** Unrecognised commands per session; past it: 421 4.7.0 and close. */
  readonly unknownCommands: number;
  /** Error replies (4xx/5xx) before the tarpit starts. */
  readonly tarpitAfter: number;
  /** Pause before each command once tarpitted, times the errors past `tarpitAfter` (grows). */
  readonly tarpitDelay: number;
  /** The pause never exceeds this. */
  readonly tarpitMax: number;
  /** Error replies per session; then 421 4.7.0 and close. */
  readonly maxErrors: number;
  /**
   * `452 4.5.3 Too many recipients` replies (past limits.recipients) per session that are not
   * errors (Postfix's smtpd_recipient_overshoot_limit). Absent: 1000.
   */
  readonly recipientOvershoot?: number;
  /** Longest a TLS handshake after STARTTLS may take; then the connection is closed. Absent: 30 s. 0 = off. */
  readonly tlsHandshakeTimeout?: number;
}

const JUNK = new Set(['NOOP', 'RSET', 'VRFY', 'EXPN', 'HELP', 'ETRN']);

/** True when the installed smtp-server still has the internals the guard's taps and reads need. */
export function canGuardSessions(connection: unknown): boolean {
  return canGuardConnection(connection);
}

/**
 * Per-session command discipline, in the spirit of Postfix's smtpd_junk_command_limit,
 * smtpd_soft/hard_error_limit and smtpd_error_sleep_time:
 *
 *   command line slower than commandTimeout ─▶ 421 4.4.2, close (one byte a second no longer holds a slot)
 *   junk command past junkCommands ──────────▶ counts as an error
 *   MAIL past transactionsPerSession ────────▶ 421 4.7.0, close
 *   unknown command past unknownCommands ────▶ 421 4.7.0, close (smtp-server's own limit of 10 is replaced)
 *   every 4xx/5xx reply is an error: past tarpitAfter each next command waits longer (tarpit);
 *   at maxErrors ────────────────────────────▶ 421 4.7.0, close
 *   452 4.5.3 past limits.recipients ────────▶ not an error, up to recipientOvershoot per session
 *   command line over smtp-server's maximum ─▶ 500 5.5.6 Line too long, close
 *   EHLO/HELO with 8-bit bytes ──────────────▶ 501 5.5.2 (RFC 5321 domains and address literals are ASCII)
 *   STARTTLS handshake not done in tlsHandshakeTimeout ─▶ close
 * The tarpit's pause is the server's time, not the client's: it never counts against commandTimeout.
 *
 * Installed per connection: it sees replies, commands and parser input through the adapter's taps
 * and reads the connection's state through its functions (adapter/smtp-server.ts: smtp-server has
 * no hook for any of these); `canGuardSessions` checks the internals exist.
 */
export class SessionGuard {
  errors = 0;
  junk = 0;
  transactions = 0;
  unknown = 0;
  /** Recipients refused past limits.recipients in this session. */
  overshoot = 0;
  /** Set by the relay just before it refuses a recipient past the limit: that reply is not an error. */
  private overshootPending = false;
  private lineTimer?: NodeJS.Timeout;
  private tarpitTimer?: NodeJS.Timeout;
  private tlsTimer?: NodeJS.Timeout;
  private closedByGuard = false;

  constructor(private readonly conn: Conn, private readonly limits: SessionGuardLimits, readonly log: Logger) {}

  /**
   * The guard for one connection. Its taps (`sendTap`, `commandTap`, `parserWriteTap`) go into the
   * adapter's single wrappers (installConnectionTaps), ahead of the reply rewriting and of the
   * pipelining guard's.
   */
  static install(connection: Conn, limits: SessionGuardLimits, log: Logger): SessionGuard {
    return new SessionGuard(connection, limits, log);
  }

  /** Sees every reply before it is rewritten and written: counts errors, answers a line too long. */
  readonly sendTap: SendTap = (code, data, context, next) => {
    if (code === 421 && data === 'Error: Command line too long') {
      // smtp-server has dropped the line and its parser: the session cannot go on, but the client
      // is told what went wrong (RFC 5321 4.2.4: 500 for a line too long), then the connection closes.
      next(500, '5.5.6 Line too long', context);
      this.onReply(500);
      this.log.warn({ client: this.conn.remoteAddress }, 'command line too long: closing');
      this.conn.close();
      return;
    }
    next(code, data, context);
    this.onReply(code);
  };

  /** Sees every command before the library (and the pipelining guard) does. */
  readonly commandTap: CommandTap = (command, callback, next) => this.onCommand(command, callback, next);

  /** Arms the per-command timer while a command line is incomplete (none when limits.commandTimeout is 0). */
  get parserWriteTap(): ParserWriteTap | undefined {
    if (!(this.limits.commandTimeout > 0)) return undefined;
    return (chunk, parser) => {
      if (!parser.dataMode && chunk.length) this.onBytes(chunk);
    };
  }

  /** Stops the guard's timers (the connection closed). */
  dispose(): void {
    if (this.lineTimer) clearTimeout(this.lineTimer);
    if (this.tarpitTimer) clearTimeout(this.tarpitTimer);
    if (this.tlsTimer) clearTimeout(this.tlsTimer);
    this.lineTimer = this.tarpitTimer = this.tlsTimer = undefined;
  }

  private refuse(reply: Reply, why: string, fields: Record<string, unknown> = {}): void {
    if (this.closedByGuard) return;
    this.closedByGuard = true;
    this.dispose();
    this.log.warn({ client: this.conn.remoteAddress, reply: formatReply(reply), errors: this.errors, junk: this.junk, transactions: this.transactions, unknown: this.unknown, ...fields }, why);
    // A 421 makes smtp-server close the connection after writing it.
    this.conn.send(reply.code, `${reply.enhanced} ${reply.text}`);
  }

  private get gone(): boolean {
    return this.closedByGuard || isClosing(this.conn);
  }

  /**
   * The next reply is a recipient refused past limits.recipients (452 4.5.3). A client that
   * pipelines its whole list gets those for the extra recipients and sends them again in a next
   * transaction: they are not errors up to `recipientOvershoot` per session, so the client is
   * neither tarpitted nor closed before the DATA of the recipients it got.
   */
  noteOvershoot(): void {
    this.overshootPending = true;
  }

  private onReply(code: number): void {
    const overshoot = this.overshootPending;
    this.overshootPending = false;
    if (code < 400 || code === 421 || this.gone) return;
    if (overshoot && code === 452 && ++this.overshoot <= (this.limits.recipientOvershoot ?? 1000)) return;
    this.errors++;
    if (this.limits.maxErrors > 0 && this.errors >= this.limits.maxErrors) {
      // After the error reply itself has gone out.
      setImmediate(() => this.refuse(Replies.tooManyErrors, 'too many errors in one session: closing'));
    }
  }

  /** The pause before the next command: grows with each error past `tarpitAfter`. */
  delay(): number {
    const over = this.errors - this.limits.tarpitAfter;
    if (this.limits.tarpitDelay <= 0 || over <= 0) return 0;
    return Math.min(this.limits.tarpitDelay * over, this.limits.tarpitMax);
  }

  private onCommand(command: Buffer, callback: (() => void) | undefined, next: (command: Buffer, callback?: () => void) => void): void {
    if (this.gone) return;
    const line = (command || '').toString();
    const name = line.split(' ', 1)[0]!.toUpperCase();
    if (!awaitsContinuation(this.conn)) {
      const l = this.limits;
      if (JUNK.has(name)) {
        this.junk++;
        // Past the limit a junk command costs an error: it is tarpitted and, in the end, disconnected.
        if (l.junkCommands > 0 && this.junk > l.junkCommands) this.errors++;
      } else if (name === 'MAIL') {
        this.transactions++;
        if (l.transactionsPerSession > 0 && this.transactions > l.transactionsPerSession) return this.refuse(Replies.tooManyTransactions, 'too many transactions in one session: closing');
      } else if (name && !isCommandSupported(this.conn, name)) {
        this.unknown++;
        resetUnrecognizedCommands(this.conn); // our limit decides, not the library's fixed 10
        if (l.unknownCommands > 0 && this.unknown > l.unknownCommands) return this.refuse(Replies.tooManyUnknownCommands, 'too many unrecognised commands: closing', { command: name.slice(0, 32) });
      }
      if (l.maxErrors > 0 && this.errors >= l.maxErrors) return this.refuse(Replies.tooManyErrors, 'too many errors in one session: closing');
      if ((name === 'EHLO' || name === 'HELO') && command.some((b) => b > 0x7f)) {
        // RFC 5321 4.1.1.1: a domain or an address literal, ASCII only (an IDN goes as A-labels).
        this.conn.send(501, '5.5.2 Syntax: EHLO hostname (8-bit characters are not allowed)');
        return callback?.();
      }
      if (name === 'STARTTLS') this.armTlsTimer();
    }
    // QUIT is never slowed down: a client that gives up should be gone at once.
    const wait = name === 'QUIT' && !awaitsContinuation(this.conn) ? 0 : this.delay();
    if (!wait) return next(command, callback);
    this.tarpitTimer = setTimeout(() => {
      this.tarpitTimer = undefined;
      if (this.gone) return;
      // The client's clock for a line it started while we held this command starts now: the pause
      // was ours (a line timer firing in the same tick would otherwise count it against the client).
      if (this.lineTimer) {
        clearTimeout(this.lineTimer);
        this.armLineTimer(this.limits.commandTimeout);
      }
      next(command, callback);
    }, wait);
  }

  /**
   * smtp-server's handshake after STARTTLS only has the idle timeout (5 min by default): a client
   * that says STARTTLS and then nothing held its connection that long. Past tlsHandshakeTimeout
   * without a secure connection, the socket is destroyed (smtp-server cleans up on its close).
   */
  private armTlsTimer(): void {
    const ms = this.limits.tlsHandshakeTimeout ?? 30_000;
    if (ms <= 0 || this.tlsTimer) return;
    this.tlsTimer = setTimeout(() => {
      this.tlsTimer = undefined;
      if (this.gone || this.conn.secure) return;
      this.log.warn({ client: this.conn.remoteAddress, timeoutMs: ms }, 'TLS handshake after STARTTLS not completed in time: closing');
      destroyConnection(this.conn);
    }, ms);
    this.tlsTimer.unref();
  }

  private onBytes(chunk: Buffer): void {
    const complete = chunk[chunk.length - 1] === 0x0a;
    if (complete || chunk.includes(0x0a)) {
      // A line ended: a partial one (if any) after it starts a new clock.
      if (this.lineTimer) clearTimeout(this.lineTimer);
      this.lineTimer = undefined;
      if (complete) return;
    } else if (this.lineTimer) return; // still the same slow line
    this.armLineTimer(this.limits.commandTimeout);
  }

  private armLineTimer(ms: number): void {
    this.lineTimer = setTimeout(() => {
      this.lineTimer = undefined;
      if (this.gone) return;
      // The server is still answering earlier pipelined commands, or holding one in the tarpit:
      // that time is ours, not the client's.
      if (answering(this.conn) || this.tarpitTimer) return this.armLineTimer(Math.min(ms, 1000));
      this.refuse(Replies.commandTimeout, 'command line not completed in time: closing', { timeoutMs: this.limits.commandTimeout });
    }, ms);
    this.lineTimer.unref();
  }
}
