import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Session } from '@portcullis/core';
import { checkName, rawParams, readings } from '../src/names.js';
import { directionOf } from '../src/direction.js';
import { NetworkList } from '@portcullis/core';
import { ContentInspector, type InspectContext } from '../src/inspector.js';
import { nestedOpeners } from '../src/nested.js';
import { OleMacroScanner } from '../src/magic.js';
import { decodeUuLine, UuencodeScanner } from '../src/uuencode.js';
import { DEFAULT_EXTENSIONS, options } from '../src/options.js';
import * as f from './fixtures.js';

const rules = { denyExtensions: new Set(DEFAULT_EXTENSIONS), maxNameLength: 200 };

describe('file names', () => {
  it('reads a name every way a client might: bidi stripped, cut at NUL, trailing dots dropped', () => {
    const r = readings('Invoice\u202Efdp.EXE.');
    assert.ok(r.includes('invoicefdp.exe'));
    assert.ok(readings('evil.exe\u0000.pdf').includes('evil.exe'));
    assert.ok(readings('..\\..\\run.bat').includes('run.bat'));
  });

  it('decodes RFC 2231 continuations with their charset, and keeps the plain parameter beside them', () => {
    const v = `attachment; filename="safe.pdf"; filename*0*=utf-8''%C3%9Cber; filename*1*=weisung.js`;
    assert.deepEqual(rawParams(v, 'filename').sort(), ['safe.pdf', 'Überweisung.js'].sort());
  });

  it('decodes RFC 2047 words in a plain parameter', () => {
    assert.ok(rawParams('application/pdf; name="=?utf-8?Q?r=C3=A9sum=C3=A9.js?="', 'name').includes('résumé.js'));
  });

  it('flags a denied extension case-insensitively and a denied extension hidden behind a harmless one', () => {
    assert.equal(checkName('SETUP.Exe', rules)[0]?.kind, 'extension');
    assert.ok(checkName('payroll.exe.pdf', rules).some((x) => x.kind === 'double-extension' && /hides extension \.exe behind \.pdf/.test(x.reason)));
    assert.deepEqual(checkName('Quarterly report 2024.pdf', rules), []);
    assert.deepEqual(checkName('Ångström – 報告書.docx', rules), []);
  });

  it('in allow-list mode catches any other extension and names without one', () => {
    const allow = { ...rules, denyExtensions: new Set<string>(), allowExtensions: new Set(['pdf', 'png']) };
    assert.deepEqual(checkName('a.PDF', allow), []);
    assert.match(checkName('table.xlsx', allow)[0]!.reason, /has extension \.xlsx, which is not allowed/);
    assert.match(checkName('README', allow)[0]!.reason, /has no extension/);
  });
});

describe('uuencode and OLE scanning', () => {
  it('decodes uuencoded lines the way uudecode does', () => {
    const data = Buffer.from('Hello, uuencode! 0123456789 abcdefghijklmnopqrstuvwxyz');
    const text = f.uuencode('x.bin', data).split('\r\n').slice(1, -2);
    assert.ok(Buffer.concat(text.map((l) => decodeUuLine(l)!)).equals(data));
  });

  it('finds a begin line split across chunks and decodes the start of the block', () => {
    const s = new UuencodeScanner(1024);
    const text = Buffer.from(`hi\r\n${f.uuencode('tool.exe', f.pe('uu'))}\r\nbye\r\n`);
    for (let i = 0; i < text.length; i += 7) s.push(text.subarray(i, i + 7));
    const [block] = s.finish();
    assert.equal(block?.name, 'tool.exe');
    assert.equal(block?.prefix.subarray(0, 2).toString(), 'MZ');
  });

  it('finds the same blocks however a long text is chunked (lines without "begin" are skipped in bulk)', () => {
    const filler = (n: number) => Array.from({ length: n }, (_, i) => `line ${i} of ordinary text, nothing to see here`).join('\r\n');
    const text = Buffer.from(`${filler(200)}\r\n${f.uuencode('one.exe', f.pe('u1'))}\r\n${filler(300)}\r\nxbegin 644 not-at-line-start.exe\r\n${filler(50)}\r\n${f.uuencode('two.scr', Buffer.from('#!/bin/sh\necho\n'))}\r\n${filler(10)}`);
    const scan = (size: number) => {
      const s = new UuencodeScanner(1024);
      for (let i = 0; i < text.length; i += size) s.push(text.subarray(i, i + size));
      return s.finish().map((b) => ({ name: b.name, prefix: b.prefix.toString('hex') }));
    };
    const whole = scan(text.length);
    assert.deepEqual(whole.map((b) => b.name), ['one.exe', 'two.scr']);
    for (const size of [1, 7, 64, 300, 1000, 4096, 20_000]) assert.deepEqual(scan(size), whole, `chunks of ${size}`);
  });

  it('finds _VBA_PROJECT across a chunk boundary', () => {
    const doc = f.ole(true, 'vba');
    const at = doc.indexOf(Buffer.from('_VBA_PROJECT', 'utf16le'));
    const scanner = new OleMacroScanner();
    scanner.push(doc.subarray(0, at + 5));
    assert.equal(scanner.found, false);
    scanner.push(doc.subarray(at + 5));
    assert.equal(scanner.found, true);
    const clean = new OleMacroScanner();
    clean.push(f.ole(false, 'novba'));
    assert.equal(clean.found, false);
  });
});

describe('content inspector memory', () => {
  let dir: string;
  const ctx = (): InspectContext => ({ sniffBytes: 64 * 1024, maxDepth: 3, maxEntries: 100, maxTotalSize: 100 * 1024 * 1024, maxSize: 1024 * 1024, tempDir: dir, uuencode: true, open: nestedOpeners });
  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'att-unit-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps no temp file for content that is not a container, however large', async () => {
    const insp = new ContentInspector(ctx(), { depth: 0, budget: { entries: 0, bytes: 0 }, label: 'attachment "big.bin"', named: true });
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    for (let i = 0; i < 320; i++) insp.update(chunk); // 20 MB
    assert.equal(insp.tempPath, undefined);
    const r = await insp.finish();
    assert.deepEqual(r.findings, []);
    assert.equal(insp.size, 20 * 1024 * 1024);
  });

  it('stops writing an archive at maxSize and reports it as too large to inspect', async () => {
    const zip = await f.zip([{ name: 'a.bin', data: Buffer.alloc(3 * 1024 * 1024, 7), store: true }]);
    const insp = new ContentInspector(ctx(), { depth: 0, budget: { entries: 0, bytes: 0 }, label: 'attachment "a.zip"', named: true });
    for (let i = 0; i < zip.length; i += 65536) insp.update(zip.subarray(i, i + 65536));
    const tmp = insp.tempPath!;
    const r = await insp.finish();
    assert.equal(statSync(tmp).size, 1024 * 1024);
    assert.equal(insp.truncated, true);
    assert.match(r.findings[0]!.reason, /attachment "a\.zip" is an archive too large to inspect/);
    insp.cleanup();
    assert.equal(existsSync(tmp), false, 'temp file removed');
  });
});

describe('direction and options', () => {
  const session = (remoteAddress: string, user?: string) => ({ remoteAddress, user }) as unknown as Session;
  it('is outbound for authenticated users and trusted networks, inbound otherwise', () => {
    const nets = NetworkList.parse(['10.0.0.0/8', '::1/128']);
    assert.equal(directionOf(session('203.0.113.9', 'alice'), nets), 'outbound');
    assert.equal(directionOf(session('::ffff:10.1.2.3'), nets), 'outbound');
    assert.equal(directionOf(session('::1'), nets), 'outbound');
    assert.equal(directionOf(session('203.0.113.9'), nets), 'inbound');
  });

  it('refuses a quarantine rule without a quarantine folder, naming the key', () => {
    const r = options.safeParse({ rules: [{ action: 'quarantine' }] });
    assert.equal(r.success, false);
    assert.match(JSON.stringify(r.error!.issues), /quarantine\.dir/);
    assert.equal(options.safeParse({ block: ['exe', '.JS'], action: 'strip' }).success, true);
    assert.deepEqual(options.parse({ block: ['exe', '.JS'] }).block, ['exe', 'js']);
  });
});
