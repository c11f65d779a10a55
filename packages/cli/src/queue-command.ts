import path from 'node:path';
import { queueRequest, type ControlRequest, type ControlResponse, type DeliveryQueue } from '@portcullis/core/internal';

/** One queued message as `queue list` sees it (running relay or spool). */
export interface QueueEntry {
  id: string;
  from: string;
  recipients: readonly string[];
  pending: string[];
  size: number;
  receivedAt: number;
  attempts: number;
  nextAttemptAt: number;
  hold: boolean;
  busy: boolean;
  lastError?: string;
}

export type QueueState = 'due' | 'deferred' | 'held' | 'sending';

/** Selection, like postsuper/mailq filters: every given criterion must match. */
export interface Selection {
  /** Sender address; `*` matches any run of characters; `<>` is the null sender. Case-insensitive. */
  from?: string;
  /** A pending recipient address (same pattern rules). */
  to?: string;
  /** A pending recipient's domain (exact, case-insensitive). */
  domain?: string;
  /** Older than this many ms. */
  olderThan?: number;
  /** Younger than this many ms. */
  youngerThan?: number;
  state?: QueueState;
}

export function stateOf(e: QueueEntry, now = Date.now()): QueueState {
  return e.hold ? 'held' : e.busy ? 'sending' : e.nextAttemptAt > now ? 'deferred' : 'due';
}

function pattern(p: string): RegExp {
  const body = p === '<>' ? '' : p.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${body}$`, 'i');
}

export function select(entries: readonly QueueEntry[], s: Selection, now = Date.now()): QueueEntry[] {
  const from = s.from !== undefined ? pattern(s.from) : undefined;
  const to = s.to !== undefined ? pattern(s.to) : undefined;
  const domain = s.domain?.toLowerCase().replace(/\.$/, '');
  return entries.filter((e) => {
    if (from && !from.test(e.from)) return false;
    if (to && !e.pending.some((r) => to.test(r))) return false;
    if (domain && !e.pending.some((r) => r.slice(r.lastIndexOf('@') + 1).toLowerCase() === domain)) return false;
    if (s.olderThan !== undefined && now - e.receivedAt <= s.olderThan) return false;
    if (s.youngerThan !== undefined && now - e.receivedAt >= s.youngerThan) return false;
    if (s.state && stateOf(e, now) !== s.state) return false;
    return true;
  });
}

export function hasSelection(s: Selection): boolean {
  return Object.values(s).some((v) => v !== undefined);
}

/** qshape's age buckets, in minutes: each column counts messages at most that old. */
export const AGE_BUCKETS = [5, 10, 20, 40, 80, 160, 320, 640, 1280];

/**
 * `queue summary`, like Postfix's qshape: one row per destination domain (or sender domain with
 * `bySender`), the total, then counts by age bucket. A message with recipients in two domains
 * counts in both rows, once each (pending recipients only).
 */
export function summarize(entries: readonly QueueEntry[], opts: { bySender?: boolean; now?: number } = {}): { columns: string[]; rows: Array<{ domain: string; total: number; buckets: number[] }>; total: { total: number; buckets: number[] } } {
  const now = opts.now ?? Date.now();
  const rows = new Map<string, { domain: string; total: number; buckets: number[] }>();
  const total = { total: 0, buckets: new Array<number>(AGE_BUCKETS.length + 1).fill(0) };
  const domainOf = (a: string) => (a ? a.slice(a.lastIndexOf('@') + 1).toLowerCase() : '<>');
  for (const e of entries) {
    const minutes = (now - e.receivedAt) / 60_000;
    let b = AGE_BUCKETS.findIndex((limit) => minutes <= limit);
    if (b < 0) b = AGE_BUCKETS.length;
    const domains = opts.bySender ? [domainOf(e.from)] : [...new Set(e.pending.map(domainOf))];
    for (const d of domains) {
      const row = rows.get(d) ?? { domain: d, total: 0, buckets: new Array<number>(AGE_BUCKETS.length + 1).fill(0) };
      row.total++;
      row.buckets[b]!++;
      rows.set(d, row);
    }
    total.total++;
    total.buckets[b]!++;
  }
  const sorted = [...rows.values()].sort((a, b) => b.total - a.total || a.domain.localeCompare(b.domain));
  return { columns: ['T', ...AGE_BUCKETS.map(String), `${AGE_BUCKETS.at(-1)}+`], rows: sorted, total };
}

export function formatSummary(s: ReturnType<typeof summarize>): string {
  const table = [['', ...s.columns], ['TOTAL', String(s.total.total), ...s.total.buckets.map(String)], ...s.rows.map((r) => [r.domain, String(r.total), ...r.buckets.map(String)])];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return table.map((row) => row.map((c, i) => (i === 0 ? c.padStart(widths[i]!) : c.padStart(widths[i]!))).join(' ')).join('\n') + '\n';
}

/**
 * How the command reaches the queue: the running relay's control socket, or, when no relay
 * answers there, the spool itself under the spool lock (so the relay cannot start, nor another
 * command write, meanwhile).
 */
export interface QueueAccess {
  readonly mode: 'running' | 'offline';
  request(req: ControlRequest): Promise<ControlResponse>;
  close(): Promise<void>;
}

export async function openQueue(configFile: string, opts: { readOnly?: boolean } = {}): Promise<QueueAccess> {
  const core = { ...(await import('@portcullis/core')), ...(await import('@portcullis/core/internal')) };
  const { config, dir } = core.loadConfigFile(configFile);
  const spoolDir = path.resolve(dir, config.spool.dir);
  const socket = path.join(spoolDir, 'control.sock');
  try {
    await core.controlRequest(socket, { cmd: 'list' }, 10_000);
    return { mode: 'running', request: (req) => core.controlRequest(socket, req), close: async () => undefined };
  } catch (err) {
    if (!/ENOENT|ECONNREFUSED/.test((err as Error).message)) throw err;
  }
  const log = core.createLogger('warn', 2);
  // The worker mode's shards (<spool>/w<i>) and the spool folder itself: every one is read.
  const shards = core.existingShards(spoolDir);
  if (shards.some((s) => s > 0)) return openShards(core, shards.map((s) => [s, core.shardDir(spoolDir, s)] as const), config, log, opts);
  const lock = opts.readOnly ? undefined : await core.SpoolLock.acquire(spoolDir, `portcullis queue (pid ${process.pid})`, log, 5_000);
  try {
    const spool = new core.Spool(spoolDir);
    // init() clears tmp/: only under the lock, when no relay can be receiving into it.
    if (lock) await spool.init();
    const queue = new core.DeliveryQueue(spool, new core.PluginDriver([], log), { hostname: config.hostname, ...config.delivery }, log);
    await queue.open();
    return {
      mode: 'offline',
      request: (req) => offlineRequest(queue, req),
      close: async () => {
        await queue.settle();
        await spool.close();
        await lock?.release();
      },
    };
  } catch (err) {
    await lock?.release();
    throw err;
  }
}

type Core = typeof import('@portcullis/core') & typeof import('@portcullis/core/internal');

/** With the relay stopped and several shards: each shard opened (and locked, to change it) like a single spool, the answers merged. */
async function openShards(core: Core, dirs: ReadonlyArray<readonly [number, string]>, config: ReturnType<Core['loadConfigFile']>['config'], log: ReturnType<Core['createLogger']>, opts: { readOnly?: boolean }): Promise<QueueAccess> {
  const opened: Array<{ shard: number; queue: DeliveryQueue; close(): Promise<void> }> = [];
  try {
    for (const [shard, dir] of dirs) {
      const lock = opts.readOnly ? undefined : await core.SpoolLock.acquire(dir, `portcullis queue (pid ${process.pid})`, log, 5_000);
      const spool = new core.Spool(dir);
      if (lock) await spool.init();
      const queue = new core.DeliveryQueue(spool, new core.PluginDriver([], log), { hostname: config.hostname, ...config.delivery }, log);
      await queue.open();
      opened.push({ shard, queue, close: async () => (await queue.settle(), await spool.close(), await lock?.release()) });
    }
  } catch (err) {
    for (const o of opened) await o.close();
    throw err;
  }
  return {
    mode: 'offline',
    request: (req) => core.fanOut(req, opened.map((o) => ({ shard: o.shard, answer: (r: ControlRequest) => offlineRequest(o.queue, r) }))),
    close: async () => {
      for (const o of opened) await o.close();
    },
  };
}

/** With the relay stopped only the queue's own commands exist (reload, status, enqueue need it running). */
async function offlineRequest(q: DeliveryQueue, req: ControlRequest): Promise<ControlResponse> {
  return (await queueRequest(q, req)) ?? { ok: false, error: `${req.cmd} needs a running relay` };
}

export interface QueueCommandOptions extends Selection {
  config: string;
  json?: boolean;
  /** flush: also release held messages. */
  held?: boolean;
  /** Mutating commands without an id or a selection need this (every message). */
  all?: boolean;
  /** summary: rows by sender domain. */
  bySender?: boolean;
}

const age = (ms: number) => (ms < 120_000 ? `${Math.round(ms / 1000)}s` : ms < 7_200_000 ? `${Math.round(ms / 60_000)}m` : `${Math.round(ms / 3_600_000)}h`);

/** `portcullis queue ACTION [ID...]`. Returns the exit code. */
export async function queueCommand(action: string, ids: string[], opts: QueueCommandOptions): Promise<number> {
  const selection: Selection = { from: opts.from, to: opts.to, domain: opts.domain, olderThan: opts.olderThan, youngerThan: opts.youngerThan, state: opts.state };
  const mutating = ['hold', 'release', 'delete', 'bounce'];
  if ((action === 'show' && ids.length !== 1)) throw new Error('queue show needs one message id (see: portcullis queue list)');
  if (mutating.includes(action) && !ids.length && !hasSelection(selection) && !opts.all) {
    throw new Error(`queue ${action} needs message ids, a selection (--from, --to, --domain, --older-than, --younger-than, --state) or --all`);
  }
  const q = await openQueue(opts.config, { readOnly: action === 'list' || action === 'show' || action === 'summary' });
  try {
    const note = q.mode === 'offline' && mutating.concat('flush').includes(action) ? ' (relay not running: spool changed directly)' : '';
    const listAll = async () => {
      const r = await q.request({ cmd: 'list' });
      if (!r.ok) throw new Error(r.error);
      return r.result as QueueEntry[];
    };
    if (action === 'list' || action === 'summary') {
      const rows = select(await listAll(), selection);
      if (action === 'summary') {
        const s = summarize(rows, { bySender: opts.bySender });
        process.stdout.write(opts.json ? JSON.stringify(s, null, 2) + '\n' : formatSummary(s));
        return 0;
      }
      if (opts.json) {
        process.stdout.write(JSON.stringify(rows.map((r) => ({ ...r, state: stateOf(r) })), null, 2) + '\n');
        return 0;
      }
      const now = Date.now();
      const table = [['ID', 'SIZE', 'AGE', 'TRIES', 'STATE', 'FROM', 'PENDING', 'LAST ERROR']];
      for (const r of rows) {
        const st = stateOf(r, now);
        const state = st === 'deferred' ? `retry in ${age(r.nextAttemptAt - now)}` : st;
        table.push([r.id, String(r.size), age(now - r.receivedAt), String(r.attempts), state, r.from || '<>', r.pending.join(','), (r.lastError ?? '').slice(0, 80)]);
      }
      const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
      for (const row of table) process.stdout.write(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n');
      process.stdout.write(`${rows.length} message${rows.length === 1 ? '' : 's'} in the queue${q.mode === 'offline' ? ' (relay not running: read from the spool)' : ''}\n`);
      return 0;
    }
    if (action === 'show') {
      const r = await q.request({ cmd: 'show', id: ids[0]! });
      if (!r.ok) {
        process.stderr.write(`portcullis queue show: ${r.error}\n`);
        return 1;
      }
      process.stdout.write(JSON.stringify(r.result, null, 2) + '\n');
      return 0;
    }
    if (action === 'flush') {
      if (!ids.length && !hasSelection(selection)) {
        const held = opts.held ? 0 : (await listAll()).filter((e) => e.hold).length;
        const r = await q.request({ cmd: 'flush', includeHeld: !!opts.held });
        if (!r.ok) throw new Error(r.error);
        process.stdout.write(`${(r.result as { flushed: number }).flushed} message(s) due now${note}\n`);
        if (held) process.stdout.write(`${held} held message(s) left alone (--held releases them too)\n`);
        return 0;
      }
    }
    // Per-message actions: explicit ids, or every message the selection picks.
    const targets = ids.length ? ids : select(await listAll(), selection).map((e) => e.id);
    const what: Record<string, string> = { flush: 'due now', hold: 'held', release: 'released', delete: 'deleted', bounce: 'bounced to its sender' };
    let failed = 0;
    for (const id of targets) {
      const req: ControlRequest = action === 'flush' ? { cmd: 'flush', id, includeHeld: !!opts.held } : { cmd: action as 'hold', id };
      const r = await q.request(req);
      if (!r.ok) {
        failed++;
        process.stderr.write(`portcullis queue ${action}: ${r.error}\n`);
      } else if (action === 'flush' && (r.result as { flushed: number }).flushed === 0) {
        process.stdout.write(`${id}: not flushed (held: add --held to release it too)\n`);
      } else {
        process.stdout.write(`${id}: ${what[action]}\n`);
      }
    }
    if (ids.length !== 1 || note) process.stdout.write(`${targets.length - failed} of ${targets.length} message(s) ${what[action]}${note}\n`);
    return failed ? 1 : 0;
  } finally {
    await q.close();
  }
}
