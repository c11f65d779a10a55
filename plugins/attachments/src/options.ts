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
  /** Shown in logs and in the quarantine sidecar. */
  name: z.string().min(1).optional(),
  /** inbound: mail from untrusted, unauthenticated clients; outbound: from trusted networks or authenticated users. */
  direction: direction.default('any'),
  /** What to do with a part this rule catches. */
  action: action.default('block'),
  /** Extensions refused (without dot, case-insensitive). */
  extensions: z.array(extension).default(DEFAULT_EXTENSIONS),
  /** When set, only these extensions pass; any other (or none) is caught. */
  allowExtensions: z.array(extension).optional(),
  /** Declared Content-Types refused (exact, lower-case; `type/*` matches a whole type). */
  types: z.array(z.string().min(1).transform((v) => v.toLowerCase())).default(DEFAULT_TYPES),
  /** Kinds of finding this rule acts on (see README). */
  checks: z.array(z.enum(CHECK_KINDS)).default([...CHECK_KINDS]),
});

export const options = z
  .strictObject({
    /** Screening rules, in order: the first rule that catches a part decides its action. */
    rules: z.array(ruleSchema).optional(),
    /** Shorthand when `rules` is absent: one rule for both directions with this action... */
    action: action.default('block'),
    /** ...and these extensions (default: the built-in list). */
    block: z.array(extension).optional(),
    /** Client networks whose mail is outbound (besides authenticated users): full addresses or CIDRs (core's strict parser). */
    trustedNetworks: networkList(),
    /** Longer file names are caught as `long-name`. */
    maxNameLength: z.number().int().min(8).default(200),
    /** Bytes kept in memory per part for content detection (ISO 9660 needs 32 KB). */
    sniffBytes: size().default(64 * 1024),
    archives: z
      .strictObject({
        /** Archives and attached messages opened inside each other, at most this deep. */
        maxDepth: z.number().int().min(0).max(16).default(3),
        /** Members in one attachment, counted across nested archives. */
        maxEntries: z.number().int().min(1).default(1000),
        /** Uncompressed bytes in one attachment, counted across nested archives. */
        maxTotalSize: size().default(500 * 1024 * 1024),
        /** Largest archive or attached message written to a temp file for inspection. */
        maxSize: size().default(100 * 1024 * 1024),
      })
      .prefault({}),
    /** Where temp files go (archives under inspection, quarantine copies in the making). */
    tempDir: z.string().min(1).optional(),
    quarantine: z
      .strictObject({
        /** Folder for quarantined parts (one file plus a .json sidecar each). */
        dir: z.string().min(1),
        /** Larger parts are quarantined truncated to this size (the sidecar says so). */
        maxSize: size().default(100 * 1024 * 1024),
        /** Items older than this are removed (checked at start and hourly; `portcullis quarantine purge` too). */
        retention: duration().default(30 * 86_400_000),
      })
      .optional(),
    /**
     * Screen attached messages the core's MIME walk does not open (message/rfc822 with
     * `Content-Disposition: attachment`, or transfer-encoded) with a second MIME pass over the raw
     * bytes; a catch there rejects the message (such a part cannot be stripped). Costs CPU on
     * large messages; turn off only when the core hands those parts to `part()` (see README).
     */
    closedMessages: z.boolean().default(true),
    /** Screen uuencoded blocks (`begin 644 name`) inside text parts. */
    uuencode: z.boolean().default(true),
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
