import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The files the guide shows (`<!-- file: NAME -->` before a code block), exactly as printed. */
function filesOf(markdown: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of markdown.matchAll(/<!-- file: (\S+) -->\n```\w*\n([\s\S]*?)\n```/g)) out[m[1]!] = m[2]! + '\n';
  return out;
}

describe('docs/write-a-screener.md, followed to the letter', function () {
  this.timeout(60_000);
  it('gives a Subject screener and a test that pass, catching an RFC 2047-encoded Subject', () => {
    const files = filesOf(readFileSync(path.join(root, 'docs/write-a-screener.md'), 'utf8'));
    assert.deepEqual(Object.keys(files), ['subject-screener.mjs', 'subject-screener.test.mjs']);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-guide-'));
    try {
      // A reader's project: the published packages (here: the workspace's) in node_modules.
      mkdirSync(path.join(dir, 'node_modules/@portcullis'), { recursive: true });
      for (const p of ['core', 'testkit']) symlinkSync(path.join(root, 'packages', p), path.join(dir, 'node_modules/@portcullis', p));
      for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
      const r = spawnSync(process.execPath, [path.join(root, 'node_modules/mocha/bin/mocha.js'), '--color', 'false', 'subject-screener.test.mjs'], { cwd: dir, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /refuses an RFC 2047-encoded Subject that contains a listed word/);
      assert.match(r.stdout, /(\d+) passing/);
      assert.doesNotMatch(r.stdout, /failing|pending/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
