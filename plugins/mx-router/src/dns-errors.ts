/**
 * How a node:dns failure counts for mail routing. `absent`: the name (NXDOMAIN) or the record type
 * (NODATA) does not exist, a permanent answer. `temporary`: SERVFAIL, timeouts, refused or
 * unreachable servers and anything unknown: retry later, never bounce on it.
 */
export type DnsFailure = { kind: 'nxdomain' | 'nodata'; code: string } | { kind: 'temporary'; code: string };

export function classifyDnsError(err: unknown): DnsFailure {
  const code = String((err as { code?: unknown })?.code ?? 'EUNKNOWN');
  if (code === 'ENOTFOUND') return { kind: 'nxdomain', code };
  if (code === 'ENODATA') return { kind: 'nodata', code };
  return { kind: 'temporary', code };
}

/** `ESERVFAIL` → `SERVFAIL`, for reply texts. */
export function describeDnsCode(code: string): string {
  return code.replace(/^E/, '');
}
