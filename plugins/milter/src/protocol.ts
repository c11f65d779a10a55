/**
 * The milter wire protocol (Sendmail's libmilter, `mfdef.h`), as Postfix speaks it: every packet is
 * a 4-byte big-endian length (command byte included), one command byte, then the data. Strings
 * are NUL-terminated. Only the constants we use are here.
 */

/** MTA → milter commands. */
export const Cmd = {
  OPTNEG: 'O',
  MACRO: 'D',
  CONNECT: 'C',
  HELO: 'H',
  MAIL: 'M',
  RCPT: 'R',
  DATA: 'T',
  HEADER: 'L',
  EOH: 'N',
  BODY: 'B',
  BODYEOB: 'E',
  ABORT: 'A',
  QUIT: 'Q',
} as const;

/** Milter → MTA replies and modification requests. */
export const Reply = {
  ACCEPT: 'a',
  CONTINUE: 'c',
  DISCARD: 'd',
  REJECT: 'r',
  TEMPFAIL: 't',
  REPLYCODE: 'y',
  PROGRESS: 'p',
  SKIP: 's',
  OPTNEG: 'O',
  ADDRCPT: '+',
  DELRCPT: '-',
  ADDRCPT_PAR: '2',
  CHGFROM: 'e',
  CHGHEADER: 'm',
  ADDHEADER: 'h',
  INSHEADER: 'i',
  REPLBODY: 'b',
  QUARANTINE: 'q',
  CONN_FAIL: 'f',
  SHUTDOWN: '4',
} as const;

/** Actions (SMFIF_*) a milter may ask for at end of message: all of them are supported. */
export const Action = {
  ADDHDRS: 0x01,
  CHGBODY: 0x02,
  ADDRCPT: 0x04,
  DELRCPT: 0x08,
  CHGHDRS: 0x10,
  QUARANTINE: 0x20,
  CHGFROM: 0x40,
  ADDRCPT_PAR: 0x80,
  SETSYMLIST: 0x100,
} as const;
export const ALL_ACTIONS = 0x1ff;

/** Protocol flags (SMFIP_*): stages the milter does not want, replies it will not send. */
export const Proto = {
  NOCONNECT: 0x1,
  NOHELO: 0x2,
  NOMAIL: 0x4,
  NORCPT: 0x8,
  NOBODY: 0x10,
  NOHDRS: 0x20,
  NOEOH: 0x40,
  NR_HDR: 0x80,
  NOUNKNOWN: 0x100,
  NODATA: 0x200,
  SKIP: 0x400,
  RCPT_REJ: 0x800,
  NR_CONN: 0x1000,
  NR_HELO: 0x2000,
  NR_MAIL: 0x4000,
  NR_RCPT: 0x8000,
  NR_DATA: 0x10000,
  NR_UNKN: 0x20000,
  NR_EOH: 0x40000,
  NR_BODY: 0x80000,
  HDR_LEADSPC: 0x100000,
} as const;

/**
 * The protocol flags we offer, by negotiated version (as Postfix's milter8.c): version 2 knows the
 * "no stage" flags, 3 adds NR_HDR and NOUNKNOWN, 4 adds NODATA, 6 the rest. HDR_LEADSPC and
 * RCPT_REJ are never offered: header values go without their leading space, and only accepted
 * recipients are sent.
 */
export function offeredProtocol(version: number): number {
  const v2 = 0x7f;
  if (version <= 2) return v2;
  if (version === 3) return v2 | Proto.NR_HDR | Proto.NOUNKNOWN;
  if (version <= 5) return v2 | Proto.NR_HDR | Proto.NOUNKNOWN | Proto.NODATA;
  return 0x1fffff & ~Proto.HDR_LEADSPC & ~Proto.RCPT_REJ;
}

/** The highest protocol version we speak; older milters (2 to 5) are negotiated down. */
export const PROTOCOL_VERSION = 6;

/** Macro stages of SMFIR_SETSYMLIST (the milter asks for its own macro lists in version 6). */
export const MacroStage = { connect: 0, helo: 1, mail: 2, rcpt: 3, data: 4, eom: 5, eoh: 6 } as const;
export type Stage = keyof typeof MacroStage;

/** Largest body chunk per SMFIC_BODY (libmilter's MILTER_CHUNK_SIZE). */
export const BODY_CHUNK = 65535;

export interface Packet {
  readonly cmd: string;
  readonly data: Buffer;
}

export function encode(cmd: string, data: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const out = Buffer.allocUnsafe(5 + body.length);
  out.writeUInt32BE(body.length + 1, 0);
  out.write(cmd, 4, 'latin1');
  body.copy(out, 5);
  return out;
}

/** NUL-terminated strings, one after the other. */
export function cstrings(...values: string[]): Buffer {
  return Buffer.concat(values.map((v) => Buffer.from(`${v.replace(/\0/g, '')}\0`, 'utf8')));
}

/** Splits NUL-terminated strings; a last one without NUL is taken as is. */
export function splitCStrings(data: Buffer): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] === 0) {
      out.push(data.subarray(start, i).toString('utf8'));
      start = i + 1;
    }
  }
  if (start < data.length) out.push(data.subarray(start).toString('utf8'));
  return out;
}

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MilterProtocolError';
  }
}

/**
 * Cuts a byte stream into packets. A length of 0 (no command byte) or over `maxPacket` is a
 * malformed packet: the milter is out of step and cannot be trusted any more.
 *
 * Linear in the bytes whatever the pieces: the pieces of an unfinished packet are kept as they came
 * and joined once, when the packet is whole (a packet in one piece is not copied at all). Joining
 * everything read so far for every piece, as this did, made a 1 MB packet (`maxPacket`'s default)
 * read a byte per piece copy about 500 GB on the relay's event loop.
 */
export class PacketReader {
  private pieces: Buffer[] = [];
  private size = 0;
  /** Bytes of the packet being read (length field included), once its length field is in; else 0. */
  private need = 0;
  constructor(private readonly maxPacket: number) {}

  push(chunk: Buffer): Packet[] {
    const out: Packet[] = [];
    if (chunk.length) {
      this.pieces.push(chunk);
      this.size += chunk.length;
    }
    for (;;) {
      if (!this.need) {
        if (this.size < 4) break;
        const len = this.head(4).readUInt32BE(0);
        if (len < 1 || len > this.maxPacket) throw new ProtocolError(`malformed packet: length ${len}`);
        this.need = 4 + len;
      }
      if (this.size < this.need) break;
      const packet = this.take(this.need);
      this.need = 0;
      out.push({ cmd: String.fromCharCode(packet[4]!), data: packet.subarray(5) });
    }
    return out;
  }

  /** The first `n` bytes held (n <= size), joining only the pieces they span. */
  private head(n: number): Buffer {
    if (this.pieces[0]!.length < n) this.merge(n);
    return this.pieces[0]!;
  }

  /** Takes the first `n` bytes held (n <= size) off the front. */
  private take(n: number): Buffer {
    const first = this.head(n);
    this.size -= n;
    if (first.length === n) this.pieces.shift();
    else this.pieces[0] = first.subarray(n);
    return first.length === n ? first : first.subarray(0, n);
  }

  /** Joins the leading pieces into one of at least `n` bytes. */
  private merge(n: number): void {
    let count = 0;
    let bytes = 0;
    while (bytes < n) bytes += this.pieces[count++]!.length;
    this.pieces.splice(0, count, Buffer.concat(this.pieces.slice(0, count), bytes));
  }
}
