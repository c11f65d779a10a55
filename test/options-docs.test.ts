import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const script = path.join(root, 'scripts', 'options-docs.mjs');
const run = (...args: string[]) => spawnSync(process.execPath, [script, ...args], { cwd: root, encoding: 'utf8' });

describe('plugin README options tables, generated from the zod schemas', () => {
  it('every plugin README on main matches its schema (the CI check)', () => {
    const r = run('--check');
    assert.equal(r.status, 0, r.stderr);
  });

  it('fails the check when a schema changed and the README was not regenerated, and passes once it is', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-docs-'));
    try {
      // A copy of relay-policy whose schema gained an option: its README is now out of date.
      mkdirSync(path.join(dir, 'dist'));
      cpSync(path.join(root, 'plugins/relay-policy/README.md'), path.join(dir, 'README.md'));
      writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'changed-policy', type: 'module' }));
      const policy = pathToFileURL(path.join(root, 'plugins/relay-policy/dist/index.js')).href;
      const core = pathToFileURL(path.join(root, 'packages/core/dist/index.js')).href;
      writeFileSync(path.join(dir, 'dist/index.js'), `import policy from ${JSON.stringify(policy)};\nimport { z } from ${JSON.stringify(core)};\nexport default { ...policy, options: policy.options.extend({ greylist: z.boolean().default(false).describe('Greylist unknown senders.') }) };\n`);
      const stale = run('--check', dir);
      assert.equal(stale.status, 1);
      assert.match(stale.stderr, /README\.md: the options table differs from the schema of relay-policy; run node scripts\/options-docs\.mjs/);
      assert.equal(run(dir).status, 0);
      assert.match(readFileSync(path.join(dir, 'README.md'), 'utf8'), /\| `greylist` \| boolean \| `false` \| Greylist unknown senders\. \|/);
      assert.equal(run('--check', dir).status, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails the check for a README without the options markers', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-docs-'));
    try {
      mkdirSync(path.join(dir, 'dist'));
      writeFileSync(path.join(dir, 'README.md'), '# x\n\n| option | meaning |\n');
      writeFileSync(path.join(dir, 'dist/index.js'), `export default { kind: 'portcullis-plugin', name: 'x', setup: () => ({}) };\n`);
      const r = run('--check', dir);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /README\.md: no options table markers/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
