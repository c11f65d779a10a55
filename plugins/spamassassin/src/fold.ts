/**
 * Folds a header value at commas and spaces so that no line passes 78 characters (RFC 5322's
 * recommendation; SpamAssassin's own X-Spam-Status is folded the same way). `start` is the length
 * of `Name: ` already on the first line.
 */
export function foldList(value: string, start: number, width = 78): string {
  const out: string[] = [];
  let line = '';
  let col = start;
  for (const piece of value.split(/(?<=[, ])/)) {
    if (line && col + piece.length > width) {
      out.push(line.trimEnd());
      line = '';
      col = 1; // the tab
    }
    line += piece;
    col += piece.length;
  }
  if (line) out.push(line.trimEnd());
  return out.join('\r\n\t');
}
