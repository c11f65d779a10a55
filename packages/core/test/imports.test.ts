import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// scripts/check-imports.mjs is also run by the root `test` script before the suites; running it here
// makes the layout rule a counted test of the core suite.
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const { checkImports, lineCount } = (await import(pathToFileURL(path.join(repoRoot, 'scripts/check-imports.mjs')).href)) as {
  checkImports(root?: string): { files: number; edges: number; problems: string[] };
  lineCount(text: string): number;
};

describe('import layout (scripts/check-imports.mjs)', () => {
  it('finds no import circle, no upward import in packages/core/src and plugins/*/src, and no library private member outside packages/core/src/adapter/', () => {
    const r = checkImports(repoRoot);
    assert.ok(r.files > 100, `read ${r.files} files`);
    assert.deepEqual(r.problems, []);
  });

  it('reports a circle and an import from a later phase into an earlier one', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-imports-'));
    try {
      const write = (rel: string, text: string) => {
        fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
        fs.writeFileSync(path.join(dir, rel), text);
      };
      write('packages/core/src/listen/a.ts', "import { b } from '../session/b.js';\nexport const a = 1;\n");
      write('packages/core/src/session/b.ts', "export const b = 2;\n");
      write('plugins/x/src/one.ts', "import { two } from './two.js';\nexport const one = 1;\n");
      write('plugins/x/src/two.ts', "import type { one } from './one.js';\nexport const two = 2;\n");
      const r = checkImports(dir);
      assert.equal(r.problems.length, 2, r.problems.join('\n'));
      assert.match(r.problems.join('\n'), /upward import: packages\/core\/src\/listen\/a\.ts \(floor 2\) imports packages\/core\/src\/session\/b\.ts \(floor 3\)/);
      assert.match(r.problems.join('\n'), /import circle: plugins\/x\/src\/one\.ts → plugins\/x\/src\/two\.ts → plugins\/x\/src\/one\.ts/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a library private member named outside adapter/, and not one inside it or a stream calling its base class', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-private-'));
    try {
      const write = (rel: string, text: string) => {
        fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
        fs.writeFileSync(path.join(dir, rel), text);
      };
      write('packages/core/src/session/guard.ts', "// conn._parser in a comment is fine\nexport function close(conn: any) {\n  conn._socket.destroy();\n}\n");
      write('packages/core/src/adapter/smtp-server.ts', "export function destroyConnection(conn: any) {\n  conn._socket.destroy();\n}\n");
      write('packages/core/src/intake/split.ts', "import { Transform } from 'node:stream';\nexport class S extends Transform {\n  _flush(cb: () => void) {\n    super._flush(cb);\n  }\n}\n");
      const r = checkImports(dir);
      assert.deepEqual(r.problems, ['library private member outside adapter/: packages/core/src/session/guard.ts:3: conn._socket.destroy();']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  it('reports a core file over 450 lines (a last line without a newline counted), relay.ts over 300 and a core folder with more than 15 files', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-sizes-'));
    try {
      const write = (rel: string, text: string) => {
        fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
        fs.writeFileSync(path.join(dir, rel), text);
      };
      write('packages/core/src/spool/long.ts', 'export const x = 1;\n'.repeat(451));
      write('packages/core/src/spool/just-fits.ts', 'export const y = 1;\n'.repeat(450));
      // No newline after the last line: it is a line all the same (451 lines, one too many).
      write('packages/core/src/spool/no-final-newline.ts', 'export const z = 1;\n'.repeat(450) + 'export const w = 2;');
      write('packages/core/src/spool/fits-without-newline.ts', 'export const v = 1;\n'.repeat(449) + 'export const u = 2;');
      write('packages/core/src/relay.ts', 'export const r = 1;\n'.repeat(301));
      for (let i = 0; i < 16; i++) write(`packages/core/src/intake/f${i}.ts`, `export const f${i} = ${i};\n`);
      const r = checkImports(dir);
      assert.deepEqual(r.problems.sort(), [
        'file too long: packages/core/src/relay.ts has 301 lines (limit 300)',
        'file too long: packages/core/src/spool/long.ts has 451 lines (limit 450)',
        'file too long: packages/core/src/spool/no-final-newline.ts has 451 lines (limit 450)',
        'folder too full: packages/core/src/intake has 16 files (limit 15)',
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  it('counts lines as an editor numbers them, with or without a newline after the last', () => {
    assert.deepEqual(['', 'a', 'a\n', 'a\nb', 'a\nb\n', '\n', '\n\n'].map(lineCount), [0, 1, 1, 2, 2, 1, 2]);
  });
});
