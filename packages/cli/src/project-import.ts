import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { cliPackageDir } from './cli-package.js';

/**
 * Imports a stock package (a plugin, relay-test) from the user's project: the CLI depends on core
 * only, so `@portcullis/relay-policy` and the others are found where the user installed them (the
 * working folder, the config's folder) or beside the CLI (the `portcullis` package brings them all).
 */
export async function importFromProject<T>(specifier: string, forWhat: string, extraBases: readonly string[] = []): Promise<T> {
  const bases = [process.cwd(), ...extraBases, ...pluginPath(), cliPackageDir];
  for (const base of bases) {
    let resolved: string;
    try {
      resolved = createRequire(path.join(base, 'noop.js')).resolve(specifier);
    } catch {
      continue;
    }
    return (await import(pathToFileURL(resolved).href)) as T;
  }
  throw new MissingPackageError(specifier, forWhat);
}

export class MissingPackageError extends Error {
  constructor(readonly specifier: string, forWhat: string) {
    super(`${forWhat} needs ${specifier}, which is not installed here: run \`npm install ${specifier}\` (or install the \`portcullis\` package, which brings the CLI with every stock plugin)`);
    this.name = 'MissingPackageError';
  }
}

/** Folders named in PORTCULLIS_PLUGIN_PATH (the `portcullis` meta package sets its own). */
export function pluginPath(): string[] {
  return (process.env['PORTCULLIS_PLUGIN_PATH'] ?? '').split(path.delimiter).filter(Boolean);
}
