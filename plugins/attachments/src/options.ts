import { duration, networkList, size, z } from '@portcullis/core';
import { CHECK_KINDS } from './findings.js';

/**
 * Extensions refused by default: Windows programs, scripts, shortcuts and installers (Outlook's
 * "Level 1" list and Haraka's defaults, trimmed of certificate files), Unix scripts, macro-enabled
 * Office types and disk images.
 */
export const DEFAULT_EXTENSIONS = [
  'ade', 'adp', 'app', 'appx', 'appxbundle', 'application', 'appref-ms', 'asp', 'aspx', 'asx', 'bas', 'bat', 'bgi', 'cab',
  'chm', 'cmd', 'cnt', 'com', 'cpl', 'csh', 'diagcab', 'dll', 'docm', 'dotm', 'dmg', 'exe', 'fxp', 'gadget', 'grp', 'hlp',
  'hpj', 'hta', 'htc', 'img', 'inf', 'ins', 'iso', 'isp', 'its', 'jar', 'jnlp', 'js', 'jse', 'ksh', 'lnk', 'mad', 'maf', 'mag',
  'mam', 'maq', 'mar', 'mas', 'mat', 'mau', 'mav', 'maw', 'mcf', 'mda', 'mdb', 'mde', 'mdt', 'mdw', 'mdz', 'msc', 'msh',
  'msh1', 'msh2', 'mshxml', 'msh1xml', 'msh2xml', 'msi', 'msix', 'msixbundle', 'msp', 'mst', 'msu', 'ocx', 'ops', 'osd',
  'pcd', 'pif', 'pl', 'plg', 'potm', 'ppam', 'ppsm', 'pptm', 'prf', 'prg', 'printerexport', 'ps1', 'ps1xml', 'ps2',
  'ps2xml', 'psc1', 'psc2', 'psd1', 'psdm1', 'psm1', 'py', 'pyc', 'pyo', 'pyw', 'pyz', 'pyzw', 'reg', 'scf', 'scr', 'sct',
  'settingcontent-ms', 'sh', 'shb', 'shs', 'sldm', 'sys', 'theme', 'udl', 'url', 'vb', 'vbe', 'vbp', 'vbs', 'vhd', 'vhdx',
  'vsmacros', 'vsw', 'webpnp', 'website', 'ws', 'wsb', 'wsc', 'wsf', 'wsh', 'xbap', 'xla', 'xlam', 'xll', 'xlsm', 'xltm',
  'xnk',
  // Added after the 2023-2025 campaigns (README, "Threats the defaults cover"): OneNote notebooks,
  // App Installer files, RDP connection files, library/search connector files, Excel web queries and SYLK.
  'one', 'onepkg', 'appinstaller', 'rdp', 'library-ms', 'searchconnector-ms', 'iqy', 'slk',
];

/** Declared types refused by default: programs, scripts, disk images, and split or external messages. */
export const DEFAULT_TYPES = [
  'application/x-msdownload', 'application/x-msdos-program', 'application/x-dosexec', 'application/x-executable',
  'application/vnd.microsoft.portable-executable', 'application/x-msi', 'application/x-ms-installer',
  'application/x-ms-shortcut', 'application/hta', 'application/x-sh', 'application/x-csh', 'application/x-bat',
  'application/javascript', 'application/x-javascript', 'text/javascript', 'application/x-vbscript', 'text/vbscript',
  'application/java-archive', 'application/x-java-archive', 'application/vnd.ms-htmlhelp',
  'application/x-iso9660-image', 'application/x-apple-diskimage',
  'application/onenote', 'application/msonenote', 'application/msix', 'application/appx', 'application/appinstaller',
  'application/x-rdp',
  'message/partial', 'message/external-body',
];

const direction = z.enum(['inbound', 'outbound', 'any']);
const action = z.enum(['block', 'strip', 'quarantine']);
const extension = z
  .string()
  .min(1)
  .transform((v) => v.replace(/^\*?\./, '').toLowerCase());

export const ruleSchema = z.strictObject({
  name: z.string().min(1).optional().describe('Shown in logs and in the quarantine sidecar.'),
  direction: direction.default('any').describe('inbound: mail from untrusted, unauthenticated clients; outbound: from trusted networks or authenticated users.'),
  action: action.default('block').describe('What to do with a part this rule catches.'),
  extensions: z.array(extension).default(DEFAULT_EXTENSIONS).describe('Extensions refused (without dot, case-insensitive).'),
  allowExtensions: z.array(extension).optional().describe('When set, only these extensions pass; any other (or none) is caught.'),
  types: z.array(z.string().min(1).transform((v) => v.toLowerCase())).default(DEFAULT_TYPES).describe('Declared Content-Types refused (exact, lower-case; `type/*` matches a whole type).'),
  checks: z.array(z.enum(CHECK_KINDS)).default([...CHECK_KINDS]).describe('Kinds of finding this rule acts on (see README).'),
});

export const options = z
  .strictObject({
    rules: z.array(ruleSchema).optional().describe('Screening rules, in order: the first rule that catches a part decides its action.'),
    action: action.default('block').describe('Shorthand when `rules` is absent: one rule for both directions with this action...'),
    block: z.array(extension).optional().describe('...and these extensions (default: the built-in list).'),
    trustedNetworks: networkList().describe('Client networks whose mail is outbound (besides authenticated users): full addresses or CIDRs (core\'s strict parser).'),
    maxNameLength: z.number().int().min(8).default(200).describe('Longer file names are caught as `long-name`.'),
    sniffBytes: size().default(64 * 1024).describe('Bytes kept in memory per part for content detection (ISO 9660 needs 32 KB).'),
    archives: z
      .strictObject({
        maxDepth: z.number().int().min(0).max(16).default(3).describe('Archives and attached messages opened inside each other, at most this deep.'),
        maxEntries: z.number().int().min(1).default(1000).describe('Members in one attachment, counted across nested archives.'),
        maxTotalSize: size().default(500 * 1024 * 1024).describe('Uncompressed bytes in one attachment, counted across nested archives.'),
        maxSize: size().default(100 * 1024 * 1024).describe('Largest archive or attached message written to a temp file for inspection.'),
      })
      .prefault({})
      .describe('Limits for looking inside archives and attached messages.'),
    tempDir: z.string().min(1).optional().describe('Where temp files go (archives under inspection, quarantine copies in the making).'),
    quarantine: z
      .strictObject({
        dir: z.string().min(1).describe('Folder for quarantined parts (one file plus a .json sidecar each).'),
        maxSize: size().default(100 * 1024 * 1024).describe('Larger parts are quarantined truncated to this size (the sidecar says so).'),
        retention: duration().default(30 * 86_400_000).describe('Items older than this are removed (checked at start and hourly; `portcullis quarantine purge` too).'),
      })
      .optional()
      .describe('Where `quarantine` rules keep the parts they catch; required when a rule quarantines.'),
    closedMessages: z.boolean().default(true).describe('Screen attached messages the core\'s MIME walk does not open (message/rfc822 with `Content-Disposition: attachment`, or transfer-encoded) with a second MIME pass over the raw bytes; a catch there rejects the message (such a part cannot be stripped). Costs CPU on large messages; turn off only when the core hands those parts to `part()` (see README).'),
    uuencode: z.boolean().default(true).describe('Screen uuencoded blocks (`begin 644 name`) inside text parts.'),
  })
  .superRefine((o, ctx) => {
    const usesQuarantine = (o.rules ?? [{ action: o.action }]).some((r) => r.action === 'quarantine');
    if (usesQuarantine && !o.quarantine) {
      ctx.addIssue({ code: 'custom', path: ['quarantine'], message: 'a rule uses action quarantine: set quarantine.dir' });
    }
    if (o.rules && o.block) ctx.addIssue({ code: 'custom', path: ['block'], message: 'use either rules or the block shorthand, not both' });
  });

export type AttachmentsOptions = z.input<typeof options>;
export type ResolvedOptions = z.output<typeof options>;
export type Rule = z.output<typeof ruleSchema>;
