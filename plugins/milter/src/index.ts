import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { copyFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { backendTarget, definePlugin, HeaderSectionCut, resolveBackendTarget, duration, size, Tokens, z, type Address, type RelayConfig, type Session, type Transaction, type Verdict } from '@portcullis/core';
// The core's own edit machinery, for the sequential mode (each milter sees the earlier ones' edits):
// not a plugin API, so not in the public face; this plugin is released with the core (index.ts there says why).
import { asPlugin, editedContent, foldValue, type ContentPlan } from '@portcullis/core/internal';
import { describeTarget } from './connection.js';
import { DEFAULT_MACROS, type MacroContext } from './macros.js';
import { MilterClient, type MilterSettings, type Modification, type Outcome } from './milter-client.js';
import { BODY_CHUNK, Cmd, cstrings, PROTOCOL_VERSION, Proto, type Stage } from './protocol.js';
import { MilterReplies } from './replies.js';

export { MilterClient, type MilterSettings, type Outcome, type Modification } from './milter-client.js';
export { parseReplyCode } from './replies.js';
export { DEFAULT_MACROS } from './macros.js';

const STAGES = ['connect', 'helo', 'mail', 'rcpt', 'data', 'eoh', 'eom'] as const satisfies readonly Stage[];

/** `inet:host:port`, `inet:[v6]:port`, `unix:/path` (relative paths against the config file); `local:` is `unix:`. */
const address = backendTarget({ example: 'inet:127.0.0.1:8891' });

const macroName = z.string().regex(/^(?:[A-Za-z_]|\{[A-Za-z0-9_]+\})$/, 'a macro name: one letter or {name}');
const stageLists = z
  .strictObject(Object.fromEntries(STAGES.map((s) => [s, z.array(macroName).optional().describe(`Macros sent before the ${s} stage.`)])) as Record<Stage, z.ZodOptional<z.ZodArray<typeof macroName>>>)
  .optional();

const milter = z.strictObject({
  address: address.describe('Where the milter listens: `inet:host:port` (loopback or your network) or `unix:/path/to/socket` (relative to the config file), as in Postfix\'s `smtpd_milters`.'),
  name: z.string().regex(/^[\w.-]{1,64}$/).optional().describe('Name for logs and the transaction log line; default the address.'),
  connectTimeout: duration().default(5_000).describe('Time to connect and negotiate (Postfix `milter_connect_timeout`).'),
  commandTimeout: duration().default(10_000).describe('Time the milter may take to answer one command: connect, HELO, MAIL, RCPT, DATA, each header, end of headers, each body chunk (Postfix `milter_command_timeout`).'),
  eomTimeout: duration().default(20_000).describe('Time the milter may take at end of message, modifications included (Postfix `milter_content_timeout`). The whole end of message of every milter must fit in the plugin entry\'s `timeout` (default 30s).'),
  defaultAction: z.enum(['tempfail', 'accept', 'reject']).default('tempfail').describe('What happens when the milter is down, times out or breaks the protocol (Postfix `milter_default_action`): `tempfail` answers 451 4.7.1 for the rest of the session; `accept` goes on without this milter; `reject` answers 550 5.7.1.'),
  protocolVersion: z.number().int().min(2).max(PROTOCOL_VERSION).default(PROTOCOL_VERSION).describe('Highest milter protocol version offered (Postfix `milter_protocol`); older milters are negotiated down anyway.'),
  macros: stageLists.describe('Replaces the macro list of a stage (restricts what this milter is told); Postfix\'s `milter_*_macros`. A milter that asks for its own lists (protocol 6) gets those.'),
  addMacros: stageLists.describe('Macros added to a stage\'s list.'),
  macroValues: z.record(macroName, z.string()).default({}).describe('Fixed macro values (e.g. `{daemon_name}: inbound`), sent wherever the macro is listed; they override the relay\'s own.'),
});

export const options = z.strictObject({
  milters: z.array(milter).min(1).describe('The milters, in order: each sees every stage; their end-of-message modifications are applied in this order.'),
  sequential: z.boolean().default(false).describe('As Postfix: each milter after the first gets the message at end of data with the earlier milters\' changes applied (from a temp-file copy of the message), instead of while it streams. Off: every milter sees the message as received, all in the same pass.'),
  maxPacket: size().default(1024 * 1024).describe('Largest packet accepted from a milter; a larger length is a malformed packet (default action).'),
});

export type MilterOptions = z.input<typeof options>;

/** What this plugin records in `txn.notes.milter`. */
export interface MilterNote {
  /** Per milter: its end-of-message answer and what it changed. */
  readonly milters: Array<{ milter: string; outcome: string; modifications: string[] }>;
  /** The milter that asked to discard the message. */
  discardedBy?: string;
}

interface SessionState {
  readonly clients: MilterClient[];
  /** A milter answered discard at connect or HELO: every message of the session is dropped. */
  discardBy?: string;
}

interface TxnState {
  discardBy?: string;
  /** The milters' answers to DATA (SMFIC_DATA). */
  dataVerdict?: Verdict;
}

/**
 * A milter client (Sendmail/Postfix content filter protocol, version 6, negotiated down to 2):
 * every stage is sent at the matching hook, the body streamed from a raw reader, and the
 * modifications at end of message go through `txn.edits`. Written here: npm has no maintained
 * milter client (only milter *servers*), and the protocol is small.
 */
export default definePlugin({
  name: 'milter',
  options,
  setup(opts, ctx) {
    const config = ctx.container.resolve<RelayConfig>(Tokens.Config);
    const settings: MilterSettings[] = opts.milters.map((m) => {
      const target = resolveBackendTarget(m.address, ctx.configDir);
      const macros = Object.fromEntries(STAGES.map((s) => [s, [...(m.macros?.[s] ?? DEFAULT_MACROS[s]), ...(m.addMacros?.[s] ?? [])]])) as Record<Stage, string[]>;
      return {
        name: m.name ?? describeTarget(target),
        target,
        connectTimeout: m.connectTimeout,
        commandTimeout: m.commandTimeout,
        eomTimeout: m.eomTimeout,
        defaultAction: m.defaultAction,
        protocolVersion: m.protocolVersion,
        macros,
        values: m.macroValues,
        maxPacket: opts.maxPacket,
      };
    });
    const sessions = new Map<Session, SessionState>();
    const txns = new WeakMap<Transaction, TxnState>();
    const outcomes = ctx.metrics.counter<'stage' | 'outcome'>({ name: 'replies_total', help: 'Milter answers by stage and kind (continue, accept, reject, tempfail, discard, skip, failed)', labelNames: ['stage', 'outcome'] });
    const macroCtx = (session: Session, name: string, txn?: Transaction, rcpt?: Address): MacroContext => ({
      hostname: config.hostname,
      session,
      txn,
      rcpt,
      extra: settings.find((s) => s.name === name)?.values ?? {},
    });

    /** Logs a failure once, and gives the milter's default action as a verdict (undefined: accept). */
    const onFailure = (session: Session, c: MilterClient, stage: string, error: Error): Verdict | undefined => {
      if (!(error as { logged?: boolean }).logged) {
        (error as { logged?: boolean }).logged = true;
        session.log.error({ plugin: 'milter', milter: c.settings.name, stage, err: error, action: c.settings.defaultAction }, `milter ${c.settings.name} failed (${error.message}): ${c.settings.defaultAction}`);
      }
      if (c.settings.defaultAction === 'accept') return undefined;
      return c.settings.defaultAction === 'reject' ? { kind: 'reject', reply: MilterReplies.failedReject } : { kind: 'tempfail', reply: MilterReplies.tempfail };
    };

    /**
     * An answer as a verdict for this stage (undefined: go on). Accept and discard end the milter's
     * part in the message (or the session, at connect and HELO).
     */
    const decide = (session: Session, c: MilterClient, stage: string, o: Outcome, onDiscard: () => void, sessionWide: boolean): Verdict | undefined => {
      outcomes.inc({ stage, outcome: o.kind });
      switch (o.kind) {
        case 'continue':
        case 'skip':
          return undefined;
        case 'accept':
          if (sessionWide) c.sessionOutcome = o;
          else c.messageOutcome = o;
          return undefined;
        case 'discard':
          if (!sessionWide) c.messageOutcome = o;
          onDiscard();
          return undefined;
        case 'failed':
          return onFailure(session, c, stage, o.error);
        default:
          session.log.info({ plugin: 'milter', milter: c.settings.name, stage, reply: o.reply }, `milter ${c.settings.name}: ${o.kind} at ${stage}`);
          return { kind: o.kind, reply: o.reply };
      }
    };

    const open = async (session: Session): Promise<SessionState> => {
      const state: SessionState = { clients: settings.map((s) => new MilterClient(s)) };
      sessions.set(session, state);
      await Promise.all(state.clients.map((c) => c.open()));
      return state;
    };
    const stateOf = async (session: Session): Promise<SessionState> => sessions.get(session) ?? (await open(session));

    /** The session-level stages (connect, HELO) for one client; a verdict only for reject/tempfail. */
    const sessionStage = async (session: Session, stage: 'connect' | 'helo', data: Buffer): Promise<Verdict | undefined> => {
      const state = await stateOf(session);
      for (const c of state.clients) {
        if (c.sessionOutcome) continue; // failed or accepted: a failure is answered at MAIL
        const cmd = stage === 'connect' ? Cmd.CONNECT : Cmd.HELO;
        const o = await c.stage(stage, cmd, data, stage === 'connect' ? Proto.NOCONNECT : Proto.NOHELO, stage === 'connect' ? Proto.NR_CONN : Proto.NR_HELO, macroCtx(session, c.settings.name), stage);
        if (o.kind === 'failed') {
          outcomes.inc({ stage, outcome: 'failed' });
          onFailure(session, c, stage, o.error);
          continue;
        }
        const v = decide(session, c, stage, o, () => (state.discardBy ??= c.settings.name), true);
        if (v) return v;
      }
      return undefined;
    };

    /** Verdicts for the failed milters whose default action is not accept (first one decides). */
    const failedVerdict = (session: Session, state: SessionState, stage: string): Verdict | undefined => {
      for (const c of state.clients) {
        if (c.sessionOutcome?.kind === 'failed') {
          const v = onFailure(session, c, stage, c.sessionOutcome.error);
          if (v) return v;
        }
      }
      return undefined;
    };
    const active = (state: SessionState) => state.clients.filter((c) => !c.sessionOutcome && !c.messageOutcome);
    const txnState = (txn: Transaction): TxnState => {
      let t = txns.get(txn);
      if (!t) txns.set(txn, (t = {}));
      return t;
    };
    const envelopeArgs = (a: Address) => Object.entries(a.args).map(([k, v]) => (v === true ? k : `${k}=${v}`));

    return {
      hooks: {
        async connect(session) {
          const family = session.remoteAddress.includes(':') && !session.remoteAddress.startsWith('::ffff:') ? '6' : '4';
          const addr = session.remoteAddress.replace(/^::ffff:/, '');
          const port = Buffer.alloc(2);
          port.writeUInt16BE(session.remotePort & 0xffff);
          const data = Buffer.concat([cstrings('unknown'), Buffer.from(family), port, cstrings(addr)]);
          return sessionStage(session, 'connect', data);
        },
        helo(session, hostname) {
          return sessionStage(session, 'helo', cstrings(hostname));
        },
        async mail(txn, from) {
          const state = await stateOf(txn.session);
          const failed = failedVerdict(txn.session, state, 'mail');
          if (failed) return failed;
          const t = txnState(txn);
          if (state.discardBy) t.discardBy = state.discardBy;
          for (const c of state.clients) {
            if (c.sessionOutcome) continue;
            const o = await c.stage('mail', Cmd.MAIL, cstrings(`<${from.address}>`, ...envelopeArgs(from)), Proto.NOMAIL, Proto.NR_MAIL, macroCtx(txn.session, c.settings.name, txn), 'MAIL');
            const v = decide(txn.session, c, 'mail', o, () => (t.discardBy ??= c.settings.name), false);
            if (v) return v;
          }
          return undefined;
        },
        async rcpt(txn, to) {
          const state = await stateOf(txn.session);
          const failed = failedVerdict(txn.session, state, 'rcpt');
          if (failed) return failed;
          const t = txnState(txn);
          for (const c of active(state)) {
            const o = await c.stage('rcpt', Cmd.RCPT, cstrings(`<${to.address}>`, ...envelopeArgs(to)), Proto.NORCPT, Proto.NR_RCPT, macroCtx(txn.session, c.settings.name, txn, to), 'RCPT');
            if (o.kind === 'accept') {
              // Accept at RCPT: this milter is done with the message; the recipient is not decided here.
              c.messageOutcome = o;
              outcomes.inc({ stage: 'rcpt', outcome: 'accept' });
              continue;
            }
            const v = decide(txn.session, c, 'rcpt', o, () => (t.discardBy ??= c.settings.name), false);
            if (v) return v;
          }
          return undefined;
        },
        async data(txn) {
          const state = await stateOf(txn.session);
          const t = txnState(txn);
          for (const c of active(state)) {
            const o = await c.stage('data', Cmd.DATA, Buffer.alloc(0), Proto.NODATA, Proto.NR_DATA, macroCtx(txn.session, c.settings.name, txn), 'DATA');
            const v = decide(txn.session, c, 'data', o, () => (t.discardBy ??= c.settings.name), false);
            if (v) {
              t.dataVerdict = v;
              break;
            }
          }
          t.dataVerdict ??= failedVerdict(txn.session, state, 'data');
          return { raw: (stream: Readable) => readMessage(txn, stream, state, t) };
        },
        disconnect(session) {
          const state = sessions.get(session);
          sessions.delete(session);
          for (const c of state?.clients ?? []) c.close();
        },
      },
      close() {
        for (const state of sessions.values()) for (const c of state.clients) c.close();
        sessions.clear();
      },
    };

    /**
     * The raw reader: headers, end of headers and the body in chunks to every milter still in the
     * message, as the bytes arrive (backpressure: the next chunk is read once every milter
     * answered); then end of message, milter by milter, and their modifications through txn.edits.
     * With `sequential`, only the first milter gets the message while it streams (a copy goes to a
     * temp file); each later one gets it at end of data with the earlier milters' changes applied,
     * as Postfix's cleanup server sends it.
     */
    async function readMessage(txn: Transaction, stream: Readable, state: SessionState, t: TxnState): Promise<Verdict | undefined> {
      const session = txn.session;
      if (t.dataVerdict) return t.dataVerdict;
      const ctxFor = (c: MilterClient) => macroCtx(session, c.settings.name, txn);
      const live = (c: MilterClient) => !c.sessionOutcome && !c.messageOutcome;
      const order = active(state);
      const sequential = opts.sequential && order.length > 1;
      const streamed = sequential ? order.slice(0, 1) : order;
      const temps: string[] = [];
      const tempFile = () => {
        const f = path.join(os.tmpdir(), `portcullis-milter-${randomBytes(8).toString('hex')}.msg`);
        temps.push(f);
        return f;
      };
      try {
        const copy = sequential ? new FileCopy(tempFile()) : undefined;
        let verdict: Verdict | undefined;
        try {
          verdict = await feed(txn, t, () => streamed.filter(live), stream, copy ? (c) => copy.write(c) : undefined);
        } finally {
          await copy?.close();
        }
        if (verdict) return verdict;

        const note: MilterNote = { milters: [] };
        txn.notes['milter'] = note;
        // The message as the next milter is to see it (sequential): the copy, the earlier milters'
        // header edits (applied to its header section on the fly) and the latest replacement body.
        const seen: { headers: Array<ContentPlan['headers'][number]>; body?: string } = { headers: [] };
        for (const [i, c] of order.entries()) {
          if (sequential && i > 0 && live(c)) {
            const v = await feed(txn, t, () => [c].filter(live), editedContent(copy!.file, seen));
            if (v) return v;
          }
          if (!live(c)) continue; // accepted, discarded or failed (default action accept) before the end
          const { outcome, mods } = await c.endOfMessage(ctxFor(c));
          const v = decide(session, c, 'eom', outcome, () => (t.discardBy ??= c.settings.name), false);
          try {
            if (!v && (outcome.kind === 'continue' || outcome.kind === 'accept')) {
              // Recorded as `milter/<name>`: the transaction log line names the milter beside its edits.
              const failure = await apply(asPlugin(txn, `milter/${c.settings.name}`), c, mods);
              if (failure) {
                const fv = onFailure(session, c, 'eom', failure);
                if (fv) return fv;
              } else if (sequential && i < order.length - 1 && mods.some(changesContent)) {
                const plan = contentPlan(mods);
                seen.headers.push(...plan.headers);
                if (plan.body) {
                  // Kept for the milters after this one (the milter's own file is removed below).
                  seen.body = tempFile();
                  await copyFile(plan.body, seen.body);
                }
              }
            }
          } finally {
            await dropFiles(mods);
          }
          note.milters.push({ milter: c.settings.name, outcome: outcome.kind, modifications: mods.map(describeMod) });
          c.messageOutcome = outcome; // the message is over for this milter
          if (v) return v;
        }
        if (t.discardBy) {
          note.discardedBy = t.discardBy;
          session.log.info({ plugin: 'milter', milter: t.discardBy, txn: txn.id }, `milter ${t.discardBy} discarded the message: accepted and dropped`);
          const everyone = new Set(txn.recipients.map((r) => r.address));
          for (const m of note.milters) for (const d of m.modifications) if (d.startsWith('addRecipient ')) everyone.add(d.slice(13));
          for (const a of everyone) txn.edits.removeRecipient(a);
        }
        return undefined;
      } finally {
        await Promise.all(temps.map((f) => rm(f, { force: true })));
      }
    }

    /**
     * Sends a message's header fields, end of headers and body chunks to `targets()` (evaluated at
     * each step: a milter that accepts or fails drops out). `tee` sees every chunk first.
     */
    async function feed(txn: Transaction, t: TxnState, targets: () => MilterClient[], source: AsyncIterable<Buffer> | Readable, tee?: (c: Buffer) => Promise<void>): Promise<Verdict | undefined> {
      const session = txn.session;
      const skipped = new Set<MilterClient>();
      const send = async (stage: string, cmd: string, data: Buffer, no: number, nr: number, macroStage?: Stage): Promise<Verdict | undefined> => {
        for (const c of targets()) {
          if (stage === 'body' && skipped.has(c)) continue;
          const o = await c.stage(macroStage, cmd, data, no, nr, macroCtx(session, c.settings.name, txn), stage, stage === 'body');
          if (o.kind === 'skip') skipped.add(c);
          const v = decide(session, c, stage, o, () => (t.discardBy ??= c.settings.name), false);
          if (v) return v;
        }
        return undefined;
      };
      const cut = new HeaderSectionCut(); // linear however small the pieces (bounded by limits.headerSize)
      let inBody = false;
      let verdict: Verdict | undefined;
      const sendBody = async (chunk: Buffer) => {
        for (let off = 0; off < chunk.length && !verdict; off += BODY_CHUNK) {
          verdict = await send('body', Cmd.BODY, chunk.subarray(off, off + BODY_CHUNK), Proto.NOBODY, Proto.NR_BODY);
        }
      };
      const sendHeaders = async (section: Buffer) => {
        for (const field of splitFields(section)) {
          verdict = await send('header', Cmd.HEADER, field, Proto.NOHDRS, Proto.NR_HDR);
          if (verdict) return;
        }
        verdict = await send('eoh', Cmd.EOH, Buffer.alloc(0), Proto.NOEOH, Proto.NR_EOH, 'eoh');
      };
      for await (const c of source as AsyncIterable<Buffer>) {
        if (tee) await tee(c);
        if (verdict) continue; // decided: read on so the other readers are not held up
        if (inBody) {
          await sendBody(c);
          continue;
        }
        const parts = cut.push(c);
        if (!parts) continue;
        await sendHeaders(parts.head);
        inBody = true;
        const rest = parts.rest.subarray(2); // after the blank line
        if (!verdict && rest.length) await sendBody(rest);
      }
      if (!verdict && !inBody) await sendHeaders(cut.pending()); // a message that is all header section
      return verdict;
    }

    /** A milter's modifications, in order, through txn.edits; a bad one fails the milter. */
    async function apply(txn: Transaction, c: MilterClient, mods: Modification[]): Promise<Error | undefined> {
      const strip = (a: string) => a.trim().replace(/^<(.*)>$/, '$1');
      try {
        for (const m of mods) {
          switch (m.op) {
            case 'addHeader':
              txn.edits.appendHeader(m.name, m.value);
              break;
            case 'insertHeader':
              txn.edits.insertHeader(m.index, m.name, m.value);
              break;
            case 'changeHeader':
              // libmilter's index is 1-based; Sendmail takes 0 as 1.
              txn.edits.changeHeader(m.name, Math.max(1, m.index), m.value === '' ? undefined : m.value);
              break;
            case 'addRecipient':
              txn.edits.addRecipient(strip(m.address), m.args);
              break;
            case 'removeRecipient':
              txn.edits.removeRecipient(strip(m.address));
              break;
            case 'setSender':
              txn.edits.setSender(strip(m.address), m.args);
              break;
            case 'replaceBody':
              await txn.edits.replaceBody(createReadStream(m.file));
              break;
            case 'quarantine':
              txn.edits.hold(`milter ${c.settings.name}: ${m.reason}`);
              break;
          }
        }
        return undefined;
      } catch (err) {
        return err instanceof Error ? err : new Error(String(err));
      }
    }
  },
});

/** A copy of the streamed message in a temp file (sequential milters), written with backpressure. */
class FileCopy {
  private readonly stream: WriteStream;
  private readonly done: Promise<void>;
  constructor(readonly file: string) {
    this.stream = createWriteStream(file, { mode: 0o600 });
    this.done = new Promise<void>((resolve, reject) => {
      this.stream.on('error', reject);
      this.stream.on('close', resolve);
    });
    this.done.catch(() => undefined);
  }
  async write(chunk: Buffer): Promise<void> {
    if (!this.stream.write(chunk)) await Promise.race([new Promise<void>((resolve) => this.stream.once('drain', resolve)), this.done]);
  }
  async close(): Promise<void> {
    this.stream.end();
    await this.done;
  }
}

function changesContent(m: Modification): boolean {
  return m.op === 'addHeader' || m.op === 'insertHeader' || m.op === 'changeHeader' || m.op === 'replaceBody';
}

/** A milter's content modifications as the core's edit plan (already applied to txn.edits, so valid). */
function contentPlan(mods: Modification[]): ContentPlan {
  const headers: Array<ContentPlan['headers'][number]> = [];
  let body: string | undefined;
  for (const m of mods) {
    if (m.op === 'addHeader') headers.push({ op: 'appendHeader', name: m.name, value: foldValue(m.value) });
    else if (m.op === 'insertHeader') headers.push({ op: 'insertHeader', index: m.index, name: m.name, value: foldValue(m.value) });
    else if (m.op === 'changeHeader') headers.push({ op: 'changeHeader', name: m.name, occurrence: Math.max(1, m.index), value: m.value === '' ? undefined : foldValue(m.value) });
    else if (m.op === 'replaceBody') body = m.file;
  }
  return { headers, body };
}

async function dropFiles(mods: Modification[]): Promise<void> {
  await Promise.all(mods.map((m) => (m.op === 'replaceBody' ? rm(m.file, { force: true }) : undefined)));
}

function describeMod(m: Modification): string {
  switch (m.op) {
    case 'addHeader':
      return `addHeader ${m.name}`;
    case 'insertHeader':
      return `insertHeader ${m.index} ${m.name}`;
    case 'changeHeader':
      return m.value === '' ? `deleteHeader ${m.name}[${m.index}]` : `changeHeader ${m.name}[${m.index}]`;
    case 'addRecipient':
      return `addRecipient ${m.address.replace(/^<(.*)>$/, '$1')}`;
    case 'removeRecipient':
      return `removeRecipient ${m.address}`;
    case 'setSender':
      return `setSender ${m.address}`;
    case 'replaceBody':
      return 'replaceBody';
    case 'quarantine':
      return `quarantine ${m.reason}`;
  }
}

/**
 * The header fields as a milter gets them (Sendmail and Postfix do the same): the name, and the
 * value after the colon without its leading white space, folds kept as LF plus the white space.
 * Bytes pass through as they are (latin1 both ways): an 8-bit header reaches the milter unchanged,
 * as a DKIM verifier needs.
 */
function splitFields(section: Buffer): Buffer[] {
  const text = section.toString('latin1');
  const out: Buffer[] = [];
  for (const raw of text.split(/\r\n(?![ \t])/)) {
    if (!raw) continue;
    const colon = raw.indexOf(':');
    if (colon <= 0) continue; // not a field (cannot be sent as one)
    const name = raw.slice(0, colon).trimEnd();
    const value = raw.slice(colon + 1).replace(/^[ \t]+/, '').replace(/\r\n/g, '\n');
    out.push(Buffer.from(`${name}\0${value}\0`, 'latin1'));
  }
  return out;
}
