import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, 'fixtures');

/**
 * Loads plugins in a plain Node process (the built test kit, no tsx): mocha runs under tsx, whose
 * loader would quietly accept module syntax that Node itself refuses.
 */
type Outcome = { ok: boolean; replies?: number[]; hops?: string[]; error?: string };
const CASES = {
  cjs: ['cjs-project', './accept-all.js', 'b@compiled.test'],
  compiled: ['cjs-project', './compiled.js', 'b@compiled.test'],
  compiledOther: ['cjs-project', './compiled.js', 'b@other.test'],
  esm: ['esm-project', './accept-all.js', 'b@x.test'],
  cjsFileInEsm: ['esm-project', './accept-all-cjs.cjs', 'b@x.test'],
  esmInCjs: ['cjs-project', './esm-syntax.js', 'b@x.test'],
  esmInCjsFile: ['cjs-project', './esm-syntax.cjs', 'b@x.test'],
  cjsInEsm: ['esm-project', './cjs-syntax.js', 'b@x.test'],
} as const;
let outcomes: Record<keyof typeof CASES, Outcome>;

/** Loads every case in one plain Node process. */
function plainNode(): typeof outcomes {
  const script = `
    import { inject } from '@portcullis/testkit';
    const cases = ${JSON.stringify(Object.fromEntries(Object.entries(CASES).map(([k, [p, u, r]]) => [k, [path.join(fixtures, p), u, r]])))};
    const out = {};
    for (const [key, [configDir, use, rcpt]] of Object.entries(cases)) {
      try {
        const r = await inject({ configDir, plugins: [{ use }], mail: { from: 'a@x.test', to: rcpt, message: 'Subject: x\\r\\n\\r\\nb\\r\\n' } });
        out[key] = { ok: true, replies: r.replies.map((x) => x.code), hops: r.deliveries.map((d) => d.hop) };
      } catch (err) {
        out[key] = { ok: false, error: err.message };
      }
    }
    console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: path.join(here, '..'), encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as typeof outcomes;
}

describe('plugin files in either module format (plain Node, as the CLI runs them)', () => {
  before(function () {
    this.timeout(30_000);
    outcomes = plainNode();
  });

  it('loads a CommonJS plugin (require + module.exports) from a project made by npm init', () => {
    const r = outcomes.cjs;
    assert.deepEqual([r.ok, r.replies, r.hops], [true, [220, 250, 250, 250, 354, 250, 221], ['cjs']]);
  });

  it('loads a plugin compiled by tsc to CommonJS (exports.default)', () => {
    assert.deepEqual(outcomes.compiled.replies?.[3], 250);
    assert.deepEqual(outcomes.compiledOther.replies?.[3], 550);
  });

  it('loads an ES module plugin (import + export default), and a .cjs file in the same project', () => {
    assert.deepEqual(outcomes.esm.hops, ['esm']);
    assert.deepEqual(outcomes.cjsFileInEsm.hops, ['cjs']);
  });

  it('tells the author of ES module syntax in a CommonJS project exactly what to change', () => {
    const r = outcomes.esmInCjs;
    assert.equal(r.ok, false);
    assert.match(r.error!, /inject\.yaml: plugins\[0\]\.use: cannot load plugin "\.\/esm-syntax\.js": esm-syntax\.js uses ES module syntax/);
    assert.match(r.error!, /rename it to esm-syntax\.mjs; add "type": "module" to that package\.json; or write it as CommonJS: `const \{ definePlugin \} = require\('@portcullis\/core'\)/);
  });

  it('tells the author of ES module syntax in a .cjs file to rename it or write CommonJS', () => {
    const r = outcomes.esmInCjsFile;
    assert.match(r.error!, /esm-syntax\.cjs is CommonJS to Node \(\.cjs\) but uses ES module syntax.*rename it to esm-syntax\.mjs, or write it as CommonJS/);
  });

  it('tells the author of CommonJS in an ES module project exactly what to change', () => {
    const r = outcomes.cjsInEsm;
    assert.match(r.error!, /plugins\[0\]\.use: cannot load plugin "\.\/cjs-syntax\.js": cjs-syntax\.js uses CommonJS .*rename it to cjs-syntax\.cjs/);
  });
});
