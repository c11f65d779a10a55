import { createWriteStream, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Reply } from '@portcullis/core';
import { MilterConnection, type MilterTarget } from './connection.js';
import { macroPairs, type MacroContext } from './macros.js';
import { Action, ALL_ACTIONS, Cmd, cstrings, MacroStage, offeredProtocol, ProtocolError, Reply as R, splitCStrings, type Packet, type Stage } from './protocol.js';
import { MilterReplies, parseReplyCode } from './replies.js';

export interface MilterSettings {
  /** For logs and the transaction log line: the milter's `name`, else its address. */
  readonly name: string;
  readonly target: MilterTarget;
  readonly connectTimeout: number;
  readonly commandTimeout: number;
  readonly eomTimeout: number;
  readonly defaultAction: 'tempfail' | 'accept' | 'reject';
  /** Highest protocol version offered (6; lower only to test or to humour a broken milter). */
  readonly protocolVersion: number;
  readonly macros: Readonly<Record<Stage, readonly string[]>>;
  readonly values: Readonly<Record<string, string>>;
  readonly maxPacket: number;
}

/** How a milter answered a stage. */
export type Outcome =
  | { readonly kind: 'continue' }
  /** Accept: no more events for this message (or this session, at connect/HELO). */
  | { readonly kind: 'accept' }
  | { readonly kind: 'discard' }
  /** Body stage only: the milter wants no more body (SMFIR_SKIP). */
  | { readonly kind: 'skip' }
  | { readonly kind: 'reject' | 'tempfail' | 'disconnect'; readonly reply: Reply }
  | { readonly kind: 'failed'; readonly error: Error };

/** A modification asked for at end of message, in the order it came. */
export type Modification =
  | { readonly op: 'addHeader'; readonly name: string; readonly value: string }
  | { readonly op: 'insertHeader'; readonly index: number; readonly name: string; readonly value: string }
  | { readonly op: 'changeHeader'; readonly index: number; readonly name: string; readonly value: string }
  | { readonly op: 'addRecipient'; readonly address: string; readonly args?: Record<string, string | true> }
  | { readonly op: 'removeRecipient'; readonly address: string }
  | { readonly op: 'setSender'; readonly address: string; readonly args?: Record<string, string | true> }
  | { readonly op: 'replaceBody'; readonly file: string }
  | { readonly op: 'quarantine'; readonly reason: string };

const NEEDS: Record<string, number> = {
  [R.ADDHEADER]: Action.ADDHDRS,
  [R.INSHEADER]: Action.ADDHDRS,
  [R.CHGHEADER]: Action.CHGHDRS,
  [R.ADDRCPT]: Action.ADDRCPT,
  [R.ADDRCPT_PAR]: Action.ADDRCPT_PAR,
  [R.DELRCPT]: Action.DELRCPT,
  [R.CHGFROM]: Action.CHGFROM,
  [R.REPLBODY]: Action.CHGBODY,
  [R.QUARANTINE]: Action.QUARANTINE,
};

/**
 * One milter for one SMTP session: the option negotiation, then each stage as a command and its
 * answer, bounded by the milter's timeouts. Any failure (connection refused, a timeout, a
 * malformed or unexpected packet) is an Outcome `failed`, never a throw: the plugin applies the
 * milter's default action and stops talking to it for the rest of the session.
 */
export class MilterClient {
  private conn?: MilterConnection;
  version = 0;
  actions = 0;
  proto = 0;
  /** Macro lists the milter asked for (SMFIR_SETSYMLIST), by stage. */
  private readonly lists: Partial<Record<Stage, string[]>> = {};
  /** Set once the milter is done with this session (accepted at connect/HELO, or failed). */
  sessionOutcome?: Outcome;
  /** Set once the milter is done with this message (accepted, rejected, discarded, failed). */
  messageOutcome?: Outcome;
  /** Between MAIL and the end of message: a new MAIL needs SMFIC_ABORT first. */
  private inMessage = false;

  constructor(readonly settings: MilterSettings) {}

  /** Connects and negotiates. */
  async open(): Promise<Outcome> {
    try {
      const s = this.settings;
      this.conn = await MilterConnection.open(s.target, s.connectTimeout, s.maxPacket);
      const offer = Buffer.alloc(12);
      offer.writeUInt32BE(s.protocolVersion, 0);
      offer.writeUInt32BE(ALL_ACTIONS, 4);
      offer.writeUInt32BE(offeredProtocol(s.protocolVersion), 8);
      await this.conn.send(Cmd.OPTNEG, offer);
      const p = await this.conn.next(s.commandTimeout, 'the option negotiation');
      if (p.cmd !== R.OPTNEG || p.data.length < 12) throw new ProtocolError(`expected the option negotiation, got ${describePacket(p)}`);
      const version = p.data.readUInt32BE(0);
      if (version < 2) throw new ProtocolError(`milter protocol version ${version} is not supported (2 to 6 are)`);
      this.version = Math.min(version, s.protocolVersion);
      this.actions = p.data.readUInt32BE(4);
      this.proto = p.data.readUInt32BE(8);
      if (this.actions & ~ALL_ACTIONS) throw new ProtocolError(`milter asked for unknown actions 0x${this.actions.toString(16)}`);
      const offered = offeredProtocol(this.version);
      if (this.proto & ~offered) throw new ProtocolError(`milter asked for protocol options 0x${(this.proto & ~offered).toString(16)} that were not offered`);
      let off = 12;
      while (off + 4 < p.data.length && this.actions & Action.SETSYMLIST) {
        const stage = p.data.readUInt32BE(off);
        const end = p.data.indexOf(0, off + 4);
        const list = p.data.subarray(off + 4, end < 0 ? p.data.length : end).toString('latin1');
        const name = (Object.keys(MacroStage) as Stage[]).find((k) => MacroStage[k] === stage);
        if (name) this.lists[name] = list.split(/[\s,]+/).filter(Boolean);
        off = end < 0 ? p.data.length : end + 1;
      }
      return { kind: 'continue' };
    } catch (err) {
      return this.failed(err);
    }
  }

  /** Sends one stage and reads its answer (unless the milter negotiated it away). */
  async stage(stage: Stage | undefined, cmd: string, data: Buffer, noFlag: number, nrFlag: number, ctx: MacroContext, what: string, allowSkip = false): Promise<Outcome> {
    if (this.sessionOutcome) return this.sessionOutcome;
    try {
      if (cmd === Cmd.MAIL) {
        // A new transaction on the same connection: the milter forgets the previous one.
        if (this.inMessage) await this.conn!.send(Cmd.ABORT);
        this.inMessage = true;
        this.messageOutcome = undefined;
      }
      if (this.proto & noFlag) return { kind: 'continue' };
      if (cmd === Cmd.DATA && this.version < 4) return { kind: 'continue' };
      if (stage) await this.sendMacros(stage, cmd, ctx);
      await this.conn!.send(cmd, data);
      if (this.proto & nrFlag) return { kind: 'continue' };
      return await this.answer(what, this.settings.commandTimeout, allowSkip);
    } catch (err) {
      return this.failed(err);
    }
  }

  /**
   * End of message: SMFIC_BODYEOB, then the modifications until the final answer. A replacement
   * body is written to a temp file as it arrives (never held in memory); the caller removes it.
   */
  async endOfMessage(ctx: MacroContext): Promise<{ outcome: Outcome; mods: Modification[] }> {
    const mods: Modification[] = [];
    let body: { file: string; stream: WriteStream; done: Promise<void> } | undefined;
    const closeBody = async () => {
      if (!body) return;
      body.stream.end();
      await body.done;
    };
    try {
      if (this.sessionOutcome) return { outcome: this.sessionOutcome, mods };
      await this.sendMacros('eom', Cmd.BODYEOB, ctx);
      await this.conn!.send(Cmd.BODYEOB);
      this.inMessage = false;
      for (;;) {
        const p = await this.conn!.next(this.settings.eomTimeout, 'end of message');
        const need = NEEDS[p.cmd];
        if (need !== undefined) {
          if (!(this.actions & need)) throw new ProtocolError(`milter sent ${describePacket(p)} without negotiating that action`);
          if (p.cmd === R.REPLBODY) {
            if (!body) {
              const file = path.join(os.tmpdir(), `portcullis-milter-${randomBytes(8).toString('hex')}.body`);
              const stream = createWriteStream(file, { mode: 0o600 });
              const done = new Promise<void>((resolve, reject) => {
                stream.on('error', reject);
                stream.on('close', resolve);
              });
              done.catch(() => undefined);
              body = { file, stream, done };
              mods.push({ op: 'replaceBody', file });
            }
            if (!body.stream.write(p.data)) await new Promise<void>((resolve) => body!.stream.once('drain', resolve));
            continue;
          }
          mods.push(modification(p));
          continue;
        }
        if (p.cmd === R.PROGRESS) continue;
        const outcome = this.interpret(p, false, true);
        await closeBody();
        return { outcome, mods };
      }
    } catch (err) {
      body?.stream.destroy();
      await Promise.all(mods.map((m) => (m.op === 'replaceBody' ? rm(m.file, { force: true }) : undefined)));
      return { outcome: this.failed(err), mods: [] };
    }
  }

  /** SMFIC_QUIT and close. */
  close(): void {
    this.conn?.close(this.sessionOutcome?.kind === 'failed' ? undefined : Cmd.QUIT);
  }

  private async sendMacros(stage: Stage, cmd: string, ctx: MacroContext): Promise<void> {
    const names = this.lists[stage] ?? this.settings.macros[stage];
    const pairs = macroPairs(names, ctx);
    if (pairs.length) await this.conn!.send(Cmd.MACRO, Buffer.concat([Buffer.from(cmd, 'latin1'), cstrings(...pairs)]));
  }

  private async answer(what: string, timeout: number, allowSkip: boolean): Promise<Outcome> {
    for (;;) {
      const p = await this.conn!.next(timeout, what);
      if (p.cmd === R.PROGRESS) continue;
      return this.interpret(p, allowSkip, false);
    }
  }

  private interpret(p: Packet, allowSkip: boolean, eom: boolean): Outcome {
    switch (p.cmd) {
      case R.CONTINUE:
        return { kind: 'continue' };
      case R.ACCEPT:
        return { kind: 'accept' };
      case R.DISCARD:
        return { kind: 'discard' };
      case R.REJECT:
        return { kind: 'reject', reply: eom ? MilterReplies.rejectMessage : MilterReplies.reject };
      case R.TEMPFAIL:
        return { kind: 'tempfail', reply: MilterReplies.tempfail };
      case R.REPLYCODE: {
        const reply = parseReplyCode(splitCStrings(p.data)[0] ?? '');
        // As Postfix: a 421 reply ends the session.
        return { kind: reply.code === 421 ? 'disconnect' : reply.code >= 500 ? 'reject' : 'tempfail', reply };
      }
      case R.SKIP:
        if (allowSkip && this.proto & 0x400) return { kind: 'skip' };
        break;
    }
    throw new ProtocolError(`unexpected ${describePacket(p)}`);
  }

  private failed(err: unknown): Outcome {
    const error = err instanceof Error ? err : new Error(String(err));
    const outcome: Outcome = { kind: 'failed', error };
    this.sessionOutcome = outcome;
    this.conn?.close();
    return outcome;
  }
}

function describePacket(p: Packet): string {
  return `packet '${p.cmd.replace(/[^\x21-\x7e]/g, '?')}' (0x${p.cmd.charCodeAt(0).toString(16)}, ${p.data.length} bytes)`;
}

/** ESMTP parameters as a milter gives them: `KEY=VALUE KEY2`. */
function parseArgs(s: string | undefined): Record<string, string | true> | undefined {
  if (!s || !s.trim()) return undefined;
  const out: Record<string, string | true> = {};
  for (const word of s.trim().split(/\s+/)) {
    const eq = word.indexOf('=');
    if (eq < 0) out[word.toUpperCase()] = true;
    else out[word.slice(0, eq).toUpperCase()] = word.slice(eq + 1);
  }
  return out;
}

function modification(p: Packet): Modification {
  const need = (n: number) => {
    if (p.data.length < n) throw new ProtocolError(`short ${describePacket(p)}`);
  };
  switch (p.cmd) {
    case R.ADDHEADER: {
      const [name, value] = splitCStrings(p.data);
      if (!name || value === undefined) throw new ProtocolError(`malformed ${describePacket(p)}`);
      return { op: 'addHeader', name, value };
    }
    case R.INSHEADER:
    case R.CHGHEADER: {
      need(5);
      const index = p.data.readUInt32BE(0);
      const [name, value] = splitCStrings(p.data.subarray(4));
      if (!name || value === undefined) throw new ProtocolError(`malformed ${describePacket(p)}`);
      return p.cmd === R.INSHEADER ? { op: 'insertHeader', index, name, value } : { op: 'changeHeader', index, name, value };
    }
    case R.ADDRCPT:
    case R.ADDRCPT_PAR: {
      const [address, args] = splitCStrings(p.data);
      if (!address) throw new ProtocolError(`malformed ${describePacket(p)}`);
      const parsed = p.cmd === R.ADDRCPT_PAR ? parseArgs(args) : undefined;
      return { op: 'addRecipient', address, ...(parsed ? { args: parsed } : {}) };
    }
    case R.DELRCPT: {
      const [address] = splitCStrings(p.data);
      if (!address) throw new ProtocolError(`malformed ${describePacket(p)}`);
      return { op: 'removeRecipient', address };
    }
    case R.CHGFROM: {
      const [address, args] = splitCStrings(p.data);
      if (address === undefined) throw new ProtocolError(`malformed ${describePacket(p)}`);
      const parsed = parseArgs(args);
      return { op: 'setSender', address, ...(parsed ? { args: parsed } : {}) };
    }
    case R.QUARANTINE:
      return { op: 'quarantine', reason: splitCStrings(p.data)[0] ?? '' };
  }
  throw new ProtocolError(`unexpected ${describePacket(p)}`);
}
