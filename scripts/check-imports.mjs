#!/usr/bin/env node
// Reads the relative imports of packages/core/src and plugins/*/src and fails (exit 1) on any import
// circle, and on any import in packages/core/src from a folder on a later floor into one on an earlier
// floor. The floor order is the one in the core README's layout section (ARCHITECTURE.md):
//   api, config · adapter, telemetry · plugins, listen, spool · session · intake, delivery · services · ops
//   · relay.ts · cluster (the worker mode's primary and its IPC parts; nothing below imports it, it
//   reaches the layers below only through interfaces they declare) · index.ts / internal.ts
// Type-only imports count too: a circle of types is still a circle a reader has to untangle.
// It also fails on any library private member (`x._name`) named in packages/core/src outside
// packages/core/src/adapter/: only the adapters reach into a library, each reach pinned there
// (packages/core/test/adapter-pins.test.ts). Allowed elsewhere: a stream class calling its base
// class's Node stream method (`super._transform(`, `Base.prototype._flush.call(this`), which is
// Node's documented API for implementers, and zod's `_zod` (its documented interface for library
// authors, https://zod.dev/library-authors).
// And it fails on the core's size limits (issue 18): no file in packages/core/src over 450 lines,
// no folder there with more than 15 files, relay.ts (the composer) at most 300 lines.
// Usage: node scripts/check-imports.mjs [--json]   (prints what it checked, then every problem found)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const CORE_FLOORS = {
  api: 0, config: 0,
  adapter: 1, telemetry: 1,
  plugins: 2, listen: 2, spool: 2,
  session: 3,
  intake: 4, delivery: 4,
  services: 5,
  ops: 6,
  'relay.ts': 7, 'relay-options.ts': 7,
  cluster: 7.5,
  'index.ts': 8, 'internal.ts': 8,
};

function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return walk(p);
    return /\.(ts|mts|js|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** Every module specifier a file names: static imports and re-exports, `import 'x'`, and `import('x')`. */
export function specifiers(text) {
  const noComments = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const out = [];
  const re = /(?:^|[\s;}])(?:import|export)\s[^'"`;]*?\sfrom\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/gm;
  for (let m; (m = re.exec(noComments)); ) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

function resolveLocal(from, spec) {
  if (!spec.startsWith('.')) return undefined;
  const base = path.resolve(path.dirname(from), spec);
  const stem = base.replace(/\.(m?js)$/, '');
  for (const c of [`${stem}.ts`, `${stem}.mts`, base, path.join(base, 'index.ts')]) if (fs.existsSync(c) && fs.statSync(c).isFile()) return c;
  return undefined;
}

/** Strongly connected components with more than one file (or a file importing itself): Tarjan. */
function circles(graph) {
  let index = 0;
  const idx = new Map(), low = new Map(), stack = [], on = new Set(), found = [];
  const visit = (v) => {
    idx.set(v, index); low.set(v, index); index++; stack.push(v); on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))); }
      else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do { w = stack.pop(); on.delete(w); comp.push(w); } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? new Set()).has(v)) found.push(comp.reverse());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return found;
}

const NODE_STREAM_METHODS = '_transform|_flush|_write|_writev|_read|_final|_destroy|_construct';
const ALLOWED_PRIVATE = new RegExp(`(?:\\bsuper|\\.prototype)\\.(?:${NODE_STREAM_METHODS})\\b|\\._zod\\b`, 'g');

/** Every `._name` in a file's code (comments and strings left out), but for the allowed ones: `line: text`. */
export function privateMembers(text) {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' ')).replace(/(^|[^:'"`])\/\/.*$/gm, '$1')
    .replace(/'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"/g, (m) => m.replace(/./g, ' '));
  const out = [];
  code.split('\n').forEach((line, i) => {
    if (/\._[a-zA-Z]+/.test(line.replace(ALLOWED_PRIVATE, ''))) out.push(`${i + 1}: ${line.trim()}`);
  });
  return out;
}

export const CORE_LIMITS = { fileLines: 450, folderFiles: 15, composerLines: 300 };

/** Lines as an editor numbers them: a last line without its newline counts too (`wc -l` would miss it). */
export function lineCount(text) {
  if (!text) return 0;
  return text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
}

/** Files of the core over CORE_LIMITS.fileLines (relay.ts over composerLines), folders over folderFiles. */
function sizeProblems(coreSrc, repoRoot) {
  const out = [];
  const perFolder = new Map();
  for (const f of walk(coreSrc)) {
    const rel = path.relative(repoRoot, f);
    const lines = lineCount(fs.readFileSync(f, 'utf8'));
    const max = path.relative(coreSrc, f) === 'relay.ts' ? CORE_LIMITS.composerLines : CORE_LIMITS.fileLines;
    if (lines > max) out.push(`file too long: ${rel} has ${lines} lines (limit ${max})`);
    const dir = path.dirname(rel);
    perFolder.set(dir, (perFolder.get(dir) ?? 0) + 1);
  }
  for (const [dir, n] of perFolder) if (n > CORE_LIMITS.folderFiles && dir !== path.relative(repoRoot, coreSrc)) out.push(`folder too full: ${dir} has ${n} files (limit ${CORE_LIMITS.folderFiles})`);
  return out;
}

export function checkImports(repoRoot = root) {
  const srcDirs = [path.join(repoRoot, 'packages/core/src')];
  const pluginsDir = path.join(repoRoot, 'plugins');
  if (fs.existsSync(pluginsDir)) for (const p of fs.readdirSync(pluginsDir).sort()) srcDirs.push(path.join(pluginsDir, p, 'src'));
  const problems = [];
  let files = 0, edges = 0;
  const coreSrc = srcDirs[0];
  const floorOf = (file) => {
    const first = path.relative(coreSrc, file).split(path.sep)[0];
    return CORE_FLOORS[first];
  };
  problems.push(...sizeProblems(coreSrc, repoRoot));
  for (const dir of srcDirs) {
    const graph = new Map();
    for (const f of walk(dir)) {
      files++;
      if (dir === coreSrc && path.relative(coreSrc, f).split(path.sep)[0] !== 'adapter') {
        for (const hit of privateMembers(fs.readFileSync(f, 'utf8'))) problems.push(`library private member outside adapter/: ${path.relative(repoRoot, f)}:${hit}`);
      }
      const deps = new Set();
      for (const spec of specifiers(fs.readFileSync(f, 'utf8'))) {
        const target = resolveLocal(f, spec);
        if (!target) continue;
        deps.add(target);
        edges++;
        if (dir === coreSrc) {
          const a = floorOf(f), b = floorOf(target);
          const rel = (x) => path.relative(repoRoot, x);
          if (a === undefined) problems.push(`${rel(f)}: folder not in the floor table`);
          else if (b === undefined) problems.push(`${rel(f)} imports ${rel(target)}: folder not in the floor table`);
          else if (b > a) problems.push(`upward import: ${rel(f)} (floor ${a}) imports ${rel(target)} (floor ${b})`);
        }
      }
      graph.set(f, deps);
    }
    for (const c of circles(graph)) problems.push(`import circle: ${c.map((x) => path.relative(repoRoot, x)).join(' → ')} → ${path.relative(repoRoot, c[0])}`);
  }
  return { files, edges, packages: srcDirs.length, problems: [...new Set(problems)] };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const r = checkImports();
  if (process.argv.includes('--json')) console.log(JSON.stringify(r, null, 2));
  else {
    console.log(`check-imports: ${r.files} files, ${r.edges} local imports in ${r.packages} source folders (packages/core/src, plugins/*/src)`);
    for (const p of r.problems) console.log(`  ${p}`);
    console.log(r.problems.length ? `check-imports: ${r.problems.length} problem(s)` : 'check-imports: no circles, no upward imports, no library private member outside adapter/, core within its size limits');
  }
  process.exitCode = r.problems.length ? 1 : 0;
}
