/**
 * Active content in HTML and SVG attachments: the body of HTML smuggling (a script that builds the
 * payload in the browser from a blob, so no program crosses the gateway) and of SVG phishing (an
 * "image" that opens in the browser and runs script or draws a login form). Found anywhere in the
 * attachment, streaming, with a small tail carried between chunks.
 *
 * HTML: `<script`, or a `javascript:` URL. SVG (images need none of these): also inline event
 * handlers (`onload=` ...), `<foreignObject` (HTML inside the image) and `<iframe`/`<embed`.
 * Only named attachments are checked (the message's own HTML body is not an attachment).
 */
export type ActiveContentKind = 'html' | 'svg';

const PATTERNS: Record<ActiveContentKind, RegExp> = {
  html: /<script[\s>/]|javascript\s*:/,
  svg: /<script[\s>/]|javascript\s*:|\son[a-z]{3,20}\s*=|<foreignobject[\s>/]|<iframe[\s>/]|<embed[\s>/]/,
};
const TAIL = 32;

/** Which scanner a part needs, from its names and declared type. */
export function activeContentKind(names: readonly string[], contentType: string | undefined): ActiveContentKind | undefined {
  const type = (contentType ?? '').toLowerCase();
  if (type === 'image/svg+xml' || names.some((n) => /\.svgz?$/i.test(n))) return 'svg';
  if (names.some((n) => /\.(x?html?|shtml|xht|mht|mhtml|hta)$/i.test(n))) return 'html';
  if ((type === 'text/html' || type === 'application/xhtml+xml') && names.length > 0) return 'html';
  return undefined;
}

export class ActiveContentScanner {
  private tail = '';
  /** What was found, e.g. `<script`; undefined while nothing is. */
  found?: string;
  constructor(readonly kind: ActiveContentKind) {}

  push(chunk: Buffer): void {
    if (this.found) return;
    const text = this.tail + chunk.toString('latin1').toLowerCase();
    const m = PATTERNS[this.kind].exec(text);
    if (m) {
      this.found = m[0].trim().replace(/[\s>/=]+$/, '').replace(/\s+/g, '');
      return;
    }
    this.tail = text.slice(-TAIL);
  }
}
