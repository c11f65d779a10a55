import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pluginSpecifier } from '@portcullis/core/internal';
import { cliPackageDir } from './cli-package.js';

/** Where a plugin's code comes from, for `portcullis check` (the same search as the core's loader). */
export function describePluginSource(use: string, configDir: string): { file?: string; version?: string } {
  const { specifier, kind } = pluginSpecifier(use);
  if (kind === 'path') return { file: path.resolve(configDir, specifier) };
  for (const base of [configDir, cliPackageDir]) {
    let file: string;
    try {
      file = createRequire(path.join(base, 'noop.js')).resolve(specifier);
    } catch {
      continue;
    }
    return { file, version: packageVersionOf(file, specifier) };
  }
  return {};
}

/** The version in the package.json of the package that holds `file`. */
function packageVersionOf(file: string, name: string): string | undefined {
  for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (!existsSync(pkg)) continue;
    try {
      const json = JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string; version?: string };
      if (json.name === name) return json.version;
    } catch {
      return undefined;
    }
  }
  return undefined;
}
