#!/usr/bin/env node
// Writes each plugin README's options table from the plugin's zod schema (names, types, defaults,
// `.describe()` texts), between `<!-- options:begin ... -->` and `<!-- options:end -->`.
//   node scripts/options-docs.mjs            regenerate every plugins/* README
//   node scripts/options-docs.mjs --check    exit 1, naming the README, when one differs from its schema
//   node scripts/options-docs.mjs [--check] DIR...   only these plugin packages (built: dist/index.js)
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const args = process.argv.slice(2);
const check = args.includes('--check');
const dirs = args.filter((a) => a !== '--check');
const targets = dirs.length
  ? dirs.map((d) => path.resolve(d))
  : readdirSync(path.join(root, 'plugins')).map((n) => path.join(root, 'plugins', n)).filter((d) => existsSync(path.join(d, 'package.json')));

const { optionsTable, replaceOptionsTable } = await import(pathToFileURL(path.join(root, 'packages/core/dist/index.js')).href);
let problems = 0;
for (const dir of targets) {
  const readmePath = path.join(dir, 'README.md');
  const entry = path.join(dir, 'dist', 'index.js');
  const rel = path.relative(process.cwd(), readmePath) || readmePath;
  if (!existsSync(entry)) {
    console.error(`${rel}: ${path.relative(process.cwd(), entry)} is missing; build first (pnpm build)`);
    problems++;
    continue;
  }
  const def = (await import(pathToFileURL(entry).href)).default;
  const readme = existsSync(readmePath) ? readFileSync(readmePath, 'utf8') : '';
  const next = replaceOptionsTable(readme, optionsTable(def?.options));
  if (next === undefined) {
    console.error(`${rel}: no options table markers (<!-- options:begin --> ... <!-- options:end -->)`);
    problems++;
    continue;
  }
  if (next === readme) continue;
  if (check) {
    console.error(`${rel}: the options table differs from the schema of ${def?.name ?? dir}; run node scripts/options-docs.mjs and commit the README`);
    problems++;
  } else {
    writeFileSync(readmePath, next);
    console.log(`${rel}: options table written`);
  }
}
process.exit(problems ? 1 : 0);
