/**
 * What a check found. `kind` is what rules select on (see `CHECK_KINDS`); `reason` is the text the
 * sender sees in the 550 reply and the recipient in the strip notice.
 */
export interface Finding {
  readonly kind: CheckKind;
  readonly reason: string;
}

/**
 * Every kind of finding. Rules list the kinds they act on in `checks` (default: all of them).
 * `extension` and `declared-type` come from the rule's own lists.
 */
export const CHECK_KINDS = [
  /** The name's extension is on the deny list (or off the allow list). */
  'extension',
  /** A denied extension behind or before another one: `invoice.pdf.exe`, `invoice.exe.pdf`. */
  'double-extension',
  /** Right-to-left override and other bidi controls, control characters, trailing dots or spaces, CLSIDs. */
  'name-disguise',
  /** A name longer than `maxNameLength`. */
  'long-name',
  /** The declared Content-Type is on the rule's `types` list. */
  'declared-type',
  /** The bytes are a program: PE/MZ, ELF, Mach-O, Java class/jar, Android apk, Windows shortcut, CHM, installers. */
  'executable',
  /** The bytes are a script: `#!` shebang, Windows registry file. */
  'script',
  /** An office document with VBA macros (OLE `_VBA_PROJECT`, OOXML `vbaProject.bin`, macro-enabled types). */
  'macro',
  /** A disk image: ISO 9660, Apple DMG, VHD/VHDX. */
  'disk-image',
  /** A password-protected archive member: its content cannot be screened. */
  'encrypted-archive',
  /** An archive over the limits: nesting depth, entries, total uncompressed size, or size to inspect. */
  'archive-limit',
  /** An archive we cannot open (7z, rar, cab, arj, ...), or a corrupt one. */
  'opaque-archive',
] as const;

export type CheckKind = (typeof CHECK_KINDS)[number];
