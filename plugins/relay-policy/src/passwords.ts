import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFileSync } from 'node:fs';

const scrypt = (password: string, salt: Buffer, keylen: number, opts: ScryptOptions) =>
  new Promise<Buffer>((resolve, reject) => scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));

/** scrypt cost: N=2^15, r=8, p=1 (about 32 MB and 50-100 ms per check: slow for guessing, fine for logins). */
const COST = { N: 32768, r: 8, p: 1 };

/** `$scrypt$N=32768,r=8,p=1$<salt b64>$<hash b64>`: the only form the users file accepts. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, 32, { ...COST, maxmem: 128 * COST.N * COST.r * 2 });
  return `$scrypt$N=${COST.N},r=${COST.r},p=${COST.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const m = /^\$scrypt\$N=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(encoded);
  if (!m) return false;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const expected = Buffer.from(m[5]!, 'base64');
  const key = await scrypt(password, Buffer.from(m[4]!, 'base64'), expected.length, { N, r, p, maxmem: 128 * N * r * 2 });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

export interface UserEntry {
  readonly hash: string;
  /** Domains this user may use in MAIL FROM (when senderMustMatch is on). */
  readonly domains: readonly string[];
}

/**
 * Reads a users file: one `user:hash[:domain,domain]` per line; `#` comments and blank lines are
 * ignored. A line whose hash is not a `$scrypt$` hash is an error naming the line: plain-text
 * passwords are refused, never silently accepted.
 */
export function readUsersFile(file: string): Map<string, UserEntry> {
  const users = new Map<string, UserEntry>();
  const lines = readFileSync(file, 'utf8').split(/\r?\n/);
  lines.forEach((line, i) => {
    const t = line.trim();
    if (!t || t.startsWith('#')) return;
    const [user, hash, domains] = t.split(':');
    if (!user || !hash?.startsWith('$scrypt$')) {
      throw new Error(`${file} line ${i + 1}: expected "user:$scrypt$..." (create entries with "portcullis passwd ${file} USER"); plain-text passwords are not accepted`);
    }
    users.set(user.toLowerCase(), { hash, domains: (domains ?? '').split(',').map((d) => d.trim().toLowerCase()).filter(Boolean) });
  });
  return users;
}
