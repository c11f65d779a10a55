import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { importFromProject } from './project-import.js';

/**
 * `portcullis passwd FILE USER`: adds or replaces USER in a users file with an scrypt hash. The
 * password is read from standard input (one line; not echoed on a terminal), never from argv,
 * where other users could see it in the process list.
 */
export async function passwd(file: string, user: string, opts: { domains?: string }): Promise<void> {
  const { userLine } = await importFromProject<typeof import('@portcullis/relay-policy')>('@portcullis/relay-policy', 'portcullis passwd');
  const password = await readPassword(`password for ${user}: `);
  if (!password) throw new Error('empty password: nothing written');
  const line = await userLine(user, password, (opts.domains ?? '').split(',').map((d) => d.trim()).filter(Boolean));
  const lines = existsSync(file) ? readFileSync(file, 'utf8').split(/\r?\n/).filter((l) => l !== '') : [];
  const key = user.toLowerCase();
  const kept = lines.filter((l) => l.startsWith('#') || l.split(':')[0]!.toLowerCase() !== key);
  const replaced = kept.length !== lines.length;
  writeFileSync(file, [...kept, line].join('\n') + '\n', { mode: 0o600 });
  chmodSync(file, 0o600);
  process.stdout.write(`${replaced ? 'updated' : 'added'} ${user} in ${file}\n`);
}

async function readPassword(prompt: string): Promise<string> {
  const tty = process.stdin.isTTY;
  if (tty) process.stderr.write(prompt);
  const rl = createInterface({ input: process.stdin, terminal: false });
  if (tty) (process.stdin as NodeJS.ReadStream).setRawMode?.(false);
  const line = await new Promise<string>((resolve) => {
    rl.once('line', resolve);
    rl.once('close', () => resolve(''));
  });
  rl.close();
  if (tty) process.stderr.write('\n');
  return line;
}

/** `portcullis tls selfsigned`: a key and a self-signed certificate for trying TLS out. */
export async function tlsSelfSigned(opts: { out: string; name: string; days: string }): Promise<void> {
  const { generate } = await import('selfsigned');
  const days = Number(opts.days);
  if (!Number.isInteger(days) || days < 1) throw new Error(`--days: expected a whole number of days, got ${opts.days}`);
  const pems = await generate([{ name: 'commonName', value: opts.name }], {
    keySize: 2048,
    days,
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: opts.name }] }],
  } as Parameters<typeof generate>[1]);
  mkdirSync(opts.out, { recursive: true });
  const key = path.join(opts.out, 'key.pem');
  const cert = path.join(opts.out, 'cert.pem');
  writeFileSync(key, pems.private, { mode: 0o600 });
  writeFileSync(cert, pems.cert);
  process.stdout.write(`wrote ${key} and ${cert} for ${opts.name}, valid ${days} days (self-signed: for trying out, not for production)\n`);
}

interface QueueEntry {
  id: string;
  from: string;
  pending: string[];
  size: number;
  receivedAt: number;
  attempts: number;
  nextAttemptAt: number;
  hold: boolean;
  busy: boolean;
  lastError?: string;
}

/** `portcullis queue ...`: talks to the running relay through its control socket. */
export async function queueCommand(action: string, id: string | undefined, opts: { config: string; json?: boolean }): Promise<number> {
  const { loadConfigFile, controlRequest } = await import('@portcullis/core');
  const { config, dir } = loadConfigFile(opts.config);
  const socket = path.join(path.resolve(dir, config.spool.dir), 'control.sock');
  const needsId = ['show', 'hold', 'release', 'delete', 'bounce'];
  if (needsId.includes(action) && !id) throw new Error(`queue ${action} needs a message id (see: portcullis queue list)`);
  const req = action === 'list' ? { cmd: 'list' as const } : action === 'flush' ? { cmd: 'flush' as const, id } : { cmd: action as 'show', id: id! };
  const res = await controlRequest(socket, req);
  if (!res.ok) {
    process.stderr.write(`portcullis queue ${action}: ${res.error}\n`);
    return 1;
  }
  if (opts.json || action === 'show') {
    process.stdout.write(JSON.stringify(res.result, null, 2) + '\n');
    return 0;
  }
  if (action === 'list') {
    const rows = res.result as QueueEntry[];
    const now = Date.now();
    const age = (ms: number) => (ms < 120_000 ? `${Math.round(ms / 1000)}s` : ms < 7_200_000 ? `${Math.round(ms / 60_000)}m` : `${Math.round(ms / 3_600_000)}h`);
    const table = [['ID', 'SIZE', 'AGE', 'TRIES', 'STATE', 'FROM', 'PENDING', 'LAST ERROR']];
    for (const r of rows) {
      const state = r.hold ? 'held' : r.busy ? 'sending' : r.nextAttemptAt > now ? `retry in ${age(r.nextAttemptAt - now)}` : 'due';
      table.push([r.id, String(r.size), age(now - r.receivedAt), String(r.attempts), state, r.from || '<>', r.pending.join(','), (r.lastError ?? '').slice(0, 80)]);
    }
    const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
    for (const row of table) process.stdout.write(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n');
    process.stdout.write(`${rows.length} message${rows.length === 1 ? '' : 's'} in the queue\n`);
    return 0;
  }
  const what: Record<string, string> = { flush: 'flushed', hold: 'held', release: 'released', delete: 'deleted', bounce: 'bounced to its sender' };
  process.stdout.write(action === 'flush' ? `${(res.result as { flushed: number }).flushed} message(s) due now\n` : `${id}: ${what[action]}\n`);
  return 0;
}
