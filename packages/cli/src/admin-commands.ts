import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';

/**
 * `portcullis passwd FILE USER`: adds or replaces USER in a users file with an scrypt hash. The
 * password is read from standard input (one line; not echoed on a terminal), never from argv,
 * where other users could see it in the process list.
 */
export async function passwd(file: string, user: string, opts: { domains?: string }): Promise<void> {
  const { userLine } = await import('@portcullis/relay-policy');
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
