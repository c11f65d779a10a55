import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The CLI's own package folder. Plugins named by short name (`relay-policy`) are looked up from the
 * config file's folder first, then from here, where the stock plugins are installed as dependencies:
 * a config file kept in /etc/portcullis still finds them.
 */
export const cliPackageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export function cliVersion(): string {
  return (JSON.parse(readFileSync(path.join(cliPackageDir, 'package.json'), 'utf8')) as { version: string }).version;
}
