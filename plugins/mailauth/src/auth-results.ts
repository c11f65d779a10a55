/**
 * Authentication-Results (RFC 8601) helpers: the authserv-id of an incoming field, so fields that
 * claim to be ours can be removed before anyone downstream trusts them.
 */

/** The authserv-id of an Authentication-Results value (comments removed, before `;` or a version). */
export function authservIdOf(value: string): string {
  let v = value;
  // CFWS may surround the id; comments may nest, remove innermost first.
  for (let i = 0; i < 5 && /\([^()]*\)/.test(v); i++) v = v.replace(/\([^()]*\)/g, ' ');
  const id = v.trim().split(/[;\s]/)[0] ?? '';
  return id.toLowerCase().replace(/\.$/, '');
}

/** Whether a header field is an Authentication-Results claiming `authservId` (case-insensitive). */
export function claimsOurId(field: { name: string; value: string }, authservId: string): boolean {
  return field.name.trim().toLowerCase() === 'authentication-results' && authservIdOf(field.value) === authservId.toLowerCase();
}

/** Keeps one result row on lines of at most ~160 characters by folding at spaces. */
export function fold(row: string, width = 160): string {
  const words = row.replace(/\s+/g, ' ').trim().split(' ');
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines.join('\r\n\t');
}
