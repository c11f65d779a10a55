import { backendTarget, definePlugin, resolveBackendTarget, duration, tempfail, Tokens, z, type Address, type Session, type Transaction, type Verdict } from '@portcullis/core';
import { parseAction, type ActionSettings, type PolicyAction } from './actions.js';
import { AnswerCache } from './answer-cache.js';
import { buildRequest, replyContext, STAGES, type ClientNames, type Stage } from './attributes.js';
import { describeTarget, PolicyClient, PolicyRequestError, type PolicyTarget } from './policy-client.js';

export { parseAction, type PolicyAction, type ReplyContext, type ActionSettings } from './actions.js';
export { buildRequest, STAGES, type Stage } from './attributes.js';
export { PolicyClient, PolicyRequestError, describeTarget, type PolicyTarget, type PoolLimits } from './policy-client.js';
export { encodeRequest, parseAnswer, sanitizeValue } from './protocol.js';
export { AnswerCache } from './answer-cache.js';

/** `inet:host:port`, `host:port`, `[v6]:port`, `unix:/path` (relative: to the config file). */
const target = backendTarget({ example: 'inet:127.0.0.1:10023' });

/** Postfix's smtpd_policy_service_default_action. */
const POSTFIX_DEFAULT_ACTION = '451 4.3.5 Server configuration problem';
const checkSettings: ActionSettings = { rejectCode: 554, deferCode: 450, postfixReplyText: true };

const defaultAction = z
  .string()
  .default('tempfail')
  .transform((v) => (v === 'tempfail' ? POSTFIX_DEFAULT_ACTION : v === 'dunno' ? 'DUNNO' : v))
  .refine((v) => !['invalid', 'unsupported', 'prepend'].includes(parseAction(v, { name: 'x', class: 'Recipient address' }, checkSettings).kind), {
    message: 'expected tempfail, dunno, or an access(5) action such as "DEFER_IF_PERMIT text", "450 4.7.1 text", "REJECT text" or "DUNNO"',
  });

export const options = z.strictObject({
  server: target.prefault('inet:127.0.0.1:10023').describe('The policy service: `inet:host:port` (loopback or your network) or `unix:/path` (relative to the config file). Postfix: `check_policy_service inet:127.0.0.1:10023`.'),
  stages: z
    .array(z.enum(STAGES))
    .min(1)
    .default(['rcpt'])
    .describe('When to ask, by Postfix `protocol_state`: `rcpt` (one request per recipient, the default), `connect`, `helo` (before the first MAIL), `mail`, `data` (asked as DATA starts, answered after the message), `end-of-message` (with the real size).'),
  timeout: duration().default(10_000).describe('Longest one request may take (waiting for a connection, connecting, the answer); then the default action. Postfix: `smtpd_policy_service_timeout` (100s there: keep this below the plugin entry\'s `timeout`).'),
  connectTimeout: duration().default(2_000).describe('Longest a connection may take to open (within `timeout`).'),
  defaultAction: defaultAction.describe('What a request without a usable answer gives (service down, timeout, garbage, an unknown action): `tempfail` is Postfix\'s `451 4.3.5 Server configuration problem`; `dunno` lets the recipient through to the next plugin (choose it knowingly); or any access(5) action (`"450 4.7.1 Try later"`). Postfix: `smtpd_policy_service_default_action`.'),
  maxIdle: duration().default(300_000).describe('An unused connection is closed after this long. Postfix: `smtpd_policy_service_max_idle`.'),
  maxTtl: duration().default(1_000_000).describe('A connection is not reused once this old. Postfix: `smtpd_policy_service_max_ttl`.'),
  maxConnections: z.number().int().min(1).max(1000).default(20).describe('Connections kept open to the service at most; more requests at once wait for one (within `timeout`).'),
  cache: z
    .strictObject({
      ttl: duration().describe('How long an answer is reused for the same request (every attribute but `instance`, `queue_id` and `client_port`).'),
      maxEntries: z.number().int().min(1).max(1_000_000).default(10_000).describe('Answers kept at most (oldest dropped first).'),
    })
    .optional()
    .describe('Answer cache, off unless set: never for greylisting or rate limits, which must see every request.'),
  policyContext: z.string().regex(/^[^\r\n\0]*$/, 'one line of text').optional().describe('Sent as `policy_context` with every request. Postfix: `smtpd_policy_service_policy_context`.'),
  lookupClientName: z.boolean().default(true).describe('Send `client_name` (forward-confirmed reverse DNS) and `reverse_client_name` (the PTR) as Postfix does, looked up with the relay\'s resolver once per connection; `false` sends `unknown` for both.'),
  unsupported: z.enum(['ignore', 'tempfail']).default('ignore').describe('What `FILTER`, `REDIRECT` and `BCC` answers do (Postfix queue features Portcullis has not): `ignore` logs a warning and goes on; `tempfail` answers 451 4.3.5 instead.'),
  replyText: z.enum(['postfix', 'plain']).default('postfix').describe('`postfix`: reply texts read `<bob@example.com>: Recipient address rejected: TEXT` as Postfix writes them; `plain`: only the service\'s TEXT.'),
  rejectCode: z.number().int().min(500).max(599).default(554).describe('Reply code of a `REJECT` answer. Postfix: `access_map_reject_code`.'),
  deferCode: z.number().int().min(400).max(499).default(450).describe('Reply code of `DEFER`, `DEFER_IF_PERMIT` and `DEFER_IF_REJECT` answers. Postfix: `access_map_defer_code`.'),
});

export type PolicyOptions = z.input<typeof options>;

/** What this plugin records in `txn.notes.policy` (and `session.notes.policy` before MAIL). */
export interface PolicyNote {
  /** Headers from PREPEND answers, in order, added to the message as DATA starts. */
  readonly prepend: Array<{ name: string; value: string }>;
  /** A HOLD answer's text: the message is committed held in the queue (txn.edits.hold). */
  hold?: string;
  /** A DISCARD answer's text: the message is accepted and dropped (every recipient removed). */
  discard?: string;
  /** Every answer, in order: stage, recipient when any, action as received. */
  readonly answers: Array<{ stage: Stage; recipient?: string; action: string; cached?: boolean; failed?: string }>;
}

const ACTION_LABELS = new Set(['dunno', 'ok', 'relay', 'reject', 'defer', 'defer_if_permit', 'defer_if_reject', 'info', 'warn', 'hold', 'discard', 'prepend', 'filter', 'redirect', 'bcc']);

/**
 * Asks a Postfix policy service (SMTPD_POLICY_README) at the configured stages, one request per
 * recipient by default, and maps its `action=` as Postfix's access(5) does:
 *
 *   DUNNO, OK, all-numerical  → no opinion (the next plugin decides: a policy service never opens the relay)
 *   REJECT / 5NN text         → reject (554 5.7.1 / the code and status given)
 *   DEFER / 4NN text          → tempfail (450 4.7.1 / the code and status given); 421/521 also close
 *   DEFER_IF_PERMIT           → tempfail only if a later plugin accepts (deferIfPermit)
 *   DEFER_IF_REJECT           → tempfail instead of a later reject (deferIfReject)
 *   PREPEND header: value     → header added to the message
 *   HOLD, DISCARD             → applied at end of message: held in the queue / accepted and dropped
 *   INFO, WARN                → logged
 *   FILTER, REDIRECT, BCC     → logged as unsupported (or 451 4.3.5: `unsupported: tempfail`)
 *   no answer / garbage       → defaultAction (451 4.3.5 Server configuration problem)
 */
export default definePlugin({
  name: 'policy',
  options,
  setup(opts, ctx) {
    const server: PolicyTarget = resolveBackendTarget(opts.server, ctx.configDir);
    const where = describeTarget(server);
    const client = new PolicyClient(server, { connectTimeout: opts.connectTimeout, timeout: opts.timeout, maxIdle: opts.maxIdle, maxTtl: opts.maxTtl, maxConnections: opts.maxConnections });
    const cache = opts.cache ? new AnswerCache(opts.cache.ttl, opts.cache.maxEntries) : undefined;
    const settings: ActionSettings = { rejectCode: opts.rejectCode, deferCode: opts.deferCode, postfixReplyText: opts.replyText === 'postfix' };
    const stages = new Set<Stage>(opts.stages);
    const resolver = opts.lookupClientName ? ctx.container.resolve<{ reverse(ip: string): Promise<string[]>; resolve4(n: string): Promise<unknown[]>; resolve6(n: string): Promise<unknown[]> }>(Tokens.Resolver) : undefined;

    const requests = ctx.metrics.counter<'stage' | 'action'>({ name: 'requests_total', help: 'Policy answers by stage and action (dunno, ok, reject, defer, defer_if_permit, numeric_4xx, numeric_5xx, prepend, ..., failed)', labelNames: ['stage', 'action'] });
    const errors = ctx.metrics.counter<'reason'>({ name: 'errors_total', help: 'Requests without a usable answer by reason: unavailable, timeout, protocol, closed, invalid (an unknown action)', labelNames: ['reason'] });
    const latency = ctx.metrics.histogram({ name: 'request_duration_seconds', help: 'Time of one policy request, from asking to the answer', buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
    const cacheHits = ctx.metrics.counter({ name: 'cache_hits_total', help: 'Answers taken from the answer cache (only with `cache` set)' });
    for (const reason of ['unavailable', 'timeout', 'protocol', 'closed', 'invalid']) errors.inc({ reason }, 0);
    ctx.log.debug({ server: where, stages: opts.stages }, 'policy ready');

    const noteOf = (holder: { notes: Record<string, unknown> }): PolicyNote => ((holder.notes['policy'] as PolicyNote | undefined) ?? (holder.notes['policy'] = { prepend: [], answers: [] } as PolicyNote));

    // Per-connection facts of this plugin's own, kept out of session.notes (which is for results).
    const namesOf = new WeakMap<Session, Promise<ClientNames>>();

    /** client_name / reverse_client_name, once per connection, bounded in time; `unknown` on any failure. */
    const clientNames = (session: Session): Promise<ClientNames> => {
      const unknown = { name: 'unknown', reverse: 'unknown' };
      if (!resolver) return Promise.resolve(unknown);
      const cached = namesOf.get(session);
      if (cached) return cached;
      const lookup = (async (): Promise<ClientNames> => {
        const ip = session.remoteAddress;
        const ptr = (await resolver.reverse(ip).catch(() => [] as string[]))[0]?.replace(/\.$/, '');
        if (!ptr) return unknown;
        const addrs = await (ip.includes(':') ? resolver.resolve6(ptr) : resolver.resolve4(ptr)).catch(() => [] as unknown[]);
        const confirmed = addrs.some((a) => (typeof a === 'string' ? a : (a as { address?: string }).address) === ip);
        return { name: confirmed ? ptr : 'unknown', reverse: ptr };
      })();
      let timer: NodeJS.Timeout | undefined;
      const bounded = Promise.race([lookup, new Promise<ClientNames>((r) => (timer = setTimeout(() => r(unknown), Math.min(opts.timeout, 5_000))))]).finally(() => clearTimeout(timer));
      namesOf.set(session, bounded);
      return bounded;
    };

    /** One request at one stage: the answer mapped to a verdict (or none). Never throws for a service failure. */
    async function ask(stage: Stage, session: Session, txn: Transaction | undefined, recipient?: Address, size?: number): Promise<Verdict | undefined> {
      const names = await clientNames(session);
      const attrs = buildRequest({ stage, session, txn, recipient, size, names, instance: txn?.id ?? session.id, policyContext: opts.policyContext });
      const rctx = replyContext({ stage, session, txn, recipient, names });
      const note = noteOf(txn ?? session);
      const log = session.log;
      const key = cache ? AnswerCache.key(attrs) : '';
      let action = cache?.get(key);
      const cached = action !== undefined;
      if (cached) cacheHits.inc();
      let failed: string | undefined;
      if (action === undefined) {
        const t0 = performance.now();
        try {
          const answer = await client.request(attrs);
          latency.observe((performance.now() - t0) / 1000);
          action = answer.get('action');
          if (action === undefined) throw new PolicyRequestError('protocol', 'answer without action=');
          if (cache) cache.set(key, action);
        } catch (err) {
          const reason = err instanceof PolicyRequestError ? err.reason : 'protocol';
          failed = reason;
          errors.inc({ reason });
          log.error({ plugin: 'policy', server: where, stage, txn: txn?.id, recipient: recipient?.address, reason, err: (err as Error).message, defaultAction: opts.defaultAction }, `policy service gave no answer (${reason}): default action`);
          action = opts.defaultAction;
        }
      }
      let parsed = parseAction(action, rctx, settings);
      if (parsed.kind === 'invalid') {
        errors.inc({ reason: 'invalid' });
        log.error({ plugin: 'policy', server: where, stage, txn: txn?.id, action: parsed.value.slice(0, 200), defaultAction: opts.defaultAction }, 'policy service answered an unknown action: default action');
        failed = 'invalid';
        parsed = parseAction(opts.defaultAction, rctx, settings);
      }
      note.answers.push({ stage, recipient: recipient?.address, action, ...(cached ? { cached } : {}), ...(failed ? { failed } : {}) });
      const word = failed ? 'failed' : parsed.kind === 'verdict' && /^\d/.test(parsed.word) ? `numeric_${parsed.word[0]}xx` : ACTION_LABELS.has(action.split(/\s/)[0]!.toLowerCase()) ? action.split(/\s/)[0]!.toLowerCase() : /^\d+$/.test(action.trim()) ? 'ok' : 'other';
      requests.inc({ stage, action: word });
      return apply(parsed, stage, session, txn, recipient);
    }

    function apply(a: PolicyAction, stage: Stage, session: Session, txn: Transaction | undefined, recipient?: Address): Verdict | undefined {
      const log = session.log;
      const about = { plugin: 'policy', stage, client: session.remoteAddress, helo: session.helo, txn: txn?.id, sender: txn?.mailFrom.address, recipient: recipient?.address };
      switch (a.kind) {
        case 'dunno':
        case 'invalid':
          return undefined;
        case 'log':
          log[a.level]({ ...about, text: a.text }, `policy ${a.level === 'info' ? 'INFO' : 'WARN'}: ${a.text}`);
          return undefined;
        case 'verdict':
          log.info({ ...about, action: a.word, reply: a.verdict.reply }, `policy ${a.word}`);
          return a.verdict;
        case 'prepend': {
          if (stage === 'connect' || stage === 'helo' || !txn) {
            // Postfix refuses PREPEND outside a mail transaction too (there is no message yet).
            log.warn({ ...about, header: a.name }, 'policy PREPEND before MAIL FROM ignored');
            return undefined;
          }
          if (stage === 'data' || stage === 'end-of-message') txn.addHeader(a.name, a.value);
          else noteOf(txn).prepend.push({ name: a.name, value: a.value });
          log.info({ ...about, header: a.name }, 'policy PREPEND');
          return undefined;
        }
        case 'hold':
        case 'discard': {
          // Noted on the transaction (or, before MAIL, on the session: then every message of the
          // connection, as Postfix does) and carried out at end of message through txn.edits.
          const n = noteOf(txn ?? session);
          n[a.kind] = a.text || `triggers ${a.kind.toUpperCase()} action`;
          log.info({ ...about, text: a.text }, `policy ${a.kind.toUpperCase()}: applied at end of message`);
          return undefined;
        }
        case 'unsupported':
          log.warn({ ...about, action: a.word, text: a.text, policy: opts.unsupported }, `policy ${a.word} is not supported by Portcullis`);
          return opts.unsupported === 'tempfail' ? tempfail(451, '4.3.5', `<${recipient?.address ?? txn?.mailFrom.address ?? session.remoteAddress}>: ${a.word} action not supported`) : undefined;
      }
    }

    /** The `data`-stage request, started as DATA begins, its answer given after the message. */
    const dataAnswers = new WeakMap<Transaction, Promise<Verdict | undefined>>();
    const only = (txn: Transaction): Address | undefined => (txn.recipients.length === 1 ? txn.recipients[0] : undefined);
    const declaredSize = (from: Address): number | undefined => {
      const v = from.args['SIZE'];
      return typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : undefined;
    };

    return {
      close: () => client.close(),
      /** Ready while the policy service accepts a connection (the protocol has no ping). */
      async ready() {
        try {
          await client.probe();
          return { ready: true, detail: `policy service ${where} accepts connections` };
        } catch (err) {
          return { ready: false, detail: `policy service ${where}: ${(err as Error).message}` };
        }
      },
      hooks: {
        ...(stages.has('connect') ? { connect: (session: Session) => ask('connect', session, undefined) } : {}),
        ...(stages.has('helo') ? { helo: (session: Session) => ask('helo', session, undefined) } : {}),
        ...(stages.has('mail') ? { mail: (txn: Transaction, from: Address) => ask('mail', txn.session, txn, undefined, declaredSize(from)) } : {}),
        ...(stages.has('rcpt') ? { rcpt: (txn: Transaction, to: Address) => ask('rcpt', txn.session, txn, to, declaredSize(txn.mailFrom)) } : {}),
        data(txn: Transaction) {
          const n = txn.notes['policy'] as PolicyNote | undefined;
          for (const h of n?.prepend ?? []) txn.addHeader(h.name, h.value);
          if (stages.has('data')) {
            const p = ask('data', txn.session, txn, only(txn), declaredSize(txn.mailFrom));
            p.catch(() => undefined); // awaited (and its error answered) in `message`
            dataAnswers.set(txn, p);
          }
          return undefined;
        },
        async message(txn: Transaction, info: { size: number }) {
          const pending = dataAnswers.get(txn);
          if (pending) {
            dataAnswers.delete(txn);
            const v = await pending;
            if (v) return v;
          }
          if (stages.has('end-of-message')) {
            const v = await ask('end-of-message', txn.session, txn, only(txn), info.size);
            if (v) return v;
          }
          const n = txn.notes['policy'] as PolicyNote | undefined;
          const s = txn.session.notes['policy'] as PolicyNote | undefined;
          const discard = n?.discard ?? s?.discard;
          const hold = n?.hold ?? s?.hold;
          if (discard !== undefined) {
            // DISCARD: the client gets 250, nobody gets the message (the core drops a message with no recipient left).
            for (const r of txn.recipients) txn.edits.removeRecipient(r.address);
            txn.session.log.info({ plugin: 'policy', txn: txn.id, discard }, 'policy DISCARD: message accepted and dropped');
          } else if (hold !== undefined) {
            // HOLD: committed held in the queue (portcullis queue release ID sends it on).
            txn.edits.hold(`policy: ${hold}`);
            txn.session.log.info({ plugin: 'policy', txn: txn.id, hold }, 'policy HOLD: message held in the queue');
          }
          return undefined;
        },
      },
    };
  },
});
