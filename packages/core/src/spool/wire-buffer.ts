/**
 * A small message as it leaves for the next hop: our header lines, then the received chunks, in
 * one buffer made with one copy. The spool writes its tail (the body) to the segment with writev,
 * no copy, and hands the whole buffer to the first delivery attempt as one chunk (one socket
 * write). Before, the chunks were copied into a body buffer at commit and again, behind the
 * headers, at delivery: two 10 KB copies (and their garbage) a message instead of one.
 */
export function wireBuffer(headers: string, chunks: readonly Buffer[], size: number): { wire: Buffer; body: Buffer } {
  const headLen = Buffer.byteLength(headers);
  const wire = Buffer.allocUnsafe(headLen + size);
  wire.write(headers, 0, headLen, 'utf8');
  let at = headLen;
  for (const c of chunks) at += c.copy(wire, at);
  return { wire, body: wire.subarray(headLen) };
}

/** A message given whole or as chunks (`Spool.enqueue`), as chunks and their total size. */
export function asChunks(body: Buffer | readonly Buffer[]): { chunks: readonly Buffer[]; size: number } {
  if (Buffer.isBuffer(body)) return { chunks: [body], size: body.length };
  let size = 0;
  for (const c of body) size += c.length;
  return { chunks: body, size };
}
