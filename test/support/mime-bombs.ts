/**
 * Hostile MIME structures from issue 9, built as CRLF text. Each is small (tens of KB) and aimed at
 * the MIME pass: mailsplit refuses more than 1,000 nodes with an error, which once hung or crashed
 * the relay.
 */
const head = (extra: string) => `From: a@remote.test\r\nTo: bob@example.com\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n${extra}`;

/** One multipart/mixed with `n` tiny text parts side by side. */
export function flatParts(n: number): string {
  let s = head('Content-Type: multipart/mixed; boundary="b"\r\n\r\n');
  for (let i = 0; i < n; i++) s += `--b\r\nContent-Type: text/plain\r\n\r\npart ${i}\r\n`;
  return s + '--b--\r\n';
}

/** multipart/mixed nested `depth` levels deep, one text part at the bottom. */
export function nested(depth: number): string {
  let s = head(`Content-Type: multipart/mixed; boundary="d0"\r\n\r\n`);
  for (let i = 1; i < depth; i++) s += `--d${i - 1}\r\nContent-Type: multipart/mixed; boundary="d${i}"\r\n\r\n`;
  s += `--d${depth - 1}\r\nContent-Type: text/plain\r\n\r\nbottom\r\n--d${depth - 1}--\r\n`;
  for (let i = depth - 2; i >= 0; i--) s += `--d${i}--\r\n`;
  return s;
}

/**
 * A boundary bomb: `depth` nested multiparts with distinct boundaries, then `lines` body lines
 * that each open a new part under some ancestor's boundary (every line is checked against every
 * open boundary, and each starts a node).
 */
export function boundaryBomb(depth = 200, lines = 5000): string {
  let s = head(`Content-Type: multipart/mixed; boundary="x0"\r\n\r\n`);
  for (let i = 1; i < depth; i++) s += `--x${i - 1}\r\nContent-Type: multipart/mixed; boundary="x${i}"\r\n\r\n`;
  for (let i = 0; i < lines; i++) s += `--x${(i * 7919) % depth}\r\n\r\n`;
  return s + '--x0--\r\n';
}

/** One text part whose header has `fields` fields. */
export function manyPartHeaders(fields: number): string {
  let s = head('Content-Type: multipart/mixed; boundary="h"\r\n\r\n--h\r\nContent-Type: text/plain\r\n');
  for (let i = 0; i < fields; i++) s += `X-Field-${i}: ${i}\r\n`;
  return s + '\r\nbody\r\n--h--\r\n';
}

/** `flatParts(n)` padded with a base64 attachment of `padBytes` (to make a large bomb). */
export function bigFlatParts(n: number, padBytes: number): string {
  const pad = Buffer.alloc(padBytes, 0x41).toString('base64').replace(/.{76}/g, '$&\r\n');
  let s = head('Content-Type: multipart/mixed; boundary="b"\r\n\r\n');
  s += `--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n${pad}\r\n`;
  for (let i = 0; i < n; i++) s += `--b\r\nContent-Type: text/plain\r\n\r\npart ${i}\r\n`;
  return s + '--b--\r\n';
}

/**
 * Issue 17's stall shapes: many small parts, named (`name` true: a Content-Type and a
 * Content-Disposition with a file name each) or empty (a bare boundary line and an empty header).
 * `depth` > 1 nests them in that many multiparts, the parts spread evenly over the levels.
 */
export function manySmallParts(n: number, opts: { named?: boolean; depth?: number } = {}): string {
  const depth = Math.max(1, opts.depth ?? 1);
  const part = (i: number, b: string) =>
    opts.named ? `--${b}\r\nContent-Type: application/octet-stream; name="f${i}.bin"\r\nContent-Disposition: attachment; filename="f${i}.bin"\r\n\r\nx\r\n` : `--${b}\r\n\r\n`;
  const out: string[] = [head('Content-Type: multipart/mixed; boundary="s0"\r\n\r\n')];
  const per = Math.ceil(n / depth);
  let made = 0;
  for (let d = 0; d < depth; d++) {
    const b = `s${d}`;
    for (let i = 0; i < per && made < n; i++, made++) out.push(part(made, b));
    if (d + 1 < depth) out.push(`--${b}\r\nContent-Type: multipart/mixed; boundary="s${d + 1}"\r\n\r\n`);
  }
  for (let d = depth - 1; d >= 0; d--) out.push(`--s${d}--\r\n`);
  return out.join('');
}
