import { Command, InvalidArgumentError, Option } from 'commander';
import path from 'node:path';
import { ExitCode } from './exit-codes.js';

/**
 * `portcullis dkim keygen DOMAIN SELECTOR`: writes a new DKIM private key (mode 0600, never over an
 * existing file) and prints the TXT record to publish. Rotation is a new selector: publish its
 * record, add it next to the old one in the mailauth plugin's `sign.domains`, later drop the old.
 */
export function dkimCommand(): Command {
  const dkim = new Command('dkim').description('DKIM signing keys (for the mailauth plugin)');
  dkim
    .command('keygen')
    .description('write a DKIM private key (mode 0600) and print the DNS TXT record to publish')
    .argument('<domain>', 'signing domain (d=), e.g. example.com')
    .argument('<selector>', 'selector (s=), e.g. s2026')
    .addOption(new Option('--type <type>', 'key type').choices(['rsa', 'ed25519']).default('rsa'))
    .option('--bits <n>', 'RSA key size', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1024 || n > 8192) throw new InvalidArgumentError('expected 1024 to 8192.');
      return n;
    }, 2048)
    .option('--out <file>', 'key file (default ./dkim/DOMAIN.SELECTOR.key)')
    .action(async (domain: string, selector: string, opts: { type: 'rsa' | 'ed25519'; bits: number; out?: string }) => {
      const d = domain.toLowerCase().replace(/\.$/, '');
      if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/.test(d)) fail(`"${domain}" is not a domain name`);
      if (!/^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/.test(selector)) fail(`"${selector}" is not a selector (letters, digits, dot, dash, underscore)`);
      const out = opts.out ?? path.join('dkim', `${d}.${selector}.key`);
      try {
        const { generateSigningKey } = await import('@portcullis/mailauth');
        const r = generateSigningKey({ domain: d, selector, type: opts.type, bits: opts.bits, out });
        const kind = opts.type === 'rsa' ? `RSA-${opts.bits}` : 'Ed25519';
        process.stdout.write(
          `wrote ${r.file} (${kind} private key, mode 0600)\n\n` +
            `Publish this TXT record:\n${r.record}\n\n` +
            `Then list it under the mailauth plugin's sign.domains:\n  ${d}:\n    - { selector: ${selector}, key: ${r.file} }\n`,
        );
      } catch (err) {
        fail((err as Error).message);
      }
    });
  return dkim;
}

function fail(message: string): never {
  process.stderr.write(`portcullis dkim keygen: ${message}\n`);
  process.exit(ExitCode.failure);
}
