/**
 * rspamd's `/checkv2` answer, read defensively: it comes from another process, so every field is
 * checked for its type and anything unexpected becomes an error (never a crash, never an accept).
 */

/** The actions rspamd documents; any other string is kept as is and handled as unknown. */
export type RspamdAction = 'reject' | 'soft reject' | 'rewrite subject' | 'add header' | 'greylist' | 'no action' | 'discard' | 'quarantine';

/** One header rspamd asks the MTA to add: `order` < 0 (or absent) appends, `order` >= 0 inserts at that position. */
export interface HeaderToAdd {
  readonly name: string;
  readonly value: string;
  readonly order?: number;
}

export interface CheckReply {
  readonly action: RspamdAction | (string & {});
  readonly score: number;
  readonly requiredScore: number;
  /** Symbol names with their scores, highest first. */
  readonly symbols: ReadonlyArray<{ readonly name: string; readonly score: number }>;
  /** `messages.smtp_message`: the text rspamd wants in the SMTP reply, when it gave one. */
  readonly smtpMessage?: string;
  /** The rewritten Subject (action `rewrite subject`). */
  readonly subject?: string;
  /** `milter.add_headers`, in rspamd's order. */
  readonly addHeaders: readonly HeaderToAdd[];
  /** `milter.remove_headers`: name → occurrence (0 = every one, n > 0 = the n-th, n < 0 = the n-th from the end). */
  readonly removeHeaders: ReadonlyArray<{ readonly name: string; readonly occurrence: number }>;
  readonly isSkipped: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function parseCheckReply(body: Buffer): CheckReply | { error: string } {
  let data: unknown;
  try {
    data = JSON.parse(body.toString('utf8'));
  } catch {
    return { error: `rspamd's reply is not JSON: ${JSON.stringify(body.toString('utf8').slice(0, 200))}` };
  }
  if (!isObject(data)) return { error: 'rspamd\'s reply is not a JSON object' };
  if (typeof data['error'] === 'string') return { error: `rspamd: ${data['error'].slice(0, 200)}` };
  const action = data['action'];
  if (typeof action !== 'string' || !action) return { error: 'rspamd\'s reply has no action' };
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

  const symbols: Array<{ name: string; score: number }> = [];
  if (isObject(data['symbols'])) {
    for (const [name, s] of Object.entries(data['symbols'])) symbols.push({ name, score: isObject(s) ? num(s['score']) : 0 });
    symbols.sort((a, b) => b.score - a.score || a.name.localeCompare(b.name));
  }
  const messages = isObject(data['messages']) ? data['messages'] : {};
  const smtpMessage = typeof messages['smtp_message'] === 'string' && messages['smtp_message'] ? messages['smtp_message'] : undefined;

  const addHeaders: HeaderToAdd[] = [];
  const removeHeaders: Array<{ name: string; occurrence: number }> = [];
  const milter = isObject(data['milter']) ? data['milter'] : {};
  if (isObject(milter['add_headers'])) {
    for (const [name, spec] of Object.entries(milter['add_headers'])) {
      // One header: "value", or { value, order }; several of one name: an array of either.
      for (const one of Array.isArray(spec) ? spec : [spec]) {
        if (typeof one === 'string') addHeaders.push({ name, value: one });
        else if (isObject(one) && typeof one['value'] === 'string') addHeaders.push({ name, value: one['value'], ...(typeof one['order'] === 'number' ? { order: one['order'] } : {}) });
      }
    }
  }
  if (isObject(milter['remove_headers'])) {
    for (const [name, n] of Object.entries(milter['remove_headers'])) removeHeaders.push({ name, occurrence: typeof n === 'number' && Number.isInteger(n) ? n : 0 });
  }
  return {
    action,
    score: num(data['score']),
    requiredScore: num(data['required_score']),
    symbols,
    ...(smtpMessage ? { smtpMessage } : {}),
    ...(typeof data['subject'] === 'string' ? { subject: data['subject'] } : {}),
    addHeaders,
    removeHeaders,
    isSkipped: data['is_skipped'] === true,
  };
}
