import { deferIfPermit, deferIfReject, disconnect, reject, tempfail, type Verdict } from '@portcullis/core';

/**
 * What a policy answer's `action=` means for us, read as Postfix's access(5) reads it
 * (`check_table_result` in Postfix's smtpd_check.c is the reference).
 */
export type PolicyAction =
  /** DUNNO, OK, all-numerical: no opinion (see README: a policy service never opens the relay). */
  | { readonly kind: 'dunno'; readonly word: string }
  /** INFO / WARN: logged, then no opinion. */
  | { readonly kind: 'log'; readonly level: 'info' | 'warn'; readonly text: string }
  /** REJECT, DEFER, DEFER_IF_*, 4xx/5xx: a reply. */
  | { readonly kind: 'verdict'; readonly word: string; readonly verdict: Verdict }
  /** PREPEND header: value. */
  | { readonly kind: 'prepend'; readonly name: string; readonly value: string }
  /** HOLD / DISCARD: noted for the message (see README: needs the core's message-edits API). */
  | { readonly kind: 'hold' | 'discard'; readonly text: string }
  /** FILTER, REDIRECT, BCC: Postfix queue features Portcullis does not have. */
  | { readonly kind: 'unsupported'; readonly word: string; readonly text: string }
  /** Not an action at all: treated as a failed request (Postfix: 451 4.3.5 Server configuration error). */
  | { readonly kind: 'invalid'; readonly value: string };

/** What is being decided, for Postfix's reply text `<name>: Class rejected: text`. */
export interface ReplyContext {
  /** The rejected thing: the recipient, the sender, the HELO name, `name[addr]`, `DATA`, `END-OF-MESSAGE`. */
  readonly name: string;
  /** `Recipient address`, `Sender address`, `Helo command`, `Client host`, `Data command`, `End-of-data`. */
  readonly class: string;
}

export interface ActionSettings {
  /** access_map_reject_code (Postfix default 554). */
  readonly rejectCode: number;
  /** access_map_defer_code (Postfix default 450). */
  readonly deferCode: number;
  /** Prefix reply texts with `<name>: Class rejected: ` as Postfix does. */
  readonly postfixReplyText: boolean;
}

const MAX_TEXT = 400;

/** Splits a leading RFC 3463 status (`4.2.0 text`) off the text, as Postfix's dsn_split does. */
function splitDsn(defaultDsn: string, text: string): { dsn: string; text: string } {
  const m = /^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)/.exec(text);
  return m ? { dsn: `${m[1]}.${m[2]}.${m[3]}`, text: text.slice(m[0].length) } : { dsn: defaultDsn, text };
}

/**
 * Postfix's smtpd_dsn_fix: an address status (x.1.y) is turned into the sender or recipient form
 * for what is being rejected, and into x.0.0 for anything that is not an address. The class digit
 * then follows the reply code (a 4xx never carries a 5.x.x status).
 */
function fixDsn(dsn: string, ctx: ReplyContext, code: number): string {
  let [, subject, detail] = dsn.split('.') as [string, string, string];
  if (subject === '1') {
    const sender: Record<string, string> = { '1': '0', '2': '8', '3': '7', '4': '0', '5': '0', '6': '0', '7': '7', '8': '8' };
    const rcpt: Record<string, string> = { '1': '1', '2': '2', '3': '3', '4': '4', '5': '5', '6': '6', '7': '3', '8': '2' };
    if (ctx.class === 'Sender address') detail = sender[detail] ?? '0';
    else if (ctx.class === 'Recipient address') detail = rcpt[detail] ?? '0';
    else [subject, detail] = ['0', '0'];
  }
  return `${String(code)[0]}.${subject}.${detail}`;
}

function replyText(settings: ActionSettings, ctx: ReplyContext, text: string): string {
  const t = text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}...` : text;
  return settings.postfixReplyText ? `<${ctx.name}>: ${ctx.class} rejected: ${t}` : t;
}

/** Postfix's is_header: a field name of printable ASCII without colon or space, then `:`. */
const HEADER = /^([!-9;-~]+):[ \t]*(.*)$/s;

/** Reads one `action=` value. Never throws: anything unknown is `invalid`. */
export function parseAction(value: string, ctx: ReplyContext, settings: ActionSettings): PolicyAction {
  const trimmed = value.trim();
  const word = /^\S*/.exec(trimmed)![0];
  const rest = trimmed.slice(word.length).trim();
  // PREPEND keeps the header value to its last byte, trailing blanks too, as Postfix writes it.
  const header = value.replace(/^\s+/, '').slice(word.length).replace(/^\s+/, '');
  const W = word.toUpperCase();
  const make = (kind: 'reject' | 'tempfail' | 'if-permit' | 'if-reject' | 'disconnect', code: number, defaultDsn: string, fallback: string): PolicyAction => {
    const d = splitDsn(defaultDsn, rest);
    const text = replyText(settings, ctx, d.text || fallback);
    const enhanced = fixDsn(d.dsn, ctx, code);
    const verdict =
      kind === 'reject' ? reject(code, enhanced, text)
      : kind === 'tempfail' ? tempfail(code, enhanced, text)
      : kind === 'if-permit' ? deferIfPermit(code, enhanced, text)
      : kind === 'if-reject' ? deferIfReject(code, enhanced, text)
      : disconnect(code, enhanced, text);
    return { kind: 'verdict', word: W, verdict };
  };
  switch (W) {
    case 'DUNNO':
    case 'OK':
    case 'RELAY':
      return { kind: 'dunno', word: W };
    case 'REJECT':
      return make('reject', settings.rejectCode, '5.7.1', 'Access denied');
    case 'DEFER':
      return make('tempfail', settings.deferCode, '4.7.1', 'Access denied');
    case 'DEFER_IF_PERMIT':
      return make('if-permit', settings.deferCode, '4.7.1', 'Service unavailable');
    case 'DEFER_IF_REJECT':
      return make('if-reject', settings.deferCode, '4.7.1', 'Service unavailable');
    case 'INFO':
    case 'WARN':
      return { kind: 'log', level: W === 'INFO' ? 'info' : 'warn', text: rest };
    case 'HOLD':
    case 'DISCARD':
      return { kind: W === 'HOLD' ? 'hold' : 'discard', text: rest };
    case 'FILTER':
    case 'REDIRECT':
    case 'BCC':
      return { kind: 'unsupported', word: W, text: rest };
    case 'PREPEND': {
      const m = HEADER.exec(header);
      return m ? { kind: 'prepend', name: m[1]!, value: m[2]! } : { kind: 'invalid', value: trimmed };
    }
  }
  // All-numerical: "treated as OK" (access(5)).
  if (/^\d+$/.test(trimmed)) return { kind: 'dunno', word: 'all-numerical' };
  // 4NN text / 5NN text; 421 and 521 also close the connection (access(5)).
  const num = /^([45])(\d\d)$/.exec(word);
  if (num && rest) {
    const code = Number(word);
    return make(code === 421 || code === 521 ? 'disconnect' : num[1] === '5' ? 'reject' : 'tempfail', code, `${num[1]}.7.1`, 'Access denied');
  }
  return { kind: 'invalid', value: trimmed };
}
