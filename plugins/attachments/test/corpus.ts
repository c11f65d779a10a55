/**
 * The end-to-end corpus: each case is one message, the client it comes from (inbound = an
 * untrusted address, outbound = a trusted one) and what must happen to it.
 */
import { randomBytes } from 'node:crypto';
import * as f from './fixtures.js';

export type Expect =
  | { kind: 'block'; reason: RegExp }
  | { kind: 'strip'; removed: string[]; payloads: Buffer[]; kept?: Array<{ filename: string; data: Buffer }>; quarantine?: boolean }
  | { kind: 'clean' };

export interface Case {
  readonly id: string;
  readonly title: string;
  readonly from: 'inbound' | 'outbound';
  readonly raw: string;
  readonly expect: Expect;
}

const enc2047b = (s: string) => `=?utf-8?B?${Buffer.from(s).toString('base64')}?=`;
const pct = (s: string) => [...Buffer.from(s)].map((b) => (/[A-Za-z0-9._-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : '%' + b.toString(16).toUpperCase().padStart(2, '0'))).join('');

function nestedMessage(parts: f.PartSpec[], subject = 'forwarded'): string {
  return f.message(subject, parts, { from: 'carol@elsewhere.test', to: 'sender@remote.test' });
}

export async function buildCorpus(): Promise<Case[]> {
  const cases: Case[] = [];
  const add = (id: string, title: string, from: Case['from'], parts: f.PartSpec[], expect: Expect) =>
    cases.push({ id, title, from, raw: f.message(`[${id}] ${title}`, parts), expect });

  // ---- names ----
  add('n01', 'a program named invoice.exe', 'inbound', [f.attachment('invoice.exe', f.pe('n01'))], { kind: 'block', reason: /attachment "invoice\.exe" is a Windows program/ });
  add('n02', 'a double extension invoice.pdf.exe', 'inbound', [f.attachment('invoice.pdf.exe', f.pdf())], { kind: 'block', reason: /"invoice\.pdf\.exe" has a double extension ending in \.exe/ });
  add('n03', 'a trailing dot hides .exe', 'inbound', [f.attachment('payload.exe.', f.pdf())], { kind: 'block', reason: /double extension|payload\.exe\./ });
  add('n04', 'trailing spaces after .exe', 'inbound', [f.attachment('payload.exe   ', f.pdf())], { kind: 'block', reason: /"payload\.exe   " ends with a dot or space/ });
  add('n05', 'an upper-case extension SETUP.EXE', 'inbound', [f.attachment('SETUP.EXE', f.pdf())], { kind: 'block', reason: /"SETUP\.EXE" has a forbidden extension \.exe/ });
  cases.push({
    id: 'n06',
    title: 'a right-to-left override in an RFC 2231 name',
    from: 'inbound',
    raw: f.message('[n06] rtl override', [{ contentType: 'application/octet-stream', headers: [`Content-Disposition: attachment; filename*=utf-8''${pct('invoice\u202Efdp.exe')}`], body: f.pdf() }]),
    expect: { kind: 'block', reason: /"invoicefdp\.exe" contains a right-to-left override/ },
  });
  cases.push({
    id: 'n07',
    title: 'a control character in an RFC 2047 name',
    from: 'inbound',
    raw: f.message('[n07] control char', [{ contentType: 'application/pdf; name="=?utf-8?Q?report=01.pdf?="', headers: ['Content-Disposition: attachment'], body: f.pdf() }]),
    expect: { kind: 'block', reason: /contains control characters/ },
  });
  cases.push({
    id: 'n08',
    title: 'a NUL byte cuts the name to evil.exe',
    from: 'inbound',
    raw: f.message('[n08] nul', [{ contentType: 'application/pdf', headers: [`Content-Disposition: attachment; filename*=utf-8''evil.exe%00.pdf`], body: f.pdf() }]),
    expect: { kind: 'block', reason: /attachment "evil\.exe\?\.pdf" hides extension \.exe behind \.pdf/ },
  });
  add('n09', 'a very long name', 'inbound', [f.attachment('a'.repeat(240) + '.pdf', f.pdf(), 'application/pdf')], { kind: 'block', reason: /attachment "a{77}\.\.\." has a name longer than 200 characters/ });
  add('n10', 'a CLSID extension', 'inbound', [f.attachment('file.{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B}', f.pdf())], { kind: 'block', reason: /contains a CLSID/ });
  cases.push({
    id: 'n11',
    title: 'RFC 2231 continuations with a latin-1 charset spell Rechnungä.js',
    from: 'inbound',
    raw: f.message('[n11] continuations', [{ contentType: 'application/octet-stream', headers: [`Content-Disposition: attachment;\r\n filename*0*=iso-8859-1''Rechnung%E4;\r\n filename*1*=.j;\r\n filename*2=s`], body: Buffer.from('WScript.Echo("x")') }]),
    expect: { kind: 'block', reason: /"Rechnungä?\.js" has a forbidden extension \.js|Rechnung\?\.js/ },
  });
  cases.push({
    id: 'n12',
    title: 'an RFC 2047 Content-Type name only',
    from: 'inbound',
    raw: f.message('[n12] 2047 name', [{ contentType: `application/octet-stream; name="${enc2047b('facture.js')}"`, headers: [], body: Buffer.from('WScript.Echo("x")') }]),
    expect: { kind: 'block', reason: /"facture\.js" has a forbidden extension \.js/ },
  });
  cases.push({
    id: 'n13',
    title: 'filename and Content-Type name disagree (.pdf vs .exe)',
    from: 'inbound',
    raw: f.message('[n13] disagree', [{ contentType: 'application/pdf; name="report.exe"', headers: ['Content-Disposition: attachment; filename="report.pdf"'], body: f.pdf() }]),
    expect: { kind: 'block', reason: /"report\.exe" has a forbidden extension \.exe/ },
  });
  cases.push({
    id: 'n14',
    title: 'filename and filename* disagree (.pdf vs .vbe)',
    from: 'inbound',
    raw: f.message('[n14] star disagree', [{ contentType: 'application/pdf', headers: [`Content-Disposition: attachment; filename="report.pdf"; filename*=utf-8''report.vbe`], body: f.pdf() }]),
    expect: { kind: 'block', reason: /"report\.vbe" has a forbidden extension \.vbe/ },
  });

  // ---- declared types ----
  add('t01', 'declared application/x-msdownload', 'inbound', [f.attachment('data.bin', randomBytes(2000), 'application/x-msdownload')], { kind: 'block', reason: /declared type application\/x-msdownload is not accepted/ });
  add('t02', 'a message/partial part', 'inbound', [{ contentType: 'message/partial; id="abc@remote.test"; number=1; total=2', headers: [], body: 'Subject: part one\r\n\r\nhalf of it\r\n' }], { kind: 'block', reason: /declared type message\/partial/ });
  add('t03', 'a message/external-body part', 'inbound', [{ contentType: 'message/external-body; access-type=URL; URL="http://198.51.100.7/x.exe"', headers: [], body: 'Content-Type: application/octet-stream\r\n\r\n' }], { kind: 'block', reason: /declared type message\/external-body/ });

  // ---- real content ----
  add('c01', 'a PE declared as application/pdf named invoice.pdf', 'inbound', [f.attachment('invoice.pdf', f.pe('c01'), 'application/pdf')], { kind: 'block', reason: /"invoice\.pdf" is a Windows program \(PE\/MZ\)/ });
  add('c02', 'an ELF binary named report.pdf', 'inbound', [f.attachment('report.pdf', f.elf('c02'), 'application/pdf')], { kind: 'block', reason: /is a Linux program \(ELF\)/ });
  add('c03', 'a Mach-O binary named photo.jpg', 'inbound', [f.attachment('photo.jpg', f.machO('c03'), 'image/jpeg')], { kind: 'block', reason: /is a macOS program \(Mach-O\)/ });
  add('c04', 'a shebang script without an extension', 'inbound', [f.attachment('notes', f.shebang('c04'), 'text/plain')], { kind: 'block', reason: /"notes" is a script/ });
  add('c05', 'an OLE document with VBA macros named budget.doc', 'inbound', [f.attachment('budget.doc', f.ole(true, 'c05'), 'application/msword')], { kind: 'block', reason: /"budget\.doc" is an Office document with macros/ });
  add('c06', 'an OOXML document with vbaProject.bin named report.docx', 'inbound', [f.attachment('report.docx', await f.zip([{ name: '[Content_Types].xml', data: Buffer.from('<Types/>') }, { name: 'word/document.xml', data: Buffer.from('<w:document/>') }, { name: 'word/vbaProject.bin', data: f.ole(true, 'c06') }]), 'application/vnd.openxmlformats-officedocument.wordprocessingml.document')], { kind: 'block', reason: /macros/ });
  add('c07', 'an ISO 9660 disk image named backup.dat', 'inbound', [f.attachment('backup.dat', f.iso('c07'))], { kind: 'block', reason: /"backup\.dat" is a disk image \(ISO 9660\)/ });
  add('c08', 'a 7z archive that cannot be opened', 'inbound', [f.attachment('files.7z', f.sevenZip('c08'), 'application/x-7z-compressed')], { kind: 'block', reason: /"files\.7z" is an archive that cannot be inspected \(7z\)/ });

  // ---- archives ----
  const txt = (s: string) => Buffer.from(`${s}\r\nsome text\r\n`);
  add('a01', 'a zip holding tool.exe', 'inbound', [f.attachment('docs.zip', await f.zip([{ name: 'readme.txt', data: txt('a01') }, { name: 'bin/tool.exe', data: txt('not really') }]), 'application/zip')], { kind: 'block', reason: /archive member "bin\/tool\.exe" in attachment "docs\.zip" has a forbidden extension \.exe/ });
  add('a02', 'a zip holding a PE named readme.txt', 'inbound', [f.attachment('docs.zip', await f.zip([{ name: 'readme.txt', data: f.pe('a02') }]), 'application/zip')], { kind: 'block', reason: /archive member "readme\.txt" in attachment "docs\.zip" is a Windows program \(PE\/MZ\)/ });
  add('a03', 'a zip in a zip holding run.js', 'inbound', [f.attachment('outer.zip', await f.zip([{ name: 'inner.zip', data: await f.zip([{ name: 'run.js', data: txt('a03') }]) }]), 'application/zip')], { kind: 'block', reason: /archive member "run\.js" in archive member "inner\.zip" in attachment "outer\.zip" has a forbidden extension \.js/ });
  let deep = await f.zip([{ name: 'deep.txt', data: txt('a04') }]);
  for (let i = 0; i < 4; i++) deep = await f.zip([{ name: `level${i}.zip`, data: deep }]);
  add('a04', 'zips nested five deep', 'inbound', [f.attachment('nest.zip', deep, 'application/zip')], { kind: 'block', reason: /nested more than 3 levels deep/ });
  add('a05', 'an encrypted zip', 'inbound', [f.attachment('secret.zip', await f.zip([{ name: 'invoice.pdf', data: f.pdf() }], true), 'application/zip')], { kind: 'block', reason: /"secret\.zip" is encrypted/ });
  add('a06', 'a zip with too many members', 'inbound', [f.attachment('many.zip', await f.zip(Array.from({ length: 60 }, (_, i) => ({ name: `f${i}.txt`, data: txt(String(i)) }))), 'application/zip')], { kind: 'block', reason: /has more than 50 archive members/ });
  add('a07', 'a zip bomb expanding past the size limit', 'inbound', [f.attachment('bomb.zip', await f.zip([{ name: 'zeros.txt', data: Buffer.alloc(12 * 1024 * 1024) }]), 'application/zip')], { kind: 'block', reason: /expands to more than 10485760 bytes/ });
  add('a08', 'a tar.gz holding install.sh', 'inbound', [f.attachment('src.tar.gz', await f.tarball([{ name: 'src/readme.txt', data: txt('a08') }, { name: 'src/install.sh', data: Buffer.from('echo hi\n') }], true), 'application/gzip')], { kind: 'block', reason: /archive member "src\/install\.sh" in the gzip content of attachment "src\.tar\.gz" has a forbidden extension \.sh/ });
  add('a09', 'a tar holding a PE named notes.txt', 'inbound', [f.attachment('notes.tar', await f.tarball([{ name: 'notes.txt', data: f.pe('a09') }]), 'application/x-tar')], { kind: 'block', reason: /archive member "notes\.txt" in attachment "notes\.tar" is a Windows program/ });
  add('a10', 'a gzip of a PE', 'inbound', [f.attachment('data.gz', f.gzip(f.pe('a10')), 'application/gzip')], { kind: 'block', reason: /the gzip content of attachment "data\.gz" is a Windows program/ });

  // ---- nested messages ----
  const evil = f.pe('m01');
  add('m01', 'an inline message/rfc822 holding an exe', 'inbound', [{ contentType: 'message/rfc822', headers: ['Content-Disposition: inline'], body: nestedMessage([f.attachment('update.exe', evil)]) }], { kind: 'block', reason: /"update\.exe" is a Windows program/ });
  add('m02', 'an attached message/rfc822 holding an exe', 'inbound', [{ contentType: 'message/rfc822; name="fwd.eml"', headers: ['Content-Disposition: attachment; filename="fwd.eml"'], body: nestedMessage([f.attachment('update.exe', f.pe('m02'))]) }], { kind: 'block', reason: /attachment "update\.exe" in attached message "fwd\.eml" is a Windows program/ });
  add('m03', 'a base64 message/rfc822 holding a zip with an exe', 'inbound', [{ contentType: 'message/rfc822', headers: ['Content-Disposition: attachment'], body: Buffer.from(nestedMessage([f.attachment('tools.zip', await f.zip([{ name: 'setup.exe', data: txt('m03') }]), 'application/zip')])) }], { kind: 'block', reason: /archive member "setup\.exe" in attachment "tools\.zip" in an attached message has a forbidden extension \.exe/ });
  add('m04', 'an .eml sent as application/octet-stream holding a script', 'inbound', [f.attachment('mail.eml', Buffer.from(nestedMessage([f.attachment('macro.vbe', txt('m04'))])))], { kind: 'block', reason: /attachment "macro\.vbe" in attachment "mail\.eml" has a forbidden extension \.vbe/ });
  // No Content-Type: mailsplit types the part by its file name (.eml → message/rfc822), so the raw pass must not skip it.
  add('m05', 'an attached .eml without Content-Type holding an exe', 'inbound', [{ contentType: '', noContentType: true, headers: ['Content-Disposition: attachment; filename="fwd.eml"'], body: nestedMessage([f.attachment('update.exe', f.pe('m05'))]) }], { kind: 'block', reason: /update\.exe/ });
  cases.push({ id: 'u01', title: 'a uuencoded evil.exe in a text body', from: 'inbound', raw: f.plainMessage('[u01] uuencode', `Hi,\r\nthe file:\r\n\r\n${f.uuencode('evil.exe', txt('u01'))}\r\n\r\nbye`), expect: { kind: 'block', reason: /uuencoded file "evil\.exe" in message text has a forbidden extension \.exe/ } });
  cases.push({ id: 'u02', title: 'a uuencoded PE named notes.txt', from: 'inbound', raw: f.plainMessage('[u02] uuencode pe', `See below.\r\n${f.uuencode('notes.txt', f.pe('u02'))}\r\n`), expect: { kind: 'block', reason: /uuencoded file "notes\.txt" in message text is a Windows program/ } });

  // ---- strip and quarantine (inbound rules for .vbs/.bat and .scr) ----
  const keptPdf = f.pdf();
  const vbs = Buffer.from(`WScript.Echo "${f.marker('s01')}"\r\n`);
  add('s01', 'a .vbs is stripped, the PDF beside it kept', 'inbound', [f.attachment('script.vbs', vbs, 'text/vbscript'), f.attachment('report.pdf', keptPdf, 'application/pdf')], { kind: 'strip', removed: ['script.vbs'], payloads: [vbs], kept: [{ filename: 'report.pdf', data: keptPdf }] });
  const bat = Buffer.from(`@echo off\r\nrem ${f.marker('s02')}\r\n`);
  cases.push({ id: 's02', title: 'an RFC 2231-named .bat is stripped', from: 'inbound', raw: f.message('[s02] bat', [{ contentType: 'application/octet-stream', headers: [`Content-Disposition: attachment; filename*=utf-8''${pct('Überweisung.bat')}`], body: bat }]), expect: { kind: 'strip', removed: ['Überweisung.bat'], payloads: [bat] } });
  const scr = f.pe('q01');
  add('q01', 'a .scr is quarantined and stripped', 'inbound', [f.attachment('screensaver.scr', scr), f.attachment('photo.png', f.png(), 'image/png')], { kind: 'strip', removed: ['screensaver.scr'], payloads: [scr], kept: [{ filename: 'photo.png', data: f.png() }], quarantine: true });

  // ---- outbound: everything caught is stripped ----
  const o1 = f.pe('o01');
  add('o01', 'outbound: a PE declared as PDF is stripped', 'outbound', [f.attachment('invoice.pdf', o1, 'application/pdf'), f.attachment('terms.pdf', keptPdf, 'application/pdf')], { kind: 'strip', removed: ['invoice.pdf'], payloads: [o1], kept: [{ filename: 'terms.pdf', data: keptPdf }] });
  const o2 = await f.zip([{ name: 'setup.exe', data: f.pe('o02') }]);
  add('o02', 'outbound: a zip holding an exe is stripped', 'outbound', [f.attachment('tools.zip', o2, 'application/zip')], { kind: 'strip', removed: ['tools.zip'], payloads: [o2] });
  const o3 = f.pe('o03');
  add('o03', 'outbound: an exe inside an inline forwarded message is stripped', 'outbound', [{ contentType: 'message/rfc822', headers: ['Content-Disposition: inline'], body: nestedMessage([f.attachment('update.exe', o3), f.attachment('agenda.pdf', keptPdf, 'application/pdf')]) }], { kind: 'strip', removed: ['update.exe'], payloads: [o3], kept: [{ filename: 'agenda.pdf', data: keptPdf }] });
  const o4 = f.ole(true, 'o04');
  add('o04', 'outbound: a macro document is stripped', 'outbound', [f.attachment('budget.xls', o4, 'application/vnd.ms-excel')], { kind: 'strip', removed: ['budget.xls'], payloads: [o4] });

  // ---- clean controls: must arrive unchanged ----
  add('k01', 'a PDF', 'inbound', [f.attachment('report.pdf', f.pdf(), 'application/pdf')], { kind: 'clean' });
  add('k02', 'an inline PNG image', 'inbound', [{ contentType: 'image/png; name="photo.png"', headers: ['Content-Disposition: inline; filename="photo.png"', 'Content-ID: <img1@remote.test>'], body: f.png() }], { kind: 'clean' });
  add('k03', 'a docx without macros', 'inbound', [f.attachment('letter.docx', await f.zip([{ name: '[Content_Types].xml', data: Buffer.from('<Types/>') }, { name: '_rels/.rels', data: Buffer.from('<Relationships/>') }, { name: 'word/document.xml', data: Buffer.from('<w:document>hello</w:document>') }]), 'application/vnd.openxmlformats-officedocument.wordprocessingml.document')], { kind: 'clean' });
  add('k04', 'an OLE .doc without macros', 'inbound', [f.attachment('letter.doc', f.ole(false, 'k04'), 'application/msword')], { kind: 'clean' });
  add('k05', 'a zip of text files', 'inbound', [f.attachment('notes.zip', await f.zip([{ name: 'a.txt', data: txt('one') }, { name: 'dir/', data: Buffer.alloc(0) }, { name: 'dir/b.csv', data: Buffer.from('x,y\r\n1,2\r\n') }]), 'application/zip')], { kind: 'clean' });
  cases.push({ id: 'k06', title: 'an internationalised RFC 2231 name', from: 'inbound', raw: f.message('[k06] intl 2231', [{ contentType: 'application/pdf', headers: [`Content-Disposition: attachment; filename*=utf-8''${pct('Ångström – Bericht 2024.pdf')}`], body: f.pdf() }]), expect: { kind: 'clean' } });
  cases.push({ id: 'k07', title: 'an internationalised RFC 2047 name', from: 'inbound', raw: f.message('[k07] intl 2047', [{ contentType: `image/png; name="${enc2047b('報告書の写真.png')}"`, headers: [`Content-Disposition: attachment; filename="${enc2047b('報告書の写真.png')}"`], body: f.png() }]), expect: { kind: 'clean' } });
  add('k08', 'a tar.gz of text files', 'inbound', [f.attachment('logs.tar.gz', await f.tarball([{ name: 'logs/a.log', data: txt('k08') }, { name: 'logs/b.log', data: txt('b') }], true), 'application/gzip')], { kind: 'clean' });
  add('k09', 'an inline forwarded message with a PDF', 'inbound', [{ contentType: 'message/rfc822', headers: ['Content-Disposition: inline'], body: nestedMessage([f.attachment('agenda.pdf', f.pdf(), 'application/pdf')]) }], { kind: 'clean' });
  add('k10', 'an attached forwarded message with a PDF', 'inbound', [{ contentType: 'message/rfc822; name="fwd.eml"', headers: ['Content-Disposition: attachment; filename="fwd.eml"'], body: nestedMessage([f.attachment('agenda.pdf', f.pdf(), 'application/pdf')]) }], { kind: 'clean' });
  add('k11', 'a zip in a zip of text', 'inbound', [f.attachment('bundle.zip', await f.zip([{ name: 'inner.zip', data: await f.zip([{ name: 'x.txt', data: txt('k11') }]) }]), 'application/zip')], { kind: 'clean' });
  cases.push({ id: 'k12', title: 'a plain text message mentioning begin and .exe', from: 'inbound', raw: f.plainMessage('[k12] plain', 'Hello,\r\nbegin the meeting at 10; do not run setup.exe.\r\n#!not a script\r\n'), expect: { kind: 'clean' } });
  add('k13', 'outbound: a PDF and a zip of text', 'outbound', [f.attachment('report.pdf', f.pdf(), 'application/pdf'), f.attachment('notes.zip', await f.zip([{ name: 'a.txt', data: txt('k13') }]), 'application/zip')], { kind: 'clean' });
  return cases;
}
