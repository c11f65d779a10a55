import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const cliDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = path.resolve(cliDir, '../..');
const main = path.join(cliDir, 'dist/main.js');
const node = (args: string[], cwd: string) => spawnSync(process.execPath, args, { cwd, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });

describe('portcullis plugin new', function () {
  this.timeout(180_000);
  let tmp: string;
  before(() => (tmp = mkdtempSync(path.join(os.tmpdir(), 'portcullis-scaffold-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('scaffolds a plugin package that builds, passes its generated test and its README check as generated', () => {
    const made = node([main, 'plugin', 'new', 'portcullis-plugin-sender-block'], tmp);
    assert.equal(made.status, 0, made.stderr);
    const dir = path.join(tmp, 'portcullis-plugin-sender-block');
    assert.match(made.stdout, /created .*portcullis-plugin-sender-block/);
    const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { peerDependencies: Record<string, string>; scripts: Record<string, string> };
    assert.equal(pkg.peerDependencies['@portcullis/core'], '^0.1.0');
    assert.match(readFileSync(path.join(dir, 'README.md'), 'utf8'), /\| `senders` \| list of string \| `\[\]` \| Envelope senders refused at MAIL FROM/);
    // What `npm install` would put there, from this workspace: core, the test kit, TypeScript, mocha.
    mkdirSync(path.join(dir, 'node_modules/@portcullis'), { recursive: true });
    mkdirSync(path.join(dir, 'node_modules/@types'), { recursive: true });
    for (const p of ['core', 'testkit']) symlinkSync(path.join(root, 'packages', p), path.join(dir, 'node_modules/@portcullis', p));
    for (const p of ['typescript', 'mocha', '@types/node', '@types/mocha']) symlinkSync(path.join(root, 'node_modules', p), path.join(dir, 'node_modules', p));
    const tsc = path.join(dir, 'node_modules/typescript/bin/tsc');
    // The steps of its `npm test`: build, build the tests, mocha, the README check.
    for (const step of [[tsc, '-p', 'tsconfig.json'], [tsc, '-p', 'tsconfig.test.json'], [path.join(dir, 'node_modules/mocha/bin/mocha.js'), '--color', 'false'], ['scripts/options-docs.mjs', '--check']]) {
      const r = node(step, dir);
      assert.equal(r.status, 0, `${step.join(' ')}:\n${r.stdout}\n${r.stderr}`);
      if (step[0]!.endsWith('mocha.js')) {
        assert.match(r.stdout, /refuses a listed sender at MAIL FROM with 550 5\.7\.1/);
        assert.match(r.stdout, /plugin conformance: sender-block/);
        assert.match(r.stdout, /(\d+) passing/);
        assert.doesNotMatch(r.stdout, /failing|pending/);
      }
    }
    // A schema change without `npm run docs` fails its own test run.
    const src = path.join(dir, 'src/index.ts');
    writeFileSync(src, readFileSync(src, 'utf8').replace("reply: z.string()", "note: z.string().default('x').describe('A new knob.'),\n  reply: z.string()"));
    assert.equal(node([tsc, '-p', 'tsconfig.json'], dir).status, 0);
    const stale = node(['scripts/options-docs.mjs', '--check'], dir);
    assert.equal(stale.status, 1);
    assert.match(stale.stderr, /README\.md: the options table differs from the schema; run npm run docs/);
  });

  it('refuses a folder that is not empty and a name npm would refuse', () => {
    mkdirSync(path.join(tmp, 'taken'));
    writeFileSync(path.join(tmp, 'taken/file'), 'x');
    const r = node([main, 'plugin', 'new', 'taken'], tmp);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /taken exists and is not empty/);
    assert.match(node([main, 'plugin', 'new', 'Bad Name'], tmp).stderr, /"Bad Name" is not an npm package name/);
  });
});
