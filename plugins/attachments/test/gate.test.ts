import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fileTypeFromBuffer, supportedExtensions } from 'file-type';
import { FILE_TYPE_MARKS, fileTypeMayFlag, kindOfType, sniff } from '../src/magic.js';
import * as f from './fixtures.js';

/**
 * The gate in front of file-type (`fileTypeMayFlag`) must never hide a type that raises a finding.
 * Its list of signatures was read from file-type's source; these tests hold the installed file-type
 * to it, so an upgrade cannot open a hole without a failing test.
 */

/** sha256 of file-type's `core.js` (21.3.4), the version FILE_TYPE_MARKS was read against. */
const CORE_JS_SHA256 = 'f528e3f8b5472fd2af534c678741c72e00f06be07896da5834bdc3cfd6597362';

const latin1 = (s: string) => Buffer.from(s, 'latin1');
const bytes = (...parts: Array<string | number[] | Buffer>) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? latin1(p) : Buffer.from(p))));
/** Pads to file-type's detection window with zeros (as a longer file would go on). */
const padded = (b: Buffer, fill = 0) => Buffer.concat([b, Buffer.alloc(Math.max(0, 4100 - b.length), fill)]);

const MACRO_MAIN: Record<string, string> = {
  docm: 'application/vnd.ms-word.document.macroEnabled',
  dotm: 'application/vnd.ms-word.template.macroEnabledTemplate',
  xlsm: 'application/vnd.ms-excel.sheet.macroEnabled',
  xltm: 'application/vnd.ms-excel.template.macroEnabled',
  pptm: 'application/vnd.ms-powerpoint.presentation.macroEnabled',
  potm: 'application/vnd.ms-powerpoint.template.macroEnabled',
  ppsm: 'application/vnd.ms-powerpoint.slideshow.macroEnabled',
};

/** One sample per signature of every type file-type reports that raises a finding here. */
async function samples(): Promise<Array<{ ext: string; data: Buffer }>> {
  const s = (ext: string, data: Buffer) => ({ ext, data });
  const out = [
    s('exe', f.pe('gate')),
    s('dmg', padded(bytes([0x78, 0x01]))),
    s('arj', padded(bytes([0x60, 0xea]))),
    s('cpio', padded(bytes([0xc7, 0x71]))),
    s('cpio', padded(bytes('070707'))),
    s('bz2', padded(bytes('BZh91AY&SY'))),
    s('lz', padded(bytes('LZIP', [1]))),
    s('wasm', padded(bytes([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0]))),
    s('crx', padded(bytes('Cr24', [3, 0, 0, 0]))),
    s('cab', padded(bytes('MSCF', [0, 0, 0, 0]))),
    s('cab', padded(bytes('ISc('))),
    s('rpm', padded(bytes([0xed, 0xab, 0xee, 0xdb, 3, 0]))),
    s('zst', padded(bytes([0x28, 0xb5, 0x2f, 0xfd]))),
    s('elf', f.elf('gate')),
    s('macho', padded(bytes([0xfe, 0xed, 0xfa, 0xce]))),
    s('macho', padded(bytes([0xfe, 0xed, 0xfa, 0xcf]))),
    s('macho', padded(bytes([0xce, 0xfa, 0xed, 0xfe]))),
    s('macho', f.machO('gate')),
    s('macho', padded(bytes([0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2]))),
    s('class', padded(bytes([0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 0x34]))),
    s('lz4', padded(bytes([0x04, 0x22, 0x4d, 0x18]))),
    ...['-lh0-', '-lh5-', '-lh7-', '-lzs-', '-lz4-', '-lz5-', '-lhd-'].map((m) => s('lzh', padded(bytes([0x24, 0x51], m)))),
    s('chm', padded(bytes('ITSF', [3, 0, 0, 0]))),
    s('xz', padded(bytes([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))),
    s('7z', f.sevenZip('gate')),
    s('rar', padded(bytes('Rar!', [0x1a, 0x07, 0x00]))),
    s('rar', padded(bytes('Rar!', [0x1a, 0x07, 0x01, 0x00]))),
    s('deb', padded(bytes('!<arch>\ndebian-binary   '))),
    s('ar', padded(bytes('!<arch>\nlibfoo.o/       '))),
    s('reg', padded(bytes('REGEDIT4\r\n\r\n[HKEY_CURRENT_USER\\Software]\r\n'), 0x20)),
    s('reg', padded(bytes([0xff, 0xfe], Buffer.from('Windows Registry Editor Version 5.00\r\n\r\n', 'utf16le')))),
    s('ace', padded(bytes([0x12, 0x34, 0x56, 0x31, 0x00, 0x00, 0x90], '**ACE**'))),
    s('lnk', padded(bytes([0x4c, 0, 0, 0, 0x01, 0x14, 0x02, 0, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46]))),
    s('jar', await f.zip([{ name: 'META-INF/MANIFEST.MF', data: latin1('Manifest-Version: 1.0\r\n'), store: true }])),
    s('apk', await f.zip([{ name: 'classes.dex', data: latin1('dex\n035\0'), store: true }])),
    s('xpi', await f.zip([{ name: 'META-INF/mozilla.rsa', data: latin1('x'), store: true }])),
  ];
  for (const [ext, main] of Object.entries(MACRO_MAIN)) {
    const types = `<?xml version="1.0"?><Types><Override PartName="/x.xml" ContentType="${main}.main+xml"/></Types>`;
    out.push(s(ext, await f.zip([{ name: '[Content_Types].xml', data: latin1(types), store: true }])));
  }
  return out;
}

const isZip = (b: Buffer) => b[0] === 0x50 && b[1] === 0x4b;
/** An ID3v2 tag of `n` bytes in front (file-type skips it and looks again). */
const behindId3 = (b: Buffer, n = 20) => Buffer.concat([bytes('ID3', [4, 0, 0, 0, 0, 0, n]), Buffer.alloc(n, 0x41), b]);
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

describe('the file-type gate (fileTypeMayFlag)', function () {
  this.timeout(120_000);

  it('was read against the installed file-type: core.js is the one the marks were read from', () => {
    // The copy this package resolves (pnpm links it into the package's node_modules).
    const core = realpathSync(fileURLToPath(new URL('../node_modules/file-type/core.js', import.meta.url)));
    const digest = createHash('sha256').update(readFileSync(core)).digest('hex');
    assert.equal(digest, CORE_JS_SHA256, `file-type's detectors changed (${core}): read FILE_TYPE_MARKS in src/magic.ts against them again (every return of a type kindOfType acts on), then update CORE_JS_SHA256`);
  });

  it('has a mark for every type file-type supports that raises a finding here', () => {
    const marked = new Set(FILE_TYPE_MARKS.flatMap((m) => m.types));
    const acted = [...supportedExtensions].filter((ext) => kindOfType(ext));
    assert.ok(acted.length >= 30, `only ${acted.length} acted-on types: ${acted.join(' ')}`);
    assert.deepEqual(acted.filter((ext) => !marked.has(ext)), []);
    // And no mark names a type we do not act on, or one file-type does not report.
    for (const m of FILE_TYPE_MARKS) for (const t of m.types) assert.ok(kindOfType(t) && supportedExtensions.has(t as never), t);
  });

  it('lets every sample through, bare, after a UTF-8 BOM and behind an ID3 tag, and sniff still finds each', async () => {
    const all = await samples();
    const covered = new Set<string>();
    const hit = new Set<number>();
    for (const { ext, data } of all) {
      covered.add(ext);
      assert.equal((await fileTypeFromBuffer(data))?.ext, ext, `file-type no longer reports this ${ext} sample`);
      for (const [how, b] of [['bare', data], ['after a BOM', Buffer.concat([BOM, data])], ['behind ID3', behindId3(data)]] as const) {
        assert.ok(fileTypeMayFlag(b), `${ext} ${how}`);
        // Through sniff as a nameless text body would be (no #!, findings only); a bare zip takes sniff's zip branch.
        const sn = await sniff(b, { allowShebang: false, findingsOnly: true });
        if (how === 'bare' || !isZip(data) || how === 'after a BOM') assert.equal(sn.kind, kindOfType(ext), `${ext} ${how}: ${JSON.stringify(sn)}`);
      }
      FILE_TYPE_MARKS.forEach((m, i) => {
        if (m.types.includes(ext) && data.subarray(m.at, m.at + m.bytes.length).equals(m.bytes)) hit.add(i);
      });
    }
    const acted = [...supportedExtensions].filter((ext) => kindOfType(ext));
    assert.deepEqual(acted.filter((ext) => !covered.has(ext)), [], 'a sample for every acted-on type');
    assert.deepEqual(FILE_TYPE_MARKS.map((_, i) => i).filter((i) => !hit.has(i)), [], 'a sample for every mark');
  });

  it('over all first two bytes (and each sample with its first or second byte changed), file-type flags nothing the gate lets pass by', async () => {
    const fillers = [Buffer.alloc(4100, 0), padded(latin1(' Hello, this is an ordinary message body.\r\n'.repeat(8)), 0x20)];
    const missed: string[] = [];
    const probe = async (b: Buffer) => {
      const ext = (await fileTypeFromBuffer(b).catch(() => undefined))?.ext;
      if (ext && kindOfType(ext) && !fileTypeMayFlag(b)) missed.push(`${ext}: ${b.subarray(0, 16).toString('hex')}`);
    };
    for (const filler of fillers) {
      const b = Buffer.from(filler);
      for (let v = 0; v < 0x10000; v++) {
        b[0] = v >> 8;
        b[1] = v & 0xff;
        await probe(b);
      }
    }
    for (const { data } of await samples()) {
      for (const at of [0, 1]) {
        const b = Buffer.from(data);
        for (let v = 0; v < 256; v++) {
          b[at] = v;
          await probe(b);
        }
      }
    }
    assert.deepEqual(missed, []);
  });

  it('keeps ordinary text away from file-type', () => {
    const texts = [
      'Hello Bob,\r\n\r\nthe report is attached.\r\n',
      'Dear customer,\r\n',
      '<html><body><p>Hi</p></body></html>\r\n',
      '<!DOCTYPE html>\r\n<html>',
      '\r\n\r\nThis is a multi-part message in MIME format.\r\n',
      '--\r\nsig\r\n',
      'Grüße aus Köln\r\n',
      'Meeting moved to 3 pm.\r\n',
      'Invoice 2026-0042\r\n',
      'Re: your question\r\n',
      'Lorem ipsum dolor sit amet\r\n',
      '> quoted line\r\n',
    ];
    for (const t of texts) {
      assert.equal(fileTypeMayFlag(Buffer.from(t)), false, t);
      assert.equal(fileTypeMayFlag(Buffer.concat([BOM, Buffer.from(t)])), false, `BOM ${t}`);
    }
    assert.equal(fileTypeMayFlag(Buffer.alloc(0)), false);
    // Bytes past a short prefix count as zeros, as in file-type: "L" alone is not a shortcut.
    assert.equal(fileTypeMayFlag(latin1('L')), false);
    assert.equal(fileTypeMayFlag(latin1('MZ')), true);
  });

  it('a nameless text body that is a program is still caught, and plain text is not', async () => {
    assert.equal((await sniff(f.pe('gate'), { allowShebang: false, findingsOnly: true })).kind, 'executable');
    assert.equal((await sniff(Buffer.concat([BOM, f.elf('gate')]), { allowShebang: false, findingsOnly: true })).kind, 'executable');
    assert.deepEqual(await sniff(latin1('Hello Bob,\r\n'), { allowShebang: false, findingsOnly: true }), {});
    // Without findingsOnly, sniff still names harmless types.
    assert.equal((await sniff(f.png())).type, 'png');
    assert.equal((await sniff(f.png(), { findingsOnly: true })).type, undefined);
  });
});
