import type { CaseResult, RelayTestReport } from './run.js';

/** The reply column: the deciding reply, prefixed with its stage when that is not RCPT TO. */
export function replyCell(r: CaseResult): string {
  const text = r.reply.replace(/\s+/g, ' ').trim();
  if (r.stage === 'rcpt') return text;
  if (r.stage === 'data') return `DATA: ${text} (RCPT: ${r.rcptReply ?? '?'})`;
  return `${r.stage.toUpperCase()}: ${text}`;
}

/** Plain-text table: `#`, `case`, `MAIL FROM`, `RCPT TO`, `reply`, `verdict`; then a summary line. */
export function formatTable(report: RelayTestReport): string {
  const head = ['#', 'case', 'MAIL FROM', 'RCPT TO', 'reply', 'verdict'];
  const rows = report.results.map((r) => [String(r.n), r.id, `<${r.mailFrom}>`, `<${r.rcptTo}>`, replyCell(r), r.verdict]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [
    `relay test of ${report.target} (hosted domain ${report.domain}, third party ${report.thirdParty}${report.localAddress ? `, from ${report.localAddress}` : ''}${report.starttls ? ', STARTTLS' : ''}${report.send ? ', with DATA' : ''})`,
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
  ];
  const s = report.summary;
  out.push(
    '',
    `${s.pass} PASS, ${s.fail} FAIL, ${s.warn} WARN${s.error ? `, ${s.error} ERROR` : ''}: ` +
      (s.fail ? `OPEN RELAY: ${report.results.filter((r) => r.verdict === 'FAIL').map((r) => r.id).join(', ')} relayed`
        : s.error ? 'some cases could not be run' : 'nothing was relayed'),
  );
  // Why the WARN / ERROR rows are what they are, one line per distinct reason.
  const notes = new Map<string, string[]>();
  for (const r of report.results)
    if (r.verdict === 'WARN' || r.verdict === 'ERROR') notes.set(`${r.verdict}: ${r.note}`, [...(notes.get(`${r.verdict}: ${r.note}`) ?? []), `#${r.n}`]);
  for (const [note, rows] of notes) out.push(`  ${note} (${rows.join(' ')})`);
  return out.join('\n') + '\n';
}

export function formatJson(report: RelayTestReport): string {
  return JSON.stringify(report, null, 2) + '\n';
}
