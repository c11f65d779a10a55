import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { importFromProject } from './project-import.js';

/**
 * `portcullis quarantine ...`: what the attachments plugin (a part: `ID.bin` + `ID.json`) and the
 * clamav plugin (a whole message: `ID.eml` + `ID.json`) kept. The folders come from the config's
 * plugin entries, so the command sees exactly what the relay writes.
 */
export interface QuarantineItem {
  readonly id: string;
  readonly source: 'attachments' | 'clamav';
  readonly dir: string;
  /** The kept bytes: a decoded part (attachments) or the raw message (clamav). */
  readonly file: string;
  readonly at: string;
  readonly sender: string;
  readonly recipients: string[];
  readonly reason: string;
  readonly size: number;
  readonly meta: Record<string, unknown>;
}

interface Folders {
  readonly attachments: Array<{ dir: string; retention: number }>;
  readonly clamav: Array<{ dir: string; retention: number; servers: Array<{ host: string; port: number } | { socket: string }>; timeout: number }>;
  readonly spoolDir: string;
  readonly hostname: string;
}

async function folders(configFile: string): Promise<Folders> {
  const core = await import('@portcullis/core');
  const { config, dir, file } = core.loadConfigFile(configFile);
  const out: { attachments: Folders['attachments']; clamav: Folders['clamav'] } = { attachments: [], clamav: [] };
  for (const [i, p] of config.plugins.entries()) {
    if (p.use === 'attachments' || p.use === '@portcullis/attachments') {
      const { options } = await importFromProject<typeof import('@portcullis/attachments')>('@portcullis/attachments', 'portcullis quarantine', [dir]);
      const parsed = options.safeParse(p.with ?? {});
      if (!parsed.success) throw new core.ConfigError(file, [{ path: `plugins[${i}].with`, message: parsed.error.issues[0]?.message ?? 'invalid' }]);
      if (parsed.data.quarantine) out.attachments.push({ dir: path.resolve(dir, parsed.data.quarantine.dir), retention: parsed.data.quarantine.retention });
    }
    if (p.use === 'clamav' || p.use === '@portcullis/clamav') {
      const { options } = await importFromProject<typeof import('@portcullis/clamav')>('@portcullis/clamav', 'portcullis quarantine', [dir]);
      const parsed = options.safeParse(p.with ?? {});
      if (!parsed.success) throw new core.ConfigError(file, [{ path: `plugins[${i}].with`, message: parsed.error.issues[0]?.message ?? 'invalid' }]);
      const o = parsed.data;
      const servers = o.servers.map((t) => ('socket' in t ? { socket: path.resolve(dir, t.socket) } : t));
      if (o.quarantineDir) out.clamav.push({ dir: path.resolve(dir, o.quarantineDir), retention: o.quarantineRetention, servers, timeout: o.timeout });
      else out.clamav.push({ dir: '', retention: o.quarantineRetention, servers, timeout: o.timeout });
    }
  }
  return { ...out, spoolDir: path.resolve(dir, config.spool.dir), hostname: config.hostname };
}

function readItems(f: Folders): QuarantineItem[] {
  const items: QuarantineItem[] = [];
  const seen = new Set<string>();
  const scan = (dir: string, source: 'attachments' | 'clamav') => {
    if (!dir || !existsSync(dir)) return;
    for (const name of readdirSync(dir)) {
      if (!name.endsWith('.json') || name.startsWith('.')) continue;
      const id = name.slice(0, -5);
      const ext = source === 'clamav' ? '.eml' : '.bin';
      const file = path.join(dir, id + ext);
      if (!existsSync(file) || seen.has(`${dir}/${id}`)) continue;
      let meta: Record<string, unknown>;
      try {
        meta = JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as Record<string, unknown>;
      } catch {
        continue;
      }
      seen.add(`${dir}/${id}`);
      const at = String(meta['at'] ?? meta['receivedAt'] ?? statSync(file).mtime.toISOString());
      items.push({
        id,
        source,
        dir,
        file,
        at,
        sender: String(meta['sender'] ?? meta['mailFrom'] ?? ''),
        recipients: (meta['recipients'] as string[] | undefined) ?? [],
        reason: source === 'clamav' ? `virus: ${((meta['viruses'] as string[] | undefined) ?? []).join(', ')}` : `${String(meta['reason'] ?? '')}${meta['filename'] ? ` (${String(meta['filename'])})` : ''}`,
        size: statSync(file).size,
        meta,
      });
    }
  };
  for (const a of f.attachments) scan(a.dir, 'attachments');
  for (const c of f.clamav) scan(c.dir, 'clamav');
  return items.sort((a, b) => a.at.localeCompare(b.at));
}

function find(items: QuarantineItem[], id: string): QuarantineItem {
  const it = items.find((i) => i.id === id);
  if (!it) throw new Error(`no quarantined item ${id} (see: portcullis quarantine list)`);
  return it;
}

function updateMeta(item: QuarantineItem, patch: Record<string, unknown>): void {
  writeFileSync(path.join(item.dir, `${item.id}.json`), JSON.stringify({ ...item.meta, ...patch }, null, 2) + '\n', { mode: 0o600 });
}

/** A header value safe to write: no line breaks, ASCII only. */
const headerSafe = (v: string) => v.replace(/[\r\n]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').slice(0, 200);

/**
 * The message `release` sends for an attachments item: the stripped part, given back to the
 * original recipients as an attachment of a new message that names the original one (the
 * delivered copy had a notice in its place; the original message itself was never kept).
 */
export function releasedPartMessage(item: QuarantineItem, hostname: string, now = new Date()): Buffer {
  const m = item.meta;
  const filename = String(m['filename'] ?? 'attachment.bin');
  const boundary = `----portcullis-${randomBytes(12).toString('hex')}`;
  const ascii = /^[\x20-\x7e]*$/.test(filename) && !/["\\]/.test(filename);
  const fileParam = ascii ? `filename="${filename}"` : `filename*=UTF-8''${encodeURIComponent(filename)}`;
  const contentType = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/i.test(String(m['contentType'] ?? '')) ? String(m['contentType']) : 'application/octet-stream';
  const body = readFileSync(item.file).toString('base64').replace(/.{1,76}/g, '$&\r\n');
  const original = m['messageId'] ? String(m['messageId']) : undefined;
  const lines = [
    `From: ${item.sender ? `<${headerSafe(item.sender)}>` : `<postmaster@${hostname}>`}`,
    `To: ${item.recipients.map((r) => `<${headerSafe(r)}>`).join(', ')}`,
    `Subject: Released attachment: ${headerSafe(filename)}`,
    `Date: ${now.toUTCString().replace(/GMT$/, '+0000')}`,
    `Message-ID: <released.${item.id}.${randomBytes(4).toString('hex')}@${hostname}>`,
    ...(original ? [`In-Reply-To: ${headerSafe(original)}`, `References: ${headerSafe(original)}`] : []),
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    `The mail relay removed this attachment from a message${original ? ` (${headerSafe(original)})` : ''} from ${headerSafe(item.sender || '<>')}:`,
    `  ${headerSafe(filename)}: ${headerSafe(String(m['reason'] ?? ''))}`,
    'An administrator has reviewed and released it; it is attached here.',
    `(quarantine reference ${item.id})`,
    '',
    `--${boundary}`,
    `Content-Type: ${contentType}`,
    `Content-Disposition: attachment; ${fileParam}`,
    'Content-Transfer-Encoding: base64',
    '',
  ];
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n'), Buffer.from(body), Buffer.from(`--${boundary}--\r\n`)]);
}

/** Puts a released item into the spool, then tells the running relay to deliver it (or leaves it for its next start). */
async function release(item: QuarantineItem, f: Folders): Promise<{ queueId: string; mode: 'running' | 'offline' }> {
  const core = { ...(await import('@portcullis/core')), ...(await import('@portcullis/core/internal')) };
  if (!item.recipients.length) throw new Error(`${item.id} names no recipients: nothing to deliver to`);
  const now = new Date();
  const operator = `${os.userInfo().username}@${os.hostname()}`;
  const body = item.source === 'clamav' ? readFileSync(item.file) : releasedPartMessage(item, f.hostname, now);
  const socket = path.join(f.spoolDir, 'control.sock');
  let running = true;
  try {
    await core.controlRequest(socket, { cmd: 'list' }, 5_000);
  } catch (err) {
    if (!/ENOENT|ECONNREFUSED/.test((err as Error).message)) throw err;
    running = false;
  }
  const header = `X-Portcullis-Released: quarantine ${item.id} (${item.source}) released by ${headerSafe(operator)} on ${now.toUTCString()}\r\n`;
  const note = `quarantine release of ${item.id} (${item.source}) by ${operator}`;
  // Running: the relay is the spool's only writer, so it queues the message itself (from a file
  // in its tmp/ folder) and logs the operator action. Stopped: the spool lock keeps a relay from
  // starting halfway through our write.
  const lock = running ? undefined : await core.SpoolLock.acquire(f.spoolDir, `portcullis quarantine release (pid ${process.pid})`, undefined, 5_000);
  try {
    let queueId: string;
    if (running) {
      const tmp = path.join(f.spoolDir, 'tmp', `release-${randomBytes(8).toString('hex')}.eml`);
      writeFileSync(tmp, body, { mode: 0o600 });
      try {
        const r = await core.controlRequest(socket, { cmd: 'enqueue', file: tmp, mailFrom: item.sender, recipients: item.recipients, headers: header, note }, 60_000);
        if (!r.ok) throw new Error(r.error);
        queueId = (r.result as { id: string }).id;
      } finally {
        rmSync(tmp, { force: true });
      }
    } else {
      const spool = new core.Spool(f.spoolDir);
      await spool.init();
      queueId = core.newQueueId();
      await spool.enqueue({ id: queueId, mailFrom: item.sender, recipients: item.recipients, receivedAt: now.getTime(), headers: header }, body);
      await spool.close();
    }
    updateMeta(item, { released: { at: now.toISOString(), queueId, by: operator } });
    process.stderr.write(JSON.stringify({ time: now.toISOString(), msg: 'operator action: quarantine release', quarantineId: item.id, source: item.source, queueId, recipients: item.recipients, by: operator }) + '\n');
    return { queueId, mode: running ? 'running' : 'offline' };
  } finally {
    await lock?.release();
  }
}

/** Scans files again with ClamAV through the `clamscan` package (clamd over TCP, else its socket). */
async function rescan(items: QuarantineItem[], f: Folders): Promise<Array<{ id: string; result: 'clean' | 'infected' | 'error'; viruses: string[]; error?: string }>> {
  const server = f.clamav.flatMap((c) => c.servers)[0] ?? { host: '127.0.0.1', port: 3310 };
  const timeout = f.clamav[0]?.timeout ?? 20_000;
  const { default: NodeClam } = await import('clamscan');
  const clam = await new NodeClam().init({
    removeInfected: false,
    quarantineInfected: false,
    debugMode: false,
    clamscan: { active: false },
    clamdscan: { ...('socket' in server ? { socket: server.socket } : { host: server.host, port: server.port }), timeout, localFallback: false, active: true, bypassTest: false },
    preference: 'clamdscan',
  });
  const out: Array<{ id: string; result: 'clean' | 'infected' | 'error'; viruses: string[]; error?: string }> = [];
  for (const item of items) {
    try {
      const r = await clam.isInfected(item.file);
      // clamscan answers isInfected: null when clamd timed out: that is no verdict.
      const result = r.isInfected === true ? 'infected' : r.isInfected === false ? 'clean' : 'error';
      out.push({ id: item.id, result, viruses: r.viruses ?? [], ...(result === 'error' ? { error: 'no verdict (clamd timed out)' } : {}) });
    } catch (err) {
      out.push({ id: item.id, result: 'error', viruses: [], error: (err as Error).message });
    }
    const last = out[out.length - 1]!;
    updateMeta(item, { rescan: { at: new Date().toISOString(), result: last.result, viruses: last.viruses, ...(last.error ? { error: last.error } : {}) } });
  }
  return out;
}

export async function quarantineCommand(action: string, ids: string[], opts: { config: string; json?: boolean; olderThan?: number }): Promise<number> {
  const f = await folders(opts.config);
  if (!f.attachments.length && !f.clamav.some((c) => c.dir)) throw new Error(`${opts.config}: no attachments quarantine.dir nor clamav quarantineDir is configured: nothing is quarantined`);
  const items = readItems(f);
  const print = (v: unknown, text: string) => process.stdout.write(opts.json ? JSON.stringify(v, null, 2) + '\n' : text);
  switch (action) {
    case 'list': {
      const rows = [['ID', 'SOURCE', 'WHEN', 'SIZE', 'FROM', 'TO', 'STATE', 'REASON']];
      for (const i of items) {
        const state = i.meta['released'] ? 'released' : i.meta['rescan'] ? `rescan: ${(i.meta['rescan'] as { result: string }).result}` : 'held';
        rows.push([i.id, i.source, i.at.slice(0, 19), String(i.size), i.sender || '<>', i.recipients.join(','), state, i.reason.slice(0, 80)]);
      }
      const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
      print(
        items.map(({ meta, ...rest }) => ({ ...rest, released: meta['released'], rescan: meta['rescan'] })),
        rows.map((r) => r.map((c, k) => (k === r.length - 1 ? c : c.padEnd(widths[k]!))).join('  ').trimEnd()).join('\n') + `\n${items.length} item${items.length === 1 ? '' : 's'} in quarantine\n`,
      );
      return 0;
    }
    case 'show': {
      if (ids.length !== 1) throw new Error('quarantine show needs one id');
      const item = find(items, ids[0]!);
      const head = readFileSync(item.file).subarray(0, 64 * 1024).toString('latin1');
      const preview = item.source === 'clamav' ? head.slice(0, Math.max(0, head.indexOf('\r\n\r\n')) || 4096) : '';
      process.stdout.write(JSON.stringify({ ...item, ...(preview ? { headers: preview } : {}) }, null, 2) + '\n');
      return 0;
    }
    case 'release': {
      if (!ids.length) throw new Error('quarantine release needs ids');
      for (const id of ids) {
        const item = find(items, id);
        const r = await release(item, f);
        print({ id, ...r }, `${id}: released as ${r.queueId} to ${item.recipients.join(', ')}${r.mode === 'offline' ? ' (relay not running: delivered when it starts)' : ''}\n`);
      }
      return 0;
    }
    case 'delete': {
      if (!ids.length) throw new Error('quarantine delete needs ids');
      for (const id of ids) {
        const item = find(items, id);
        rmSync(item.file, { force: true });
        rmSync(path.join(item.dir, `${id}.json`), { force: true });
        process.stderr.write(JSON.stringify({ time: new Date().toISOString(), msg: 'operator action: quarantine delete', quarantineId: id, source: item.source, by: os.userInfo().username }) + '\n');
        process.stdout.write(`${id}: deleted\n`);
      }
      return 0;
    }
    case 'rescan': {
      const targets = ids.length ? ids.map((id) => find(items, id)) : items;
      const results = await rescan(targets, f);
      print(results, results.map((r) => `${r.id}: ${r.result}${r.viruses.length ? ` (${r.viruses.join(', ')})` : ''}${r.error ? ` (${r.error})` : ''}`).join('\n') + (results.length ? '\n' : '') + `${results.filter((r) => r.result === 'clean').length} clean, ${results.filter((r) => r.result === 'infected').length} infected, ${results.filter((r) => r.result === 'error').length} not scanned\n`);
      return results.some((r) => r.result === 'error') ? 1 : 0;
    }
    case 'purge': {
      const { pruneQuarantine } = await import('@portcullis/core');
      const removed: string[] = [];
      for (const d of [...f.attachments, ...f.clamav.filter((c) => c.dir)]) removed.push(...(await pruneQuarantine(d.dir, opts.olderThan ?? d.retention)));
      print(removed, `${removed.length} item(s) removed${removed.length ? `: ${removed.join(', ')}` : ''}\n`);
      return 0;
    }
  }
  return 64;
}
