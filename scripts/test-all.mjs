#!/usr/bin/env node
// Runs every workspace package's mocha suite in turn and prints one closing line for the whole
// repository: "N passed, N failed" (and skipped, which must stay 0). Exit status non-zero if any
// suite failed, skipped a test, or ran none.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const dirs = ['packages', 'plugins', 'examples']
  .flatMap((d) => (existsSync(path.join(root, d)) ? readdirSync(path.join(root, d)).map((n) => path.join(d, n)) : []))
  .concat(['test']);
let passed = 0, failed = 0, skipped = 0;
const broken = [];
for (const dir of dirs) {
  const pkg = path.join(root, dir, 'package.json');
  if (!existsSync(pkg)) continue;
  const scripts = JSON.parse(readFileSync(pkg, 'utf8')).scripts ?? {};
  if (!scripts.test) continue;
  console.log(`\n=== ${dir}`);
  const r = spawnSync('npx', ['mocha', '--color', 'false'], { cwd: path.join(root, dir), encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  process.stdout.write(r.stdout ?? '');
  const count = (word) => Number((r.stdout ?? '').match(new RegExp(`^\\s*(\\d+) ${word}`, 'm'))?.[1] ?? 0);
  const p = count('passing'), f = count('failing'), s = count('pending');
  passed += p; failed += f; skipped += s;
  if (r.status !== 0 || p === 0 || s > 0) broken.push(`${dir} (exit ${r.status}, ${p} passing, ${f} failing, ${s} pending)`);
}
console.log('');
if (broken.length) console.log(`suites with problems: ${broken.join('; ')}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(broken.length ? 1 : 0);
